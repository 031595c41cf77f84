//! The consumer runtime: one durable pull consumer per service, each event handled in one
//! database transaction together with its inbox row. Events of different aggregates are
//! handled side by side, an aggregate's own one at a time in the order they arrived.
//!
//! A redelivered event finds its inbox row and has no second effect. A failing event is
//! redelivered with growing delays (capped at 64 times [`Timing::retry_base`]); after
//! [`MAX_DELIVERIES`] it goes to the tenant's dead-letter stream ([`crate::dead_letter`]) with
//! the error and is acked, so it never blocks the events behind it. Two kinds of failure skip that count:
//! - transient ones ([`crate::transient`]: the database away, busy or shutting down) are
//!   retried without limit and never dead-lettered, since the event is not at fault;
//! - permanent ones (an event that cannot parse, or that a handler marks [`Permanent`] through
//!   [`EventFailure`] and [`handler_error`]) are dead-lettered on their first delivery.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::pull};
use futures::StreamExt;
use sqlx::{PgConnection, PgPool};
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::context::RequestContext;
use crate::envelope::{CloudEvent, stream_name, subject};
use crate::outbox::record_in_inbox;
use crate::telemetry::request_span;

pub const MAX_DELIVERIES: i64 = 5;

/// How often a consumer asks the broker how far behind it is.
const LAG_EVERY: Duration = Duration::from_secs(5);

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct DeadLetterLabels {
    service: String,
    topic: String,
}

/// What a consumer reports on `/metrics`: the events it dead-lettered, by service and topic
/// (`carerp_consumer_dead_letters_total`), and the events of its topics it has not handled
/// yet (`carerp_consumer_pending_events`, its lag). Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct ConsumerMetrics {
    dead_letters: prometheus_client::metrics::family::Family<
        DeadLetterLabels,
        prometheus_client::metrics::counter::Counter,
    >,
    pending: prometheus_client::metrics::gauge::Gauge,
}

impl ConsumerMetrics {
    pub fn register(metrics: &crate::Metrics) -> Self {
        let this = Self::default();
        metrics.register(
            "consumer_dead_letters",
            "Events moved to the dead letters, by consuming service and topic",
            this.dead_letters.clone(),
        );
        metrics.register(
            "consumer_pending_events",
            "Events of the consumer's topics in the stream not yet delivered to it (its lag)",
            this.pending.clone(),
        );
        this
    }

    pub fn dead_lettered(&self, service: &str, topic: &str) {
        self.dead_letters
            .get_or_create(&DeadLetterLabels {
                service: service.to_string(),
                topic: topic.to_string(),
            })
            .inc();
    }

    pub fn set_pending(&self, pending: u64) {
        self.pending.set(i64::try_from(pending).unwrap_or(i64::MAX));
    }

    /// Dead letters counted so far for `service` and `topic` (tests read it).
    pub fn dead_letters(&self, service: &str, topic: &str) -> u64 {
        self.dead_letters
            .get_or_create(&DeadLetterLabels {
                service: service.to_string(),
                topic: topic.to_string(),
            })
            .get()
    }
}

pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// A service's event handlers: which topics it consumes and what each does to its store.
pub trait EventHandler: Send + Sync + 'static {
    fn topics(&self) -> &'static [&'static str];

    /// Applies `event` inside the caller's transaction; an error rolls everything back.
    fn handle(
        &self,
        tx: &mut PgConnection,
        context: &RequestContext,
        event: &CloudEvent,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error("stream {stream} is not available: {reason}")]
    Stream { stream: String, reason: String },
    #[error("consumer {name}: {reason}")]
    Consumer { name: String, reason: String },
}

pub struct Consumer<H> {
    pub pool: PgPool,
    pub jetstream: jetstream::Context,
    pub service: String,
    pub tenant: String,
    pub handler: H,
    pub timing: Timing,
    pub metrics: ConsumerMetrics,
}

