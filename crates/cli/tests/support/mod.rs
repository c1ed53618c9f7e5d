//! Shared by the export process tests: the real `gpdiag` binary as a child process (killed on
//! drop, even on panic), signed API calls, configuration files, query records, export checks,
//! and private PostgreSQL and Garage servers started with the scripts in `scripts/`.

// Each test binary uses its own part of this module.
#![allow(dead_code)]

use chrono::{Duration as Span, TimeZone, Utc};
use gpdiag_core::{Lang, QueryRecord, QueryStatus};
use gpdiag_wire::sign::{self, Credentials};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_gpdiag");

pub const ACCOUNT: &str = "exporter";
pub const INSTANCE: &str = "gp-exports-proc";
pub const DATABASE: &str = "sales";
/// The window every test export covers; every generated record starts inside it.
pub const START_TIME: &str = "2026-01-01T00:00Z";
pub const END_TIME: &str = "2026-01-01T06:00Z";
pub const FILE_NAME: &str = "20260101000000-20260101060000.csv";

pub fn creds() -> Credentials {
    Credentials {
        access_key_id: "LTAIexportsprocess0001".into(),
        access_key_secret: "exports-process-test-secret-42".into(),
    }
}

/// A configuration with the test account and its diagnosis-capable instance. `objects` and
/// `exports` are the bodies of those tables.
pub fn config_toml(storage_url: &str, objects: &str, exports: &str) -> String {
    let key = creds();
    format!(
        r#"[storage]
url = "{storage_url}"

[objects]
{objects}

[exports]
{exports}

[[accounts]]
name = "{ACCOUNT}"
access_key_id = "{id}"
access_key_secret = "{secret}"

[[instances]]
id = "{INSTANCE}"
account = "{ACCOUNT}"
core_version = "6.3.10.1"
mode = "StorageElastic"
"#,
        id = key.access_key_id,
        secret = key.access_key_secret,
    )
}

/// Serialises the heavy process tests of one test binary: each runs servers doing real work
/// on two cores, and running them side by side only turns their deadlines into noise.
pub fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Waits for `done` to return Some, polling every `every`; panics with `what` after `timeout`.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut done: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = done() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(every);
    }
}

/// The child's exit status once it ends; if it still runs after `timeout`, it is killed and
/// the test fails with `why()`: a process that never ends must fail the test, not hang it.
pub fn exit_within(
    child: &mut Child,
    timeout: Duration,
    why: impl FnOnce() -> String,
) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{}", why());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One `gpdiag serve` process. Its standard output and error go to a file (a pipe nobody
/// reads would fill up and block the server). Dropping it kills the process.
pub struct Server {
    child: Option<Child>,
    /// `127.0.0.1:PORT`, as the server logged it.
    pub addr: String,
    pub log: PathBuf,
    client: reqwest::blocking::Client,
}

impl Server {
    /// Starts `gpdiag serve --config CONFIG` on a free port (port 0, read back from the log),
    /// with `GPDIAG_LOG=info` and no other `GPDIAG_*` variable from the test's environment.
    pub fn start(config: &Path, log: &Path) -> Server {
        Server::start_on(config, log, "127.0.0.1:0")
    }

