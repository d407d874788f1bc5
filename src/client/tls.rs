//! The client's side of TLS: trust on first use like ssh (a `known_hosts` file of pinned
//! certificate fingerprints), or verification against a CA; and the stream type that carries
//! either TLS or, when asked for explicitly, plaintext.
//!
//! Pinning is checked right after the handshake, before a single byte of ours is sent, so a
//! changed certificate never sees a login attempt.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::error::{Error, Result};
use crate::tls::{ReadAhead, end_point_binding, fingerprint, provider};

/// What to do with a server whose certificate is not pinned yet.
#[derive(Clone)]
pub enum UnknownServer {
    /// Refuse (scripts that did not say `--accept-new`).
    Refuse,
    /// Pin it and go on (`--accept-new`); a *changed* certificate is still refused.
    AcceptNew,
    /// Ask a person: `(server, fingerprint) -> trust?`.
    Ask(TrustPrompt),
}

/// Asks whether to trust a new server: `(server, fingerprint) -> trust?`.
pub type TrustPrompt = Arc<dyn Fn(&str, &str) -> bool + Send + Sync>;

impl std::fmt::Debug for UnknownServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            UnknownServer::Refuse => "Refuse",
            UnknownServer::AcceptNew => "AcceptNew",
            UnknownServer::Ask(_) => "Ask",
        })
    }
}

/// How a connection is secured.
#[derive(Debug, Clone)]
pub enum Security {
    /// No TLS (only for a server started with `--plaintext`).
    Plaintext,
    /// TLS, trusting pinned fingerprints (trust on first use).
    Pinned {
        /// The pins.
        known_hosts: KnownHosts,
        /// What to do with a server not pinned yet.
        unknown: UnknownServer,
    },
    /// TLS, verifying the certificate against the CA certificates in a PEM file.
    Ca(PathBuf),
}

/// The `known_hosts` file: `<server> <fingerprint>` a line, `#` comments.
#[derive(Debug, Clone)]
pub struct KnownHosts {
    path: PathBuf,
}

impl KnownHosts {
    /// The file at `path`.
    pub fn at(path: impl Into<PathBuf>) -> Self {
        KnownHosts { path: path.into() }
    }

    /// `$XDG_CONFIG_HOME/ftpc/known_hosts`.
    ///
    /// # Errors
    /// No config directory (no `HOME`).
    pub fn default_location() -> Result<Self> {
        let dir = dirs::config_dir().ok_or_else(|| {
            Error::Tls("cannot find the config directory for known_hosts (is HOME set?)".into())
        })?;
        Ok(Self::at(dir.join("ftpc").join("known_hosts")))
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The pinned fingerprint of `server` and its 1-based line number.
    ///
    /// # Errors
    /// An unreadable file.
    pub fn lookup(&self, server: &str) -> Result<Option<(usize, String)>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::local(&self.path, e)),
        };
        Ok(text.lines().enumerate().find_map(|(index, line)| {
            let mut fields = line.split_whitespace();
            match (fields.next(), fields.next()) {
                (Some(name), Some(fp)) if name == server && !name.starts_with('#') => {
                    Some((index + 1, fp.to_owned()))
                }
                _ => None,
            }
        }))
    }

    /// Pins `server` to `fingerprint` (appends a line; the file is created 0600).
    ///
    /// # Errors
    /// I/O errors.
    pub fn add(&self, server: &str, fingerprint: &str) -> Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| Error::local(dir, e))?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.path)
            .map_err(|e| Error::local(&self.path, e))?;
        writeln!(file, "{server} {fingerprint}").map_err(|e| Error::local(&self.path, e))
    }

    /// Forgets the pin of `server` (as `ssh-keygen -R`): the next connection asks again.
    /// Other lines, comments included, stay as they are; the file is replaced whole.
    ///
    /// # Errors
    /// I/O errors.
    pub fn remove(&self, server: &str) -> Result<bool> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(Error::local(&self.path, e)),
        };
        let pins = |line: &str| line.split_whitespace().next() == Some(server);
        if !text.lines().any(pins) {
            return Ok(false);
        }
        let kept: String = text
            .lines()
            .filter(|line| !pins(line))
            .map(|line| format!("{line}\n"))
            .collect();
        super::private_file::write_private(&self.path, kept.as_bytes())?;
        Ok(true)
    }

    /// Every pin: server and fingerprint, in the file's order.
    ///
    /// # Errors
    /// An unreadable file.
    pub fn list(&self) -> Result<Vec<(String, String)>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::local(&self.path, e)),
        };
        Ok(text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| {
                let mut fields = line.split_whitespace();
                Some((fields.next()?.to_owned(), fields.next()?.to_owned()))
            })
            .collect())
    }

    /// Checks `fingerprint` against the pin for `server`, pinning it if new and allowed.
    ///
    /// # Errors
    /// [`Error::CertificateChanged`], [`Error::UnknownServer`], [`Error::NotTrusted`].
    pub fn check(&self, server: &str, fingerprint: &str, unknown: &UnknownServer) -> Result<()> {
        match self.lookup(server)? {
            Some((_, pinned)) if pinned == fingerprint => Ok(()),
            Some((line, pinned)) => Err(Error::CertificateChanged {
                server: server.to_owned(),
                expected: pinned,
                actual: fingerprint.to_owned(),
                file: self.path.clone(),
                line,
            }),
            None => {
                let trusted = match unknown {
                    UnknownServer::Refuse => {
                        return Err(Error::UnknownServer {
                            server: server.to_owned(),
                            fingerprint: fingerprint.to_owned(),
                        });
                    }
                    UnknownServer::AcceptNew => true,
                    UnknownServer::Ask(ask) => ask(server, fingerprint),
                };
                if !trusted {
                    return Err(Error::NotTrusted {
                        server: server.to_owned(),
                    });
                }
                self.add(server, fingerprint)
            }
        }
    }
}

