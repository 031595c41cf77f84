//! Per-tenant NATS credentials: the operator signs each tenant a NATS user (decentralized JWT
//! auth) whose permissions reach the tenant's subjects and the JetStream API of its two
//! streams, and nothing else.
//!
//! Shape, and why (`docs/nats-auth.md` has the whole story):
//!
//! - The broker runs in operator mode (`operator:` JWT, `resolver: MEMORY`): it trusts one
//!   application account, `CARERP`, preloaded in its configuration once. The Car ERP operator
//!   holds a signing key of that account ([`Issuer`]) and signs one **user** per tenant.
//!   A user JWT is checked by its signature chain alone, so a new tenant needs no change on
//!   the broker: no reload, no account push, no system-account credentials in the operator.
//! - One account for all tenants, with users limited by permissions, rather than an account per
//!   tenant: account JWTs would have to be pushed to the broker's resolver on every new tenant
//!   (a `full` resolver and system-account credentials in the operator), the streams would
//!   live in per-tenant accounts that the operator (streams, dead-letter replay) could reach
//!   only through a connection per tenant. What an account would add beyond permissions is
//!   per-tenant JetStream quotas; that is left for when a plan needs it.
//! - Permissions are allow-lists ([`tenant_permissions`]): publish on `carerp.<tenant>.>`
//!   and `carerp-dlq.<tenant>.>`, the JetStream API subjects of the tenant's streams that the
//!   services use (stream info, message get, consumer create/info/next/delete, acks; message
//!   delete only on the dead-letter stream, which replay empties), and subscribe on
//!   `carerp.<tenant>.>` and the tenant's own inbox prefix
//!   ([`carerp_kit::messaging::inbox_prefix`]): `_INBOX.>` would let one tenant read every
//!   other's JetStream replies. Creating, updating, purging or deleting a stream is the
//!   operator's alone.
//!
//! JWTs are built here (header, claims, Ed25519 signature by an nkey) rather than with a
//! crate: the one published `nats-jwt` crate issues no operator JWTs, which the tests' private
//! broker and `carerp-operator nats-auth init` need, and the format is small and stable
//! (nats-io/jwt v2). The real `nats-server` accepting and refusing them is the test.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use nkeys::{KeyPair, KeyPairType};
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256, Sha512_256};

use carerp_kit::auth::Secret;
use carerp_kit::envelope::{dlq_stream_name, stream_name};
use carerp_kit::messaging::inbox_prefix;

/// The Secret in each tenant namespace holding the tenant's `.creds` file.
pub const CREDENTIALS_SECRET: &str = "carerp-nats-credentials";
/// Its key: the `.creds` file (user JWT and nkey seed).
pub const CREDENTIALS_KEY: &str = "nats.creds";
/// Where the pods find it, and the variable that tells them.
pub const CREDENTIALS_DIR: &str = "/var/run/secrets/carerp/nats";
pub const CREDENTIALS_ENV: &str = "NATS_CREDENTIALS_FILE";
/// On the Secret: which issuer and permissions signed it, so a reconcile keeps credentials
/// that are still right and reissues those that are not (a new signing key, new permissions).
pub const ISSUER_ANNOTATION: &str = "carerp.io/nats-credentials-issuer";

/// What a NATS user may publish and subscribe to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Permissions {
    pub publish: Vec<String>,
    pub subscribe: Vec<String>,
}

