//! The collector tests' PostgreSQL side: a private PostgreSQL 15 cluster that writes csvlog and
//! jsonlog with every statement and its auto_explain plan (scripts/pg-cluster, one per test,
//! stopped on drop), the workload clients (`psql`, `pgbench`), and the reference: what the logs
//! hold, computed by PostgreSQL itself (`file_fdw` over the csvlog, `pg_read_file` + `jsonb`
//! over the jsonlog) and never by gpdiag's parsers, compared with what gpdiag stored.

use crate::support::{wait_for, BIN};
use gpdiag_core::{QueryRecord, QueryStatus, RecordFilter, RecordOrder, TimeWindow};
use gpdiag_testkit::PgCluster;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// Appended to postgresql.conf (through `extra.conf`) before the cluster starts.
const EXTRA_CONF: &str = "\
logging_collector = on
log_destination = 'csvlog,jsonlog'
log_directory = 'log'
log_filename = 'postgresql-%Y%m%d_%H%M%S'
log_rotation_age = 0
log_rotation_size = 0
log_min_duration_statement = 0
compute_query_id = on
log_timezone = 'UTC'
track_activity_query_size = 4096
shared_preload_libraries = 'auto_explain'
auto_explain.log_min_duration = 0
auto_explain.log_format = json
auto_explain.log_analyze = on
lc_messages = 'C'
log_file_mode = 0644
";

/// What gpdiag's collectors connect as: a role with `pg_monitor` alone (it may read every
/// session's activity, and own nothing), as the README advises.
pub const MONITOR_ROLE: &str = "gpdiag_monitor";

/// The `application_name` of gpdiag's sampler sessions.
pub const SAMPLER_APPLICATION: &str = "gpdiag-collector";

/// A private cluster of one test, logging everything. Stopped (and its directory removed) when
/// dropped, also when the test panics.
pub struct Cluster {
    cluster: PgCluster,
    /// The superuser's URL: the workload and the reference.
    pub url: String,
    /// The URL of `MONITOR_ROLE`: what gpdiag's collectors get.
    pub monitor_url: String,
    /// Session IDs of the reference sessions: left out on both sides of every comparison.
    reference_sessions: BTreeSet<String>,
}

impl Cluster {
    pub fn start() -> Cluster {
        let cluster = PgCluster::start("gpl-", Some(EXTRA_CONF));
        let mut cluster = Cluster {
            url: cluster.url.clone(),
            monitor_url: String::new(),
            cluster,
            reference_sessions: BTreeSet::new(),
        };
        let out = cluster.psql(&format!(
            "CREATE ROLE {MONITOR_ROLE} LOGIN IN ROLE pg_monitor;\n"
        ));
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "creating the monitoring role: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        cluster.monitor_url = cluster
            .url
            .replacen("://gpdiag@", &format!("://{MONITOR_ROLE}@"), 1);
        assert_ne!(
            cluster.monitor_url, cluster.url,
            "a user in {}",
            cluster.url
        );
        cluster
    }

    /// A fast-shutdown restart on the same port: every session is cut.
    pub fn restart(&self) {
        self.cluster.restart();
    }

    /// The server's `log_directory`.
    pub fn log_dir(&self) -> PathBuf {
        self.cluster.dir().join("data/log")
    }

