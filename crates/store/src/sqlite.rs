//! The embedded SQLite store: one connection in WAL mode, used from blocking threads.

use crate::{Store, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use gpdiag_core::{AccessKey, Instance, Secret};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Versioned migrations; `PRAGMA user_version` records how many have run.
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE accounts (
    name        TEXT PRIMARY KEY,
    created_at  INTEGER NOT NULL
);
CREATE TABLE access_keys (
    id          TEXT PRIMARY KEY,
    account     TEXT NOT NULL REFERENCES accounts(name),
    secret      TEXT NOT NULL,
    enabled     INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE TABLE instances (
    id              TEXT PRIMARY KEY,
    account         TEXT NOT NULL REFERENCES accounts(name),
    region          TEXT NOT NULL,
    engine_version  TEXT NOT NULL,
    core_version    TEXT NOT NULL,
    mode            TEXT NOT NULL,
    status          TEXT NOT NULL,
    description     TEXT NOT NULL,
    created_at      INTEGER NOT NULL
);
CREATE TABLE counters (
    name   TEXT PRIMARY KEY,
    value  INTEGER NOT NULL
);
INSERT INTO counters VALUES ('keys_generation', 0);
"#];

#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and runs pending migrations.
    pub async fn open(path: &str) -> Result<Self, StoreError> {
        let path = path.to_owned();
        let conn = tokio::task::spawn_blocking(move || -> Result<Connection, StoreError> {
            if let Some(dir) = Path::new(&path)
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
            {
                std::fs::create_dir_all(dir).map_err(|e| {
                    StoreError::Backend(format!("cannot create {}: {e}", dir.display()))
                })?;
            }
            let mut conn = Connection::open(&path).map_err(backend)?;
            // WAL lets the `gpdiag keys` command write while a server reads; the busy timeout
            // makes either side wait for the other instead of failing.
            conn.pragma_update(None, "journal_mode", "WAL")
                .map_err(backend)?;
            conn.pragma_update(None, "synchronous", "NORMAL")
                .map_err(backend)?;
            conn.pragma_update(None, "foreign_keys", "ON")
                .map_err(backend)?;
            conn.busy_timeout(std::time::Duration::from_secs(5))
                .map_err(backend)?;
            migrate(&mut conn)?;
            Ok(conn)
        })
        .await
        .map_err(|e| StoreError::Backend(e.to_string()))??;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    async fn with<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Backend(e.to_string()))?
    }
}

fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let done: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(backend)?;
    let done = usize::try_from(done).unwrap_or(0);
    if done > MIGRATIONS.len() {
        return Err(StoreError::Backend(format!(
            "the database has schema version {done}, newer than this gpdiag knows ({})",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(done) {
        let tx = conn.transaction().map_err(backend)?;
        tx.execute_batch(sql).map_err(backend)?;
        tx.pragma_update(None, "user_version", i + 1)
            .map_err(backend)?;
        tx.commit().map_err(backend)?;
    }
    Ok(())
}

fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_millis(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or(DateTime::UNIX_EPOCH)
}

fn bump_keys_generation(conn: &Connection) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE counters SET value = value + 1 WHERE name = 'keys_generation'",
        [],
    )
    .map_err(backend)?;
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn ensure_account(&self, name: &str) -> Result<(), StoreError> {
        let name = name.to_owned();
        self.with(move |c| {
            c.execute(
                "INSERT INTO accounts (name, created_at) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                params![name, millis(Utc::now())],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn put_key(&self, key: &AccessKey) -> Result<(), StoreError> {
        let key = key.clone();
        self.with(move |c| {
            let tx = c.transaction().map_err(backend)?;
            let owner: Option<(String, String)> = tx
                .query_row(
                    "SELECT account, secret FROM access_keys WHERE id = ?1",
                    [&key.id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(backend)?;
            match owner {
                Some((account, _)) if account != key.account => {
                    return Err(StoreError::Conflict(format!(
                        "access key {} belongs to another account",
                        key.id
                    )))
                }
                Some((_, secret)) if secret == key.secret.expose() => return Ok(()),
                Some(_) => {
                    tx.execute(
                        "UPDATE access_keys SET secret = ?2 WHERE id = ?1",
                        params![key.id, key.secret.expose()],
                    )
                    .map_err(backend)?;
                }
                None => {
                    tx.execute(
                        "INSERT INTO access_keys (id, account, secret, enabled, created_at)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![
                            key.id,
                            key.account,
                            key.secret.expose(),
                            key.enabled,
                            millis(key.created_at)
                        ],
                    )
                    .map_err(|e| match e {
                        rusqlite::Error::SqliteFailure(f, _)
                            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
                        {
                            StoreError::NotFound(format!("account {}", key.account))
                        }
                        e => backend(e),
                    })?;
                }
            }
            bump_keys_generation(&tx)?;
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn set_key_enabled(&self, id: &str, enabled: bool) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.with(move |c| {
            let tx = c.transaction().map_err(backend)?;
            let n = tx
                .execute(
                    "UPDATE access_keys SET enabled = ?2 WHERE id = ?1",
                    params![id, enabled],
                )
                .map_err(backend)?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("access key {id}")));
            }
            bump_keys_generation(&tx)?;
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn list_keys(&self) -> Result<Vec<AccessKey>, StoreError> {
        self.with(|c| {
            let mut stmt = c
                .prepare(
                    "SELECT id, account, secret, enabled, created_at FROM access_keys ORDER BY id",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(AccessKey {
                        id: r.get(0)?,
                        account: r.get(1)?,
                        secret: Secret::new(r.get::<_, String>(2)?),
                        enabled: r.get(3)?,
                        created_at: from_millis(r.get(4)?),
                    })
                })
                .map_err(backend)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(backend)
        })
        .await
    }

    async fn keys_generation(&self) -> Result<i64, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT value FROM counters WHERE name = 'keys_generation'",
                [],
                |r| r.get(0),
            )
            .map_err(backend)
        })
        .await
    }

    async fn replace_instances(&self, instances: &[Instance]) -> Result<(), StoreError> {
        let instances = instances.to_vec();
        self.with(move |c| {
            let tx = c.transaction().map_err(backend)?;
            tx.execute(
                "CREATE TEMP TABLE IF NOT EXISTS keep (id TEXT PRIMARY KEY)",
                [],
            )
            .map_err(backend)?;
            tx.execute("DELETE FROM keep", []).map_err(backend)?;
            for i in &instances {
                tx.execute(
                    "INSERT INTO instances (id, account, region, engine_version, core_version,
                                            mode, status, description, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                     ON CONFLICT (id) DO UPDATE SET
                        account = excluded.account, region = excluded.region,
                        engine_version = excluded.engine_version,
                        core_version = excluded.core_version, mode = excluded.mode,
                        status = excluded.status, description = excluded.description",
                    params![
                        i.id,
                        i.account,
                        i.region,
                        i.engine_version,
                        i.core_version_text,
                        i.mode.as_str(),
                        i.status,
                        i.description,
                        millis(i.created_at)
                    ],
                )
                .map_err(backend)?;
                tx.execute("INSERT OR IGNORE INTO keep (id) VALUES (?1)", [&i.id])
                    .map_err(backend)?;
            }
            tx.execute(
                "DELETE FROM instances WHERE id NOT IN (SELECT id FROM keep)",
                [],
            )
            .map_err(backend)?;
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn list_instances(&self) -> Result<Vec<Instance>, StoreError> {
        self.with(|c| {
            let mut stmt = c
                .prepare(
                    "SELECT id, account, region, engine_version, core_version, mode, status,
                            description, created_at
                     FROM instances ORDER BY id",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, String>(6)?,
                        r.get::<_, String>(7)?,
                        r.get::<_, i64>(8)?,
                    ))
                })
                .map_err(backend)?;
            let mut out = Vec::new();
            for row in rows {
                let (id, account, region, engine_version, core, mode, status, description, at) =
                    row.map_err(backend)?;
                let corrupt = |e: gpdiag_core::ParseError| {
                    StoreError::Backend(format!("instance {id} in the store: {e}"))
                };
                out.push(Instance {
                    core_version: core.parse().map_err(corrupt)?,
                    mode: mode.parse().map_err(corrupt)?,
                    id,
                    account,
                    region,
                    engine_version,
                    core_version_text: core,
                    status,
                    description,
                    created_at: from_millis(at),
                });
            }
            Ok(out)
        })
        .await
    }
}
