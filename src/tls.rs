//! TLS pieces both sides share: the crypto provider (ring: it builds from crates.io alone),
//! certificate fingerprints as users see them, and the RFC 5929 `tls-server-end-point`
//! channel-binding data SCRAM-SHA-256-PLUS binds logins to, and the read-ahead both put
//! under TLS.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use base64::prelude::{BASE64_STANDARD_NO_PAD, Engine as _};
use bytes::{Buf, BytesMut};
use rustls::crypto::CryptoProvider;
use sha2::{Digest, Sha256, Sha384, Sha512};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use x509_parser::oid_registry as oids;
use x509_parser::prelude::{FromDer, X509Certificate};

/// How many encrypted bytes a connection may hold for sending (rustls's default is 64 KiB).
/// A data frame is up to [`crate::commands::MAX_CHUNK`] (512 KiB): with the default, rustls
/// takes 64 KiB of it at a time and each piece costs a `writev` and a wake-up of the peer;
/// with room for a whole frame, its 33 records go out in one or two. Held only while a
/// frame is being sent, so an idle connection pays nothing for it.
pub const SEND_BUFFER_LIMIT: usize = 1024 * 1024;

/// Most bytes [`ReadAhead`] reads from the socket at once.
const READ_AHEAD: usize = 256 * 1024;

/// Reads the socket in large pieces for rustls, which asks for 4 KiB at a time: without it a
/// 1 GiB download costs 262,144 `recv` calls. The buffer exists only while it holds data,
/// so an idle connection pays nothing for it. Writes pass straight through.
#[derive(Debug)]
pub struct ReadAhead<S> {
    inner: S,
    buffered: BytesMut,
}

impl<S> ReadAhead<S> {
    /// Wraps a socket.
    pub fn new(inner: S) -> Self {
        ReadAhead {
            inner,
            buffered: BytesMut::new(),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadAhead<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.buffered.is_empty() {
            if out.remaining() >= READ_AHEAD {
                return Pin::new(&mut this.inner).poll_read(cx, out);
            }
            this.buffered.reserve(READ_AHEAD);
            let read =
                tokio_util::io::poll_read_buf(Pin::new(&mut this.inner), cx, &mut this.buffered);
            if !matches!(read, Poll::Ready(Ok(n)) if n > 0) {
                // Waiting, at the end or failed: hold no memory meanwhile.
                this.buffered = BytesMut::new();
            }
            ready!(read)?;
        }
        let n = out.remaining().min(this.buffered.len());
        out.put_slice(&this.buffered[..n]);
        this.buffered.advance(n);
        if this.buffered.is_empty() {
            this.buffered = BytesMut::new();
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadAhead<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// A certificate that cannot be used (unparseable, or no single hash for channel binding).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unusable certificate: {0}")]
pub struct CertificateError(pub String);

/// The crypto provider of every TLS configuration in this crate: ring's, with AES-128-GCM
/// first. Both ends are ours, and on CPUs with AES and SHA instructions (most) it is the
/// cheapest suite: ten AES rounds instead of fourteen, and SHA-256 (in hardware) instead
/// of SHA-384 (not) in the key schedule of every handshake.
pub fn provider() -> Arc<CryptoProvider> {
    use rustls::crypto::ring::cipher_suite::*;
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites = vec![
        TLS13_AES_128_GCM_SHA256,
        TLS13_AES_256_GCM_SHA384,
        TLS13_CHACHA20_POLY1305_SHA256,
        TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ];
    Arc::new(provider)
}

/// The fingerprint people compare: `SHA256:` and the unpadded base64 of the SHA-256 of the
/// DER certificate, as OpenSSH shows host keys.
pub fn fingerprint(cert_der: &[u8]) -> String {
    format!(
        "SHA256:{}",
        BASE64_STANDARD_NO_PAD.encode(Sha256::digest(cert_der))
    )
}

/// `tls-server-end-point` channel-binding data (RFC 5929, section 4.1): the certificate hashed
/// with the hash of its signature algorithm, SHA-256 for MD5 and SHA-1.
///
/// # Errors
/// [`CertificateError`] for a certificate that does not parse, or whose signature algorithm
/// names no single hash (Ed25519, RSA-PSS), for which the binding is undefined.
pub fn end_point_binding(cert_der: &[u8]) -> Result<Vec<u8>, CertificateError> {
    let (_, cert) = X509Certificate::from_der(cert_der)
        .map_err(|e| CertificateError(format!("cannot parse it: {e}")))?;
    let oid = &cert.signature_algorithm.algorithm;
    let sha256 = [
        oids::OID_PKCS1_MD5WITHRSAENC,
        oids::OID_PKCS1_SHA1WITHRSA,
        oids::OID_PKCS1_SHA224WITHRSA,
        oids::OID_PKCS1_SHA256WITHRSA,
        oids::OID_SIG_ECDSA_WITH_SHA224,
        oids::OID_SIG_ECDSA_WITH_SHA256,
    ];
    if sha256.contains(oid) {
        Ok(Sha256::digest(cert_der).to_vec())
    } else if [
        oids::OID_PKCS1_SHA384WITHRSA,
        oids::OID_SIG_ECDSA_WITH_SHA384,
    ]
    .contains(oid)
    {
        Ok(Sha384::digest(cert_der).to_vec())
    } else if [
        oids::OID_PKCS1_SHA512WITHRSA,
        oids::OID_SIG_ECDSA_WITH_SHA512,
    ]
    .contains(oid)
    {
        Ok(Sha512::digest(cert_der).to_vec())
    } else {
        Err(CertificateError(format!(
            "its signature algorithm ({oid}) names no single hash, so channel binding \
             (tls-server-end-point) is undefined; use an ECDSA or RSA certificate signed with \
             SHA-256, SHA-384 or SHA-512"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn read_ahead_hands_out_every_byte_in_order_and_keeps_nothing_when_drained() {
        let (mut writer, reader) = tokio::io::duplex(1 << 20);
        let data: Vec<u8> = (0..600_000u32).map(|i| (i % 253) as u8).collect();
        writer.write_all(&data).await.unwrap();
        drop(writer);
        let mut reader = ReadAhead::new(reader);
        let mut got = Vec::new();
        let mut small = [0u8; 4096];
        // Small reads, as rustls makes them, then one larger than the read-ahead.
        for _ in 0..10 {
            let n = reader.read(&mut small).await.unwrap();
            got.extend_from_slice(&small[..n]);
        }
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).await.unwrap();
        got.extend_from_slice(&rest);
        assert_eq!(got, data);
        assert_eq!(reader.buffered.capacity(), 0, "a drained buffer is freed");
    }

    fn self_signed(alg: &'static rcgen::SignatureAlgorithm) -> Vec<u8> {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn binding_uses_the_signature_hash() {
        let der = self_signed(&rcgen::PKCS_ECDSA_P256_SHA256);
        assert_eq!(
            end_point_binding(&der).unwrap(),
            Sha256::digest(&der).to_vec()
        );
        let der = self_signed(&rcgen::PKCS_ECDSA_P384_SHA384);
        assert_eq!(
            end_point_binding(&der).unwrap(),
            Sha384::digest(&der).to_vec()
        );
        // Ed25519 signs without a separate hash: no tls-server-end-point binding exists.
        assert!(end_point_binding(&self_signed(&rcgen::PKCS_ED25519)).is_err());
        assert!(end_point_binding(b"not a certificate").is_err());
    }

    #[test]
    fn fingerprint_looks_like_openssh() {
        let fp = fingerprint(b"abc");
        assert_eq!(fp, "SHA256:ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0");
    }
}
