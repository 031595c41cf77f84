//! Who the caller is: the tenant's access tokens, the keys that sign and verify them, and the
//! check every gRPC call passes before a handler runs.
//!
//! Access tokens are JWTs signed with the tenant's Ed25519 key (EdDSA only: a token naming
//! any other algorithm, `none` or HS256 included, is refused before its signature is read).
//! The identity service holds the private key; every other service holds only the public
//! keys, several at once during a rotation, each named by its `kid`. A token is accepted
//! when its `kid` is known, its signature verifies, it has not expired, and its `tenant` is
//! this service's tenant: a token of garage A is worthless at garage B even if both keys
//! were ever mixed up.
//!
//! Key formats (what the operator writes into the tenant's Secrets):
//! - signing key: `<kid>:<base64 of the PKCS#8 DER private key>`
//! - verifying keys: `<kid>:<base64url of the 32-byte public key>[,<kid>:<...>]`

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Clock difference between the identity service and a verifier that is tolerated.
const LEEWAY_SECONDS: u64 = 5;

/// How long an access token is valid; a refresh token gets the next one.
pub const ACCESS_TOKEN_LIFETIME: Duration = Duration::from_secs(15 * 60);

/// Metadata key (and HTTP header) that carries the access token.
pub const AUTHORIZATION_HEADER: &str = "authorization";

/// The roles of a tenant's people; each user has exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Role {
    Owner,
    ServiceAdvisor,
    Technician,
    PartsManager,
    Accountant,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Owner,
        Role::ServiceAdvisor,
        Role::Technician,
        Role::PartsManager,
        Role::Accountant,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "OWNER",
            Role::ServiceAdvisor => "SERVICE_ADVISOR",
            Role::Technician => "TECHNICIAN",
            Role::PartsManager => "PARTS_MANAGER",
            Role::Accountant => "ACCOUNTANT",
        }
    }

    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == name)
    }

    /// The `carerp.identity.v1.Role` value.
    pub fn to_proto(self) -> carerp_proto::identity::v1::Role {
        use carerp_proto::identity::v1::Role as Pb;
        match self {
            Role::Owner => Pb::Owner,
            Role::ServiceAdvisor => Pb::ServiceAdvisor,
            Role::Technician => Pb::Technician,
            Role::PartsManager => Pb::PartsManager,
            Role::Accountant => Pb::Accountant,
        }
    }

    /// A `carerp.identity.v1.Role` value; `None` for UNSPECIFIED or an unknown number.
    pub fn from_proto(value: i32) -> Option<Role> {
        use carerp_proto::identity::v1::Role as Pb;
        match Pb::try_from(value).ok()? {
            Pb::Unspecified => None,
            Pb::Owner => Some(Role::Owner),
            Pb::ServiceAdvisor => Some(Role::ServiceAdvisor),
            Pb::Technician => Some(Role::Technician),
            Pb::PartsManager => Some(Role::PartsManager),
            Pb::Accountant => Some(Role::Accountant),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user (or API token) id.
    pub sub: Uuid,
    pub tenant: String,
    pub role: Role,
    /// The session (or API token) the token was issued for: revoking it ends the token.
    pub sid: Uuid,
    pub iat: i64,
    pub exp: i64,
    /// The key that signed the token, also in the header.
    pub kid: String,
}

/// A token or password as received or issued. It has no `Display`, and its `Debug` never shows it, so it cannot end
/// up in a log line by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself, for the one place that must send or check it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Who is calling: read from a verified access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user or API token id; what the product records as "who did it".
    pub subject: Uuid,
    pub role: Role,
    pub session_id: Uuid,
    pub expires_at: DateTime<Utc>,
    /// The token itself, forwarded to the services this call leads to.
    pub token: Secret,
}

impl Principal {
    /// How the actor is written wherever the product says who did something.
    pub fn actor(&self) -> String {
        self.subject.to_string()
    }
}

