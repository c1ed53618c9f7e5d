//! The collectors against a live PostgreSQL 15 (issue 5): a private cluster logging every
//! statement (csvlog and jsonlog, auto_explain JSON plans), a pgbench and psql workload, the real
//! `gpdiag serve` and `gpdiag collect --once`, and a reference computed by PostgreSQL itself from
//! the same logs (support/pgsql.rs). Each test ends at a quiescent point (serve stopped, the logs
//! caught up with `collect --once`) and requires the stored records to be exactly the logged
//! statements: none lost, none duplicated, no running record left, every field as logged.
//!
//! The fault tests do the same across a log rotation, a PostgreSQL restart and a `kill -9` of
//! `gpdiag serve`.

mod support;

#[path = "support/pgsql.rs"]
mod pgsql;

use chrono::{DateTime, Utc};
use gpdiag_core::{QueryRecord, QueryStatus};
use pgsql::{
    assert_all_readable, collect_once, positions_inside_records, store_records,
    write_collect_config, Cluster, CollectedInstance, LogFormat, Reference, MONITOR_ROLE,
    SAMPLER_APPLICATION,
};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use support::{one_at_a_time, Server};

const CSV: &str = "gp-csv";
const JSON: &str = "gp-json";

fn instances() -> [CollectedInstance; 2] {
    [
        CollectedInstance {
            id: CSV,
            format: LogFormat::Csv,
            interval: Duration::from_secs(1),
        },
        CollectedInstance {
            id: JSON,
            format: LogFormat::Json,
            interval: Duration::from_millis(500),
        },
    ]
}

/// One test's world: the cluster (with pgbench's tables), a gpdiag configuration collecting it
/// as a csvlog and as a jsonlog instance, and the running `gpdiag serve`.
struct Env {
    // Dropped in this order: the server before the cluster it samples.
    server: Option<Server>,
    cluster: Cluster,
    dir: tempfile::TempDir,
    config: PathBuf,
    store_url: String,
    serve_runs: u32,
}

impl Env {
    fn start() -> Env {
        Env::start_with(None)
    }

    /// `start` with the store at `store_url` (default: a SQLite file of the test's own).
    fn start_with(store_url: Option<&str>) -> Env {
        let cluster = Cluster::start();
        cluster.pgbench_init();
        let dir = tempfile::tempdir().unwrap();
        let (store_url, config) = write_collect_config(
            dir.path(),
            store_url,
            &cluster,
            &cluster.log_dir(),
            &instances(),
        );
        let mut env = Env {
            server: None,
            cluster,
            dir,
            config,
            store_url,
            serve_runs: 0,
        };
        env.serve(None);
        env
    }

    /// Starts `gpdiag serve` (on `listen`, or a free port).
    fn serve(&mut self, listen: Option<&str>) {
        self.serve_runs += 1;
        let log = self
            .dir
            .path()
            .join(format!("serve-{}.log", self.serve_runs));
        self.server = Some(match listen {
            Some(addr) => Server::start_on(&self.config, &log, addr),
            None => Server::start(&self.config, &log),
        });
    }

    fn server(&self) -> &Server {
        self.server.as_ref().expect("gpdiag serve runs")
    }

    /// The quiescent point: serve stopped gracefully (its samplers' statements are real
    /// statements too), every finished statement in the log files, and the logs read to their
    /// end by `gpdiag collect --once`.
    fn quiesce(&mut self) {
        let mut server = self.server.take().expect("gpdiag serve runs");
        let status = server.stop();
        assert!(
            status.success(),
            "gpdiag serve did not exit cleanly ({status}):\n{}",
            server.log_text()
        );
        drop(server);
        self.cluster.barrier();
        let out = collect_once(&self.config, None);
        assert_all_readable(&out, &[CSV, JSON]);
    }

    /// Both instances against PostgreSQL's own reading of the logs, and the samplers' sessions
    /// as the server logged them; the references.
    fn verify(&mut self) -> (Reference, Reference) {
        let (csv, json, reports) = self.compare();
        assert!(reports.is_empty(), "{}", reports.join("\n"));
        for reference in [&csv, &json] {
            assert_sampler_only_read(reference);
        }
        (csv, json)
    }

