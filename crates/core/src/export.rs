//! Download tasks: what an export selects and writes, its lifecycle (`running` → `finished` |
//! `failed`), and the file name the API reports.

use crate::instance::ParseError;
use crate::{DownloadTaskType, Lang, RecordFilter, RecordOrder};
use chrono::{DateTime, Utc};
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskStatus {
    Running,
    Finished,
    Failed,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Finished => "finished",
            Self::Failed => "failed",
        }
    }
}

impl FromStr for TaskStatus {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        match s {
            "running" => Ok(Self::Running),
            "finished" => Ok(Self::Finished),
            "failed" => Ok(Self::Failed),
            _ => Err(ParseError {
                what: "task status",
                value: s.to_owned(),
                reason: "expected running, finished or failed",
            }),
        }
    }
}

/// How the file is written. The official SDKs only choose `lang`; `bom` and `gzip` are
/// gpdiag's own extra parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FileOptions {
    pub lang: Lang,
    /// A UTF-8 byte-order mark first, so spreadsheet programs detect UTF-8.
    pub bom: bool,
    pub gzip: bool,
}

/// Everything an export needs to run, fixed when it is accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSpec {
    pub filter: RecordFilter,
    pub order: RecordOrder,
    pub file: FileOptions,
}

impl ExportSpec {
    /// `<StartTime as yyyyMMddHHmmss>-<EndTime as yyyyMMddHHmmss>.csv`, `.csv.gz` when gzipped,
    /// as in the documented `20220509113448-20220509173448.csv`.
    pub fn file_name(&self) -> String {
        let stamp = |t: DateTime<Utc>| t.format("%Y%m%d%H%M%S").to_string();
        format!(
            "{}-{}.csv{}",
            stamp(self.filter.window.start),
            stamp(self.filter.window.end),
            if self.file.gzip { ".gz" } else { "" }
        )
    }
}

/// A task as accepted, before the store gives it an ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTask {
    pub account: String,
    pub instance: String,
    pub task_type: DownloadTaskType,
    pub spec: ExportSpec,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadTask {
    pub id: i64,
    pub account: String,
    pub instance: String,
    pub task_type: DownloadTaskType,
    pub spec: ExportSpec,
    pub file_name: String,
    pub status: TaskStatus,
    /// A human sentence when failed, empty otherwise.
    pub exception_msg: String,
    /// Where the finished file is, relative to the object store's root.
    pub object_key: Option<String>,
    pub rows: Option<u64>,
    pub bytes: Option<u64>,
    /// Rows written so far while running.
    pub rows_done: u64,
    /// How many times a worker has taken the task.
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// The folder of everything a task ever wrote: one per account, instance and task, so keys
/// never collide across owners and retention deletes by prefix.
pub fn task_prefix(task: &DownloadTask) -> String {
    format!("exports/{}/{}/{}", task.account, task.instance, task.id)
}

/// The object key of one attempt's file. Each attempt writes its own key, so a worker that lost
/// its lease can never overwrite or delete the file of the worker that took over.
pub fn object_key(task: &DownloadTask) -> String {
    format!("{}/{}/{}", task_prefix(task), task.attempts, task.file_name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TimeWindow;
    use chrono::TimeZone;

    #[test]
    fn file_names_follow_the_documented_pattern() {
        let window = TimeWindow::new(
            Utc.with_ymd_and_hms(2022, 5, 9, 11, 34, 48).unwrap(),
            Utc.with_ymd_and_hms(2022, 5, 9, 17, 34, 48).unwrap(),
        )
        .unwrap();
        let mut spec = ExportSpec {
            filter: RecordFilter {
                instance: "gp".into(),
                database: None,
                window,
                user: None,
                keyword: None,
                condition: None,
            },
            order: RecordOrder::default(),
            file: FileOptions::default(),
        };
        assert_eq!(spec.file_name(), "20220509113448-20220509173448.csv");
        spec.file.gzip = true;
        assert_eq!(spec.file_name(), "20220509113448-20220509173448.csv.gz");
    }

    #[test]
    fn statuses_round_trip() {
        for s in [
            TaskStatus::Running,
            TaskStatus::Finished,
            TaskStatus::Failed,
        ] {
            assert_eq!(s.as_str().parse(), Ok(s));
        }
        assert!("done".parse::<TaskStatus>().is_err());
    }
}
