//! TLS pieces both sides share: the crypto provider (ring: it builds from crates.io alone),
//! certificate fingerprints as users see them, and the RFC 5929 `tls-server-end-point`
//! channel-binding data SCRAM-SHA-256-PLUS binds logins to.

use std::sync::Arc;

use base64::prelude::{BASE64_STANDARD_NO_PAD, Engine as _};
use rustls::crypto::CryptoProvider;
use sha2::{Digest, Sha256, Sha384, Sha512};
use x509_parser::oid_registry as oids;
use x509_parser::prelude::{FromDer, X509Certificate};

/// A certificate that cannot be used (unparseable, or no single hash for channel binding).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unusable certificate: {0}")]
pub struct CertificateError(pub String);

/// The crypto provider of every TLS configuration in this crate.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
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