/// How long the server waits for an ack before redelivering, and the first retry delay
/// (doubled per delivery, capped at 64 times).
///
/// The ack wait is what a crashed consumer costs: its unacked events come back after it. It
/// is short (5 s) without making the server redeliver events that are merely slow: while
/// the handler works, the consumer tells the server every third of the ack wait that the
/// event is in progress (`+WPI`, when `keep_alive`), and it pulls [`BATCH`] events at a
/// time, so none waits long in the client's buffer with its ack wait running.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub ack_wait: Duration,
    pub retry_base: Duration,
    /// Send in-progress acks while handling; off only to play a consumer that hangs.
    pub keep_alive: bool,
}

/// Events pulled per request: enough to keep the consumer busy, few enough that the last
/// of them is reached well within the ack wait.
pub const BATCH: usize = 10;

impl Default for Timing {
    fn default() -> Self {
        Self {
            ack_wait: Duration::from_secs(5),
            retry_base: Duration::from_millis(200),
            keep_alive: true,
        }
    }
}

/// An error that retrying cannot fix (a malformed or contradictory event): the event goes to
/// the dead letters at once instead of after [`MAX_DELIVERIES`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Permanent(pub HandlerError);

/// Why applying an event failed, which decides whether it may end in the dead letters.
enum Failure {
    /// The event itself is wrong: dead-lettered now.
    Permanent(HandlerError),
    /// The database or connection failed, not the event: retried for as long as it takes.
    Transient(HandlerError),
    /// The handler refused the event: after [`MAX_DELIVERIES`] it is dead-lettered.
    Handler(HandlerError),
}

impl Failure {
    /// Transient first: a database outage met by any handler is retried, whatever else the
    /// handler's error type says about it.
    fn from_handler(err: HandlerError) -> Self {
        if crate::transient::is_transient(err.as_ref()) {
            return Failure::Transient(err);
        }
        // `data` that does not parse as the topic's payload never will.
        if err.is::<Permanent>() || err.is::<serde_json::Error>() {
            return Failure::Permanent(err);
        }
        Failure::Handler(err)
    }
}

/// The error type of a service's event handlers says which of its errors retrying cannot fix.
/// Every consumer marks them the same way: through [`handler_error`].
pub trait EventFailure: std::error::Error + Send + Sync + Sized + 'static {
    /// True when handling the same event again cannot succeed (it contradicts what the
    /// service knows, or cannot be applied at all): it is dead-lettered on the spot.
    fn is_permanent(&self) -> bool;
}

/// A bare database error is never the event's fault.
impl EventFailure for sqlx::Error {
    fn is_permanent(&self) -> bool {
        false
    }
}

/// A service error as the consumer runtime takes it: wrapped in [`Permanent`] when it is one
/// (and not transient: a database outage is never the event's fault).
pub fn handler_error<E: EventFailure>(err: E) -> HandlerError {
    if err.is_permanent() && !crate::transient::is_transient(&err) {
        Box::new(Permanent(Box::new(err)))
    } else {
        Box::new(err)
    }
}

impl<H: EventHandler> Consumer<H> {
    /// Creates or updates the durable consumer with the handler's subject filters.
    async fn subscribe(
        &self,
    ) -> Result<jetstream::consumer::Consumer<pull::Config>, ConsumerError> {
        let stream_name = stream_name(&self.tenant);
        let stream = self
            .jetstream
            .get_stream(&stream_name)
            .await
            .map_err(|err| ConsumerError::Stream {
                stream: stream_name.clone(),
                reason: err.to_string(),
            })?;
        let config = pull::Config {
            durable_name: Some(self.service.clone()),
            filter_subjects: self
                .handler
                .topics()
                .iter()
                .map(|topic| subject(&self.tenant, topic))
                .collect(),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: self.timing.ack_wait,
            max_deliver: -1,
            ..Default::default()
        };
        let consumer_error = |err: &dyn std::fmt::Display| ConsumerError::Consumer {
            name: self.service.clone(),
            reason: err.to_string(),
        };
        match stream.create_consumer(config.clone()).await {
            Ok(consumer) => Ok(consumer),
            // An existing consumer with other filters is updated in place; if that fails too,
            // both reasons are reported.
            Err(create) => stream
                .update_consumer(config)
                .await
                .map_err(|update| consumer_error(&format!("create: {create}; update: {update}"))),
        }
    }

