//! Query records in SQLite: bulk upsert, filtered listings, lookups and dimensions.

use super::{backend, from_millis, millis};
use crate::{Dimensions, Page, Plans, RecordPage, StoreError};
use gpdiag_core::record::contains_case_insensitive;
use gpdiag_core::{
    OrderField, QueryCondition, QueryRecord, QueryStatus, RecordFilter, RecordOrder, TimeWindow,
};
use rusqlite::functions::FunctionFlags;
use rusqlite::types::Value;
use rusqlite::{params, Connection, OptionalExtension, Row};

const COLUMNS: &str =
    "instance, query_id, session_id, database, user_name, start_ms, duration_ms, \
                       running, error, sql, plan_json, plan_text, row_count, source, \
                       pg_query_id, duration_us, sql_truncated, parameters";

/// `gp_icontains(haystack, needle)`: the keyword rule of `contains_case_insensitive`, so SQLite
/// matches exactly what the reference semantics say (SQLite's own LIKE is ASCII-only and treats
/// `%` and `_` as wildcards).
pub(super) fn register_functions(conn: &Connection) -> Result<(), StoreError> {
    conn.create_scalar_function(
        "gp_icontains",
        2,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            let haystack = ctx.get_raw(0).as_str().unwrap_or("");
            let needle = ctx.get_raw(1).as_str().unwrap_or("");
            Ok(contains_case_insensitive(haystack, needle))
        },
    )
    .map_err(backend)
}

pub(super) fn upsert(conn: &mut Connection, records: &[QueryRecord]) -> Result<u64, StoreError> {
    let tx = conn.transaction().map_err(backend)?;
    upsert_in(&tx, records, Plans::Replace)?;
    tx.commit().map_err(backend)?;
    Ok(records.len() as u64)
}

/// The bulk upsert inside the caller's transaction.
pub(super) fn upsert_in(
    tx: &rusqlite::Transaction<'_>,
    records: &[QueryRecord],
    plans: Plans,
) -> Result<(), StoreError> {
    let plan_columns = plans.assignments();
    {
        let mut insert = tx
            .prepare_cached(&format!(
                "INSERT INTO query_records ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)
                 ON CONFLICT (instance, query_id) DO UPDATE SET
                    session_id = excluded.session_id, database = excluded.database,
                    user_name = excluded.user_name, start_ms = excluded.start_ms,
                    duration_ms = excluded.duration_ms, running = excluded.running,
                    error = excluded.error, sql = excluded.sql, {plan_columns},
                    row_count = excluded.row_count,
                    source = excluded.source, pg_query_id = excluded.pg_query_id,
                    duration_us = excluded.duration_us, sql_truncated = excluded.sql_truncated,
                    parameters = excluded.parameters"
            ))
            .map_err(backend)?;
        for r in records {
            insert
                .execute(params![
                    r.instance,
                    r.query_id,
                    r.session_id,
                    r.database,
                    r.user,
                    millis(r.start_time),
                    r.duration_ms,
                    r.status == QueryStatus::Running,
                    r.error,
                    r.sql,
                    r.plan_json,
                    r.plan_text,
                    r.rows,
                    r.source,
                    r.pg_query_id,
                    r.duration_us,
                    r.sql_truncated,
                    r.parameters,
                ])
                .map_err(backend)?;
        }
    }
    Ok(())
}