/// The tenant's permissions: its subjects, the JetStream API of its own two streams, its own
/// inboxes.
pub fn tenant_permissions(tenant: &str) -> Permissions {
    let events = stream_name(tenant);
    let dead = dlq_stream_name(tenant);
    let mut publish = vec![
        format!("carerp.{tenant}.>"),
        format!("carerp-dlq.{tenant}.>"),
    ];
    for stream in [&events, &dead] {
        publish.extend([
            format!("$JS.API.STREAM.INFO.{stream}"),
            format!("$JS.API.STREAM.MSG.GET.{stream}"),
            format!("$JS.API.DIRECT.GET.{stream}"),
            format!("$JS.API.DIRECT.GET.{stream}.>"),
            // Ephemeral and ordered consumers; `.>` is the 2.9+ form with name and filter.
            format!("$JS.API.CONSUMER.CREATE.{stream}"),
            format!("$JS.API.CONSUMER.CREATE.{stream}.>"),
            format!("$JS.API.CONSUMER.DURABLE.CREATE.{stream}.*"),
            format!("$JS.API.CONSUMER.INFO.{stream}.*"),
            format!("$JS.API.CONSUMER.DELETE.{stream}.*"),
            format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.*"),
            // Acknowledgements: `$JS.ACK.<stream>...` and, from 2.10, with domain and
            // account hash in front.
            format!("$JS.ACK.{stream}.>"),
            format!("$JS.ACK.*.*.{stream}.>"),
        ]);
    }
    // A replayed dead letter is removed from the dead-letter stream; events are never removed.
    publish.push(format!("$JS.API.STREAM.MSG.DELETE.{dead}"));
    Permissions {
        publish,
        subscribe: vec![
            format!("carerp.{tenant}.>"),
            format!("{}.>", inbox_prefix(tenant)),
        ],
    }
}

/// A NATS user's credentials, in the `.creds` file format the clients read.
pub struct Credentials {
    /// The user's public key (`U...`): what a revocation names.
    pub user: String,
    pub jwt: String,
    seed: Secret,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// The `.creds` file: the JWT and the seed, between the markers `nats` clients look for.
    pub fn creds_file(&self) -> Secret {
        Secret::new(format!(
            "-----BEGIN NATS USER JWT-----\n{}\n------END NATS USER JWT------\n\n\
             ************************* IMPORTANT *************************\n\
             NKEY Seed printed below can be used to sign and prove identity.\n\
             NKEYs are sensitive and should be treated as secrets.\n\n\
             -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n",
            self.jwt,
            self.seed.expose()
        ))
    }
}

/// Why an account signing key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    #[error("cannot read the NATS account signing key from {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the NATS account signing key is not an account nkey seed (SA...)")]
    NotAnAccountSeed,
    #[error("the NATS account {0:?} is not an account public key (A...)")]
    NotAnAccount(String),
    #[error("signing failed: {0}")]
    Sign(String),
}

/// Signs NATS users of the Car ERP account: a signing key of the account (or its identity
/// key) and the account it belongs to.
pub struct Issuer {
    signing: KeyPair,
    account: String,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("signing_key", &self.signing.public_key())
            .field("account", &self.account)
            .finish()
    }
}

impl Issuer {
    /// From an account seed (`SA...`). `account` is the account's public key when the seed is
    /// one of its signing keys (as it should be); without it the seed is the account's own key.
    pub fn from_seed(seed: &str, account: Option<&str>) -> Result<Self, IssuerError> {
        let signing = KeyPair::from_seed(seed.trim()).map_err(|_| IssuerError::NotAnAccountSeed)?;
        if !matches!(signing.key_pair_type(), KeyPairType::Account) {
            return Err(IssuerError::NotAnAccountSeed);
        }
        let account = match account.map(str::trim) {
            Some(account) => {
                let valid = KeyPair::from_public_key(account)
                    .is_ok_and(|key| matches!(key.key_pair_type(), KeyPairType::Account));
                if !valid {
                    return Err(IssuerError::NotAnAccount(account.to_string()));
                }
                account.to_string()
            }
            None => signing.public_key(),
        };
        Ok(Self { signing, account })
    }