/// The answer to "trust this server?", as ssh takes it: `yes` (or `y`), or the fingerprint
/// itself pasted from what the admin sent. `Err` says why another fingerprint is refused.
///
/// # Errors
/// A fingerprint that is not the server's.
pub fn trust_answer(answer: &str, fingerprint: &str) -> std::result::Result<bool, String> {
    let answer = answer.trim();
    if answer.eq_ignore_ascii_case("yes") || answer.eq_ignore_ascii_case("y") {
        return Ok(true);
    }
    if answer.starts_with("SHA256:") {
        return if answer == fingerprint {
            Ok(true)
        } else {
            Err(format!(
                "the fingerprint you gave is not this server's ({fingerprint})"
            ))
        };
    }
    Ok(false)
}

/// Accepts any certificate during the handshake (the handshake signatures are still
/// verified, so the server proves it holds the key); the pin is checked right after.
#[derive(Debug)]
struct PinAfterHandshake {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinAfterHandshake {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The host part of `host:port` (`[::1]:2121` too), without the brackets.
pub(crate) fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// The host part of `host:port`, as a TLS server name.
fn server_name(addr: &str) -> Result<ServerName<'static>> {
    let host = host_of(addr);
    ServerName::try_from(host.to_owned())
        .map_err(|e| Error::Tls(format!("{host:?} is not a valid server name: {e}")))
}

/// The TLS configuration for `security`, made once per process and shared by all its
/// connections (those of `-j N`, the load generator's clients, a shell's reconnects), so
/// they resume each other's sessions: rustls resumes only sessions made with the same
/// configuration's verifier, so a session accepted under one way of trusting (a pin taken
/// on first use, say) never stands in for another (a CA's verification). The pin is still
/// checked after every handshake, resumed or not, on the certificate the session was made
/// with.
fn client_config(security: &Security) -> Result<Arc<ClientConfig>> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static CONFIGS: OnceLock<Mutex<HashMap<String, Arc<ClientConfig>>>> = OnceLock::new();
    let key = match security {
        Security::Plaintext => "plaintext".to_owned(),
        Security::Pinned {
            known_hosts,
            unknown,
        } => format!("pinned {unknown:?} {}", known_hosts.path.display()),
        Security::Ca(path) => format!("ca {}", path.display()),
    };
    let mut configs = CONFIGS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(config) = configs.get(&key) {
        return Ok(Arc::clone(config));
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?;
    let config = Arc::new(verified_as(builder, security)?);
    configs.insert(key, Arc::clone(&config));
    Ok(config)
}

/// A TLS 1.3 configuration for QUIC, offering `alpn`, verifying as `security` says (a
/// pin, checked with [`check_peer`] right after the handshake, or a CA). QUIC always
/// encrypts: `Plaintext` is treated as a pin.
pub(crate) fn quic_client_config(security: &Security, alpn: &[u8]) -> Result<ClientConfig> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| Error::Tls(e.to_string()))?;
    let mut config = verified_as(builder, security)?;
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(config)
}

