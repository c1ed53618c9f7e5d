//! The `gpdiag` binary: `serve` runs the server; `keys` manages access keys in the store;
//! `records import` loads query records; `collect --once` reads server logs. The client
//! commands (`instances`, `records search`, `export`, `exports`, `call`) live in `client/` and
//! talk to a server over the signed API.

mod client;
mod collect;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use gpdiag_server::{app::new_access_key, Application, Config};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "gpdiag",
    version,
    about = "Self-hosted query diagnosis for PostgreSQL and Greenplum fleets, speaking the AnalyticDB for PostgreSQL (gpdb 2016-05-03) API",
    after_help = "Client commands take the key from ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET\n\
(or --profile NAME) and the server from --endpoint or GPDIAG_ENDPOINT (default http://127.0.0.1:8080).\n\
Exit codes and the credentials file: docs/cli.md.\n\n\
Examples:\n  gpdiag serve --config /etc/gpdiag.toml\n  gpdiag instances list\n  \
gpdiag export --instance gp-bp1analytics01 --database sales --start -6h --output last6h.csv\n  \
gpdiag call DescribeDownloadRecords DBInstanceId=gp-bp1analytics01"
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
    /// Read what the configured instances' log directories hold now into the store, then
    /// exit (for cron and batch use; `serve` collects continuously).
    #[command(
        after_help = "Reads every instance with an [instances.collect] log_dir; positions are kept in the\n\
store, so a second run reads only what is new. Running queries are sampled by `serve` only.\n\n\
Examples:\n  gpdiag collect --once --config /etc/gpdiag.toml\n  \
gpdiag collect --once --config /etc/gpdiag.toml --instance gp-bp1analytics01"
    )]
    Collect {
        /// Read once and exit (the only mode; `serve` collects continuously).
        #[arg(long, required = true)]
        once: bool,
        /// Only this instance.
        #[arg(long)]
        instance: Option<String>,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Manage access keys.
    #[command(
        subcommand,
        after_help = "Examples:\n  gpdiag keys create --account analytics\n  gpdiag keys disable LTAI0123456789abcdefghij"
    )]
    Keys(KeysCommand),
    /// Manage query records: import them into the store, search them through the API.
    #[command(
        subcommand,
        after_help = "Examples:\n  gpdiag records import --instance gp-bp1analytics01 records.jsonl\n  \
gpdiag records search --instance gp-bp1analytics01 --database sales --start -6h --top 20"
    )]
    Records(RecordsCommand),
    /// List and show the instances your key can see.
    #[command(
        subcommand,
        after_help = "Examples:\n  gpdiag instances list\n  gpdiag instances show gp-bp1analytics01"
    )]
    Instances(client::instances::InstancesCommand),
    /// Export diagnosis records to CSV (DownloadDiagnosisRecords); with --wait or --output,
    /// wait for it with a progress bar and download the file.
    Export(client::exports::ExportArgs),
    /// List, download and cancel exports.
    #[command(
        subcommand,
        after_help = "Examples:\n  gpdiag exports list --instance gp-bp1analytics01\n  \
gpdiag exports download --instance gp-bp1analytics01 12 --output sales.csv\n  \
gpdiag exports cancel --instance gp-bp1analytics01 12"
    )]
    Exports(client::exports::ExportsCommand),
    /// Call any action with Name=Value parameters and print its JSON answer.
    Call(client::call::CallArgs),
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
    /// Search query records through the API (DescribeDiagnosisRecords, every page).
    Search(Box<client::records::SearchArgs>),
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
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GPDIAG_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match Cli::parse().command {
        Command::Serve { config, listen } => exit_with(serve(config, listen).await),
        Command::Keys(KeysCommand::Create { account, config }) => {
            exit_with(create_key(&account, &config).await)
        }
        Command::Keys(KeysCommand::Disable { id, config }) => {
            exit_with(disable_key(&id, &config).await)
        }
        Command::Records(RecordsCommand::Import {
            instance,
            file,
            skip_bad_lines,
            config,
        }) => exit_with(match load_config(&config) {
            Ok(config) => import_records(&config, &instance, &file, skip_bad_lines).await,
            Err(e) => Err(e),
        }),
        Command::Collect {
            once: _,
            instance,
            config,
        } => exit_with(match load_config(&config) {
            Ok(config) => collect::collect_once(&config, instance.as_deref()).await,
            Err(e) => Err(e),
        }),
        Command::Records(RecordsCommand::Search(args)) => {
            client_exit(client::records::run(*args).await)
        }
        Command::Instances(command) => client_exit(client::instances::run(command).await),
        Command::Export(args) => client_exit(client::exports::run_export(args).await),
        Command::Exports(command) => client_exit(client::exports::run_exports(command).await),
        Command::Call(args) => client_exit(client::call::run(args).await),
    }
}

/// The operator commands' errors, printed as `main` returning `anyhow::Result` printed them.
fn exit_with(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:?}");
            ExitCode::FAILURE
        }
    }
}

/// The client commands' errors: one line (or a few) on standard error, and the documented
/// exit code (docs/cli.md).
fn client_exit(outcome: client::Outcome) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if !failure.message.is_empty() {
                eprintln!("error: {}", failure.message);
            }
            ExitCode::from(failure.exit as u8)
        }
    }
}

async fn create_key(account: &str, config: &ConfigArgs) -> anyhow::Result<()> {
    let store = gpdiag_store::open(&load_config(config)?.storage.url).await?;
    store.ensure_account(account).await?;
    let key = new_access_key(account);
    store.put_key(&key).await?;
    println!("Account: {account}");
    println!("AccessKeyId: {}", key.id);
    println!("AccessKeySecret: {}", key.secret.expose());
    Ok(())
}

async fn disable_key(id: &str, config: &ConfigArgs) -> anyhow::Result<()> {
    let store = gpdiag_store::open(&load_config(config)?.storage.url).await?;
    store
        .set_key_enabled(id, false)
        .await
        .with_context(|| format!("cannot disable access key {id}"))?;
    println!("Disabled access key {id}");
    Ok(())
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
