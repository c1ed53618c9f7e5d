//! The `[objects]` configuration contract (embedded by the server's config as `[objects]`):
//! where export files go, how long download links live, and how to reach an S3-compatible
//! store. Everything is checked before start; the secret is never printed.

use crate::error::{hide_userinfo, ObjectsError};
use crate::objects_url::ObjectsUrl;
use gpdiag_core::Secret;
use serde::Deserialize;
use std::fmt;
use std::time::Duration;

/// The longest a presigned link may live: SigV4 refuses `X-Amz-Expires` above 7 days.
pub const MAX_LINK_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// `[objects]` as written in the TOML file.
///
/// ```toml
/// [objects]
/// url = "s3://gpdiag-exports/prod"      # or file://PATH (the default: file://gpdiag-data/objects)
/// link_ttl_seconds = 3600               # presigned download links, 1 .. 604800
/// s3_endpoint = "https://s3.oss-cn-hangzhou.aliyuncs.com"  # unset: AWS S3 for s3_region
/// s3_region = "cn-hangzhou"             # default us-east-1
/// s3_access_key_id = "LTAI..."
/// s3_secret_access_key = "env:GPDIAG_S3_SECRET"          # the secret itself, or env:VAR
/// s3_path_style = false                 # true for MinIO and Garage, false for OSS and AWS
/// ```
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ObjectsSettings {
    /// `file://PATH` or `s3://BUCKET[/PREFIX]`.
    pub url: String,
    /// How long a presigned download link stays valid.
    pub link_ttl_seconds: u64,
    /// `https://HOST[:PORT]` of an S3-compatible service (`http://` only for a private test
    /// server: the operator's explicit choice). Unset means AWS S3 itself.
    pub s3_endpoint: Option<String>,
    /// The SigV4 signing region: what the service expects, e.g. `cn-hangzhou` for OSS (with
    /// its S3-compatible endpoint `https://s3.oss-cn-hangzhou.aliyuncs.com`),
    /// `garage` for a default Garage, `us-east-1` for MinIO (the default).
    pub s3_region: Option<String>,
    pub s3_access_key_id: Option<String>,
    /// The secret itself, or `env:VAR` to read it from the environment.
    pub s3_secret_access_key: Option<String>,
    /// Path-style requests (`ENDPOINT/BUCKET/KEY`) instead of virtual-hosted ones
    /// (`BUCKET.ENDPOINT/KEY`). OSS accepts only virtual-hosted; MinIO and Garage need
    /// path style unless DNS for `BUCKET.HOST` is set up.
    pub s3_path_style: bool,
}

impl Default for ObjectsSettings {
    fn default() -> Self {
        Self {
            url: "file://gpdiag-data/objects".into(),
            link_ttl_seconds: 3600,
            s3_endpoint: None,
            s3_region: None,
            s3_access_key_id: None,
            s3_secret_access_key: None,
            s3_path_style: false,
        }
    }
}

/// The secret may be written inline, so Debug prints only the `env:VAR` form.
impl fmt::Debug for ObjectsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secret = self.s3_secret_access_key.as_deref().map(|s| {
            if s.starts_with("env:") {
                s.to_owned()
            } else {
                "***".to_owned()
            }
        });
        f.debug_struct("ObjectsSettings")
            .field("url", &self.url)
            .field("link_ttl_seconds", &self.link_ttl_seconds)
            .field("s3_endpoint", &self.s3_endpoint)
            .field("s3_region", &self.s3_region)
            .field("s3_access_key_id", &self.s3_access_key_id)
            .field("s3_secret_access_key", &secret)
            .field("s3_path_style", &self.s3_path_style)
            .finish()
    }
}

/// Proposed environment overrides, and the `[objects]` field each one sets through
/// [`ObjectsSettings::set`].
pub const ENV_OVERRIDES: &[(&str, &str)] = &[
    ("GPDIAG_OBJECTS_URL", "url"),
    ("GPDIAG_OBJECTS_LINK_TTL_SECONDS", "link_ttl_seconds"),
    ("GPDIAG_S3_ENDPOINT", "s3_endpoint"),
    ("GPDIAG_S3_REGION", "s3_region"),
    ("GPDIAG_S3_ACCESS_KEY_ID", "s3_access_key_id"),
    ("GPDIAG_S3_SECRET_ACCESS_KEY", "s3_secret_access_key"),
    ("GPDIAG_S3_PATH_STYLE", "s3_path_style"),
];