/// Why a token was not accepted. The message is safe to show: it never repeats the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no access token: send `authorization: Bearer <token>`")]
    Missing,
    #[error("the authorization header is not `Bearer <token>`")]
    Malformed,
    #[error("the access token is not a valid EdDSA-signed JWT")]
    Invalid,
    #[error("the access token was signed by an unknown key {0:?}")]
    UnknownKey(String),
    #[error("the access token has expired")]
    Expired,
    #[error("the access token belongs to another tenant")]
    OtherTenant,
}

/// A key that cannot be read from its configured value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(String);

/// The tenant's private signing key and its id (held by the identity service only).
#[derive(Clone)]
pub struct SigningKey {
    kid: String,
    key: EncodingKey,
    public: [u8; 32],
    pkcs8: Vec<u8>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A fresh random key named `kid`.
    pub fn generate(kid: &str) -> Self {
        let mut seed = [0u8; 32];
        rand::rng().fill(&mut seed);
        Self::from_dalek(kid, ed25519_dalek::SigningKey::from_bytes(&seed))
    }

    fn from_dalek(kid: &str, key: ed25519_dalek::SigningKey) -> Self {
        // Encoding a valid key to PKCS#8 cannot fail; an empty document would be refused
        // when signing, never accepted.
        let pkcs8 = key
            .to_pkcs8_der()
            .map(|doc| doc.as_bytes().to_vec())
            .unwrap_or_default();
        Self {
            kid: kid.to_string(),
            key: EncodingKey::from_ed_der(&pkcs8),
            public: key.verifying_key().to_bytes(),
            pkcs8,
        }
    }

    /// Reads `<kid>:<base64 PKCS#8 DER>`.
    pub fn parse(value: &str) -> Result<Self, KeyError> {
        use ed25519_dalek::pkcs8::DecodePrivateKey;
        let (kid, encoded) = split_kid(value.trim())?;
        let der = STANDARD
            .decode(encoded)
            .map_err(|_| KeyError(format!("signing key {kid:?} is not base64")))?;
        let key = ed25519_dalek::SigningKey::from_pkcs8_der(&der)
            .map_err(|_| KeyError(format!("signing key {kid:?} is not an Ed25519 PKCS#8 key")))?;
        Ok(Self::from_dalek(kid, key))
    }

    /// `<kid>:<base64 PKCS#8 DER>`, what [`SigningKey::parse`] reads: the Secret's value.
    pub fn to_secret_value(&self) -> String {
        format!("{}:{}", self.kid, STANDARD.encode(&self.pkcs8))
    }

    /// `<kid>:<base64url public key>`, one entry of the verifying keys.
    pub fn public_entry(&self) -> String {
        format!("{}:{}", self.kid, URL_SAFE_NO_PAD.encode(self.public))
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The verifying keys of this key alone, for `tenant`.
    pub fn verifying_keys(&self, tenant: &str) -> VerifyingKeys {
        VerifyingKeys {
            tenant: tenant.to_string(),
            keys: vec![(self.kid.clone(), DecodingKey::from_ed_der(&self.public))],
            verified: Arc::default(),
        }
    }

    /// Signs an access token for `subject` in `session`, valid for [`ACCESS_TOKEN_LIFETIME`].
    pub fn issue(
        &self,
        tenant: &str,
        subject: Uuid,
        role: Role,
        session: Uuid,
        now: DateTime<Utc>,
    ) -> Result<(Secret, DateTime<Utc>), KeyError> {
        let expires_at = now
            + chrono::Duration::from_std(ACCESS_TOKEN_LIFETIME)
                .map_err(|err| KeyError(err.to_string()))?;
        let claims = Claims {
            sub: subject,
            tenant: tenant.to_string(),
            role,
            sid: session,
            iat: now.timestamp(),
            exp: expires_at.timestamp(),
            kid: self.kid.clone(),
        };
        self.sign(&claims).map(|token| (token, expires_at))
    }

    /// Signs arbitrary claims (tests forge expired or foreign tokens with it).
    pub fn sign(&self, claims: &Claims) -> Result<Secret, KeyError> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.key)
            .map(Secret)
            .map_err(|err| KeyError(format!("cannot sign a token: {err}")))
    }
}

