//! Running the client commands of the real `gpdiag` binary against a real `gpdiag serve`: a
//! clean environment (no ALIBABA_CLOUD_* or GPDIAG_* from the developer's shell, HOME in the
//! test's directory so no real credentials file is read), the test key, captured output.

use crate::support::{
    config_toml, creds, import_records, Server, BIN, DATABASE, END_TIME, INSTANCE, START_TIME,
};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// What one run printed and how it exited.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
    pub args: Vec<String>,
}

impl Run {
    pub fn stdout_text(&self) -> String {
        String::from_utf8(self.stdout.clone()).expect("stdout is UTF-8")
    }

    /// Asserts a zero exit and returns self.
    #[track_caller]
    pub fn ok(&self) -> &Self {
        assert_eq!(
            self.code,
            0,
            "gpdiag {:?} failed:\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.args,
            String::from_utf8_lossy(&self.stdout),
            self.stderr
        );
        self
    }

    /// Asserts exit `code` and that standard error says each of `says`.
    #[track_caller]
    pub fn fails(&self, code: i32, says: &[&str]) -> &Self {
        assert_eq!(
            self.code,
            code,
            "gpdiag {:?}: expected exit {code}:\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.args,
            String::from_utf8_lossy(&self.stdout),
            self.stderr
        );
        for text in says {
            assert!(
                self.stderr.contains(text),
                "gpdiag {:?}: stderr lacks {text:?}:\n{}",
                self.args,
                self.stderr
            );
        }
        assert!(
            self.stdout.is_empty(),
            "a failure prints nothing on stdout: {:?}",
            String::from_utf8_lossy(&self.stdout)
        );
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "gpdiag {:?}: stdout is not JSON ({e}):\n{}",
                self.args,
                String::from_utf8_lossy(&self.stdout)
            )
        })
    }
}

/// How to run the client against one server.
#[derive(Clone)]
pub struct Cli {
    pub dir: PathBuf,
    pub env: Vec<(String, String)>,
}

impl Cli {
    /// The test key in ALIBABA_CLOUD_ACCESS_KEY_ID/SECRET and the server in GPDIAG_ENDPOINT.
    pub fn new(addr: &str, dir: &Path) -> Cli {
        let key = creds();
        Cli {
            dir: dir.to_owned(),
            env: vec![
                ("GPDIAG_ENDPOINT".into(), format!("http://{addr}")),
                ("ALIBABA_CLOUD_ACCESS_KEY_ID".into(), key.access_key_id),
                (
                    "ALIBABA_CLOUD_ACCESS_KEY_SECRET".into(),
                    key.access_key_secret,
                ),
            ],
        }
    }

    /// A copy with `name` set to `value` (replacing it), or removed when `value` is None.
    pub fn with(&self, name: &str, value: Option<&str>) -> Cli {
        let mut cli = self.clone();
        cli.env.retain(|(n, _)| n != name);
        if let Some(v) = value {
            cli.env.push((name.into(), v.into()));
        }
        cli
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(BIN);
        command
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null());
        for (name, _) in std::env::vars_os() {
            let name_text = name.to_string_lossy();
            if name_text.starts_with("GPDIAG_")
                || name_text.starts_with("ALIBABA_CLOUD_")
                || name_text == "XDG_CONFIG_HOME"
            {
                command.env_remove(&name);
            }
        }
        command.env("HOME", &self.dir);
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }

    /// Runs to the end with stdout and stderr captured (pipes: neither is a terminal).
    pub fn run(&self, args: &[&str]) -> Run {
        let out = self
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let run = Run {
            code: out.status.code().unwrap_or(-1),
            stdout: out.stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            args: args.iter().map(|a| a.to_string()).collect(),
        };
        // Standard error is a pipe here: no colours, no bars redrawn with carriage returns.
        assert!(
            !run.stderr.contains('\x1b') && !run.stderr.contains('\r'),
            "gpdiag {args:?} drew on a non-terminal stderr: {:?}",
            run.stderr
        );
        run
    }

    /// Starts a run in the background, its stdout and stderr going to files.
    pub fn spawn(&self, args: &[&str], stdout: &Path, stderr: &Path) -> Child {
        self.command(args)
            .stdout(std::fs::File::create(stdout).unwrap())
            .stderr(std::fs::File::create(stderr).unwrap())
            .spawn()
            .unwrap()
    }
}