    /// `start`, listening on `listen` (a restarted server takes its predecessor's address).
    pub fn start_on(config: &Path, log: &Path, listen: &str) -> Server {
        let out = fs::File::create(log).unwrap();
        let err = out.try_clone().unwrap();
        let mut command = Command::new(BIN);
        command
            .arg("serve")
            .arg("--config")
            .arg(config)
            .args(["--listen", listen])
            .current_dir(config.parent().unwrap())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("GPDIAG_") {
                command.env_remove(&name);
            }
        }
        command.env("GPDIAG_LOG", "info");
        let child = command.spawn().unwrap();
        let mut server = Server {
            child: Some(child),
            addr: String::new(),
            log: log.to_owned(),
            client: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .unwrap(),
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        server.addr = loop {
            let text = server.log_text();
            if let Some(addr) = text
                .lines()
                .filter(|l| l.contains("gpdiag listening"))
                .find_map(|l| l.split("address=").nth(1))
            {
                break addr.split_whitespace().next().unwrap().to_owned();
            }
            if let Some(status) = server.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("gpdiag serve exited at start ({status}):\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "gpdiag serve did not start listening:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let health = server.get("/healthz");
        assert_eq!(health.status(), 200);
        server
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the server runs").id()
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn get(&self, path: &str) -> reqwest::blocking::Response {
        self.client.get(self.url(path)).send().unwrap()
    }

    /// Fetches an absolute URL (a download link).
    pub fn fetch(&self, url: &str) -> reqwest::blocking::Response {
        self.client.get(url).send().unwrap()
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("the server runs");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// SIGTERM, and the exit status once it has stopped gracefully.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("the server runs");
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        exit_within(&mut child, Duration::from_secs(30), || {
            format!(
                "no graceful exit within 30 s of SIGTERM:\n{}",
                self.log_text()
            )
        })
    }

    /// A signed (ACS3) POST of one action; the status and the JSON body.
    pub fn call(&self, action: &str, params: &[(&str, &str)]) -> (u16, Value) {
        let params: Vec<_> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let req = sign::sign_acs3(
            &creds(),
            "POST",
            action,
            &params,
            &self.addr,
            &sign::format_timestamp(Utc::now()),
            &sign::new_nonce(),
            b"",
        );
        let mut builder = self
            .client
            .post(format!("http://{}/?{}", self.addr, req.query));
        for (name, value) in &req.headers {
            if name != "host" {
                builder = builder.header(name, value);
            }
        }
        let response = builder.send().unwrap();
        let status = response.status().as_u16();
        let text = response.text().unwrap();
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{action} answered {status} with non-JSON {text:?}: {e}"));
        (status, body)
    }

    /// Starts a `DownloadDiagnosisRecords` export of every record of the test instance's
    /// database `database`; returns its ID.
    pub fn start_export(&self, database: &str) -> i64 {
        let (status, body) = self.call(
            "DownloadDiagnosisRecords",
            &[
                ("DBInstanceId", INSTANCE),
                ("Database", database),
                ("StartTime", START_TIME),
                ("EndTime", END_TIME),
            ],
        );
        assert_eq!(status, 200, "{body}");
        body["DownloadId"]
            .as_str()
            .expect("DownloadId is a string")
            .parse()
            .unwrap()
    }

    /// `DescribeDownloadRecords` of the test instance, by download ID.
    pub fn downloads(&self) -> BTreeMap<i64, Value> {
        let (status, body) = self.call("DescribeDownloadRecords", &[("DBInstanceId", INSTANCE)]);
        assert_eq!(status, 200, "{body}");
        body["Records"]
            .as_array()
            .expect("Records is a list")
            .iter()
            .map(|r| (r["DownloadId"].as_i64().unwrap(), r.clone()))
            .collect()
    }

    /// Polls until every download in `ids` is listed and none of them is `running`.
    pub fn wait_until_ended(&self, ids: &[i64], timeout: Duration) -> BTreeMap<i64, Value> {
        wait_for(
            "the downloads to end",
            timeout,
            Duration::from_millis(500),
            || {
                let all = self.downloads();
                let ended = ids
                    .iter()
                    .all(|id| all.get(id).is_some_and(|r| r["Status"] != "running"));
                ended.then(|| all.into_iter().filter(|(id, _)| ids.contains(id)).collect())
            },
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log_text();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!(
                "--- last lines of {} ---\n{}",
                self.log.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Record `i` of a generated set: unique `q<i>` IDs, start times inside the test window, and
/// fields without quotes, commas or line breaks (so a file can be checked line by line).
/// `padding` extra characters lengthen the SQL (bigger files for the same rows).
pub fn record(i: u64, database: &str, padding: usize) -> QueryRecord {
    QueryRecord {
        instance: INSTANCE.into(),
        query_id: format!("q{i:08}"),
        session_id: format!("s{}", i % 97),
        database: database.into(),
        user: format!("u{}", i % 5),
        start_time: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
            + Span::milliseconds((i % 20_000_000) as i64),
        duration_ms: (i % 5000) as i64,
        status: QueryStatus::Finished,
        error: None,
        sql: format!("select {i} from t where c = 'x{}'", noise(i, padding)),
        plan_json: None,
        plan_text: None,
        rows: Some(1),
        source: "test".into(),
        ..Default::default()
    }
}

/// `len` hex digits that depend on `i` and do not compress well (object stores may compress).
fn noise(i: u64, len: usize) -> String {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b"0123456789abcdef"[(x & 15) as usize])
        })
        .collect()
}

/// Writes records `range` straight into the store at `storage_url`, in batches.
pub fn import_records(
    storage_url: &str,
    range: std::ops::Range<u64>,
    database: &str,
    padding: usize,
) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = gpdiag_store::open(storage_url).await.unwrap();
        let mut i = range.start;
        while i < range.end {
            let end = (i + 10_000).min(range.end);
            let batch: Vec<_> = (i..end).map(|n| record(n, database, padding)).collect();
            let expected = batch.len() as u64;
            assert_eq!(store.upsert_records(batch).await.unwrap(), expected);
            i = end;
        }
    });
}

/// Imports records `range` with `gpdiag records import` from a JSON-lines file.
pub fn import_records_cli(
    config: &Path,
    range: std::ops::Range<u64>,
    database: &str,
    padding: usize,
) {
    let dir = config.parent().unwrap();
    let file = dir.join(format!("records-{}-{}.jsonl", range.start, range.end));
    let mut text = String::new();
    for i in range.clone() {
        let r = record(i, database, padding);
        let line = serde_json::json!({
            "query_id": r.query_id,
            "session_id": r.session_id,
            "database": r.database,
            "user": r.user,
            "start_time": r.start_time.to_rfc3339(),
            "duration_ms": r.duration_ms,
            "status": r.status.as_str(),
            "error": null,
            "sql": r.sql,
            "plan_json": null,
            "plan_text": null,
            "rows": r.rows,
            "source": r.source,
        });
        text.push_str(&line.to_string());
        text.push('\n');
    }
    fs::write(&file, text).unwrap();
    let mut command = Command::new(BIN);
    command
        .args(["records", "import", "--instance", INSTANCE])
        .arg(&file)
        .arg("--config")
        .arg(config)
        .current_dir(dir);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("GPDIAG_") {
            command.env_remove(&name);
        }
    }
    let out = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "records import failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("Imported {} records", range.end - range.start)),
        "{stdout}"
    );
    fs::remove_file(&file).unwrap();
}