    /// [`Issuer::from_seed`] of a file (a mounted Secret).
    pub fn load(path: &Path, account: Option<&str>) -> Result<Self, IssuerError> {
        let seed = std::fs::read_to_string(path).map_err(|source| IssuerError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_seed(&seed, account)
    }

    /// The account the users belong to.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// A new user for `tenant`, limited to [`tenant_permissions`].
    pub fn tenant_credentials(&self, tenant: &str) -> Result<Credentials, IssuerError> {
        self.user(
            &format!("carerp-{tenant}"),
            Some(&tenant_permissions(tenant)),
        )
    }

    /// A user without limits inside the account, for the operator's own connection: it
    /// creates, updates and deletes the tenants' streams and replays dead letters.
    pub fn operator_credentials(&self) -> Result<Credentials, IssuerError> {
        self.user("carerp-operator", None)
    }

    /// Changes when the issuer or the tenant's permissions do: a Secret annotated with
    /// another value holds credentials to reissue.
    pub fn fingerprint(&self, tenant: &str) -> String {
        let permissions = serde_json::to_string(&tenant_permissions(tenant)).unwrap_or_default();
        let digest = Sha256::digest(
            format!(
                "{}\n{}\n{permissions}",
                self.account,
                self.signing.public_key()
            )
            .as_bytes(),
        );
        digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
    }

    fn user(
        &self,
        name: &str,
        permissions: Option<&Permissions>,
    ) -> Result<Credentials, IssuerError> {
        let user = KeyPair::new_user();
        let mut nats = json!({
            "type": "user",
            "version": 2,
            "subs": -1,
            "data": -1,
            "payload": -1,
        });
        if let Some(permissions) = permissions {
            nats["pub"] = json!({ "allow": permissions.publish });
            nats["sub"] = json!({ "allow": permissions.subscribe });
        }
        if self.account != self.signing.public_key() {
            nats["issuer_account"] = json!(self.account);
        }
        let jwt = encode(&self.signing, &user.public_key(), name, nats)?;
        let seed = user
            .seed()
            .map_err(|err| IssuerError::Sign(err.to_string()))?;
        Ok(Credentials {
            user: user.public_key(),
            jwt,
            seed: Secret::new(seed),
        })
    }
}

/// A signed JWT of nats-io/jwt v2: `{"typ":"JWT","alg":"ed25519-nkey"}`, the claims with
/// `jti` (a hash of the other claims), `iat`, `iss` (the signer), `sub` and `name`, signed by
/// `signer`.
fn encode(
    signer: &KeyPair,
    subject: &str,
    name: &str,
    nats: serde_json::Value,
) -> Result<String, IssuerError> {
    let mut claims = BTreeMap::from([
        ("iat", json!(chrono::Utc::now().timestamp())),
        ("iss", json!(signer.public_key())),
        ("name", json!(name)),
        ("sub", json!(subject)),
        ("nats", nats),
    ]);
    let unhashed = serde_json::to_vec(&claims).map_err(|err| IssuerError::Sign(err.to_string()))?;
    claims.insert(
        "jti",
        json!(data_encoding::BASE32_NOPAD.encode(&Sha512_256::digest(&unhashed))),
    );
    let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let body = URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&claims).map_err(|err| IssuerError::Sign(err.to_string()))?);
    let signed = format!("{header}.{body}");
    let signature = signer
        .sign(signed.as_bytes())
        .map_err(|err| IssuerError::Sign(err.to_string()))?;
    Ok(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature)))
}

/// The broker's side of the trust, made once per installation by `carerp-operator nats-auth
/// init` (or by `nsc`): an operator key, a system account, and the `CARERP` account with a
/// signing key, whose seed the Car ERP operator is given.
pub struct Trust {
    operator: KeyPair,
    system: KeyPair,
    account: KeyPair,
    signing: KeyPair,
}

impl Trust {
    pub fn generate() -> Self {
        Self {
            operator: KeyPair::new_operator(),
            system: KeyPair::new_account(),
            account: KeyPair::new_account(),
            signing: KeyPair::new_account(),
        }
    }

    /// The account's public key (`CARERP_NATS_ACCOUNT`).
    pub fn account(&self) -> String {
        self.account.public_key()
    }

    /// The signing key's seed (the operator's `CARERP_NATS_ACCOUNT_SIGNING_KEY_FILE`).
    pub fn signing_seed(&self) -> Result<Secret, IssuerError> {
        self.signing
            .seed()
            .map(Secret::new)
            .map_err(|err| IssuerError::Sign(err.to_string()))
    }

    /// The issuer the Car ERP operator makes of [`Trust::signing_seed`].
    pub fn issuer(&self) -> Result<Issuer, IssuerError> {
        Issuer::from_seed(self.signing_seed()?.expose(), Some(&self.account()))
    }

