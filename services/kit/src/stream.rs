//! The tenant's JetStream stream, created or updated idempotently (by the operator, by
//! `local`, and by tests).

use std::time::Duration;

use async_nats::jetstream::{self, stream};

use crate::envelope::stream_name;

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

/// The stream configuration: every subject of the tenant, on disk, with the 2-minute
/// duplicate window that makes `Nats-Msg-Id` dedupe relay retries.
pub fn stream_config(tenant: &str, settings: &StreamSettings) -> stream::Config {
    stream::Config {
        name: stream_name(tenant),
        subjects: vec![format!("carerp.{tenant}.>")],
        storage: stream::StorageType::File,
        max_age: settings.max_age,
        num_replicas: settings.replicas,
        duplicate_window: Duration::from_secs(120),
        description: Some(format!("Car ERP events of tenant {tenant}")),
        ..Default::default()
    }
}

/// Creates the stream or brings an existing one to `settings`.
pub async fn ensure_stream(
    jetstream: &jetstream::Context,
    tenant: &str,
    settings: &StreamSettings,
) -> Result<stream::Info, jetstream::context::CreateStreamError> {
    jetstream
        .create_or_update_stream(stream_config(tenant, settings))
        .await
}
