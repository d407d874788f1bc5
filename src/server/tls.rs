//! The server's TLS identity: a certificate chain and key from PEM files, or a self-signed
//! ECDSA P-256 / SHA-256 certificate generated on first start into the state directory and
//! reused on every later start, so its fingerprint stays what users pinned.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{Error, Result};
use crate::tls::{end_point_binding, fingerprint, provider};

/// File names of the generated identity in the state directory.
pub const GENERATED_CERT: &str = "tls-cert.pem";
/// The generated key (mode 0600).
pub const GENERATED_KEY: &str = "tls-key.pem";

/// How the server speaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSetup {
    /// TLS with the self-signed certificate in the state directory (generated if missing).
    SelfSigned,
    /// TLS with a PEM certificate chain and key.
    Files {
        /// Certificate chain, leaf first.
        cert: PathBuf,
        /// Private key (PKCS#8, PKCS#1 or SEC1).
        key: PathBuf,
    },
    /// No TLS at all: for a lab on loopback only.
    Plaintext,
}

/// A loaded identity, ready to accept TLS connections.
#[derive(Clone)]
pub struct ServerIdentity {
    /// The rustls configuration (TLS 1.3 and 1.2).
    pub config: Arc<ServerConfig>,
    /// `tls-server-end-point` data of the leaf certificate, for SCRAM-SHA-256-PLUS.
    pub binding: Arc<[u8]>,
    /// The leaf certificate's fingerprint (`SHA256:...`).
    pub fingerprint: String,
    /// The chain and key, for other transports of the same identity (QUIC).
    chain: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
}

impl std::fmt::Debug for ServerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerIdentity")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

fn tls_error(what: impl std::fmt::Display) -> Error {
    Error::Tls(what.to_string())
}

impl ServerIdentity {
    /// Resolves a [`TlsSetup`]: `None` for plaintext.
    ///
    /// # Errors
    /// Unreadable or unusable certificate or key files.
    pub fn load(setup: &TlsSetup, state_dir: &Path) -> Result<Option<Self>> {
        match setup {
            TlsSetup::Plaintext => Ok(None),
            TlsSetup::Files { cert, key } => Self::from_pem_files(cert, key).map(Some),
            TlsSetup::SelfSigned => Self::self_signed(state_dir).map(Some),
        }
    }

    /// Loads a PEM certificate chain and key.
    ///
    /// # Errors
    /// Unreadable files, no certificate or key in them, a key that does not match, or a
    /// certificate without a defined channel binding.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self> {
        let chain = CertificateDer::pem_file_iter(cert)
            .and_then(|certs| certs.collect::<std::result::Result<Vec<_>, _>>())
            .map_err(|e| tls_error(format!("{}: {e}", cert.display())))?;
        if chain.is_empty() {
            return Err(tls_error(format!(
                "{}: no certificate in it",
                cert.display()
            )));
        }
        let key = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| tls_error(format!("{}: {e}", key.display())))?;
        Self::build(chain, key)
    }

    /// Whether the generated certificate already exists in `state_dir`.
    pub fn has_generated(state_dir: &Path) -> bool {
        state_dir.join(GENERATED_CERT).exists()
    }

    /// Loads the generated identity from `state_dir`, generating it on first use.
    ///
    /// # Errors
    /// I/O errors, or files that do not parse.
    pub fn self_signed(state_dir: &Path) -> Result<Self> {
        let (cert, key) = (
            state_dir.join(GENERATED_CERT),
            state_dir.join(GENERATED_KEY),
        );
        match (cert.exists(), key.exists()) {
            (true, true) => {}
            (false, false) => generate(state_dir, &cert, &key)?,
            _ => {
                return Err(tls_error(format!(
                    "{} and {} must both exist or both be absent",
                    cert.display(),
                    key.display()
                )));
            }
        }
        Self::from_pem_files(&cert, &key)
    }

    fn build(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Result<Self> {
        let leaf = chain[0].to_vec();
        let binding = end_point_binding(&leaf).map_err(tls_error)?;
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(tls_error)?
            .with_no_client_auth()
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(tls_error)?;
        // Stateless session tickets (their key made anew at each start, and rotated), so a
        // returning client skips the certificate and its signature.
        config.ticketer = rustls::crypto::ring::Ticketer::new().map_err(tls_error)?;
        // One ticket per connection (rustls sends 2): a client uses up one ticket for each
        // connection it resumes, so one new one keeps it supplied, and each costs an
        // encryption and a record.
        config.send_tls13_tickets = 1;
        // The greeting (our hello and the mechanisms offered) leaves with the handshake
        // flight instead of a round trip later; see `serve_socket`. Nothing else is written
        // before the client's Finished has been checked.
        config.send_half_rtt_data = true;
        // The suite order of `provider()` (AES-128-GCM first) for every client.
        config.ignore_client_order = true;
        Ok(ServerIdentity {
            config: Arc::new(config),
            binding: binding.into(),
            fingerprint: fingerprint(&leaf),
            chain,
            key: Arc::new(key),
        })
    }

    /// A TLS 1.3 configuration of the same certificate for QUIC, offering `alpn`.
    ///
    /// # Errors
    /// The key does not suit TLS 1.3.
    pub fn quic_config(&self, alpn: &[u8]) -> Result<ServerConfig> {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls_error)?
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(tls_error)?;
        config.alpn_protocols = vec![alpn.to_vec()];
        Ok(config)
    }
}

/// Writes a new self-signed ECDSA P-256 / SHA-256 certificate and its key (mode 0600).
fn generate(state_dir: &Path, cert_path: &Path, key_path: &Path) -> Result<()> {
    super::secret::create_state_dir(state_dir)?;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(tls_error)?;
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned()]).map_err(tls_error)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "ftpd self-signed");
    let cert = params.self_signed(&key).map_err(tls_error)?;
    write_new(key_path, key.serialize_pem().as_bytes(), 0o600)?;
    write_new(cert_path, cert.pem().as_bytes(), 0o644)?;
    tracing::info!(fingerprint = %fingerprint(cert.der()), path = %cert_path.display(), "generated a self-signed TLS certificate");
    Ok(())
}

/// Creates `path` with `mode`, refusing to replace an existing file.
fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| tls_error(format!("{}: {e}", path.display())))?;
    file.write_all(contents)?;
    file.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn generated_once_private_and_reused() {
        let parent = tempfile::tempdir().unwrap();
        // Issue 11.15: `ftpd fingerprint` created the state directory 0755.
        let state = parent.path().join("ftpd-state");
        ServerIdentity::self_signed(&state).unwrap();
        let mode = std::fs::metadata(&state).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        let dir = tempfile::tempdir().unwrap();
        let first = ServerIdentity::self_signed(dir.path()).unwrap();
        let second = ServerIdentity::self_signed(dir.path()).unwrap();
        assert_eq!(first.fingerprint, second.fingerprint);
        assert_eq!(first.binding.len(), 32);
        let mode = std::fs::metadata(dir.path().join(GENERATED_KEY))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::remove_file(dir.path().join(GENERATED_CERT)).unwrap();
        assert!(ServerIdentity::self_signed(dir.path()).is_err());
        assert!(
            ServerIdentity::from_pem_files(
                &dir.path().join("nope"),
                &dir.path().join(GENERATED_KEY)
            )
            .is_err()
        );
    }
}
