//! Object keys: the one rule every key (and an `s3://` prefix) passes before it reaches a store.

use crate::error::{ObjectsError, ObjectsErrorKind};

/// S3's own limit on a key, prefix included.
pub const MAX_KEY_BYTES: usize = 1024;

/// Checks a key: relative (no leading `/`), no empty, `.` or `..` segments, at most
/// [`MAX_KEY_BYTES`], and only AWS's "safe characters" (`A-Z a-z 0-9 ! - _ . * ' ( )`) plus
/// `/` between segments.
///
/// Why so strict: the same key must mean the same object on every back end. `..` would escape
/// the directory on file://, `#` marks LocalFileSystem's staging files (`key#1`), `%` and `\`
/// are read differently by the local path mapping and by S3, and anything that needs
/// percent-encoding in a URL invites a presigned link that signs one name and fetches another.
pub fn validate_key(key: &str) -> Result<(), ObjectsError> {
    let bad = |why: &str| {
        Err(ObjectsError::new(
            ObjectsErrorKind::InvalidKey,
            format!("object key {:?} is invalid: {why}", shorten(key)),
        ))
    };
    if key.is_empty() {
        return bad("it is empty");
    }
    if key.len() > MAX_KEY_BYTES {
        return bad(&format!("it is longer than {MAX_KEY_BYTES} bytes"));
    }
    if key.starts_with('/') {
        return bad("it starts with '/' (keys are relative)");
    }
    if let Some(c) = key.chars().find(|c| !is_key_char(*c)) {
        return bad(&format!(
            "it contains {c:?}; keys use only A-Z a-z 0-9 ! - _ . * ' ( ) and '/'"
        ));
    }
    for segment in key.split('/') {
        match segment {
            "" => return bad("it has an empty segment ('//' or a trailing '/')"),
            "." | ".." => return bad("it has a '.' or '..' segment"),
            _ => {}
        }
    }
    Ok(())
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '!' | '-' | '_' | '.' | '*' | '\'' | '(' | ')' | '/')
}

/// Keys in messages are cut, so a huge or hostile key cannot flood a log line.
fn shorten(key: &str) -> String {
    const SHOWN: usize = 80;
    if key.chars().count() <= SHOWN {
        key.to_owned()
    } else {
        let head: String = key.chars().take(SHOWN).collect();
        format!("{head}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_keys_pass() {
        for key in [
            "a",
            "exports/acct-1/2024-01-01/gp-bp1(1)_x.csv",
            "A.b*c!d'e",
            "...a/b..",
        ] {
            validate_key(key).unwrap_or_else(|e| panic!("{key}: {e}"));
        }
    }

    #[test]
    fn bad_keys_fail() {
        for key in [
            "",
            "/abs",
            "a//b",
            "a/",
            "../x",
            "a/../b",
            "a/./b",
            ".",
            "a b",
            "a#1",
            "a%2e",
            "a\\b",
            "tab\there",
            "nul\0",
            "ünï",
            "a?b",
        ] {
            let e = validate_key(key).unwrap_err();
            assert_eq!(e.kind(), ObjectsErrorKind::InvalidKey, "{key:?}");
        }
        let long = "a".repeat(MAX_KEY_BYTES + 1);
        let e = validate_key(&long).unwrap_err();
        assert!(e.to_string().len() < 200, "{e}");
    }
}