    /// The authorization part of `nats-server.conf`: the operator JWT, the system account,
    /// and both accounts preloaded in a memory resolver. Holds no secret (public keys and
    /// signed claims only).
    pub fn server_config(&self) -> Result<String, IssuerError> {
        let unlimited = json!({
            "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
            "wildcards": true, "conn": -1, "leaf": -1,
        });
        let mut with_jetstream = unlimited.clone();
        for limit in ["mem_storage", "disk_storage", "streams", "consumer"] {
            with_jetstream[limit] = json!(-1);
        }
        let operator = encode(
            &self.operator,
            &self.operator.public_key(),
            "carerp",
            json!({ "type": "operator", "version": 2, "system_account": self.system.public_key() }),
        )?;
        let system = encode(
            &self.operator,
            &self.system.public_key(),
            "SYS",
            json!({ "type": "account", "version": 2, "limits": unlimited }),
        )?;
        let account = encode(
            &self.operator,
            &self.account.public_key(),
            "CARERP",
            json!({
                "type": "account",
                "version": 2,
                "limits": with_jetstream,
                "signing_keys": [self.signing.public_key()],
                "default_permissions": { "pub": {}, "sub": {} },
            }),
        )?;
        Ok(format!(
            "# Car ERP: decentralized JWT auth (carerp-operator nats-auth init)\n\
             operator: {operator}\n\
             system_account: {sys}\n\
             resolver: MEMORY\n\
             resolver_preload: {{\n  {sys}: {system}\n  {acc}: {account}\n}}\n",
            sys = self.system.public_key(),
            acc = self.account.public_key(),
        ))
    }
}

