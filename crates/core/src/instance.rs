//! Instances as the registry knows them, their minor version, and the availability gate that
//! every diagnosis action passes through.

use chrono::{DateTime, Utc};
use std::fmt;
use std::str::FromStr;

/// A value that did not parse; `what` names the field for the error message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {value:?} is not valid: {reason}")]
pub struct ParseError {
    pub what: &'static str,
    pub value: String,
    pub reason: &'static str,
}

/// The storage mode of an instance, spelled as the API spells `DBInstanceMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InstanceMode {
    StorageElastic,
    Classic,
    Serverless,
}

impl InstanceMode {
    pub const ALL: [InstanceMode; 3] = [Self::StorageElastic, Self::Classic, Self::Serverless];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::StorageElastic => "StorageElastic",
            Self::Classic => "Classic",
            Self::Serverless => "Serverless",
        }
    }
}

impl FromStr for InstanceMode {
    type Err = ParseError;

    /// Case-insensitive: the documented filters mix `StorageElastic` and lower-case spellings.
    fn from_str(s: &str) -> Result<Self, ParseError> {
        Self::ALL
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(s))
            .ok_or(ParseError {
                what: "DBInstanceMode",
                value: s.to_owned(),
                reason: "expected StorageElastic, Classic or Serverless",
            })
    }
}

impl fmt::Display for InstanceMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A kernel minor version such as `mm.v6.3.10.1-202207141918` or plain `6.3.10.1`, kept as its
/// numeric parts so that `6.3.10.1 < 6.3.10.12` compares as numbers, not as text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct CoreVersion(Vec<u32>);

/// The documented minimum for query diagnosis: V6.3.10.1.
pub const MIN_DIAGNOSIS_VERSION: [u32; 4] = [6, 3, 10, 1];

impl CoreVersion {
    pub fn parts(&self) -> &[u32] {
        &self.0
    }
}

impl FromStr for CoreVersion {
    type Err = ParseError;

    fn from_str(raw: &str) -> Result<Self, ParseError> {
        let bad = |reason| ParseError {
            what: "core_version",
            value: raw.to_owned(),
            reason,
        };
        // `mm.v6.3.10.1-202207141918`: an optional product prefix ending in `v`, then the dotted
        // version, then an optional `-<build stamp>`.
        let s = raw.trim();
        let s = match s.rfind(['v', 'V']) {
            Some(i) => &s[i + 1..],
            None => s,
        };
        let s = s.split_once('-').map_or(s, |(version, _build)| version);
        if s.is_empty() {
            return Err(bad("expected a dotted version such as 6.3.10.1"));
        }
        let parts = s
            .split('.')
            .map(|p| {
                if p.is_empty() || p.len() > 9 || !p.bytes().all(|b| b.is_ascii_digit()) {
                    Err(bad("expected a dotted version such as 6.3.10.1"))
                } else {
                    p.parse::<u32>()
                        .map_err(|_| bad("expected a dotted version"))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        if parts.len() < 2 || parts.len() > 6 {
            return Err(bad("expected two to six dotted numbers"));
        }
        Ok(Self(parts))
    }
}

/// The `DownloadTaskType` of `DescribeDownloadRecords`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DownloadTaskType {
    /// Exports started by `DownloadDiagnosisRecords`; the default when the parameter is absent.
    #[default]
    SqlDiagnose,
    /// Exports started by `DownloadSlowSQLRecords`.
    SlowSql,
}

impl DownloadTaskType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SqlDiagnose => "SQL_DIAGNOSE",
            Self::SlowSql => "SLOW_SQL",
        }
    }
}

impl FromStr for DownloadTaskType {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        match s {
            "SQL_DIAGNOSE" => Ok(Self::SqlDiagnose),
            "SLOW_SQL" => Ok(Self::SlowSql),
            _ => Err(ParseError {
                what: "DownloadTaskType",
                value: s.to_owned(),
                reason: "expected SQL_DIAGNOSE or SLOW_SQL",
            }),
        }
    }
}

