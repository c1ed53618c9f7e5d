//! Query records in PostgreSQL: bulk upsert through binary COPY, filtered listings, lookups
//! and dimensions.

use super::{backend, to_millis};
use crate::{Dimensions, Page, RecordPage, StoreError};
use deadpool_postgres::Object;
use gpdiag_core::{
    OrderField, QueryCondition, QueryRecord, QueryStatus, RecordFilter, RecordOrder, TimeWindow,
};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{IsolationLevel, Row};

const COLUMNS: &str = "instance, query_id, session_id, database, user_name, start_time, \
                       duration_ms, running, error, sql, plan_json, plan_text, row_count, source";

/// The column types of [`COLUMNS`], in order, for the binary COPY.
const TYPES: [Type; 14] = [
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
    source       text NOT NULL
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
    let rows = latest_per_key(records);
    let tx = client.transaction().await.map_err(backend)?;
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
                error = excluded.error, sql = excluded.sql, plan_json = excluded.plan_json,
                plan_text = excluded.plan_text, row_count = excluded.row_count,
                source = excluded.source
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
                ])
                .await
                .map_err(backend)?;
        }
        writer.finish().await.map_err(backend)?;
        tx.execute(&merge, &[]).await.map_err(backend)?;
    }

    tx.commit().await.map_err(backend)?;
    Ok(records.len() as u64)
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

pub(super) async fn search(
    client: &mut Object,
    keyword_collation: &str,
    filter: &RecordFilter,
    order: RecordOrder,
    page: Page,
) -> Result<RecordPage, StoreError> {
    let start = to_millis(filter.window.start);
    let end = to_millis(filter.window.end);
    let running = match filter.condition {
        Some(QueryCondition::Status(status)) => Some(status == QueryStatus::Running),
        _ => None,
    };
    let (min, max) = match filter.condition {
        Some(QueryCondition::Cost { min, max }) => (min, max),
        _ => (None, None),
    };
    let cut = match filter.condition {
        Some(QueryCondition::MaxCost(n)) => Some(i64::from(n)),
        _ => None,
    };
    let (limit, offset) = (clamp(page.limit), clamp(page.offset));

    // Every value is a bind parameter; only fixed SQL fragments are formatted in.
    let mut args: Vec<&(dyn ToSql + Sync)> = vec![&filter.instance, &start, &end];
    let mut condition = String::from("instance = $1 AND start_time >= $2 AND start_time < $3");
    if let Some(database) = &filter.database {
        args.push(database);
        condition.push_str(&format!(" AND database = ${}", args.len()));
    }
    if let Some(user) = &filter.user {
        args.push(user);
        condition.push_str(&format!(" AND user_name = ${}", args.len()));
    }
    if let Some(keyword) = &filter.keyword {
        args.push(keyword);
        // Literal and case-insensitive: strpos has no wildcards, and both sides are lowered
        // by the same collation.
        condition.push_str(&format!(
            " AND strpos(lower(sql{keyword_collation}), lower(${}::text{keyword_collation})) > 0",
            args.len()
        ));
    }
    if let Some(running) = &running {
        args.push(running);
        condition.push_str(&format!(" AND running = ${}", args.len()));
    }
    if let Some(min) = &min {
        args.push(min);
        condition.push_str(&format!(" AND duration_ms >= ${}", args.len()));
    }
    if let Some(max) = &max {
        args.push(max);
        condition.push_str(&format!(" AND duration_ms < ${}", args.len()));
    }
    // With maxCost the selection is the N longest; everything else applies inside it.
    let source = match &cut {
        Some(cut) => {
            args.push(cut);
            format!(
                "(SELECT * FROM query_records WHERE {condition}
                  ORDER BY duration_ms DESC, query_id ASC LIMIT ${}) AS selected",
                args.len()
            )
        }
        None => format!("(SELECT * FROM query_records WHERE {condition}) AS selected"),
    };
    let counted = args.len();
    args.push(&limit);
    args.push(&offset);
    let page_sql = format!(
        "SELECT {COLUMNS} FROM {source} ORDER BY {} LIMIT ${} OFFSET ${}",
        order_by(order),
        counted + 1,
        counted + 2
    );
    let count_sql = format!("SELECT count(*) FROM {source}");

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
    })
}