/// The WHERE clause and its parameters for a filter (without `maxCost`, which cuts afterwards).
fn where_clause(filter: &RecordFilter) -> (String, Vec<Value>) {
    // Always through the (instance, database, start_ms) index: with no database given, one
    // range per database of the instance (found by an index walk), so no second index on
    // (instance, start_ms) has to be kept up at every insert.
    let (mut sql, mut args): (String, Vec<Value>) = match &filter.database {
        Some(database) => (
            "instance = ? AND database = ?".into(),
            vec![filter.instance.clone().into(), database.clone().into()],
        ),
        None => (
            format!("instance = ? AND database IN ({})", databases_walk("?")),
            vec![
                filter.instance.clone().into(),
                filter.instance.clone().into(),
                filter.instance.clone().into(),
            ],
        ),
    };
    sql.push_str(" AND start_ms >= ? AND start_ms < ?");
    args.push(millis(filter.window.start).into());
    args.push(millis(filter.window.end).into());
    if let Some(user) = &filter.user {
        sql.push_str(" AND user_name = ?");
        args.push(user.clone().into());
    }
    if let Some(keyword) = &filter.keyword {
        sql.push_str(" AND gp_icontains(sql, ?)");
        args.push(keyword.clone().into());
    }
    match filter.condition {
        Some(QueryCondition::Status(status)) => {
            sql.push_str(" AND running = ?");
            args.push(i64::from(status == QueryStatus::Running).into());
        }
        Some(QueryCondition::Cost { min, max }) => {
            if let Some(min) = min {
                sql.push_str(" AND duration_ms >= ?");
                args.push(min.into());
            }
            if let Some(max) = max {
                sql.push_str(" AND duration_ms < ?");
                args.push(max.into());
            }
        }
        None | Some(QueryCondition::MaxCost(_)) => {}
    }
    (sql, args)
}

fn order_by(order: RecordOrder) -> &'static str {
    match (order.field, order.descending) {
        (OrderField::StartTime, true) => "start_ms DESC, query_id DESC",
        (OrderField::StartTime, false) => "start_ms ASC, query_id ASC",
        (OrderField::Duration, true) => "duration_ms DESC, query_id DESC",
        (OrderField::Duration, false) => "duration_ms ASC, query_id ASC",
    }
}

/// The records `filter` selects as a subquery, with its parameters. With maxCost the selection
/// is the N longest; everything else applies inside it.
fn selection(filter: &RecordFilter) -> (String, Vec<Value>) {
    let (condition, args) = where_clause(filter);
    let source = match filter.condition {
        Some(QueryCondition::MaxCost(n)) => format!(
            "(SELECT * FROM query_records WHERE {condition} ORDER BY duration_ms DESC, query_id ASC LIMIT {n})"
        ),
        _ => format!("(SELECT * FROM query_records WHERE {condition})"),
    };
    (source, args)
}

/// At most this many records with one start time are ordered by `query_id` here; a longer run
/// of equal start times (never seen in real logs) has SQLite order the rest of the stream.
const MAX_TIE_RUN: usize = 10_000;

/// Streams the selection from its own read-only connection (a long export must not hold one
/// of the shared readers), in batches through a bounded channel.
///
/// By start time, SQLite walks the `(instance, database, start_ms)` index in order and only
/// runs of equal start times are put in `query_id` order here, so no row goes through
/// SQLite's sorter (which copies every column of every row into it and back: a quarter of
/// the stream's time). By duration there is no index to walk, and SQLite sorts.
pub(super) fn stream(
    path: std::sync::Arc<str>,
    filter: RecordFilter,
    order: RecordOrder,
    batch: usize,
) -> tokio::sync::mpsc::Receiver<Result<Vec<QueryRecord>, StoreError>> {
    stream_with(path, filter, order, batch, MAX_TIE_RUN)
}

