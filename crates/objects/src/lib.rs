//! gpdiag's object storage seam: export files written as multipart uploads (bounded memory,
//! visible only when complete) to a local directory or an S3-compatible store (AWS, Alibaba
//! OSS, MinIO, Garage), read back, deleted, and handed out as presigned links.
//!
//! Everything store-specific stays behind [`Objects`]; object_store types do not leak out, and
//! every error is an [`ObjectsError`] whose message never contains a credential.

mod error;
mod key;
mod objects_url;
mod settings;
mod store;

pub use error::{ObjectsError, ObjectsErrorKind};
pub use key::{validate_key, MAX_KEY_BYTES};
pub use objects_url::ObjectsUrl;
pub use settings::{
    ObjectsSettings, S3Settings, S3Timeouts, DEFAULT_REGION, ENV_OVERRIDES, MAX_LINK_TTL,
};
pub use store::{ByteStream, Download, Objects, Upload, MAX_PARTS_IN_FLIGHT, PART_SIZE};
