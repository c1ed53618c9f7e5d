//! `[instances.collect]`: where an instance's diagnostics come from, as the operator writes it.

use crate::logs::LogFormat;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// One instance's collection settings. At least one of `dsn` and `log_dir` is needed.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectSettings {
    /// A libpq-style URL or key=value string for a monitoring role, or `env:VAR`. gpdiag only
    /// reads through it (its sessions are read-only).
    #[serde(default)]
    pub dsn: Option<String>,
    /// The server's log directory (`log_directory`), readable by gpdiag.
    #[serde(default)]
    pub log_dir: Option<PathBuf>,
    #[serde(default)]
    pub log_format: LogFormatSetting,
    /// How often `pg_stat_activity` is sampled and the log directory polled.
    #[serde(default = "default_interval", deserialize_with = "interval")]
    pub sample_interval: Duration,
    /// The largest log record kept whole; longer ones are stored cut, with a flag.
    #[serde(default = "default_max_record_bytes")]
    pub max_record_bytes: usize,
}

impl std::fmt::Debug for CollectSettings {
    /// The DSN may hold a password: only its `env:VAR` form is printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dsn = self
            .dsn
            .as_deref()
            .map(|d| if d.starts_with("env:") { d } else { "***" });
        f.debug_struct("CollectSettings")
            .field("dsn", &dsn)
            .field("log_dir", &self.log_dir)
            .field("log_format", &self.log_format.0)
            .field("sample_interval", &self.sample_interval)
            .field("max_record_bytes", &self.max_record_bytes)
            .finish()
    }
}

/// `log_format` as written: `csvlog`, `jsonlog` or `greenplum-csvlog`.
#[derive(Clone, Copy, Debug)]
pub struct LogFormatSetting(pub LogFormat);

impl Default for LogFormatSetting {
    fn default() -> Self {
        Self(LogFormat::Csvlog)
    }
}

impl<'de> Deserialize<'de> for LogFormatSetting {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map(Self).map_err(|_| {
            serde::de::Error::custom(format!(
                "log_format {s:?} is not csvlog, jsonlog or greenplum-csvlog"
            ))
        })
    }
}

fn default_interval() -> Duration {
    Duration::from_secs(1)
}

fn default_max_record_bytes() -> usize {
    4 << 20
}

/// `"1s"`, `"500ms"`, `"2m"` or a number of seconds; 100 ms to 1 hour.
fn interval<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Seconds(f64),
        Text(String),
    }
    let parsed = match Raw::deserialize(d)? {
        Raw::Seconds(s) if s.is_finite() && s > 0.0 => Some(Duration::from_secs_f64(s)),
        Raw::Seconds(_) => None,
        Raw::Text(t) => parse_interval(&t),
    };
    match parsed {
        Some(i) if (Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&i) => Ok(i),
        _ => Err(serde::de::Error::custom(
            "sample_interval must be like \"1s\", \"500ms\" or \"2m\", from 100ms to 1h",
        )),
    }
}

fn parse_interval(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.')?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let seconds = match unit.trim() {
        "ms" => number / 1000.0,
        "s" => number,
        "m" | "min" => number * 60.0,
        _ => return None,
    };
    (seconds.is_finite() && seconds > 0.0).then(|| Duration::from_secs_f64(seconds))
}

impl CollectSettings {
    /// Checks what serde cannot: something to collect from, and a DSN whose `env:VAR` is set
    /// and that can be used as it says (its `sslmode`, its `sslrootcert` file), so a bad one
    /// stops the start instead of a sampler that never runs.
    pub fn validate(&self, env: impl Fn(&str) -> Option<String>) -> Result<(), String> {
        if self.dsn.is_none() && self.log_dir.is_none() {
            return Err(
                "needs dsn (to sample running queries), log_dir (to read finished ones) or both"
                    .into(),
            );
        }
        if !(64 << 10..=256 << 20).contains(&self.max_record_bytes) {
            return Err("max_record_bytes must be from 65536 to 268435456".into());
        }
        match self.resolved_dsn(env)? {
            Some(dsn) => gpdiag_store::pg_tls::PgDsn::parse(&dsn)
                .map(|_| ())
                .map_err(|e| format!("dsn: {e}")),
            None => Ok(()),
        }
    }

    /// The DSN with `env:VAR` looked up.
    pub fn resolved_dsn(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<String>, String> {
        match self.dsn.as_deref() {
            None => Ok(None),
            Some(d) => match d.strip_prefix("env:") {
                Some(var) => env(var).map(Some).ok_or_else(|| {
                    format!("dsn names environment variable {var}, which is not set")
                }),
                None => Ok(Some(d.to_owned())),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<CollectSettings, String> {
        toml::from_str(toml_text).map_err(|e| e.to_string())
    }

    #[test]
    fn intervals_take_units_and_bounds() {
        assert_eq!(
            parse("log_dir='/x'").unwrap().sample_interval,
            Duration::from_secs(1)
        );
        for (text, ms) in [
            ("\"500ms\"", 500),
            ("\"2s\"", 2000),
            ("\"1m\"", 60_000),
            ("3", 3000),
            ("0.25", 250),
        ] {
            let s = parse(&format!("log_dir='/x'\nsample_interval={text}")).unwrap();
            assert_eq!(s.sample_interval, Duration::from_millis(ms), "{text}");
        }
        for bad in [
            "\"0s\"",
            "\"10ms\"",
            "\"2h\"",
            "\"fast\"",
            "-1",
            "\"1 parsec\"",
        ] {
            let err = parse(&format!("log_dir='/x'\nsample_interval={bad}")).unwrap_err();
            assert!(err.contains("sample_interval"), "{bad}: {err}");
        }
    }

    #[test]
    fn formats_and_unknown_keys_are_checked() {
        assert!(matches!(
            parse("log_dir='/x'\nlog_format='jsonlog'")
                .unwrap()
                .log_format
                .0,
            LogFormat::Jsonlog
        ));
        assert!(matches!(
            parse("log_dir='/x'\nlog_format='greenplum-csvlog'")
                .unwrap()
                .log_format
                .0,
            LogFormat::GreenplumCsvlog
        ));
        assert!(parse("log_dir='/x'\nlog_format='stderr'")
            .unwrap_err()
            .contains("csvlog, jsonlog"));
        assert!(parse("log_dir='/x'\nlogdir='/y'").is_err());
    }

    #[test]
    fn validation_needs_a_source_and_a_set_variable() {
        let none = parse("").unwrap();
        assert!(none.validate(|_| None).unwrap_err().contains("dsn"));
        let env = parse("dsn='env:MON_DSN'").unwrap();
        assert!(env.validate(|_| None).unwrap_err().contains("MON_DSN"));
        assert!(env.validate(|_| Some("postgres://m@h/db".into())).is_ok());
        let bad_mode = env
            .validate(|_| Some("postgres://m:hunter2@h/db?sslmode=sometimes".into()))
            .unwrap_err();
        assert!(
            bad_mode.contains("sslmode") && !bad_mode.contains("hunter2"),
            "{bad_mode}"
        );
        let no_ca = env
            .validate(|_| Some("host=h user=m password=hunter2 sslmode=verify-full sslrootcert=/nonexistent/ca.pem".into()))
            .unwrap_err();
        assert!(
            no_ca.contains("/nonexistent/ca.pem") && !no_ca.contains("hunter2"),
            "{no_ca}"
        );
    }

    #[test]
    fn debug_hides_an_inline_dsn() {
        let s = parse("dsn='postgres://mon:hunter2@db/postgres'").unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
