//! Leader election through a `coordination.k8s.io` Lease, so two operator replicas never
//! reconcile at once: only the holder runs the controller; a holder that cannot renew stops.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::PostParams;
use kube::{Api, Client};

/// One candidate for the Lease.
pub struct LeaseLock {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
}

fn conflict(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == 409)
}

impl LeaseLock {
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        duration: Duration,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            identity: identity.into(),
            duration,
        }
    }

    /// How often the holder renews: a third of the lease, so two renewals may fail.
    pub fn renew_every(&self) -> Duration {
        self.duration / 3
    }

    fn seconds(&self) -> i32 {
        i32::try_from(self.duration.as_secs()).unwrap_or(i32::MAX)
    }

    /// Takes the Lease when it is free, expired or already ours; true when we hold it now.
    /// Writes carry the resourceVersion read, so of two racing candidates one gets a conflict.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let Some(lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(self.seconds()),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(err) if conflict(&err) => Ok(false),
                Err(err) => Err(err),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let ours = spec.holder_identity.as_deref() == Some(self.identity.as_str());
        let expired = match (&spec.renew_time, spec.lease_duration_seconds) {
            (Some(renewed), Some(seconds)) => {
                renewed.0 + SignedDuration::from_secs(i64::from(seconds)) < now
            }
            _ => true,
        };
        if !ours && !expired && spec.holder_identity.is_some() {
            return Ok(false);
        }
        let mut updated = lease.clone();
        updated.spec = Some(LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.seconds()),
            acquire_time: if ours {
                spec.acquire_time.clone()
            } else {
                Some(MicroTime(now))
            },
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(spec.lease_transitions.unwrap_or(0) + i32::from(!ours)),
            ..spec
        });
        match self
            .api
            .replace(&self.name, &PostParams::default(), &updated)
            .await
        {
            Ok(_) => Ok(true),
            Err(err) if conflict(&err) => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// Waits until this candidate holds the Lease.
    pub async fn acquire(&self) {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => return,
                Ok(false) => tracing::info!(lease = %self.name, "another replica leads; waiting"),
                Err(err) => {
                    tracing::warn!(lease = %self.name, error = %err, "cannot read the lease")
                }
            }
            tokio::time::sleep(self.renew_every()).await;
        }
    }

    /// Renews until a renewal fails or the Lease was taken; returns then, so the caller stops.
    pub async fn keep(&self) {
        loop {
            tokio::time::sleep(self.renew_every()).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::error!(lease = %self.name, "lost the lease to another replica");
                    return;
                }
                Err(err) => {
                    tracing::error!(lease = %self.name, error = %err, "cannot renew the lease");
                    return;
                }
            }
        }
    }
}
