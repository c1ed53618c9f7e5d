//! The servers under load, each a separate process so both compete for the same cores the same
//! way: the real `gpdiag serve` release binary, and the bare-axum baseline (this binary's
//! `baseline-server` subcommand).

use crate::client::{Account, Connection};
use anyhow::{bail, Context};
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::any;
use axum::Router;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

/// The core version every benchmark instance has: diagnosis actions need V6.3.10.1 or later.
const CORE_VERSION: &str = "mm.v6.3.10.1-202207141918";

/// How long a server may take to start answering.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// What the baseline answers: a plausible `DescribeDownloadRecords` answer of about 300 bytes,
/// with a `Records` array so the same sanity check applies to both servers.
pub const BASELINE_BODY: &str = concat!(
    r#"{"RequestId":"6F7C2A1E-0B3D-4E5F-9A8B-7C6D5E4F3A2B","Records":[{"DownloadId":1,"#,
    r#""FileName":"gp-bench0000-sql-diagnose-20260102.csv","Status":"finished","#,
    r#""DownloadUrl":"http://127.0.0.1:8080/objects/gp-bench0000/sql-diagnose-20260102.csv","#,
    r#""ExceptionMsg":""}],"TotalCount":1,"PageNumber":1,"PageSize":30}"#
);

/// A server process, killed when dropped (also when the benchmark is interrupted).
pub struct ServerProcess {
    pub name: &'static str,
    pub addr: SocketAddr,
    child: Child,
    /// Held so the baseline never writes into a closed pipe.
    _stdout: Option<BufReader<ChildStdout>>,
    /// The server's standard error, quoted when it fails to start.
    log: Option<PathBuf>,
    /// Dropped after `child`, so the server is gone before its files are.
    _dir: Option<TempDir>,
}

impl ServerProcess {
    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// The temporary directory gpdiag runs in (its objects live in `objects/` there).
    pub fn dir(&self) -> Option<&Path> {
        self._dir.as_ref().map(TempDir::path)
    }

    /// The file the server's standard error goes to.
    pub fn log_path(&self) -> Option<&Path> {
        self.log.as_deref()
    }

    pub async fn stop(mut self) -> anyhow::Result<()> {
        // A benchmark server keeps nothing worth a graceful shutdown.
        self.child.start_kill().ok();
        self.child.wait().await?;
        Ok(())
    }

    /// Fails if the process has exited, quoting its log.
    fn ensure_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited during start-up ({status}){}",
                self.name,
                self.log_tail()
            );
        }
        Ok(())
    }

    fn log_tail(&self) -> String {
        let Some(text) = self
            .log
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
        else {
            return String::new();
        };
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(20)..].join("\n");
        format!("; its log ends with:\n{tail}")
    }
}

/// Starts `gpdiag serve` in a fresh temporary directory with one `StorageElastic` instance per
/// account, and waits until `GET /healthz` answers. `calls_per_second` of `None` keeps the
/// product default (and its default burst).
pub async fn start_gpdiag(
    binary: &Path,
    accounts: &[Account],
    calls_per_second: Option<u32>,
) -> anyhow::Result<ServerProcess> {
    start_gpdiag_on(binary, accounts, calls_per_second, None).await
}

/// `start_gpdiag` with `[storage] url = storage` when given (a fresh SQLite file in the
/// temporary directory otherwise).
pub async fn start_gpdiag_on(
    binary: &Path,
    accounts: &[Account],
    calls_per_second: Option<u32>,
    storage: Option<&str>,
) -> anyhow::Result<ServerProcess> {
    let dir = tempfile::Builder::new().prefix("gpdiag-bench").tempdir()?;
    let addr = free_port()?;
    let config = dir.path().join("gpdiag.toml");
    std::fs::write(
        &config,
        gpdiag_config(dir.path(), addr, accounts, calls_per_second, storage),
    )?;
    let log = dir.path().join("gpdiag.log");

    let mut command = Command::new(binary);
    command
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .kill_on_drop(true);
    // Only the file configures this server: a GPDIAG_* variable of the caller would override it.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("GPDIAG_") {
            command.env_remove(name);
        }
    }
    let child = command
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let mut server = ServerProcess {
        name: "gpdiag",
        addr,
        child,
        _stdout: None,
        log: Some(log),
        _dir: Some(dir),
    };
    wait_until_healthy(&mut server).await?;
    Ok(server)
}