/// One instance of the registry, as configured and owned by exactly one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub id: String,
    pub account: String,
    pub region: String,
    pub engine_version: String,
    /// As configured, echoed verbatim in `CoreVersion`.
    pub core_version_text: String,
    pub core_version: CoreVersion,
    pub mode: InstanceMode,
    pub status: String,
    pub description: String,
    /// When gpdiag first saw the instance; reported as `CreateTime` / `CreationTime`.
    pub created_at: DateTime<Utc>,
}

/// Why the diagnosis actions are unavailable for an instance that does exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GateError {
    #[error("instance {id} is in {mode} mode; query diagnosis requires StorageElastic mode")]
    NotStorageElastic { id: String, mode: InstanceMode },
    #[error(
        "instance {id} runs minor version {version}; query diagnosis requires V6.3.10.1 or later"
    )]
    VersionTooOld { id: String, version: String },
}

/// The documented precondition of every diagnosis action: elastic storage mode and minor version
/// V6.3.10.1 or later. Ownership is checked before this, by the registry lookup.
pub fn check_diagnosis_available(instance: &Instance) -> Result<(), GateError> {
    if instance.mode != InstanceMode::StorageElastic {
        return Err(GateError::NotStorageElastic {
            id: instance.id.clone(),
            mode: instance.mode,
        });
    }
    if instance.core_version.parts() < &MIN_DIAGNOSIS_VERSION[..] {
        return Err(GateError::VersionTooOld {
            id: instance.id.clone(),
            version: instance.core_version_text.clone(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> CoreVersion {
        s.parse().unwrap()
    }

    fn instance(mode: InstanceMode, version: &str) -> Instance {
        Instance {
            id: "gp-1".into(),
            account: "a".into(),
            region: "cn-hangzhou".into(),
            engine_version: "6.0".into(),
            core_version_text: version.into(),
            core_version: v(version),
            mode,
            status: "Running".into(),
            description: String::new(),
            created_at: DateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn core_version_parses_the_product_string_and_the_plain_form_alike() {
        assert_eq!(v("mm.v6.3.10.1-202207141918"), v("6.3.10.1"));
        assert_eq!(v("V6.3.10.1").parts(), &[6, 3, 10, 1]);
        assert_eq!(v("7.0").parts(), &[7, 0]);
    }

    #[test]
    fn core_versions_compare_numerically() {
        assert!(v("6.3.10.12") > v("6.3.10.2"));
        assert!(v("6.3.9.99") < v("6.3.10.1"));
        assert!(v("7.0") > v("6.3.10.1"));
        assert!(v("6.3.10") < v("6.3.10.1"));
    }

    #[test]
    fn malformed_core_versions_are_rejected() {
        for bad in [
            "",
            "v",
            "6",
            "6..1",
            "6.x.1",
            "mm.v-2022",
            "6.3.10.1.1.1.1",
            "-1.2",
            "99999999999.1",
        ] {
            assert!(bad.parse::<CoreVersion>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn the_gate_admits_elastic_instances_at_or_after_6_3_10_1() {
        for ok in [
            "6.3.10.1",
            "mm.v6.3.10.1-202207141918",
            "6.3.10.2",
            "6.4.0.0",
            "7.0.1",
        ] {
            assert_eq!(
                check_diagnosis_available(&instance(InstanceMode::StorageElastic, ok)),
                Ok(())
            );
        }
    }

    #[test]
    fn the_gate_refuses_old_versions_and_other_modes() {
        assert!(matches!(
            check_diagnosis_available(&instance(InstanceMode::StorageElastic, "mm.v6.3.9.0-2021")),
            Err(GateError::VersionTooOld { .. })
        ));
        for mode in [InstanceMode::Classic, InstanceMode::Serverless] {
            assert!(matches!(
                check_diagnosis_available(&instance(mode, "7.0")),
                Err(GateError::NotStorageElastic { .. })
            ));
        }
    }

    #[test]
    fn modes_and_task_types_parse_as_documented() {
        assert_eq!("storageelastic".parse(), Ok(InstanceMode::StorageElastic));
        assert!("Elastic".parse::<InstanceMode>().is_err());
        assert_eq!("SLOW_SQL".parse(), Ok(DownloadTaskType::SlowSql));
        assert!("sql_diagnose".parse::<DownloadTaskType>().is_err());
    }
}
