//! The log tailer against a real directory and a real SQLite store: resuming after a restart,
//! partial trailing records, rotation, renames, truncation and vanished files. The records
//! themselves are the parser's business (logs_fixtures.rs); here every scenario must end with
//! exactly the records one uninterrupted read gives.

use gpdiag_core::{QueryRecord, RecordFilter, RecordOrder, TimeWindow};
use gpdiag_ingest::collect::Tailer;
use gpdiag_ingest::logs::LogFormat;
use gpdiag_store::{SqliteStore, Store};
use std::path::{Path, PathBuf};

const MAX_RECORD: usize = 1 << 20;

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/postgresql-15")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The fixture with its sessions renamed, so its records are new ones.
fn other_sessions(bytes: &[u8]) -> Vec<u8> {
    String::from_utf8_lossy(bytes)
        .replace(",6b1312", ",7b1312")
        .replace("\"session_id\":\"6b1312", "\"session_id\":\"7b1312")
        .into_bytes()
}

struct Setup {
    _dir: tempfile::TempDir,
    logs: PathBuf,
    db: PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("log");
    std::fs::create_dir(&logs).unwrap();
    let db = dir.path().join("gpdiag.db");
    Setup {
        _dir: dir,
        logs,
        db,
    }
}

async fn store(path: &Path) -> SqliteStore {
    SqliteStore::open(path.to_str().unwrap()).await.unwrap()
}

async fn all_records(store: &dyn Store, instance: &str) -> Vec<QueryRecord> {
    let start = chrono::DateTime::from_timestamp(0, 0).unwrap();
    let end = chrono::DateTime::from_timestamp(4_000_000_000, 0).unwrap();
    let filter = RecordFilter {
        instance: instance.into(),
        database: None,
        window: TimeWindow::new(start, end).unwrap(),
        user: None,
        keyword: None,
        condition: None,
    };
    let mut stream = store.stream_records(&filter, RecordOrder::default(), 1000);
    let mut out = Vec::new();
    while let Some(batch) = stream.recv().await {
        out.extend(batch.unwrap());
    }
    out.sort_by(|a, b| a.query_id.cmp(&b.query_id));
    out
}

/// What one uninterrupted read of `files` (name, bytes) stores.
async fn reference(format: LogFormat, files: &[(&str, Vec<u8>)]) -> Vec<QueryRecord> {
    let s = setup();
    for (name, bytes) in files {
        std::fs::write(s.logs.join(name), bytes).unwrap();
    }
    let store = store(&s.db).await;
    let mut tailer = Tailer::new("gp-ref", &s.logs, format, MAX_RECORD);
    tailer.pass(&store).await.unwrap();
    let mut records = all_records(&store, "gp-ref").await;
    for r in &mut records {
        r.instance = "gp-1".into();
    }
    records
}

fn append(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(bytes).unwrap();
}

fn keys(records: &[QueryRecord]) -> Vec<&str> {
    records.iter().map(|r| r.query_id.as_str()).collect()
}

#[tokio::test]
async fn resumes_where_it_stopped_and_waits_for_partial_records() {
    for (format, name) in [
        (LogFormat::Csvlog, "csvlog_sample.csv"),
        (LogFormat::Jsonlog, "jsonlog_sample.json"),
    ] {
        let bytes = fixture(name);
        let file = format!("postgresql-1{}", format.file_extension());
        let expected = reference(format, &[(&file, bytes.clone())]).await;
        assert!(
            expected.len() > 150,
            "{name}: only {} records",
            expected.len()
        );

        let s = setup();
        let path = s.logs.join(&file);
        // Cut inside a record, at several points, restarting the tailer (a gpdiag restart)
        // after every piece.
        let cuts = [
            0,
            bytes.len() / 7,
            bytes.len() / 3 + 11,
            bytes.len() / 2 + 3,
            bytes.len() - 1,
        ];
        let mut previous = 0;
        for &cut in cuts.iter().chain([bytes.len()].iter()) {
            append(&path, &bytes[previous..cut]);
            previous = cut;
            let store = store(&s.db).await;
            let mut tailer = Tailer::new("gp-1", &s.logs, format, MAX_RECORD);
            let stats = tailer.pass(&store).await.unwrap();
            assert_eq!(stats.bad_records, 0, "{name} cut at {cut}");
            let now = all_records(&store, "gp-1").await;
            // Never more than the whole file gives, never a record that differs from it.
            for r in &now {
                let want = expected
                    .iter()
                    .find(|e| e.query_id == r.query_id)
                    .unwrap_or_else(|| panic!("{name}: unexpected record {}", r.query_id));
                if cut == bytes.len() {
                    assert_eq!(r, want, "{name}");
                }
            }
        }
        let store = store(&s.db).await;
        assert_eq!(
            keys(&all_records(&store, "gp-1").await),
            keys(&expected),
            "{name}"
        );
        assert_eq!(all_records(&store, "gp-1").await, expected, "{name}");
        // The position is the end of the file, or the start of an execute record whose plan
        // could still follow it (the extended protocol logs a portal's plan after it).
        let positions = store.collector_files("gp-1").await.unwrap();
        assert_eq!(positions.len(), 1);
        let (offset, len) = (positions[0].offset, bytes.len() as u64);
        assert!(offset <= len, "{name}: {offset} of {len}");

        // Nothing new: a restarted tailer reads at most what lies past the position, and
        // stores nothing different.
        let mut tailer = Tailer::new("gp-1", &s.logs, format, MAX_RECORD);
        let stats = tailer.pass(&store).await.unwrap();
        assert_eq!((stats.bytes, stats.lag_bytes), (len - offset, 0), "{name}");
        assert_eq!(all_records(&store, "gp-1").await, expected, "{name}");
    }
}

