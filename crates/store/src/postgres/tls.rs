//! TLS for every PostgreSQL connection gpdiag makes: the store's pool and its query cancels,
//! and the collectors' samplers (through `gpdiag_store::pg_tls`). rustls with the `ring`
//! provider, and libpq's meaning of the connection string:
//!
//! | `sslmode` | TLS | the server's certificate |
//! |---|---|---|
//! | `disable` | never | — |
//! | `allow`, `prefer` (the default) | when the server offers it | not checked, unless `sslrootcert` is given (then its chain is) |
//! | `require` | always | not checked, unless `sslrootcert` is given (then its chain is) |
//! | `verify-ca` | always | signed by a CA in `sslrootcert` |
//! | `verify-full` | always | signed by a CA in `sslrootcert` and issued for the host name |
//!
//! `sslrootcert=PATH` is a PEM file of CA certificates; `sslrootcert=system` trusts the
//! system's store and needs `verify-full` (its default), as in libpq 16. `allow` tries TLS
//! first (libpq tries it second). tokio-postgres knows only `disable`, `prefer` and
//! `require`, so [`PgDsn::parse`] takes `sslmode` and `sslrootcert` out of the string before
//! handing it over, in both the URL and the key=value form. Nothing here ever prints the
//! string itself (it may hold a password): errors name parameters and file paths only, and
//! [`redact`] is the way to show a DSN.

pub use super::describe;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, WebPkiServerVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, OtherError, RootCertStore,
    SignatureScheme,
};
use std::ops::Range;
use std::str::FromStr;
use std::sync::Arc;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq parameters about TLS that gpdiag does not implement: refused by name rather than
/// left to tokio-postgres's "unknown option".
const UNSUPPORTED: &[&str] = &["sslcert", "sslkey", "sslpassword", "sslcrl", "sslcrldir"];

/// What `sslmode` asks for, with libpq's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    fn driver(self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode as Driver;
        match self {
            SslMode::Disable => Driver::Disable,
            SslMode::Allow | SslMode::Prefer => Driver::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => Driver::Require,
        }
    }
}

impl FromStr for SslMode {
    type Err = DsnError;

    fn from_str(s: &str) -> Result<Self, DsnError> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(DsnError(format!(
                    "sslmode {other:?} is not one of disable, allow, prefer, require, \
                     verify-ca, verify-full"
                )))
            }
        })
    }
}

/// Why a connection string cannot be used. The message never contains the string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DsnError(String);

/// How the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// Any certificate (the handshake still proves the server holds its key).
    None,
    /// Signed by a trusted CA, for whatever name.
    Chain,
    /// Signed by a trusted CA and issued for the host connected to.
    Full,
}

/// A connection string made ready: the driver's configuration and the TLS it needs.
pub struct PgDsn {
    pub config: tokio_postgres::Config,
    pub tls: TlsConnector,
    pub ssl_mode: SslMode,
    pub verification: Verification,
}

