//! Query records in PostgreSQL: bulk upsert through binary COPY, filtered listings and streams
//! (one [`Selection`] builds the SQL for both), lookups and dimensions.

use super::tls::TlsConnector;
use super::{backend, pool_error, to_millis};
use crate::{Dimensions, Page, Plans, RecordPage, StoreError};
use deadpool_postgres::{Object, Pool};
use gpdiag_core::{
    OrderField, QueryCondition, QueryRecord, QueryStatus, RecordFilter, RecordOrder, TimeWindow,
};
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::mpsc;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{IsolationLevel, Row};

const COLUMNS: &str = "instance, query_id, session_id, database, user_name, start_time, \
                       duration_ms, running, error, sql, plan_json, plan_text, row_count, source, \
                       pg_query_id, duration_us, sql_truncated, parameters";

/// The column types of [`COLUMNS`], in order, for the binary COPY.
const TYPES: [Type; 18] = [
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TIMESTAMPTZ,
    Type::INT8,
    Type::BOOL,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::INT8,
    Type::TEXT,
    Type::INT8,
    Type::INT8,
    Type::BOOL,
    Type::TEXT,
];

/// The staging table a batch is copied into before it is merged. It lives as long as the pooled
/// connection (created once, emptied at each commit), so small batches pay no catalog churn;
/// its columns are spelled out rather than `LIKE query_records` so it never depends on which
/// migration a long-lived connection saw.
const STAGE: &str = r#"
SET LOCAL client_min_messages = warning;
CREATE TEMP TABLE IF NOT EXISTS query_records_in (
    instance     text COLLATE "C" NOT NULL,
    query_id     text COLLATE "C" NOT NULL,
    session_id   text NOT NULL,
    database     text NOT NULL,
    user_name    text NOT NULL,
    start_time   timestamptz NOT NULL,
    duration_ms  bigint NOT NULL,
    running      boolean NOT NULL,
    error        text,
    sql          text NOT NULL,
    plan_json    text,
    plan_text    text,
    row_count    bigint,
    source       text NOT NULL,
    pg_query_id  bigint,
    duration_us  bigint,
    sql_truncated boolean NOT NULL,
    parameters   text
) ON COMMIT DELETE ROWS;
"#;

/// Rows staged and merged at a time: the staging table stays within the session's temp buffers
/// instead of spilling a whole large import to disk.
const CHUNK: usize = 20_000;

pub(super) async fn upsert(
    client: &mut Object,
    records: &[QueryRecord],
) -> Result<u64, StoreError> {
    if records.is_empty() {
        return Ok(0);
    }
    let tx = client.transaction().await.map_err(backend)?;
    upsert_in(&tx, records, Plans::Replace).await?;
    tx.commit().await.map_err(backend)?;
    Ok(records.len() as u64)
}

/// The bulk upsert inside the caller's transaction.
pub(super) async fn upsert_in(
    tx: &deadpool_postgres::Transaction<'_>,
    records: &[QueryRecord],
    plans: Plans,
) -> Result<(), StoreError> {
    let plan_columns = plans.assignments();
    if records.is_empty() {
        return Ok(());
    }
    let rows = latest_per_key(records);
    tx.batch_execute(STAGE).await.map_err(backend)?;
    let copy = tx
        .prepare_cached(&format!(
            "COPY query_records_in ({COLUMNS}) FROM STDIN (FORMAT binary)"
        ))
        .await
        .map_err(backend)?;
    let merge = tx
        .prepare_cached(&format!(
            "INSERT INTO query_records ({COLUMNS}) SELECT {COLUMNS} FROM query_records_in
             ON CONFLICT (instance, query_id) DO UPDATE SET
                session_id = excluded.session_id, database = excluded.database,
                user_name = excluded.user_name, start_time = excluded.start_time,
                duration_ms = excluded.duration_ms, running = excluded.running,
                error = excluded.error, sql = excluded.sql, {plan_columns},
                row_count = excluded.row_count,
                source = excluded.source, pg_query_id = excluded.pg_query_id,
                duration_us = excluded.duration_us, sql_truncated = excluded.sql_truncated,
                parameters = excluded.parameters
             -- A record re-imported unchanged is left alone: no new row version, no index
             -- entries, several times faster for repeated imports.
             WHERE (query_records.*) IS DISTINCT FROM (excluded.*)"
        ))
        .await
        .map_err(backend)?;
    for (n, chunk) in rows.chunks(CHUNK).enumerate() {
        if n > 0 {
            tx.batch_execute("TRUNCATE query_records_in")
                .await
                .map_err(backend)?;
        }
        let sink = tx.copy_in(&copy).await.map_err(backend)?;
        let mut writer = std::pin::pin!(BinaryCopyInWriter::new(sink, &TYPES));
        for r in chunk {
            let start = to_millis(r.start_time);
            let running = r.status == QueryStatus::Running;
            writer
                .as_mut()
                .write(&[
                    &r.instance,
                    &r.query_id,
                    &r.session_id,
                    &r.database,
                    &r.user,
                    &start,
                    &r.duration_ms,
                    &running,
                    &r.error,
                    &r.sql,
                    &r.plan_json,
                    &r.plan_text,
                    &r.rows,
                    &r.source,
                    &r.pg_query_id,
                    &r.duration_us,
                    &r.sql_truncated,
                    &r.parameters,
                ])
                .await
                .map_err(backend)?;
        }
        writer.finish().await.map_err(backend)?;
        tx.execute(&merge, &[]).await.map_err(backend)?;
    }
    Ok(())
}

