//! The reusable part of the benchmarks: a deterministic generator of realistic query records
//! (`generate`), which other benchmarks and tests share.

pub mod generate;
