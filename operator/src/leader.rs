//! Leader election through a `coordination.k8s.io` Lease, so two operator replicas never
//! reconcile at once: only the holder runs the controller; a holder that cannot renew stops.
//!
//! The rules, as client-go's `leaderelection` keeps them:
//!
//! - Expiry is judged by local observation, never by comparing the holder's `renewTime` with
//!   this machine's clock (clocks of two nodes disagree). A candidate remembers the Lease
//!   record it last saw and *when it saw it change*, on its own monotonic clock; it takes the
//!   Lease only when the record has not changed for a whole `leaseDurationSeconds`.
//! - Every API call has a timeout, so a hung connection cannot hold a renewal for longer than
//!   the lease.
//! - The holder renews every [`Timing::retry`]. A failed or timed-out attempt is retried at the
//!   same pace; once [`Timing::renew_deadline`] has passed since the last attempt that
//!   *succeeded* (measured from when that attempt was sent), it gives up: with the defaults,
//!   four failed renewals in a row (2 s apart, the fifth would land at the 10 s deadline).
//!   The deadline is shorter than the lease, so a holder cut off from the API server has
//!   stopped before any other candidate could see the lease expire.
//! - Losing the lease ends [`LeaseLock::keep`]; the caller stops reconciling at once (the
//!   operator exits; a fresh replica takes over), it does not drain.
//! - The identity is unique per process: the pod (or host) name plus a random suffix, never a
//!   PID, which is 1 in every container.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, Client};
use rand::Rng;
use rand::distr::Alphanumeric;

/// How long a lease lasts, how long the holder keeps trying to renew, how often it tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// `leaseDurationSeconds`: how long other candidates wait after the last change they saw.
    pub lease: Duration,
    /// How long after its last successful renewal the holder gives up (< `lease`).
    pub renew_deadline: Duration,
    /// Pause between attempts, and the timeout of each API call.
    pub retry: Duration,
}

impl Default for Timing {
    /// client-go's defaults for controllers: 15 s, 10 s, 2 s.
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry: Duration::from_secs(2),
        }
    }
}

impl Timing {
    /// The timing with the given lease, the deadline and the retry scaled as in the default.
    pub fn with_lease(lease: Duration) -> Self {
        Self {
            lease,
            renew_deadline: lease * 2 / 3,
            retry: (lease * 2 / 15).max(Duration::from_millis(200)),
        }
    }

    /// Checks what would make the election unsafe.
    pub fn validate(&self) -> Result<(), String> {
        if self.lease.as_secs() < 1 {
            return Err("the lease must last at least 1 s".into());
        }
        if self.renew_deadline >= self.lease {
            return Err(format!(
                "the renew deadline ({:?}) must be shorter than the lease ({:?})",
                self.renew_deadline, self.lease
            ));
        }
        if self.retry >= self.renew_deadline {
            return Err(format!(
                "the retry period ({:?}) must be shorter than the renew deadline ({:?})",
                self.retry, self.renew_deadline
            ));
        }
        Ok(())
    }
}

/// A unique identity for this process: `<name>_<random>`; `name` is the pod's (or the host's).
pub fn identity(name: Option<&str>) -> String {
    let base = name
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "carerp-operator".into());
    let suffix: String = rand::rng()
        .sample_iter(&Alphanumeric)
        .take(10)
        .map(|c| char::from(c).to_ascii_lowercase())
        .collect();
    format!("{base}_{suffix}")
}

/// Why the holder stopped holding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lost {
    /// Another candidate holds the Lease now.
    Taken(String),
    /// No renewal succeeded within the renew deadline.
    DeadlineExceeded(String),
}

impl std::fmt::Display for Lost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lost::Taken(holder) => write!(f, "the lease was taken by {holder}"),
            Lost::DeadlineExceeded(last) => {
                write!(
                    f,
                    "no renewal succeeded within the renew deadline (last error: {last})"
                )
            }
        }
    }
}

/// What a candidate saw of the Lease, and when (on its own clock) that last changed.
#[derive(Debug, Clone)]
struct Observed {
    holder: Option<String>,
    renew_time: Option<MicroTime>,
    transitions: Option<i32>,
    resource_version: Option<String>,
    seen_at: Instant,
    lease: Duration,
}

impl Observed {
    fn same_record(&self, lease: &Lease, spec: &LeaseSpec) -> bool {
        self.holder == spec.holder_identity
            && self.renew_time == spec.renew_time
            && self.transitions == spec.lease_transitions
            && self.resource_version == lease.metadata.resource_version
    }
}

/// Of the observations, whether the holder's lease ran out by this process' clock.
fn expired(observed: &Observed, now: Instant) -> bool {
    observed.holder.as_deref().is_none_or(str::is_empty)
        || now.duration_since(observed.seen_at) >= observed.lease
}