    /// `verify` without failing on the differences: the references and the reports of both
    /// instances' differences (so a failure shows both).
    fn compare(&mut self) -> (Reference, Reference, Vec<String>) {
        let csv = self.cluster.reference(LogFormat::Csv);
        let csv_report = csv.differences(CSV, &store_records(&self.store_url, CSV));
        let json = self.cluster.reference(LogFormat::Json);
        let json_report = json.differences(JSON, &store_records(&self.store_url, JSON));
        // The two logs are two renderings of the same records (the csvlog reference ran
        // first, so its session is left out of both).
        let only_csv: Vec<_> = csv
            .expected
            .keys()
            .filter(|k| !json.expected.contains_key(*k))
            .take(5)
            .collect();
        let only_json: Vec<_> = json
            .expected
            .keys()
            .filter(|k| !csv.expected.contains_key(*k))
            .take(5)
            .collect();
        assert!(
            only_csv.is_empty() && only_json.is_empty(),
            "the csvlog and the jsonlog hold different statements: only in the csvlog \
             {only_csv:?}, only in the jsonlog {only_json:?}"
        );
        assert!(
            csv.expected.len() > 100,
            "the workload logged only {} statements",
            csv.expected.len()
        );
        (
            csv,
            json,
            csv_report.into_iter().chain(json_report).collect(),
        )
    }

    fn status(&self, instance: &str) -> Value {
        let (status, body) = self
            .server()
            .call("DescribeCollectorStatus", &[("DBInstanceId", instance)]);
        assert_eq!(status, 200, "DescribeCollectorStatus {instance}: {body}");
        assert_eq!(body["DBInstanceId"], instance, "{body}");
        body["Collector"].clone()
    }

    /// Waits until both collectors report a sample taken after `since` over a connected
    /// sampler and no unread log bytes (the workload is over); checks the report and returns it.
    fn wait_healthy(&self, since: DateTime<Utc>) -> BTreeMap<&'static str, Value> {
        let mut reports = BTreeMap::new();
        for i in instances() {
            let mut last = Value::Null;
            let ok = wait_until(Duration::from_secs(30), Duration::from_millis(200), || {
                last = self.status(i.id);
                last["SamplerConnected"] == true
                    && last["LagBytes"] == 0
                    && time_field(&last, "LastSampleAt").is_some_and(|t| t > since)
            });
            assert!(
                ok,
                "{}: no healthy collector report (connected sampler, a sample after {since}, \
                 LagBytes 0) within 30 s; last report: {last:#}",
                i.id
            );
            let now = Utc::now();
            let sampled = time_field(&last, "LastSampleAt").unwrap();
            assert!(
                now - sampled < chrono::Duration::seconds(5),
                "{}: LastSampleAt {sampled} is not recent (now {now}): {last:#}",
                i.id
            );
            assert_eq!(last["LogFormat"], i.format.name(), "{}: {last:#}", i.id);
            assert_eq!(last["Sampling"], true, "{}: {last:#}", i.id);
            assert_eq!(last["BadLogRecords"], 0, "{}: {last:#}", i.id);
            assert!(
                last["Owner"].as_str().is_some_and(|o| !o.is_empty()),
                "{}: no Owner: {last:#}",
                i.id
            );
            let files = self
                .cluster
                .log_files(match i.format {
                    LogFormat::Csv => ".csv",
                    LogFormat::Json => ".json",
                })
                .len();
            assert_eq!(
                last["LogFiles"],
                files,
                "{}: the log directory has {files} {} files: {last:#}",
                i.id,
                i.format.name()
            );
            reports.insert(i.id, last);
        }
        reports
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // The server first: its samplers hold connections to the cluster.
        self.server.take();
    }
}

/// gpdiag never writes to a server it monitors: every statement its samplers ran, by the
/// server's own log, is a query, run as the monitoring role (which owns nothing).
fn assert_sampler_only_read(reference: &Reference) {
    let statements = reference.sampler_statements();
    assert!(
        !statements.is_empty(),
        "{}: no statement of a {SAMPLER_APPLICATION} session in the log",
        reference.format.name()
    );
    let writes: Vec<_> = statements
        .iter()
        .filter(|(user, sql)| {
            *user != MONITOR_ROLE || !sql.trim_start().to_ascii_uppercase().starts_with("SELECT")
        })
        .take(5)
        .collect();
    assert!(
        writes.is_empty(),
        "{}: the sampler ran statements other than queries as {MONITOR_ROLE} ({} in all): \
         {writes:?}",
        reference.format.name(),
        statements.len()
    );
}

fn time_field(report: &Value, name: &str) -> Option<DateTime<Utc>> {
    report[name]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// Polls `done` every `every` until it holds or `timeout` passes; whether it held.
fn wait_until(timeout: Duration, every: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(every);
    }
}

/// A long statement: longer than track_activity_query_size and than any one read buffer line.
fn long_statement() -> String {
    let filler: String = (0..6000).map(|i| (b'a' + (i % 26) as u8) as char).collect();
    format!("SELECT '{filler}' AS long_text;\n")
}