fn stream_with(
    path: std::sync::Arc<str>,
    filter: RecordFilter,
    order: RecordOrder,
    batch: usize,
    max_tie_run: usize,
) -> tokio::sync::mpsc::Receiver<Result<Vec<QueryRecord>, StoreError>> {
    let batch = batch.max(1);
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    tokio::task::spawn_blocking(move || {
        let mut out = Batches {
            tx: tx.clone(),
            chunk: Vec::with_capacity(batch),
            size: batch,
        };
        let run = |out: &mut Batches| -> Result<(), StoreError> {
            // NO_MUTEX: this connection never leaves this thread, so SQLite's per-call mutex
            // (taken for every column of every row) is pure cost.
            let conn = Connection::open_with_flags(
                &*path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                    | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(backend)?;
            conn.busy_timeout(std::time::Duration::from_secs(5))
                .map_err(backend)?;
            register_functions(&conn)?;
            // Both statements below read one snapshot.
            conn.execute_batch("BEGIN").map_err(backend)?;
            let (source, args) = selection(&filter);
            let rest = match order.field {
                OrderField::StartTime => {
                    match by_start_time(&conn, &source, &args, order, max_tie_run, out)? {
                        Walked::Done => return Ok(()),
                        Walked::TieRunTooLong(boundary) => Some(boundary),
                    }
                }
                OrderField::Duration => None,
            };
            // SQLite orders everything (or, after a too long run of equal start times, that
            // start time and the rest).
            let mut args = args;
            let sql = match rest {
                Some(boundary) => {
                    args.push(boundary.into());
                    format!(
                        "SELECT {COLUMNS} FROM {source} WHERE start_ms {} ? ORDER BY {}",
                        if order.descending { "<=" } else { ">=" },
                        order_by(order)
                    )
                }
                None => format!(
                    "SELECT {COLUMNS} FROM {source} ORDER BY {}",
                    order_by(order)
                ),
            };
            let mut stmt = conn.prepare(&sql).map_err(backend)?;
            let mut rows = stmt
                .query(rusqlite::params_from_iter(args.iter()))
                .map_err(backend)?;
            while let Some(row) = rows.next().map_err(backend)? {
                if !out.push(to_record(row).map_err(backend)?) {
                    return Ok(());
                }
            }
            Ok(())
        };
        match run(&mut out) {
            Ok(()) => out.finish(),
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
            }
        }
    });
    rx
}

/// How a walk by start time ended.
enum Walked {
    /// Every record was sent, or the reader went away.
    Done,
    /// More than the allowed records share this start time; none of them was sent, every
    /// record before them was.
    TieRunTooLong(i64),
}

/// Records in start-time order from the index, each run of equal start times put in
/// `query_id` order (the tie-break of `order_by`; Rust compares strings byte by byte, as
/// SQLite's BINARY collation does).
fn by_start_time(
    conn: &Connection,
    source: &str,
    args: &[Value],
    order: RecordOrder,
    max_tie_run: usize,
    out: &mut Batches,
) -> Result<Walked, StoreError> {
    let mut stmt = conn
        .prepare(&format!(
            "SELECT {COLUMNS} FROM {source} ORDER BY start_ms {}",
            if order.descending { "DESC" } else { "ASC" }
        ))
        .map_err(backend)?;
    let mut rows = stmt
        .query(rusqlite::params_from_iter(args.iter()))
        .map_err(backend)?;
    let mut run: Vec<QueryRecord> = Vec::new();
    let flush = |run: &mut Vec<QueryRecord>, out: &mut Batches| -> bool {
        if order.descending {
            run.sort_unstable_by(|a, b| b.query_id.cmp(&a.query_id));
        } else {
            run.sort_unstable_by(|a, b| a.query_id.cmp(&b.query_id));
        }
        run.drain(..).all(|r| out.push(r))
    };
    while let Some(row) = rows.next().map_err(backend)? {
        let record = to_record(row).map_err(backend)?;
        if run
            .first()
            .is_some_and(|first| first.start_time != record.start_time)
            && !flush(&mut run, out)
        {
            return Ok(Walked::Done);
        }
        if run.len() == max_tie_run {
            return Ok(Walked::TieRunTooLong(millis(record.start_time)));
        }
        run.push(record);
    }
    flush(&mut run, out);
    Ok(Walked::Done)
}

/// Collects records into batches of `size` and sends each full one.
struct Batches {
    tx: tokio::sync::mpsc::Sender<Result<Vec<QueryRecord>, StoreError>>,
    chunk: Vec<QueryRecord>,
    size: usize,
}

impl Batches {
    /// False once the reader has gone away: nothing more to do.
    fn push(&mut self, record: QueryRecord) -> bool {
        self.chunk.push(record);
        if self.chunk.len() < self.size {
            return true;
        }
        let full = std::mem::replace(&mut self.chunk, Vec::with_capacity(self.size));
        self.tx.blocking_send(Ok(full)).is_ok()
    }

