//! The `gpdiag` binary: `serve` runs the server; `keys` manages access keys in the store.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use gpdiag_server::{app::new_access_key, Application, Config};
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(
    name = "gpdiag",
    version,
    about = "Self-hosted query diagnosis for PostgreSQL and Greenplum fleets, speaking the AnalyticDB for PostgreSQL (gpdb 2016-05-03) API"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct ConfigArgs {
    /// TOML configuration file; embedded defaults apply without one.
    #[arg(long, env = "GPDIAG_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API server.
    #[command(
        after_help = "Examples:\n  gpdiag serve\n  gpdiag serve --config /etc/gpdiag.toml --listen 0.0.0.0:8080"
    )]
    Serve {
        #[command(flatten)]
        config: ConfigArgs,
        /// Address to listen on, overriding [server] listen and GPDIAG_LISTEN.
        #[arg(long)]
        listen: Option<String>,
    },
    /// Manage access keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage query records.
    #[command(subcommand)]
    Records(RecordsCommand),
}

#[derive(Subcommand)]
enum RecordsCommand {
    /// Import query records from JSON lines or a gpdiag CSV export (any Lang); re-importing
    /// replaces records with the same query_id instead of duplicating them.
    #[command(
        after_help = "JSON lines carry the fields query_id, session_id, database, user, start_time (RFC 3339),\n\
duration_ms, status (running|finished), error, sql, plan_json, plan_text, rows and source.\n\n\
Examples:\n  gpdiag records import --instance gp-bp1analytics01 records.jsonl\n  \
gpdiag records import --instance gp-bp1analytics01 --skip-bad-lines export.csv\n  \
zcat old.jsonl.gz | gpdiag records import --instance gp-bp1analytics01 -"
    )]
    Import {
        /// The instance the records belong to.
        #[arg(long)]
        instance: String,
        /// The file to read, or - for standard input.
        file: PathBuf,
        /// Report bad lines and go on, instead of stopping at the first one.
        #[arg(long)]
        skip_bad_lines: bool,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create an access key for an account (creating the account if needed) and print it once.
    #[command(
        after_help = "Example:\n  gpdiag keys create --account analytics --config /etc/gpdiag.toml"
    )]
    Create {
        #[arg(long)]
        account: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Disable an access key; a running server refuses it within about a second.
    #[command(after_help = "Example:\n  gpdiag keys disable LTAI0123456789abcdefghij")]
    Disable {
        id: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

fn load_config(args: &ConfigArgs) -> anyhow::Result<Config> {
    Config::load(args.config.as_deref(), |k| std::env::var(k).ok())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GPDIAG_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match Cli::parse().command {
        Command::Serve { config, listen } => serve(config, listen).await,
        Command::Keys(KeysCommand::Create { account, config }) => {
            let store = gpdiag_store::open(&load_config(&config)?.storage.url).await?;
            store.ensure_account(&account).await?;
            let key = new_access_key(&account);
            store.put_key(&key).await?;
            println!("Account: {account}");
            println!("AccessKeyId: {}", key.id);
            println!("AccessKeySecret: {}", key.secret.expose());
            Ok(())
        }
        Command::Records(RecordsCommand::Import {
            instance,
            file,
            skip_bad_lines,
            config,
        }) => import_records(&load_config(&config)?, &instance, &file, skip_bad_lines).await,
        Command::Keys(KeysCommand::Disable { id, config }) => {
            let store = gpdiag_store::open(&load_config(&config)?.storage.url).await?;
            store
                .set_key_enabled(&id, false)
                .await
                .with_context(|| format!("cannot disable access key {id}"))?;
            println!("Disabled access key {id}");
            Ok(())
        }
    }
}

async fn import_records(
    config: &Config,
    instance: &str,
    file: &Path,
    skip_bad_lines: bool,
) -> anyhow::Result<()> {
    use gpdiag_ingest::import::{import, OnBadLine};
    let store = gpdiag_store::open(&config.storage.url).await?;
    let known = config.instances.iter().any(|i| i.id == instance)
        || store
            .list_instances()
            .await?
            .iter()
            .any(|i| i.id == instance);
    if !known {
        anyhow::bail!("instance {instance} is not configured; add it under [[instances]] first");
    }
    let input: Box<dyn std::io::Read + Send> = if file == Path::new("-") {
        Box::new(std::io::stdin())
    } else {
        Box::new(
            std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?,
        )
    };
    let on_bad_line = if skip_bad_lines {
        OnBadLine::Skip
    } else {
        OnBadLine::Stop
    };
    let report = import(input, instance, store.as_ref(), on_bad_line, |_| {}).await?;
    for bad in &report.bad_lines {
        eprintln!("line {}: {}", bad.line, bad.reason);
    }
    println!(
        "Imported {} records into {instance}; {} bad lines {}.",
        report.imported,
        report.bad_lines.len(),
        if skip_bad_lines { "skipped" } else { "found" }
    );
    if report.stopped {
        anyhow::bail!(
            "stopped at line {}; records before it were imported (use --skip-bad-lines to go on past bad lines)",
            report.bad_lines.last().map_or(0, |b| b.line)
        );
    }
    Ok(())
}

async fn serve(args: ConfigArgs, listen: Option<String>) -> anyhow::Result<()> {
    let mut config = load_config(&args)?;
    if let Some(listen) = listen {
        config.server.listen = listen;
    }
    let mut app = Application::build(config).await?;
    if let Some(key) = app.take_bootstrap_key() {
        // Shown once on stdout, never through the logger.
        println!(
            "No access key was configured, so gpdiag created one for account \"{}\":",
            key.account
        );
        println!("AccessKeyId: {}", key.id);
        println!("AccessKeySecret: {}", key.secret.expose());
        println!("Keep the secret now: it is not shown again.");
    }
    tracing::info!(address = %app.local_addr(), "gpdiag listening");
    app.run_until_stopped(shutdown_signal()).await?;
    tracing::info!("gpdiag stopped");
    Ok(())
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(term) => term,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the server");
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