fn split_kid(value: &str) -> Result<(&str, &str), KeyError> {
    let (kid, key) = value
        .split_once(':')
        .ok_or_else(|| KeyError("expected <kid>:<key>".into()))?;
    let kid = kid.trim();
    if kid.is_empty()
        || kid.len() > 64
        || !kid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(KeyError(format!(
            "key id {kid:?} must be 1 to 64 letters, digits, '-', '_' or '.'"
        )));
    }
    Ok((kid, key.trim()))
}

/// The public keys a service accepts tokens of, and the tenant they must be for.
#[derive(Clone)]
pub struct VerifyingKeys {
    tenant: String,
    keys: Vec<(String, DecodingKey)>,
    /// Tokens verified before, by the SHA-256 of the token: a client sends the same token
    /// for 15 minutes, and checking an Ed25519 signature costs tens of microseconds, a
    /// lookup one. Expiry is checked again on every hit.
    verified: Arc<Mutex<HashMap<[u8; 32], Principal>>>,
}

/// How many verified tokens are remembered; past it, the expired ones go (or all, when none
/// has expired), so memory stays bounded whatever clients send.
const VERIFIED_CACHE: usize = 10_000;

impl fmt::Debug for VerifyingKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kids: Vec<&str> = self.keys.iter().map(|(kid, _)| kid.as_str()).collect();
        f.debug_struct("VerifyingKeys")
            .field("tenant", &self.tenant)
            .field("kids", &kids)
            .finish()
    }
}

impl VerifyingKeys {
    /// Reads `<kid>:<base64url key>[,<kid>:<base64url key>...]`.
    pub fn parse(tenant: &str, value: &str) -> Result<Self, KeyError> {
        let mut keys = Vec::new();
        for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (kid, encoded) = split_kid(entry)?;
            let public = URL_SAFE_NO_PAD
                .decode(encoded.trim_end_matches('='))
                .map_err(|_| KeyError(format!("public key {kid:?} is not base64url")))?;
            let public: [u8; 32] = public
                .try_into()
                .map_err(|_| KeyError(format!("public key {kid:?} is not 32 bytes (Ed25519)")))?;
            ed25519_dalek::VerifyingKey::from_bytes(&public)
                .map_err(|_| KeyError(format!("public key {kid:?} is not an Ed25519 key")))?;
            if keys.iter().any(|(known, _)| known == kid) {
                return Err(KeyError(format!("key id {kid:?} is listed twice")));
            }
            keys.push((kid.to_string(), DecodingKey::from_ed_der(&public)));
        }
        if keys.is_empty() {
            return Err(KeyError("no public key listed".into()));
        }
        Ok(Self {
            tenant: tenant.to_string(),
            keys,
            verified: Arc::default(),
        })
    }

    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// Checks an `authorization` header value: `Bearer <token>`.
    pub fn verify_header(&self, header: Option<&str>) -> Result<Principal, TokenError> {
        let header = header.ok_or(TokenError::Missing)?;
        let token = bearer_token(header).ok_or(TokenError::Malformed)?;
        self.verify(token)
    }

    /// Checks a token: EdDSA only, a known `kid`, a valid signature, not expired, this tenant.
    /// A token verified before is only checked for expiry.
    pub fn verify(&self, token: &str) -> Result<Principal, TokenError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let known = self.verified_cache().get(&digest).cloned();
        if let Some(principal) = known {
            // The same leeway as the full check's.
            return if principal.expires_at + chrono::Duration::seconds(LEEWAY_SECONDS as i64)
                > Utc::now()
            {
                Ok(principal)
            } else {
                Err(TokenError::Expired)
            };
        }
        let principal = self.verify_signed(token)?;
        let mut cache = self.verified_cache();
        if cache.len() >= VERIFIED_CACHE {
            let now = Utc::now();
            cache.retain(|_, p| p.expires_at > now);
            if cache.len() >= VERIFIED_CACHE {
                cache.clear();
            }
        }
        cache.insert(digest, principal.clone());
        Ok(principal)
    }

    fn verified_cache(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Principal>> {
        // The map is consistent after any panic: entries are inserted whole.
        self.verified
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn verify_signed(&self, token: &str) -> Result<Principal, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        if header.alg != Algorithm::EdDSA {
            return Err(TokenError::Invalid);
        }
        let kid = header.kid.ok_or(TokenError::Invalid)?;
        let key = self
            .keys
            .iter()
            .find(|(known, _)| *known == kid)
            .map(|(_, key)| key)
            .ok_or_else(|| TokenError::UnknownKey(truncate(&kid)))?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = LEEWAY_SECONDS;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let data =
            jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|err| {
                match err.kind() {
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                    _ => TokenError::Invalid,
                }
            })?;
        let claims = data.claims;
        if claims.kid != kid {
            return Err(TokenError::Invalid);
        }
        if claims.tenant != self.tenant {
            return Err(TokenError::OtherTenant);
        }
        Ok(Principal {
            subject: claims.sub,
            role: claims.role,
            session_id: claims.sid,
            expires_at: DateTime::from_timestamp(claims.exp, 0).unwrap_or_default(),
            token: Secret(token.to_string()),
        })
    }
}