    /// Consumes until `shutdown`; the events in hand are finished first. Returns an error when
    /// the subscription is lost (consumer deleted, stream recreated), so the caller subscribes
    /// again instead of the service silently consuming nothing.
    ///
    /// Events are handled side by side ([`InHand`]): one at a time per aggregate, so an
    /// aggregate's events apply in the order they were published, and different aggregates
    /// do not queue behind each other (one consumer takes every saga of the tenant).
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ConsumerError> {
        let mut in_hand = InHand::new(self.side_by_side());
        let outcome = Arc::new(self).receive(&shutdown, &mut in_hand).await;
        in_hand.finish().await;
        outcome
    }

    /// Events handled at once: half the pool, so the service's requests keep connections of
    /// their own, and never more than one pull's worth.
    fn side_by_side(&self) -> usize {
        let pool = usize::try_from(self.pool.options().get_max_connections()).unwrap_or(1);
        (pool / 2).clamp(1, BATCH)
    }

    async fn receive(
        self: Arc<Self>,
        shutdown: &CancellationToken,
        in_hand: &mut InHand,
    ) -> Result<(), ConsumerError> {
        let mut consumer = self.subscribe().await?;
        let lost = |reason: String| ConsumerError::Consumer {
            name: self.service.clone(),
            reason,
        };
        let mut messages = consumer
            .stream()
            .max_messages_per_batch(BATCH)
            .messages()
            .await
            .map_err(|err| lost(err.to_string()))?;
        let mut failures_in_a_row = 0;
        let mut lag = tokio::time::interval(LAG_EVERY);
        loop {
            let message = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = lag.tick() => {
                    // The lag is a report: a broker that does not answer now is noticed by
                    // the message stream, not here.
                    if let Ok(info) = consumer.info().await {
                        self.metrics.set_pending(info.num_pending);
                    }
                    continue;
                }
                next = messages.next() => next,
            };
            match message {
                Some(Ok(message)) => {
                    failures_in_a_row = 0;
                    let event = serde_json::from_slice::<CloudEvent>(&message.payload);
                    let aggregate = event.as_ref().ok().map(|event| event.subject.clone());
                    in_hand.room().await;
                    let this = Arc::clone(&self);
                    in_hand.start(aggregate, async move { this.process(message, event).await });
                }
                Some(Err(err)) => {
                    failures_in_a_row += 1;
                    if failures_in_a_row >= 10 {
                        return Err(lost(format!("receiving keeps failing: {err}")));
                    }
                    tracing::warn!(action = "consumer.receive", error = %err, "receiving failed; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    }
                }
                None => return Err(lost("the message stream ended".into())),
            }
        }
    }

    async fn process(
        &self,
        message: jetstream::Message,
        event: Result<CloudEvent, serde_json::Error>,
    ) {
        // Servers before NATS 2.10 ignore `filter_subjects` and deliver the whole stream;
        // what is not ours is acknowledged and left alone.
        let prefix = format!("carerp.{}.", self.tenant);
        let topic = message
            .subject
            .as_str()
            .strip_prefix(&prefix)
            .unwrap_or_default();
        if !self.handler.topics().contains(&topic) {
            ack(&message, AckKind::Ack).await;
            return;
        }
        // Without delivery info the count is unknown; treating it as the last delivery keeps a
        // failing event from being retried forever.
        let deliveries = message
            .info()
            .map(|info| info.delivered)
            .unwrap_or(MAX_DELIVERIES);
        let event = match event {
            Ok(event) => event,
            Err(err) => {
                // A malformed envelope will never parse: straight to the dead letters.
                let reason = format!("malformed CloudEvent: {err}");
                self.dead_letter(&message, &reason).await;
                return;
            }
        };
        let (span, context) = request_span(&event.event_type, event.context());
        let outcome = self
            .keeping_alive(&message, self.apply(&context, &event))
            .instrument(span.clone())
            .await;
        self.settle(&message, &event, deliveries, outcome)
            .instrument(span)
            .await;
    }