/// An attempt's failure: the API said no, or it did not answer in time.
#[derive(Debug, thiserror::Error)]
pub enum AttemptError {
    #[error("{0}")]
    Api(#[from] kube::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// One candidate for the Lease.
pub struct LeaseLock {
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: Timing,
    observed: Mutex<Option<Observed>>,
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
        timing: Timing,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            identity: identity.into(),
            timing,
            observed: Mutex::new(None),
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    pub fn timing(&self) -> Timing {
        self.timing
    }

    fn seconds(&self) -> i32 {
        i32::try_from(self.timing.lease.as_secs().max(1)).unwrap_or(i32::MAX)
    }

    /// One attempt with a timeout of [`Timing::retry`].
    pub async fn attempt(&self) -> Result<bool, AttemptError> {
        let limit = self.timing.retry;
        match tokio::time::timeout(limit, self.try_acquire_or_renew()).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(AttemptError::Timeout(limit)),
        }
    }

    /// Takes the Lease when it is free, expired by local observation, or already ours; true
    /// when we hold it now. Writes carry the resourceVersion read, so of two racing
    /// candidates one gets a conflict.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let Some(lease) = self.api.get_opt(&self.name).await? else {
            let now = Timestamp::now();
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
        if !ours {
            let now = Instant::now();
            let mut guard = self.observed.lock().unwrap_or_else(|e| e.into_inner());
            let changed = guard.as_ref().is_none_or(|o| !o.same_record(&lease, &spec));
            if changed {
                *guard = Some(Observed {
                    holder: spec.holder_identity.clone(),
                    renew_time: spec.renew_time.clone(),
                    transitions: spec.lease_transitions,
                    resource_version: lease.metadata.resource_version.clone(),
                    seen_at: now,
                    lease: Duration::from_secs(
                        u64::try_from(spec.lease_duration_seconds.unwrap_or(self.seconds()))
                            .unwrap_or(0),
                    ),
                });
            }
            let free = guard.as_ref().is_some_and(|o| expired(o, now));
            drop(guard);
            if !free {
                return Ok(false);
            }
        }
        let now = Timestamp::now();
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

    /// Waits until this candidate holds the Lease; returns when (by this process' clock) the
    /// winning attempt was sent, which is where the renew deadline starts.
    pub async fn acquire(&self) -> Instant {
        let mut waiting_logged = false;
        loop {
            let sent = Instant::now();
            match self.attempt().await {
                Ok(true) => return sent,
                Ok(false) => {
                    if !waiting_logged {
                        tracing::info!(lease = %self.name, identity = %self.identity, "another replica leads; waiting");
                        waiting_logged = true;
                    }
                }
                Err(err) => {
                    tracing::warn!(lease = %self.name, error = %err, "cannot read the lease")
                }
            }
            tokio::time::sleep(self.timing.retry).await;
        }
    }

    /// Renews every [`Timing::retry`] until the Lease is taken or no renewal succeeded for
    /// [`Timing::renew_deadline`] after `last_renewed`; says which. The caller must stop
    /// reconciling at once.
    pub async fn keep(&self, mut last_renewed: Instant) -> Lost {
        let mut last_error = String::new();
        loop {
            tokio::time::sleep(self.timing.retry).await;
            let sent = Instant::now();
            let left = self
                .timing
                .renew_deadline
                .saturating_sub(sent.duration_since(last_renewed));
            if left.is_zero() {
                return Lost::DeadlineExceeded(last_error);
            }
            // No attempt may outlast the deadline.
            let limit = left.min(self.timing.retry);
            match tokio::time::timeout(limit, self.try_acquire_or_renew()).await {
                Ok(Ok(true)) => last_renewed = sent,
                Ok(Ok(false)) => {
                    let holder = self
                        .observed
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .as_ref()
                        .and_then(|o| o.holder.clone())
                        .unwrap_or_default();
                    return Lost::Taken(holder);
                }
                Ok(Err(err)) => {
                    tracing::warn!(lease = %self.name, error = %err, "renewing the lease failed");
                    last_error = err.to_string();
                }
                Err(_) => {
                    tracing::warn!(lease = %self.name, timeout = ?limit, "renewing the lease timed out");
                    last_error = format!("no answer within {limit:?}");
                }
            }
            if sent.duration_since(last_renewed) >= self.timing.renew_deadline
                || Instant::now().duration_since(last_renewed) >= self.timing.renew_deadline
            {
                return Lost::DeadlineExceeded(last_error);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_timing_is_safe_and_tolerates_four_failed_renewals() {
        let t = Timing::default();
        t.validate().unwrap();
        // Attempts 2 s apart after the last success: at 2, 4, 6, 8 s they may fail; the one
        // at 10 s is not sent, the deadline has passed.
        let tolerated = (t.renew_deadline.as_secs() - 1) / t.retry.as_secs();
        assert_eq!(tolerated, 4);
        assert!(t.renew_deadline < t.lease);
        Timing::with_lease(Duration::from_secs(6))
            .validate()
            .unwrap();
    }

    #[test]
    fn unsafe_timings_are_refused() {
        let mut t = Timing::default();
        t.renew_deadline = t.lease;
        assert!(t.validate().unwrap_err().contains("renew deadline"));
        let mut t = Timing::default();
        t.retry = t.renew_deadline;
        assert!(t.validate().unwrap_err().contains("retry period"));
    }

    #[test]
    fn identities_are_unique_per_process_and_never_a_pid() {
        let a = identity(Some("carerp-operator-7d9f-abcde"));
        let b = identity(Some("carerp-operator-7d9f-abcde"));
        assert_ne!(a, b);
        assert!(a.starts_with("carerp-operator-7d9f-abcde_"), "{a}");
        assert!(!identity(None).is_empty());
        assert!(!identity(Some("")).starts_with('_'));
    }

    fn observed(holder: Option<&str>, seen_at: Instant) -> Observed {
        Observed {
            holder: holder.map(str::to_string),
            renew_time: None,
            transitions: Some(0),
            resource_version: Some("1".into()),
            seen_at,
            lease: Duration::from_secs(15),
        }
    }

    #[test]
    fn a_lease_expires_after_a_whole_duration_of_local_observation() {
        let seen = Instant::now();
        let o = observed(Some("other"), seen);
        assert!(!expired(&o, seen));
        assert!(!expired(&o, seen + Duration::from_secs(14)));
        assert!(expired(&o, seen + Duration::from_secs(15)));
        assert!(expired(&observed(None, seen), seen));
        assert!(expired(&observed(Some(""), seen), seen));
    }
}
