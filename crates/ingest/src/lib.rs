//! Getting query records into the store. `import` reads JSON lines or the export CSV and writes
//! them in batches through `Store::upsert_records`, the same bulk path the collectors use.

pub mod collect;
pub mod import;
pub mod logs;
