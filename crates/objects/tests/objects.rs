//! `Objects` end to end: the same suite on the local disk and on a real S3 server (Garage),
//! then what only S3 has: presigned links (fetched, tampered, expired), refused credentials,
//! and an unreachable endpoint.
//!
//! The S3 server is the one the `GPDIAG_TEST_S3_*` variables name (scripts/test starts one for
//! the whole run); otherwise this binary starts a private Garage with scripts/s3-server and
//! stops it at the end. Never skipped: without a server the tests fail.

use bytes::Bytes;
use futures_util::StreamExt;
use gpdiag_core::Secret;
use gpdiag_objects::{
    Objects, ObjectsErrorKind, ObjectsUrl, S3Settings, S3Timeouts, Upload, PART_SIZE,
};
use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const ENV_NAMES: [&str; 5] = [
    "GPDIAG_TEST_S3_ENDPOINT",
    "GPDIAG_TEST_S3_REGION",
    "GPDIAG_TEST_S3_BUCKET",
    "GPDIAG_TEST_S3_ACCESS_KEY_ID",
    "GPDIAG_TEST_S3_SECRET_ACCESS_KEY",
];

/// An S3 server for this test: the one the environment names, or a private Garage that is
/// stopped (and its directory removed) when this is dropped, even on panic.
struct S3Server {
    env: HashMap<String, String>,
    garage: Option<tempfile::TempDir>,
}

impl S3Server {
    fn get() -> S3Server {
        let set: Vec<&str> = ENV_NAMES
            .iter()
            .copied()
            .filter(|n| std::env::var_os(n).is_some())
            .collect();
        if !set.is_empty() {
            let env: HashMap<String, String> = ENV_NAMES
                .iter()
                .map(|n| {
                    let v = std::env::var(n).unwrap_or_else(|_| {
                        panic!(
                            "{n} is not set, but {} are: set all of {ENV_NAMES:?}",
                            set.join(", ")
                        )
                    });
                    assert!(!v.is_empty(), "{n} is set but empty");
                    (n.to_string(), v)
                })
                .collect();
            return S3Server { env, garage: None };
        }
        // Under /tmp, like the PostgreSQL cluster: short paths, reachable by any user.
        let dir = tempfile::Builder::new()
            .prefix("gpdiag-s3-")
            .tempdir_in("/tmp")
            .expect("cannot create a directory for the test S3 server");
        let out = Command::new(script())
            .arg("start")
            .arg(dir.path())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script().display()));
        let stdout = String::from_utf8_lossy(&out.stdout);
        // Keep the directory (and stop a half-started server) whatever happens next.
        let server = S3Server {
            env: parse_exports(&stdout),
            garage: Some(dir),
        };
        assert!(
            out.status.success() && ENV_NAMES.iter().all(|n| server.env.contains_key(*n)),
            "no S3 server for the tests: set the GPDIAG_TEST_S3_* variables, or make \
             scripts/s3-server work ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        server
    }

    fn var(&self, name: &str) -> &str {
        &self.env[name]
    }

    fn settings(&self, secret: &str) -> S3Settings {
        S3Settings {
            endpoint: Some(self.var("GPDIAG_TEST_S3_ENDPOINT").to_owned()),
            region: self.var("GPDIAG_TEST_S3_REGION").to_owned(),
            access_key_id: self.var("GPDIAG_TEST_S3_ACCESS_KEY_ID").to_owned(),
            secret_access_key: Secret::new(secret),
            // Garage answers virtual-hosted requests only with DNS for BUCKET.HOST.
            path_style: true,
            allow_http: true,
            timeouts: S3Timeouts {
                connect: Duration::from_secs(2),
                request: Duration::from_secs(30),
                max_retries: 2,
                retry_timeout: Duration::from_secs(10),
            },
        }
    }

    /// A store under a fresh prefix, so runs sharing one server never see each other's keys.
    fn objects(&self, secret: &str) -> (Objects, String) {
        let prefix = format!("run-{}", uuid::Uuid::new_v4().simple());
        let url = ObjectsUrl::S3 {
            bucket: self.var("GPDIAG_TEST_S3_BUCKET").to_owned(),
            prefix: Some(prefix.clone()),
        };
        (
            Objects::open(&url, Some(&self.settings(secret))).unwrap(),
            prefix,
        )
    }

    fn secret(&self) -> &str {
        self.var("GPDIAG_TEST_S3_SECRET_ACCESS_KEY")
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(dir) = &self.garage {
            match Command::new(script()).arg("stop").arg(dir.path()).output() {
                Ok(out) if out.status.success() => {}
                Ok(out) => eprintln!(
                    "stopping the test S3 server failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                ),
                Err(e) => eprintln!("cannot run {}: {e}", script().display()),
            }
        }
    }
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/s3-server")
}