/// Every file under `dir`, as paths relative to it (with `/`), and their sizes.
pub fn files_under(dir: &Path) -> BTreeMap<String, u64> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, u64>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let Ok(entry) = entry else { continue };
            let path = entry.path();
            let Ok(meta) = fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).unwrap().to_string_lossy();
                out.insert(rel.replace('\\', "/"), meta.len());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Checks an English, plain export file of generated records: the header, CRLF lines, and
/// exactly the records `ids`, each once. Returns the row count.
pub fn check_export(bytes: &[u8], ids: std::ops::Range<u64>) -> u64 {
    let expected = ids.end - ids.start;
    assert!(
        !bytes.contains(&b'"'),
        "generated records need no quoting, so the file has no quote"
    );
    assert!(
        bytes.ends_with(b"\r\n"),
        "the file ends with a whole line (length {})",
        bytes.len()
    );
    let body = &bytes[..bytes.len() - 1];
    let mut lines = body.split(|b| *b == b'\n');
    let header = lines.next().expect("a header");
    assert_eq!(
        header,
        format!("{}\r", Lang::En.header().join(",")).as_bytes(),
        "the header"
    );
    let mut seen = vec![false; expected as usize];
    let mut rows = 0u64;
    for line in lines {
        let line = line
            .strip_suffix(b"\r")
            .unwrap_or_else(|| panic!("line {} does not end in CRLF", rows + 2));
        let fields = line.split(|b| *b == b',').count();
        assert_eq!(
            fields,
            8,
            "line {}: {}",
            rows + 2,
            String::from_utf8_lossy(line)
        );
        let id = line.split(|b| *b == b',').next().unwrap();
        let n: u64 = std::str::from_utf8(&id[1..])
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("line {}: bad ID {id:?}", rows + 2));
        assert!(ids.contains(&n), "record {n} is not one of {ids:?}");
        let n = (n - ids.start) as usize;
        assert!(!seen[n], "record {n} is in the file twice");
        seen[n] = true;
        rows += 1;
    }
    assert_eq!(rows, expected, "rows in the file");
    rows
}