/// The batch sorted by `(instance, query_id)` with only the last record of each key, as a
/// record-by-record upsert would leave it (one INSERT … ON CONFLICT cannot touch a row twice).
/// The order also makes concurrent imports lock rows in the same order and fills the primary
/// key index sequentially.
fn latest_per_key(records: &[QueryRecord]) -> Vec<&QueryRecord> {
    let key = |i: usize| (records[i].instance.as_str(), records[i].query_id.as_str());
    let mut order: Vec<usize> = (0..records.len()).collect();
    // Later records first within a key, so `dedup` keeps the last one given.
    order.sort_unstable_by(|&a, &b| key(a).cmp(&key(b)).then(b.cmp(&a)));
    order.dedup_by(|later, earlier| key(*later) == key(*earlier));
    order.into_iter().map(|i| &records[i]).collect()
}

fn order_by(order: RecordOrder) -> &'static str {
    match (order.field, order.descending) {
        (OrderField::StartTime, true) => "start_time DESC, query_id DESC",
        (OrderField::StartTime, false) => "start_time ASC, query_id ASC",
        (OrderField::Duration, true) => "duration_ms DESC, query_id DESC",
        (OrderField::Duration, false) => "duration_ms ASC, query_id ASC",
    }
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A bind parameter the selection owns, so a stream can carry it into its own task.
type Arg = Box<dyn ToSql + Sync + Send>;

/// The records a filter selects, as a subquery (`... AS selected`) and its bind parameters
/// `$1..$n`. Built once for listings, counts and streams so they can never disagree.
struct Selection {
    source: String,
    args: Vec<Arg>,
}

impl Selection {
    fn new(filter: &RecordFilter, keyword_collation: &str) -> Self {
        // Every value is a bind parameter; only fixed SQL fragments are formatted in.
        let mut args: Vec<Arg> = vec![
            Box::new(filter.instance.clone()),
            Box::new(to_millis(filter.window.start)),
            Box::new(to_millis(filter.window.end)),
        ];
        let mut condition = String::from("instance = $1 AND start_time >= $2 AND start_time < $3");
        let mut add = |arg: Arg, fragment: &dyn Fn(usize) -> String| {
            args.push(arg);
            condition.push_str(&fragment(args.len()));
        };
        if let Some(database) = &filter.database {
            add(Box::new(database.clone()), &|n| {
                format!(" AND database = ${n}")
            });
        }
        if let Some(user) = &filter.user {
            add(Box::new(user.clone()), &|n| {
                format!(" AND user_name = ${n}")
            });
        }
        if let Some(keyword) = &filter.keyword {
            // Literal and case-insensitive: strpos has no wildcards, and both sides are lowered
            // by the same collation.
            add(Box::new(keyword.clone()), &|n| {
                format!(
                    " AND strpos(lower(sql{keyword_collation}), lower(${n}::text{keyword_collation})) > 0"
                )
            });
        }
        let mut cut = None;
        match filter.condition {
            Some(QueryCondition::Status(status)) => {
                add(Box::new(status == QueryStatus::Running), &|n| {
                    format!(" AND running = ${n}")
                });
            }
            Some(QueryCondition::Cost { min, max }) => {
                if let Some(min) = min {
                    add(Box::new(min), &|n| format!(" AND duration_ms >= ${n}"));
                }
                if let Some(max) = max {
                    add(Box::new(max), &|n| format!(" AND duration_ms < ${n}"));
                }
            }
            Some(QueryCondition::MaxCost(n)) => cut = Some(i64::from(n)),
            None => {}
        }
        // With maxCost the selection is the N longest; everything else applies inside it.
        let source = match cut {
            Some(cut) => {
                args.push(Box::new(cut));
                format!(
                    "(SELECT * FROM query_records WHERE {condition}
                      ORDER BY duration_ms DESC, query_id ASC LIMIT ${}) AS selected",
                    args.len()
                )
            }
            None => format!("(SELECT * FROM query_records WHERE {condition}) AS selected"),
        };
        Self { source, args }
    }

    fn count_sql(&self) -> String {
        format!("SELECT count(*) FROM {}", self.source)
    }

    /// Every selected record in `order`; a page appends `LIMIT`/`OFFSET` as the next two
    /// parameters.
    fn listing_sql(&self, order: RecordOrder) -> String {
        format!(
            "SELECT {COLUMNS} FROM {} ORDER BY {}",
            self.source,
            order_by(order)
        )
    }

    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.args
            .iter()
            .map(|a| a.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }
}