    /// Acks, naks or dead-letters `message` by what applying its event came to.
    async fn settle(
        &self,
        message: &jetstream::Message,
        event: &CloudEvent,
        deliveries: i64,
        outcome: Result<bool, Failure>,
    ) {
        match outcome {
            Ok(true) => {
                tracing::info!(event_id = %event.id, "{} handled", event.event_type);
                ack(message, AckKind::Ack).await;
            }
            Ok(false) => {
                tracing::info!(event_id = %event.id, "{} already handled; ignored", event.event_type);
                ack(message, AckKind::Ack).await;
            }
            Err(Failure::Permanent(err)) => {
                tracing::error!(event_id = %event.id, deliveries, error = %err, "{} can never be handled; dead-lettered", event.event_type);
                self.dead_letter(message, &err.to_string()).await;
            }
            Err(Failure::Handler(err)) if deliveries >= MAX_DELIVERIES => {
                tracing::error!(event_id = %event.id, deliveries, error = %err, "{} failed for the last time; dead-lettered", event.event_type);
                self.dead_letter(message, &err.to_string()).await;
            }
            Err(Failure::Handler(err) | Failure::Transient(err)) => {
                let delay = self.retry_delay(deliveries);
                tracing::warn!(event_id = %event.id, deliveries, error = %err, retry_in_ms = delay.as_millis() as u64, "{} failed; will retry", event.event_type);
                ack(message, AckKind::Nak(Some(delay))).await;
            }
        }
    }

    /// Runs `work`, telling the server every third of the ack wait that `message` is in
    /// progress, so a slow handler (a busy database) is not taken for a dead consumer.
    async fn keeping_alive<T>(
        &self,
        message: &jetstream::Message,
        work: impl Future<Output = T>,
    ) -> T {
        if !self.timing.keep_alive {
            return work.await;
        }
        let every = (self.timing.ack_wait / 3).max(Duration::from_millis(100));
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tokio::pin!(work);
        loop {
            tokio::select! {
                out = &mut work => return out,
                _ = tick.tick() => ack(message, AckKind::Progress).await,
            }
        }
    }

    fn retry_delay(&self, deliveries: i64) -> Duration {
        let doublings = u32::try_from(deliveries.clamp(1, 6)).unwrap_or(6);
        self.timing.retry_base * 2u32.pow(doublings)
    }

    /// True when applied now, false when the inbox says it was applied before.
    async fn apply(&self, context: &RequestContext, event: &CloudEvent) -> Result<bool, Failure> {
        let transient = |err: sqlx::Error| Failure::Transient(err.into());
        let mut tx = crate::outbox::begin(&self.pool).await.map_err(transient)?;
        if !record_in_inbox(&mut tx, event.id, &event.event_type)
            .await
            .map_err(transient)?
        {
            tx.rollback().await.map_err(transient)?;
            return Ok(false);
        }
        self.handler
            .handle(&mut tx, context, event)
            .await
            .map_err(Failure::from_handler)?;
        tx.commit().await.map_err(transient)?;
        Ok(true)
    }

    /// Stores the event as it arrived in the tenant's dead-letter stream with the error, the
    /// consumer, its topic and the deliveries it took ([`crate::dead_letter::store`]), then
    /// acks. If the dead letter cannot be stored the message is left for redelivery, so
    /// nothing is lost.
    async fn dead_letter(&self, message: &jetstream::Message, reason: &str) {
        let topic = message
            .subject
            .as_str()
            .strip_prefix(&format!("carerp.{}.", self.tenant))
            .unwrap_or(message.subject.as_str())
            .to_string();
        let attempts = message
            .info()
            .map(|info| info.delivered)
            .unwrap_or(MAX_DELIVERIES);
        let failed = crate::dead_letter::Failed {
            consumer: &self.service,
            topic: &topic,
            original_subject: message.subject.as_str(),
            payload: message.payload.clone(),
            error: reason,
            attempts,
        };
        match crate::dead_letter::store(&self.jetstream, &self.tenant, failed).await {
            Ok(()) => {
                self.metrics.dead_lettered(&self.service, &topic);
                ack(message, AckKind::Ack).await
            }
            Err(err) => {
                tracing::error!(action = "consumer.dead_letter", error = %err, "cannot dead-letter; leaving for redelivery");
                ack(message, AckKind::Nak(Some(Duration::from_secs(5)))).await;
            }
        }
    }
}

