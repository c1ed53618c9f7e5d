//! The server's configuration: embedded defaults, then a TOML file, then `GPDIAG_*` environment
//! overrides, then command-line flags. The key names are a user-facing contract (see README).

use anyhow::{bail, Context};
use gpdiag_core::{CoreVersion, InstanceMode, Secret};
use gpdiag_ingest::collect::CollectSettings;
use gpdiag_objects::ObjectsSettings;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::Path;

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub objects: ObjectsSettings,
    pub exports: ExportsConfig,
    pub limits: LimitsConfig,
    pub metrics: MetricsConfig,
    pub accounts: Vec<AccountConfig>,
    pub instances: Vec<InstanceConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: String,
    /// The region this server answers for; instances default to it.
    pub region: String,
    /// Base of the links the server hands out; `http://<listen>` when unset.
    pub public_url: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            region: "cn-hangzhou".into(),
            public_url: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    pub url: String,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://gpdiag-data/gpdiag.db".into(),
        }
    }
}

/// `[exports]`: the export workers and their limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExportsConfig {
    /// Exports this process runs at once; 0 makes an API-only node (another process sharing
    /// the PostgreSQL store runs the exports).
    pub workers: usize,
    /// Running exports one account may have; one more is refused.
    pub max_running_per_account: u32,
    /// Times an interrupted export is started again before it is failed.
    pub max_attempts: u32,
    /// Finished and failed exports (records and files) older than this are deleted.
    pub retention_days: u32,
    /// A query is slow, for `DownloadSlowSQLRecords`, from this duration on.
    pub slow_query_ms: i64,
    /// How long a worker's claim on a task lasts without renewal; after a crash of one of
    /// several processes sharing PostgreSQL, another takes the task over after this long.
    pub lease_seconds: u32,
}

impl Default for ExportsConfig {
    fn default() -> Self {
        Self {
            workers: 2,
            max_running_per_account: 10,
            max_attempts: 3,
            retention_days: 7,
            slow_query_ms: 1000,
            lease_seconds: 30,
        }
    }
}

/// `[metrics]`: Prometheus metrics at `/metrics` on the API's listener, off by default.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    pub enabled: bool,
    /// When set (the token itself, or `env:VAR`), scrapes must send
    /// `Authorization: Bearer <token>`.
    pub bearer_token: Option<String>,
}

impl MetricsConfig {
    /// The token scrapes must present, with `env:VAR` looked up.
    pub fn token(&self, env: impl Fn(&str) -> Option<String>) -> anyhow::Result<Option<Secret>> {
        let Some(value) = self.bearer_token.as_deref() else {
            return Ok(None);
        };
        let value = match value.strip_prefix("env:") {
            Some(var) => env(var).with_context(|| {
                format!("environment variable {var} ([metrics] bearer_token) is not set")
            })?,
            None => value.to_owned(),
        };
        if value.is_empty() {
            bail!("[metrics] bearer_token is empty");
        }
        Ok(Some(Secret::new(value)))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Sustained calls per second per account (GCRA).
    pub calls_per_second: u32,
    /// Calls an account may make at once above the sustained rate; `default_burst` when unset.
    pub burst: Option<u32>,
    /// How many signature nonces the replay memory holds at most.
    pub nonce_capacity: usize,
    /// Calls per second per action, all accounts together; unlimited when unset.
    pub api_calls_per_second: Option<u32>,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            calls_per_second: 1000,
            burst: None,
            nonce_capacity: 4_000_000,
            api_calls_per_second: None,
        }
    }
}

impl LimitsConfig {
    pub fn effective_burst(&self) -> u32 {
        self.burst
            .unwrap_or(default_burst(self.calls_per_second))
            .max(1)
    }
}

