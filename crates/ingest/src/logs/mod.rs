//! Server log parsing, no IO: bytes of a PostgreSQL csvlog/jsonlog or Greenplum 6 csvlog in,
//! `LogEntry` values out (`LogReader`), and entries turned into query records
//! (`statements::StatementBuilder`). The tailer, offsets and store wiring live elsewhere.
//!
//! Memory is bounded on any input: a record keeps at most `max_record_bytes` of field text plus
//! `TAIL_RESERVE` for the short fields that follow a huge one; longer fields are cut on a UTF-8
//! boundary and the entry says `truncated`. The record is still delimited at its real end.
//! Fields a `LogEntry` does not use (hint, context, internal_query, …) are read past without
//! spending that budget.
//!
//! Greenplum segment lines are emitted like coordinator lines, with `LogEntry::segment` set;
//! `StatementBuilder` makes records only from the coordinator's (`seg-1`).

mod csvlog;
mod jsonlog;
pub mod statements;
mod text;
mod time;

pub use statements::StatementBuilder;
pub use text::{TAIL_FIELD, TAIL_RESERVE};

use chrono::{DateTime, Utc};
use std::fmt;
use std::str::FromStr;

/// The smallest record cap `LogReader::new` accepts; smaller values are raised to it so that a
/// `duration: … ms  statement: ` prefix always survives a cut.
pub const MIN_RECORD_BYTES: usize = 1024;

/// Which server log layout a file has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogFormat {
    /// PostgreSQL 12–17 `csvlog` (23, 24 or 26 fields).
    Csvlog,
    /// PostgreSQL 15+ `jsonlog`: one JSON object a line.
    Jsonlog,
    /// Greenplum 6 server csvlog (30 fields; `gp_session_id`, `gp_command_count`, `gp_segment`).
    GreenplumCsvlog,
}

impl LogFormat {
    /// The name used in configuration and as a record's `source`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Csvlog => "csvlog",
            Self::Jsonlog => "jsonlog",
            Self::GreenplumCsvlog => "greenplum-csvlog",
        }
    }

    /// The extension the server gives these files.
    pub fn file_extension(self) -> &'static str {
        match self {
            Self::Csvlog | Self::GreenplumCsvlog => ".csv",
            Self::Jsonlog => ".json",
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A log format name that is none of `csvlog`, `jsonlog`, `greenplum-csvlog`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown log format {0:?}: expected csvlog, jsonlog or greenplum-csvlog")]
pub struct UnknownLogFormat(pub String);

impl FromStr for LogFormat {
    type Err = UnknownLogFormat;

    fn from_str(s: &str) -> Result<Self, UnknownLogFormat> {
        match s {
            "csvlog" => Ok(Self::Csvlog),
            "jsonlog" => Ok(Self::Jsonlog),
            "greenplum-csvlog" => Ok(Self::GreenplumCsvlog),
            _ => Err(UnknownLogFormat(s.chars().take(64).collect())),
        }
    }
}

/// One server log record, whatever the format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// Absolute byte offsets in the file: the record spans `[offset_start, offset_end)`,
    /// including its terminating newline.
    pub offset_start: u64,
    pub offset_end: u64,
    pub log_time: DateTime<Utc>,
    pub user: Option<String>,
    pub database: Option<String>,
    pub pid: Option<i64>,
    /// PostgreSQL: `6b1312bf.19d5`; Greenplum: `con123`; empty when the record has none.
    pub session_id: String,
    /// PostgreSQL `session_line_num`; Greenplum: `None`.
    pub line_num: Option<i64>,
    /// Greenplum `gp_command_count` (`cmd5` → 5); PostgreSQL: `None`.
    pub command_count: Option<i64>,
    /// Greenplum `gp_segment` (`seg-1` → -1, the coordinator); PostgreSQL: `None`.
    pub segment: Option<i32>,
    pub severity: String,
    /// `None` for `00000` (jsonlog omits it, so csvlog's is dropped too and both formats agree).
    pub sql_state: Option<String>,
    pub message: String,
    pub detail: Option<String>,
    /// csvlog column 20 `query` / jsonlog `statement` / Greenplum `debug_query_string`.
    pub statement: Option<String>,
    pub application_name: Option<String>,
    pub backend_type: Option<String>,
    /// PostgreSQL's per-shape `query_id`; `None` when 0 or absent.
    pub query_id: Option<i64>,
    /// Some field was cut to respect the record size cap.
    pub truncated: bool,
    /// The message was cut (a duration record's SQL, a plan).
    pub message_truncated: bool,
    /// The statement was cut (a failed query's SQL).
    pub statement_truncated: bool,
}