/// The events a consumer is handling: at most `limit` at once, and of each aggregate one at a
/// time, in the order they arrived.
struct InHand {
    tasks: JoinSet<()>,
    limit: usize,
    /// For each aggregate with an event in hand, the end of the last one taken: the next
    /// event of that aggregate waits for it.
    last_of: HashMap<String, oneshot::Receiver<()>>,
}

impl InHand {
    fn new(limit: usize) -> Self {
        Self {
            tasks: JoinSet::new(),
            limit,
            last_of: HashMap::new(),
        }
    }

    /// Waits until fewer than `limit` events are in hand.
    async fn room(&mut self) {
        while self.tasks.len() >= self.limit {
            reap(self.tasks.join_next().await);
        }
        while let Some(done) = self.tasks.try_join_next() {
            reap(Some(done));
        }
        // An aggregate whose last event is finished has nothing to wait for.
        self.last_of
            .retain(|_, end| matches!(end.try_recv(), Err(oneshot::error::TryRecvError::Empty)));
    }

    /// Handles with `work`, after the event before it of the same `aggregate` is finished.
    fn start(
        &mut self,
        aggregate: Option<String>,
        work: impl Future<Output = ()> + Send + 'static,
    ) {
        let (finished, end) = oneshot::channel::<()>();
        let before = aggregate.and_then(|aggregate| self.last_of.insert(aggregate, end));
        self.tasks.spawn(async move {
            // Dropped when this task ends, however it ends: that is what the next one awaits.
            let _finished = finished;
            if let Some(before) = before {
                let _ = before.await;
            }
            work.await;
        });
    }

    /// Waits for every event in hand.
    async fn finish(mut self) {
        while let Some(done) = self.tasks.join_next().await {
            reap(Some(done));
        }
    }
}

fn reap(done: Option<Result<(), tokio::task::JoinError>>) {
    if let Some(Err(err)) = done {
        // The event was not acked: the server delivers it again after the ack wait.
        tracing::error!(action = "consumer.handle", error = %err, "handling an event panicked");
    }
}

async fn ack(message: &jetstream::Message, kind: AckKind) {
    if let Err(err) = message.ack_with(kind).await {
        // The server redelivers after ack_wait; the inbox makes that harmless.
        tracing::warn!(action = "consumer.ack", error = %err, "ack failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How the services wrap database errors in their own error types.
    #[derive(Debug, thiserror::Error)]
    #[error("database error: {0}")]
    struct ServiceError(#[from] sqlx::Error);

    fn kind(err: HandlerError) -> &'static str {
        match Failure::from_handler(err) {
            Failure::Permanent(_) => "permanent",
            Failure::Transient(_) => "transient",
            Failure::Handler(_) => "handler",
        }
    }

    #[derive(Debug, thiserror::Error)]
    enum HandlerFailure {
        #[error("contradicts what we know")]
        Contradiction,
        #[error("not yet")]
        NotYet,
        #[error("database error: {0}")]
        Database(#[from] sqlx::Error),
    }

    impl EventFailure for HandlerFailure {
        fn is_permanent(&self) -> bool {
            // Deliberately wrong for databases, to show transient still wins.
            !matches!(self, HandlerFailure::NotYet)
        }
    }

    #[test]
    fn marked_errors_are_permanent_unmarked_are_retried_and_transient_always_wins() {
        assert_eq!(
            kind(handler_error(HandlerFailure::Contradiction)),
            "permanent"
        );
        assert_eq!(kind(handler_error(HandlerFailure::NotYet)), "handler");
        assert_eq!(
            kind(handler_error(HandlerFailure::Database(
                sqlx::Error::PoolTimedOut
            ))),
            "transient"
        );
    }

    #[test]
    fn a_lost_database_is_transient_however_deeply_it_is_wrapped() {
        assert_eq!(kind(Box::new(sqlx::Error::PoolTimedOut)), "transient");
        assert_eq!(
            kind(Box::new(ServiceError(sqlx::Error::PoolTimedOut))),
            "transient"
        );
        assert_eq!(
            kind(Box::new(ServiceError(sqlx::Error::RowNotFound))),
            "handler"
        );
        assert_eq!(kind("the event makes no sense".into()), "handler");
        assert_eq!(kind(Box::new(Permanent("never".into()))), "permanent");
    }
}