impl PgDsn {
    /// Parses a `postgres://` URL or a key=value string with libpq's TLS semantics, reading
    /// `sslrootcert` now, so a missing or bad file is an error at start-up.
    pub fn parse(dsn: &str) -> Result<PgDsn, DsnError> {
        let split = split(dsn)?;
        let mut config = tokio_postgres::Config::from_str(&split.rest)
            // The driver's messages name options, never their values.
            .map_err(|e| DsnError(format!("invalid connection string: {}", describe(&e))))?;
        let root = split.root_cert.as_deref().map(|r| {
            if r == "system" {
                Roots::System
            } else {
                Roots::File(r.to_owned())
            }
        });
        let ssl_mode = match (split.ssl_mode, &root) {
            (None, Some(Roots::System)) => SslMode::VerifyFull,
            (Some(mode), Some(Roots::System)) if mode != SslMode::VerifyFull => {
                return Err(DsnError(format!(
                    "sslmode={} cannot be used with sslrootcert=system (use verify-full)",
                    mode.as_str()
                )))
            }
            (mode, _) => mode.unwrap_or(SslMode::Prefer),
        };
        let verification = match (ssl_mode, root.is_some()) {
            (SslMode::Disable, _) => Verification::None,
            (SslMode::VerifyCa | SslMode::VerifyFull, false) => return Err(no_root_cert(ssl_mode)),
            (SslMode::VerifyFull, true) => Verification::Full,
            (_, true) => Verification::Chain,
            (_, false) => Verification::None,
        };
        if ssl_mode != SslMode::Disable
            && config.get_hosts().is_empty()
            && !config.get_hostaddrs().is_empty()
        {
            // tokio-postgres takes the TLS server name from `host` only, and refuses a
            // handshake without one; libpq uses no name unless it has to check it.
            if verification == Verification::Full {
                return Err(DsnError(
                    "sslmode=verify-full needs host=NAME, the name the server's certificate \
                     must carry (hostaddr alone gives none)"
                        .into(),
                ));
            }
            for addr in config.get_hostaddrs().to_vec() {
                config.host(addr.to_string());
            }
        }
        let check = match (&root, verification) {
            (Some(root), Verification::Chain) => Check::Chain(Arc::new(root.load()?)),
            (Some(root), Verification::Full) => Check::Full(
                WebPkiServerVerifier::builder_with_provider(Arc::new(root.load()?), provider())
                    .build()
                    .map_err(|e| DsnError(format!("cannot set up TLS: {e}")))?,
            ),
            _ => Check::Nothing,
        };
        let trusted = match &root {
            Some(Roots::File(path)) => format!("sslrootcert {path}"),
            Some(Roots::System) => "the system's trust store".to_owned(),
            None => String::new(),
        };
        let unix_only = !config.get_hosts().is_empty()
            && config
                .get_hosts()
                .iter()
                .all(|h| !matches!(h, tokio_postgres::config::Host::Tcp(_)));
        if unix_only {
            // PostgreSQL never offers TLS on a Unix socket, and libpq does not ask there.
            config.ssl_mode(tokio_postgres::config::SslMode::Disable);
        } else {
            config.ssl_mode(ssl_mode.driver());
        }
        Ok(PgDsn {
            config,
            tls: TlsConnector::new(check, trusted)?,
            ssl_mode,
            verification,
        })
    }
}

fn no_root_cert(mode: SslMode) -> DsnError {
    DsnError(format!(
        "sslmode={} needs sslrootcert=PATH, a PEM file of the certificate authorities to trust \
         (or sslrootcert=system); gpdiag does not read ~/.postgresql/root.crt",
        mode.as_str()
    ))
}

enum Roots {
    File(String),
    System,
}

impl Roots {
    fn load(&self) -> Result<RootCertStore, DsnError> {
        let mut store = RootCertStore::empty();
        match self {
            Roots::File(path) => {
                let bytes = std::fs::read(path)
                    .map_err(|e| DsnError(format!("cannot read sslrootcert {path}: {e}")))?;
                let certs = CertificateDer::pem_slice_iter(&bytes)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| DsnError(format!("sslrootcert {path} is not valid PEM: {e}")))?;
                if certs.is_empty() {
                    return Err(DsnError(format!(
                        "sslrootcert {path} holds no certificate (expected PEM \
                         \"BEGIN CERTIFICATE\" blocks)"
                    )));
                }
                for cert in certs {
                    store.add(cert).map_err(|e| {
                        DsnError(format!(
                            "sslrootcert {path} holds a certificate that cannot be trusted: {e}"
                        ))
                    })?;
                }
            }
            Roots::System => {
                let found = rustls_native_certs::load_native_certs();
                let (added, _) = store.add_parsable_certificates(found.certs);
                if added == 0 {
                    let why: Vec<String> = found.errors.iter().map(|e| e.to_string()).collect();
                    return Err(DsnError(format!(
                        "sslrootcert=system: the system's trust store has no usable \
                         certificate{}",
                        if why.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", why.join("; "))
                        }
                    )));
                }
            }
        }
        Ok(store)
    }
}

/// *ring*, as the rest of the workspace's rustls uses (object storage): quick to build, no C
/// tool chain. rustls 0.23.48 deprecated it for lacking post-quantum key exchange, which
/// PostgreSQL servers (OpenSSL before 3.5) do not offer anyway; moving to aws-lc-rs is a
/// change of this one function and the `ring` features in the workspace manifest.
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The TLS side of a connection, for `Config::connect`, deadpool's `Manager` and
/// `CancelToken::cancel_query`. Cheap to clone.
#[derive(Clone)]
pub struct TlsConnector(MakeRustlsConnect);