    /// Sends the last records, then the end marker: without it the reader treats the stream
    /// as cut short.
    fn finish(self) {
        if !self.chunk.is_empty() && self.tx.blocking_send(Ok(self.chunk)).is_err() {
            return;
        }
        let _ = self.tx.blocking_send(Ok(Vec::new()));
    }
}

pub(super) fn search(
    conn: &Connection,
    filter: &RecordFilter,
    order: RecordOrder,
    page: Page,
) -> Result<RecordPage, StoreError> {
    let (source, mut args) = selection(filter);
    let total: i64 = conn
        .prepare_cached(&format!("SELECT count(*) FROM {source}"))
        .map_err(backend)?
        .query_row(rusqlite::params_from_iter(args.iter()), |r| r.get(0))
        .map_err(backend)?;
    args.push(clamp(page.limit).into());
    args.push(clamp(page.offset).into());
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM {source} ORDER BY {} LIMIT ? OFFSET ?",
            order_by(order)
        ))
        .map_err(backend)?;
    let records = stmt
        .query_map(rusqlite::params_from_iter(args.iter()), to_record)
        .map_err(backend)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(backend)?;
    Ok(RecordPage {
        total: u64::try_from(total).unwrap_or(0),
        records,
    })
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(super) fn get(
    conn: &Connection,
    instance: &str,
    query_id: &str,
) -> Result<Option<QueryRecord>, StoreError> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM query_records WHERE instance = ?1 AND query_id = ?2"
    ))
    .map_err(backend)?
    .query_row(params![instance, query_id], to_record)
    .optional()
    .map_err(backend)
}

/// The distinct values of `column` for the instance bound to `param`, ascending, by jumping
/// through the index that starts with `(instance, column)`: one probe per value instead of a
/// scan of every record.
fn distinct_by_index_walk(column: &str, param: &str) -> String {
    format!(
        "WITH RECURSIVE walk(v) AS (
            SELECT (SELECT min({column}) FROM query_records WHERE instance = {param})
            UNION ALL
            SELECT (SELECT min({column}) FROM query_records WHERE instance = {param} AND {column} > walk.v)
            FROM walk WHERE walk.v IS NOT NULL
         )
         SELECT v FROM walk WHERE v IS NOT NULL"
    )
}

/// The instance's databases; `param` is bound twice (`?`) or numbered (`?1`).
fn databases_walk(param: &str) -> String {
    distinct_by_index_walk("database", param)
}

pub(super) fn dimensions(
    conn: &Connection,
    instance: &str,
    window: Option<TimeWindow>,
) -> Result<Dimensions, StoreError> {
    let strings = |sql: &str, args: &[Value]| -> Result<Vec<String>, StoreError> {
        let mut stmt = conn.prepare_cached(sql).map_err(backend)?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args.iter()), |r| {
                r.get::<_, String>(0)
            })
            .map_err(backend)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(backend)
    };
    match window {
        None => {
            let args = [Value::from(instance.to_owned())];
            Ok(Dimensions {
                databases: strings(&databases_walk("?1"), &args)?,
                users: strings(&distinct_by_index_walk("user_name", "?1"), &args)?,
            })
        }
        Some(w) => {
            let args = [
                Value::from(instance.to_owned()),
                Value::from(millis(w.start)),
                Value::from(millis(w.end)),
            ];
            // Per database through the (instance, database, start_ms) index, as in searches.
            Ok(Dimensions {
                databases: strings(
                    &format!(
                        "SELECT v FROM ({}) AS dbs WHERE EXISTS (
                            SELECT 1 FROM query_records
                            WHERE instance = ?1 AND database = dbs.v AND start_ms >= ?2 AND start_ms < ?3)
                         ORDER BY v",
                        databases_walk("?1")
                    ),
                    &args,
                )?,
                users: strings(
                    &format!(
                        "SELECT DISTINCT user_name FROM query_records
                         WHERE instance = ?1 AND database IN ({}) AND start_ms >= ?2 AND start_ms < ?3
                         ORDER BY user_name",
                        databases_walk("?1")
                    ),
                    &args,
                )?,
            })
        }
    }
}

