//! The tenant's identity material: the key its access tokens are signed with, and the first
//! owner's one-time password. Both are generated once, by the operator, into Secrets of the
//! tenant's namespace, and never rewritten by a reconcile: a new key would sign everyone out,
//! a new password would lock the owner out.
//!
//! Rotation: set the annotation `carerp.io/signing-key-rotation` on the tenant to any new
//! value (a date is a good one). The next reconcile generates a new key, which signs from then
//! on, and keeps the previous public key beside it, so tokens signed before still verify until
//! they expire; the next rotation drops it. Services restart with the new key list (its hash
//! is on their pod templates).

use chrono::Utc;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};

use carerp_kit::auth::SigningKey;

use crate::config::OperatorConfig;
use crate::crd::CarErpTenant;
use crate::desired::{self, PUBLIC_KEYS, SIGNING_KEY, SIGNING_KEY_SECRET};

/// The tenant annotation that asks for a new signing key when its value changes.
pub const ROTATION_ANNOTATION: &str = "carerp.io/signing-key-rotation";

/// A fresh key, named by when it was made (the `kid` of the tokens it signs).
pub fn new_signing_key() -> SigningKey {
    SigningKey::generate(&format!("k{}", Utc::now().format("%Y%m%d%H%M%S")))
}

/// What the signing-key Secret holds after a rotation from `current` (its signing key and
/// public keys), or a first key when there is none.
pub fn rotated(current: Option<(&str, &str)>) -> (SigningKey, String) {
    let key = new_signing_key();
    let mut public = vec![key.public_entry()];
    if let Some((signing, _)) = current
        && let Ok(previous) = SigningKey::parse(signing)
        && previous.kid() != key.kid()
    {
        public.push(previous.public_entry());
    }
    (key, public.join(","))
}

fn data(secret: &Secret, key: &str) -> Option<String> {
    let value = secret.data.as_ref()?.get(key)?;
    String::from_utf8(value.0.clone()).ok()
}

/// Makes sure the signing key and the owner's Secret exist (creating what is missing, rotating
/// when asked) and answers the public keys in force, for the services' ConfigMap.
pub async fn ensure_secrets(
    client: &Client,
    tenant: &CarErpTenant,
    config: &OperatorConfig,
    namespace: &str,
) -> Result<String, kube::Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let wanted_rotation = tenant.annotations().get(ROTATION_ANNOTATION).cloned();
    let existing = api.get_opt(SIGNING_KEY_SECRET).await?;
    let current = existing.as_ref().and_then(|secret| {
        let signing = data(secret, SIGNING_KEY)?;
        let public = data(secret, PUBLIC_KEYS)?;
        SigningKey::parse(&signing).ok()?;
        Some((
            signing,
            public,
            secret.annotations().get(ROTATION_ANNOTATION).cloned(),
        ))
    });
    let public_keys = match current {
        Some((_, public, done)) if done == wanted_rotation => public,
        current => {
            let (key, public) = rotated(
                current
                    .as_ref()
                    .map(|(signing, public, _)| (signing.as_str(), public.as_str())),
            );
            let mut secret =
                desired::signing_key_secret(tenant, config, &key.to_secret_value(), &public);
            if let Some(rotation) = &wanted_rotation {
                secret
                    .annotations_mut()
                    .insert(ROTATION_ANNOTATION.into(), rotation.clone());
            }
            if existing.is_some() {
                // Server-side apply, like every other write: RBAC grants `patch`, not `update`.
                api.patch(
                    SIGNING_KEY_SECRET,
                    &PatchParams::apply(crate::controller::MANAGER).force(),
                    &Patch::Apply(&secret),
                )
                .await?;
            } else {
                create_unless_exists(&api, &secret).await?;
            }
            tracing::info!(tenant = %tenant.name_any(), kid = key.kid(), "signing key generated");
            public
        }
    };
    let owner = desired::owner_secret_name(tenant);
    if api.get_opt(&owner).await?.is_none() {
        let password = carerp_kit::auth::one_time_password();
        let secret = desired::owner_secret(tenant, config, password.expose());
        create_unless_exists(&api, &secret).await?;
        tracing::info!(tenant = %tenant.name_any(), secret = %owner, "first owner's one-time password stored");
    }
    Ok(public_keys)
}

/// Creates `secret`; one that appeared meanwhile (another reconcile) is kept as it is.
async fn create_unless_exists(api: &Api<Secret>, secret: &Secret) -> Result<(), kube::Error> {
    match api.create(&PostParams::default(), secret).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rotation_signs_with_a_new_key_and_still_verifies_the_previous_one() {
        let (first, public) = rotated(None);
        assert_eq!(public.split(',').count(), 1);
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let (second, public) = rotated(Some((&first.to_secret_value(), &public)));
        assert_ne!(first.kid(), second.kid());
        let keys = carerp_kit::auth::VerifyingKeys::parse("acme", &public).unwrap();
        for key in [&first, &second] {
            let (token, _) = key
                .issue(
                    "acme",
                    uuid::Uuid::now_v7(),
                    carerp_kit::auth::Role::Owner,
                    uuid::Uuid::now_v7(),
                    Utc::now(),
                )
                .unwrap();
            assert!(keys.verify(token.expose()).is_ok(), "{}", key.kid());
        }
        // A third key drops the first.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let (_, public) = rotated(Some((&second.to_secret_value(), &public)));
        assert!(!public.contains(&format!("{}:", first.kid())), "{public}");
    }
}