impl TlsConnector {
    fn new(check: Check, trusted: String) -> Result<TlsConnector, DsnError> {
        let provider = provider();
        let algorithms = provider.signature_verification_algorithms;
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| DsnError(format!("cannot set up TLS: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Verifier {
                check,
                trusted,
                algorithms,
            }))
            .with_no_client_auth();
        // As libpq 17 does; a server that does not know ALPN ignores it.
        config.alpn_protocols = vec![b"postgresql".to_vec()];
        Ok(TlsConnector(MakeRustlsConnect::new(config)))
    }
}

impl<S> MakeTlsConnect<S> for TlsConnector
where
    MakeRustlsConnect: MakeTlsConnect<S>,
{
    type Stream = <MakeRustlsConnect as MakeTlsConnect<S>>::Stream;
    type TlsConnect = <MakeRustlsConnect as MakeTlsConnect<S>>::TlsConnect;
    type Error = <MakeRustlsConnect as MakeTlsConnect<S>>::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<Self::TlsConnect, Self::Error> {
        self.0.make_tls_connect(domain)
    }
}

/// What is checked of the server's certificate.
#[derive(Debug)]
enum Check {
    /// Nothing (`require` and weaker without `sslrootcert`).
    Nothing,
    /// Its chain up to these roots, not its name (`verify-ca`, or weaker with `sslrootcert`).
    Chain(Arc<RootCertStore>),
    /// Chain and name, as any TLS client does (`verify-full`).
    Full(Arc<WebPkiServerVerifier>),
}

/// Checks the server's certificate as libpq would for the `sslmode`, and says which roots
/// did not vouch for it. Handshake signatures are always verified, so the server proves it
/// holds the certificate's key whatever is checked of the certificate.
#[derive(Debug)]
struct Verifier {
    check: Check,
    /// Where the roots come from, for messages.
    trusted: String,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = match &self.check {
            Check::Nothing => return Ok(ServerCertVerified::assertion()),
            Check::Chain(roots) => ParsedCertificate::try_from(end_entity)
                .and_then(|cert| {
                    verify_server_cert_signed_by_trust_anchor(
                        &cert,
                        roots,
                        intermediates,
                        now,
                        self.algorithms.all,
                    )
                })
                .map(|()| ServerCertVerified::assertion()),
            Check::Full(webpki) => webpki.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            ),
        };
        verified.map_err(|e| match e {
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
                rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(
                    Untrusted(format!(
                        "no certificate authority in {} issued it (UnknownIssuer)",
                        self.trusted
                    )),
                ))))
            }
            e => e,
        })
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[derive(Debug)]
struct Untrusted(String);

impl std::fmt::Display for Untrusted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Untrusted {}

/// The DSN shown with every password replaced by `***` (the URL's user and password, any
/// `password` parameter); a string that cannot be read is not shown at all.
pub fn redact(dsn: &str) -> String {
    let Ok(parsed) = Parsed::new(dsn) else {
        return "(an unreadable connection string)".into();
    };
    let mut out = String::with_capacity(dsn.len());
    let mut at = 0;
    let mut hide = |range: &Range<usize>, with: &str, out: &mut String| {
        out.push_str(&dsn[at..range.start]);
        out.push_str(with);
        at = range.end;
    };
    if let Some(userinfo) = &parsed.userinfo {
        hide(userinfo, "***", &mut out);
    }
    for param in parsed.params.iter().filter(|p| p.key == "password") {
        let with = if parsed.url {
            "password=***"
        } else {
            "password='***'"
        };
        hide(&param.span, with, &mut out);
    }
    out.push_str(&dsn[at..]);
    out
}

/// Every password the DSN carries, as written and decoded, to scrub from driver messages.
pub(crate) fn passwords(dsn: &str) -> Vec<String> {
    let Ok(parsed) = Parsed::new(dsn) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Some((_, password)) = parsed.userinfo.and_then(|u| {
        dsn[u]
            .split_once(':')
            .map(|(u, p)| (u.to_owned(), p.to_owned()))
    }) {
        out.push(percent_decode(&password));
        out.push(password);
    }
    for param in parsed.params.into_iter().filter(|p| p.key == "password") {
        out.push(dsn[param.span][param.raw_value_offset..].to_owned());
        out.push(param.value);
    }
    out.retain(|p| !p.is_empty());
    out
}

/// The DSN without `sslmode` and `sslrootcert`, and their values.
struct Split {
    rest: String,
    ssl_mode: Option<SslMode>,
    root_cert: Option<String>,
}