fn to_record(r: &Row<'_>) -> rusqlite::Result<QueryRecord> {
    Ok(QueryRecord {
        instance: r.get(0)?,
        query_id: r.get(1)?,
        session_id: r.get(2)?,
        database: r.get(3)?,
        user: r.get(4)?,
        start_time: from_millis(r.get(5)?),
        duration_ms: r.get(6)?,
        status: if r.get::<_, bool>(7)? {
            QueryStatus::Running
        } else {
            QueryStatus::Finished
        },
        error: r.get(8)?,
        sql: r.get(9)?,
        plan_json: r.get(10)?,
        plan_text: r.get(11)?,
        rows: r.get(12)?,
        source: r.get(13)?,
        pg_query_id: r.get(14)?,
        duration_us: r.get(15)?,
        sql_truncated: r.get(16)?,
        parameters: r.get(17)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;
    use chrono::{Duration, TimeZone, Utc};

    fn record(i: usize) -> QueryRecord {
        let start = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
        QueryRecord {
            instance: "gp-ties".into(),
            // Not in start-time order, and many records share a start time.
            query_id: format!("q{:05}", (i * 7_919) % 10_007),
            session_id: "s".into(),
            database: if i.is_multiple_of(4) { "db1" } else { "db0" }.into(),
            user: "u".into(),
            start_time: start + Duration::milliseconds(((i * 31) % 40) as i64),
            duration_ms: (i % 13) as i64,
            status: QueryStatus::Finished,
            error: None,
            sql: format!("select {i}"),
            plan_json: None,
            plan_text: None,
            rows: None,
            source: "test".into(),
            ..Default::default()
        }
    }

    /// Runs of equal start times come out in query_id order, whether ordered here or (past
    /// `max_tie_run`) by SQLite, exactly as the paged search orders them.
    #[tokio::test(flavor = "multi_thread")]
    async fn streams_by_start_time_break_ties_like_search() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ties.db");
        let store = super::super::SqliteStore::open(path.to_str().unwrap())
            .await
            .unwrap();
        store
            .upsert_records((0..3_000).map(record).collect())
            .await
            .unwrap();
        let start = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
        for database in [Some("db0"), None] {
            let filter = RecordFilter {
                instance: "gp-ties".into(),
                database: database.map(str::to_owned),
                window: TimeWindow::new(start, start + Duration::hours(1)).unwrap(),
                user: None,
                keyword: None,
                condition: None,
            };
            for descending in [true, false] {
                let order = RecordOrder {
                    field: OrderField::StartTime,
                    descending,
                };
                let all = store
                    .search_records(
                        &filter,
                        order,
                        Page {
                            offset: 0,
                            limit: 1_000_000,
                        },
                    )
                    .await
                    .unwrap();
                assert!(all.records.len() > 2_000);
                // 75 records per start time (about 56 in db0): a cap of 75 is just enough, the
                // small ones hand over to SQLite at the first start time.
                for max_tie_run in [MAX_TIE_RUN, 80, 75, 5, 1] {
                    let mut rx = stream_with(
                        path.to_str().unwrap().into(),
                        filter.clone(),
                        order,
                        17,
                        max_tie_run,
                    );
                    let mut streamed = Vec::new();
                    let mut ended = false;
                    while let Some(batch) = rx.recv().await {
                        let batch = batch.unwrap();
                        assert!(!ended && batch.len() <= 17);
                        ended = batch.is_empty();
                        streamed.extend(batch);
                    }
                    assert!(ended, "a complete stream ends with an empty batch");
                    assert_eq!(
                        streamed, all.records,
                        "{database:?} descending {descending} cap {max_tie_run}"
                    );
                }
            }
        }
    }
}
