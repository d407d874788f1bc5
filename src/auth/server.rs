//! The server's side of the exchange: parsing client-first, the challenge, and checking
//! the client's proof against the stored verifier.

use super::*;

/// The gs2 channel-binding flag a client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gs2Flag {
    /// `n`: the client does not support channel binding.
    No,
    /// `y`: the client supports it but thinks the server does not.
    Supported,
    /// `p=<type>`: the client binds to the channel.
    Bound(String),
}

/// A parsed client-first-message.
#[derive(Debug, Clone)]
pub struct ClientFirstMessage {
    /// The unescaped username (`n=`).
    pub username: String,
    /// The channel-binding flag.
    pub flag: Gs2Flag,
    pub(super) gs2_header: String,
    pub(super) nonce: String,
    pub(super) bare: String,
}

impl ClientFirstMessage {
    /// Parses a client-first-message. Whether its channel-binding flag is acceptable is
    /// decided by [`ServerExchange::check_binding`], which knows the transport.
    ///
    /// # Errors
    /// Malformed messages, an authzid, or a mandatory extension.
    pub fn parse(msg: &str) -> Result<Self, ScramError> {
        let (flag, rest) = msg
            .split_once(',')
            .ok_or(ScramError::Malformed("missing gs2 header"))?;
        let (authzid, bare) = rest
            .split_once(',')
            .ok_or(ScramError::Malformed("missing gs2 header"))?;
        let parsed_flag = match flag {
            "n" => Gs2Flag::No,
            "y" => Gs2Flag::Supported,
            f => match f.strip_prefix("p=") {
                Some(name)
                    if !name.is_empty()
                        && name
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-') =>
                {
                    Gs2Flag::Bound(name.to_owned())
                }
                _ => return Err(ScramError::Malformed("bad gs2 channel-binding flag")),
            },
        };
        if !authzid.is_empty() {
            return Err(ScramError::Unsupported("authorization identity"));
        }
        let attrs = attributes(bare)?;
        let mut it = attrs.into_iter();
        let username = unescape_username(expect(&mut it, b'n', "client-first lacks n=")?)?;
        let nonce = expect(&mut it, b'r', "client-first lacks r=")?;
        if !valid_nonce(nonce) {
            return Err(ScramError::Malformed("the nonce has invalid characters"));
        }
        Ok(ClientFirstMessage {
            username,
            flag: parsed_flag,
            gs2_header: format!("{flag},{authzid},"),
            nonce: nonce.to_owned(),
            bare: bare.to_owned(),
        })
    }
}

/// The server's side of one exchange, between server-first and client-final.
#[derive(Debug, Clone)]
pub struct ServerExchange {
    pub(super) verifier: Verifier,
    /// What `c=` must decode to: the gs2 header, plus our binding data for `p=`.
    pub(super) expected_binding: Vec<u8>,
    pub(super) client_first_bare: String,
    pub(super) server_first: String,
    pub(super) nonce: String,
}

impl ServerExchange {
    /// Checks the channel-binding flag against the mechanism the client named and what this
    /// connection offers (`server_binding`: the `tls-server-end-point` data over TLS, `None`
    /// in plaintext). Done before the user is looked up, so it reveals nothing about users.
    ///
    /// # Errors
    /// [`ScramError::MechanismMismatch`], [`ScramError::ChannelBindingNotSupported`],
    /// [`ScramError::UnsupportedChannelBindingType`] or
    /// [`ScramError::ServerSupportsChannelBinding`] (a downgrade).
    pub fn check_binding(
        first: &ClientFirstMessage,
        mechanism: &str,
        server_binding: Option<&[u8]>,
    ) -> Result<(), ScramError> {
        match (&first.flag, mechanism) {
            (Gs2Flag::Bound(kind), MECHANISM_PLUS) => {
                if server_binding.is_none() {
                    Err(ScramError::ChannelBindingNotSupported)
                } else if kind != CHANNEL_BINDING_TYPE {
                    Err(ScramError::UnsupportedChannelBindingType)
                } else {
                    Ok(())
                }
            }
            (Gs2Flag::Supported, MECHANISM) if server_binding.is_some() => {
                Err(ScramError::ServerSupportsChannelBinding)
            }
            (Gs2Flag::No | Gs2Flag::Supported, MECHANISM) => Ok(()),
            _ => Err(ScramError::MechanismMismatch),
        }
    }

    /// Answers a client-first-message (already accepted by [`ServerExchange::check_binding`])
    /// with the user's verifier (or a mock one) and a fresh server nonce. Returns the exchange
    /// state and the server-first-message.
    pub fn start(
        client_first: ClientFirstMessage,
        verifier: Verifier,
        server_binding: Option<&[u8]>,
    ) -> (Self, String) {
        Self::start_with_nonce(client_first, verifier, server_binding, &new_nonce())
    }

    /// [`ServerExchange::start`] with a given server nonce (for the RFC test vector).
    pub fn start_with_nonce(
        client_first: ClientFirstMessage,
        verifier: Verifier,
        server_binding: Option<&[u8]>,
        server_nonce: &str,
    ) -> (Self, String) {
        let nonce = format!("{}{server_nonce}", client_first.nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            BASE64_STANDARD.encode(&verifier.salt),
            verifier.iterations
        );
        let mut expected_binding = client_first.gs2_header.into_bytes();
        if matches!(client_first.flag, Gs2Flag::Bound(_)) {
            expected_binding.extend_from_slice(server_binding.unwrap_or_default());
        }
        let exchange = ServerExchange {
            verifier,
            expected_binding,
            client_first_bare: client_first.bare,
            server_first: server_first.clone(),
            nonce,
        };
        (exchange, server_first)
    }

    /// Checks the client-final-message. On success returns the server-final-message (`v=`).
    ///
    /// # Errors
    /// [`ScramError::AuthenticationFailed`] for a wrong proof (the same for unknown users),
    /// other variants for malformed messages; [`ScramError::server_error_value`] gives `e=`.
    pub fn finish(self, client_final: &str) -> Result<String, ScramError> {
        let (without_proof, proof) = client_final
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("client-final lacks p="))?;
        let attrs = attributes(without_proof)?;
        let mut it = attrs.into_iter();
        let binding = expect(&mut it, b'c', "client-final must start with c=")?;
        let nonce = expect(&mut it, b'r', "client-final lacks r=")?;
        let binding = BASE64_STANDARD
            .decode(binding)
            .map_err(|_| ScramError::Malformed("c= is not base64"))?;
        if !bool::from(binding.ct_eq(&self.expected_binding)) {
            return Err(ScramError::ChannelBindingMismatch);
        }
        if nonce != self.nonce {
            return Err(ScramError::NonceMismatch);
        }
        let proof = BASE64_STANDARD
            .decode(proof)
            .map_err(|_| ScramError::Malformed("the proof is not base64"))?;
        let proof =
            Key::try_from(proof.as_slice()).map_err(|_| ScramError::AuthenticationFailed)?;
        let auth_message = format!(
            "{},{},{}",
            self.client_first_bare, self.server_first, without_proof
        );
        let signature = hmac(&self.verifier.stored_key, &[auth_message.as_bytes()]);
        let mut client_key = proof;
        for (k, s) in client_key.iter_mut().zip(signature) {
            *k ^= s;
        }
        if bool::from(sha256(&client_key).ct_eq(&self.verifier.stored_key)) {
            let server_signature = hmac(&self.verifier.server_key, &[auth_message.as_bytes()]);
            Ok(format!("v={}", BASE64_STANDARD.encode(server_signature)))
        } else {
            Err(ScramError::AuthenticationFailed)
        }
    }
}