pub(super) async fn search(
    client: &mut Object,
    keyword_collation: &str,
    filter: &RecordFilter,
    order: RecordOrder,
    page: Page,
) -> Result<RecordPage, StoreError> {
    let selection = Selection::new(filter, keyword_collation);
    let (limit, offset) = (clamp(page.limit), clamp(page.offset));
    let mut args = selection.params();
    let counted = args.len();
    args.push(&limit);
    args.push(&offset);
    let page_sql = format!(
        "{} LIMIT ${} OFFSET ${}",
        selection.listing_sql(order),
        counted + 1,
        counted + 2
    );
    let count_sql = selection.count_sql();

    // One snapshot for the total and the page, so they agree while imports run.
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(backend)?;
    let (count_stmt, page_stmt) =
        tokio::try_join!(tx.prepare_cached(&count_sql), tx.prepare_cached(&page_sql))
            .map_err(backend)?;
    let (total, rows) = tokio::try_join!(
        tx.query_one(&count_stmt, &args[..counted]),
        tx.query(&page_stmt, &args)
    )
    .map_err(backend)?;
    tx.commit().await.map_err(backend)?;
    let total: i64 = total.get(0);
    Ok(RecordPage {
        total: u64::try_from(total).unwrap_or(0),
        records: rows.iter().map(to_record).collect::<Result<_, _>>()?,
    })
}

/// Batches waiting in the channel; with the one being fetched and the one being sent, at most
/// four batches are ever in memory.
const STREAM_QUEUE: usize = 2;

type Batches = mpsc::Sender<Result<Vec<QueryRecord>, StoreError>>;

/// Streams the selection from one pooled connection, in one read-only REPEATABLE READ
/// transaction (one snapshot), through a portal: the server hands over `batch` rows per
/// request, so neither side ever holds the whole result. Stops as soon as the receiver is
/// dropped, even in the middle of a statement.
pub(super) fn stream(
    pool: Pool,
    tls: TlsConnector,
    keyword_collation: &'static str,
    filter: &RecordFilter,
    order: RecordOrder,
    batch: usize,
) -> mpsc::Receiver<Result<Vec<QueryRecord>, StoreError>> {
    let (sender, receiver) = mpsc::channel(STREAM_QUEUE);
    let selection = Selection::new(filter, keyword_collation);
    let batch = i32::try_from(batch.max(1)).unwrap_or(i32::MAX);
    tokio::spawn(async move {
        let mut client = tokio::select! {
            client = pool.get() => match client {
                Ok(client) => client,
                Err(e) => {
                    let _ = sender.send(Err(pool_error(e))).await;
                    return;
                }
            },
            () = sender.closed() => return,
        };
        let cancel = client.cancel_token();
        // Whether the server is working for us (as opposed to us waiting for the reader).
        let busy = AtomicBool::new(false);
        let ended = tokio::select! {
            result = send_batches(&mut client, &selection, order, batch, &sender, &busy) => {
                Some(result)
            }
            () = sender.closed() => None,
        };
        match ended {
            Some(Ok(())) => {
                // The end marker: without it the reader treats the stream as cut short.
                let _ = sender.send(Ok(Vec::new())).await;
            }
            Some(Err(e)) => {
                let _ = sender.send(Err(e)).await;
            }
            // The reader left while we waited for room: the transaction was dropped, which
            // rolls it back, and the connection goes back to the pool as usual.
            None if !busy.load(Ordering::Relaxed) => {}
            None => {
                // The server may still be sorting, scanning or waiting for a lock for us:
                // stop it, and keep the connection out of the pool so the cancel can never
                // hit another caller's statement (it may arrive after ours ended).
                let detached = Object::take(client);
                let _ = cancel.cancel_query(tls).await;
                drop(detached);
            }
        }
    });
    receiver
}

