//! Properties of the log parsers: no bytes make them panic or depend on how they are chunked,
//! memory stays bounded, and generated records written in csvlog and jsonlog syntax come back
//! exactly (or, past the cap, as a flagged prefix).

use chrono::{DateTime, Utc};
use gpdiag_core::QueryRecord;
use gpdiag_ingest::logs::{
    LogEntry, LogFormat, LogReader, Parsed, StatementBuilder, MIN_RECORD_BYTES, TAIL_RESERVE,
};
use proptest::prelude::*;
use std::collections::BTreeMap;

const FORMATS: [LogFormat; 3] = [
    LogFormat::Csvlog,
    LogFormat::Jsonlog,
    LogFormat::GreenplumCsvlog,
];

struct Run {
    parsed: Vec<Parsed>,
    records: Vec<QueryRecord>,
}

/// Pushes `bytes` in `chunks` (cycled), checking the reader's invariants after every push.
fn run(format: LogFormat, bytes: &[u8], chunks: &[usize], cap: usize) -> Run {
    let mut reader = LogReader::new(format, 0, cap);
    let mut builder = StatementBuilder::new("i", format);
    let mut parsed = Vec::new();
    let mut records = Vec::new();
    let mut rest = bytes;
    let mut pushed = 0u64;
    let mut committed = 0u64;
    let mut last_end = 0u64;
    let mut i = 0;
    while !rest.is_empty() {
        let n = chunks[i % chunks.len()].clamp(1, rest.len());
        i += 1;
        reader.push(&rest[..n], &mut |p| {
            let (start, end) = match &p {
                Parsed::Entry(e) => (e.offset_start, e.offset_end),
                Parsed::Bad {
                    offset_start,
                    offset_end,
                    ..
                } => (*offset_start, *offset_end),
            };
            // Records come in order, do not overlap, and lie within the pushed bytes.
            assert!(
                start >= last_end && end > start,
                "{start}..{end} after {last_end}"
            );
            assert!(end <= pushed + n as u64);
            last_end = end;
            if let Parsed::Entry(e) = &p {
                builder.accept(e.clone(), &mut records);
            }
            parsed.push(p);
        });
        rest = &rest[n..];
        pushed += n as u64;
        let now = reader.committed_offset();
        assert!(now >= committed && now <= pushed && now >= last_end);
        committed = now;
        assert!(reader.pending_bytes() <= cap.max(MIN_RECORD_BYTES) + TAIL_RESERVE);
        assert!(reader.retained_capacity() <= cap.max(MIN_RECORD_BYTES) + TAIL_RESERVE + 64 * 1024);
        if let Some(offset) = builder.oldest_pending_offset() {
            assert!(offset < pushed);
        }
    }
    Run { parsed, records }
}

/// Bytes that matter to the state machines, mixed with any byte.
fn noisy_bytes() -> impl Strategy<Value = Vec<u8>> {
    let special =
        prop::sample::select(b"\",\n\r{}[]:\\u0123456789.- aZ\xff\xc3\xa9\xe6\x97".to_vec());
    prop::collection::vec(prop_oneof![any::<u8>(), special], 0..3000)
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/../../../shared/fixtures/postgresql-15/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn any_bytes_in_any_chunks_never_panic_and_chunking_does_not_matter(
        bytes in noisy_bytes(),
        chunks in prop::collection::vec(1usize..97, 1..8),
        cap in prop::sample::select(vec![0usize, 1024, 1500, 1 << 20]),
    ) {
        for format in FORMATS {
            let whole = run(format, &bytes, &[bytes.len().max(1)], cap);
            let chunked = run(format, &bytes, &chunks, cap);
            prop_assert_eq!(&chunked.parsed, &whole.parsed);
            prop_assert_eq!(&chunked.records, &whole.records);
        }
    }

    #[test]
    fn spliced_real_records_never_panic_and_chunking_does_not_matter(
        cuts in prop::collection::vec((0usize..100_000, 0usize..3_000), 1..6),
        chunks in prop::collection::vec(1usize..500, 1..8),
    ) {
        // Pieces of the real logs, glued at arbitrary points (mid-field, mid-quote, mid-escape).
        for (format, name) in [
            (LogFormat::Csvlog, "csvlog_sample.csv"),
            (LogFormat::Jsonlog, "jsonlog_sample.json"),
            (LogFormat::GreenplumCsvlog, "csvlog_sample.csv"),
        ] {
            let source = fixture(name);
            let mut bytes = Vec::new();
            for &(at, len) in &cuts {
                let at = at % source.len();
                bytes.extend_from_slice(&source[at..(at + len).min(source.len())]);
            }
            let whole = run(format, &bytes, &[bytes.len().max(1)], 1024);
            let chunked = run(format, &bytes, &chunks, 1024);
            prop_assert_eq!(&chunked.parsed, &whole.parsed);
            prop_assert_eq!(&chunked.records, &whole.records);
        }
    }
}

/// One generated query record.
#[derive(Debug, Clone)]
struct Gen {
    time_ms: i64,
    session: String,
    user: String,
    database: String,
    app: String,
    duration_us: i64,
    sql: String,
    query_id: i64,
    error: Option<(String, String)>,
}