/// 5% of the rate, which keeps a 10-second average within 0.5% of it, but at least
/// `min(rate, 10)` so that small limits still allow a few calls in a row.
pub fn default_burst(rate: u32) -> u32 {
    (rate / 20).max(rate.min(10)).max(1)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    pub name: String,
    pub access_key_id: String,
    /// The secret itself, or `env:VAR` to read it from the environment.
    pub access_key_secret: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceConfig {
    pub id: String,
    pub account: String,
    pub region: Option<String>,
    #[serde(default = "default_engine_version")]
    pub engine_version: String,
    pub core_version: String,
    pub mode: String,
    #[serde(default = "default_status")]
    pub status: String,
    #[serde(default)]
    pub description: String,
    /// `[instances.collect]`: where this instance's diagnostics are collected from.
    #[serde(default)]
    pub collect: Option<CollectSettings>,
}

fn default_engine_version() -> String {
    "6.0".into()
}

fn default_status() -> String {
    "Running".into()
}

/// Environment variables that override file settings, and the key each one sets.
pub const ENV_OVERRIDES: &[(&str, &str)] = &[
    ("GPDIAG_LISTEN", "server.listen"),
    ("GPDIAG_REGION", "server.region"),
    ("GPDIAG_PUBLIC_URL", "server.public_url"),
    ("GPDIAG_STORAGE_URL", "storage.url"),
    ("GPDIAG_CALLS_PER_SECOND", "limits.calls_per_second"),
    ("GPDIAG_BURST", "limits.burst"),
    ("GPDIAG_API_CALLS_PER_SECOND", "limits.api_calls_per_second"),
];

impl Config {
    /// Defaults, then the file (if any), then the environment as read by `env`.
    pub fn load(path: Option<&Path>, env: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let mut config = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read config file {}", path.display()))?;
                toml::from_str(&text)
                    .with_context(|| format!("config file {} is not valid", path.display()))?
            }
            None => Config::default(),
        };
        for (var, key) in ENV_OVERRIDES {
            if let Some(value) = env(var) {
                config
                    .set(key, &value)
                    .with_context(|| format!("environment variable {var}"))?;
            }
        }
        for (var, field) in gpdiag_objects::ENV_OVERRIDES {
            if let Some(value) = env(var) {
                config
                    .objects
                    .set(field, &value)
                    .with_context(|| format!("environment variable {var}"))?;
            }
        }
        Ok(config)
    }

    fn set(&mut self, key: &str, value: &str) -> anyhow::Result<()> {
        let number = |v: &str| {
            v.parse::<u32>()
                .with_context(|| format!("{v:?} is not a number"))
        };
        match key {
            "server.listen" => self.server.listen = value.into(),
            "server.region" => self.server.region = value.into(),
            "server.public_url" => self.server.public_url = Some(value.into()),
            "storage.url" => self.storage.url = value.into(),
            "limits.calls_per_second" => self.limits.calls_per_second = number(value)?,
            "limits.burst" => self.limits.burst = Some(number(value)?),
            "limits.api_calls_per_second" => {
                self.limits.api_calls_per_second = Some(number(value)?)
            }
            _ => bail!("unknown setting {key}"),
        }
        Ok(())
    }

    pub fn listen_addr(&self) -> anyhow::Result<SocketAddr> {
        self.server.listen.parse().with_context(|| {
            format!(
                "server.listen {:?} is not an address like 127.0.0.1:8080",
                self.server.listen
            )
        })
    }

    /// Checks everything that can be checked before start: limits, unique names, parseable
    /// versions and modes, resolvable secrets.
    pub fn validate(&self, env: impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
        self.listen_addr()?;
        if self.limits.calls_per_second == 0 || self.limits.api_calls_per_second == Some(0) {
            bail!("limits.calls_per_second and limits.api_calls_per_second must be at least 1");
        }
        let mut key_ids = std::collections::HashSet::new();
        for account in &self.accounts {
            if account.name.is_empty() || account.access_key_id.is_empty() {
                bail!("every [[accounts]] entry needs a name and an access_key_id");
            }
            if !key_ids.insert(&account.access_key_id) {
                bail!("access key {} is configured twice", account.access_key_id);
            }
            account.secret(&env)?;
        }
        self.objects.validate(&env).context("[objects]")?;
        self.metrics.token(&env)?;
        let e = &self.exports;
        if e.max_running_per_account == 0 || e.max_attempts == 0 || e.lease_seconds < 5 {
            bail!("[exports] max_running_per_account and max_attempts must be at least 1, lease_seconds at least 5");
        }
        if e.slow_query_ms < 0 {
            bail!("[exports] slow_query_ms cannot be negative");
        }
        let mut ids = std::collections::HashSet::new();
        for instance in &self.instances {
            if !ids.insert(&instance.id) {
                bail!("instance {} is configured twice", instance.id);
            }
            instance.core_version.parse::<CoreVersion>()?;
            instance.mode.parse::<InstanceMode>()?;
            if let Some(collect) = &instance.collect {
                collect
                    .validate(&env)
                    .map_err(|e| anyhow::anyhow!("[instances.collect] of {}: {e}", instance.id))?;
            }
        }
        Ok(())
    }
}