/// Checks the server's leaf certificate against the pin for `addr` (when pinning), before
/// anything is sent; its channel-binding data.
pub(crate) fn check_peer(addr: &str, leaf: &[u8], security: &Security) -> Result<Vec<u8>> {
    if let Security::Pinned {
        known_hosts,
        unknown,
    } = security
    {
        known_hosts.check(addr, &fingerprint(leaf), unknown)?;
    }
    end_point_binding(leaf).map_err(|e| Error::Tls(e.to_string()))
}

fn verified_as(
    builder: rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier>,
    security: &Security,
) -> Result<ClientConfig> {
    Ok(match security {
        Security::Ca(path) => {
            let mut roots = RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|c| c.collect::<std::result::Result<Vec<_>, _>>())
                .map_err(|e| Error::local(path, e))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(Error::local(path, "no CA certificate in it"));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Security::Pinned { .. } | Security::Plaintext => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinAfterHandshake {
                provider: provider(),
            }))
            .with_no_client_auth(),
    })
}

/// Runs the TLS handshake and checks the certificate; returns the stream and the
/// channel-binding data of the server's certificate.
pub(crate) async fn handshake(
    tcp: TcpStream,
    addr: &str,
    security: &Security,
) -> Result<(ClientStream, Option<Vec<u8>>)> {
    if let Security::Plaintext = security {
        return Ok((ClientStream::Plain(tcp), None));
    }
    let connector = tokio_rustls::TlsConnector::from(client_config(security)?);
    let mut tls = connector
        .connect(server_name(addr)?, ReadAhead::new(tcp))
        .await
        .map_err(|e| Error::Tls(explain_handshake_error(addr, &e)))?;
    tls.get_mut()
        .1
        .set_buffer_limit(Some(crate::tls::SEND_BUFFER_LIMIT));
    let leaf = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|cert| cert.to_vec())
        .ok_or_else(|| Error::Tls("the server sent no certificate".into()))?;
    let binding = check_peer(addr, &leaf, security)?;
    Ok((ClientStream::Tls(Box::new(tls)), Some(binding)))
}

fn explain_handshake_error(addr: &str, err: &std::io::Error) -> String {
    let text = err.to_string();
    if text.contains("InvalidContentType") || text.contains("corrupt message") {
        format!("{addr} does not speak TLS ({text}); if it runs with --plaintext, use --plaintext")
    } else {
        format!("handshake with {addr} failed: {text}")
    }
}

/// A connection to the server: TLS, or plaintext when asked for.
#[derive(Debug)]
pub enum ClientStream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<tokio_rustls::client::TlsStream<ReadAhead<TcpStream>>>),
}

impl ClientStream {
    /// Whether the TLS handshake resumed an earlier session (no certificate was sent).
    pub fn is_resumed(&self) -> bool {
        match self {
            ClientStream::Plain(_) => false,
            ClientStream::Tls(tls) => {
                tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed)
            }
        }
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_hosts_pins_and_names_the_line_to_remove() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = KnownHosts::at(dir.path().join("ftpc/known_hosts"));
        assert!(matches!(
            hosts.check("a:1", "SHA256:one", &UnknownServer::Refuse),
            Err(Error::UnknownServer { .. })
        ));
        let no = UnknownServer::Ask(Arc::new(|_, _| false));
        assert!(matches!(
            hosts.check("a:1", "SHA256:one", &no),
            Err(Error::NotTrusted { .. })
        ));
        hosts
            .check("a:1", "SHA256:one", &UnknownServer::AcceptNew)
            .unwrap();
        let yes = UnknownServer::Ask(Arc::new(|server, fp| server == "b:2" && fp == "SHA256:two"));
        hosts.check("b:2", "SHA256:two", &yes).unwrap();
        hosts
            .check("a:1", "SHA256:one", &UnknownServer::Refuse)
            .unwrap();
        match hosts.check("b:2", "SHA256:evil", &UnknownServer::AcceptNew) {
            Err(Error::CertificateChanged { line, expected, .. }) => {
                assert_eq!((line, expected.as_str()), (2, "SHA256:two"));
            }
            other => panic!("{other:?}"),
        }
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(hosts.path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn server_names_from_addresses() {
        assert!(server_name("127.0.0.1:2121").is_ok());
        assert!(server_name("[::1]:2121").is_ok());
        assert!(server_name("files.example.org:2121").is_ok());
    }
}
