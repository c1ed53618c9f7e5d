//! The log parsers against the real PostgreSQL 15 samples in `../shared/fixtures/postgresql-15`
//! (csvlog and jsonlog of the same 230 records), their PG 13/12 layouts made by dropping columns,
//! hand-written Greenplum 6 lines, incremental feeding, and oversized records.

use chrono::{DateTime, Duration, TimeZone, Utc};
use gpdiag_core::{QueryRecord, QueryStatus};
use gpdiag_ingest::logs::{LogEntry, LogFormat, LogReader, Parsed, StatementBuilder, TAIL_RESERVE};
use std::collections::BTreeMap;

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/fixtures/postgresql-15/"
);
const CAP: usize = 1 << 20;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}{name}"))
        .unwrap_or_else(|e| panic!("{FIXTURES}{name} (shared/ must be beside the repository): {e}"))
}

/// Pushes `bytes` in the given chunk sizes (cycled) and returns everything emitted.
fn parse_chunked(format: LogFormat, bytes: &[u8], chunks: &[usize], cap: usize) -> Vec<Parsed> {
    let mut reader = LogReader::new(format, 0, cap);
    let mut out = Vec::new();
    let mut rest = bytes;
    let mut i = 0;
    while !rest.is_empty() {
        let n = chunks[i % chunks.len()].clamp(1, rest.len());
        reader.push(&rest[..n], &mut |p| out.push(p));
        rest = &rest[n..];
        i += 1;
    }
    out
}

fn parse(format: LogFormat, bytes: &[u8]) -> Vec<Parsed> {
    parse_chunked(format, bytes, &[bytes.len().max(1)], CAP)
}

fn entries(parsed: Vec<Parsed>) -> Vec<LogEntry> {
    parsed
        .into_iter()
        .map(|p| match p {
            Parsed::Entry(e) => e,
            Parsed::Bad { reason, .. } => panic!("unexpected bad record: {reason}"),
        })
        .collect()
}

fn records(format: LogFormat, entries: &[LogEntry]) -> Vec<QueryRecord> {
    let mut builder = StatementBuilder::new("pg-1", format);
    let mut out = Vec::new();
    for e in entries {
        builder.accept(e.clone(), &mut out);
    }
    out
}

/// The final version of each record (a record is pushed again when its plan follows it).
fn by_key(records: &[QueryRecord]) -> BTreeMap<String, QueryRecord> {
    records
        .iter()
        .map(|r| (r.query_id.clone(), r.clone()))
        .collect()
}

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn csv_entries() -> Vec<LogEntry> {
    entries(parse(LogFormat::Csvlog, &fixture("csvlog_sample.csv")))
}

fn json_entries() -> Vec<LogEntry> {
    entries(parse(LogFormat::Jsonlog, &fixture("jsonlog_sample.json")))
}

/// The fixture's records as field lists, read by the `csv` crate: a second, independent CSV
/// parser.
fn csv_crate_records(bytes: &[u8]) -> Vec<Vec<String>> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes)
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect()
}

/// PostgreSQL's own csvlog quoting (`appendCSVLiteral`): strings always quoted, `"` doubled,
/// NULL as nothing. Numbers and times are written bare. `quoted[i]` says which is which.
fn pg_csv_line<S: AsRef<str>>(fields: &[S], quoted: &[bool]) -> String {
    let mut line = String::new();
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        let f = f.as_ref();
        if quoted[i] && !f.is_empty() {
            line.push('"');
            line.push_str(&f.replace('"', "\"\""));
            line.push('"');
        } else {
            line.push_str(f);
        }
    }
    line.push('\n');
    line
}

/// A PostgreSQL 15 client backend's LOG record (session `6b1312bf.7`, application `app`,
/// query_id 42) as its 26 fields, for a test to change before `pg_csv_line`.
fn pg15_fields(line: &str, message: &str) -> Vec<String> {
    let time = "2026-12-04 19:21:35.724 UTC";
    let mut fields = vec![String::new(); 26];
    for (i, value) in [
        (0, time),
        (1, "u"),
        (2, "d"),
        (3, "7"),
        (5, "6b1312bf.7"),
        (6, line),
        (7, "SELECT"),
        (8, "2026-12-04 19:21:35 UTC"),
        (9, "3/1"),
        (10, "0"),
        (11, "LOG"),
        (12, "00000"),
        (13, message),
        (22, "app"),
        (23, "client backend"),
        (25, "42"),
    ] {
        fields[i] = value.to_owned();
    }
    fields
}

/// Which of the 26 PG 15 columns are strings.
const PG15_QUOTED: [bool; 26] = [
    false, true, true, false, true, false, false, true, false, false, false, true, true, true,
    true, true, true, false, true, true, false, true, true, true, false, false,
];

#[test]
fn every_csvlog_record_of_the_sample_parses() {
    let bytes = fixture("csvlog_sample.csv");
    let parsed = parse(LogFormat::Csvlog, &bytes);
    let independent = csv_crate_records(&bytes);
    assert!(independent.iter().all(|r| r.len() == 26));
    assert_eq!(parsed.len(), independent.len());
    // The jsonlog sample holds the same records, one a line.
    let json_lines = fixture("jsonlog_sample.json")
        .iter()
        .filter(|&&b| b == b'\n')
        .count();
    assert_eq!(parsed.len(), json_lines);
    assert_eq!(parsed.len(), 230);

    let entries = entries(parsed);
    // Records tile the file: each starts where the previous ended and ends with its newline.
    let mut at = 0;
    for (e, fields) in entries.iter().zip(&independent) {
        assert_eq!(e.offset_start, at);
        assert_eq!(bytes[e.offset_end as usize - 1], b'\n');
        at = e.offset_end;
        assert_eq!(e.message, fields[13]);
        assert_eq!(e.session_id, fields[5]);
        assert_eq!(e.line_num, fields[6].parse().ok());
        assert_eq!(e.statement.as_deref().unwrap_or(""), fields[19]);
        assert_eq!(e.application_name.as_deref().unwrap_or(""), fields[22]);
        assert_eq!(e.backend_type.as_deref().unwrap_or(""), fields[23]);
        assert_eq!(e.query_id.unwrap_or(0), fields[25].parse::<i64>().unwrap());
        assert!(!e.truncated);
        // Each record's bytes alone parse to the same entry.
        let alone = &bytes[e.offset_start as usize..e.offset_end as usize];
        let mut again = entries_from(LogFormat::Csvlog, alone, e.offset_start);
        assert_eq!(again.pop().as_ref(), Some(e));
    }
    assert_eq!(at, bytes.len() as u64);
}

