//! The tenant's JetStream stream, created or updated idempotently (by the operator, by
//! `local`, and by tests).
//!
//! Two of its settings depend on each other, and a wrong pair strands work: JetStream refuses
//! a duplicate window longer than the max age (the stream could not be created or updated),
//! and events that expire before a consumer is back from an outage are lost. So the max age has
//! a minimum ([`MIN_MAX_AGE`]) and the duplicate window never exceeds it.
//!
//! Beside it, every tenant has a dead-letter stream ([`dead_letter_stream_config`]): the
//! events a consumer gave up on, kept longer (30 days by default, at least a day) than the
//! events themselves, so someone can look at them and replay them ([`crate::dead_letter`]).

use std::time::Duration;

use async_nats::jetstream::{self, stream};

use crate::envelope::{dlq_stream_name, stream_name};

/// How long `Nats-Msg-Id` dedupes a message: relay retries after a lost ack fall inside it.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// The shortest max age a stream may have: one hour, so that an event outlives a consumer's
/// restart, a database outage or a rollout, and so the duplicate window always fits inside.
pub const MIN_MAX_AGE: Duration = Duration::from_secs(3600);

/// How long dead letters are kept unless the tenant says otherwise: 30 days.
pub const DEFAULT_DEAD_LETTER_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);

/// The shortest time dead letters may be kept: a day, so that one waits for someone to look.
pub const MIN_DEAD_LETTER_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// How the tenant's streams are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSettings {
    pub max_age: Duration,
    pub replicas: usize,
    /// How long the dead-letter stream keeps a dead letter.
    pub dead_letter_max_age: Duration,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(7 * 24 * 3600),
            replicas: 1,
            dead_letter_max_age: DEFAULT_DEAD_LETTER_MAX_AGE,
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
    #[error(
        "dead-letter max age {max_age:?} is below the minimum of 24h: dead letters must wait for someone to look at them"
    )]
    DeadLetterMaxAgeTooShort { max_age: Duration },
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
        if self.dead_letter_max_age < MIN_DEAD_LETTER_MAX_AGE {
            return Err(InvalidStreamSettings::DeadLetterMaxAgeTooShort {
                max_age: self.dead_letter_max_age,
            });
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

/// The dead-letter stream: every `carerp-dlq.<tenant>.>` subject, on disk, kept for
/// `dead_letter_max_age`, as many replicas as the events stream.
pub fn dead_letter_stream_config(tenant: &str, settings: &StreamSettings) -> stream::Config {
    stream::Config {
        name: dlq_stream_name(tenant),
        subjects: vec![format!("carerp-dlq.{tenant}.>")],
        storage: stream::StorageType::File,
        max_age: settings.dead_letter_max_age,
        num_replicas: settings.replicas,
        duplicate_window: DUPLICATE_WINDOW.min(settings.dead_letter_max_age),
        description: Some(format!("Car ERP dead letters of tenant {tenant}")),
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

/// Creates the events stream and the dead-letter stream, or brings existing ones to
/// `settings`, after checking them; answers the events stream's info.
pub async fn ensure_stream(
    jetstream: &jetstream::Context,
    tenant: &str,
    settings: &StreamSettings,
) -> Result<stream::Info, StreamError> {
    settings.check()?;
    jetstream
        .create_or_update_stream(dead_letter_stream_config(tenant, settings))
        .await?;
    Ok(jetstream
        .create_or_update_stream(stream_config(tenant, settings))
        .await?)
}

/// Deletes the tenant's events and dead-letter streams (for tests and the operator's
/// cleanup); answers how many existed.
pub async fn delete_streams(
    jetstream: &jetstream::Context,
    tenant: &str,
) -> Result<usize, jetstream::context::DeleteStreamError> {
    let mut deleted = 0;
    for name in [stream_name(tenant), dlq_stream_name(tenant)] {
        match jetstream.delete_stream(&name).await {
            Ok(_) => deleted += 1,
            Err(err) => match err.kind() {
                jetstream::context::DeleteStreamErrorKind::JetStream(e)
                    if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND => {}
                _ => return Err(err),
            },
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(max_age_secs: u64) -> StreamSettings {
        StreamSettings {
            max_age: Duration::from_secs(max_age_secs),
            ..StreamSettings::default()
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
    fn dead_letters_are_kept_at_least_a_day_and_thirty_days_by_default() {
        let short = StreamSettings {
            dead_letter_max_age: Duration::from_secs(23 * 3600),
            ..StreamSettings::default()
        };
        assert!(matches!(
            short.check(),
            Err(InvalidStreamSettings::DeadLetterMaxAgeTooShort { .. })
        ));
        let config = dead_letter_stream_config("acme", &StreamSettings::default());
        assert_eq!(config.name, "CARERP_ACME-DLQ");
        assert_eq!(config.subjects, ["carerp-dlq.acme.>"]);
        assert_eq!(config.max_age, Duration::from_secs(30 * 24 * 3600));
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
        assert!(js.get_stream(dlq_stream_name(&tenant)).await.is_err());
        let info = ensure_stream(&js, &tenant, &settings(3600)).await.unwrap();
        assert_eq!(info.config.duplicate_window, DUPLICATE_WINDOW);
        let mut dead = js.get_stream(dlq_stream_name(&tenant)).await.unwrap();
        assert_eq!(
            dead.info().await.unwrap().config.max_age,
            DEFAULT_DEAD_LETTER_MAX_AGE
        );
        assert_eq!(delete_streams(&js, &tenant).await.unwrap(), 2);
        assert_eq!(delete_streams(&js, &tenant).await.unwrap(), 0);
    }
}
