//! gpdiag's domain types, parsed once at the boundary: instances, versions, the availability
//! gate, download task types and the clock. No IO and nothing async lives here.

pub mod clock;
pub mod instance;

pub use clock::{Clock, ManualClock, SystemClock};
pub use instance::{
    check_diagnosis_available, CoreVersion, DownloadTaskType, GateError, Instance, InstanceMode,
    ParseError, MIN_DIAGNOSIS_VERSION,
};
pub mod secret;
pub use secret::Secret;
pub mod account;
pub use account::AccessKey;
pub mod record;
pub use record::{
    OrderField, QueryCondition, QueryRecord, QueryStatus, RecordFilter, RecordOrder, TimeWindow,
};
pub mod lang;
pub mod plan;
pub use lang::{Column, Lang};
pub mod export;
pub use export::{DownloadTask, ExportSpec, FileOptions, NewTask, TaskStatus};
pub mod collector;
pub use collector::CollectorHealth;