fn split(dsn: &str) -> Result<Split, DsnError> {
    let mut keys = vec!["sslmode", "sslrootcert"];
    keys.extend_from_slice(UNSUPPORTED);
    let (rest, taken) = take_params(dsn, &keys);
    let (mut ssl_mode, mut root_cert) = (None, None);
    for (key, value) in taken {
        match key.as_str() {
            // As in libpq, the last one wins.
            "sslmode" => ssl_mode = Some(value.parse()?),
            "sslrootcert" => root_cert = Some(value),
            _ => {
                return Err(DsnError(format!(
                    "{key} is not supported: gpdiag uses no client certificates or \
                     revocation lists"
                )))
            }
        }
    }
    Ok(Split {
        rest,
        ssl_mode,
        root_cert,
    })
}

/// The DSN without the parameters named in `keys`, and those (decoded, in order). A string
/// that cannot be read comes back whole, for the driver to say what is wrong with it.
pub(crate) fn take_params(dsn: &str, keys: &[&str]) -> (String, Vec<(String, String)>) {
    let Ok(parsed) = Parsed::new(dsn) else {
        return (dsn.to_owned(), Vec::new());
    };
    let mut taken = Vec::new();
    let mut kept = Vec::new();
    for param in parsed.params {
        if keys.contains(&param.key.as_str()) {
            taken.push((param.key, param.value));
        } else {
            kept.push(&dsn[param.span]);
        }
    }
    let rest = if parsed.url {
        let base = &dsn[..parsed.query_start.unwrap_or(dsn.len())];
        if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        }
    } else {
        kept.join(" ")
    };
    (rest, taken)
}

/// One `key=value` of a DSN: decoded key and value, and where the pair is in the string.
struct Param {
    key: String,
    value: String,
    span: Range<usize>,
    /// Where the value starts within the pair, as written.
    raw_value_offset: usize,
}

/// A DSN read the way tokio-postgres reads it, keeping positions.
struct Parsed {
    url: bool,
    /// The URL's `user:password` (before the first `@`).
    userinfo: Option<Range<usize>>,
    /// Where the URL's query string starts (its `?`).
    query_start: Option<usize>,
    params: Vec<Param>,
}

impl Parsed {
    fn new(dsn: &str) -> Result<Parsed, ()> {
        for prefix in ["postgres://", "postgresql://"] {
            if dsn.starts_with(prefix) {
                return Ok(Self::url(dsn, prefix.len()));
            }
        }
        Self::key_values(dsn)
    }

    /// tokio-postgres's URL rules: the credentials end at the first `@`, the query string
    /// starts at the first `?` after them, pairs are split at `&`, keys at the first `=`.
    fn url(dsn: &str, start: usize) -> Parsed {
        let mut userinfo = None;
        let mut host_start = start;
        if let Some(at) = dsn[start..].find('@') {
            userinfo = Some(start..start + at);
            host_start = start + at + 1;
        }
        let query_start = dsn[host_start..].find('?').map(|q| host_start + q);
        let mut params = Vec::new();
        if let Some(q) = query_start {
            let mut pos = q + 1;
            while pos < dsn.len() {
                let Some(eq) = dsn[pos..].find('=') else {
                    // tokio-postgres refuses it; keep it so the driver says so.
                    params.push(Param {
                        key: String::new(),
                        value: String::new(),
                        span: pos..dsn.len(),
                        raw_value_offset: 0,
                    });
                    break;
                };
                let value_start = pos + eq + 1;
                let end = dsn[value_start..]
                    .find('&')
                    .map_or(dsn.len(), |a| value_start + a);
                params.push(Param {
                    key: percent_decode(&dsn[pos..pos + eq]),
                    value: percent_decode(&dsn[value_start..end]),
                    span: pos..end,
                    raw_value_offset: eq + 1,
                });
                pos = end + 1;
            }
        }
        Parsed {
            url: true,
            userinfo,
            query_start,
            params,
        }
    }