/// Statements that are hard to parse or to render: line breaks, quotes, non-ASCII, commas and
/// tabs, a carriage return, PREPARE/EXECUTE, failures, a 6,000-byte statement.
fn edge_statements() -> String {
    let mut sql = String::new();
    sql.push_str(
        "SELECT 1\n     + 2 AS \"Quoted Sum\",   -- a comment, with a comma\n       'it''s' AS quote,\n",
    );
    sql.push_str(
        "       '中文 ñ Zoë' AS text, 'a,b;c' AS commas,\ttab_before, '\tin\tquotes\t' AS tabs\n",
    );
    sql.push_str("  FROM (SELECT 1 AS tab_before) AS t;\n");
    sql.push_str("CREATE TABLE \"Mixed Case\" (id int PRIMARY KEY, \"Name\" text);\n");
    sql.push_str(
        "INSERT INTO \"Mixed Case\" VALUES (1, '中文 ñ Zoë'), (2, 'say \"hi\", it''s');\n",
    );
    sql.push_str("SELECT \"Name\" FROM \"Mixed Case\" WHERE \"Name\" LIKE '%Zoë%';\n");
    sql.push_str("UPDATE \"Mixed Case\" SET \"Name\" = \"Name\" || E'\\n' || 'x' WHERE id = 2;\n");
    sql.push_str("SELECT 'carriage\r\nreturn' AS crlf;\n");
    sql.push_str("PREPARE p1 AS SELECT abalance FROM pgbench_accounts WHERE aid = $1;\n");
    sql.push_str("EXECUTE p1(42);\n");
    sql.push_str("SELECT 1/0;\n");
    sql.push_str("SELECT *\n  FROM no_such_table\n WHERE \"x\" = 'it''s';\n");
    sql.push_str("SELEC 1;\n");
    sql.push_str("SELECT 'multi-line failure',\n       1/0 AS boom;\n");
    sql.push_str(&long_statement());
    sql
}

/// A multi-statement simple query: one `statement:` record for the whole string, which carries
/// the last statement's query_id, after a plan for each planned statement in it (the last
/// plan, on the line before the statement record, is its plan).
const MULTI_STATEMENT: &str =
    "BEGIN\\; SELECT count(*) FROM pgbench_branches\\; SELECT 'multi' AS m\\; COMMIT;\n";

/// The extended protocol from a driver: named statements, parameters (non-ASCII ones too),
/// and a statement that fails at parse time.
fn extended_workload(url: &str) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap();
        let connection = tokio::spawn(connection);
        let select = client
            .prepare("SELECT abalance, $2::text AS tag FROM pgbench_accounts WHERE aid = $1")
            .await
            .unwrap();
        for (aid, tag) in [(1, "plain"), (2, "中文 ñ Zoë"), (3, "it's, \"quoted\"")] {
            client.query(&select, &[&aid, &tag]).await.unwrap();
        }
        let err = client
            .query("SELECT * FROM no_such_table_ext WHERE a = $1", &[&1i32])
            .await
            .expect_err("an unknown table");
        assert_eq!(
            err.code().map(|c| c.code()),
            Some("42P01"),
            "unexpected error {err:?}"
        );
        drop(client);
        let _ = connection.await;
    });
}