/// `export NAME=VALUE` (or `NAME=VALUE`) lines; anything else is ignored.
fn parse_exports(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            let line = line.strip_prefix("export ").unwrap_or(line);
            let (name, value) = line.split_once('=')?;
            name.starts_with("GPDIAG_TEST_S3_")
                .then(|| (name.to_owned(), value.trim_matches('\'').to_owned()))
        })
        .collect()
}

/// Deterministic, incompressible-looking bytes (xorshift), so a misplaced part shows.
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

async fn read_all(objects: &Objects, key: &str, range: Option<Range<u64>>) -> (Vec<u8>, u64) {
    let download = objects.get_range(key, range).await.unwrap();
    let mut stream = download.stream;
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(
        out.len() as u64,
        download.range.end - download.range.start,
        "the stream yields exactly the range it reports"
    );
    (out, download.size)
}

async fn upload_bytes(objects: &Objects, key: &str, bytes: &[u8]) {
    let mut upload = objects.upload(key).await.unwrap();
    upload.write(Bytes::copy_from_slice(bytes)).await.unwrap();
    assert_eq!(upload.finish().await.unwrap(), bytes.len() as u64);
}

/// Polls `head` for a while: a dropped upload is aborted in the background.
async fn stays_absent(objects: &Objects, key: &str) {
    for _ in 0..10 {
        assert_eq!(
            objects.head(key).await.unwrap(),
            None,
            "{key} must not appear"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What every store must do. `local_dir` is the file:// directory, to look for leftovers.
async fn suite(objects: &Objects, local_dir: Option<&Path>) {
    a_large_upload_appears_only_when_finished(objects, local_dir).await;
    an_aborted_upload_leaves_nothing(objects, local_dir).await;
    a_dropped_upload_leaves_nothing(objects, local_dir).await;
    a_replaced_object_changes_at_once(objects).await;
    an_empty_object_can_be_written(objects).await;
    ranges_are_served_and_checked(objects).await;
    deletes_are_idempotent(objects).await;
    a_folder_is_deleted_whole(objects, local_dir).await;
    keys_are_checked_before_the_store_sees_them(objects).await;
    objects.check().await.unwrap();
}

async fn a_large_upload_appears_only_when_finished(objects: &Objects, local_dir: Option<&Path>) {
    let key = "exports/big/records.csv";
    // 12 MiB and a bit: two full parts and a short last one.
    let bytes = data(12 * 1024 * 1024 + 12_345, 7);
    let mut upload = objects.upload(key).await.unwrap();
    assert_eq!(objects.head(key).await.unwrap(), None);
    // Writes of odd sizes, one of them larger than a part, cross the part boundaries.
    let mut at = 0;
    for size in [1, 700_001, PART_SIZE + 3, 2_000_000, 3_333_333] {
        upload
            .write(Bytes::copy_from_slice(&bytes[at..at + size]))
            .await
            .unwrap();
        at += size;
        assert_eq!(
            objects.head(key).await.unwrap(),
            None,
            "visible after {at} bytes"
        );
    }
    upload
        .write(Bytes::copy_from_slice(&bytes[at..]))
        .await
        .unwrap();
    assert_eq!(upload.written(), bytes.len() as u64);
    assert_eq!(
        objects.head(key).await.unwrap(),
        None,
        "visible before finish"
    );
    assert_eq!(upload.finish().await.unwrap(), bytes.len() as u64);
    assert_eq!(objects.head(key).await.unwrap(), Some(bytes.len() as u64));
    let (read, size) = read_all(objects, key, None).await;
    assert_eq!(size, bytes.len() as u64);
    assert!(
        read == bytes,
        "the object's bytes differ from those written"
    );
    if let Some(dir) = local_dir {
        assert_eq!(
            files_under(dir),
            vec![key.to_owned()],
            "no staging file is left"
        );
    }
    objects.delete(key).await.unwrap();
    if let Some(dir) = local_dir {
        assert!(
            files_under(dir).is_empty(),
            "deleting leaves no file and no empty directory"
        );
    }
}

async fn an_aborted_upload_leaves_nothing(objects: &Objects, local_dir: Option<&Path>) {
    let key = "exports/aborted.csv";
    let mut upload = objects.upload(key).await.unwrap();
    // More than a part, so one is sent before the abort.
    upload
        .write(Bytes::from(data(PART_SIZE + 1000, 3)))
        .await
        .unwrap();
    upload.abort().await.unwrap();
    assert_eq!(objects.head(key).await.unwrap(), None);
    if let Some(dir) = local_dir {
        assert!(
            files_under(dir).is_empty(),
            "left behind: {:?}",
            files_under(dir)
        );
    }
}

async fn a_dropped_upload_leaves_nothing(objects: &Objects, local_dir: Option<&Path>) {
    let key = "exports/dropped.csv";
    let mut upload: Upload = objects.upload(key).await.unwrap();
    upload
        .write(Bytes::from(data(PART_SIZE + 1000, 4)))
        .await
        .unwrap();
    drop(upload);
    stays_absent(objects, key).await;
    if let Some(dir) = local_dir {
        // LocalFileSystem removes its staging file on drop, on a blocking thread.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !files_under(dir).is_empty() {
            assert!(
                Instant::now() < deadline,
                "a dropped upload left {:?}",
                files_under(dir)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn a_replaced_object_changes_at_once(objects: &Objects) {
    let key = "exports/replaced.csv";
    upload_bytes(objects, key, b"first version\n").await;
    let second = data(PART_SIZE + 77, 5);
    let mut upload = objects.upload(key).await.unwrap();
    upload.write(Bytes::from(second.clone())).await.unwrap();
    assert_eq!(
        read_all(objects, key, None).await.0,
        b"first version\n",
        "the old object stays whole until the new one is finished"
    );
    upload.finish().await.unwrap();
    assert!(read_all(objects, key, None).await.0 == second);
    objects.delete(key).await.unwrap();
}

async fn an_empty_object_can_be_written(objects: &Objects) {
    let key = "exports/empty.csv";
    let upload = objects.upload(key).await.unwrap();
    assert_eq!(upload.finish().await.unwrap(), 0);
    assert_eq!(objects.head(key).await.unwrap(), Some(0));
    assert_eq!(read_all(objects, key, None).await, (Vec::new(), 0));
    objects.delete(key).await.unwrap();
}

async fn ranges_are_served_and_checked(objects: &Objects) {
    let key = "exports/ranges.csv";
    let bytes = data(1000, 9);
    upload_bytes(objects, key, &bytes).await;
    assert_eq!(
        read_all(objects, key, Some(10..20)).await,
        (bytes[10..20].to_vec(), 1000)
    );
    assert_eq!(
        read_all(objects, key, Some(0..1)).await,
        (bytes[0..1].to_vec(), 1000)
    );
    // The end is cut to the object's size, as in HTTP.
    let download = objects.get_range(key, Some(990..5000)).await.unwrap();
    assert_eq!(download.range, 990..1000);
    assert_eq!(
        read_all(objects, key, Some(990..5000)).await,
        (bytes[990..].to_vec(), 1000)
    );
    for range in [1000..1001, 5000..6000, 5..5] {
        let e = objects
            .get_range(key, Some(range.clone()))
            .await
            .err()
            .unwrap_or_else(|| panic!("{range:?} was served"));
        assert_eq!(e.kind(), ObjectsErrorKind::InvalidRange, "{range:?}: {e}");
    }
    let e = objects
        .get_range("exports/missing.csv", None)
        .await
        .err()
        .unwrap();
    assert_eq!(e.kind(), ObjectsErrorKind::NotFound, "{e}");
    assert!(e.to_string().contains("exports/missing.csv"), "{e}");
    objects.delete(key).await.unwrap();
}

async fn deletes_are_idempotent(objects: &Objects) {
    let key = "exports/deleted.csv";
    upload_bytes(objects, key, b"x").await;
    assert_eq!(objects.head(key).await.unwrap(), Some(1));
    objects.delete(key).await.unwrap();
    assert_eq!(objects.head(key).await.unwrap(), None);
    objects.delete(key).await.unwrap();
}

async fn a_folder_is_deleted_whole(objects: &Objects, local_dir: Option<&Path>) {
    for key in [
        "exports/t1/a.csv",
        "exports/t1/sub/b.csv",
        "exports/t10/c.csv",
    ] {
        upload_bytes(objects, key, key.as_bytes()).await;
    }
    // Whole segments: exports/t1 is not a prefix of exports/t10.
    assert_eq!(objects.delete_prefix("exports/t1").await.unwrap(), 2);
    assert_eq!(objects.head("exports/t1/a.csv").await.unwrap(), None);
    assert_eq!(objects.head("exports/t1/sub/b.csv").await.unwrap(), None);
    assert_eq!(objects.head("exports/t10/c.csv").await.unwrap(), Some(17));
    assert_eq!(objects.delete_prefix("exports/t1").await.unwrap(), 0);
    assert_eq!(
        objects.delete_prefix("../x").await.unwrap_err().kind(),
        ObjectsErrorKind::InvalidKey
    );
    objects.delete("exports/t10/c.csv").await.unwrap();
    if let Some(dir) = local_dir {
        assert!(
            files_under(dir).is_empty(),
            "left behind: {:?}",
            files_under(dir)
        );
    }
}

async fn keys_are_checked_before_the_store_sees_them(objects: &Objects) {
    for key in [
        "",
        "/abs.csv",
        "../up.csv",
        "a/../b",
        "a//b",
        "a/",
        "a#1",
        "sp ace",
        "ü",
    ] {
        let kind = |r: Result<(), gpdiag_objects::ObjectsError>| r.unwrap_err().kind();
        assert_eq!(
            kind(objects.upload(key).await.map(|_| ())),
            ObjectsErrorKind::InvalidKey,
            "{key:?}"
        );
        assert_eq!(
            kind(objects.head(key).await.map(|_| ())),
            ObjectsErrorKind::InvalidKey
        );
        assert_eq!(
            kind(objects.delete(key).await),
            ObjectsErrorKind::InvalidKey
        );
        assert_eq!(
            kind(objects.get_range(key, None).await.map(|_| ())),
            ObjectsErrorKind::InvalidKey
        );
    }
}

/// Files under `dir`, relative, sorted; directories are not listed.
fn files_under(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(base, &path, out);
            } else {
                out.push(path.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_directory_passes_the_suite() {
    let tmp = tempfile::tempdir().unwrap();
    // A directory that does not exist yet: opening creates it.
    let dir = tmp.path().join("gpdiag-data/objects");
    let objects = Objects::open(&ObjectsUrl::File { path: dir.clone() }, None).unwrap();
    assert!(dir.is_dir());
    assert!(!objects.presigns());
    suite(&objects, Some(&dir)).await;
    upload_bytes(&objects, "k.csv", b"abc").await;
    assert!(objects
        .presigned_get("k.csv", Duration::from_secs(60))
        .await
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relative_file_url_is_under_the_working_directory() {
    // The default URL is relative; its meaning is fixed when opened. The test's relative path
    // climbs from the working directory to a temporary one, so nothing lands in the tree.
    let tmp = tempfile::tempdir().unwrap();
    let cwd = std::env::current_dir().unwrap();
    let up = "../".repeat(cwd.components().count() - 1);
    let relative = format!(
        "{up}{}/objects",
        tmp.path().strip_prefix("/").unwrap().display()
    );
    let settings = gpdiag_objects::ObjectsSettings {
        url: format!("file://{relative}"),
        ..Default::default()
    };
    let objects = Objects::from_settings(&settings, |_| None).unwrap();
    let canonical = tmp.path().canonicalize().unwrap().join("objects");
    assert_eq!(objects.name(), format!("file://{}", canonical.display()));
    upload_bytes(&objects, "a/b.csv", b"hello").await;
    assert_eq!(std::fs::read(canonical.join("a/b.csv")).unwrap(), b"hello");
}

/// Everything that needs the S3 server runs in this one test, so one private Garage serves it
/// and is reliably stopped at its end (the test harness has no after-all hook).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garage_passes_the_suite_and_presigned_links_work() {
    let server = S3Server::get();
    let (objects, prefix) = server.objects(server.secret());
    assert!(objects.presigns());
    objects.check().await.unwrap();
    suite(&objects, None).await;

    presigned_links_give_the_bytes_and_nothing_else(&objects, &prefix).await;
    a_wrong_secret_is_refused_without_leaking(&server).await;
    wrong_settings_fail_the_check(&server).await;
}

async fn wrong_settings_fail_the_check(server: &S3Server) {
    let mut settings = server.settings(server.secret());
    settings.region = "wrong-region".into();
    let url = ObjectsUrl::S3 {
        bucket: server.var("GPDIAG_TEST_S3_BUCKET").to_owned(),
        prefix: None,
    };
    let e = Objects::open(&url, Some(&settings))
        .unwrap()
        .check()
        .await
        .unwrap_err();
    assert!(!e.is_unreachable(), "{e}");
    assert!(e.to_string().contains("wrong-region"), "{e}");

    let missing = ObjectsUrl::S3 {
        bucket: "no-such-bucket-here".into(),
        prefix: None,
    };
    let e = Objects::open(&missing, Some(&server.settings(server.secret())))
        .unwrap()
        .check()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ObjectsErrorKind::Config, "{e}");
    assert!(e.to_string().contains("bucket does not exist"), "{e}");
}

async fn presigned_links_give_the_bytes_and_nothing_else(objects: &Objects, prefix: &str) {
    let key = "exports/linked.csv";
    let bytes = data(PART_SIZE + 4321, 11);
    upload_bytes(objects, key, &bytes).await;
    let http = reqwest::Client::new();
    let get = |url: String| {
        let http = http.clone();
        async move {
            let response = http.get(&url).send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.bytes().await.unwrap().to_vec())
        }
    };

    let url = objects
        .presigned_get(key, Duration::from_secs(300))
        .await
        .unwrap()
        .unwrap();
    assert!(
        url.path().ends_with(&format!("/{prefix}/{key}")),
        "the link names the key under the prefix: {url}"
    );
    let (status, body) = get(url.to_string()).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(body == bytes, "the link gives the object's exact bytes");
    let response = http.get(url.clone()).send().await.unwrap();
    assert_eq!(
        response.headers()["content-type"],
        "text/csv; charset=utf-8",
        "a .csv is stored as CSV, so a browser saves it as one"
    );

    // A changed signature, a changed key and a longer lifetime are all refused: Garage checks
    // SigV4 on presigned requests.
    let signature = url
        .query_pairs()
        .find(|(k, _)| k == "X-Amz-Signature")
        .map(|(_, v)| v.into_owned())
        .expect("a SigV4 signature");
    let flipped = {
        let mut s = signature.clone();
        let last = s.pop().unwrap();
        s.push(if last == '0' { '1' } else { '0' });
        s
    };
    let tampered = [
        url.as_str().replace(&signature, &flipped),
        url.as_str().replace("linked.csv", "ranges.csv"),
        url.as_str()
            .replace("X-Amz-Expires=300", "X-Amz-Expires=600"),
    ];
    for tampered in tampered {
        assert_ne!(tampered, url.as_str());
        let (status, body) = get(tampered.clone()).await;
        assert_eq!(
            status,
            403,
            "{tampered} gave {}",
            String::from_utf8_lossy(&body)
        );
    }

    // An expired link is refused. AWS answers 403 (AccessDenied, "Request has expired");
    // Garage answers 400 (InvalidRequest, "Date is too old"). Either way: no bytes.
    let short = objects
        .presigned_get(key, Duration::from_secs(1))
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (status, body) = get(short.to_string()).await;
    let text = String::from_utf8_lossy(&body);
    assert!(
        status == 403 || (status == 400 && (text.contains("too old") || text.contains("xpired"))),
        "an expired link gave {status}: {text}"
    );
    objects.delete(key).await.unwrap();
}

async fn a_wrong_secret_is_refused_without_leaking(server: &S3Server) {
    let wrong = "wrong-secret-0123456789abcdef0123456789abcdef";
    let (objects, _) = server.objects(wrong);
    let key_id = server.var("GPDIAG_TEST_S3_ACCESS_KEY_ID");
    let mut errors = vec![
        objects.head("exports/x.csv").await.unwrap_err(),
        objects.check().await.unwrap_err(),
        objects.upload("exports/x.csv").await.unwrap_err(),
        objects
            .get_range("exports/x.csv", None)
            .await
            .err()
            .unwrap(),
    ];
    assert_eq!(errors[0].kind(), ObjectsErrorKind::Denied, "{}", errors[0]);
    errors.push(objects.delete("exports/x.csv").await.unwrap_err());
    for e in &errors {
        assert_eq!(e.kind(), ObjectsErrorKind::Denied, "{e}");
        for text in [e.to_string(), format!("{e:?}")] {
            assert!(!text.contains(wrong), "the secret leaked: {text}");
            assert!(!text.contains(server.secret()), "the secret leaked: {text}");
            assert!(!text.contains(key_id), "the key id leaked: {text}");
        }
    }
    // A link signed with the wrong secret is refused too.
    let url = objects
        .presigned_get("exports/x.csv", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    let status = reqwest::get(url).await.unwrap().status().as_u16();
    assert_eq!(status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_store_is_reported_promptly_and_without_secrets() {
    // A port nobody listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let secret = "unreachable-secret-9f8e7d6c5b4a";
    let settings = S3Settings {
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        region: "garage".into(),
        access_key_id: "GKunreachablekeyid".into(),
        secret_access_key: Secret::new(secret),
        path_style: true,
        allow_http: true,
        timeouts: S3Timeouts {
            connect: Duration::from_secs(1),
            request: Duration::from_secs(5),
            max_retries: 1,
            retry_timeout: Duration::from_secs(3),
        },
    };
    let objects = Objects::open(
        &ObjectsUrl::S3 {
            bucket: "gpdiag-test".into(),
            prefix: None,
        },
        Some(&settings),
    )
    .unwrap();
    let started = Instant::now();
    let errors = vec![
        objects.head("exports/a.csv").await.unwrap_err(),
        objects.upload("exports/a.csv").await.unwrap_err(),
        objects
            .get_range("exports/a.csv", None)
            .await
            .err()
            .unwrap(),
        objects.delete("exports/a.csv").await.unwrap_err(),
        objects.check().await.unwrap_err(),
    ];
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(20), "took {elapsed:?}");
    for e in &errors {
        assert!(e.is_unreachable(), "{e}");
        let text = e.to_string();
        assert!(
            text.contains(&format!("127.0.0.1:{port}")),
            "names the endpoint: {text}"
        );
        for text in [text, format!("{e:?}")] {
            assert!(!text.contains(secret), "the secret leaked: {text}");
            assert!(
                !text.contains("GKunreachablekeyid"),
                "the key id leaked: {text}"
            );
        }
    }
    // Signing needs no connection.
    assert!(objects
        .presigned_get("exports/a.csv", Duration::from_secs(60))
        .await
        .unwrap()
        .is_ok());
}