impl AccountConfig {
    pub fn secret(&self, env: impl Fn(&str) -> Option<String>) -> anyhow::Result<Secret> {
        let value = match self.access_key_secret.strip_prefix("env:") {
            Some(var) => env(var).with_context(|| {
                format!(
                    "environment variable {var} (the secret of account {}) is not set",
                    self.name
                )
            })?,
            None => self.access_key_secret.clone(),
        };
        if value.is_empty() {
            bail!("the access_key_secret of account {} is empty", self.name);
        }
        Ok(Secret::new(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn defaults_need_no_file() {
        let c = Config::load(None, no_env).unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:8080");
        assert_eq!(c.storage.url, "sqlite://gpdiag-data/gpdiag.db");
        assert_eq!(c.objects.url, "file://gpdiag-data/objects");
        assert_eq!(c.exports.max_running_per_account, 10);
        assert_eq!(c.limits.calls_per_second, 1000);
        assert_eq!(c.limits.effective_burst(), 50);
        for (rate, burst) in [(5, 5), (100, 10), (1, 1), (100_000, 5000)] {
            let limits = LimitsConfig {
                calls_per_second: rate,
                ..LimitsConfig::default()
            };
            assert_eq!(limits.effective_burst(), burst, "rate {rate}");
        }
        c.validate(no_env).unwrap();
    }

    #[test]
    fn environment_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[server]\nlisten = \"127.0.0.1:1\"\n[limits]\ncalls_per_second = 7\n",
        )
        .unwrap();
        let env = |k: &str| (k == "GPDIAG_LISTEN").then(|| "127.0.0.1:2".to_string());
        let c = Config::load(Some(&path), env).unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:2");
        assert_eq!(c.limits.calls_per_second, 7);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[server]\nlisen = \"x\"\n").unwrap();
        assert!(Config::load(Some(&path), no_env).is_err());
        let env = |k: &str| (k == "GPDIAG_CALLS_PER_SECOND").then(|| "many".to_string());
        assert!(Config::load(None, env).is_err());
    }

    #[test]
    fn secrets_can_come_from_the_environment() {
        let account = AccountConfig {
            name: "a".into(),
            access_key_id: "K".into(),
            access_key_secret: "env:A_SECRET".into(),
        };
        let env = |k: &str| (k == "A_SECRET").then(|| "s3cr3t".to_string());
        assert_eq!(account.secret(env).unwrap().expose(), "s3cr3t");
        let err = account.secret(no_env).unwrap_err().to_string();
        assert!(err.contains("A_SECRET"), "{err}");
    }

    #[test]
    fn instances_must_have_valid_versions_and_modes() {
        let mut c = Config::default();
        c.instances.push(InstanceConfig {
            id: "gp-1".into(),
            account: "a".into(),
            region: None,
            engine_version: "6.0".into(),
            core_version: "six".into(),
            mode: "StorageElastic".into(),
            status: "Running".into(),
            description: String::new(),
            collect: None,
        });
        assert!(c.validate(no_env).is_err());
        c.instances[0].core_version = "6.3.10.1".into();
        c.validate(no_env).unwrap();
        c.instances[0].mode = "Elastic".into();
        assert!(c.validate(no_env).is_err());
    }
}