#[tokio::test]
async fn one_tailer_follows_appends_rotation_and_new_files() {
    let bytes = fixture("csvlog_sample.csv");
    let second = other_sessions(&bytes);
    let expected = reference(
        LogFormat::Csvlog,
        &[("a.csv", bytes.clone()), ("b.csv", second.clone())],
    )
    .await;
    let s = setup();
    let store = store(&s.db).await;
    let mut tailer = Tailer::new("gp-1", &s.logs, LogFormat::Csvlog, MAX_RECORD);
    let half = bytes.len() / 2;
    append(&s.logs.join("a.csv"), &bytes[..half]);
    tailer.pass(&store).await.unwrap();
    append(&s.logs.join("a.csv"), &bytes[half..]);
    // The server rotates: a new file appears, and the old one stays.
    append(&s.logs.join("b.csv"), &second[..100]);
    tailer.pass(&store).await.unwrap();
    append(&s.logs.join("b.csv"), &second[100..]);
    // Files of the other format are not read.
    std::fs::write(s.logs.join("b.json"), b"{not json\n").unwrap();
    let stats = tailer.pass(&store).await.unwrap();
    assert_eq!((stats.files, stats.bad_records, stats.lag_bytes), (2, 0, 0));
    assert_eq!(all_records(&store, "gp-1").await, expected);
}

#[tokio::test]
async fn a_renamed_file_is_not_read_again_and_a_truncated_one_is_read_from_the_start() {
    let bytes = fixture("csvlog_sample.csv");
    let second = other_sessions(&bytes);
    let s = setup();
    let store = store(&s.db).await;
    append(&s.logs.join("current.csv"), &bytes);
    Tailer::new("gp-1", &s.logs, LogFormat::Csvlog, MAX_RECORD)
        .pass(&store)
        .await
        .unwrap();
    let before = all_records(&store, "gp-1").await;
    let saved_offset = store.collector_files("gp-1").await.unwrap()[0].offset;

    // An outside rotation renames the file while gpdiag is down; the restarted tailer knows
    // it by its identity and reads nothing of it again.
    std::fs::rename(s.logs.join("current.csv"), s.logs.join("previous.csv")).unwrap();
    let mut tailer = Tailer::new("gp-1", &s.logs, LogFormat::Csvlog, MAX_RECORD);
    let stats = tailer.pass(&store).await.unwrap();
    assert_eq!(
        stats.bytes,
        bytes.len() as u64 - saved_offset,
        "the renamed file was read again"
    );
    assert_eq!(all_records(&store, "gp-1").await, before);
    let names: Vec<_> = store
        .collector_files("gp-1")
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.file_name)
        .collect();
    assert_eq!(
        names,
        vec!["previous.csv".to_owned()],
        "the old name is forgotten"
    );

    // Truncated in place and written anew (copytruncate): read from its start.
    std::fs::write(s.logs.join("previous.csv"), &second[..second.len() / 3]).unwrap();
    let stats = tailer.pass(&store).await.unwrap();
    assert!(stats.bytes > 0 && stats.records > 0, "{stats:?}");
    let after = all_records(&store, "gp-1").await;
    assert!(after.len() > before.len());
    assert!(after.iter().any(|r| r.session_id.starts_with("7b1312")));

    // A deleted file's position is dropped; its records stay.
    std::fs::remove_file(s.logs.join("previous.csv")).unwrap();
    tailer.pass(&store).await.unwrap();
    assert!(store.collector_files("gp-1").await.unwrap().is_empty());
    assert_eq!(all_records(&store, "gp-1").await.len(), after.len());
}

