//! Signed, expiring download links for files the server serves itself (`file://` objects):
//! `/downloads/<task>/<file>?Expires=<unix seconds>&Signature=<hex HMAC-SHA256>`. The key
//! lives in the store, so every process sharing it issues and accepts the same links.

use chrono::{DateTime, Utc};
use gpdiag_core::Secret;
use gpdiag_wire::encode::percent_encode;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The name under which the store keeps the link key.
pub const LINK_KEY_SETTING: &str = "download_link_key";

pub struct LinkSigner {
    key: Secret,
    public_url: String,
}

#[derive(Debug, PartialEq, Eq)]
pub enum LinkError {
    Malformed,
    Expired,
    BadSignature,
}

impl LinkSigner {
    pub fn new(key: Secret, public_url: &str) -> Self {
        Self {
            key,
            public_url: public_url.trim_end_matches('/').to_owned(),
        }
    }

    fn mac(&self, task_id: i64, file_name: &str, expires: i64) -> Hmac<Sha256> {
        // Any key length is valid for HMAC.
        let mut mac = Hmac::<Sha256>::new_from_slice(self.key.expose().as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        // Newlines separate the fields, and neither an ID nor a file name can contain one.
        mac.update(format!("{task_id}\n{file_name}\n{expires}").as_bytes());
        mac
    }

    /// A link valid until `expires`.
    pub fn url(&self, task_id: i64, file_name: &str, expires: DateTime<Utc>) -> String {
        let expires = expires.timestamp();
        let signature = hex::encode(
            self.mac(task_id, file_name, expires)
                .finalize()
                .into_bytes(),
        );
        format!(
            "{}/downloads/{task_id}/{}?Expires={expires}&Signature={signature}",
            self.public_url,
            percent_encode(file_name)
        )
    }

    /// Checks a link's expiry and signature, the signature in constant time.
    pub fn verify(
        &self,
        task_id: i64,
        file_name: &str,
        expires: &str,
        signature: &str,
        now: DateTime<Utc>,
    ) -> Result<(), LinkError> {
        let expires: i64 = expires.parse().map_err(|_| LinkError::Malformed)?;
        let signature = hex::decode(signature).map_err(|_| LinkError::Malformed)?;
        self.mac(task_id, file_name, expires)
            .verify_slice(&signature)
            .map_err(|_| LinkError::BadSignature)?;
        if now.timestamp() >= expires {
            return Err(LinkError::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn parts(url: &str) -> (String, String) {
        let query = url.split_once('?').unwrap().1;
        let get = |k: &str| {
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
                .unwrap()
                .to_owned()
        };
        (get("Expires"), get("Signature"))
    }

    #[test]
    fn links_verify_until_they_expire() {
        let signer = LinkSigner::new(Secret::new("k"), "http://h:1/");
        let now = Utc::now();
        let url = signer.url(7, "a b.csv", now + Duration::hours(1));
        assert!(
            url.starts_with("http://h:1/downloads/7/a%20b.csv?Expires="),
            "{url}"
        );
        let (expires, signature) = parts(&url);
        assert_eq!(
            signer.verify(7, "a b.csv", &expires, &signature, now),
            Ok(())
        );
        assert_eq!(
            signer.verify(7, "a b.csv", &expires, &signature, now + Duration::hours(2)),
            Err(LinkError::Expired)
        );
    }

    #[test]
    fn any_change_breaks_the_signature() {
        let signer = LinkSigner::new(Secret::new("k"), "http://h");
        let now = Utc::now();
        let (expires, signature) = parts(&signer.url(7, "f.csv", now + Duration::hours(1)));
        let later = (expires.parse::<i64>().unwrap() + 3600).to_string();
        assert_eq!(
            signer.verify(8, "f.csv", &expires, &signature, now),
            Err(LinkError::BadSignature)
        );
        assert_eq!(
            signer.verify(7, "g.csv", &expires, &signature, now),
            Err(LinkError::BadSignature)
        );
        assert_eq!(
            signer.verify(7, "f.csv", &later, &signature, now),
            Err(LinkError::BadSignature)
        );
        let other = LinkSigner::new(Secret::new("other"), "http://h");
        assert_eq!(
            other.verify(7, "f.csv", &expires, &signature, now),
            Err(LinkError::BadSignature)
        );
        assert_eq!(
            signer.verify(7, "f.csv", "soon", &signature, now),
            Err(LinkError::Malformed)
        );
        assert_eq!(
            signer.verify(7, "f.csv", &expires, "zz", now),
            Err(LinkError::Malformed)
        );
    }
}