impl ObjectsSettings {
    /// Sets one field from a string (environment overrides). Unknown fields are errors.
    pub fn set(&mut self, field: &str, value: &str) -> Result<(), ObjectsError> {
        match field {
            "url" => self.url = value.into(),
            "link_ttl_seconds" => {
                self.link_ttl_seconds = value.parse().map_err(|_| {
                    ObjectsError::config(format!(
                        "objects.link_ttl_seconds {value:?} is not a number"
                    ))
                })?
            }
            "s3_endpoint" => self.s3_endpoint = Some(value.into()),
            "s3_region" => self.s3_region = Some(value.into()),
            "s3_access_key_id" => self.s3_access_key_id = Some(value.into()),
            "s3_secret_access_key" => self.s3_secret_access_key = Some(value.into()),
            "s3_path_style" => {
                self.s3_path_style = match value {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => {
                        return Err(ObjectsError::config(format!(
                            "objects.s3_path_style {value:?} is not true or false"
                        )))
                    }
                }
            }
            _ => {
                return Err(ObjectsError::config(format!(
                    "unknown setting objects.{field}"
                )))
            }
        }
        Ok(())
    }

    pub fn objects_url(&self) -> Result<ObjectsUrl, ObjectsError> {
        self.url.parse()
    }

    /// The lifetime of presigned links: 1 second to 7 days.
    pub fn link_ttl(&self) -> Result<Duration, ObjectsError> {
        let ttl = Duration::from_secs(self.link_ttl_seconds);
        if ttl.is_zero() || ttl > MAX_LINK_TTL {
            return Err(ObjectsError::config(format!(
                "objects.link_ttl_seconds is {}; it must be between 1 and {} (7 days, the \
                 longest a presigned link can live)",
                self.link_ttl_seconds,
                MAX_LINK_TTL.as_secs()
            )));
        }
        Ok(ttl)
    }

    /// The S3 settings for an `s3://` URL (None for `file://`), with the secret resolved
    /// through `env` when written `env:VAR`. S3 keys with a `file://` URL are an error: they
    /// would be silently ignored otherwise.
    pub fn s3_settings(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<S3Settings>, ObjectsError> {
        if let ObjectsUrl::File { .. } = self.objects_url()? {
            let set: Vec<&str> = [
                ("s3_endpoint", self.s3_endpoint.is_some()),
                ("s3_region", self.s3_region.is_some()),
                ("s3_access_key_id", self.s3_access_key_id.is_some()),
                ("s3_secret_access_key", self.s3_secret_access_key.is_some()),
                ("s3_path_style", self.s3_path_style),
            ]
            .into_iter()
            .filter_map(|(name, set)| set.then_some(name))
            .collect();
            if !set.is_empty() {
                return Err(ObjectsError::config(format!(
                    "objects.{} only apply to an s3:// url, but objects.url is {}",
                    set.join(", objects."),
                    self.url
                )));
            }
            return Ok(None);
        }
        let access_key_id = match self.s3_access_key_id.as_deref() {
            Some(id) if !id.is_empty() => id.to_owned(),
            _ => {
                return Err(ObjectsError::config(
                    "objects.s3_access_key_id is required for an s3:// url",
                ))
            }
        };
        let secret = match self.s3_secret_access_key.as_deref() {
            None | Some("") => {
                return Err(ObjectsError::config(
                    "objects.s3_secret_access_key is required for an s3:// url",
                ))
            }
            Some(value) => match value.strip_prefix("env:") {
                Some(var) => env(var).filter(|v| !v.is_empty()).ok_or_else(|| {
                    ObjectsError::config(format!(
                        "environment variable {var} (objects.s3_secret_access_key) is not set \
                         or empty"
                    ))
                })?,
                None => value.to_owned(),
            },
        };
        let allow_http = self
            .s3_endpoint
            .as_deref()
            .is_some_and(|e| e.starts_with("http://"));
        let settings = S3Settings {
            endpoint: self.s3_endpoint.clone(),
            region: self
                .s3_region
                .clone()
                .unwrap_or_else(|| DEFAULT_REGION.into()),
            access_key_id,
            secret_access_key: Secret::new(secret),
            path_style: self.s3_path_style,
            allow_http,
            timeouts: S3Timeouts::default(),
        };
        settings.check()?;
        Ok(Some(settings))
    }

    /// Everything that can be checked without touching the store.
    pub fn validate(&self, env: impl Fn(&str) -> Option<String>) -> Result<(), ObjectsError> {
        self.objects_url()?;
        self.link_ttl()?;
        self.s3_settings(env)?;
        Ok(())
    }
}

/// What AWS SDKs and MinIO assume when no region is given.
pub const DEFAULT_REGION: &str = "us-east-1";

/// How to reach and sign for an S3-compatible store.
#[derive(Debug, Clone)]
pub struct S3Settings {
    /// `https://HOST[:PORT]`; None means AWS S3 for `region`.
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: Secret,
    /// `ENDPOINT/BUCKET/KEY` instead of `BUCKET.ENDPOINT/KEY`.
    pub path_style: bool,
    /// Whether an `http://` endpoint is acceptable.
    pub allow_http: bool,
    pub timeouts: S3Timeouts,
}

/// How long to wait for the store before calling it unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct S3Timeouts {
    /// To open a connection.
    pub connect: Duration,
    /// For one whole request, a 5 MiB part included.
    pub request: Duration,
    /// Retries of a failed request (connection errors, 5xx), with exponential backoff.
    pub max_retries: usize,
    /// No retry starts after this long since the first attempt.
    pub retry_timeout: Duration,
}