#[tokio::test]
async fn an_oversized_statement_is_stored_cut_and_flagged_and_reading_goes_on() {
    let s = setup();
    let store = store(&s.db).await;
    let huge = format!("SELECT '{}'", "x".repeat(3 * MAX_RECORD));
    let line = |n: u32, sql: &str| {
        format!(
            "2026-12-04 19:21:24.765 UTC,\"u\",\"db\",6275,\"127.0.0.1:1\",6b1312b4.1883,{n},\"SELECT\",\
2026-12-04 19:21:24 UTC,3/2,0,LOG,00000,\"duration: 1.500 ms  statement: {}\",,,,,,,,,\"psql\",\"client backend\",,0\n",
            sql.replace('"', "\"\"")
        )
    };
    append(&s.logs.join("p.csv"), line(1, &huge).as_bytes());
    append(&s.logs.join("p.csv"), line(2, "SELECT 2").as_bytes());
    let mut tailer = Tailer::new("gp-1", &s.logs, LogFormat::Csvlog, MAX_RECORD);
    let stats = tailer.pass(&store).await.unwrap();
    assert_eq!(stats.bad_records, 0);
    let records = all_records(&store, "gp-1").await;
    assert_eq!(keys(&records), vec!["6b1312b4.1883:1", "6b1312b4.1883:2"]);
    assert!(records[0].sql_truncated);
    assert!(records[0].sql.len() <= MAX_RECORD && records[0].sql.starts_with("SELECT 'xxx"));
    assert_eq!(records[0].duration_us, Some(1500));
    assert!(!records[1].sql_truncated);
    assert_eq!(records[1].sql, "SELECT 2");
}

/// Zeros in a damaged file can land inside a record; no store can hold U+0000 (PostgreSQL
/// refuses it), so that record is skipped as unreadable and the rest is read.
#[tokio::test]
async fn a_record_with_a_nul_character_is_skipped_as_unreadable() {
    let s = setup();
    let store = store(&s.db).await;
    let log = s.logs.join("p.csv");
    append(
        &log,
        statement_line(
            "6b1312b4.1883",
            1,
            "duration: 1.500 ms  statement: SELECT '\0'",
        )
        .as_bytes(),
    );
    append(
        &log,
        statement_line(
            "6b1312b4.1883",
            2,
            "duration: 2.000 ms  statement: SELECT 2",
        )
        .as_bytes(),
    );
    let mut tailer = Tailer::new("gp-1", &s.logs, LogFormat::Csvlog, MAX_RECORD);
    let stats = tailer.pass(&store).await.unwrap();
    assert_eq!((stats.records, stats.bad_records), (1, 1));
    let records = all_records(&store, "gp-1").await;
    assert_eq!(keys(&records), vec!["6b1312b4.1883:2"]);
    // Read past, not again.
    assert_eq!(tailer.pass(&store).await.unwrap().bad_records, 0);
}

/// A csvlog statement record of session `session`, line `n`.
fn statement_line(session: &str, n: u32, message: &str) -> String {
    format!(
        "2026-12-04 19:21:24.765 UTC,\"u\",\"db\",6275,\"127.0.0.1:1\",{session},{n},\"SELECT\",\
2026-12-04 19:21:24 UTC,3/2,0,LOG,00000,\"{}\",,,,,,,,,\"psql\",\"client backend\",,0\n",
        message.replace('"', "\"\"")
    )
}