/// Letters and digits without the ones people confuse (0/O, 1/l/I).
const ONE_TIME_ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
/// 16 of 56 symbols: about 93 bits, far past any guessing, and short enough to type once.
pub const ONE_TIME_PASSWORD_LEN: usize = 16;

/// A random password to be typed once and then changed: a new user's, a reset's, a tenant's
/// first owner's.
pub fn one_time_password() -> Secret {
    let mut rng = rand::rng();
    let password: String = (0..ONE_TIME_PASSWORD_LEN)
        .map(|_| char::from(ONE_TIME_ALPHABET[rng.random_range(0..ONE_TIME_ALPHABET.len())]))
        .collect();
    Secret::new(password)
}

/// The token of `Bearer <token>` (the scheme is case-insensitive, RFC 6750).
pub fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && !token.contains(' '))
        .then_some(token)
}

fn truncate(value: &str) -> String {
    value.chars().take(64).collect()
}

/// A channel whose every call carries one token: a client acting as one caller (the demo
/// seed signed in as the owner, tests).
pub type AuthedChannel =
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, BearerInterceptor>;

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct BearerInterceptor(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for BearerInterceptor {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert(AUTHORIZATION_HEADER, self.0.clone());
        Ok(request)
    }
}

/// `channel`, every call carrying `token`; a token that is no valid header value (it never
/// is, tokens are base64url) is refused here rather than sent.
pub fn with_token(
    channel: tonic::transport::Channel,
    token: &Secret,
) -> Result<AuthedChannel, TokenError> {
    let value = format!("Bearer {}", token.expose())
        .parse()
        .map_err(|_| TokenError::Malformed)?;
    Ok(tonic::service::interceptor::InterceptedService::new(
        channel,
        BearerInterceptor(value),
    ))
}

/// One key per test process, shared by every in-process server and the tokens tests mint.
pub mod testing {
    use super::*;

    static KEY: LazyLock<SigningKey> = LazyLock::new(|| SigningKey::generate("test"));

