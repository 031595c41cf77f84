//! The BFF follows its tenant's stream for two things: the sessions ended elsewhere, which
//! the authenticator must refuse at once ([`crate::auth::watch_revocations`]), and the
//! changes the open pages show without a reload ([`LiveFeed`]). Each is one JetStream
//! ordered consumer: nothing to acknowledge, nothing kept on the broker, and re-created from
//! where it stopped after a broker outage.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::consumer::DeliverPolicy;
use carerp_kit::envelope::CloudEvent;
use futures::StreamExt;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Which of the tenant's events to follow, and from where.
pub struct Following {
    /// What is followed, for the log: "revoked sessions".
    pub purpose: &'static str,
    /// A subject of the tenant's stream, wildcards allowed.
    pub subject: String,
    pub from: DeliverPolicy,
}

/// Hands every event matching `following` to `on_event` until `shutdown`, reconnecting a
/// second after the broker or the stream went away and resuming after the last event seen,
/// so an outage loses nothing. An unreadable event is logged and skipped: it cannot be
/// retried into sense.
pub async fn follow(
    jetstream: jetstream::Context,
    tenant: &str,
    following: Following,
    shutdown: CancellationToken,
    mut on_event: impl FnMut(CloudEvent, u64),
) {
    let stream = carerp_kit::envelope::stream_name(tenant);
    let purpose = following.purpose;
    let mut from = following.from;
    let mut last_seen = None;
    loop {
        if let Some(sequence) = last_seen {
            from = DeliverPolicy::ByStartSequence {
                start_sequence: sequence + 1,
            };
        }
        let run = follow_once(
            &jetstream,
            &stream,
            &following.subject,
            from,
            |event, sequence| {
                last_seen = Some(sequence);
                on_event(event, sequence)
            },
        );
        tokio::select! {
            _ = shutdown.cancelled() => return,
            result = run => {
                if let Err(err) = result {
                    tracing::warn!(%stream, "following {purpose}: {err}; retrying");
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

async fn follow_once(
    jetstream: &jetstream::Context,
    stream: &str,
    subject: &str,
    from: DeliverPolicy,
    mut on_event: impl FnMut(CloudEvent, u64),
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let stream = jetstream.get_stream(stream).await?;
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            filter_subject: subject.to_string(),
            deliver_policy: from,
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    while let Some(message) = messages.next().await {
        let message = message?;
        let sequence = message.info().map(|info| info.stream_sequence).unwrap_or(0);
        match serde_json::from_slice::<CloudEvent>(&message.payload) {
            Ok(event) => on_event(event, sequence),
            Err(err) => tracing::error!(
                subject = %message.subject,
                "unreadable event while following {subject}: {err}"
            ),
        }
    }
    Ok(())
}

/// Something changed about a work order: its lines, its status, its invoice. Pages that
/// show it fetch it again; the change itself carries no data, so a page learns nothing its
/// own (permission-checked) request would not tell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// The event's sequence in the tenant's stream: the SSE event id.
    pub sequence: u64,
    pub work_order_id: Uuid,
}

/// The tenant's changes as they happen, for every open page of this BFF process; cheap to
/// clone. It remembers the last [`LiveFeed::CAPACITY`] changes, so a page that connects
/// after it was rendered (or reconnects) learns what it missed since its
/// [`LiveFeed::position`].
#[derive(Clone)]
pub struct LiveFeed {
    inner: Arc<Mutex<Recent>>,
}

struct Recent {
    sender: broadcast::Sender<Change>,
    changes: VecDeque<Change>,
    /// The sequence of the last event seen, whether or not it was a change.
    position: u64,
}

/// What a page missed since its position, and the changes from now on.
pub struct Subscription {
    /// The feed's position when subscribing: every later change comes through `changes`.
    pub position: u64,
    pub missed: Missed,
    pub changes: broadcast::Receiver<Change>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Missed {
    /// These changes, oldest first (none: nothing changed).
    Changes(Vec<Change>),
    /// More than the feed remembers: fetch everything again.
    Everything,
}

impl Default for LiveFeed {
    fn default() -> Self {
        Self::new()
    }
}

impl LiveFeed {
    pub const CAPACITY: usize = 1024;

    pub fn new() -> Self {
        let (sender, _) = broadcast::channel(Self::CAPACITY);
        Self {
            inner: Arc::new(Mutex::new(Recent {
                sender,
                changes: VecDeque::with_capacity(Self::CAPACITY),
                position: 0,
            })),
        }
    }

    fn recent(&self) -> std::sync::MutexGuard<'_, Recent> {
        // Every update leaves the ring consistent: a poisoned lock is still usable.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Where the feed is: a page rendered now has seen every change up to here.
    pub fn position(&self) -> u64 {
        self.recent().position
    }

    /// The changes after `after` (a [`position`](Self::position) or an SSE event id) and
    /// those to come, with no gap between the two.
    pub fn subscribe(&self, after: u64) -> Subscription {
        let recent = self.recent();
        let changes = recent.sender.subscribe();
        let forgotten = recent
            .changes
            .front()
            .is_some_and(|oldest| oldest.sequence > after + 1)
            && recent.changes.len() == Self::CAPACITY;
        let missed = if after > recent.position || forgotten {
            // An id from before a restart of this process, or older than the ring.
            Missed::Everything
        } else {
            Missed::Changes(
                recent
                    .changes
                    .iter()
                    .filter(|change| change.sequence > after)
                    .copied()
                    .collect(),
            )
        };
        Subscription {
            position: recent.position,
            missed,
            changes,
        }
    }

    /// Passes on an event that concerns a work order (every work-order, reservation and
    /// invoice event names one in `data.workOrderId`); others only move the position.
    pub fn publish(&self, event: &CloudEvent, sequence: u64) {
        let mut recent = self.recent();
        recent.position = recent.position.max(sequence);
        let Some(work_order_id) = event
            .data
            .get("workOrderId")
            .and_then(|id| id.as_str())
            .and_then(|id| Uuid::parse_str(id).ok())
        else {
            return;
        };
        let change = Change {
            sequence,
            work_order_id,
        };
        if recent.changes.len() == Self::CAPACITY {
            recent.changes.pop_front();
        }
        recent.changes.push_back(change);
        // No open page, no receiver: nothing to do.
        let _ = recent.sender.send(change);
    }

    /// Feeds the pages the tenant's events from now on until `shutdown`.
    pub async fn run(
        self,
        jetstream: jetstream::Context,
        tenant: String,
        shutdown: CancellationToken,
    ) {
        let following = Following {
            purpose: "changes for the pages",
            subject: carerp_kit::envelope::subject(&tenant, ">"),
            from: DeliverPolicy::New,
        };
        follow(
            jetstream,
            &tenant,
            following,
            shutdown,
            |event, sequence| self.publish(&event, sequence),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(topic: &str, data: serde_json::Value) -> CloudEvent {
        CloudEvent {
            specversion: "1.0".into(),
            id: Uuid::new_v4(),
            source: "test".into(),
            event_type: topic.into(),
            subject: Uuid::new_v4().to_string(),
            time: chrono::Utc::now(),
            datacontenttype: "application/json".into(),
            data,
            tenant: "acme".into(),
            correlationid: "c".into(),
            traceparent: String::new(),
        }
    }

    fn reserved(order: Uuid) -> CloudEvent {
        let data = carerp_kit::events::PartsReserved {
            work_order_id: order,
            lines: Vec::new(),
        };
        event(
            "inventory.parts-reserved",
            serde_json::to_value(data).unwrap(),
        )
    }

    #[test]
    fn only_events_naming_a_work_order_reach_the_pages() {
        let feed = LiveFeed::new();
        let mut pages = feed.subscribe(0).changes;
        let order = Uuid::new_v4();
        feed.publish(
            &event("audit.recorded", serde_json::json!({"actor": "x"})),
            1,
        );
        feed.publish(&reserved(order), 2);
        feed.publish(
            &event(
                "invoice.created",
                serde_json::json!({"workOrderId": "not a uuid"}),
            ),
            3,
        );
        assert_eq!(
            pages.try_recv().ok(),
            Some(Change {
                sequence: 2,
                work_order_id: order
            })
        );
        assert!(pages.try_recv().is_err(), "nothing else was passed on");
        assert_eq!(feed.position(), 3, "every event moves the position");
    }

    #[test]
    fn a_page_learns_what_changed_since_it_was_rendered() {
        let feed = LiveFeed::new();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        feed.publish(&reserved(a), 1);
        let rendered = feed.position();
        feed.publish(&reserved(b), 2);
        let subscription = feed.subscribe(rendered);
        assert_eq!(
            subscription.missed,
            Missed::Changes(vec![Change {
                sequence: 2,
                work_order_id: b
            }])
        );
        assert_eq!(feed.subscribe(2).missed, Missed::Changes(Vec::new()));
        assert_eq!(
            feed.subscribe(99).missed,
            Missed::Everything,
            "an id this process never gave: from before a restart"
        );
        for sequence in 3..(3 + LiveFeed::CAPACITY as u64) {
            feed.publish(&reserved(a), sequence);
        }
        assert_eq!(feed.subscribe(rendered).missed, Missed::Everything);
    }
}
