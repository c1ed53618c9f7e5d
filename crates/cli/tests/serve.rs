//! The real `gpdiag` binary as an operator runs it: first start, key commands, logs, shutdown.

use gpdiag_wire::sign::{self, Credentials};
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_gpdiag");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Server {
    child: Child,
    port: u16,
}

impl Server {
    /// Starts `gpdiag serve` in `dir` (so the embedded defaults put data in `dir/gpdiag-data`).
    fn start(dir: &Path, extra_env: &[(&str, &str)]) -> Server {
        let port = free_port();
        let child = Command::new(BIN)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .current_dir(dir)
            .env("GPDIAG_LOG", "trace")
            .envs(extra_env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let server = Server { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while reqwest::blocking::get(format!("http://127.0.0.1:{port}/healthz")).is_err() {
            assert!(Instant::now() < deadline, "the server did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// SIGTERM, then the exit status and everything it printed.
    fn stop(mut self) -> (std::process::ExitStatus, String, String) {
        let killed = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "no graceful exit within 10 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut out = String::new();
        let mut err = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        (status, out, err)
    }

    fn call(
        &self,
        creds: &Credentials,
        action: &str,
        params: &[(&str, &str)],
    ) -> (u16, serde_json::Value) {
        let params: Vec<_> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let host = format!("127.0.0.1:{}", self.port);
        let req = sign::sign_acs3(
            creds,
            "POST",
            action,
            &params,
            &host,
            &sign::format_timestamp(chrono::Utc::now()),
            &sign::new_nonce(),
            b"",
        );
        let client = reqwest::blocking::Client::new();
        let mut builder = client.post(format!("http://{host}/?{}", req.query));
        for (name, value) in &req.headers {
            if name != "host" {
                builder = builder.header(name, value);
            }
        }
        let response = builder.send().unwrap();
        let status = response.status().as_u16();
        (status, response.json().unwrap())
    }
}

/// Reads `AccessKeyId: …` and `AccessKeySecret: …` lines.
fn parse_key(text: &str) -> Option<Credentials> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
    };
    Some(Credentials {
        access_key_id: field("AccessKeyId:")?,
        access_key_secret: field("AccessKeySecret:")?,
    })
}

#[test]
fn first_start_creates_a_key_once_and_never_logs_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    // The bootstrap key is printed before the server listens, so stdout already has it.
    let (status, out, err) = server.stop();
    assert!(status.success(), "exit status {status}");
    let key = parse_key(&out).expect("the first start prints a key");
    assert!(key.access_key_id.starts_with("LTAI"));
    assert!(
        !err.contains(&key.access_key_secret),
        "the secret reached the log"
    );
    assert!(dir.path().join("gpdiag-data/gpdiag.db").exists());

    // Second start: same data directory, no new key, and the printed key works.
    let server = Server::start(dir.path(), &[]);
    let (code, body) = server.call(&key, "DescribeDBInstances", &[("RegionId", "cn-hangzhou")]);
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["TotalRecordCount"], 0);
    let (status, out, err) = server.stop();
    assert!(status.success());
    assert!(
        parse_key(&out).is_none(),
        "a second start printed another key: {out}"
    );
    assert!(
        !err.contains(&key.access_key_secret),
        "the secret reached the log"
    );
}

#[test]
fn keys_commands_work_against_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[("GPDIAG_CALLS_PER_SECOND", "1000")]);
    let created = Command::new(BIN)
        .args(["keys", "create", "--account", "ops"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let key = parse_key(&String::from_utf8_lossy(&created.stdout)).unwrap();

    let wait_for = |want: u16| {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let (code, body) =
                server.call(&key, "DescribeDBInstances", &[("RegionId", "cn-hangzhou")]);
            if code == want {
                return body;
            }
            assert!(Instant::now() < deadline, "still {code}: {body}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_for(200);
    let disabled = Command::new(BIN)
        .args(["keys", "disable", &key.access_key_id])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(disabled.status.success());
    let body = wait_for(400);
    assert_eq!(body["Code"], "InvalidAccessKeyId.Inactive");

    let unknown = Command::new(BIN)
        .args(["keys", "disable", "LTAIdoesnotexist"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("not found"));

    let (status, _, err) = server.stop();
    assert!(status.success());
    assert!(!err.contains(&key.access_key_secret));
}

#[test]
fn a_bad_config_fails_fast_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[limits]\ncalls_per_second = 0\n").unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--config", config.to_str().unwrap()])
        .current_dir(dir.path())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = Vec::new();
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        lines.push(line.unwrap());
    }
    let status = child.wait().unwrap();
    assert!(!status.success());
    assert!(lines.join("\n").contains("calls_per_second"), "{lines:?}");
}
