//! HTTPS: a certificate from files (`--tls-cert`/`--tls-key`) or a self-signed one made
//! for the bind host (`--tls-self-signed`), served with rustls (ring provider).
//!
//! Several official Auth0 SDK entry points take only a *domain* and always call
//! `https://{domain}`; serving TLS lets them reach idlink unchanged once the client trusts
//! the certificate (`REQUESTS_CA_BUNDLE`/`SSL_CERT_FILE`, `NODE_EXTRA_CA_CERTS`, …).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// File name of the self-signed certificate, written beside the database.
pub const SELF_SIGNED_CERT_FILE: &str = "idlink-tls.crt";
/// File name of the self-signed certificate's private key (mode 0600).
pub const SELF_SIGNED_KEY_FILE: &str = "idlink-tls.key";

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the server's certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSettings {
    /// A PEM certificate chain and its PEM private key (PKCS#8, PKCS#1 or SEC1).
    Files { cert: PathBuf, key: PathBuf },
    /// A self-signed certificate for the bind host, created in `dir` on first start
    /// ([`SELF_SIGNED_CERT_FILE`], [`SELF_SIGNED_KEY_FILE`]) and reused afterwards.
    SelfSigned { dir: PathBuf },
}

/// A loaded TLS configuration.
#[derive(Clone)]
pub struct Tls {
    acceptor: TlsAcceptor,
    /// The certificate file in use (for clients to trust).
    pub cert_path: PathBuf,
    /// Whether [`load`] created the certificate just now.
    pub created: bool,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("cert_path", &self.cert_path)
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

/// Why TLS could not be set up.
pub type TlsError = Box<dyn std::error::Error + Send + Sync>;

/// The names a self-signed certificate for `local_addr` (and `extra_host`, the public
/// URL's host) is valid for: the bind host, plus the loopback names.
pub fn self_signed_names(local_addr: SocketAddr, extra_host: Option<&str>) -> Vec<String> {
    let mut names = Vec::new();
    let mut push = |name: String| {
        if !name.is_empty() && !names.contains(&name) {
            names.push(name);
        }
    };
    let ip = local_addr.ip();
    if !ip.is_unspecified() {
        push(ip.to_string());
    }
    if let Some(host) = extra_host {
        push(
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
        );
    }
    push("localhost".to_owned());
    push(IpAddr::from([127, 0, 0, 1]).to_string());
    push("::1".to_owned());
    names
}

/// Loads (or, for [`TlsSettings::SelfSigned`], creates or reuses) the certificate.
pub fn load(settings: &TlsSettings, names: &[String]) -> Result<Tls, TlsError> {
    let (cert_path, key_path, created) = match settings {
        TlsSettings::Files { cert, key } => (cert.clone(), key.clone(), false),
        TlsSettings::SelfSigned { dir } => {
            let cert = dir.join(SELF_SIGNED_CERT_FILE);
            let key = dir.join(SELF_SIGNED_KEY_FILE);
            let created = if cert.exists() && key.exists() {
                false
            } else {
                create_self_signed(&cert, &key, names)?;
                true
            };
            (cert, key, created)
        }
    };
    let chain = CertificateDer::pem_file_iter(&cert_path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read TLS certificate {}: {e}", cert_path.display()))?;
    if chain.is_empty() {
        return Err(format!("no certificate in {}", cert_path.display()).into());
    }
    crate::private_files::warn_if_readable_by_others(&key_path);
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .map_err(|e| format!("cannot read TLS key {}: {e}", key_path.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("invalid TLS certificate or key: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Tls {
        acceptor: TlsAcceptor::from(Arc::new(config)),
        cert_path,
        created,
    })
}

fn create_self_signed(cert_path: &Path, key_path: &Path, names: &[String]) -> Result<(), TlsError> {
    let mut params = rcgen::CertificateParams::new(names.to_vec())?;
    let mut subject = rcgen::DistinguishedName::new();
    subject.push(
        rcgen::DnType::CommonName,
        format!(
            "idlink self-signed ({})",
            names.first().map_or("", String::as_str)
        ),
    );
    params.distinguished_name = subject;
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    if let Some(dir) = cert_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    crate::private_files::write_private(key_path, key.serialize_pem().as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", key_path.display()))?;
    std::fs::write(cert_path, cert.pem())
        .map_err(|e| format!("cannot write {}: {e}", cert_path.display()))?;
    Ok(())
}

type Ready = (TlsStream<TcpStream>, SocketAddr);

/// An [`axum::serve::Listener`] that accepts TCP connections and hands out finished TLS
/// streams. Handshakes run in their own tasks, so a slow client never holds up others.
pub struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    ready_tx: mpsc::Sender<Ready>,
    ready_rx: mpsc::Receiver<Ready>,
}

impl std::fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsListener")
            .field("tcp", &self.tcp)
            .finish_non_exhaustive()
    }
}

impl TlsListener {
    /// Wraps a bound listener.
    pub fn new(tcp: TcpListener, tls: &Tls) -> Self {
        let (ready_tx, ready_rx) = mpsc::channel(64);
        Self {
            tcp,
            acceptor: tls.acceptor.clone(),
            ready_tx,
            ready_rx,
        }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            tokio::select! {
                Some(ready) = self.ready_rx.recv() => return ready,
                accepted = self.tcp.accept() => match accepted {
                    Ok((stream, addr)) => {
                        let acceptor = self.acceptor.clone();
                        let ready_tx = self.ready_tx.clone();
                        tokio::spawn(async move {
                            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                                Ok(Ok(tls)) => {
                                    let _ = ready_tx.send((tls, addr)).await;
                                }
                                Ok(Err(e)) => tracing::debug!(%addr, error = %e, "TLS handshake failed"),
                                Err(_) => tracing::debug!(%addr, "TLS handshake timed out"),
                            }
                        });
                    }
                    Err(e) => {
                        // Like axum's own TCP listener: back off on errors such as EMFILE.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cover_bind_host_and_loopback() {
        let addr: SocketAddr = "127.0.0.1:8443".parse().unwrap();
        assert_eq!(
            self_signed_names(addr, None),
            vec!["127.0.0.1", "localhost", "::1"]
        );
        let any: SocketAddr = "0.0.0.0:8443".parse().unwrap();
        assert_eq!(
            self_signed_names(any, Some("id.example.test")),
            vec!["id.example.test", "localhost", "127.0.0.1", "::1"]
        );
    }

    #[test]
    fn self_signed_is_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let settings = TlsSettings::SelfSigned {
            dir: dir.path().to_owned(),
        };
        let names = self_signed_names("127.0.0.1:0".parse().unwrap(), None);
        let first = load(&settings, &names).unwrap();
        assert!(first.created);
        let pem = std::fs::read_to_string(&first.cert_path).unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
        let second = load(&settings, &names).unwrap();
        assert!(!second.created);
        assert_eq!(std::fs::read_to_string(&second.cert_path).unwrap(), pem);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(SELF_SIGNED_KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn missing_files_are_reported() {
        let settings = TlsSettings::Files {
            cert: "/nonexistent/cert.pem".into(),
            key: "/nonexistent/key.pem".into(),
        };
        let err = load(&settings, &[]).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/cert.pem"), "{err}");
    }
}
