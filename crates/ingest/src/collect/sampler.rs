//! Sampling `pg_stat_activity` for the statements running now, over a read-only session that
//! reconnects with backoff while the server is away.

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use gpdiag_core::{QueryRecord, QueryStatus};
use gpdiag_store::pg_tls::{describe, PgDsn, TlsConnector};
use std::time::{Duration, Instant};
use tokio_postgres::Client;

/// The longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub struct Sampler {
    instance: String,
    config: tokio_postgres::Config,
    tls: TlsConnector,
    client: Option<(Client, String)>,
    backoff: Duration,
    next_attempt: Option<Instant>,
}

#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    #[error("the dsn is not valid: {0}")]
    Dsn(String),
    /// Not connected; the message says why and when the next attempt is.
    #[error("{0}")]
    Unavailable(String),
    #[error("sampling pg_stat_activity failed: {0}")]
    Query(String),
}

impl Sampler {
    /// `dsn` is libpq's: `sslmode` and `sslrootcert` as `gpdiag_store::pg_tls` reads them
    /// (the CA file is read now).
    pub fn new(instance: &str, dsn: &str) -> Result<Self, SampleError> {
        let PgDsn {
            mut config, tls, ..
        } = PgDsn::parse(dsn)
            // Its messages never include the password.
            .map_err(|e| SampleError::Dsn(e.to_string()))?;
        config
            .application_name("gpdiag-collector")
            .connect_timeout(Duration::from_secs(5))
            // Never writes to the monitored server, whatever the role may do.
            .options("-c default_transaction_read_only=on -c statement_timeout=5000");
        Ok(Self {
            instance: instance.to_owned(),
            config,
            tls,
            client: None,
            backoff: Duration::from_secs(1),
            next_attempt: None,
        })
    }

    pub fn connected(&self) -> bool {
        self.client.as_ref().is_some_and(|(c, _)| !c.is_closed())
    }

    /// The client backends running a statement now (other than this session), as running
    /// records. Parallel workers are folded into their leader by taking client backends only.
    pub async fn sample(&mut self) -> Result<Vec<QueryRecord>, SampleError> {
        if !self.connected() {
            self.client = None;
            self.connect().await?;
        }
        let (client, query) = self.client.as_ref().expect("connected above");
        match client.query(query.as_str(), &[]).await {
            Ok(rows) => {
                self.backoff = Duration::from_secs(1);
                rows.iter().map(|row| self.record(row)).collect()
            }
            Err(e) => {
                let message = describe(&e);
                if client.is_closed() {
                    self.client = None;
                    self.schedule_retry();
                }
                Err(SampleError::Query(message))
            }
        }
    }

    async fn connect(&mut self) -> Result<(), SampleError> {
        if let Some(at) = self.next_attempt {
            if Instant::now() < at {
                return Err(SampleError::Unavailable(format!(
                    "not connected; next attempt in {} ms",
                    at.saturating_duration_since(Instant::now()).as_millis()
                )));
            }
        }
        let (client, connection) = match self.config.connect(self.tls.clone()).await {
            Ok(c) => c,
            Err(e) => {
                self.schedule_retry();
                return Err(SampleError::Unavailable(format!(
                    "cannot connect: {}",
                    describe(&e)
                )));
            }
        };
        let instance = self.instance.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%instance, "monitoring connection ended: {e}");
            }
        });
        let query = match activity_query(&client).await {
            Ok(q) => q,
            Err(e) => {
                self.schedule_retry();
                return Err(SampleError::Query(describe(&e)));
            }
        };
        self.next_attempt = None;
        self.client = Some((client, query));
        Ok(())
    }

    fn schedule_retry(&mut self) {
        self.next_attempt = Some(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    fn record(&self, row: &tokio_postgres::Row) -> Result<QueryRecord, SampleError> {
        let bad = |e: tokio_postgres::Error| SampleError::Query(describe(&e));
        let sampled_at: DateTime<Utc> = row.try_get("sampled_at").map_err(bad)?;
        let query_start: DateTime<Utc> = row.try_get("query_start").map_err(bad)?;
        let session_id: String = row.try_get("session_id").map_err(bad)?;
        let sql: String = row
            .try_get::<_, Option<String>>("query")
            .map_err(bad)?
            .unwrap_or_default();
        let max_query: i32 = row.try_get("max_query").map_err(bad)?;
        let running = sampled_at
            .signed_duration_since(query_start)
            .max(ChronoDuration::zero());
        Ok(QueryRecord {
            instance: self.instance.clone(),
            query_id: format!("{session_id}@{}", query_start.timestamp_micros()),
            session_id,
            database: row
                .try_get::<_, Option<String>>("datname")
                .map_err(bad)?
                .unwrap_or_default(),
            user: row
                .try_get::<_, Option<String>>("usename")
                .map_err(bad)?
                .unwrap_or_default(),
            start_time: DateTime::from_timestamp_millis(query_start.timestamp_millis())
                .unwrap_or(query_start),
            duration_ms: running.num_milliseconds(),
            status: QueryStatus::Running,
            // The server keeps at most track_activity_query_size - 1 bytes of the text.
            sql_truncated: sql.len() + 1 >= usize::try_from(max_query).unwrap_or(usize::MAX),
            sql,
            pg_query_id: row
                .try_get::<_, Option<i64>>("query_id")
                .map_err(bad)?
                .filter(|q| *q != 0),
            source: "pg_stat_activity".into(),
            ..QueryRecord::default()
        })
    }
}

/// The sampling query for this server: `query_id` from PostgreSQL 14, `backend_type` from 10,
/// and Greenplum's `sess_id` as the session key (its logs say `con<sess_id>`).
async fn activity_query(client: &Client) -> Result<String, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT current_setting('server_version_num')::int,
                    EXISTS (SELECT 1 FROM pg_attribute
                            WHERE attrelid = 'pg_catalog.pg_stat_activity'::regclass
                              AND attname = 'sess_id')",
            &[],
        )
        .await?;
    let version: i32 = row.get(0);
    let greenplum: bool = row.get(1);
    let session = if greenplum {
        "'con' || sess_id::text"
    } else {
        "to_hex(trunc(extract(epoch from backend_start))::int) || '.' || to_hex(pid)"
    };
    let query_id = if version >= 140_000 {
        "query_id"
    } else {
        "NULL::bigint"
    };
    let client_backends = if version >= 100_000 {
        "AND backend_type = 'client backend'"
    } else {
        ""
    };
    Ok(format!(
        "SELECT now() AS sampled_at, datname::text, usename::text, query_start,
                {query_id} AS query_id, {session} AS session_id, query,
                (SELECT setting::int FROM pg_settings
                 WHERE name = 'track_activity_query_size') AS max_query
         FROM pg_stat_activity
         WHERE state = 'active' AND query_start IS NOT NULL
           AND pid <> pg_backend_pid() {client_backends}"
    ))
}
