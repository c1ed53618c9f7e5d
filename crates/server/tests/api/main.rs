//! End-to-end tests of the real server over HTTP: one test binary, one app per test.

mod helpers;
mod instances;
mod signing;