fn text(max: usize) -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "[a-zA-Z0-9 ]{1,8}",
        prop::sample::select(vec![
            "'",
            "''",
            "\"",
            "\"\"",
            ",",
            "\n",
            "\r\n",
            "\t",
            "\\",
            "\\n",
            ";",
            "é",
            "日本語",
            "🐘",
            "—",
            "{",
            "}",
            "$1",
            "  statement: ",
            "\u{0}",
        ])
        .prop_map(str::to_owned),
    ];
    prop::collection::vec(piece, 0..max).prop_map(|p| p.concat())
}

fn gen_record() -> impl Strategy<Value = Gen> {
    (
        // 2001 to 2100, in milliseconds.
        978_307_200_000i64..4_102_444_800_000,
        (any::<u32>(), any::<u16>()),
        text(4),
        text(4),
        text(4),
        0i64..1_000_000_000_000,
        text(40),
        any::<i64>(),
        prop::option::of((
            "[0-9A-Z]{5}",
            text(6).prop_filter("ERROR messages are not empty", |m| !m.is_empty()),
        )),
    )
        .prop_map(
            |(time_ms, (start, pid), user, database, app, duration_us, sql, query_id, error)| Gen {
                time_ms,
                session: format!("{start:x}.{pid:x}"),
                user,
                database,
                app,
                duration_us,
                sql,
                query_id,
                error,
            },
        )
}

fn log_time(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap()
        .format("%Y-%m-%d %H:%M:%S%.3f UTC")
        .to_string()
}

fn message(g: &Gen) -> String {
    match &g.error {
        Some((_, message)) => message.clone(),
        None => format!(
            "duration: {}.{:03} ms  statement: {}",
            g.duration_us / 1000,
            g.duration_us % 1000,
            g.sql
        ),
    }
}

/// PostgreSQL's csvlog writing (`appendCSVLiteral`): strings in quotes with `"` doubled,
/// nothing for NULL; `columns` is 26, 24 or 23.
fn csvlog(records: &[Gen], columns: usize) -> Vec<u8> {
    let q = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let mut out = String::new();
    for (i, g) in records.iter().enumerate() {
        let time = log_time(g.time_ms);
        let (severity, state, statement) = match &g.error {
            Some((state, _)) => ("ERROR", state.as_str(), q(&g.sql)),
            None => ("LOG", "00000", String::new()),
        };
        let fields = [
            time.clone(),
            q(&g.user),
            q(&g.database),
            "4242".into(),
            q("127.0.0.1:5000"),
            g.session.clone(),
            (i + 1).to_string(),
            q("SELECT"),
            time,
            "3/1".into(),
            "0".into(),
            q(severity),
            q(state),
            q(&message(g)),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            q("a context, with \"quotes\"\nand lines"),
            statement,
            String::new(),
            String::new(),
            q(&g.app),
            q("client backend"),
            String::new(),
            g.query_id.to_string(),
        ];
        out.push_str(&fields[..columns].join(","));
        out.push('\n');
    }
    out.into_bytes()
}

/// PostgreSQL's jsonlog: keys omitted when empty, numbers for pid, line_num, query_id.
fn jsonlog(records: &[Gen]) -> Vec<u8> {
    let mut out = String::new();
    for (i, g) in records.iter().enumerate() {
        let mut o = serde_json::Map::new();
        o.insert("timestamp".into(), log_time(g.time_ms).into());
        for (k, v) in [("user", &g.user), ("dbname", &g.database)] {
            if !v.is_empty() {
                o.insert(k.into(), v.clone().into());
            }
        }
        o.insert("pid".into(), 4242.into());
        o.insert("session_id".into(), g.session.clone().into());
        o.insert("line_num".into(), (i as i64 + 1).into());
        o.insert(
            "error_severity".into(),
            if g.error.is_some() { "ERROR" } else { "LOG" }.into(),
        );
        if let Some((state, _)) = &g.error {
            o.insert("state_code".into(), state.clone().into());
        }
        o.insert("message".into(), message(g).into());
        o.insert(
            "context".into(),
            "a context, with \"quotes\"\nand lines".into(),
        );
        if g.error.is_some() && !g.sql.is_empty() {
            o.insert("statement".into(), g.sql.clone().into());
        }
        if !g.app.is_empty() {
            o.insert("application_name".into(), g.app.clone().into());
        }
        o.insert("backend_type".into(), "client backend".into());
        o.insert("query_id".into(), g.query_id.into());
        out.push_str(&serde_json::Value::Object(o).to_string());
        out.push('\n');
    }
    out.into_bytes()
}