impl Default for S3Timeouts {
    /// object_store's defaults retry for up to 3 minutes; an export that cannot reach its
    /// store should fail within about half a minute instead, so the task can say so.
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            request: Duration::from_secs(120),
            max_retries: 3,
            retry_timeout: Duration::from_secs(30),
        }
    }
}

impl S3Settings {
    /// The endpoint's shape, the region and the key id; not whether they are right (only the
    /// store can say that: see `Objects::check`).
    pub(crate) fn check(&self) -> Result<(), ObjectsError> {
        if let Some(endpoint) = &self.endpoint {
            let url = url::Url::parse(endpoint).map_err(|e| {
                ObjectsError::config(format!(
                    "objects.s3_endpoint {:?} is not a URL ({e}); expected https://HOST[:PORT]",
                    hide_userinfo(endpoint)
                ))
            })?;
            let problem = if !matches!(url.scheme(), "http" | "https") {
                Some("its scheme is not https")
            } else if url.scheme() == "http" && !self.allow_http {
                Some("it is http:// but plain HTTP is not allowed")
            } else if !url.username().is_empty() || url.password().is_some() {
                Some("it contains credentials (use s3_access_key_id and s3_secret_access_key)")
            } else if url.host_str().is_none_or(str::is_empty) {
                Some("it has no host")
            } else if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
                Some("it has a path, query or fragment")
            } else {
                None
            };
            if let Some(problem) = problem {
                return Err(ObjectsError::config(format!(
                    "objects.s3_endpoint {:?} is invalid: {problem}; expected https://HOST[:PORT]",
                    hide_userinfo(endpoint)
                )));
            }
        }
        let region_ok = !self.region.is_empty()
            && self
                .region
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !region_ok {
            return Err(ObjectsError::config(format!(
                "objects.s3_region {:?} is invalid: expected letters, digits, '-' and '_', like \
                 us-east-1 or cn-hangzhou",
                self.region
            )));
        }
        if self.access_key_id.is_empty()
            || !self.access_key_id.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(ObjectsError::config(
                "objects.s3_access_key_id is empty or has spaces or control characters",
            ));
        }
        if self.secret_access_key.expose().is_empty() {
            return Err(ObjectsError::config(
                "objects.s3_secret_access_key is empty",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn s3() -> ObjectsSettings {
        ObjectsSettings {
            url: "s3://bucket/prefix".into(),
            s3_endpoint: Some("https://s3.oss-cn-hangzhou.aliyuncs.com".into()),
            s3_region: Some("cn-hangzhou".into()),
            s3_access_key_id: Some("LTAIkey".into()),
            s3_secret_access_key: Some("very-secret".into()),
            ..ObjectsSettings::default()
        }
    }

    #[test]
    fn defaults_are_a_local_directory_and_an_hour() {
        let s: ObjectsSettings = toml::from_str("").unwrap();
        assert_eq!(s, ObjectsSettings::default());
        assert_eq!(
            s.objects_url().unwrap(),
            ObjectsUrl::File {
                path: "gpdiag-data/objects".into()
            }
        );
        assert_eq!(s.link_ttl().unwrap(), Duration::from_secs(3600));
        assert!(s.s3_settings(no_env).unwrap().is_none());
    }

    #[test]
    fn a_full_s3_table_parses() {
        let s: ObjectsSettings = toml::from_str(
            r#"
            url = "s3://gpdiag-test/exports"
            link_ttl_seconds = 600
            s3_endpoint = "http://127.0.0.1:3900"
            s3_region = "garage"
            s3_access_key_id = "GK1"
            s3_secret_access_key = "env:THE_SECRET"
            s3_path_style = true
            "#,
        )
        .unwrap();
        let env = |v: &str| (v == "THE_SECRET").then(|| "s3cr3t".to_string());
        let s3 = s.s3_settings(env).unwrap().unwrap();
        assert_eq!(s3.secret_access_key.expose(), "s3cr3t");
        assert!(s3.allow_http && s3.path_style);
        assert_eq!(s3.region, "garage");
        let debug = format!("{s3:?}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
        let e = s.s3_settings(no_env).unwrap_err().to_string();
        assert!(e.contains("THE_SECRET"), "{e}");
    }

    #[test]
    fn unknown_keys_are_errors() {
        assert!(toml::from_str::<ObjectsSettings>("s3_bucket = \"x\"").is_err());
        let mut s = ObjectsSettings::default();
        assert!(s.set("nope", "1").is_err());
        s.set("s3_path_style", "true").unwrap();
        assert!(s.s3_path_style);
        assert!(s.set("s3_path_style", "yes please").is_err());
        s.set("link_ttl_seconds", "60").unwrap();
        assert_eq!(s.link_ttl_seconds, 60);
    }

    #[test]
    fn the_link_ttl_is_bounded() {
        let mut s = ObjectsSettings::default();
        for (ttl, ok) in [(0, false), (1, true), (604_800, true), (604_801, false)] {
            s.link_ttl_seconds = ttl;
            assert_eq!(s.link_ttl().is_ok(), ok, "{ttl}");
        }
    }

    #[test]
    fn s3_settings_need_credentials_and_a_sane_endpoint() {
        let mut s = s3();
        s.s3_access_key_id = None;
        assert!(s.validate(no_env).is_err());
        let mut s = s3();
        s.s3_secret_access_key = None;
        assert!(s.validate(no_env).is_err());
        for endpoint in [
            "s3.oss-cn-hangzhou.aliyuncs.com",
            "ftp://x",
            "http://plain.example",
            "https://user:very-secret@x.example",
            "https://x.example/path",
            "https://x.example/?q",
        ] {
            let mut s = s3();
            s.s3_endpoint = Some(endpoint.into());
            // http:// is allowed when written so: the operator's explicit choice.
            if endpoint.starts_with("http://") {
                assert!(s.validate(no_env).is_ok());
                continue;
            }
            let e = s.validate(no_env).unwrap_err().to_string();
            assert!(!e.contains("very-secret"), "{e}");
        }
        let mut s = s3();
        s.s3_region = Some("cn hangzhou".into());
        assert!(s.validate(no_env).is_err());
        let mut s = s3();
        s.s3_endpoint = None;
        s.s3_region = None;
        let s3 = s.s3_settings(no_env).unwrap().unwrap();
        assert_eq!(s3.region, DEFAULT_REGION);
        assert!(!s3.allow_http);
    }

    #[test]
    fn s3_keys_with_a_file_url_are_errors() {
        let mut s = ObjectsSettings {
            s3_region: Some("garage".into()),
            ..ObjectsSettings::default()
        };
        let e = s.validate(no_env).unwrap_err().to_string();
        assert!(e.contains("s3_region"), "{e}");
        s.s3_region = None;
        s.validate(no_env).unwrap();
    }

    #[test]
    fn debug_hides_an_inline_secret_but_shows_the_variable() {
        let s = s3();
        let debug = format!("{s:?}");
        assert!(!debug.contains("very-secret"), "{debug}");
        let mut s = s3();
        s.s3_secret_access_key = Some("env:MY_VAR".into());
        assert!(format!("{s:?}").contains("env:MY_VAR"));
    }
}