/// A running `SELECT pg_sleep(5)` is a running record of both instances within two sample
/// intervals and a second, and then exactly one finished record.
fn check_running_sleeper(env: &Env) {
    let started = Instant::now();
    let sleeper = env.cluster.spawn_psql("SELECT pg_sleep(5);\n");
    // Alongside, a long statement that fails (canceled by statement_timeout): its running
    // record must give way to the failed record (checked at the quiescent point).
    let canceled = env
        .cluster
        .spawn_psql("SET statement_timeout = '3s';\nSELECT pg_sleep(4) AS canceled;\n");
    let is_sleep = |r: &QueryRecord| r.sql.contains("pg_sleep(5)");
    let mut running: BTreeMap<&str, (Duration, QueryRecord)> = BTreeMap::new();
    while running.len() < 2 && started.elapsed() < Duration::from_secs(4) {
        for i in instances() {
            if running.contains_key(i.id) {
                continue;
            }
            if let Some(r) = store_records(&env.store_url, i.id)
                .into_iter()
                .find(|r| is_sleep(r) && r.status == QueryStatus::Running)
            {
                running.insert(i.id, (started.elapsed(), r));
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for i in instances() {
        let deadline = i.interval * 2 + Duration::from_secs(1);
        let (seen_after, r) = running.get(i.id).unwrap_or_else(|| {
            panic!(
                "{}: SELECT pg_sleep(5) never showed as running (sample interval {:?}); \
                 records now: {:?}",
                i.id,
                i.interval,
                store_records(&env.store_url, i.id)
                    .iter()
                    .filter(|r| r.status == QueryStatus::Running)
                    .map(|r| (&r.query_id, pgsql::short(&r.sql)))
                    .collect::<Vec<_>>()
            )
        });
        eprintln!(
            "{}: SELECT pg_sleep(5) listed as running after {seen_after:?}",
            i.id
        );
        assert!(
            *seen_after <= deadline,
            "{}: SELECT pg_sleep(5) showed as running only after {seen_after:?} (sample \
             interval {:?}, allowed {deadline:?})",
            i.id,
            i.interval
        );
        assert_eq!(r.sql, "SELECT pg_sleep(5);", "{}: {r:?}", i.id);
        assert_eq!(r.source, "pg_stat_activity", "{}: {r:?}", i.id);
        assert_eq!(
            (r.database.as_str(), r.user.as_str()),
            ("postgres", "gpdiag")
        );
        let (session, start) = r
            .query_id
            .split_once('@')
            .unwrap_or_else(|| panic!("{}: running query_id {:?}", i.id, r.query_id));
        assert_eq!(session, r.session_id, "{}: {r:?}", i.id);
        let start_us: i64 = start.parse().expect("query_start in µs");
        assert_eq!(
            start_us / 1000,
            r.start_time.timestamp_millis(),
            "{}: start_time and the query_id's query_start differ: {r:?}",
            i.id
        );
    }
    // The diagnosis API lists it as running too.
    for i in instances() {
        let (status, body) = env.server().call(
            "DescribeDiagnosisRecords",
            &[
                ("DBInstanceId", i.id),
                ("Database", "postgres"),
                ("QueryCondition", r#"{"Type":"status","Value":"running"}"#),
                ("PageSize", "100"),
            ],
        );
        assert_eq!(status, 200, "{}: {body}", i.id);
        let items = body["Items"].as_array().cloned().unwrap_or_default();
        let wanted = &running[i.id].1.query_id;
        assert!(
            items.iter().any(|item| item["QueryID"] == wanted.as_str()
                && item["Status"] == "running"
                && item["SQLStmt"] == "SELECT pg_sleep(5);"),
            "{}: DescribeDiagnosisRecords (status running) does not list {wanted}: {body:#}",
            i.id
        );
    }
    let out = sleeper.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let out = canceled.wait_with_output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("statement timeout"),
        "{out:?}"
    );
    for i in instances() {
        let session = running[i.id].1.session_id.clone();
        let mut last = Vec::new();
        let settled = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
            last = store_records(&env.store_url, i.id)
                .into_iter()
                .filter(is_sleep)
                .collect();
            last.len() == 1 && last[0].status == QueryStatus::Finished
        });
        assert!(
            settled,
            "{}: SELECT pg_sleep(5) did not become exactly one finished record within 10 s of \
             ending: {:?}",
            i.id,
            last.iter()
                .map(|r| (&r.query_id, r.status, r.duration_ms))
                .collect::<Vec<_>>()
        );
        let r = &last[0];
        assert_eq!(r.session_id, session, "{}: {r:?}", i.id);
        assert!(
            r.query_id.starts_with(&format!("{session}:")),
            "{}: {r:?}",
            i.id
        );
        assert!(r.duration_ms >= 5000, "{}: {r:?}", i.id);
        assert_eq!(r.source, i.format.name(), "{}: {r:?}", i.id);
    }
}

/// Every record of `url`'s `instance` outside the reference sessions, by query_id.
fn records_by_id(
    url: &str,
    instance: &str,
    reference: &Reference,
) -> BTreeMap<String, QueryRecord> {
    store_records(url, instance)
        .into_iter()
        .filter(|r| !reference.excluded.contains(&r.session_id))
        .map(|r| (r.query_id.clone(), r))
        .collect()
}

fn assert_same_records(
    what: &str,
    a: &BTreeMap<String, QueryRecord>,
    b: &BTreeMap<String, QueryRecord>,
) {
    let only_a: Vec<_> = a.keys().filter(|k| !b.contains_key(*k)).take(5).collect();
    let only_b: Vec<_> = b.keys().filter(|k| !a.contains_key(*k)).take(5).collect();
    let differ: Vec<_> = a
        .iter()
        .filter_map(|(k, r)| b.get(k).filter(|o| *o != r).map(|o| (r, o)))
        .take(3)
        .collect();
    assert!(
        a.len() == b.len() && only_a.is_empty() && differ.is_empty(),
        "{what}: {} records against {}; only in the first: {only_a:?}; only in the second: \
         {only_b:?}; differing: {differ:#?}",
        a.len(),
        b.len()
    );
}

#[test]
fn collected_records_equal_the_server_log() {
    let _one = one_at_a_time();
    let started = Instant::now();
    let mut env = Env::start();
    for mode in ["simple", "extended", "prepared"] {
        env.cluster
            .pgbench(&["-n", "-t", "150", "-c", "2", "-M", mode]);
    }
    env.cluster.psql(&edge_statements());
    env.cluster.psql(MULTI_STATEMENT);
    extended_workload(&env.cluster.url);
    env.cluster.barrier();
    let workload_done = Utc::now();
    env.wait_healthy(workload_done);
    check_running_sleeper(&env);
    let reports = env.wait_healthy(Utc::now());
    for (id, report) in &reports {
        assert!(
            report["LogRecords"].as_u64().is_some_and(|n| n > 1000),
            "{id}: LogRecords: {report:#}"
        );
        assert!(
            report["LastError"].is_null(),
            "{id}: an error in a healthy run: {report:#}"
        );
    }
    env.quiesce();
    // The differences fail the test at its end, after the checks that do not depend on them.
    let (csv, json, differences) = env.compare();

    // The workload is what this test means it to be (else the checks above prove little).
    for reference in [&csv, &json] {
        let name = reference.format.name();
        let states: Vec<_> = reference
            .failed()
            .filter_map(|e| e.line.state.clone())
            .collect();
        for state in ["22012", "42P01", "42601", "57014"] {
            assert!(
                states.iter().any(|s| s == state),
                "{name}: no failed statement with SQLSTATE {state}: {states:?}"
            );
        }
        assert!(reference.failed().count() >= 5, "{name}: {states:?}");
        let plans = reference.with_plans();
        assert!(plans >= 100, "{name}: only {plans} statements with plans");
        let executes = |prefix: &str| {
            reference
                .expected
                .values()
                .filter(|e| e.line.message.contains(prefix))
                .count()
        };
        assert!(executes("  execute <unnamed>: ") >= 150 * 2 * 7, "{name}");
        assert!(executes("  execute P_") >= 150 * 2 * 7, "{name}");
        for sql in [
            "EXECUTE p1(42);",
            "SELECT 'carriage\r\nreturn' AS crlf;",
            "SELECT pg_sleep(5);",
            "SELECT pg_sleep(4) AS canceled;",
            long_statement().trim_end(),
        ] {
            reference.only(sql);
        }
        assert!(
            reference
                .expected
                .values()
                .any(|e| e.sql().contains("中文 ñ Zoë") && e.sql().contains("\"Mixed Case\"")),
            "{name}: no non-ASCII statement"
        );
        assert!(
            reference
                .expected
                .values()
                .any(|e| e.sql().starts_with("BEGIN; SELECT count(*)")),
            "{name}: no multi-statement string"
        );
        assert!(
            reference.expected.values().any(|e| e
                .line
                .detail
                .as_deref()
                .is_some_and(|d| d.contains("中文 ñ Zoë"))),
            "{name}: no non-ASCII parameter"
        );
    }

    // A fresh store over the same logs: the same records; a second run adds nothing.
    let fresh = tempfile::tempdir().unwrap();
    let (fresh_url, fresh_config) = write_collect_config(
        fresh.path(),
        None,
        &env.cluster,
        &env.cluster.log_dir(),
        &instances(),
    );
    assert_all_readable(&collect_once(&fresh_config, None), &[CSV, JSON]);
    let mut first_runs = Vec::new();
    for (id, reference) in [(CSV, &json), (JSON, &json)] {
        // `json` was computed last: its exclusions cover every reference session.
        let served = records_by_id(&env.store_url, id, reference);
        let once = records_by_id(&fresh_url, id, reference);
        assert_same_records(
            &format!("{id}: serve + collect --once against collect --once on a fresh store"),
            &served,
            &once,
        );
        first_runs.push(store_records(&fresh_url, id));
    }
    assert_all_readable(&collect_once(&fresh_config, Some(CSV)), &[CSV]);
    assert_all_readable(&collect_once(&fresh_config, Some(JSON)), &[JSON]);
    for (i, id) in [CSV, JSON].into_iter().enumerate() {
        let by_id = |records: &[QueryRecord]| -> BTreeMap<String, QueryRecord> {
            records
                .iter()
                .map(|r| (r.query_id.clone(), r.clone()))
                .collect()
        };
        assert_same_records(
            &format!("{id}: collect --once run again over unchanged logs"),
            &by_id(&first_runs[i]),
            &by_id(&store_records(&fresh_url, id)),
        );
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));
    eprintln!(
        "collected_records_equal_the_server_log: {:?}",
        started.elapsed()
    );
}