    /// The log files of one format (`.csv`, `.json`), by name.
    pub fn log_files(&self, extension: &str) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = fs::read_dir(self.log_dir())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().ends_with(extension))
            .collect();
        files.sort();
        files
    }

    fn client(&self, program: &str) -> Command {
        let mut command = Command::new(Path::new(PG_BIN).join(program));
        command
            .env("PGCLIENTENCODING", "UTF8")
            .env_remove("PGOPTIONS")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    /// `psql` reading `script` from its standard input: statements one by one (simple
    /// protocol), errors reported and skipped.
    pub fn spawn_psql(&self, script: &str) -> Child {
        let mut child = self
            .client("psql")
            .args([
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=0",
                "-d",
                &self.url,
                "-f",
                "-",
            ])
            .spawn()
            .unwrap();
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(script.as_bytes()).unwrap();
        drop(stdin);
        child
    }

    pub fn psql(&self, script: &str) -> Output {
        let out = self.spawn_psql(script).wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "psql failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    pub fn spawn_pgbench(&self, args: &[&str]) -> Child {
        self.client("pgbench")
            .args(args)
            .arg(&self.url)
            .stdin(Stdio::null())
            .spawn()
            .unwrap()
    }

    /// Runs pgbench to its end; it must succeed.
    pub fn pgbench(&self, args: &[&str]) {
        let out = self.spawn_pgbench(args).wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "pgbench {args:?} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `pgbench -i -s 1`.
    pub fn pgbench_init(&self) {
        self.pgbench(&["-i", "-s", "1", "-q"]);
    }

    /// Returns once every statement that ended before this call is in both the csvlog and the
    /// jsonlog files: a marker statement runs and is waited for (the logging collector writes
    /// in the order it receives).
    pub fn barrier(&self) {
        let token = format!("barrier_{}", uuid::Uuid::new_v4().simple());
        self.psql(&format!("SELECT '{token}' AS barrier;\n"));
        let needle = format!("statement: SELECT '{token}' AS barrier");
        for ext in [".csv", ".json"] {
            wait_for(
                &format!("the barrier statement in the {ext} log"),
                Duration::from_secs(20),
                Duration::from_millis(20),
                || {
                    self.log_files(ext)
                        .iter()
                        .any(|f| {
                            fs::read(f)
                                .map(|b| contains(&b, needle.as_bytes()))
                                .unwrap_or(false)
                        })
                        .then_some(())
                },
            );
        }
    }

    /// Asks the server for a new log file. File names have second precision: a rotation in
    /// the second its current file was opened would reopen the same file, so this waits for the
    /// next second first. Returns once the new file exists.
    pub fn rotate(&self) {
        let before = self.log_files(".csv");
        let newest = before.last().cloned();
        // The name ends in `_%H%M%S.csv`: wait until now formats differently.
        let name_now = || chrono::Utc::now().format("%Y%m%d_%H%M%S").to_string();
        if let Some(newest) = &newest {
            let stem = newest.file_name().unwrap().to_string_lossy().into_owned();
            while stem.contains(&name_now()) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        self.psql("SELECT pg_rotate_logfile();\n");
        wait_for(
            "a new log file after pg_rotate_logfile()",
            Duration::from_secs(10),
            Duration::from_millis(20),
            || (self.log_files(".csv").len() > before.len()).then_some(()),
        );
    }

    /// What the logs hold now, as PostgreSQL itself reads them, for one format; the reference
    /// session's own lines (this and every earlier reference session) are left out.
    pub fn reference(&mut self, format: LogFormat) -> Reference {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let (lines, me) = rt.block_on(read_reference(&self.url, format));
        self.reference_sessions.insert(me);
        let lines: Vec<RefLine> = lines
            .into_iter()
            .filter(|l| !self.reference_sessions.contains(&l.session_id))
            .collect();
        Reference::build(format, lines, self.reference_sessions.clone())
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Csv,
    Json,
}

impl LogFormat {
    pub fn name(self) -> &'static str {
        match self {
            Self::Csv => "csvlog",
            Self::Json => "jsonlog",
        }
    }
}

/// One log record as PostgreSQL reads it back.
#[derive(Debug, Clone)]
pub struct RefLine {
    pub session_id: String,
    pub line: i64,
    pub severity: String,
    pub state: Option<String>,
    pub message: String,
    pub detail: Option<String>,
    /// csvlog `query` / jsonlog `statement`.
    pub statement: Option<String>,
    pub database: Option<String>,
    pub user: Option<String>,
    pub application: Option<String>,
    pub query_id: Option<i64>,
    /// log_time in microseconds since the epoch.
    pub log_us: i64,
    /// For `duration: X ms  statement|execute …: SQL`: X in µs, whether it is an execute, SQL.
    pub duration: Option<(i64, bool, String)>,
    /// For `duration: X ms  plan:\n{…}`: the plan's JSON text.
    pub plan: Option<String>,
}

/// The 26 csvlog columns of PostgreSQL 15 (the documentation's `postgres_log` table).
const CSV_TABLE: &str = "
CREATE EXTENSION IF NOT EXISTS file_fdw;
CREATE SERVER IF NOT EXISTS gpdiag_ref_logs FOREIGN DATA WRAPPER file_fdw;
CREATE FOREIGN TABLE IF NOT EXISTS ref_log (
  log_time timestamp(3) with time zone,
  user_name text,
  database_name text,
  process_id integer,
  connection_from text,
  session_id text,
  session_line_num bigint,
  command_tag text,
  session_start_time timestamp with time zone,
  virtual_transaction_id text,
  transaction_id bigint,
  error_severity text,
  sql_state_code text,
  message text,
  detail text,
  hint text,
  internal_query text,
  internal_query_pos integer,
  context text,
  query text,
  query_pos integer,
  location text,
  application_name text,
  backend_type text,
  leader_pid integer,
  query_id bigint
) SERVER gpdiag_ref_logs OPTIONS (program 'cat log/*.csv', format 'csv');
";

const CSV_LINES: &str = "
SELECT session_id, session_line_num AS line, error_severity AS severity,
       NULLIF(sql_state_code, '00000') AS state, message, detail, query AS statement,
       database_name AS db, user_name AS usr, application_name AS app,
       NULLIF(query_id, 0) AS qid,
       (extract(epoch FROM log_time) * 1000000)::bigint AS log_us
FROM ref_log";

/// jsonlog: one JSON document a line; the last piece after the final newline is dropped (a
/// line still being written).
const JSON_LINES: &str = "
WITH files AS (
  SELECT 'log/' || name AS path FROM pg_ls_dir('log') AS name WHERE name LIKE '%.json'
), pieces AS (
  SELECT path, t.piece, t.n, count(*) OVER (PARTITION BY path) AS pieces
  FROM files, string_to_table(pg_read_file(path), E'\\n') WITH ORDINALITY AS t(piece, n)
), docs AS (
  SELECT piece::jsonb AS j FROM pieces WHERE n < pieces
)
SELECT j->>'session_id' AS session_id, (j->>'line_num')::bigint AS line,
       j->>'error_severity' AS severity, NULLIF(j->>'state_code', '00000') AS state,
       j->>'message' AS message, j->>'detail' AS detail, j->>'statement' AS statement,
       j->>'dbname' AS db, j->>'user' AS usr, j->>'application_name' AS app,
       NULLIF((j->>'query_id')::bigint, 0) AS qid,
       (extract(epoch FROM (j->>'timestamp')::timestamptz) * 1000000)::bigint AS log_us
FROM docs";

/// Statement and plan recognition, by PostgreSQL's regular expressions (`.` matches newlines).
fn classified(lines_sql: &str) -> String {
    format!(
        "WITH l AS ({lines_sql}),
         m AS (SELECT l.*,
                 regexp_match(message, '^duration: ([0-9.]+) ms  (statement|execute [^:]*): (.*)$') AS d,
                 substring(message FROM '^duration: [0-9.]+ ms  plan:\\n(.*)$') AS plan
               FROM l)
         SELECT session_id, line, severity, state, message, detail, statement, db, usr, app, qid,
                log_us, (d[1]::numeric * 1000)::bigint AS us, d[2] LIKE 'execute %' AS execute,
                d[3] AS sql, plan
         FROM m"
    )
}

async fn read_reference(url: &str, format: LogFormat) -> (Vec<RefLine>, String) {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test cluster: {e:?}"));
    let connection = tokio::spawn(connection);
    let me: String = client
        .query_one(
            "SELECT to_hex(trunc(extract(epoch FROM backend_start))::int) || '.' || to_hex(pid)
             FROM pg_stat_activity WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let lines_sql = match format {
        LogFormat::Csv => {
            client.batch_execute(CSV_TABLE).await.unwrap();
            CSV_LINES
        }
        LogFormat::Json => JSON_LINES,
    };
    let rows = client
        .query(&classified(lines_sql), &[])
        .await
        .unwrap_or_else(|e| panic!("the {} reference query failed: {e:?}", format.name()));
    drop(client);
    let _ = connection.await;
    let lines = rows
        .iter()
        .map(|r| {
            let us: Option<i64> = r.get("us");
            RefLine {
                session_id: r.get::<_, Option<String>>("session_id").unwrap_or_default(),
                line: r.get::<_, Option<i64>>("line").unwrap_or(-1),
                severity: r.get::<_, Option<String>>("severity").unwrap_or_default(),
                state: r.get("state"),
                message: r.get::<_, Option<String>>("message").unwrap_or_default(),
                detail: r.get("detail"),
                statement: r.get("statement"),
                database: r.get("db"),
                user: r.get("usr"),
                application: r.get("app"),
                query_id: r.get("qid"),
                log_us: r.get("log_us"),
                duration: us.map(|us| {
                    (
                        us,
                        r.get::<_, Option<bool>>("execute").unwrap_or(false),
                        r.get::<_, Option<String>>("sql").unwrap_or_default(),
                    )
                }),
                plan: r.get("plan"),
            }
        })
        .collect();
    (lines, me)
}

/// A query record the logs call for.
#[derive(Debug, Clone)]
pub struct Expected {
    pub key: String,
    pub line: RefLine,
    /// This statement's auto_explain plan (its line and JSON text) when the log has it on the
    /// line before: required. See [`Reference::build`].
    pub plan: Option<(i64, String)>,
    /// An extended-protocol execute's plan logged on the line after it: allowed, not required.
    pub plan_after: Option<(i64, String)>,
}

impl Expected {
    pub fn sql(&self) -> &str {
        match &self.line.duration {
            Some((_, _, sql)) => sql,
            None => self.line.statement.as_deref().unwrap_or_default(),
        }
    }

    pub fn failed(&self) -> bool {
        self.line.duration.is_none()
    }
}

/// An auto_explain plan record.
#[derive(Debug, Clone)]
pub struct Plan {
    pub text: String,
    /// Its `"Query Text"`.
    pub query_text: Option<String>,
    /// The statement record it belongs to, if the log has it next to one.
    pub owner: Option<Owner>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// The statement on the next line.
    Next(i64),
    /// The execute on the previous line.
    Previous(i64),
}

pub struct Reference {
    pub format: LogFormat,
    /// By `session_id:session_line_num`.
    pub expected: BTreeMap<String, Expected>,
    /// Every plan record, by (session, line).
    pub plans: HashMap<(String, i64), Plan>,
    /// Sessions left out of the comparison (the reference's own).
    pub excluded: BTreeSet<String>,
    pub lines: usize,
}

impl Reference {
    fn build(format: LogFormat, lines: Vec<RefLine>, excluded: BTreeSet<String>) -> Reference {
        let mut seen = BTreeSet::new();
        for l in &lines {
            assert!(
                seen.insert((l.session_id.clone(), l.line)),
                "the {} reference has two records {}:{} (a log read twice?)",
                format.name(),
                l.session_id,
                l.line
            );
        }
        let by_line: HashMap<(&str, i64), &RefLine> = lines
            .iter()
            .map(|l| ((l.session_id.as_str(), l.line), l))
            .collect();
        let query_record = |l: &RefLine| {
            l.duration.is_some()
                || (matches!(l.severity.as_str(), "ERROR" | "FATAL" | "PANIC")
                    && l.statement.is_some())
        };
        // Whose plan a plan record is. A plan is logged on the line before its statement's
        // record, except that the extended protocol ends a row-returning portal (and logs its
        // plan) after the `execute` record: a plan right after an execute of its own query text
        // is that execute's. Anything else (a plan followed by a parse or bind line) has no
        // record next to it.
        let mut plans: HashMap<(String, i64), Plan> = HashMap::new();
        for l in &lines {
            let Some(text) = &l.plan else { continue };
            let query_text = serde_json::from_str::<serde_json::Value>(text)
                .ok()
                .and_then(|v| v["Query Text"].as_str().map(str::to_owned));
            let session = l.session_id.as_str();
            let before = by_line.get(&(session, l.line - 1)).copied();
            let after = by_line.get(&(session, l.line + 1)).copied();
            let owner = match (before, after) {
                (Some(b), _) if matches!(&b.duration, Some((_, true, sql)) if Some(sql) == query_text.as_ref()) => {
                    Some(Owner::Previous(b.line))
                }
                (_, Some(a)) if query_record(a) => Some(Owner::Next(a.line)),
                _ => None,
            };
            plans.insert(
                (l.session_id.clone(), l.line),
                Plan {
                    text: text.clone(),
                    query_text,
                    owner,
                },
            );
        }
        let total = lines.len();
        let mut expected: BTreeMap<String, Expected> = lines
            .into_iter()
            .filter(query_record)
            .map(|l| {
                let key = format!("{}:{}", l.session_id, l.line);
                (
                    key.clone(),
                    Expected {
                        key,
                        line: l,
                        plan: None,
                        plan_after: None,
                    },
                )
            })
            .collect();
        for ((session, line), plan) in &plans {
            let (owner, required) = match plan.owner {
                Some(Owner::Next(owner)) => (owner, true),
                Some(Owner::Previous(owner)) => (owner, false),
                None => continue,
            };
            let e = expected
                .get_mut(&format!("{session}:{owner}"))
                .expect("a plan's owner is an expected record");
            let slot = if required {
                &mut e.plan
            } else {
                &mut e.plan_after
            };
            *slot = Some((*line, plan.text.clone()));
        }
        Reference {
            format,
            expected,
            plans,
            excluded,
            lines: total,
        }
    }

    /// What gpdiag's samplers ran there, as the server logged it: the user and SQL of every
    /// statement of a session named `SAMPLER_APPLICATION`.
    pub fn sampler_statements(&self) -> Vec<(&str, &str)> {
        self.expected
            .values()
            .filter(|e| e.line.application.as_deref() == Some(SAMPLER_APPLICATION))
            .map(|e| (e.line.user.as_deref().unwrap_or_default(), e.sql()))
            .collect()
    }

    /// Statements expected with their plan.
    pub fn with_plans(&self) -> usize {
        self.expected.values().filter(|e| e.plan.is_some()).count()
    }

    pub fn failed(&self) -> impl Iterator<Item = &Expected> {
        self.expected.values().filter(|e| e.failed())
    }

    /// The expected record whose SQL is `sql` (exactly one).
    pub fn only(&self, sql: &str) -> &Expected {
        let found: Vec<_> = self.expected.values().filter(|e| e.sql() == sql).collect();
        assert_eq!(
            found.len(),
            1,
            "the {} log has {} statements {sql:?}: {:?}",
            self.format.name(),
            found.len(),
            found.iter().map(|e| &e.key).collect::<Vec<_>>()
        );
        found[0]
    }

    /// Compares `records` (everything the store holds for the instance) with the expected
    /// records: exactly the same keys, no running record left, every field as logged. A report
    /// of the differences, if there are any.
    pub fn differences(&self, instance: &str, records: &[QueryRecord]) -> Option<String> {
        let records: Vec<&QueryRecord> = records
            .iter()
            .filter(|r| !self.excluded.contains(&r.session_id))
            .collect();
        let mut problems = Vec::new();
        let running: Vec<_> = records
            .iter()
            .filter(|r| r.status == QueryStatus::Running)
            .collect();
        if !running.is_empty() {
            problems.push(format!(
                "{} running record(s) left at quiescence (a duplicate of a finished one, or \
                 never settled): {}",
                running.len(),
                running
                    .iter()
                    .take(5)
                    .map(|r| format!("{} {:?}", r.query_id, short(&r.sql)))
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
        let mut actual: BTreeMap<&str, &QueryRecord> = BTreeMap::new();
        for r in records.iter().filter(|r| r.status != QueryStatus::Running) {
            if actual.insert(&r.query_id, r).is_some() {
                problems.push(format!("query_id {} is stored twice", r.query_id));
            }
        }
        let missing: Vec<&Expected> = self
            .expected
            .iter()
            .filter(|(k, _)| !actual.contains_key(k.as_str()))
            .map(|(_, e)| e)
            .collect();
        let extra: Vec<&&QueryRecord> = actual
            .iter()
            .filter(|(k, _)| !self.expected.contains_key(**k))
            .map(|(_, r)| r)
            .collect();
        if !missing.is_empty() {
            problems.push(format!(
                "{} logged statement(s) missing from the store, e.g. {}",
                missing.len(),
                missing
                    .iter()
                    .take(5)
                    .map(|e| format!("{} {:?}", e.key, short(e.sql())))
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
        if !extra.is_empty() {
            problems.push(format!(
                "{} stored record(s) the log does not call for, e.g. {}",
                extra.len(),
                extra
                    .iter()
                    .take(5)
                    .map(|r| format!("{} ({}) {:?}", r.query_id, r.source, short(&r.sql)))
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
        let mut field_problems = Vec::new();
        let mut plans_used: HashMap<(String, i64), String> = HashMap::new();
        for (key, e) in &self.expected {
            let Some(r) = actual.get(key.as_str()) else {
                continue;
            };
            let mut bad = |what: &str, want: String, got: String| {
                field_problems.push(format!("{key} {what}: expected {want}, stored {got}"));
            };
            let l = &e.line;
            if r.instance != instance {
                bad("instance", instance.into(), r.instance.clone());
            }
            if r.session_id != l.session_id {
                bad("session_id", l.session_id.clone(), r.session_id.clone());
            }
            if Some(&r.database) != l.database.as_ref() {
                bad("database", format!("{:?}", l.database), r.database.clone());
            }
            if Some(&r.user) != l.user.as_ref() {
                bad("user", format!("{:?}", l.user), r.user.clone());
            }
            if r.source != self.format.name() {
                bad("source", self.format.name().into(), r.source.clone());
            }
            if r.sql != e.sql() {
                bad("sql", format!("{:?}", e.sql()), format!("{:?}", r.sql));
            }
            if r.sql_truncated {
                bad("sql_truncated", "false".into(), "true".into());
            }
            if r.pg_query_id != l.query_id {
                bad(
                    "pg_query_id",
                    format!("{:?}", l.query_id),
                    format!("{:?}", r.pg_query_id),
                );
            }
            let start_us = r.start_time.timestamp_micros();
            match &l.duration {
                Some((us, _, _)) => {
                    if r.duration_us != Some(*us) {
                        bad(
                            "duration_us",
                            us.to_string(),
                            format!("{:?}", r.duration_us),
                        );
                    }
                    if r.duration_ms != us / 1000 {
                        bad(
                            "duration_ms",
                            (us / 1000).to_string(),
                            r.duration_ms.to_string(),
                        );
                    }
                    if r.error.is_some() {
                        bad("error", "none".into(), format!("{:?}", r.error));
                    }
                    let want = l
                        .detail
                        .as_deref()
                        .and_then(|d| d.strip_prefix("parameters: "));
                    if r.parameters.as_deref() != want {
                        bad(
                            "parameters",
                            format!("{want:?}"),
                            format!("{:?}", r.parameters),
                        );
                    }
                    let start = l.log_us - us;
                    if !(0..1000).contains(&(start - start_us)) {
                        bad(
                            "start_time",
                            format!("log_time - duration = {start} µs, cut to the ms"),
                            format!("{start_us} µs"),
                        );
                    }
                }
                None => {
                    let want = format!("{}: {}", l.state.as_deref().unwrap_or("?"), l.message);
                    if r.error.as_deref() != Some(want.as_str()) {
                        bad("error", format!("{want:?}"), format!("{:?}", r.error));
                    }
                    if r.duration_ms != 0 || r.duration_us.unwrap_or(0) != 0 {
                        bad(
                            "duration of a failed statement",
                            "0".into(),
                            format!("{} ms / {:?} µs", r.duration_ms, r.duration_us),
                        );
                    }
                    if !(0..1000).contains(&(l.log_us - start_us)) {
                        bad(
                            "start_time",
                            format!("log_time = {} µs", l.log_us),
                            format!("{start_us} µs"),
                        );
                    }
                }
            }
            // Plans: the plan on the line before the statement (see `build`) is its plan, byte
            // for byte. An execute may also carry the plan logged right after it. A plan
            // attached where the log has none next to the statement must at least be an unowned
            // plan of the same session with the statement's text; and no plan record may be
            // attached to two statements.
            let source = match (&e.plan, &r.plan_json) {
                (Some((line, want)), Some(got)) if want == got => Some(*line),
                (Some((line, want)), got) => {
                    bad(
                        &format!("plan_json (the plan on line {line})"),
                        format!("{:?}", short(want)),
                        format!("{:?}", got.as_deref().map(short)),
                    );
                    None
                }
                (None, None) => None,
                (None, Some(got)) if e.plan_after.as_ref().is_some_and(|(_, p)| p == got) => {
                    e.plan_after.as_ref().map(|(line, _)| *line)
                }
                (None, Some(got)) => {
                    let found = self
                        .plans
                        .iter()
                        .filter(|((s, _), p)| {
                            s == &l.session_id
                                && p.owner.is_none()
                                && &p.text == got
                                && p.query_text.as_deref() == Some(e.sql())
                        })
                        .map(|((_, line), _)| *line)
                        .min_by_key(|line| (line - l.line).abs());
                    if found.is_none() {
                        bad(
                            "plan_json (the log has no plan for this statement)",
                            "none".into(),
                            format!("{:?}", short(got)),
                        );
                    }
                    found
                }
            };
            if let Some(line) = source {
                if let Some(other) = plans_used.insert((l.session_id.clone(), line), key.clone()) {
                    bad(
                        "plan_json",
                        format!("a plan of its own, not that of line {line}"),
                        format!("the plan also attached to {other}"),
                    );
                }
            }
        }
        if !field_problems.is_empty() {
            problems.push(format!(
                "{} field difference(s), e.g.:\n  {}",
                field_problems.len(),
                field_problems
                    .iter()
                    .take(12)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("\n  ")
            ));
        }
        (!problems.is_empty()).then(|| {
            format!(
                "instance {instance} ({}) against the log ({} expected records of {} log \
                 records):\n{}",
                self.format.name(),
                self.expected.len(),
                self.lines,
                problems.join("\n")
            )
        })
    }
}

/// The first 120 characters, for messages.
pub fn short(s: &str) -> String {
    let mut out: String = s.chars().take(120).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

/// Every record the store at `url` holds for `instance`.
pub fn store_records(url: &str, instance: &str) -> Vec<QueryRecord> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = gpdiag_store::open(url).await.unwrap();
        let filter = RecordFilter {
            instance: instance.into(),
            database: None,
            window: TimeWindow::new(
                "2000-01-01T00:00:00Z".parse().unwrap(),
                "2100-01-01T00:00:00Z".parse().unwrap(),
            )
            .unwrap(),
            user: None,
            keyword: None,
            condition: None,
        };
        let mut rx = store.stream_records(&filter, RecordOrder::default(), 5000);
        let mut out = Vec::new();
        loop {
            let batch = rx
                .recv()
                .await
                .expect("the record stream ended without its final empty batch")
                .unwrap();
            if batch.is_empty() {
                break;
            }
            out.extend(batch);
        }
        out
    })
}

/// One collected instance of a test configuration.
pub struct CollectedInstance {
    pub id: &'static str,
    pub format: LogFormat,
    /// `sample_interval` as configured.
    pub interval: Duration,
}

/// Writes `DIR/gpdiag.toml`, collecting `instances` from `cluster` (sampling it as
/// `MONITOR_ROLE`, and reading the logs in `log_dir`) into the store at `store_url` (default:
/// the SQLite store `DIR/gpdiag.db`); returns the store's URL and the configuration's path.
pub fn write_collect_config(
    dir: &Path,
    store_url: Option<&str>,
    cluster: &Cluster,
    log_dir: &Path,
    instances: &[CollectedInstance],
) -> (String, PathBuf) {
    let store_url = store_url.map_or_else(
        || format!("sqlite://{}", dir.join("gpdiag.db").display()),
        str::to_owned,
    );
    let config = dir.join("gpdiag.toml");
    fs::write(
        &config,
        collect_config(dir, &store_url, cluster, log_dir, instances),
    )
    .unwrap();
    (store_url, config)
}

/// The text of that configuration, with the support module's account and key.
fn collect_config(
    dir: &Path,
    store_url: &str,
    cluster: &Cluster,
    log_dir: &Path,
    instances: &[CollectedInstance],
) -> String {
    let key = crate::support::creds();
    let mut text = format!(
        r#"[server]
listen = "127.0.0.1:0"

[storage]
url = "{store_url}"

[objects]
url = "file://{objects}"

[metrics]
enabled = true

[[accounts]]
name = "collector"
access_key_id = "{id}"
access_key_secret = "{secret}"
"#,
        objects = dir.join("objects").display(),
        id = key.access_key_id,
        secret = key.access_key_secret,
    );
    for i in instances {
        let ms = i.interval.as_millis();
        let interval = if ms % 1000 == 0 {
            format!("{}s", ms / 1000)
        } else {
            format!("{ms}ms")
        };
        text.push_str(&format!(
            r#"
[[instances]]
id = "{id}"
account = "collector"
core_version = "6.3.10.1"
mode = "StorageElastic"

[instances.collect]
dsn = "{dsn}"
log_dir = "{log_dir}"
log_format = "{format}"
sample_interval = "{interval}"
"#,
            id = i.id,
            dsn = cluster.monitor_url,
            log_dir = log_dir.display(),
            format = i.format.name(),
        ));
    }
    text
}

/// `gpdiag collect --once --config CONFIG [--instance ID]`; must succeed. Its standard output.
pub fn collect_once(config: &Path, instance: Option<&str>) -> String {
    let mut command = Command::new(BIN);
    command
        .args(["collect", "--once", "--config"])
        .arg(config)
        .current_dir(config.parent().unwrap());
    if let Some(id) = instance {
        command.args(["--instance", id]);
    }
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("GPDIAG_") {
            command.env_remove(&name);
        }
    }
    let started = Instant::now();
    let out = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "gpdiag collect --once failed ({}) after {:?}:\n{stdout}\n{}",
        out.status,
        started.elapsed(),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Checks `collect --once` output: a line per instance in `ids`, none of which skipped an
/// unreadable log record (the server's logs have none).
pub fn assert_all_readable(out: &str, ids: &[&str]) {
    for id in ids {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("{id}: ")))
            .unwrap_or_else(|| panic!("collect --once reported nothing for {id}:\n{out}"));
        assert!(
            line.ends_with(", 0 unreadable log records skipped"),
            "collect --once skipped log records of {id} as unreadable, in logs PostgreSQL \
             wrote and reads back whole (a resume point inside a record?): {line}"
        );
    }
}

/// The saved log positions of `instance` that are not where a record starts: a csvlog record
/// starts a line with its timestamp, a jsonlog record is one line starting with `{`.
pub fn positions_inside_records(store_url: &str, instance: &str, log_dir: &Path) -> Vec<String> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let positions = rt.block_on(async {
        let store = gpdiag_store::open(store_url).await.unwrap();
        store.collector_files(instance).await.unwrap()
    });
    assert!(!positions.is_empty(), "{instance}: no saved log positions");
    let mut bad = Vec::new();
    for p in positions {
        let bytes = fs::read(log_dir.join(&p.file_name)).unwrap();
        let at = p.offset as usize;
        if at == 0 || at == bytes.len() {
            continue;
        }
        let rest = &bytes[at..];
        let starts = bytes[at - 1] == b'\n'
            && if p.file_name.ends_with(".json") {
                rest.starts_with(b"{")
            } else {
                rest.len() > 20
                    && rest[..19].iter().enumerate().all(|(i, b)| match i {
                        4 | 7 => *b == b'-',
                        10 => *b == b' ',
                        13 | 16 => *b == b':',
                        _ => b.is_ascii_digit(),
                    })
            };
        if !starts {
            bad.push(format!(
                "{} offset {} (of {} bytes): ...{:?} | {:?}...",
                p.file_name,
                p.offset,
                bytes.len(),
                String::from_utf8_lossy(&bytes[at.saturating_sub(60)..at]),
                String::from_utf8_lossy(&rest[..rest.len().min(60)])
            ));
        }
    }
    bad
}