/// A raw HTTP/1.1 answer that closes the connection, for stand-in servers.
pub fn http(status: &str, headers: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\nConnection: close\r\n{headers}\r\n").into_bytes();
    out.extend_from_slice(body);
    out
}

/// A download link's answer once it has expired.
pub fn link_expired() -> Vec<u8> {
    let body = b"The link has expired.\n";
    http(
        "403 Forbidden",
        &format!("Content-Length: {}\r\n", body.len()),
        body,
    )
}

/// A DescribeDownloadRecords answer listing one finished export whose link is `/file`.
pub fn one_finished_export(addr: &str) -> Vec<u8> {
    let body = serde_json::json!({
        "RequestId": "R-1",
        "Records": [{
            "DownloadId": 1, "FileName": "f.csv", "Status": "finished",
            "DownloadUrl": format!("http://{addr}/file?Signature=abc"), "ExceptionMsg": "", "RowsDone": 3
        }]
    })
    .to_string();
    http(
        "200 OK",
        &format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ),
        body.as_bytes(),
    )
}

/// One server with `records` records of DATABASE (SQLite store, file:// objects), and a client
/// for it working in `work()`.
pub struct ClientEnv {
    pub dir: tempfile::TempDir,
    pub storage: String,
    pub server: Server,
    pub cli: Cli,
}

impl ClientEnv {
    /// `exports` is the body of the configuration's [exports] table; `more` is appended to the
    /// configuration as it is.
    pub fn start(records: u64, exports: &str, more: &str) -> ClientEnv {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path();
        let storage = format!("sqlite://{}", data.join("gpdiag.db").display());
        let config = data.join("gpdiag.toml");
        let objects = format!("url = \"file://{}\"", data.join("objects").display());
        let text = config_toml(&storage, &objects, exports) + more;
        std::fs::write(&config, text).unwrap();
        let server = Server::start(&config, &data.join("serve.log"));
        import_records(&storage, 0..records, DATABASE, 0);
        let work = data.join("work");
        std::fs::create_dir(&work).unwrap();
        let cli = Cli::new(&server.addr, &work);
        ClientEnv {
            dir,
            storage,
            server,
            cli,
        }
    }

    /// The client's working directory.
    pub fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    /// The bytes behind finished export `id`'s DownloadUrl, fetched from this server directly:
    /// a link may name another host (a proxy, `public_url`); its signature does not cover it.
    pub fn fetch_export(&self, id: i64) -> Vec<u8> {
        let record = self
            .server
            .downloads()
            .remove(&id)
            .expect("the export is listed");
        assert_eq!(record["Status"], "finished", "{record}");
        let link = record["DownloadUrl"].as_str().unwrap();
        let path = link
            .strip_prefix("http://")
            .and_then(|rest| rest.split_once('/'))
            .map(|(_, path)| path)
            .unwrap_or_else(|| panic!("not an http:// link: {link}"));
        let response = self.server.get(&format!("/{path}"));
        assert_eq!(response.status(), 200);
        response.bytes().unwrap().to_vec()
    }
}

/// `command` for the test instance, database and window, then `extra`.
pub fn window_args<'a>(command: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = command.to_vec();
    args.extend_from_slice(&[
        "--instance",
        INSTANCE,
        "--database",
        DATABASE,
        "--start",
        START_TIME,
        "--end",
        END_TIME,
    ]);
    args.extend_from_slice(extra);
    args
}

/// `gpdiag export` for the test instance, database and window, then `extra`.
pub fn export_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    window_args(&["export"], extra)
}