pub fn script(name: &str) -> PathBuf {
    gpdiag_testkit::script(name)
}

/// A PostgreSQL server: the one `GPDIAG_TEST_PG_URL` names, or a private cluster stopped when
/// this is dropped.
pub struct Postgres(pub gpdiag_testkit::PgServer);

impl Postgres {
    pub fn get() -> Postgres {
        Postgres(gpdiag_testkit::PgServer::get())
    }

    /// Creates a fresh database with a unique name; dropped (connections and all) with the
    /// returned guard.
    pub fn create_database(&self, rt: &tokio::runtime::Runtime) -> Database<'_> {
        let name = format!("gpdiag_proc_{}", uuid::Uuid::new_v4().simple());
        rt.block_on(self.0.execute(&format!(
            "CREATE DATABASE {name} ENCODING 'UTF8' TEMPLATE template0"
        )));
        Database {
            server: self,
            url: self.0.url_for(&name),
            name,
        }
    }
}

pub struct Database<'a> {
    server: &'a Postgres,
    pub name: String,
    pub url: String,
}

impl Drop for Database<'_> {
    fn drop(&mut self) {
        // Its own runtime: this may run while a test's runtime is unwinding.
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let server = &self.server.0;
        let dropped = std::thread::scope(|s| {
            s.spawn(|| {
                let rt = tokio::runtime::Runtime::new().unwrap();
                rt.block_on(server.execute(&sql));
            })
            .join()
        });
        if dropped.is_err() {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}

/// A private Garage (S3) server of this test alone, started with scripts/s3-server in a fresh
/// directory, so the test may stop and restart it. Stopped when dropped.
pub struct Garage {
    dir: tempfile::TempDir,
    pub env: HashMap<String, String>,
}

impl Garage {
    pub fn start() -> Garage {
        let dir = tempfile::Builder::new()
            .prefix("gpdiag-s3-")
            .tempdir_in("/tmp")
            .unwrap();
        let mut garage = Garage {
            dir,
            env: HashMap::new(),
        };
        garage.env = garage.run("start");
        for name in [
            "GPDIAG_TEST_S3_ENDPOINT",
            "GPDIAG_TEST_S3_REGION",
            "GPDIAG_TEST_S3_BUCKET",
            "GPDIAG_TEST_S3_ACCESS_KEY_ID",
            "GPDIAG_TEST_S3_SECRET_ACCESS_KEY",
        ] {
            assert!(garage.env.contains_key(name), "s3-server printed no {name}");
        }
        garage
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `scripts/s3-server ACTION DIR`, which must succeed; its standard output.
    fn script(&self, action: &str) -> String {
        let out = Command::new(script("s3-server"))
            .arg(action)
            .arg(self.dir.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "scripts/s3-server {action} failed ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// Runs `scripts/s3-server ACTION DIR`; the exports it printed.
    fn run(&self, action: &str) -> HashMap<String, String> {
        self.script(action)
            .lines()
            .filter_map(|line| {
                let line = line.trim();
                let (name, value) = line.strip_prefix("export ")?.split_once('=')?;
                Some((name.to_owned(), value.to_owned()))
            })
            .collect()
    }

    pub fn stop(&self) {
        self.run("stop");
    }

    /// Starts it again in the same directory: same ports, bucket and key.
    pub fn restart(&self) {
        let env = self.run("start");
        assert_eq!(
            env, self.env,
            "a restarted Garage keeps its endpoint and key"
        );
    }

    pub fn var(&self, name: &str) -> &str {
        &self.env[name]
    }

    /// Multipart uploads begun in the bucket and neither completed nor aborted.
    pub fn unfinished_uploads(&self) -> u64 {
        let out = self.script("unfinished");
        out.trim()
            .parse()
            .unwrap_or_else(|_| panic!("scripts/s3-server unfinished printed {out:?}"))
    }

    /// Bytes in Garage's data directory: grows as parts are uploaded.
    pub fn data_bytes(&self) -> u64 {
        files_under(&self.dir.path().join("data")).values().sum()
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        let _ = Command::new(script("s3-server"))
            .arg("stop")
            .arg(self.dir.path())
            .output();
    }
}