    /// tokio-postgres's key=value rules: `key = value` separated by white space, values
    /// either bare or in single quotes, with `\` escaping the next character.
    fn key_values(dsn: &str) -> Result<Parsed, ()> {
        let bytes: Vec<(usize, char)> = dsn.char_indices().collect();
        let at = |i: usize| bytes.get(i).map_or(dsn.len(), |(b, _)| *b);
        let mut i = 0;
        let mut params = Vec::new();
        loop {
            while bytes.get(i).is_some_and(|(_, c)| c.is_whitespace()) {
                i += 1;
            }
            let key_start = i;
            while bytes
                .get(i)
                .is_some_and(|(_, c)| !c.is_whitespace() && *c != '=')
            {
                i += 1;
            }
            if i == key_start {
                break;
            }
            let key = dsn[at(key_start)..at(i)].to_owned();
            while bytes.get(i).is_some_and(|(_, c)| c.is_whitespace()) {
                i += 1;
            }
            if bytes.get(i).map(|(_, c)| *c) != Some('=') {
                return Err(());
            }
            i += 1;
            while bytes.get(i).is_some_and(|(_, c)| c.is_whitespace()) {
                i += 1;
            }
            let value_start = i;
            let mut value = String::new();
            if bytes.get(i).map(|(_, c)| *c) == Some('\'') {
                i += 1;
                loop {
                    match bytes.get(i).map(|(_, c)| *c) {
                        None => return Err(()),
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some('\\') => {
                            if let Some((_, c)) = bytes.get(i + 1) {
                                value.push(*c);
                            }
                            i += 2;
                        }
                        Some(c) => {
                            value.push(c);
                            i += 1;
                        }
                    }
                }
            } else {
                while let Some((_, c)) = bytes.get(i).filter(|(_, c)| !c.is_whitespace()) {
                    if *c == '\\' {
                        if let Some((_, c)) = bytes.get(i + 1) {
                            value.push(*c);
                        }
                        i += 2;
                    } else {
                        value.push(*c);
                        i += 1;
                    }
                }
                if value.is_empty() {
                    return Err(());
                }
            }
            let i_end = i.min(bytes.len());
            params.push(Param {
                key,
                value,
                span: at(key_start)..at(i_end),
                raw_value_offset: at(value_start) - at(key_start),
            });
            i = i_end;
        }
        Ok(Parsed {
            url: false,
            userinfo: None,
            query_start: None,
            params,
        })
    }
}

