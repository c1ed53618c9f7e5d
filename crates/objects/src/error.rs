//! `ObjectsError`: what went wrong with the object store, as a kind callers can branch on and a
//! human message that never carries a credential.

use std::fmt;

/// What kind of failure an [`ObjectsError`] is, so callers can answer differently: a store
/// that cannot be reached is worth a retry later, a bad key or configuration never is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ObjectsErrorKind {
    /// The `[objects]` settings are wrong (URL, endpoint, region, credentials missing, TTL).
    Config,
    /// The key breaks the key rules (see [`crate::validate_key`]).
    InvalidKey,
    /// A byte range outside the object.
    InvalidRange,
    /// No object at the key.
    NotFound,
    /// The store could not be reached: connection refused, DNS failure, timeout.
    Unreachable,
    /// The store refused the credentials or the permission (HTTP 401/403, file permissions).
    Denied,
    /// The upload was already finished, aborted or failed.
    Closed,
    /// Anything else the store answered or the disk reported.
    Failed,
}

/// An object-store failure. Its message names the operation, the key and the store (the
/// endpoint host at most) and never contains an access key or secret: every message built from
/// a store's answer goes through [`Redactor`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectsError {
    kind: ObjectsErrorKind,
    message: String,
}

impl ObjectsError {
    pub(crate) fn new(kind: ObjectsErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        Self::new(ObjectsErrorKind::Config, message)
    }

    pub fn kind(&self) -> ObjectsErrorKind {
        self.kind
    }

    /// True when the store could not be reached at all (as opposed to answering with an error).
    pub fn is_unreachable(&self) -> bool {
        self.kind == ObjectsErrorKind::Unreachable
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ObjectsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ObjectsError {}

/// Removes credentials from text that came from a store or a library. object_store never puts
/// the secret in its errors (SigV4 only sends an HMAC), but S3 error bodies echo the access key
/// id (`InvalidAccessKeyId`, `<AWSAccessKeyId>`), so both are scrubbed, whatever the source.
#[derive(Clone, Default)]
pub(crate) struct Redactor {
    words: Vec<String>,
}

impl Redactor {
    pub(crate) fn new(words: impl IntoIterator<Item = String>) -> Self {
        Self {
            words: words.into_iter().filter(|w| !w.is_empty()).collect(),
        }
    }

    pub(crate) fn clean(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for word in &self.words {
            if text.contains(word.as_str()) {
                text = text.replace(word.as_str(), "***");
            }
        }
        text
    }
}

/// Credentials never belong in a URL here (they have their own settings), but if someone puts
/// `user:secret@` there anyway, an error message must not repeat them.
pub(crate) fn hide_userinfo(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}***{}", &url[..scheme_end + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// Turns an object_store error into an [`ObjectsError`]: `what` says what was being done
/// ("uploading exports/a.csv to s3://bucket"), the kind comes from the error's variant and
/// source chain, and the detail is cut down to what helps an operator.
pub(crate) fn from_store(
    redactor: &Redactor,
    what: &str,
    error: &object_store::Error,
) -> ObjectsError {
    let kind = classify(error);
    let reason = match kind {
        ObjectsErrorKind::NotFound => "no such object",
        ObjectsErrorKind::Unreachable => "the object store is unreachable",
        ObjectsErrorKind::Denied => {
            "the object store refused access (check the access key, the secret, the region \
             and the bucket's permissions)"
        }
        _ => "the object store failed",
    };
    let detail = redactor.clean(&detail(error));
    ObjectsError::new(kind, format!("{what}: {reason}: {detail}"))
}

fn classify(error: &object_store::Error) -> ObjectsErrorKind {
    use object_store::Error as E;
    match error {
        E::NotFound { .. } => return ObjectsErrorKind::NotFound,
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => return ObjectsErrorKind::Denied,
        _ => {}
    }
    // The HTTP client's own classification, found anywhere in the source chain.
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(http) = e.downcast_ref::<object_store::client::HttpError>() {
            use object_store::client::HttpErrorKind as H;
            if matches!(http.kind(), H::Connect | H::Timeout) {
                return ObjectsErrorKind::Unreachable;
            }
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as I;
            match io.kind() {
                I::ConnectionRefused | I::ConnectionReset | I::TimedOut | I::NotConnected => {
                    return ObjectsErrorKind::Unreachable
                }
                I::PermissionDenied => return ObjectsErrorKind::Denied,
                _ => {}
            }
        }
        source = e.source();
    }
    ObjectsErrorKind::Failed
}

/// The error's own text, with an S3 XML error body cut to its `Code` and `Message`, and the
/// root cause appended when the text does not already say it ("Connection refused").
fn detail(error: &object_store::Error) -> String {
    let mut out = condense(&error.to_string());
    let mut root: &dyn std::error::Error = error;
    while let Some(next) = root.source() {
        root = next;
    }
    let root = condense(&root.to_string());
    if !out.contains(&root) {
        out.push_str(": ");
        out.push_str(&root);
    }
    // A HEAD's error has no body: "403 Forbidden: " would end in a dangling colon.
    out.trim_end_matches([':', ' ']).to_owned()
}

fn condense(text: &str) -> String {
    let head = || text.split('<').next().unwrap_or_default().trim_end();
    match (xml_element(text, "Code"), xml_element(text, "Message")) {
        (Some(code), Some(message)) => format!("{} {code}: {}", head(), unescape(message)),
        (Some(code), None) => format!("{} {code}", head()),
        _ => text.to_owned(),
    }
}

fn unescape(text: &str) -> String {
    text.replace("&apos;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

fn xml_element<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = text.find(&open)? + open.len();
    let end = start + text[start..].find(&close)?;
    Some(&text[start..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_removes_every_credential() {
        let r = Redactor::new(["GK123".to_owned(), "s3cr3t".to_owned(), String::new()]);
        assert_eq!(
            r.clean("key GK123 and s3cr3t, GK123"),
            "key *** and ***, ***"
        );
        assert_eq!(r.clean("nothing here"), "nothing here");
    }

    #[test]
    fn xml_bodies_are_cut_to_code_and_message() {
        let text = "Server returned non-2xx status code: 403 Forbidden: <?xml version=\"1.0\"?>\
                    <Error><Code>AccessDenied</Code><Message>Forbidden: bad</Message></Error>";
        assert_eq!(xml_element(text, "Code"), Some("AccessDenied"));
        assert_eq!(xml_element(text, "Message"), Some("Forbidden: bad"));
        assert_eq!(xml_element(text, "Resource"), None);
    }

    #[test]
    fn not_found_and_denied_are_told_apart() {
        let r = Redactor::default();
        let e = object_store::Error::NotFound {
            path: "a".into(),
            source: "gone".into(),
        };
        assert_eq!(from_store(&r, "x", &e).kind(), ObjectsErrorKind::NotFound);
        let e = object_store::Error::Generic {
            store: "S3",
            source: Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
        };
        let e = from_store(&r, "reading a", &e);
        assert!(e.is_unreachable(), "{e}");
        assert!(e
            .to_string()
            .starts_with("reading a: the object store is unreachable"));
    }
}