#[test]
fn log_rotation_loses_and_duplicates_nothing() {
    let _one = one_at_a_time();
    let started = Instant::now();
    let mut env = Env::start();
    env.cluster
        .pgbench(&["-n", "-t", "100", "-c", "2", "-M", "simple"]);
    env.cluster.rotate();
    env.cluster
        .pgbench(&["-n", "-t", "100", "-c", "2", "-M", "extended"]);
    env.cluster.rotate();
    env.cluster.psql(&edge_statements());
    env.cluster.rotate();
    env.cluster
        .pgbench(&["-n", "-t", "100", "-c", "2", "-M", "prepared"]);
    env.cluster.barrier();
    let files = env.cluster.log_files(".csv").len();
    assert!(files >= 4, "rotated three times, yet {files} csvlog files");
    // The collectors follow the new files as they come.
    env.wait_healthy(Utc::now());
    env.quiesce();
    env.verify();
    eprintln!(
        "log_rotation_loses_and_duplicates_nothing: {:?}",
        started.elapsed()
    );
}

#[test]
fn postgres_restart_loses_and_duplicates_nothing() {
    let _one = one_at_a_time();
    let started = Instant::now();
    let mut env = Env::start();
    env.cluster
        .pgbench(&["-n", "-t", "100", "-c", "2", "-M", "extended"]);
    // A statement running when the server goes down: it ends as a FATAL record.
    let sleeper = env.cluster.spawn_psql("SELECT pg_sleep(30);\n");
    let seen = wait_until(Duration::from_secs(5), Duration::from_millis(100), || {
        store_records(&env.store_url, CSV)
            .iter()
            .any(|r| r.status == QueryStatus::Running && r.sql.contains("pg_sleep(30)"))
    });
    assert!(seen, "SELECT pg_sleep(30) never showed as running");
    env.cluster.restart();
    let restarted = Utc::now();
    let out = sleeper.wait_with_output().unwrap();
    assert!(
        !out.status.success(),
        "the sleeper survived the restart: {out:?}"
    );
    // The samplers reconnect, and what ran before the restart is not running any more.
    env.wait_healthy(restarted);
    for id in [CSV, JSON] {
        let cleared = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
            !store_records(&env.store_url, id)
                .iter()
                .any(|r| r.status == QueryStatus::Running && r.sql.contains("pg_sleep(30)"))
        });
        assert!(
            cleared,
            "{id}: pg_sleep(30) still running after the restart"
        );
    }
    env.cluster
        .pgbench(&["-n", "-t", "100", "-c", "2", "-M", "prepared"]);
    env.cluster.psql(&edge_statements());
    env.cluster.barrier();
    env.wait_healthy(Utc::now());
    env.quiesce();
    let (csv, json) = env.verify();
    for reference in [&csv, &json] {
        let sleeper = reference.only("SELECT pg_sleep(30);");
        assert_eq!(
            (
                sleeper.line.severity.as_str(),
                sleeper.line.state.as_deref()
            ),
            ("FATAL", Some("57P01")),
            "{}: the interrupted statement: {:?}",
            reference.format.name(),
            sleeper.line
        );
    }
    eprintln!(
        "postgres_restart_loses_and_duplicates_nothing: {:?}",
        started.elapsed()
    );
}