/// A DSN part with `%XX` decoded, as tokio-postgres decodes URLs.
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_postgres::config::SslMode as Driver;

    fn parse(dsn: &str) -> Result<PgDsn, DsnError> {
        PgDsn::parse(dsn)
    }

    fn err(dsn: &str) -> String {
        match parse(dsn) {
            Ok(_) => panic!("{dsn} was accepted"),
            Err(e) => e.to_string(),
        }
    }

    /// A PEM file with one self-signed CA certificate, and the directory holding it.
    fn ca_file() -> (tempfile::TempDir, String) {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, cert.pem()).unwrap();
        let path = path.to_str().unwrap().to_owned();
        (dir, path)
    }

    #[test]
    fn url_sslmodes_map_to_the_driver_and_leave_the_rest_alone() {
        for (mode, driver) in [
            ("disable", Driver::Disable),
            ("allow", Driver::Prefer),
            ("prefer", Driver::Prefer),
            ("require", Driver::Require),
        ] {
            let dsn = parse(&format!(
                "postgres://mon:pw@db.example:6432/gp?sslmode={mode}&application_name=x"
            ))
            .unwrap();
            assert_eq!(dsn.config.get_ssl_mode(), driver, "{mode}");
            assert_eq!(dsn.ssl_mode.as_str(), mode);
            assert_eq!(dsn.verification, Verification::None);
            assert_eq!(dsn.config.get_user(), Some("mon"));
            assert_eq!(dsn.config.get_password(), Some(&b"pw"[..]));
            assert_eq!(dsn.config.get_dbname(), Some("gp"));
            assert_eq!(dsn.config.get_ports(), [6432]);
            assert_eq!(dsn.config.get_application_name(), Some("x"));
        }
        // libpq's default, and the driver's.
        let dsn = parse("postgres://db.example/gp").unwrap();
        assert_eq!(dsn.ssl_mode, SslMode::Prefer);
        assert_eq!(dsn.config.get_ssl_mode(), Driver::Prefer);
    }

    #[test]
    fn verify_modes_and_sslrootcert_in_both_forms() {
        let (_dir, ca) = ca_file();
        let encoded = ca.replace('/', "%2F");
        for dsn in [
            format!("postgres://h/db?sslmode=verify-full&sslrootcert={encoded}"),
            format!("postgresql://u@h/db?sslrootcert={ca}&sslmode=verify-full"),
            format!("host=h dbname=db sslmode=verify-full sslrootcert={ca}"),
            format!("host=h sslmode = 'verify-full'  sslrootcert = '{ca}' user=u"),
        ] {
            let parsed = parse(&dsn).unwrap();
            assert_eq!(parsed.ssl_mode, SslMode::VerifyFull, "{dsn}");
            assert_eq!(parsed.verification, Verification::Full, "{dsn}");
            assert_eq!(parsed.config.get_ssl_mode(), Driver::Require, "{dsn}");
        }
        let ca_only = parse(&format!("host=h sslmode=verify-ca sslrootcert={ca}")).unwrap();
        assert_eq!(ca_only.verification, Verification::Chain);
        // libpq checks the chain whenever it has a root certificate, and never with disable.
        let require = parse(&format!("postgres://h/db?sslmode=require&sslrootcert={ca}")).unwrap();
        assert_eq!(require.verification, Verification::Chain);
        let prefer = parse(&format!("host=h sslrootcert={ca}")).unwrap();
        assert_eq!(prefer.verification, Verification::Chain);
        let disable = parse("host=h sslmode=disable sslrootcert=/nonexistent/ca.pem").unwrap();
        assert_eq!(disable.verification, Verification::None);
        // The system's store makes verify-full the default (libpq 16).
        match parse("host=h sslrootcert=system") {
            Ok(system) => assert_eq!(
                (system.ssl_mode, system.verification),
                (SslMode::VerifyFull, Verification::Full)
            ),
            Err(e) => assert!(e.to_string().contains("system's trust store"), "{e}"),
        }
        // The last occurrence wins, as in libpq.
        let twice = parse("host=h sslmode=verify-full sslmode=require").unwrap();
        assert_eq!(twice.ssl_mode, SslMode::Require);
    }

    #[test]
    fn the_rest_of_the_string_reaches_the_driver_unchanged() {
        let split = split("postgres://u:p%40ss@h:5/db?sslmode=require&connect_timeout=3").unwrap();
        assert_eq!(split.rest, "postgres://u:p%40ss@h:5/db?connect_timeout=3");
        let split = split_of("postgres://u@h/db?sslrootcert=%2Ftmp%2Fca.pem&sslmode=verify-ca");
        assert_eq!(
            (split.rest.as_str(), split.root_cert.as_deref()),
            ("postgres://u@h/db", Some("/tmp/ca.pem"))
        );
        // A '?' in the password is not the query string.
        let split = split_of("postgres://u:a?b@h/db?sslmode=disable");
        assert_eq!(split.rest, "postgres://u:a?b@h/db");
        assert_eq!(split.ssl_mode, Some(SslMode::Disable));
        let split = split_of(r"host=h password='it\'s' sslrootcert='/a b/c\'d.pem' user=x");
        assert_eq!(split.rest, r"host=h password='it\'s' user=x");
        assert_eq!(split.root_cert.as_deref(), Some("/a b/c'd.pem"));
        let split = split_of(r"sslmode=require host=h port=1 dbname=a\ b");
        assert_eq!(split.rest, r"host=h port=1 dbname=a\ b");
        let config = tokio_postgres::Config::from_str(&split.rest).unwrap();
        assert_eq!(config.get_dbname(), Some("a b"));
    }

    fn split_of(dsn: &str) -> Split {
        split(dsn).unwrap_or_else(|e| panic!("{dsn}: {e}"))
    }

    #[test]
    fn bad_settings_are_clear_errors_without_the_password() {
        let bad_mode = err("postgres://u:s3cret@h/db?sslmode=verify_full");
        assert!(
            bad_mode.contains("sslmode \"verify_full\" is not one of"),
            "{bad_mode}"
        );
        let bad_mode = err("host=h password=s3cret sslmode=on");
        assert!(bad_mode.contains("\"on\""), "{bad_mode}");
        let missing = err("postgres://u:s3cret@h/db?sslmode=verify-full&sslrootcert=/nope/ca.pem");
        assert!(
            missing.contains("cannot read sslrootcert /nope/ca.pem"),
            "{missing}"
        );
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let none = err(&format!(
            "host=h password=s3cret sslmode=verify-ca sslrootcert={}",
            empty.display()
        ));
        assert!(none.contains("holds no certificate"), "{none}");
        let garbled = dir.path().join("garbled.pem");
        std::fs::write(
            &garbled,
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let garbled = err(&format!(
            "host=h password=s3cret sslmode=require sslrootcert={}",
            garbled.display()
        ));
        assert!(garbled.contains("is not valid PEM"), "{garbled}");
        let needs_root = err("postgres://u:s3cret@h/db?sslmode=verify-ca");
        assert!(
            needs_root.contains("needs sslrootcert=PATH"),
            "{needs_root}"
        );
        let needs_root = err("host=h password=s3cret sslmode=verify-full");
        assert!(
            needs_root.contains("needs sslrootcert=PATH"),
            "{needs_root}"
        );
        let weak = err("host=h password=s3cret sslmode=require sslrootcert=system");
        assert!(weak.contains("use verify-full"), "{weak}");
        let client_cert = err("host=h password=s3cret sslcert=/c.pem sslkey=/k.pem");
        assert!(
            client_cert.contains("sslcert is not supported"),
            "{client_cert}"
        );
        let unknown = err("postgres://u:s3cret@h/db?sslmode=require&frobnicate=1");
        assert!(unknown.contains("unknown option `frobnicate`"), "{unknown}");
        let no_name = err("hostaddr=127.0.0.1 password=s3cret sslmode=verify-full \
                           sslrootcert=/x.pem");
        assert!(no_name.contains("needs host=NAME"), "{no_name}");
        for message in [
            bad_mode,
            missing,
            none,
            garbled,
            needs_root,
            weak,
            client_cert,
            unknown,
            no_name,
        ] {
            assert!(!message.contains("s3cret"), "{message}");
        }
    }

    #[test]
    fn hostaddr_alone_still_gets_a_name_for_the_handshake() {
        let dsn = parse("hostaddr=127.0.0.1 port=5 sslmode=require").unwrap();
        assert_eq!(
            dsn.config.get_hosts(),
            [tokio_postgres::config::Host::Tcp("127.0.0.1".into())]
        );
        let (_dir, ca) = ca_file();
        let full = err(&format!(
            "hostaddr=127.0.0.1 sslmode=verify-full sslrootcert={ca}"
        ));
        assert!(full.contains("needs host=NAME"), "{full}");
        let named = parse(&format!(
            "host=db.example hostaddr=127.0.0.1 sslmode=verify-full sslrootcert={ca}"
        ))
        .unwrap();
        assert_eq!(
            named.config.get_hosts(),
            [tokio_postgres::config::Host::Tcp("db.example".into())]
        );
    }

    #[test]
    fn unix_sockets_never_ask_for_tls() {
        let dsn = parse("host=/var/run/postgresql sslmode=require").unwrap();
        assert_eq!(dsn.config.get_ssl_mode(), Driver::Disable);
        let dsn = parse("postgres://u@%2Fvar%2Frun%2Fpostgresql/db?sslmode=require").unwrap();
        assert_eq!(dsn.config.get_ssl_mode(), Driver::Disable);
        let dsn = parse("host=/var/run/postgresql,db.example sslmode=require").unwrap();
        assert_eq!(dsn.config.get_ssl_mode(), Driver::Require);
    }

    #[test]
    fn redaction_hides_every_password_in_both_forms() {
        assert_eq!(
            redact("postgres://mon:s3cret@h:5432/db?sslmode=require"),
            "postgres://***@h:5432/db?sslmode=require"
        );
        assert_eq!(
            redact("postgresql://h/db?password=s3cret&sslmode=require"),
            "postgresql://h/db?password=***&sslmode=require"
        );
        assert_eq!(
            redact("host=h password='s3 cret' user=mon sslmode=verify-full"),
            "host=h password='***' user=mon sslmode=verify-full"
        );
        assert_eq!(redact("host=h password=s3cret"), "host=h password='***'");
        assert_eq!(redact("host=h user=mon"), "host=h user=mon");
        assert_eq!(
            redact("host=h password='s3cret"),
            "(an unreadable connection string)"
        );
        let mut found = passwords("postgres://u:p%40ss@h/db?password=two");
        found.sort();
        assert_eq!(found, ["p%40ss", "p@ss", "two", "two"]);
        let found = passwords(r"host=h password='it\'s'");
        assert_eq!(found, [r"'it\'s'", "it's"]);
    }
}