/// Starts `<this binary> baseline-server` and reads the address it bound from its first line.
pub async fn start_baseline() -> anyhow::Result<ServerProcess> {
    let exe = std::env::current_exe().context("cannot find the benchmark binary")?;
    let mut child = Command::new(exe)
        .args(["baseline-server", "--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start the baseline server")?;
    let mut stdout = BufReader::new(child.stdout.take().context("no stdout pipe")?);
    let mut line = String::new();
    tokio::time::timeout(START_TIMEOUT, stdout.read_line(&mut line))
        .await
        .context("the baseline server did not report its address")??;
    let addr: SocketAddr = line
        .trim()
        .strip_prefix("listening on ")
        .and_then(|a| a.parse().ok())
        .with_context(|| format!("the baseline server printed {line:?}"))?;
    Ok(ServerProcess {
        name: "baseline",
        addr,
        child,
        _stdout: Some(stdout),
        log: None,
        _dir: None,
    })
}

/// The `baseline-server` subcommand: a bare axum server, served exactly the way gpdiag serves
/// (`axum::serve` on a tokio multi-thread runtime), answering everything on `/` with a fixed body.
pub async fn run_baseline(listen: &str) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    // The parent reads this line to learn the port; stdout is line-buffered.
    println!("listening on {}", listener.local_addr()?);
    let router = Router::new().route("/", any(baseline_answer));
    axum::serve(listener, router).await?;
    Ok(())
}

async fn baseline_answer() -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/json")], BASELINE_BODY)
}

/// A port that was free a moment ago. gpdiag takes its address from the configuration, so the
/// port must be chosen before it starts; the race with other programs is harmless here.
fn free_port() -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

fn gpdiag_config(
    dir: &Path,
    addr: SocketAddr,
    accounts: &[Account],
    calls_per_second: Option<u32>,
    storage: Option<&str>,
) -> String {
    let storage = match storage {
        Some(url) => url.to_owned(),
        None => format!("sqlite://{}", dir.join("gpdiag.db").display()),
    };
    let mut text = format!(
        "[server]\nlisten = \"{addr}\"\n\n[storage]\nurl = {}\n\n[objects]\nurl = {}\n",
        toml_string(&storage),
        toml_string(&format!("file://{}", dir.join("objects").display())),
    );
    if let Some(rate) = calls_per_second {
        let _ = write!(text, "\n[limits]\ncalls_per_second = {rate}\n");
    }
    for account in accounts {
        let _ = write!(
            text,
            "\n[[accounts]]\nname = {}\naccess_key_id = {}\naccess_key_secret = {}\n",
            toml_string(&account.name),
            toml_string(&account.credentials.access_key_id),
            toml_string(&account.credentials.access_key_secret),
        );
        let _ = write!(
            text,
            "\n[[instances]]\nid = {}\naccount = {}\ncore_version = \"{CORE_VERSION}\"\nmode = \"StorageElastic\"\n",
            toml_string(&account.instance_id),
            toml_string(&account.name),
        );
    }
    text
}

/// A TOML basic string; temporary paths may in principle hold quotes or backslashes.
fn toml_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

async fn wait_until_healthy(server: &mut ServerProcess) -> anyhow::Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        server.ensure_running()?;
        if let Ok(mut connection) = Connection::open(server.addr).await {
            if let Ok(reply) = connection.get("/healthz").await {
                if reply.status.is_success() {
                    return Ok(());
                }
            }
        }
        if Instant::now() >= deadline {
            bail!(
                "{} did not answer GET /healthz on {} within {START_TIMEOUT:?}{}",
                server.name,
                server.addr,
                server.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baseline_body_is_json_of_about_300_bytes_with_records() {
        let value: serde_json::Value = serde_json::from_str(BASELINE_BODY).unwrap();
        assert!(value["Records"].is_array());
        assert!(
            (280..=320).contains(&BASELINE_BODY.len()),
            "{}",
            BASELINE_BODY.len()
        );
    }

    #[test]
    fn toml_strings_escape_quotes_and_backslashes() {
        assert_eq!(toml_string(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
