//! The client's side of the exchange: client-first, reading the server's challenge,
//! client-final, and checking the server's signature.

use super::*;

/// The client's first step: remembers its nonce and the message it sent.
#[derive(Debug, Clone)]
pub struct ClientFirst {
    pub(super) nonce: String,
    pub(super) bare: String,
    pub(super) binding: ChannelBinding,
}

impl ClientFirst {
    /// Starts an exchange for `username` with a fresh nonce and no channel binding.
    pub fn new(username: &str) -> Self {
        Self::with_binding(username, ChannelBinding::None)
    }

    /// Starts an exchange with the given channel binding.
    pub fn with_binding(username: &str, binding: ChannelBinding) -> Self {
        let mut first = Self::with_nonce(username, &new_nonce());
        first.binding = binding;
        first
    }

    /// Starts an exchange with a given nonce (tests reproduce the RFC's example with it).
    pub fn with_nonce(username: &str, nonce: &str) -> Self {
        ClientFirst {
            nonce: nonce.to_owned(),
            bare: format!("n={},r={nonce}", escape_username(username)),
            binding: ChannelBinding::None,
        }
    }

    /// The SASL mechanism to announce with this message.
    pub fn mechanism(&self) -> &'static str {
        self.binding.mechanism()
    }

    /// The client-first-message: gs2 header (no authzid), then the bare message.
    pub fn message(&self) -> String {
        format!("{}{}", self.binding.gs2_header(), self.bare)
    }

    /// Parses and checks the server-first-message.
    ///
    /// # Errors
    /// A malformed message, a nonce that does not extend ours, or an absurd iteration count.
    pub fn receive_server_first(self, server_first: &str) -> Result<ServerChallenge, ScramError> {
        let attrs = attributes(server_first)?;
        let mut it = attrs.into_iter();
        let nonce = expect(&mut it, b'r', "server-first must start with r=")?;
        let salt = expect(&mut it, b's', "server-first lacks s=")?;
        let iterations = expect(&mut it, b'i', "server-first lacks i=")?;
        if !valid_nonce(nonce) {
            return Err(ScramError::Malformed("the nonce has invalid characters"));
        }
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err(ScramError::NonceMismatch);
        }
        let salt = BASE64_STANDARD
            .decode(salt)
            .map_err(|_| ScramError::Malformed("the salt is not base64"))?;
        if salt.is_empty() || salt.len() > MAX_SALT_LEN {
            return Err(ScramError::Malformed("the salt is empty or too long"));
        }
        let iterations: u32 = iterations
            .parse()
            .map_err(|_| ScramError::Malformed("the iteration count is not a number"))?;
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            return Err(ScramError::BadIterationCount(iterations));
        }
        Ok(ServerChallenge {
            c_attribute: self.binding.c_attribute(),
            client_first_bare: self.bare,
            server_first: server_first.to_owned(),
            nonce: nonce.to_owned(),
            salt,
            iterations,
        })
    }
}

/// What the server asked for: the salt and iteration count to derive keys with.
#[derive(Debug, Clone)]
pub struct ServerChallenge {
    pub(super) c_attribute: String,
    pub(super) client_first_bare: String,
    pub(super) server_first: String,
    pub(super) nonce: String,
    /// The user's salt, as the server announced it.
    pub salt: Vec<u8>,
    /// The iteration count, as the server announced it.
    pub iterations: u32,
}

impl ServerChallenge {
    /// Builds the client-final-message from keys derived for this salt and count.
    pub fn respond(self, keys: &ClientKeys) -> (String, ClientFinal) {
        let without_proof = format!("c={},r={}", self.c_attribute, self.nonce);
        let auth_message = format!(
            "{},{},{}",
            self.client_first_bare, self.server_first, without_proof
        );
        let stored_key = sha256(&keys.client_key);
        let signature = hmac(&stored_key, &[auth_message.as_bytes()]);
        let mut proof = keys.client_key;
        for (p, s) in proof.iter_mut().zip(signature) {
            *p ^= s;
        }
        let expected = hmac(&keys.server_key, &[auth_message.as_bytes()]);
        let message = format!("{without_proof},p={}", BASE64_STANDARD.encode(proof));
        (
            message,
            ClientFinal {
                expected_server_signature: expected,
            },
        )
    }
}

/// The client's last step: the server signature it expects.
#[derive(Debug, Clone)]
pub struct ClientFinal {
    pub(super) expected_server_signature: Key,
}

impl ClientFinal {
    /// Checks the server-final-message: success only if the server proved it holds the verifier.
    ///
    /// # Errors
    /// [`ScramError::ServerError`] for `e=`, [`ScramError::BadServerSignature`] for a wrong `v=`.
    pub fn verify_server_final(&self, server_final: &str) -> Result<(), ScramError> {
        let attrs = attributes(server_final)?;
        match attrs.first() {
            Some((b'e', reason)) if *reason == "invalid-proof" => {
                Err(ScramError::AuthenticationFailed)
            }
            Some((b'e', reason)) => Err(ScramError::ServerError((*reason).to_owned())),
            Some((b'v', sig)) => {
                let sig = BASE64_STANDARD
                    .decode(sig)
                    .map_err(|_| ScramError::Malformed("the server signature is not base64"))?;
                if bool::from(sig.ct_eq(&self.expected_server_signature)) {
                    Ok(())
                } else {
                    Err(ScramError::BadServerSignature)
                }
            }
            _ => Err(ScramError::Malformed("server-final must be v= or e=")),
        }
    }
}