/// Makes sure the tenant's credentials Secret holds credentials of this issuer with the
/// tenant's permissions in force (issuing new ones otherwise) and answers their hash, for the
/// pod templates. Credentials still right are kept: pods restart only when they change.
pub async fn ensure_secret(
    client: &kube::Client,
    tenant: &crate::crd::CarErpTenant,
    config: &crate::config::OperatorConfig,
    namespace: &str,
    issuer: &Issuer,
) -> Result<String, crate::controller::Error> {
    use k8s_openapi::api::core::v1::Secret as KubeSecret;
    use kube::ResourceExt as _;
    use kube::api::{Api, Patch, PatchParams};

    let name = tenant.name_any();
    let fingerprint = issuer.fingerprint(&name);
    let api: Api<KubeSecret> = Api::namespaced(client.clone(), namespace);
    let kube_err = |doing: &str| {
        let doing = doing.to_string();
        move |source| crate::controller::Error::Kube { doing, source }
    };
    let existing = api
        .get_opt(CREDENTIALS_SECRET)
        .await
        .map_err(kube_err(&format!("read Secret/{CREDENTIALS_SECRET}")))?;
    let current = existing.as_ref().and_then(|secret| {
        let issued_by = secret.annotations().get(ISSUER_ANNOTATION)?;
        let creds = secret.data.as_ref()?.get(CREDENTIALS_KEY)?;
        let creds = std::str::from_utf8(&creds.0).ok()?;
        (*issued_by == fingerprint).then(|| crate::desired::nats_credentials_hash(creds))
    });
    if let Some(hash) = current {
        return Ok(hash);
    }
    let credentials = issuer.tenant_credentials(&name)?;
    let file = credentials.creds_file();
    let secret =
        crate::desired::nats_credentials_secret(tenant, config, file.expose(), &fingerprint);
    api.patch(
        CREDENTIALS_SECRET,
        &PatchParams::apply(crate::controller::MANAGER).force(),
        &Patch::Apply(&secret),
    )
    .await
    .map_err(kube_err(&format!("apply Secret/{CREDENTIALS_SECRET}")))?;
    tracing::info!(tenant = %name, user = %credentials.user, "NATS credentials issued");
    Ok(crate::desired::nats_credentials_hash(file.expose()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(jwt: &str) -> serde_json::Value {
        let body = jwt.split('.').nth(1).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).unwrap()).unwrap()
    }

    #[test]
    fn a_tenant_user_is_signed_by_the_signing_key_for_the_account_with_its_permissions() {
        let trust = Trust::generate();
        let issuer = trust.issuer().unwrap();
        let creds = issuer.tenant_credentials("acme").unwrap();
        let (header, rest) = creds.jwt.split_once('.').unwrap();
        let (body, signature) = rest.split_once('.').unwrap();
        assert_eq!(
            URL_SAFE_NO_PAD.decode(header).unwrap(),
            br#"{"typ":"JWT","alg":"ed25519-nkey"}"#
        );
        let signing = KeyPair::from_public_key(&issuer.signing.public_key()).unwrap();
        signing
            .verify(
                format!("{header}.{body}").as_bytes(),
                &URL_SAFE_NO_PAD.decode(signature).unwrap(),
            )
            .unwrap();
        let claims = claims(&creds.jwt);
        assert_eq!(claims["sub"], creds.user.as_str());
        assert_eq!(claims["nats"]["issuer_account"], trust.account().as_str());
        assert_eq!(claims["nats"]["type"], "user");
        let publish = claims["nats"]["pub"]["allow"].as_array().unwrap();
        assert!(publish.contains(&json!("carerp.acme.>")));
        assert!(publish.contains(&json!("$JS.API.STREAM.INFO.CARERP_ACME")));
        assert!(
            !publish
                .iter()
                .any(|s| s.as_str().unwrap().contains("STREAM.DELETE")),
            "{publish:?}"
        );
        assert_eq!(
            claims["nats"]["sub"]["allow"],
            json!(["carerp.acme.>", "_CARERP_INBOX.acme.>"])
        );
    }

    #[test]
    fn the_creds_file_is_what_the_client_reads_and_debug_shows_no_seed() {
        let issuer = Trust::generate().issuer().unwrap();
        let creds = issuer.tenant_credentials("acme").unwrap();
        let file = creds.creds_file();
        assert!(
            async_nats::ConnectOptions::with_credentials(file.expose()).is_ok(),
            "async-nats parses it"
        );
        let debug = format!("{creds:?} {issuer:?}");
        assert!(!debug.contains(creds.seed.expose()), "{debug}");
        assert!(!debug.contains(&issuer.signing.seed().unwrap()), "{debug}");
        assert!(!debug.contains(&creds.jwt), "{debug}");
    }

    #[test]
    fn permissions_never_reach_another_tenants_subjects_or_streams() {
        let acme = tenant_permissions("acme");
        for subject in acme.publish.iter().chain(&acme.subscribe) {
            assert!(
                subject.contains(".acme.")
                    || subject.contains("CARERP_ACME.")
                    || subject.ends_with("CARERP_ACME")
                    || subject.contains("CARERP_ACME-DLQ"),
                "{subject}"
            );
            assert!(!subject.starts_with('>') && !subject.starts_with("_INBOX"));
        }
    }

    #[test]
    fn the_fingerprint_follows_the_issuer_and_the_tenant() {
        let trust = Trust::generate();
        let issuer = trust.issuer().unwrap();
        assert_eq!(issuer.fingerprint("acme"), issuer.fingerprint("acme"));
        assert_ne!(issuer.fingerprint("acme"), issuer.fingerprint("other"));
        let other = Trust::generate().issuer().unwrap();
        assert_ne!(issuer.fingerprint("acme"), other.fingerprint("acme"));
    }

    #[test]
    fn only_account_seeds_are_taken() {
        let user = KeyPair::new_user().seed().unwrap();
        assert!(matches!(
            Issuer::from_seed(&user, None),
            Err(IssuerError::NotAnAccountSeed)
        ));
        assert!(matches!(
            Issuer::from_seed("not a seed", None),
            Err(IssuerError::NotAnAccountSeed)
        ));
        let account = KeyPair::new_account().seed().unwrap();
        let issuer = Issuer::from_seed(&format!("{account}\n"), None).unwrap();
        assert!(issuer.account().starts_with('A'));
        assert!(matches!(
            Issuer::from_seed(&account, Some("UABC")),
            Err(IssuerError::NotAnAccount(_))
        ));
    }
}
