//! SCRAM-SHA-256 verifiers (RFC 5802, RFC 7677) as PostgreSQL stores them in
//! `pg_authid.rolpassword`: `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
//!
//! The operator computes the verifier itself and sends only that, so a password never appears
//! in a DDL statement (nor in a server log that records statements), and it compares a stored
//! verifier with the password in force by deriving again with the stored salt and iteration
//! count, so an unchanged password is not sent at all.
//!
//! PostgreSQL runs a password through SASLprep before deriving; that changes nothing for the
//! printable ASCII passwords the operator makes ([`crate::provision::new_password`]).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// PostgreSQL's default (`scram_iterations`), and RFC 7677's minimum.
pub const ITERATIONS: u32 = 4096;
/// PostgreSQL's salt length.
const SALT_LEN: usize = 16;

/// A parsed verifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verifier {
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub stored_key: [u8; 32],
    pub server_key: [u8; 32],
}

/// HMAC-SHA-256 keyed with a 32-byte key. HMAC pads a key shorter than the hash's 64-byte
/// block with zeros (RFC 2104), so padding it here is the same MAC, with no error to handle.
fn hmac_sha256(key: &[u8; 32], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(key);
    let mut mac = Hmac::<Sha256>::new(&block.into());
    mac.update(message);
    mac.finalize().into_bytes().into()
}

impl Verifier {
    /// Derives the verifier of `password` with the given salt and iteration count.
    pub fn derive(password: &str, salt: &[u8], iterations: u32) -> Self {
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut salted);
        let client_key = hmac_sha256(&salted, b"Client Key");
        Self {
            iterations,
            salt: salt.to_vec(),
            stored_key: Sha256::digest(client_key).into(),
            server_key: hmac_sha256(&salted, b"Server Key"),
        }
    }

    /// A verifier of `password` with a fresh random salt.
    pub fn new(password: &str) -> Self {
        let mut salt = [0u8; SALT_LEN];
        rand::rng().fill_bytes(&mut salt);
        Self::derive(password, &salt, ITERATIONS)
    }

    /// Reads PostgreSQL's text form; `None` for anything else (an MD5 hash, a plaintext
    /// password from long ago, a malformed value).
    pub fn parse(stored: &str) -> Option<Self> {
        let rest = stored.strip_prefix("SCRAM-SHA-256$")?;
        let (params, keys) = rest.split_once('$')?;
        let (iterations, salt) = params.split_once(':')?;
        let (stored_key, server_key) = keys.split_once(':')?;
        Some(Self {
            iterations: iterations.parse().ok().filter(|i| *i > 0)?,
            salt: STANDARD.decode(salt).ok()?,
            stored_key: STANDARD.decode(stored_key).ok()?.try_into().ok()?,
            server_key: STANDARD.decode(server_key).ok()?.try_into().ok()?,
        })
    }

    /// Whether this verifier accepts `password`.
    pub fn verifies(&self, password: &str) -> bool {
        Self::derive(password, &self.salt, self.iterations) == *self
    }
}

impl std::fmt::Display for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            STANDARD.encode(&self.salt),
            STANDARD.encode(self.stored_key),
            STANDARD.encode(self.server_key)
        )
    }
}

/// Whether the stored `rolpassword` (if any) accepts `password`.
pub fn stored_verifies(stored: Option<&str>, password: &str) -> bool {
    stored
        .and_then(Verifier::parse)
        .is_some_and(|v| v.verifies(password))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677's example user (password `pencil`, its salt); the keys were computed with
    /// Python's `hashlib.pbkdf2_hmac` and `hmac`, an implementation independent of this one.
    const PENCIL: &str = "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=";

    #[test]
    fn derives_the_rfc_7677_example() {
        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        assert_eq!(Verifier::derive("pencil", &salt, 4096).to_string(), PENCIL);
    }

    #[test]
    fn parses_what_it_prints() {
        let parsed = Verifier::parse(PENCIL).unwrap();
        assert_eq!(parsed.iterations, 4096);
        assert_eq!(parsed.to_string(), PENCIL);
        let fresh = Verifier::new("pencil");
        assert_eq!(Verifier::parse(&fresh.to_string()), Some(fresh));
    }

    #[test]
    fn verifies_only_the_right_password() {
        assert!(stored_verifies(Some(PENCIL), "pencil"));
        assert!(!stored_verifies(Some(PENCIL), "pencil2"));
        assert!(!stored_verifies(None, "pencil"));
    }

    #[test]
    fn fresh_verifiers_have_fresh_salts() {
        let (a, b) = (Verifier::new("pw"), Verifier::new("pw"));
        assert_ne!(a.salt, b.salt);
        assert_eq!(a.salt.len(), SALT_LEN);
        assert!(a.verifies("pw") && b.verifies("pw"));
    }

    #[test]
    fn anything_but_a_scram_verifier_is_refused() {
        for stored in [
            "md5a3556571e93b0d20722ba62be61e8c2d",
            "pencil",
            "SCRAM-SHA-256$0:W22ZaJ0SNY7soEsUEjb6gQ==$AAAA:AAAA",
            "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$AAAA:AAAA",
            "SCRAM-SHA-256$4096:not base64!$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
            "",
        ] {
            assert_eq!(Verifier::parse(stored), None, "{stored}");
            assert!(!stored_verifies(Some(stored), "pencil"));
        }
    }
}
