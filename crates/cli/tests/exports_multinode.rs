//! Two `gpdiag serve` processes sharing one PostgreSQL database and one `file://` directory:
//! exports started through either are each run exactly once, and both processes do some.
//!
//! The server is `GPDIAG_TEST_PG_URL` when set; otherwise this test starts a private cluster
//! with scripts/pg-cluster. Never skipped.

mod support;

use gpdiag_core::TaskStatus;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use support::*;

const TASKS: usize = 50;
const RECORDS: u64 = 20_000;

/// The task IDs of the log lines with `message`, in order.
fn logged_tasks(log: &str, message: &str) -> Vec<i64> {
    log.lines()
        .filter(|l| l.contains(message))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("task="))
                .map(|n| n.parse().unwrap())
        })
        .collect()
}

#[test]
fn two_servers_on_one_postgres_run_each_export_exactly_once() {
    let began = Instant::now();
    let pg = Postgres::get();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = pg.create_database(&rt);
    let dir = tempfile::tempdir().unwrap();
    let objects = dir.path().join("objects");
    let config = dir.path().join("gpdiag.toml");
    std::fs::write(
        &config,
        config_toml(
            &db.url,
            &format!("url = \"file://{}\"", objects.display()),
            &format!("max_running_per_account = {TASKS}"),
        ),
    )
    .unwrap();
    eprintln!("PostgreSQL ready in {:?}", began.elapsed());

    let mut servers = [
        Server::start(&config, &dir.path().join("serve-a.log")),
        Server::start(&config, &dir.path().join("serve-b.log")),
    ];
    let t = Instant::now();
    import_records_cli(&config, 0..RECORDS, DATABASE, 0);
    eprintln!(
        "imported {RECORDS} records with `gpdiag records import` in {:?}",
        t.elapsed()
    );

    let t = Instant::now();
    let ids: Vec<i64> = (0..TASKS)
        .map(|i| servers[i % 2].start_export(DATABASE))
        .collect();
    assert_eq!(
        ids.iter().collect::<BTreeSet<_>>().len(),
        TASKS,
        "distinct IDs"
    );
    let ended = servers[0].wait_until_ended(&ids, Duration::from_secs(600));
    eprintln!("{TASKS} exports ended in {:?}", t.elapsed());
    for (id, r) in &ended {
        assert_eq!(r["Status"], "finished", "download {id}: {r}");
    }
    // The other process sees the same, within its refresh interval.
    wait_for(
        "the second server to list every export as finished",
        Duration::from_secs(10),
        Duration::from_millis(200),
        || {
            let other = servers[1].downloads();
            ids.iter()
                .all(|id| other.get(id).is_some_and(|r| r["Status"] == "finished"))
                .then_some(())
        },
    );

    // Each ran exactly once: one attempt, one file, under its own prefix.
    let store = rt
        .block_on(gpdiag_store::PostgresStore::open(&db.url))
        .unwrap();
    let files = files_under(&objects);
    for id in &ids {
        let task = rt
            .block_on(gpdiag_store::Store::get_task(&store, *id))
            .unwrap()
            .unwrap();
        assert_eq!(task.status, TaskStatus::Finished, "{task:?}");
        assert_eq!(task.attempts, 1, "download {id} was claimed more than once");
        assert_eq!(task.rows, Some(RECORDS), "{task:?}");
        let prefix = format!("exports/{ACCOUNT}/{INSTANCE}/{id}/");
        let under: Vec<&String> = files.keys().filter(|p| p.starts_with(&prefix)).collect();
        assert_eq!(
            under,
            vec![&format!("{prefix}1/{FILE_NAME}")],
            "download {id}: exactly one object"
        );
        assert_eq!(task.object_key.as_deref(), Some(under[0].as_str()));
        assert_eq!(task.bytes, Some(files[under[0]]));
    }
    assert_eq!(files.len(), TASKS, "no other file: {files:?}");
    drop(store);

    // Files are whole, and a link handed out by one process is served by the other (they
    // share the link key through the store).
    for (i, id) in ids.iter().enumerate() {
        let (issuer, other) = (&servers[i % 2], &servers[(i + 1) % 2]);
        let url = issuer.downloads()[id]["DownloadUrl"]
            .as_str()
            .unwrap()
            .replace(&issuer.addr, &other.addr);
        let response = other.fetch(&url);
        assert_eq!(response.status(), 200, "{url}");
        check_export(&response.bytes().unwrap(), 0..RECORDS);
    }

    // Both processes worked, and no export was started or finished twice.
    let logs = [servers[0].log_text(), servers[1].log_text()];
    let mut by_process = BTreeMap::new();
    let mut finished = BTreeSet::new();
    let mut started = Vec::new();
    for (name, log) in ["a", "b"].iter().zip(&logs) {
        let done = logged_tasks(log, "export finished");
        by_process.insert(*name, done.len());
        for id in done {
            assert!(finished.insert(id), "download {id} finished twice");
        }
        started.extend(logged_tasks(log, "export started"));
    }
    eprintln!("exports finished per process: {by_process:?}");
    assert_eq!(finished, ids.iter().copied().collect(), "{by_process:?}");
    started.sort_unstable();
    assert_eq!(started, ids, "each export started exactly once");
    assert!(
        by_process.values().all(|n| *n > 0),
        "both processes ran exports: {by_process:?}"
    );

    for server in &mut servers {
        let status = server.stop();
        assert!(status.success(), "{status}:\n{}", server.log_text());
    }
    drop(servers);
    drop(db);
    eprintln!("total {:?}", began.elapsed());
}
