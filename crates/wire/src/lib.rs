//! The gpdb 2016-05-03 OpenAPI wire format, with no IO: parameter decoding, the v1 and ACS3
//! signatures (verify and sign), the error-code table, JSON/XML rendering, and the request and
//! response types of each action. The server, the CLI and the benchmarks all use this one copy.

pub mod api;
pub mod encode;
pub mod error;
pub mod params;
pub mod render;
pub mod sign;

pub use error::{ApiError, ErrorCode};
pub use params::Params;
pub use render::Format;

/// The only API version gpdiag speaks.
pub use sign::API_VERSION;
