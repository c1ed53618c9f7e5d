//! The export pipeline. A worker claims a download task, streams its records from the store
//! into a CSV file uploaded part by part to object storage, and marks the task finished or
//! failed. Memory stays bounded whatever the export's size, and a file becomes visible only
//! when complete.

pub mod csv_file;
pub mod worker;

pub use worker::{ExportSettings, Exporter, RunOutcome};
