//! The tenant's JetStream stream, created or updated idempotently (by the operator, by
//! `local`, and by tests).
//!
//! Two of its settings depend on each other, and a wrong pair strands work: JetStream refuses
//! a duplicate window longer than the max age (the stream could not be created or updated),
//! and events that expire before a consumer is back from an outage are lost. So the max age has
//! a minimum ([`MIN_MAX_AGE`]) and the duplicate window never exceeds it.

use std::time::Duration;

use async_nats::jetstream::{self, stream};

use crate::envelope::stream_name;

/// How long `Nats-Msg-Id` dedupes a message: relay retries after a lost ack fall inside it.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// The shortest max age a stream may have: one hour, so that an event outlives a consumer's
/// restart, a database outage or a rollout, and so the duplicate window always fits inside.
pub const MIN_MAX_AGE: Duration = Duration::from_secs(3600);

/// How the tenant's stream is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSettings {
    pub max_age: Duration,
    pub replicas: usize,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(7 * 24 * 3600),
            replicas: 1,
        }
    }
}

/// Stream settings that would strand events.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidStreamSettings {
    #[error(
        "max age {max_age:?} is below the minimum of 1h: events would expire before consumers are back from an outage"
    )]
    MaxAgeTooShort { max_age: Duration },
    #[error("replicas must be 1 to 5, got {0}")]
    Replicas(usize),
}

impl StreamSettings {
    /// Refuses a max age below [`MIN_MAX_AGE`] and replicas outside 1 to 5 (JetStream's own
    /// limit).
    pub fn check(&self) -> Result<(), InvalidStreamSettings> {
        if self.max_age < MIN_MAX_AGE {
            return Err(InvalidStreamSettings::MaxAgeTooShort {
                max_age: self.max_age,
            });
        }
        if !(1..=5).contains(&self.replicas) {
            return Err(InvalidStreamSettings::Replicas(self.replicas));
        }
        Ok(())
    }

    /// The duplicate window: [`DUPLICATE_WINDOW`], never longer than the max age.
    pub fn duplicate_window(&self) -> Duration {
        DUPLICATE_WINDOW.min(self.max_age)
    }
}

/// The stream configuration: every subject of the tenant, on disk, with the duplicate window
/// that makes `Nats-Msg-Id` dedupe relay retries.
pub fn stream_config(tenant: &str, settings: &StreamSettings) -> stream::Config {
    stream::Config {
        name: stream_name(tenant),
        subjects: vec![format!("carerp.{tenant}.>")],
        storage: stream::StorageType::File,
        max_age: settings.max_age,
        num_replicas: settings.replicas,
        duplicate_window: settings.duplicate_window(),
        description: Some(format!("Car ERP events of tenant {tenant}")),
        ..Default::default()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("stream settings refused: {0}")]
    Invalid(#[from] InvalidStreamSettings),
    #[error(transparent)]
    Nats(#[from] jetstream::context::CreateStreamError),
}

/// Creates the stream or brings an existing one to `settings`, after checking them.
pub async fn ensure_stream(
    jetstream: &jetstream::Context,
    tenant: &str,
    settings: &StreamSettings,
) -> Result<stream::Info, StreamError> {
    settings.check()?;
    Ok(jetstream
        .create_or_update_stream(stream_config(tenant, settings))
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(max_age_secs: u64) -> StreamSettings {
        StreamSettings {
            max_age: Duration::from_secs(max_age_secs),
            replicas: 1,
        }
    }

    #[test]
    fn a_max_age_below_an_hour_is_refused_with_the_reason() {
        let err = settings(59 * 60).check().unwrap_err();
        assert_eq!(
            err.to_string(),
            "max age 3540s is below the minimum of 1h: events would expire before consumers are back from an outage"
        );
        assert!(settings(3600).check().is_ok());
        assert!(StreamSettings::default().check().is_ok());
    }

    #[test]
    fn replicas_outside_one_to_five_are_refused() {
        for replicas in [0, 6] {
            let s = StreamSettings {
                replicas,
                ..StreamSettings::default()
            };
            assert_eq!(s.check(), Err(InvalidStreamSettings::Replicas(replicas)));
        }
    }

    #[test]
    fn the_duplicate_window_never_exceeds_the_max_age() {
        for secs in [1, 60, 119, 120, 121, 3600, 7 * 24 * 3600] {
            let s = settings(secs);
            let config = stream_config("acme", &s);
            assert!(
                config.duplicate_window <= config.max_age,
                "{secs}s: {config:?}"
            );
            assert_eq!(
                config.duplicate_window,
                DUPLICATE_WINDOW.min(Duration::from_secs(secs))
            );
        }
    }

    /// The real server refuses the stream when the settings are wrong, and never gets them.
    #[tokio::test]
    async fn ensure_stream_refuses_a_short_max_age_before_asking_the_server() {
        let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
        let js = crate::messaging::connect(&url).await.unwrap();
        let tenant = format!("t{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
        let err = ensure_stream(&js, &tenant, &settings(60))
            .await
            .unwrap_err();
        assert!(matches!(err, StreamError::Invalid(_)), "{err}");
        assert!(js.get_stream(stream_name(&tenant)).await.is_err());
        let info = ensure_stream(&js, &tenant, &settings(3600)).await.unwrap();
        assert_eq!(info.config.duplicate_window, DUPLICATE_WINDOW);
        js.delete_stream(stream_name(&tenant)).await.unwrap();
    }
}