/// What the reader makes of one record.
// Entries are the common case; boxing them would cost an allocation per record to save
// stack space on the rare bad one.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Entry(LogEntry),
    /// A record that was delimited but cannot be understood; the reader goes on after it.
    Bad {
        offset_start: u64,
        offset_end: u64,
        reason: String,
    },
}

/// The incremental reader: push the file's bytes in any chunks, get every completed record.
pub struct LogReader {
    format: LogFormat,
    inner: Inner,
}

// One per reader, never moved in a loop: no point boxing either side.
#[allow(clippy::large_enum_variant)]
enum Inner {
    Csv(csvlog::CsvSplitter),
    Json(jsonlog::JsonSplitter),
}

impl LogReader {
    /// `start_offset` is the absolute file offset of the first byte that will be pushed (the
    /// resume point). `max_record_bytes` caps the field text one record may keep (raised to
    /// `MIN_RECORD_BYTES` if smaller).
    pub fn new(format: LogFormat, start_offset: u64, max_record_bytes: usize) -> Self {
        let cap = max_record_bytes.max(MIN_RECORD_BYTES);
        let inner = match format {
            LogFormat::Csvlog => Inner::Csv(csvlog::CsvSplitter::new(
                start_offset,
                cap,
                csvlog::POSTGRES_FIELDS,
            )),
            LogFormat::GreenplumCsvlog => Inner::Csv(csvlog::CsvSplitter::new(
                start_offset,
                cap,
                csvlog::GREENPLUM_FIELDS,
            )),
            LogFormat::Jsonlog => Inner::Json(jsonlog::JsonSplitter::new(start_offset, cap)),
        };
        Self { format, inner }
    }

    pub fn format(&self) -> LogFormat {
        self.format
    }

    /// Feeds the next bytes of the file; calls `emit` for every record completed by them, in
    /// order. A trailing partial record stays buffered (bounded) until more bytes arrive.
    pub fn push(&mut self, bytes: &[u8], emit: &mut impl FnMut(Parsed)) {
        match &mut self.inner {
            Inner::Csv(splitter) => {
                let greenplum = self.format == LogFormat::GreenplumCsvlog;
                splitter.push(bytes, &mut |raw| {
                    emit(if greenplum {
                        csvlog::greenplum_entry(&raw)
                    } else {
                        csvlog::postgres_entry(&raw)
                    })
                });
            }
            Inner::Json(splitter) => splitter.push(bytes, emit),
        }
    }

    /// Absolute offset just past the last complete record (where a restart should resume).
    pub fn committed_offset(&self) -> u64 {
        match &self.inner {
            Inner::Csv(s) => s.committed_offset(),
            Inner::Json(s) => s.committed_offset(),
        }
    }

    /// Bytes of a partial record currently buffered (field text kept so far).
    pub fn pending_bytes(&self) -> usize {
        match &self.inner {
            Inner::Csv(s) => s.pending_bytes(),
            Inner::Json(s) => s.pending_bytes(),
        }
    }

    /// Bytes the reader holds allocated for record text, whatever their use; bounded by the
    /// cap plus small constants, so tests can check the memory bound and not only the data.
    pub fn retained_capacity(&self) -> usize {
        match &self.inner {
            Inner::Csv(s) => s.retained_capacity(),
            Inner::Json(s) => s.retained_capacity(),
        }
    }
}
