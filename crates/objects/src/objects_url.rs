//! `ObjectsUrl`: the `[objects] url` string parsed once into where objects live.

use crate::error::{hide_userinfo, ObjectsError};
use crate::key::validate_key;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Where objects live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectsUrl {
    /// `file://PATH`: a directory on this machine (relative to the working directory unless
    /// PATH is absolute, as in `file:///var/lib/gpdiag/objects`); created when opened.
    File { path: PathBuf },
    /// `s3://BUCKET[/PREFIX]`: a bucket on an S3-compatible store, every key under PREFIX.
    S3 {
        bucket: String,
        prefix: Option<String>,
    },
}

impl FromStr for ObjectsUrl {
    type Err = ObjectsError;

    fn from_str(url: &str) -> Result<Self, ObjectsError> {
        let bad = |why: String| {
            ObjectsError::config(format!(
                "objects.url {:?} is invalid: {why}; expected file://PATH or \
                 s3://BUCKET[/PREFIX]",
                hide_userinfo(url)
            ))
        };
        if let Some(path) = url.strip_prefix("file://") {
            if path.is_empty() {
                return Err(bad("the path is empty".into()));
            }
            if path.contains('\0') {
                return Err(bad("the path contains a NUL byte".into()));
            }
            return Ok(ObjectsUrl::File { path: path.into() });
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = match rest.split_once('/') {
                Some((bucket, prefix)) => (bucket, Some(prefix.trim_end_matches('/'))),
                None => (rest, None),
            };
            if bucket.contains('@') {
                return Err(bad(
                    "credentials do not belong in the URL (use objects.s3_access_key_id and \
                     objects.s3_secret_access_key)"
                        .into(),
                ));
            }
            check_bucket(bucket).map_err(bad)?;
            let prefix = match prefix {
                None | Some("") => None,
                Some(prefix) => {
                    validate_key(prefix)
                        .map_err(|e| bad(format!("the prefix is not a valid key ({e})")))?;
                    Some(prefix.to_owned())
                }
            };
            return Ok(ObjectsUrl::S3 {
                bucket: bucket.to_owned(),
                prefix,
            });
        }
        Err(bad("unknown scheme".into()))
    }
}

/// S3's bucket naming rules (3–63 characters of `a-z 0-9 . -`, starting and ending with a
/// letter or digit), which OSS, MinIO and Garage share. Checked here so a typo fails at start,
/// not at the first export.
fn check_bucket(bucket: &str) -> Result<(), String> {
    if bucket.is_empty() {
        return Err("the bucket name is empty".into());
    }
    let ok_chars = bucket
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    let ok_ends = bucket
        .bytes()
        .next()
        .zip(bucket.bytes().last())
        .is_some_and(|(a, z)| a.is_ascii_alphanumeric() && z.is_ascii_alphanumeric());
    if !(3..=63).contains(&bucket.len()) || !ok_chars || !ok_ends || bucket.contains("..") {
        return Err(format!(
            "bucket name {bucket:?} is not valid (3-63 characters of a-z, 0-9, '.' and '-', \
             starting and ending with a letter or digit)"
        ));
    }
    Ok(())
}

impl fmt::Display for ObjectsUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ObjectsUrl::File { path } => write!(f, "file://{}", path.display()),
            ObjectsUrl::S3 {
                bucket,
                prefix: None,
            } => write!(f, "s3://{bucket}"),
            ObjectsUrl::S3 {
                bucket,
                prefix: Some(prefix),
            } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> ObjectsUrl {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn file_urls() {
        assert_eq!(
            parse("file://gpdiag-data/objects"),
            ObjectsUrl::File {
                path: "gpdiag-data/objects".into()
            }
        );
        assert_eq!(
            parse("file:///var/lib/x"),
            ObjectsUrl::File {
                path: "/var/lib/x".into()
            }
        );
        assert_eq!(parse("file:///var/lib/x").to_string(), "file:///var/lib/x");
        assert!("file://".parse::<ObjectsUrl>().is_err());
    }

    #[test]
    fn s3_urls() {
        assert_eq!(
            parse("s3://my-bucket"),
            ObjectsUrl::S3 {
                bucket: "my-bucket".into(),
                prefix: None
            }
        );
        assert_eq!(
            parse("s3://my-bucket/"),
            ObjectsUrl::S3 {
                bucket: "my-bucket".into(),
                prefix: None
            }
        );
        let url = parse("s3://my.bucket/gpdiag/exports/");
        assert_eq!(
            url,
            ObjectsUrl::S3 {
                bucket: "my.bucket".into(),
                prefix: Some("gpdiag/exports".into())
            }
        );
        assert_eq!(url.to_string(), "s3://my.bucket/gpdiag/exports");
    }

    #[test]
    fn bad_urls() {
        for url in [
            "",
            "/tmp/x",
            "http://x",
            "s3://",
            "s3://ab",
            "s3://Upper",
            "s3://-bucket",
            "s3://bucket-",
            "s3://a..b",
            "s3://bucket/../x",
            "s3://bucket/a//b",
            "s3://user:pw@bucket",
        ] {
            let e = url.parse::<ObjectsUrl>().unwrap_err();
            assert_eq!(e.kind(), crate::ObjectsErrorKind::Config, "{url}");
        }
        let e = "s3://user:pw@bucket".parse::<ObjectsUrl>().unwrap_err();
        assert!(!e.to_string().contains("pw"), "{e}");
    }
}