#[test]
fn gpdiag_kill9_loses_and_duplicates_nothing() {
    let _one = one_at_a_time();
    let started = Instant::now();
    let mut env = Env::start();
    env.cluster
        .pgbench(&["-n", "-t", "100", "-c", "2", "-M", "simple"]);
    env.wait_healthy(Utc::now());
    for mode in ["extended", "prepared"] {
        // About three seconds of pgbench (rate-limited), killed in the middle.
        let mut bench = env
            .cluster
            .spawn_pgbench(&["-n", "-R", "200", "-t", "300", "-c", "2", "-M", mode]);
        std::thread::sleep(Duration::from_millis(1200));
        assert!(
            bench.try_wait().unwrap().is_none(),
            "pgbench ended before gpdiag was killed"
        );
        let addr = env.server().addr.clone();
        env.server.as_mut().unwrap().kill9();
        env.server = None;
        std::thread::sleep(Duration::from_millis(500));
        // Restarted as an operator would: same configuration, same address.
        env.serve(Some(&addr));
        let out = bench.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "pgbench failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    env.cluster.psql(&edge_statements());
    env.cluster.barrier();
    env.wait_healthy(Utc::now());
    env.quiesce();
    env.verify();
    eprintln!(
        "gpdiag_kill9_loses_and_duplicates_nothing: {:?}",
        started.elapsed()
    );
}

/// The logging collector rotates between any two records, so a statement's plan can end one
/// file and the statement record begin the next (seen under pgbench load with
/// `pg_rotate_logfile()`, in about one rotation out of two). Here the rotation is put exactly
/// there, deterministically: the server's own files are copied, each split in two right
/// before the statement record of `SELECT 'split-here'`, and `collect --once` reads the copies.
/// The records must be those of the unsplit logs, the plan included.
#[test]
fn a_rotation_between_a_plan_and_its_statement_keeps_the_plan() {
    let _one = one_at_a_time();
    let mut cluster = Cluster::start();
    cluster.psql("SELECT 'before' AS b;\nSELECT 'split-here' AS marker;\nSELECT 'after' AS a;\n");
    cluster.barrier();
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("log");
    fs::create_dir(&logs).unwrap();
    let needle = "statement: SELECT 'split-here' AS marker;";
    for ext in [".csv", ".json"] {
        let files = cluster.log_files(ext);
        assert_eq!(
            files.len(),
            1,
            "one {ext} file before any rotation: {files:?}"
        );
        let bytes = fs::read(&files[0]).unwrap();
        let at = bytes
            .windows(needle.len())
            .position(|w| w == needle.as_bytes())
            .unwrap_or_else(|| panic!("no {needle:?} in {}", files[0].display()));
        // The statement record starts its physical line; the record before it is the plan.
        let split = bytes[..at].iter().rposition(|b| *b == b'\n').unwrap() + 1;
        let head = &bytes[..split];
        // The record before it (the last `duration:` of the head) is the marker's plan.
        let head_text = String::from_utf8_lossy(head);
        let last = &head_text[head_text.rfind("duration: ").unwrap()..];
        assert!(
            last.contains(" ms  plan:") && last.contains("SELECT 'split-here' AS marker;"),
            "the record before the statement is not its plan: {last:?}"
        );
        let older = logs.join(format!("postgresql-20260101_000000{ext}"));
        let newer = logs.join(format!("postgresql-20260101_000001{ext}"));
        fs::write(&older, head).unwrap();
        fs::write(&newer, &bytes[split..]).unwrap();
        let t = std::time::SystemTime::now();
        for (path, age) in [(&older, 60), (&newer, 30)] {
            fs::File::options()
                .write(true)
                .open(path)
                .unwrap()
                .set_modified(t - Duration::from_secs(age))
                .unwrap();
        }
    }
    let (store_url, config) = write_collect_config(dir.path(), None, &cluster, &logs, &instances());
    assert_all_readable(&collect_once(&config, None), &[CSV, JSON]);
    // Both formats are checked before failing, so a failure shows both.
    let mut failures = Vec::new();
    for (id, format) in [(CSV, LogFormat::Csv), (JSON, LogFormat::Json)] {
        let reference = cluster.reference(format);
        let marker = reference.only("SELECT 'split-here' AS marker;");
        assert!(
            marker.plan.is_some(),
            "{id}: the marker statement has no plan on its previous line: {:?}",
            marker.line
        );
        failures.extend(reference.differences(id, &store_records(&store_url, id)));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every extended-protocol session ends with an `execute` record that waits for a plan which
/// never comes; whatever the tailer does about such records, a saved position must stay where
/// a record starts, or the next process (a restart, `collect --once`) reads a record from its
/// middle: one unreadable record, and a lost plan when that record was one. Here the waiting
/// record is followed by more than 8 MiB of log, as under any steady load.
#[test]
fn saved_positions_stay_at_record_starts() {
    let _one = one_at_a_time();
    let mut cluster = Cluster::start();
    cluster.pgbench_init();
    // One extended-protocol session, ending with `execute <unnamed>: END;`.
    cluster.pgbench(&["-n", "-t", "1", "-c", "1", "-M", "extended"]);
    // More than 8 MiB of log after it, in both formats.
    cluster.pgbench(&["-n", "-t", "800", "-c", "2", "-M", "simple"]);
    cluster.barrier();
    for ext in [".csv", ".json"] {
        let size: u64 = cluster
            .log_files(ext)
            .iter()
            .map(|f| fs::metadata(f).unwrap().len())
            .sum();
        assert!(size > 10 << 20, "only {size} bytes of {ext} log");
    }
    let dir = tempfile::tempdir().unwrap();
    let (store_url, config) =
        write_collect_config(dir.path(), None, &cluster, &cluster.log_dir(), &instances());
    let out = collect_once(&config, None);
    assert_all_readable(&out, &[CSV, JSON]);
    let mut inside = Vec::new();
    for id in [CSV, JSON] {
        inside.extend(positions_inside_records(&store_url, id, &cluster.log_dir()));
    }
    // The next run resumes from the saved positions.
    cluster.psql("SELECT 'one more' AS more;\n");
    cluster.barrier();
    let out = collect_once(&config, None);
    assert!(
        inside.is_empty(),
        "saved positions inside a record:\n{}\nthe next collect --once said:\n{out}",
        inside.join("\n")
    );
    assert_all_readable(&out, &[CSV, JSON]);
    let mut failures = Vec::new();
    for (id, format) in [(CSV, LogFormat::Csv), (JSON, LogFormat::Json)] {
        let reference = cluster.reference(format);
        failures.extend(reference.differences(id, &store_records(&store_url, id)));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The `collecting` lines of a server log for `instance`: how often that process took the
/// instance's lease.
fn leases_taken(server: &Server, instance: &str) -> usize {
    server
        .log_text()
        .lines()
        .filter(|l| l.contains(&format!(": collecting instance={instance}")))
        .count()
}

/// Multi-node collection: two `gpdiag serve` on one PostgreSQL store, both configured to
/// collect both instances. The store lease gives each instance to one process; when that
/// process is killed (its lease left to run out), the other takes over from the saved
/// positions. Nothing is lost or duplicated, and no instance is collected by both at once.
#[test]
fn two_servers_on_one_postgres_store_collect_each_instance_once() {
    let _one = one_at_a_time();
    let started = Instant::now();
    let store = support::Postgres::get();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = store.create_database(&rt);
    let mut env = Env::start_with(Some(&db.url));
    let mut other = Some(Server::start(
        &env.config,
        &env.dir.path().join("serve-other.log"),
    ));
    env.cluster
        .pgbench(&["-n", "-t", "100", "-c", "2", "-M", "simple"]);
    env.wait_healthy(Utc::now());
    let owner_of = |env: &Env, id: &str| env.status(id)["Owner"].as_str().unwrap().to_owned();
    let addrs = [
        env.server().addr.clone(),
        other.as_ref().unwrap().addr.clone(),
    ];
    for i in instances() {
        let owner = owner_of(&env, i.id);
        assert!(
            addrs.iter().any(|a| owner.ends_with(a.as_str())),
            "{}: owner {owner} is neither server ({addrs:?})",
            i.id
        );
        let taken = leases_taken(env.server(), i.id) + leases_taken(other.as_ref().unwrap(), i.id);
        assert_eq!(taken, 1, "{}: both servers took the lease", i.id);
        // Each node's /metrics reports the instances it collects, and only those.
        let series = format!("gpdiag_collector_log_records{{instance=\"{}\"}}", i.id);
        let reporting: Vec<&str> = [env.server(), other.as_ref().unwrap()]
            .into_iter()
            .filter(|s| s.get("/metrics").text().unwrap().contains(&series))
            .map(|s| s.addr.as_str())
            .collect();
        assert!(
            reporting.len() == 1 && owner.ends_with(reporting[0]),
            "{}: collected by {owner}, reported by {reporting:?}",
            i.id
        );
    }

    // Kill the process collecting the csvlog instance in the middle of a workload.
    let victim_is_first = owner_of(&env, CSV).ends_with(addrs[0].as_str());
    let survivor_addr = &addrs[usize::from(victim_is_first)];
    let mut bench = env
        .cluster
        .spawn_pgbench(&["-n", "-R", "200", "-t", "300", "-c", "2", "-M", "extended"]);
    std::thread::sleep(Duration::from_millis(1200));
    assert!(
        bench.try_wait().unwrap().is_none(),
        "pgbench ended before gpdiag was killed"
    );
    if victim_is_first {
        env.server.as_mut().unwrap().kill9();
        env.server = other.take();
    } else {
        other.take().unwrap().kill9();
    }
    let killed = Utc::now();
    let out = bench.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "pgbench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The survivor takes every instance the dead process held once its lease has run out;
    // the leases ran out at slightly different times, so wait for all of them.
    let took_over = wait_until(Duration::from_secs(90), Duration::from_millis(250), || {
        instances().iter().all(|i| {
            owner_of(&env, i.id).ends_with(survivor_addr.as_str())
                && time_field(&env.status(i.id), "LastSampleAt").is_some_and(|t| t > killed)
        })
    });
    assert!(
        took_over,
        "the surviving server did not take over every instance: {:#} {:#}",
        env.status(CSV),
        env.status(JSON)
    );
    eprintln!("takeover after {:?}", (Utc::now() - killed).to_std());
    for i in instances() {
        assert_eq!(
            leases_taken(env.server(), i.id),
            1,
            "{}: the survivor took the lease more than once (or never)",
            i.id
        );
    }
    env.cluster.psql(&edge_statements());
    env.cluster.barrier();
    env.wait_healthy(Utc::now());
    env.quiesce();
    env.verify();
    drop(env);
    drop(db);
    eprintln!(
        "two_servers_on_one_postgres_store_collect_each_instance_once: {:?}",
        started.elapsed()
    );
}