fn entries_from(format: LogFormat, bytes: &[u8], start: u64) -> Vec<LogEntry> {
    let mut reader = LogReader::new(format, start, CAP);
    let mut out = Vec::new();
    reader.push(bytes, &mut |p| out.push(p));
    entries(out)
}

#[test]
fn csvlog_fields_in_detail() {
    let entries = csv_entries();
    let first = &entries[0];
    assert_eq!(first.log_time, utc("2026-12-04T19:21:14.283Z"));
    assert_eq!(first.pid, Some(5649));
    assert_eq!(first.user, None);
    assert_eq!(first.severity, "LOG");
    assert_eq!(first.sql_state, None, "00000 is no state");
    assert_eq!(first.backend_type.as_deref(), Some("postmaster"));
    assert_eq!(first.command_count, None);
    assert_eq!(first.segment, None);

    let find = |session: &str, line: i64| {
        entries
            .iter()
            .find(|e| e.session_id == session && e.line_num == Some(line))
            .unwrap()
    };
    let quoted = find("6b1312bf.19d5", 5);
    assert_eq!(
        quoted.application_name.as_deref(),
        Some("edge,\"case\" app")
    );
    assert!(quoted
        .message
        .contains("'It''s a \"quoted\", comma-separated, value'"));
    assert!(quoted
        .message
        .contains("Ünïcødé — 日本語 — emoji 🐘, tab\there"));
    assert!(quoted.message.contains("'Multi\nline\nliteral'"));

    let user = find("6b1312bf.19db", 4);
    assert_eq!(user.user.as_deref(), Some("Ünïcødé user"));
    assert_eq!(user.database.as_deref(), Some("bench"));

    let error = find("6b1312bf.19d5", 12);
    assert_eq!(error.severity, "ERROR");
    assert_eq!(error.sql_state.as_deref(), Some("22012"));
    assert_eq!(error.statement.as_deref(), Some("SELECT 1/0;"));
    assert_eq!(error.query_id, Some(-8441324848661855122));
    assert_eq!(find("6b1312bf.19d5", 13).query_id, None, "0 is no query_id");

    let bind = find("6b1312bf.19df", 4);
    assert_eq!(bind.detail.as_deref(), Some("parameters: $1 = '222735'"));
}

/// What both formats must agree on: everything but the offsets.
#[derive(Debug, PartialEq)]
struct Comparable {
    log_time: DateTime<Utc>,
    session_id: String,
    line_num: Option<i64>,
    message: String,
    statement: Option<String>,
    query_id: Option<i64>,
    user: Option<String>,
    database: Option<String>,
    pid: Option<i64>,
    severity: String,
    sql_state: Option<String>,
    detail: Option<String>,
    application_name: Option<String>,
    backend_type: Option<String>,
    truncated: bool,
    message_truncated: bool,
    statement_truncated: bool,
}

fn comparable(e: &LogEntry) -> Comparable {
    Comparable {
        log_time: e.log_time,
        session_id: e.session_id.clone(),
        line_num: e.line_num,
        message: e.message.clone(),
        statement: e.statement.clone(),
        query_id: e.query_id,
        user: e.user.clone(),
        database: e.database.clone(),
        pid: e.pid,
        severity: e.severity.clone(),
        sql_state: e.sql_state.clone(),
        detail: e.detail.clone(),
        application_name: e.application_name.clone(),
        backend_type: e.backend_type.clone(),
        truncated: e.truncated,
        message_truncated: e.message_truncated,
        statement_truncated: e.statement_truncated,
    }
}

#[test]
fn csvlog_and_jsonlog_samples_yield_the_same_entries_and_records() {
    let csv = csv_entries();
    let json = json_entries();
    assert_eq!(json.len(), 230);
    // The two files interleave concurrent backends slightly differently; compare by key.
    let mut a: Vec<_> = csv.iter().map(comparable).collect();
    let mut b: Vec<_> = json.iter().map(comparable).collect();
    a.sort_by(|x, y| (&x.session_id, x.line_num).cmp(&(&y.session_id, y.line_num)));
    b.sort_by(|x, y| (&x.session_id, x.line_num).cmp(&(&y.session_id, y.line_num)));
    assert_eq!(a, b);

    let from_csv = by_key(&records(LogFormat::Csvlog, &csv));
    let from_json = by_key(&records(LogFormat::Jsonlog, &json));
    assert_eq!(from_csv.len(), from_json.len());
    for (key, c) in &from_csv {
        let mut j = from_json[key].clone();
        assert_eq!(j.source, "jsonlog");
        j.source = "csvlog".into();
        assert_eq!(&j, c);
    }
}

