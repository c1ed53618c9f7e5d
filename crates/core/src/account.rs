//! Accounts and their access keys.

use crate::Secret;
use chrono::{DateTime, Utc};

/// An AccessKey pair owned by one account. Only the authenticator reads `secret`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessKey {
    pub id: String,
    pub account: String,
    pub secret: Secret,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
}
