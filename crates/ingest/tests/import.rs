//! Import end to end into a real SQLite store: both formats, idempotence, bad lines.

use chrono::{Duration, TimeZone, Utc};
use gpdiag_core::{Lang, RecordFilter, RecordOrder, TimeWindow};
use gpdiag_ingest::import::{import, OnBadLine};
use gpdiag_store::{Page, SqliteStore, Store};
use std::io::Cursor;

async fn store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("s.db").to_str().unwrap())
        .await
        .unwrap();
    (dir, store)
}

fn line(i: usize, sql: &str) -> String {
    serde_json::json!({
        "query_id": format!("q{i}"),
        "session_id": "s1",
        "database": "db",
        "user": "u",
        "start_time": format!("2026-11-01T10:00:{:02}.{:03}Z", i % 60, i % 1000),
        "duration_ms": i as i64,
        "status": "finished",
        "sql": sql,
    })
    .to_string()
}

async fn count(store: &SqliteStore) -> u64 {
    let start = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
    let filter = RecordFilter {
        instance: "gp-1".into(),
        database: Some("db".into()),
        window: TimeWindow::new(start, start + Duration::days(1)).unwrap(),
        user: None,
        keyword: None,
        condition: None,
    };
    store
        .search_records(
            &filter,
            RecordOrder::default(),
            Page {
                offset: 0,
                limit: 1,
            },
        )
        .await
        .unwrap()
        .total
}

#[tokio::test]
async fn json_lines_import_in_batches_and_reimport_is_idempotent() {
    let (_dir, store) = store().await;
    let text: String = (0..12_345).map(|i| line(i, "select 1") + "\n").collect();
    let mut seen = Vec::new();
    let report = import(
        Cursor::new(text.clone()),
        "gp-1",
        &store,
        OnBadLine::Stop,
        |n| seen.push(n),
    )
    .await
    .unwrap();
    assert_eq!(
        (report.imported, report.bad_lines.len(), report.stopped),
        (12_345, 0, false)
    );
    assert!(
        seen.len() >= 3 && *seen.last().unwrap() == 12_345,
        "{seen:?}"
    );
    assert_eq!(count(&store).await, 12_345);
    import(Cursor::new(text), "gp-1", &store, OnBadLine::Stop, |_| {})
        .await
        .unwrap();
    assert_eq!(
        count(&store).await,
        12_345,
        "a re-import duplicated records"
    );
}

#[tokio::test]
async fn bad_lines_are_reported_with_numbers_then_skipped_or_stop_the_import() {
    let lines = [
        line(1, "a"),
        "{\"query_id\": broken".to_owned(),
        line(3, "c"),
        String::new(),
        line(5, "e").replace("finished", "done"),
        line(6, "f"),
    ];
    let mut text = lines.join("\n").into_bytes();
    text.extend_from_slice(b"\n{\"query_id\":\"\xff\"}\n");
    text.extend_from_slice(line(8, "h").as_bytes());

    let (_dir, skipping) = store().await;
    let report = import(
        Cursor::new(text.clone()),
        "gp-1",
        &skipping,
        OnBadLine::Skip,
        |_| {},
    )
    .await
    .unwrap();
    let numbers: Vec<_> = report.bad_lines.iter().map(|b| b.line).collect();
    assert_eq!(numbers, [2, 5, 7]);
    assert!(
        report.bad_lines[1].reason.contains("status"),
        "{:?}",
        report.bad_lines
    );
    assert!(report.bad_lines[2].reason.contains("UTF-8"));
    assert_eq!((report.imported, report.stopped), (4, false));
    assert_eq!(count(&skipping).await, 4);

    let (_dir, stopping) = store().await;
    let report = import(
        Cursor::new(text),
        "gp-1",
        &stopping,
        OnBadLine::Stop,
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(
        (report.imported, report.stopped, report.bad_lines.len()),
        (1, true, 1)
    );
    assert_eq!(report.bad_lines[0].line, 2);
    assert_eq!(
        count(&stopping).await,
        1,
        "records before the bad line must be kept"
    );
}

#[tokio::test]
async fn the_export_csv_imports_in_every_language() {
    for lang in Lang::ALL {
        let (_dir, store) = store().await;
        let mut csv = csv::Writer::from_writer(Vec::new());
        csv.write_record(lang.header()).unwrap();
        csv.write_record([
            "q1",
            "s1",
            "db",
            "u",
            "finished",
            "2026-11-01T10:00:00.123Z",
            "1500",
            "select 'a,b'\nfrom \"t\"",
        ])
        .unwrap();
        csv.write_record([
            "q2",
            "s1",
            "db",
            "u",
            "running",
            "2026-11-01T10:00:01.000Z",
            "7",
            "select 2",
        ])
        .unwrap();
        csv.write_record([
            "q3",
            "s1",
            "db",
            "u",
            "finished",
            "not a time",
            "7",
            "select 3",
        ])
        .unwrap();
        let mut bytes = "\u{feff}".as_bytes().to_vec();
        bytes.extend(csv.into_inner().unwrap());
        let report = import(Cursor::new(bytes), "gp-1", &store, OnBadLine::Skip, |_| {})
            .await
            .unwrap();
        assert_eq!(report.imported, 2, "{lang:?}");
        assert_eq!(report.bad_lines.len(), 1);
        // The multi-line record spans lines 2-3, so the bad one starts on line 5.
        assert_eq!(report.bad_lines[0].line, 5, "{:?}", report.bad_lines);
        let q1 = store.get_record("gp-1", "q1").await.unwrap().unwrap();
        assert_eq!(q1.sql, "select 'a,b'\nfrom \"t\"");
        assert_eq!(q1.start_time.timestamp_millis() % 1000, 123);
        assert_eq!(q1.duration_ms, 1500);
    }
}

#[tokio::test]
async fn unknown_formats_are_refused() {
    let (_dir, store) = store().await;
    let err = import(
        Cursor::new("hello,world\n1,2\n"),
        "gp-1",
        &store,
        OnBadLine::Skip,
        |_| {},
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("neither JSON lines nor"), "{err}");
    let empty = import(Cursor::new("\n\n"), "gp-1", &store, OnBadLine::Stop, |_| {})
        .await
        .unwrap();
    assert_eq!(empty.imported, 0);
}
