//! Passwords and tokens: hashing, checking and generating them. Every value that would let
//! someone in travels as a [`Secret`] (its `Debug` is redacted), and only hashes are stored.
//!
//! Argon2id is slow on purpose; callers run [`hash_password`] and [`verify_password`] on the
//! blocking pool ([`tokio::task::spawn_blocking`]) so they never stall the async workers.

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use carerp_kit::auth::Secret;
use rand::Rng;
use sha2::{Digest, Sha256};

/// Argon2id at the OWASP Password Storage Cheat Sheet's first recommendation: 19 MiB of
/// memory (m = 19456 KiB), 2 passes (t = 2), 1 lane (p = 1). About 30 ms on one core in an
/// optimised build; the parameters are stored in each hash, so raising them later still
/// verifies old hashes.
pub const ARGON2_M_COST_KIB: u32 = 19_456;
pub const ARGON2_T_COST: u32 = 2;
pub const ARGON2_P_COST: u32 = 1;

/// One-time passwords are the kit's, shared with the operator's first-owner password.
pub use carerp_kit::auth::{ONE_TIME_PASSWORD_LEN, one_time_password};

#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

impl HashError {
    pub(crate) fn new(reason: impl Into<String>) -> Self {
        Self(reason.into())
    }
}

fn argon2() -> Result<Argon2<'static>, HashError> {
    let params = Params::new(ARGON2_M_COST_KIB, ARGON2_T_COST, ARGON2_P_COST, None)
        .map_err(|err| HashError(err.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// The Argon2id PHC string of `password`, with a fresh random salt.
pub fn hash_password(password: &Secret) -> Result<Secret, HashError> {
    let hash = argon2()?
        .hash_password(password.expose().as_bytes())
        .map_err(|err| HashError(err.to_string()))?;
    Ok(Secret::new(hash.to_string()))
}

/// Whether `password` matches the PHC string `hash`. A malformed hash matches nothing.
pub fn verify_password(password: &Secret, hash: &Secret) -> bool {
    match argon2() {
        Ok(argon2) => argon2
            .verify_password(password.expose().as_bytes(), hash.expose())
            .is_ok(),
        Err(_) => false,
    }
}

/// A hash of a password nobody knows, to verify against when the email is unknown: the
/// answer then takes as long as for a known email with a wrong password.
pub fn dummy_hash() -> Result<Secret, HashError> {
    hash_password(&random_token())
}

/// 32 random bytes, base64url: a refresh token or the secret part of an API token.
pub fn random_token() -> Secret {
    let mut bytes = [0u8; 32];
    rand::rng().fill(&mut bytes);
    Secret::new(URL_SAFE_NO_PAD.encode(bytes))
}

/// SHA-256 of a token: what is stored and looked up. Tokens are 256 random bits, so a fast
/// hash is enough (there is nothing to guess, unlike a password).
pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Compares two hashes in constant time.
pub fn hashes_match(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_verifies_against_its_hash_only() {
        let password = Secret::new("correct-horse-battery-staple");
        let hash = hash_password(&password).unwrap();
        assert!(hash.expose().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify_password(&password, &hash));
        assert!(!verify_password(&Secret::new("wrong"), &hash));
        assert!(!verify_password(&password, &Secret::new("not a hash")));
    }

    #[test]
    fn one_time_passwords_are_long_unambiguous_and_pass_the_policy() {
        for _ in 0..20 {
            let otp = one_time_password();
            assert_eq!(otp.expose().len(), ONE_TIME_PASSWORD_LEN);
            assert!(!otp.expose().contains(['0', 'O', '1', 'l', 'I']));
            crate::domain::check_new_password("p", otp.expose(), &[]).unwrap();
        }
    }

    #[test]
    fn tokens_are_random_and_hashes_compare() {
        let (a, b) = (random_token(), random_token());
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), 43);
        assert!(hashes_match(
            &token_hash(a.expose()),
            &token_hash(a.expose())
        ));
        assert!(!hashes_match(
            &token_hash(a.expose()),
            &token_hash(b.expose())
        ));
        assert!(!format!("{a:?}").contains(a.expose()));
    }
}