/// Checks the records against what was generated; with `exact == false` a record over the
/// cap may come back as a flagged prefix.
fn check(gens: &[Gen], records: &[QueryRecord], columns: usize) -> Result<(), TestCaseError> {
    let by_key: BTreeMap<&str, &QueryRecord> =
        records.iter().map(|r| (r.query_id.as_str(), r)).collect();
    let mut expected = 0;
    for (i, g) in gens.iter().enumerate() {
        let key = format!("{}:{}", g.session, i + 1);
        // An ERROR with an empty statement is no failed query (there is no SQL to show).
        if g.error.is_some() && g.sql.is_empty() {
            prop_assert!(!by_key.contains_key(key.as_str()));
            continue;
        }
        expected += 1;
        let r = by_key.get(key.as_str()).copied();
        prop_assert!(r.is_some(), "no record {}", key);
        let r = r.unwrap();
        if r.sql_truncated {
            let common = g
                .sql
                .bytes()
                .zip(r.sql.bytes())
                .take_while(|(a, b)| a == b)
                .count();
            prop_assert!(
                g.sql.starts_with(&r.sql) && r.sql.len() < g.sql.len(),
                "{}: kept {} of {} bytes, equal up to {}: {:?} vs {:?}",
                key,
                r.sql.len(),
                g.sql.len(),
                common,
                &r.sql[common.saturating_sub(10)..],
                &g.sql[common.saturating_sub(10)..(common + 20).min(g.sql.len())]
            );
        } else {
            prop_assert_eq!(&r.sql, &g.sql);
        }
        prop_assert_eq!(&r.session_id, &g.session);
        prop_assert_eq!(&r.user, &g.user);
        prop_assert_eq!(&r.database, &g.database);
        let pg_query_id = if columns == 26 && g.query_id != 0 {
            Some(g.query_id)
        } else {
            None
        };
        prop_assert_eq!(r.pg_query_id, pg_query_id);
        let end = DateTime::<Utc>::from_timestamp_millis(g.time_ms).unwrap();
        match &g.error {
            Some((state, message)) => {
                let error = format!("{state}: {message}");
                prop_assert_eq!(r.error.as_deref(), Some(error.as_str()));
                prop_assert_eq!(r.duration_us, None);
                prop_assert_eq!(r.duration_ms, 0);
                prop_assert_eq!(r.start_time, end);
            }
            None => {
                prop_assert_eq!(r.error.as_deref(), None);
                prop_assert_eq!(r.duration_us, Some(g.duration_us));
                prop_assert_eq!(r.duration_ms, g.duration_us / 1000);
                let start_ms = (g.time_ms * 1000 - g.duration_us).div_euclid(1000);
                prop_assert_eq!(r.start_time.timestamp_millis(), start_ms);
            }
        }
    }
    prop_assert_eq!(by_key.len(), expected);
    Ok(())
}

fn records_of(format: LogFormat, bytes: &[u8], chunks: &[usize], cap: usize) -> Vec<QueryRecord> {
    let Run { parsed, records } = run(format, bytes, chunks, cap);
    for p in &parsed {
        assert!(matches!(p, Parsed::Entry(_)), "{p:?}");
    }
    records
}

fn entry_messages(parsed: &[Parsed]) -> Vec<&LogEntry> {
    parsed
        .iter()
        .map(|p| match p {
            Parsed::Entry(e) => e,
            Parsed::Bad { reason, .. } => panic!("{reason}"),
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn generated_records_round_trip_through_csvlog_and_jsonlog(
        gens in prop::collection::vec(gen_record(), 1..12),
        chunks in prop::collection::vec(1usize..300, 1..6),
        columns in prop::sample::select(vec![26usize, 24, 23]),
    ) {
        let csv = csvlog(&gens, columns);
        check(&gens, &records_of(LogFormat::Csvlog, &csv, &chunks, 1 << 20), columns)?;
        let json = jsonlog(&gens);
        check(&gens, &records_of(LogFormat::Jsonlog, &json, &chunks, 1 << 20), 26)?;

        // And the entries themselves agree between the formats.
        let a = run(LogFormat::Csvlog, &csvlog(&gens, 26), &chunks, 1 << 20).parsed;
        let b = run(LogFormat::Jsonlog, &json, &chunks, 1 << 20).parsed;
        for (x, y) in entry_messages(&a).into_iter().zip(entry_messages(&b)) {
            prop_assert_eq!(&x.message, &y.message);
            prop_assert_eq!(x.log_time, y.log_time);
            prop_assert_eq!(&x.session_id, &y.session_id);
            prop_assert_eq!(x.line_num, y.line_num);
            prop_assert_eq!(x.query_id, y.query_id);
            prop_assert_eq!(&x.application_name, &y.application_name);
        }
    }

    #[test]
    fn records_over_the_cap_come_back_as_flagged_prefixes(
        gens in prop::collection::vec(gen_record(), 1..4),
        long in text(400),
        chunks in prop::collection::vec(1usize..2000, 1..6),
    ) {
        let gens: Vec<Gen> = gens
            .into_iter()
            .map(|mut g| {
                g.sql.push_str(&long);
                g
            })
            .collect();
        let csv = csvlog(&gens, 26);
        check(&gens, &records_of(LogFormat::Csvlog, &csv, &chunks, 1024), 26)?;
        let json = jsonlog(&gens);
        check(&gens, &records_of(LogFormat::Jsonlog, &json, &chunks, 1024), 26)?;
    }
}
