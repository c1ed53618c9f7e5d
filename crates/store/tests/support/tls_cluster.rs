//! A private PostgreSQL 15 (`gpdiag_testkit::PgCluster`) that starts without TLS and can then
//! be switched to TLS with a fresh certificate authority and a server certificate for
//! `localhost`, made here with rcgen. Shared by the store's TLS tests and the collector's
//! (crates/ingest/tests/collect_tls.rs includes this file by path).

#![allow(dead_code)]

use gpdiag_store::pg_tls::PgDsn;
use gpdiag_testkit::PgCluster;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;

/// The only name in the server's certificate.
pub const SERVER_NAME: &str = "localhost";

/// The cluster; stopped (and its directory removed) when dropped, even on panic.
pub struct TlsCluster {
    cluster: PgCluster,
    port: u16,
}

/// CA certificates in PEM files, for `sslrootcert`.
pub struct Pki {
    /// The CA that signed the server's certificate.
    pub ca: PathBuf,
    /// A CA that did not.
    pub other_ca: PathBuf,
}

impl TlsCluster {
    /// Starts a cluster of its own, without TLS.
    pub fn start() -> TlsCluster {
        let cluster = PgCluster::start("gpdiag-tls-", None);
        let port = cluster
            .url
            .rsplit_once(':')
            .and_then(|(_, rest)| rest.split('/').next())
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("no port in {:?}", cluster.url));
        TlsCluster { cluster, port }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://gpdiag@HOST:PORT/DATABASE`, then `?PARAMS` unless they are empty.
    pub fn url(&self, host: &str, database: &str, params: &str) -> String {
        let mut url = format!("postgres://gpdiag@{host}:{}/{database}", self.port);
        if !params.is_empty() {
            url.push('?');
            url.push_str(params);
        }
        url
    }

    /// Turns TLS on (`ssl = on`) with a new CA and a certificate for [`SERVER_NAME`] signed
    /// by it, and restarts the server.
    pub fn enable_tls(&self) -> Pki {
        let dir = self.cluster.dir().canonicalize().unwrap();
        let (ca, ca_pem) = certificate_authority("gpdiag test CA");
        let (_, other_pem) = certificate_authority("some other CA");
        let server_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![SERVER_NAME.to_owned()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "gpdiag test server");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = params.signed_by(&server_key, &ca).unwrap();

        let pki = Pki {
            ca: dir.join("ca.pem"),
            other_ca: dir.join("other-ca.pem"),
        };
        std::fs::write(&pki.ca, ca_pem).unwrap();
        std::fs::write(&pki.other_ca, other_pem).unwrap();
        let (cert_file, key_file) = (dir.join("server.crt"), dir.join("server.key"));
        std::fs::write(&cert_file, server_cert.pem()).unwrap();
        std::fs::write(&key_file, server_key.serialize_pem()).unwrap();
        // The server refuses a key that others can read, and must own it: when the tests run
        // as root, pg-cluster runs it as another user (the owner of the data directory).
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let owner = std::fs::metadata(dir.join("data")).unwrap();
        for file in [&cert_file, &key_file] {
            std::os::unix::fs::chown(file, Some(owner.uid()), Some(owner.gid()))
                .unwrap_or_else(|e| panic!("cannot hand {} to the server: {e}", file.display()));
        }
        std::fs::write(
            dir.join("extra.conf"),
            format!(
                "ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\n",
                cert_file.display(),
                key_file.display()
            ),
        )
        .unwrap();
        self.cluster.restart();
        pki
    }
}

/// A self-signed CA, and its certificate in PEM.
fn certificate_authority(name: &str) -> (CertifiedIssuer<'static, KeyPair>, String) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let pem = ca.pem();
    (ca, pem)
}

/// Connects the way gpdiag does (`pg_tls`), or says why not: the error and its causes.
pub async fn connect(dsn: &str) -> Result<tokio_postgres::Client, String> {
    let dsn = PgDsn::parse(dsn).map_err(|e| e.to_string())?;
    let (client, connection) = dsn
        .config
        .connect(dsn.tls)
        .await
        .map_err(|e| gpdiag_store::pg_tls::describe(&e))?;
    tokio::spawn(connection);
    Ok(client)
}

/// Whether this session is encrypted, as the server sees it.
pub async fn encrypted(client: &tokio_postgres::Client) -> bool {
    client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}