async fn send_batches(
    client: &mut Object,
    selection: &Selection,
    order: RecordOrder,
    batch: i32,
    sender: &Batches,
    busy: &AtomicBool,
) -> Result<(), StoreError> {
    busy.store(true, Ordering::Relaxed);
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(backend)?;
    let stmt = tx
        .prepare_cached(&selection.listing_sql(order))
        .await
        .map_err(backend)?;
    let portal = tx.bind(&stmt, &selection.params()).await.map_err(backend)?;
    let full = usize::try_from(batch).unwrap_or(usize::MAX);
    loop {
        busy.store(true, Ordering::Relaxed);
        let rows = tx.query_portal(&portal, batch).await.map_err(backend)?;
        // A short batch means the portal is exhausted (an empty one, that it ended exactly
        // with the previous batch).
        let last = rows.len() < full;
        if !rows.is_empty() {
            let records = rows.iter().map(to_record).collect::<Result<Vec<_>, _>>()?;
            drop(rows);
            busy.store(false, Ordering::Relaxed);
            if sender.send(Ok(records)).await.is_err() {
                return Ok(()); // the reader went away
            }
        }
        if last {
            break;
        }
    }
    busy.store(true, Ordering::Relaxed);
    drop(portal);
    tx.commit().await.map_err(backend)
}

pub(super) async fn get(
    client: &Object,
    instance: &str,
    query_id: &str,
) -> Result<Option<QueryRecord>, StoreError> {
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM query_records WHERE instance = $1 AND query_id = $2"
        ))
        .await
        .map_err(backend)?;
    let row = client
        .query_opt(&stmt, &[&instance, &query_id])
        .await
        .map_err(backend)?;
    row.as_ref().map(to_record).transpose()
}

/// The distinct values of `column` for instance `$1`, ascending, by jumping through the index
/// that starts with `(instance, column)`: one probe per value instead of a scan of every record.
fn distinct_by_index_walk(column: &str) -> String {
    format!(
        "WITH RECURSIVE walk(v) AS (
            SELECT (SELECT min({column}) FROM query_records WHERE instance = $1)
            UNION ALL
            SELECT (SELECT min({column}) FROM query_records WHERE instance = $1 AND {column} > walk.v)
            FROM walk WHERE walk.v IS NOT NULL
         )
         SELECT v FROM walk WHERE v IS NOT NULL"
    )
}

pub(super) async fn dimensions(
    client: &Object,
    instance: &str,
    window: Option<TimeWindow>,
) -> Result<Dimensions, StoreError> {
    let strings = |rows: Vec<Row>| -> Result<Vec<String>, StoreError> {
        rows.iter().map(|r| r.try_get(0).map_err(backend)).collect()
    };
    match window {
        None => {
            let args: [&(dyn ToSql + Sync); 1] = [&instance];
            let (by_database, by_user) = (
                distinct_by_index_walk("database"),
                distinct_by_index_walk("user_name"),
            );
            let (databases, users) = tokio::try_join!(
                client.query(&by_database, &args),
                client.query(&by_user, &args)
            )
            .map_err(backend)?;
            Ok(Dimensions {
                databases: strings(databases)?,
                users: strings(users)?,
            })
        }
        Some(w) => {
            let (start, end) = (to_millis(w.start), to_millis(w.end));
            let args: [&(dyn ToSql + Sync); 3] = [&instance, &start, &end];
            let (databases, users) = tokio::try_join!(
                client.query(
                    "SELECT DISTINCT database FROM query_records
                     WHERE instance = $1 AND start_time >= $2 AND start_time < $3
                     ORDER BY database",
                    &args
                ),
                client.query(
                    "SELECT DISTINCT user_name FROM query_records
                     WHERE instance = $1 AND start_time >= $2 AND start_time < $3
                     ORDER BY user_name",
                    &args
                )
            )
            .map_err(backend)?;
            Ok(Dimensions {
                databases: strings(databases)?,
                users: strings(users)?,
            })
        }
    }
}

fn to_record(r: &Row) -> Result<QueryRecord, StoreError> {
    Ok(QueryRecord {
        instance: r.try_get(0).map_err(backend)?,
        query_id: r.try_get(1).map_err(backend)?,
        session_id: r.try_get(2).map_err(backend)?,
        database: r.try_get(3).map_err(backend)?,
        user: r.try_get(4).map_err(backend)?,
        start_time: r.try_get(5).map_err(backend)?,
        duration_ms: r.try_get(6).map_err(backend)?,
        status: if r.try_get::<_, bool>(7).map_err(backend)? {
            QueryStatus::Running
        } else {
            QueryStatus::Finished
        },
        error: r.try_get(8).map_err(backend)?,
        sql: r.try_get(9).map_err(backend)?,
        plan_json: r.try_get(10).map_err(backend)?,
        plan_text: r.try_get(11).map_err(backend)?,
        rows: r.try_get(12).map_err(backend)?,
        source: r.try_get(13).map_err(backend)?,
        pg_query_id: r.try_get(14).map_err(backend)?,
        duration_us: r.try_get(15).map_err(backend)?,
        sql_truncated: r.try_get(16).map_err(backend)?,
        parameters: r.try_get(17).map_err(backend)?,
    })
}