#[tokio::test]
async fn a_session_gone_idle_after_an_execute_holds_the_position_back_only_so_far() {
    for (busy_records, held) in [(100, true), (12_000, false)] {
        let s = setup();
        let store = store(&s.db).await;
        let path = s.logs.join("p.csv");
        // An execute whose plan could still follow, then its session goes quiet while another
        // session logs 100 KB, or 12 MB.
        let execute = statement_line(
            "7c000000.1",
            1,
            "duration: 0.042 ms  execute <unnamed>: SELECT 1",
        );
        append(&path, execute.as_bytes());
        let filler = "x".repeat(1000);
        let mut busy = String::new();
        for n in 1..=busy_records {
            busy.push_str(&statement_line(
                "6b1312b4.1883",
                n,
                &format!("duration: 1.000 ms  statement: SELECT '{filler}'"),
            ));
        }
        append(&path, busy.as_bytes());
        let mut tailer = Tailer::new("gp-1", &s.logs, LogFormat::Csvlog, MAX_RECORD);
        let stats = tailer.pass(&store).await.unwrap();
        assert_eq!(stats.records, u64::from(busy_records) + 1);
        let len = std::fs::metadata(&path).unwrap().len();
        let offset = store.collector_files("gp-1").await.unwrap()[0].offset;
        if held {
            // Held back to the execute's own start, a record boundary.
            assert_eq!(offset, 0, "{busy_records} records");
        } else {
            // Left more than 8 MiB behind, it stops waiting: the whole file is done.
            assert_eq!(offset, len, "{busy_records} records");
        }
    }
}

#[tokio::test]
async fn a_restart_that_re_reads_a_statement_without_its_plan_keeps_the_plan() {
    let s = setup();
    let store = store(&s.db).await;
    let path = s.logs.join("p.csv");
    let plan = "duration: 0.400 ms  plan:\n{\n  \"Query Text\": \"SELECT 2\",\n  \"Plan\": {\n    \"Node Type\": \"Result\"\n  }\n}";
    // Session a's plan, then session b's execute (held: its plan may follow), then a's
    // statement. The saved position stays at b's execute, after a's plan.
    let text = [
        statement_line("6b1312b4.a", 1, plan),
        statement_line(
            "6b1312b4.b",
            1,
            "duration: 0.042 ms  execute <unnamed>: SELECT 1",
        ),
        statement_line("6b1312b4.a", 2, "duration: 0.500 ms  statement: SELECT 2"),
    ]
    .concat();
    append(&path, text.as_bytes());
    Tailer::new("gp-1", &s.logs, LogFormat::Csvlog, MAX_RECORD)
        .pass(&store)
        .await
        .unwrap();
    let first = all_records(&store, "gp-1").await;
    let statement = first.iter().find(|r| r.query_id == "6b1312b4.a:2").unwrap();
    assert!(statement
        .plan_json
        .as_deref()
        .unwrap()
        .contains("\"Result\""));
    let offset = store.collector_files("gp-1").await.unwrap()[0].offset;
    assert_eq!(offset, statement_line("6b1312b4.a", 1, plan).len() as u64);

    // A restart reads from there: a's statement comes again, without its plan.
    let stats = Tailer::new("gp-1", &s.logs, LogFormat::Csvlog, MAX_RECORD)
        .pass(&store)
        .await
        .unwrap();
    assert_eq!(stats.records, 2);
    assert_eq!(all_records(&store, "gp-1").await, first);
}

#[tokio::test]
async fn collect_once_refuses_while_another_process_holds_the_instance() {
    use gpdiag_ingest::collect::{CollectError, CollectSettings, Collector};
    let s = setup();
    append(&s.logs.join("p.csv"), &fixture("csvlog_sample.csv"));
    let store: std::sync::Arc<dyn Store> = std::sync::Arc::new(store(&s.db).await);
    let settings: CollectSettings =
        toml::from_str(&format!("log_dir = {:?}", s.logs.display().to_string())).unwrap();
    let once = Collector::new("gp-1", settings, None, store.clone(), "cron".into());
    let now = chrono::Utc::now();
    assert!(store
        .claim_collector("gp-1", "server-a", now, chrono::Duration::seconds(30))
        .await
        .unwrap());
    let err = once.once().await.unwrap_err();
    assert!(matches!(err, CollectError::Busy(_)), "{err}");
    assert!(all_records(store.as_ref(), "gp-1").await.is_empty());

    store.release_collector("gp-1", "server-a").await.unwrap();
    let report = once.once().await.unwrap();
    assert!(report.tail.records > 150, "{report:?}");
    // It gave the instance back: the server takes it at once.
    assert!(store
        .claim_collector("gp-1", "server-a", now, chrono::Duration::seconds(30))
        .await
        .unwrap());
}
