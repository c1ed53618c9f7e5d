//! Test support shared by the crates' integration tests (never linked into gpdiag itself):
//! private PostgreSQL 15 clusters started with `scripts/pg-cluster`, and the server the tests
//! share.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `scripts/NAME` of this repository.
pub fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../scripts")
        .join(name)
}

/// A private, throw-away cluster: `scripts/pg-cluster` in a fresh directory under /tmp (the
/// server's OS user must reach it, and the socket path must be short). Stopped, and its
/// directory removed, when dropped, also when the test panics.
pub struct PgCluster {
    dir: tempfile::TempDir,
    /// The superuser's URL (`postgres://gpdiag@127.0.0.1:PORT/postgres`).
    pub url: String,
}

impl PgCluster {
    /// Starts a cluster; `extra_conf` is included last in its postgresql.conf.
    pub fn start(prefix: &str, extra_conf: Option<&str>) -> PgCluster {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in("/tmp")
            .expect("cannot create a directory for the test cluster");
        if let Some(conf) = extra_conf {
            std::fs::write(dir.path().join("extra.conf"), conf).unwrap();
        }
        let mut cluster = PgCluster {
            dir,
            url: String::new(),
        };
        cluster.url = cluster.run("start");
        cluster
    }

    /// The cluster's directory (`data/` holds the data directory).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A fast-shutdown restart on the same port: every session is cut.
    pub fn restart(&self) {
        let url = self.run("restart");
        assert_eq!(url, self.url, "a restarted cluster keeps its port");
    }

    /// `scripts/pg-cluster ACTION DIR`; the URL it printed last.
    fn run(&self, action: &str) -> String {
        let out = Command::new(script("pg-cluster"))
            .arg(action)
            .arg(self.dir.path())
            .output()
            .unwrap_or_else(|e| panic!("cannot run scripts/pg-cluster: {e}"));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let url = stdout.lines().last().unwrap_or_default().trim().to_owned();
        assert!(
            out.status.success() && url.starts_with("postgres://"),
            "no PostgreSQL server for the tests: scripts/pg-cluster {action} failed ({}):\n\
             {stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        url
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        // A drop guard: say what went wrong, never panic.
        match Command::new(script("pg-cluster"))
            .arg("stop")
            .arg(self.dir.path())
            .output()
        {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "stopping the test cluster failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => eprintln!("cannot run scripts/pg-cluster: {e}"),
        }
    }
}

/// The PostgreSQL server a test binary's store tests share: the one `GPDIAG_TEST_PG_URL`
/// names (scripts/test starts one for the whole run), or a private cluster. Never skipped.
pub struct PgServer {
    pub url: String,
    _cluster: Option<PgCluster>,
}

impl PgServer {
    pub fn get() -> PgServer {
        if let Ok(url) = std::env::var("GPDIAG_TEST_PG_URL") {
            assert!(!url.is_empty(), "GPDIAG_TEST_PG_URL is set but empty");
            return PgServer {
                url,
                _cluster: None,
            };
        }
        let cluster = PgCluster::start("gpdiag-pg-", None);
        PgServer {
            url: cluster.url.clone(),
            _cluster: Some(cluster),
        }
    }

    /// The URL of database `name` on this server.
    pub fn url_for(&self, name: &str) -> String {
        url_for(&self.url, name)
    }

    /// Runs `sql` (one or more statements) as the server's administrator.
    pub async fn execute(&self, sql: &str) {
        let (client, connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the test server: {e:?}"));
        let connection = tokio::spawn(connection);
        client
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        drop(client);
        let _ = connection.await;
    }
}

/// `url` with its database replaced by `name` (query parameters kept).
pub fn url_for(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let host_start = base.find("://").expect("a URL") + 3;
    let host_end = base[host_start..]
        .find('/')
        .map_or(base.len(), |i| host_start + i);
    format!("{}/{name}{query}", &base[..host_end])
}

#[cfg(test)]
mod tests {
    #[test]
    fn url_for_replaces_only_the_database() {
        assert_eq!(
            super::url_for("postgres://u@h:5/postgres?sslmode=disable", "x"),
            "postgres://u@h:5/x?sslmode=disable"
        );
        assert_eq!(
            super::url_for("postgres://u@h:5", "x"),
            "postgres://u@h:5/x"
        );
    }
}
