//! A collector's health report: what it last did and what went wrong, as stored and as the
//! `DescribeCollectorStatus` action answers it.

use serde::{Deserialize, Serialize};

/// Times are RFC 3339 UTC strings, as every gpdiag API time is text.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CollectorHealth {
    /// The process collecting (host and process ID).
    pub owner: String,
    pub updated_at: String,
    /// `csvlog`, `jsonlog` or `greenplum-csvlog`; empty when logs are not read.
    pub log_format: String,
    pub last_tail_at: Option<String>,
    /// Log files in the directory, and bytes in them not yet read.
    pub log_files: u64,
    pub lag_bytes: u64,
    /// Records written from logs since this process started, and log records skipped.
    pub log_records: u64,
    pub bad_log_records: u64,
    /// Whether `pg_stat_activity` is sampled, and how it went last.
    pub sampling: bool,
    pub sampler_connected: bool,
    pub last_sample_at: Option<String>,
    pub running_queries: u64,
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
}
