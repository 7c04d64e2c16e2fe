//! What a client meets before its first statement, built once from the configuration:
//! TLS, the `[[hba]]` rules and SCRAM users, the connection limit and the message-size
//! limit.

use std::sync::Arc;

use pgwire::api::auth::{AuthDriver, DefaultServerParameterProvider};
use pgwire::tokio::tokio_rustls::rustls;
use pgwire::tokio::TlsAcceptor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::Semaphore;

use crate::auth::{Hba, Scram, Users};
use crate::interrupt::Interrupts;
use crate::ServerConfig;

pub struct Frontend {
    pub hba: Hba,
    pub scram: Scram,
    /// Runs SCRAM's exchange; the handler finishes the startup itself.
    pub auth: AuthDriver<DefaultServerParameterProvider>,
    pub tls: Option<TlsAcceptor>,
    /// One permit per open session (`max_connections`).
    pub sessions: Arc<Semaphore>,
    pub max_connections: usize,
    /// The largest message a client may send.
    pub max_message_bytes: usize,
    /// Running statements, for cancel requests.
    pub interrupts: Arc<Interrupts>,
    /// Who may log in with a password (the warehouse's roles attached by [`crate::run`]).
    pub users: Arc<Users>,
}

impl Frontend {
    /// Checks the configuration and loads what it names (certificate, key). A TLS setup
    /// that cannot work is an error here, at start, not at the first client.
    pub fn new(config: &ServerConfig) -> Result<Frontend, String> {
        config.validate()?;
        let users = Arc::new(Users::new(config.verifiers()?));
        let scram_users = users.clone();
        let (tls, certificate_pem) = match &config.tls {
            Some(tls) => {
                let cert_pem = std::fs::read(&tls.cert)
                    .map_err(|e| format!("reading the TLS certificate {}: {e}", tls.cert.display()))?;
                let key_pem = std::fs::read(&tls.key)
                    .map_err(|e| format!("reading the TLS key {}: {e}", tls.key.display()))?;
                (Some(tls_acceptor(&cert_pem, &key_pem)?), Some(cert_pem))
            }
            None => (None, None),
        };
        Ok(Frontend {
            hba: config.hba(),
            scram: Scram::new(scram_users, certificate_pem.as_deref())?,
            users,
            auth: AuthDriver::new(DefaultServerParameterProvider::default()),
            tls,
            sessions: Arc::new(Semaphore::new(config.max_connections)),
            max_connections: config.max_connections,
            max_message_bytes: config.max_message_mb << 20,
            interrupts: Arc::new(Interrupts::default()),
        })
    }
}

impl Default for Frontend {
    /// The default configuration's: loopback clients trusted, no TLS.
    fn default() -> Self {
        Frontend::new(&ServerConfig::default()).expect("the default configuration is valid")
    }
}

/// A TLS acceptor for a PEM certificate chain and key (rustls with ring, TLS 1.2 and
/// 1.3, ALPN `postgresql` for PostgreSQL 17's direct TLS).
fn tls_acceptor(cert_pem: &[u8], key_pem: &[u8]) -> Result<TlsAcceptor, String> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the TLS certificate is not PEM: {e}"))?;
    if chain.is_empty() {
        return Err("the TLS certificate file holds no certificate".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("the TLS key: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("the TLS certificate and key do not make a server identity: {e}"))?;
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