    /// The signing key of this test process.
    pub fn signing_key() -> &'static SigningKey {
        &KEY
    }

    /// The verifying keys of this test process, for `tenant`.
    pub fn verifying_keys(tenant: &str) -> VerifyingKeys {
        KEY.verifying_keys(tenant)
    }

    /// A valid access token of a new user with `role` at `tenant`.
    pub fn token(tenant: &str, role: Role) -> Secret {
        token_for(tenant, Uuid::now_v7(), role)
    }

    /// A valid access token of `subject` with `role` at `tenant`.
    pub fn token_for(tenant: &str, subject: Uuid, role: Role) -> Secret {
        match KEY.issue(tenant, subject, role, Uuid::now_v7(), Utc::now()) {
            Ok((token, _)) => token,
            Err(err) => panic!("test token: {err}"),
        }
    }

    /// `tonic::Request` metadata value for `token`.
    pub fn bearer(token: &Secret) -> tonic::metadata::MetadataValue<tonic::metadata::Ascii> {
        match format!("Bearer {}", token.expose()).parse() {
            Ok(value) => value,
            Err(err) => panic!("bearer metadata: {err}"),
        }
    }

    /// `message` as a request carrying `token`.
    pub fn request<T>(token: &Secret, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request
            .metadata_mut()
            .insert(AUTHORIZATION_HEADER, bearer(token));
        request
    }

    pub use super::AuthedChannel;

    /// Connects to `url` as a new user with `role` at `tenant`.
    pub async fn connect(url: impl Into<String>, tenant: &str, role: Role) -> AuthedChannel {
        connect_with(url, &token(tenant, role)).await
    }

    /// Connects to `url`, every call carrying `token`.
    pub async fn connect_with(url: impl Into<String>, token: &Secret) -> AuthedChannel {
        let url: String = url.into();
        let channel = match tonic::transport::Endpoint::from_shared(url.clone()) {
            Ok(endpoint) => match endpoint.connect().await {
                Ok(channel) => channel,
                Err(err) => panic!("connect {url}: {err}"),
            },
            Err(err) => panic!("endpoint {url}: {err}"),
        };
        match with_token(channel, token) {
            Ok(channel) => channel,
            Err(err) => panic!("token header: {err}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TENANT: &str = "acme";

    fn claims(key: &SigningKey, tenant: &str, exp_offset: i64) -> Claims {
        let now = Utc::now().timestamp();
        Claims {
            sub: Uuid::now_v7(),
            tenant: tenant.into(),
            role: Role::Technician,
            sid: Uuid::now_v7(),
            iat: now,
            exp: now + exp_offset,
            kid: key.kid().into(),
        }
    }

    #[test]
    fn a_token_issued_by_the_key_verifies_with_its_claims() {
        let key = SigningKey::generate("k1");
        let subject = Uuid::now_v7();
        let (token, expires_at) = key
            .issue(
                TENANT,
                subject,
                Role::Accountant,
                Uuid::now_v7(),
                Utc::now(),
            )
            .unwrap();
        let principal = key.verifying_keys(TENANT).verify(token.expose()).unwrap();
        assert_eq!(principal.subject, subject);
        assert_eq!(principal.role, Role::Accountant);
        assert_eq!(principal.expires_at.timestamp(), expires_at.timestamp());
    }

    #[test]
    fn keys_round_trip_through_their_secret_values() {
        let key = SigningKey::generate("2026-12");
        let parsed = SigningKey::parse(&key.to_secret_value()).unwrap();
        let keys = VerifyingKeys::parse(TENANT, &key.public_entry()).unwrap();
        let token = parsed.sign(&claims(&parsed, TENANT, 60)).unwrap();
        assert!(keys.verify(token.expose()).is_ok());
    }

    #[test]
    fn two_keys_verify_during_a_rotation() {
        let old = SigningKey::generate("old");
        let new = SigningKey::generate("new");
        let keys = VerifyingKeys::parse(
            TENANT,
            &format!("{},{}", new.public_entry(), old.public_entry()),
        )
        .unwrap();
        for key in [&old, &new] {
            let token = key.sign(&claims(key, TENANT, 60)).unwrap();
            assert!(keys.verify(token.expose()).is_ok(), "{}", key.kid());
        }
    }

    #[test]
    fn expired_foreign_and_unknown_key_tokens_are_refused() {
        let key = SigningKey::generate("k1");
        let keys = key.verifying_keys(TENANT);
        let expired = key.sign(&claims(&key, TENANT, -60)).unwrap();
        assert_eq!(keys.verify(expired.expose()), Err(TokenError::Expired));
        let foreign = key.sign(&claims(&key, "other", 60)).unwrap();
        assert_eq!(keys.verify(foreign.expose()), Err(TokenError::OtherTenant));
        let stranger = SigningKey::generate("k2");
        let unknown = stranger.sign(&claims(&stranger, TENANT, 60)).unwrap();
        assert_eq!(
            keys.verify(unknown.expose()),
            Err(TokenError::UnknownKey("k2".into()))
        );
        // Same kid, another key: the signature does not verify.
        let impostor = SigningKey::generate("k1");
        let forged = impostor.sign(&claims(&impostor, TENANT, 60)).unwrap();
        assert_eq!(keys.verify(forged.expose()), Err(TokenError::Invalid));
    }

    #[test]
    fn a_remembered_token_still_expires_and_a_different_one_is_checked_in_full() {
        let key = SigningKey::generate("k1");
        let keys = key.verifying_keys(TENANT);
        let now = Utc::now().timestamp();
        let soon = key
            .sign(&Claims {
                exp: now + 1,
                ..claims(&key, TENANT, 0)
            })
            .unwrap();
        assert!(keys.verify(soon.expose()).is_ok());
        assert!(keys.verify(soon.expose()).is_ok(), "remembered");
        // Past expiry and leeway, the remembered token is refused like any other.
        keys.verified_cache()
            .values_mut()
            .for_each(|p| p.expires_at = Utc::now() - chrono::Duration::seconds(10));
        assert_eq!(keys.verify(soon.expose()), Err(TokenError::Expired));
        let impostor = SigningKey::generate("k1");
        let forged = impostor.sign(&claims(&impostor, TENANT, 60)).unwrap();
        assert_eq!(keys.verify(forged.expose()), Err(TokenError::Invalid));
    }

    #[test]
    fn a_tampered_payload_is_refused() {
        let key = SigningKey::generate("k1");
        let token = key.sign(&claims(&key, TENANT, 60)).unwrap();
        let parts: Vec<&str> = token.expose().split('.').collect();
        let mut payload: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        payload["role"] = "OWNER".into();
        let tampered = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(payload.to_string()),
            parts[2]
        );
        assert_eq!(
            key.verifying_keys(TENANT).verify(&tampered),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn alg_none_and_hs256_confusion_are_refused() {
        let key = SigningKey::generate("k1");
        let keys = key.verifying_keys(TENANT);
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(&key, TENANT, 60)).unwrap());
        let none = format!(
            "{}.{body}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT","kid":"k1"}"#)
        );
        assert_eq!(keys.verify(&none), Err(TokenError::Invalid));
        // HS256 keyed with the public key, the classic confusion attack.
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("k1".into());
        let hs = jsonwebtoken::encode(
            &header,
            &claims(&key, TENANT, 60),
            &EncodingKey::from_secret(&key.public).unwrap(),
        )
        .unwrap();
        assert_eq!(keys.verify(&hs), Err(TokenError::Invalid));
    }

    #[test]
    fn authorization_headers_are_read_strictly() {
        let key = SigningKey::generate("k1");
        let keys = key.verifying_keys(TENANT);
        let token = key.sign(&claims(&key, TENANT, 60)).unwrap();
        assert_eq!(keys.verify_header(None), Err(TokenError::Missing));
        for bad in ["", "Bearer", "Bearer ", "Basic abc", "token", "Bearer a b"] {
            assert_eq!(
                keys.verify_header(Some(bad)),
                Err(TokenError::Malformed),
                "{bad:?}"
            );
        }
        assert!(
            keys.verify_header(Some(&format!("bearer {}", token.expose())))
                .is_ok()
        );
        assert_eq!(
            keys.verify_header(Some("Bearer not.a.jwt")),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn malformed_key_values_are_refused_with_a_reason() {
        for (value, expected) in [
            ("", "no public key listed"),
            ("nokid", "expected <kid>:<key>"),
            ("k1:!!!", "not base64url"),
            ("k1:AAAA", "not 32 bytes"),
            ("bad kid:AAAA", "must be 1 to 64"),
        ] {
            let err = VerifyingKeys::parse(TENANT, value).unwrap_err();
            assert!(err.0.contains(expected), "{value:?}: {err}");
        }
        let key = SigningKey::generate("k1");
        let twice = format!("{},{}", key.public_entry(), key.public_entry());
        assert!(VerifyingKeys::parse(TENANT, &twice).is_err());
        assert!(SigningKey::parse("k1:AAAA").is_err());
    }

    #[test]
    fn secrets_do_not_print() {
        let token = Secret::new("eyJhbGciOi.secret.value");
        assert!(!format!("{token:?}").contains("secret"));
        let key = SigningKey::generate("k1");
        assert!(!format!("{key:?}").contains(&key.to_secret_value()));
    }
}