#[test]
fn query_records_from_the_sample() {
    let entries = csv_entries();
    let all = records(LogFormat::Csvlog, &entries);
    let records = by_key(&all);
    // 167 `statement:` + 4 `execute` duration records + 3 errors; nothing from connections,
    // disconnections, checkpoints, plans, parse and bind.
    assert_eq!(records.len(), 174);
    assert_eq!(
        all.len(),
        174,
        "no plan in the sample follows an execute record"
    );
    for r in records.values() {
        assert_eq!(r.instance, "pg-1");
        assert_eq!(r.source, "csvlog");
        assert_eq!(r.status, QueryStatus::Finished);
        assert_eq!(r.rows, None);
        assert!(!r.sql_truncated);
        assert!(!r.sql.is_empty());
        if r.error.is_none() {
            let us = r.duration_us.unwrap();
            assert_eq!(r.duration_ms, us / 1000);
        }
    }
    let get = |k: &str| records.get(k).unwrap_or_else(|| panic!("no record {k}"));

    // Multi-line SQL with quotes, commas, tabs and non-ASCII, byte for byte.
    let insert = get("6b1312bf.19d5:5");
    assert_eq!(
        insert.sql,
        "INSERT INTO notes (body, tag)\nVALUES ('It''s a \"quoted\", comma-separated, value', 'q1'),\n       ('Multi\nline\nliteral', 'ml'),\n       ('Ünïcødé — 日本語 — emoji 🐘, tab\there', 'utf8');"
    );
    assert_eq!(insert.duration_us, Some(707));
    assert_eq!(insert.duration_ms, 0);
    // 19:21:35.669 − 0.707 ms = 35.668293, truncated to the millisecond.
    assert_eq!(insert.start_time, utc("2026-12-04T19:21:35.668Z"));
    assert_eq!(insert.session_id, "6b1312bf.19d5");
    assert_eq!(insert.database, "bench");
    assert_eq!(insert.user, "postgres");
    assert_eq!(insert.pg_query_id, Some(-6945018298666032201));
    assert_eq!(insert.error, None);
    assert_eq!(insert.parameters, None);

    let long = get("6b1312c6.1a6d:4");
    assert_eq!(long.duration_us, Some(8_006_245));
    assert_eq!(long.duration_ms, 8006);
    assert_eq!(long.start_time, utc("2026-12-04T19:21:42.862Z"));
    assert_eq!(
        long.sql,
        "SELECT pg_sleep(8), 'long\nmulti-line, \"quoted\" ü' AS label"
    );

    // Extended protocol: the execute record is the query, with its parameters.
    let execute = get("6b1312bf.19df:5");
    assert_eq!(
        execute.sql,
        "SELECT abalance FROM pgbench_accounts WHERE aid = $1;"
    );
    assert_eq!(execute.duration_us, Some(42));
    assert_eq!(execute.parameters.as_deref(), Some("$1 = '222735'"));
    assert_eq!(
        get("6b1312bf.19df:17").parameters.as_deref(),
        Some("$1 = '427694'")
    );
    for parse_or_bind in ["6b1312bf.19df:3", "6b1312bf.19df:4", "6b1312bf.19df:8"] {
        assert!(!records.contains_key(parse_or_bind), "{parse_or_bind}");
    }

    // PREPARE and EXECUTE are two statements; EXECUTE gets the prepared query's plan.
    assert_eq!(
        get("6b1312bf.19d5:15").sql,
        "PREPARE p1(int) AS SELECT aid, abalance FROM pgbench_accounts WHERE aid = $1;"
    );
    let exec = get("6b1312bf.19d5:17");
    assert_eq!(exec.sql, "EXECUTE p1(42);");
    assert_eq!(exec.duration_us, Some(265));
    assert_eq!(
        exec.parameters, None,
        "`prepare:` detail is no parameter list"
    );

    // Failed statements.
    for (key, error, sql, pg_query_id) in [
        (
            "6b1312bf.19d5:12",
            "22012: division by zero",
            "SELECT 1/0;",
            Some(-8441324848661855122),
        ),
        (
            "6b1312bf.19d5:13",
            "42P01: relation \"no_such_table\" does not exist",
            "SELECT * FROM no_such_table WHERE x = 'ü';",
            None,
        ),
        (
            "6b1312bf.19d5:14",
            "42601: syntax error at or near \"SELEC\"",
            "SELEC broken syntax;",
            None,
        ),
    ] {
        let r = get(key);
        assert_eq!(r.error.as_deref(), Some(error));
        assert_eq!(r.sql, sql);
        assert_eq!(r.duration_ms, 0);
        assert_eq!(r.duration_us, None);
        assert_eq!(r.start_time, utc("2026-12-04T19:21:35.724Z"));
        assert_eq!(r.pg_query_id, pg_query_id);
        assert_eq!(r.plan_json, None);
    }

    // Nothing from session events.
    let connection = entries
        .iter()
        .find(|e| e.message.starts_with("connection authorized"))
        .unwrap();
    let key = format!("{}:{}", connection.session_id, connection.line_num.unwrap());
    assert!(!records.contains_key(&key));
}

