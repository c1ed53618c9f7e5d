//! End-to-end tests of the real server over HTTP: one test binary, one app per test.

mod bad_input;
mod collectors;
mod diagnosis;
mod download_progress;
mod exports;
mod helpers;
mod instances;
mod metrics;
mod raw_http;
mod signing;
mod vectors;