#[test]
fn plans_are_attached_to_their_statements() {
    let records = by_key(&records(LogFormat::Csvlog, &csv_entries()));
    // The auto_explain fixture holds every plan record of the sample.
    let plans: Vec<serde_json::Value> =
        String::from_utf8(fixture("auto_explain_jsonlog_records.json"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    assert_eq!(plans.len(), 15);
    let mut attached = 0;
    for plan in &plans {
        let session = plan["session_id"].as_str().unwrap();
        let line = plan["line_num"].as_i64().unwrap();
        let text = plan["message"]
            .as_str()
            .unwrap()
            .split_once("plan:\n")
            .unwrap()
            .1;
        let key = format!("{session}:{}", line + 1);
        let Some(statement) = records.get(&key) else {
            // The multi-statement string's first plan is followed by its second plan.
            assert_eq!(session, "6b1312c6.1a6c");
            continue;
        };
        if statement.pg_query_id != plan["query_id"].as_i64() {
            // The multi-statement record carries the last statement's query_id (COMMIT, no
            // plan); the plan logged right before it has an earlier statement's, and is
            // joined by its Query Text, the whole string.
            assert_eq!(key, "6b1312c6.1a6c:5");
            assert_eq!(statement.plan_json.as_deref(), Some(text), "{key}");
            attached += 1;
            continue;
        }
        assert_eq!(statement.plan_json.as_deref(), Some(text), "{key}");
        let doc: serde_json::Value = serde_json::from_str(text).unwrap();
        let query_text = doc["Query Text"].as_str().unwrap();
        if statement.sql == "EXECUTE p1(42);" {
            assert!(query_text.starts_with("PREPARE p1(int) AS"));
        } else {
            assert_eq!(query_text, statement.sql, "{key}");
        }
        attached += 1;
    }
    assert_eq!(attached, 14);
    let with_plans = records.values().filter(|r| r.plan_json.is_some()).count();
    assert_eq!(
        with_plans, 14,
        "no plan lands on a statement that is not its own"
    );
    assert!(records.values().all(|r| r.plan_text.is_none()));
}

/// The sample rewritten with fewer columns, as PostgreSQL 13 (24) and 12 (23) write them.
fn fewer_columns(keep: usize) -> Vec<u8> {
    let mut out = String::new();
    for fields in csv_crate_records(&fixture("csvlog_sample.csv")) {
        let fields: Vec<&str> = fields.iter().map(String::as_str).take(keep).collect();
        out.push_str(&pg_csv_line(&fields, &PG15_QUOTED[..keep]));
    }
    out.into_bytes()
}

#[test]
fn pg13_and_pg12_layouts() {
    let pg15 = csv_entries();
    let pg15_records = by_key(&records(LogFormat::Csvlog, &pg15));
    for (columns, has_backend_type) in [(24, true), (23, false)] {
        let bytes = fewer_columns(columns);
        let older = entries(parse(LogFormat::Csvlog, &bytes));
        assert_eq!(older.len(), pg15.len());
        for (old, new) in older.iter().zip(&pg15) {
            let mut expected = new.clone();
            expected.query_id = None;
            if !has_backend_type {
                expected.backend_type = None;
            }
            expected.offset_start = old.offset_start;
            expected.offset_end = old.offset_end;
            assert_eq!(old, &expected, "{columns} columns");
        }
        // The same records, without PostgreSQL's query_id: adjacency alone joins plans, and
        // joins the same ones (the multi-statement string's by its Query Text with one).
        let older_records = by_key(&records(LogFormat::Csvlog, &older));
        assert_eq!(older_records.len(), pg15_records.len());
        assert!(pg15_records["6b1312c6.1a6c:5"]
            .plan_json
            .as_deref()
            .unwrap()
            .contains("pg_sleep(6)"));
        for (key, new) in &pg15_records {
            let mut expected = new.clone();
            expected.pg_query_id = None;
            assert_eq!(&older_records[key], &expected, "{columns} columns: {key}");
        }
    }
}

#[test]
fn wrong_field_counts_are_bad_and_reading_goes_on() {
    let good = fewer_columns(26);
    let first_record_end = good.iter().position(|&b| b == b'\n').unwrap() + 1;
    let mut bytes = Vec::new();
    let short = b"2026-12-04 19:21:14.283 UTC,a,b,c\n";
    bytes.extend_from_slice(short);
    bytes.extend_from_slice(&b"x,".repeat(29));
    bytes.extend_from_slice(b"x\n");
    bytes.extend_from_slice(&good[..first_record_end]);
    let parsed = parse(LogFormat::Csvlog, &bytes);
    assert_eq!(parsed.len(), 3);
    match &parsed[0] {
        Parsed::Bad {
            offset_start,
            offset_end,
            reason,
        } => {
            assert_eq!((*offset_start, *offset_end), (0, short.len() as u64));
            assert!(reason.contains("4 fields"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    match &parsed[1] {
        Parsed::Bad { reason, .. } => assert!(reason.contains("greenplum-csvlog"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(&parsed[2], Parsed::Entry(e) if e.pid == Some(5649)));
    // A PostgreSQL line read as Greenplum is refused too.
    match &parse(LogFormat::GreenplumCsvlog, &good[..first_record_end])[0] {
        Parsed::Bad { reason, .. } => assert!(reason.contains("26 fields"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn time_zones() {
    let line = |time: &str, line: i64| {
        let mut fields = pg15_fields(&line.to_string(), "duration: 1.500 ms  statement: SELECT 1");
        fields[0] = time.to_owned();
        fields[8] = time.to_owned();
        pg_csv_line(&fields, &PG15_QUOTED)
    };
    let text = [
        line("2026-12-04 22:21:35.724 +03", 1),
        line("2026-12-04 13:51:35.724 -0530", 2),
        line("2026-12-05 00:51:35.724 +05:30", 3),
        line("2026-12-04 19:21:35.724 GMT", 4),
        line("2026-12-04 20:21:35.724 CET", 5),
        line("2026-12-04 19:21:35.724 Z", 6),
    ]
    .concat();
    let parsed = parse(LogFormat::Csvlog, text.as_bytes());
    assert_eq!(parsed.len(), 6);
    for (i, p) in parsed.iter().enumerate() {
        match p {
            Parsed::Entry(e) => {
                assert_eq!(
                    e.log_time,
                    utc("2026-12-04T19:21:35.724Z"),
                    "line {}",
                    i + 1
                );
            }
            Parsed::Bad { reason, .. } => {
                assert_eq!(i, 4);
                assert!(reason.contains("log_timezone = 'UTC'"), "{reason}");
            }
        }
    }
    // The start time is computed in UTC whatever the zone.
    let Parsed::Entry(e) = &parsed[0] else {
        panic!()
    };
    let r = records(LogFormat::Csvlog, std::slice::from_ref(e));
    assert_eq!(r[0].start_time, utc("2026-12-04T19:21:35.722Z"));
    assert_eq!(r[0].query_id, "6b1312bf.7:1");
}

/// Greenplum 6 csvlog, 30 columns: strings quoted, process `p…`, thread `th…`, session `con…`,
/// command `cmd…`, segment `seg…`, slice `slice…`, transactions `dx…`/`x…`/`sx…`.
#[allow(clippy::too_many_arguments)]
fn gp_line(
    time: &str,
    session: u32,
    command: u32,
    segment: i32,
    severity: &str,
    state: &str,
    message: &str,
    debug_query: &str,
) -> String {
    let q = |s: &str| {
        if s.is_empty() {
            String::new()
        } else {
            format!("\"{}\"", s.replace('"', "\"\""))
        }
    };
    let slice = if segment == -1 {
        String::new()
    } else {
        "slice1".into()
    };
    format!(
        "{time},{},{},p{},th-1269209216,{},{},2026-12-04 19:00:00 UTC,0,con{session},cmd{command},seg{segment},{slice},dx{},x{},sx1,{},{},{},,,,,,{},0,,{},{},\n",
        q("gpadmin"),
        q("warehouse"),
        20000 + session,
        q("10.0.0.5"),
        q("51234"),
        100 + command,
        900 + command,
        q(severity),
        q(state),
        q(message),
        q(debug_query),
        q("postgres.c"),
        1664,
    )
}

#[test]
fn greenplum_coordinator_lines_become_records() {
    let sql = "SELECT region, sum(amount)\nFROM sales\nWHERE note <> 'a, \"b\"'\nGROUP BY region;";
    let text = [
        gp_line(
            "2026-12-04 19:21:35.123456 UTC",
            42,
            7,
            -1,
            "LOG",
            "00000",
            &format!("statement: {sql}"),
            sql,
        ),
        // A segment's line for the same command: emitted, but no record.
        gp_line(
            "2026-12-04 19:21:36.000001 UTC",
            42,
            7,
            0,
            "LOG",
            "00000",
            "duration: 1500.000 ms  statement: SELECT region, sum(amount) FROM sales_1_prt_2",
            sql,
        ),
        gp_line(
            "2026-12-04 19:21:36.623456 UTC",
            42,
            7,
            -1,
            "LOG",
            "00000",
            &format!("duration: 1500.250 ms  statement: {sql}"),
            sql,
        ),
        gp_line(
            "2026-12-04 19:21:37.000000 UTC",
            42,
            8,
            -1,
            "ERROR",
            "42P01",
            "relation \"missing\" does not exist",
            "SELECT * FROM missing;",
        ),
        gp_line(
            "2026-12-04 19:21:38.000000 CST",
            42,
            9,
            -1,
            "LOG",
            "00000",
            "duration: 1.000 ms  statement: SELECT 1",
            "SELECT 1",
        ),
    ]
    .concat();
    let parsed = parse(LogFormat::GreenplumCsvlog, text.as_bytes());
    assert_eq!(parsed.len(), 5);
    let Parsed::Bad { reason, .. } = &parsed[4] else {
        panic!("{:?}", parsed[4])
    };
    assert!(reason.contains("log_timezone = 'UTC'"), "{reason}");
    let entries = entries(parsed[..4].to_vec());
    let first = &entries[0];
    assert_eq!(first.session_id, "con42");
    assert_eq!(first.command_count, Some(7));
    assert_eq!(first.segment, Some(-1));
    assert_eq!(first.line_num, None);
    assert_eq!(first.pid, Some(20042));
    assert_eq!(first.user.as_deref(), Some("gpadmin"));
    assert_eq!(first.database.as_deref(), Some("warehouse"));
    assert_eq!(first.statement.as_deref(), Some(sql));
    assert_eq!(first.query_id, None);
    assert_eq!(
        first.log_time,
        utc("2026-12-04T19:21:35.123456Z"),
        "microseconds are kept"
    );
    assert_eq!(entries[1].segment, Some(0));

    let records = records(LogFormat::GreenplumCsvlog, &entries);
    assert_eq!(records.len(), 2);
    let done = &records[0];
    assert_eq!(done.query_id, "con42:p20042:7");
    assert_eq!(done.session_id, "con42");
    assert_eq!(done.sql, sql);
    assert_eq!(done.duration_us, Some(1_500_250));
    assert_eq!(done.duration_ms, 1500);
    // 36.623456 − 1.500250 = 35.123206 → 35.123.
    assert_eq!(done.start_time, utc("2026-12-04T19:21:35.123Z"));
    assert_eq!(done.source, "greenplum-csvlog");
    assert_eq!(done.pg_query_id, None);
    let failed = &records[1];
    assert_eq!(failed.query_id, "con42:p20042:8");
    assert_eq!(
        failed.error.as_deref(),
        Some("42P01: relation \"missing\" does not exist")
    );
    assert_eq!(failed.sql, "SELECT * FROM missing;");
    assert_eq!(failed.duration_us, None);
}

#[test]
fn feeding_in_any_chunks_gives_the_same_output() {
    for (format, name) in [
        (LogFormat::Csvlog, "csvlog_sample.csv"),
        (LogFormat::Jsonlog, "jsonlog_sample.json"),
    ] {
        let bytes = fixture(name);
        let whole = parse(format, &bytes);
        assert_eq!(whole.len(), 230);
        assert_eq!(
            parse_chunked(format, &bytes, &[1], CAP),
            whole,
            "{name} byte by byte"
        );
        // Deterministic pseudo-random chunk sizes (xorshift), several seeds.
        for seed in [1u64, 7, 12345, 0xdead_beef] {
            let mut x = seed;
            let sizes: Vec<usize> = (0..257)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x % 700) as usize + 1
                })
                .collect();
            assert_eq!(
                parse_chunked(format, &bytes, &sizes, CAP),
                whole,
                "{name} seed {seed}"
            );
        }
    }
}

#[test]
fn records_are_emitted_exactly_when_complete_and_offsets_stay_on_boundaries() {
    for (format, name) in [
        (LogFormat::Csvlog, "csvlog_sample.csv"),
        (LogFormat::Jsonlog, "jsonlog_sample.json"),
    ] {
        let bytes = fixture(name);
        let whole = entries(parse(format, &bytes));
        let mut boundaries: Vec<u64> = whole.iter().map(|e| e.offset_end).collect();
        boundaries.push(0);
        let mut reader = LogReader::new(format, 0, CAP);
        let mut emitted = 0;
        for k in 0..bytes.len() {
            reader.push(&bytes[k..k + 1], &mut |p| {
                let Parsed::Entry(e) = p else { panic!() };
                assert_eq!(e, whole[emitted]);
                emitted += 1;
            });
            let pushed = k as u64 + 1;
            // Exactly the records that end within the pushed bytes are out.
            let complete = whole.iter().filter(|e| e.offset_end <= pushed).count();
            assert_eq!(emitted, complete, "{name} after {pushed} bytes");
            let committed = reader.committed_offset();
            assert!(
                boundaries.contains(&committed),
                "{name}: {committed} inside a record"
            );
            assert_eq!(
                committed,
                whole
                    .get(complete.wrapping_sub(1))
                    .map_or(0, |e| e.offset_end),
                "{name} after {pushed} bytes"
            );
            assert_eq!(
                reader.pending_bytes() == 0,
                committed == pushed,
                "{name}: pending bytes after {pushed}"
            );
        }
        assert_eq!(reader.committed_offset(), bytes.len() as u64);
        assert_eq!(reader.pending_bytes(), 0);
    }
}

#[test]
fn resuming_at_an_offset_continues_the_same_stream() {
    for (format, name) in [
        (LogFormat::Csvlog, "csvlog_sample.csv"),
        (LogFormat::Jsonlog, "jsonlog_sample.json"),
    ] {
        let bytes = fixture(name);
        let whole = entries(parse(format, &bytes));
        let resume = whole[100].offset_start;
        let tail = entries_from(format, &bytes[resume as usize..], resume);
        assert_eq!(tail, whole[100..]);
    }
}

/// A record whose message is `size` bytes of multi-byte text, streamed in 64 KiB chunks.
fn stream_oversized(
    format: LogFormat,
    head: &[u8],
    body: &[u8],
    tail: &[u8],
    cap: usize,
) -> (Vec<Parsed>, usize, usize) {
    let mut reader = LogReader::new(format, 0, cap);
    let mut out = Vec::new();
    let mut max_pending = 0;
    let mut max_capacity = 0;
    for part in [head, body, tail] {
        for chunk in part.chunks(64 * 1024) {
            reader.push(chunk, &mut |p| out.push(p));
            max_pending = max_pending.max(reader.pending_bytes());
            max_capacity = max_capacity.max(reader.retained_capacity());
        }
    }
    (out, max_pending, max_capacity)
}

#[test]
fn oversized_records_are_cut_flagged_and_bounded() {
    const SIZE: usize = 50 << 20;
    const SMALL_CAP: usize = 256 * 1024;
    // Three-byte characters so that a cut at the cap lands inside one.
    let sql: String = "SELECT '".to_owned() + &"日".repeat(SIZE / 3) + "'";
    let next = "duration: 0.010 ms  statement: SELECT 2";

    // csvlog: the message is the long field; application_name and query_id follow it.
    let fields = |message: &str, line: &str| {
        let mut fields = pg15_fields(line, message);
        fields[22] = "after app".to_owned();
        pg_csv_line(&fields, &PG15_QUOTED)
    };
    let big = fields(&format!("duration: 12.345 ms  statement: {sql}"), "1");
    let csv_len = big.len();
    let (head, rest) = big.as_bytes().split_at(100);
    let (body, tail) = rest.split_at(rest.len() - 50);
    let small = fields(next, "2");
    let tail = [tail, small.as_bytes()].concat();
    let csv = stream_oversized(LogFormat::Csvlog, head, body, &tail, SMALL_CAP);

    // jsonlog: one 50 MB line.
    let json_line = |message: &str, line: i64| {
        serde_json::json!({
            "timestamp": "2026-12-04 19:21:35.724 UTC", "user": "u", "dbname": "d", "pid": 7,
            "session_id": "6b1312bf.7", "line_num": line, "error_severity": "LOG",
            "message": message, "application_name": "after app",
            "backend_type": "client backend", "query_id": 42
        })
        .to_string()
            + "\n"
    };
    let big = json_line(&format!("duration: 12.345 ms  statement: {sql}"), 1);
    let json_len = big.len();
    let (head, rest) = big.as_bytes().split_at(100);
    let (body, tail) = rest.split_at(rest.len() - 50);
    let small = json_line(next, 2);
    let tail = [tail, small.as_bytes()].concat();
    let json = stream_oversized(LogFormat::Jsonlog, head, body, &tail, SMALL_CAP);

    for (format, (out, max_pending, max_capacity), big_len) in [
        (LogFormat::Csvlog, csv, csv_len),
        (LogFormat::Jsonlog, json, json_len),
    ] {
        assert!(
            max_pending <= SMALL_CAP + TAIL_RESERVE,
            "{format}: {max_pending}"
        );
        assert!(
            max_capacity <= SMALL_CAP + TAIL_RESERVE + 64 * 1024,
            "{format}: {max_capacity}"
        );
        let entries = entries(out);
        assert_eq!(entries.len(), 2, "{format}");
        let cut = &entries[0];
        assert!(cut.truncated && cut.message_truncated && !cut.statement_truncated);
        assert!(cut.message.len() <= SMALL_CAP && cut.message.len() > SMALL_CAP - 1024);
        assert!(format!("duration: 12.345 ms  statement: {sql}").starts_with(&cut.message));
        assert!(cut.message.ends_with('日'), "cut on a character boundary");
        assert_eq!(
            cut.application_name.as_deref(),
            Some("after app"),
            "{format}"
        );
        assert_eq!(cut.backend_type.as_deref(), Some("client backend"));
        assert_eq!(cut.query_id, Some(42));
        assert_eq!(cut.line_num, Some(1));
        assert_eq!(cut.offset_start, 0);
        let next_entry = &entries[1];
        assert!(!next_entry.truncated);
        assert_eq!(next_entry.message, next);
        assert_eq!(next_entry.offset_start, cut.offset_end);
        assert_eq!(cut.offset_end, big_len as u64);

        let records = records(format, &entries);
        assert_eq!(records.len(), 2);
        assert!(records[0].sql_truncated);
        assert_eq!(records[0].duration_us, Some(12_345));
        assert!(sql.starts_with(&records[0].sql));
        assert_eq!(records[0].query_id, "6b1312bf.7:1");
        assert!(!records[1].sql_truncated);
        assert_eq!(records[1].sql, "SELECT 2");
    }
}

#[test]
fn an_oversized_statement_column_is_cut_and_the_message_kept() {
    let long_sql = format!("SELECT '{}' + 1/0;", "x".repeat(5000));
    let mut fields = vec![
        "2026-12-04 19:21:35.724 UTC",
        "u",
        "d",
        "7",
        "",
        "6b1312bf.7",
        "3",
        "SELECT",
        "2026-12-04 19:21:35 UTC",
        "3/1",
        "0",
        "ERROR",
        "22012",
        "division by zero",
        "",
        "",
        "",
        "",
        "",
    ];
    // A huge context (not kept) must not spend the statement's budget.
    let context = "PL/pgSQL function f() line 1 at RETURN\n".repeat(200);
    fields[18] = &context;
    fields.extend_from_slice(&[&long_sql, "", "", "app", "client backend", "", "42"]);
    let line = pg_csv_line(&fields, &PG15_QUOTED);
    let entries = entries(parse_chunked(
        LogFormat::Csvlog,
        line.as_bytes(),
        &[333],
        2048,
    ));
    let e = &entries[0];
    assert!(e.truncated && e.statement_truncated && !e.message_truncated);
    assert_eq!(e.message, "division by zero");
    let statement = e.statement.as_deref().unwrap();
    assert!(long_sql.starts_with(statement));
    assert!(
        statement.len() > 1500 && statement.len() <= 2048,
        "{}",
        statement.len()
    );
    assert_eq!(e.application_name.as_deref(), Some("app"));
    assert_eq!(e.query_id, Some(42));
    let r = records(LogFormat::Csvlog, &entries);
    assert!(r[0].sql_truncated);
    assert_eq!(r[0].error.as_deref(), Some("22012: division by zero"));
}

#[test]
fn a_cut_plan_is_not_attached() {
    let plan = format!(
        "duration: 1.000 ms  plan:\n{{\"Query Text\": \"SELECT 1\", \"Plan\": {{\"Node Type\": \"Result\", \"Pad\": \"{}\"}}}}",
        "p".repeat(4000)
    );
    let line = |line: &str, message: &str| pg_csv_line(&pg15_fields(line, message), &PG15_QUOTED);
    let text = line("1", &plan) + &line("2", "duration: 1.500 ms  statement: SELECT 1");
    for cap in [1024, 1 << 20] {
        let entries = entries(parse_chunked(
            LogFormat::Csvlog,
            text.as_bytes(),
            &[100],
            cap,
        ));
        assert_eq!(entries[0].truncated, cap == 1024);
        let r = records(LogFormat::Csvlog, &entries);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].plan_json.is_some(), cap != 1024, "cap {cap}");
    }
}

#[test]
fn invalid_utf8_is_replaced_not_fatal() {
    let mut csv = {
        let mut fields = pg15_fields("1", "duration: 1.000 ms  statement: SELECT 'XX'");
        fields[5] = "s.1".to_owned();
        fields[25] = "0".to_owned();
        pg_csv_line(&fields, &PG15_QUOTED)
    }
    .into_bytes();
    let at = csv.windows(2).position(|w| w == b"XX").unwrap();
    csv[at] = 0xff;
    csv[at + 1] = 0xc3;
    let e = &entries(parse(LogFormat::Csvlog, &csv))[0];
    assert_eq!(
        e.message,
        "duration: 1.000 ms  statement: SELECT '\u{fffd}\u{fffd}'"
    );

    let mut json = br#"{"timestamp":"2026-12-04 19:21:35.724 UTC","session_id":"s.1","line_num":1,"error_severity":"LOG","message":"duration: 1.000 ms  statement: SELECT 'XX'"}"#.to_vec();
    json.push(b'\n');
    let at = json.windows(2).position(|w| w == b"XX").unwrap();
    json[at] = 0xff;
    let e = &entries(parse(LogFormat::Jsonlog, &json))[0];
    assert_eq!(
        e.message,
        "duration: 1.000 ms  statement: SELECT '\u{fffd}X'"
    );
}

#[test]
fn bad_jsonlog_lines_are_reported_and_skipped() {
    let good = fixture("jsonlog_sample.json");
    let first_end = good.iter().position(|&b| b == b'\n').unwrap() + 1;
    let head = b"not json\n\n{\"message\":\"no time\"}\n";
    let mut bytes = head.to_vec();
    bytes.extend_from_slice(&good[..first_end]);
    let parsed = parse(LogFormat::Jsonlog, &bytes);
    assert_eq!(parsed.len(), 3, "the blank line is nothing");
    let end = head.len() as u64;
    assert!(
        matches!(&parsed[0], Parsed::Bad { offset_start: 0, offset_end: 9, reason } if reason.contains("not a jsonlog record"))
    );
    assert!(
        matches!(&parsed[1], Parsed::Bad { offset_start: 10, offset_end, reason } if *offset_end == end && reason.contains("timestamp"))
    );
    assert!(matches!(&parsed[2], Parsed::Entry(e) if e.offset_start == end && e.pid == Some(5649)));
}

fn entry(session: &str, line: i64, message: &str, query_id: Option<i64>) -> LogEntry {
    LogEntry {
        offset_start: line as u64 * 1000,
        offset_end: line as u64 * 1000 + 999,
        log_time: Utc.with_ymd_and_hms(2026, 12, 4, 19, 0, 0).unwrap() + Duration::seconds(line),
        user: Some("u".into()),
        database: Some("d".into()),
        pid: Some(7),
        session_id: session.into(),
        line_num: Some(line),
        command_count: None,
        segment: None,
        severity: "LOG".into(),
        sql_state: None,
        message: message.into(),
        detail: None,
        statement: None,
        application_name: None,
        backend_type: Some("client backend".into()),
        query_id,
        truncated: false,
        message_truncated: false,
        statement_truncated: false,
    }
}

fn json_plan(top: &str) -> String {
    format!("duration: 0.100 ms  plan:\n{{\n  \"Query Text\": \"q\",\n  \"Plan\": {{\n    \"Node Type\": \"{top}\"\n  }}\n}}")
}

#[test]
fn plan_join_rules() {
    let run = |entries: Vec<LogEntry>| -> (Vec<QueryRecord>, Option<u64>) {
        let mut b = StatementBuilder::new("pg-1", LogFormat::Jsonlog);
        let mut out = Vec::new();
        for e in entries {
            b.accept(e, &mut out);
        }
        (out, b.oldest_pending_offset())
    };
    let stmt = "duration: 1.000 ms  statement: SELECT 1";

    // Adjacent, same query_id: attached; nothing left pending.
    let (out, pending) = run(vec![
        entry("a", 4, &json_plan("Result"), Some(9)),
        entry("a", 5, stmt, Some(9)),
    ]);
    assert!(out[0].plan_json.as_deref().unwrap().contains("Result"));
    assert_eq!(pending, None);

    // Adjacent but another query_id: dropped.
    let (out, pending) = run(vec![
        entry("a", 4, &json_plan("Result"), Some(9)),
        entry("a", 5, stmt, Some(10)),
    ]);
    assert_eq!(out[0].plan_json, None);
    assert_eq!(pending, None);

    // A record logged when the executor ends (`temporary file:`) in between: attached only when
    // both query_ids are known and equal.
    let temp = "temporary file: path \"base/pgsql_tmp/pgsql_tmp7.0\", size 1048576";
    for (ids, attached) in [((Some(9), Some(9)), true), ((None, None), false)] {
        let (out, _) = run(vec![
            entry("a", 4, &json_plan("Sort"), ids.0),
            entry("a", 5, temp, ids.0),
            entry("a", 6, stmt, ids.1),
        ]);
        assert_eq!(out[0].plan_json.is_some(), attached);
    }

    // Another session's records do not disturb a pending plan; its offset is reported.
    let (out, pending) = run(vec![
        entry("a", 4, &json_plan("Result"), Some(9)),
        entry("b", 5, stmt, Some(9)),
    ]);
    assert_eq!(out[0].plan_json, None);
    assert_eq!(pending, Some(4000));

    // Disconnection and parse/bind records drop the session's pending plan.
    for between in [
        "disconnection: session time: 0:00:00.002 user=u database=d host=h port=1",
        "duration: 0.010 ms  parse <unnamed>: SELECT 1",
    ] {
        let (out, pending) = run(vec![
            entry("a", 4, &json_plan("Result"), Some(9)),
            entry("a", 5, between, Some(9)),
        ]);
        assert!(out.is_empty());
        assert_eq!(pending, None, "{between}");
    }

    // Extended protocol: a SELECT's plan follows its execute record, which is pushed again
    // with it; an INSERT's plan precedes its execute record.
    let execute = "duration: 0.042 ms  execute <unnamed>: SELECT abalance FROM a WHERE aid = $1";
    let (out, pending) = run(vec![
        entry("a", 5, execute, Some(9)),
        entry("a", 6, &json_plan("Index Scan"), Some(9)),
        entry("a", 7, execute, Some(9)),
    ]);
    assert_eq!(out.len(), 3);
    assert_eq!(out[0].query_id, "a:5");
    assert_eq!(out[0].plan_json, None);
    assert_eq!(out[1].query_id, "a:5");
    assert!(out[1].plan_json.as_deref().unwrap().contains("Index Scan"));
    assert_eq!(out[2].query_id, "a:7");
    assert_eq!(
        out[2].plan_json, None,
        "the previous execution's plan is not this one's"
    );
    // The last execute waits for a plan that may still follow: a restart reads it again.
    assert_eq!(pending, Some(7000));
    let insert = "duration: 0.042 ms  execute S_1: INSERT INTO h VALUES ($1)";
    let (out, _) = run(vec![
        entry("a", 5, insert, Some(8)),
        entry("a", 6, &json_plan("ModifyTable"), Some(8)),
        entry("a", 7, insert, Some(8)),
    ]);
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].plan_json, None);
    assert!(out[1].plan_json.as_deref().unwrap().contains("ModifyTable"));

    // An execute that got its plan before it keeps it: a later plan (the next statement's,
    // with query_ids unknown) is not taken for its own.
    let (out, pending) = run(vec![
        entry("a", 4, &json_plan("ModifyTable"), None),
        entry("a", 5, insert, None),
        entry("a", 6, &json_plan("Index Scan"), None),
    ]);
    assert_eq!(out.len(), 1);
    assert!(out[0].plan_json.as_deref().unwrap().contains("ModifyTable"));
    assert_eq!(pending, Some(6000));

    // A text-format plan goes to plan_text.
    let (out, _) = run(vec![
        entry(
            "a",
            4,
            "duration: 0.100 ms  plan:\nQuery Text: SELECT 1\nResult  (cost=0.00..0.01 rows=1 width=4)",
            Some(9),
        ),
        entry("a", 5, stmt, Some(9)),
    ]);
    assert_eq!(out[0].plan_json, None);
    assert!(out[0]
        .plan_text
        .as_deref()
        .unwrap()
        .starts_with("Query Text: SELECT 1"));
}

#[test]
fn pending_plans_are_bounded() {
    let mut b = StatementBuilder::with_limits("pg-1", LogFormat::Jsonlog, 3, 1 << 20);
    let mut out = Vec::new();
    for (i, session) in ["a", "b", "c", "d", "e"].iter().enumerate() {
        b.accept(
            entry(session, i as i64 + 1, &json_plan("Result"), Some(9)),
            &mut out,
        );
    }
    assert_eq!(b.pending_plans(), 3);
    // The oldest two (a, b) were evicted: c's plan (line 3) is now the oldest.
    assert_eq!(b.oldest_pending_offset(), Some(3000));
    b.accept(
        entry("a", 2, "duration: 1.000 ms  statement: SELECT 1", Some(9)),
        &mut out,
    );
    assert_eq!(out[0].plan_json, None);
    b.accept(
        entry("e", 6, "duration: 1.000 ms  statement: SELECT 1", Some(9)),
        &mut out,
    );
    assert!(out[1].plan_json.is_some());
    assert_eq!(b.pending_plans(), 2);

    // A byte bound evicts too.
    let mut b = StatementBuilder::with_limits("pg-1", LogFormat::Jsonlog, 100, 400);
    for (i, session) in ["a", "b", "c", "d"].iter().enumerate() {
        b.accept(
            entry(session, i as i64 + 1, &json_plan("Result"), Some(9)),
            &mut out,
        );
    }
    assert!(b.pending_plans() < 4 && b.pending_plans() >= 1);
    assert_eq!(
        b.oldest_pending_offset(),
        Some((5 - b.pending_plans()) as u64 * 1000)
    );
}

#[test]
fn log_format_names() {
    for (name, format, ext) in [
        ("csvlog", LogFormat::Csvlog, ".csv"),
        ("jsonlog", LogFormat::Jsonlog, ".json"),
        ("greenplum-csvlog", LogFormat::GreenplumCsvlog, ".csv"),
    ] {
        assert_eq!(name.parse::<LogFormat>().unwrap(), format);
        assert_eq!(format.as_str(), name);
        assert_eq!(format.to_string(), name);
        assert_eq!(format.file_extension(), ext);
    }
    assert!("stderr".parse::<LogFormat>().is_err());
}

#[test]
fn statement_without_duration_and_other_records_produce_nothing() {
    let mut b = StatementBuilder::new("pg-1", LogFormat::Csvlog);
    let mut out = Vec::new();
    let mut error_without_statement =
        entry("a", 3, "canceling statement due to user request", None);
    error_without_statement.severity = "ERROR".into();
    let mut warning = entry("a", 4, "there is no transaction in progress", None);
    warning.severity = "WARNING".into();
    warning.statement = Some("COMMIT".into());
    for e in [
        entry("a", 1, "statement: SELECT 1", None),
        entry("a", 2, "duration: 0.380 ms  bind <unnamed>: SELECT 1", None),
        error_without_statement,
        warning,
        entry("a", 5, "checkpoint starting: time", None),
        entry("a", 6, "duration: 1.000 ms", None),
    ] {
        b.accept(e, &mut out);
    }
    assert!(out.is_empty(), "{out:?}");
}
