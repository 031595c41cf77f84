//! Dead letters: the events a consumer gave up on, kept in the tenant's dead-letter stream
//! (`CARERP_<TENANT>-DLQ`, subjects `carerp-dlq.<tenant>.<consumer>.<topic>`, 30 days by
//! default: [`crate::stream::dead_letter_stream_config`]) until someone looks at them.
//!
//! Each holds the event exactly as it arrived, and in headers the error, the consumer, the
//! topic, the deliveries it took and when it was given up. [`store`] is the one way in (the
//! consumer runtime calls it); [`list`], [`get`] and [`replay`] are what `carerp-operator dlq`
//! and the BFF's `/api/dead-letters` are made of.
//!
//! A replay publishes the event again, unchanged (same id), to its original subject in the
//! events stream, so it goes through the normal consumer path: the consumer that failed
//! handles it (and may dead-letter it again), and every other consumer of the topic finds
//! the event's id in its inbox and does nothing. Its `Nats-Msg-Id` names the dead letter, so
//! a replay retried after a lost answer is one message; then the dead letter is removed.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer::pull};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::Serialize;
use uuid::Uuid;

use crate::envelope::{dlq_stream_name, dlq_subject};

pub const ERROR_HEADER: &str = "CarErp-Error";
pub const CONSUMER_HEADER: &str = "CarErp-Consumer";
pub const TOPIC_HEADER: &str = "CarErp-Topic";
pub const ATTEMPTS_HEADER: &str = "CarErp-Attempts";
pub const ORIGINAL_SUBJECT_HEADER: &str = "CarErp-Original-Subject";
pub const DEAD_LETTERED_AT_HEADER: &str = "CarErp-Dead-Lettered-At";
/// On a replayed event: the sequence of the dead letter it came from.
pub const REPLAYED_FROM_HEADER: &str = "CarErp-Replayed-From";

/// How much of an error a dead letter keeps.
const MAX_ERROR_BYTES: usize = 2000;

/// The most dead letters one [`list`] answers.
pub const MAX_LIST: usize = 200;

/// One dead letter, as read back.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    /// Its sequence in the dead-letter stream: how it is named to show or replay it.
    pub sequence: u64,
    /// The consuming service that gave up on it.
    pub consumer: String,
    pub topic: String,
    /// The event's id, when its envelope could be read.
    pub event_id: Option<Uuid>,
    pub error: String,
    /// Deliveries to the consumer before it gave up.
    pub attempts: i64,
    pub dead_lettered_at: Option<DateTime<Utc>>,
    /// Where the event was published, and where a replay publishes it again.
    pub original_subject: String,
    /// The event as it arrived: its JSON, or its bytes as text when they are not JSON.
    pub event: serde_json::Value,
}

/// An event a consumer gives up on.
#[derive(Debug, Clone)]
pub struct Failed<'a> {
    pub consumer: &'a str,
    pub topic: &'a str,
    pub original_subject: &'a str,
    pub payload: Bytes,
    pub error: &'a str,
    pub attempts: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    #[error("the dead-letter stream {stream} cannot be used: {reason}")]
    Stream { stream: String, reason: String },
    #[error("dead letter {sequence} names no subject of this tenant ({subject:?}); not replayed")]
    NotReplayable { sequence: u64, subject: String },
    #[error("{action}: {reason}")]
    Nats { action: String, reason: String },
    #[error("{0:?} is no consumer (a service name: lower-case letters, digits, '-')")]
    Consumer(String),
}

fn nats(action: impl Into<String>) -> impl FnOnce(&dyn std::fmt::Display) -> DeadLetterError {
    let action = action.into();
    move |err| DeadLetterError::Nats {
        action,
        reason: err.to_string(),
    }
}

/// A header value: one line, bounded.
fn header_value(text: &str) -> String {
    let mut line = text.replace(['\r', '\n'], " ");
    if line.len() > MAX_ERROR_BYTES {
        let mut end = MAX_ERROR_BYTES;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        line.truncate(end);
    }
    line
}

/// Stores `failed` in the tenant's dead-letter stream and waits for the stream's ack. Until
/// this answers `Ok` the consumer must not ack the event, so nothing is lost.
pub async fn store(
    js: &jetstream::Context,
    tenant: &str,
    failed: Failed<'_>,
) -> Result<(), DeadLetterError> {
    let mut headers = HeaderMap::new();
    headers.insert(ERROR_HEADER, header_value(failed.error).as_str());
    headers.insert(CONSUMER_HEADER, failed.consumer);
    headers.insert(TOPIC_HEADER, failed.topic);
    headers.insert(ATTEMPTS_HEADER, failed.attempts.to_string().as_str());
    headers.insert(ORIGINAL_SUBJECT_HEADER, failed.original_subject);
    headers.insert(
        DEAD_LETTERED_AT_HEADER,
        Utc::now()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            .as_str(),
    );
    let subject = dlq_subject(tenant, failed.consumer, failed.topic);
    js.publish_with_headers(subject.clone(), headers, failed.payload)
        .await
        .map_err(|err| nats(format!("publish to {subject}"))(&err))?
        .await
        .map_err(|err| nats(format!("store in {}", dlq_stream_name(tenant)))(&err))?;
    Ok(())
}

async fn stream(
    js: &jetstream::Context,
    tenant: &str,
) -> Result<jetstream::stream::Stream, DeadLetterError> {
    let name = dlq_stream_name(tenant);
    js.get_stream(&name)
        .await
        .map_err(|err| DeadLetterError::Stream {
            stream: name,
            reason: err.to_string(),
        })
}

fn read(sequence: u64, headers: Option<&HeaderMap>, payload: &[u8]) -> DeadLetter {
    let header = |name: &str| {
        headers
            .and_then(|h| h.get(name))
            .map(|v| v.as_str().to_string())
            .unwrap_or_default()
    };
    let event = serde_json::from_slice::<serde_json::Value>(payload)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(payload).into()));
    DeadLetter {
        sequence,
        consumer: header(CONSUMER_HEADER),
        topic: header(TOPIC_HEADER),
        event_id: event
            .get("id")
            .and_then(|id| id.as_str())
            .and_then(|id| id.parse().ok()),
        error: header(ERROR_HEADER),
        attempts: header(ATTEMPTS_HEADER).parse().unwrap_or(0),
        dead_lettered_at: DateTime::parse_from_rfc3339(&header(DEAD_LETTERED_AT_HEADER))
            .ok()
            .map(|t| t.with_timezone(&Utc)),
        original_subject: header(ORIGINAL_SUBJECT_HEADER),
        event,
    }
}

/// Which dead letters [`list`] answers.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only this consumer's (a service name).
    pub consumer: Option<String>,
    /// Only those after this sequence (the last one of the previous page).
    pub after: u64,
    /// At most this many (capped at [`MAX_LIST`]; 0 means [`MAX_LIST`]).
    pub limit: usize,
}

/// The tenant's dead letters in the order they arrived, oldest first.
pub async fn list(
    js: &jetstream::Context,
    tenant: &str,
    filter: &Filter,
) -> Result<Vec<DeadLetter>, DeadLetterError> {
    let stream = stream(js, tenant).await?;
    let limit = match filter.limit {
        0 => MAX_LIST,
        n => n.min(MAX_LIST),
    };
    let filter_subject = match &filter.consumer {
        Some(consumer)
            if consumer.is_empty()
                || !consumer
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') =>
        {
            return Err(DeadLetterError::Consumer(consumer.clone()));
        }
        Some(consumer) => format!("carerp-dlq.{tenant}.{consumer}.>"),
        None => format!("carerp-dlq.{tenant}.>"),
    };
    let deliver_policy = match filter.after {
        0 => jetstream::consumer::DeliverPolicy::All,
        after => jetstream::consumer::DeliverPolicy::ByStartSequence {
            start_sequence: after + 1,
        },
    };
    // A reader of its own that the server forgets soon if this one cannot delete it.
    let mut reader = stream
        .create_consumer(pull::Config {
            filter_subject,
            deliver_policy,
            ack_policy: jetstream::consumer::AckPolicy::None,
            inactive_threshold: Duration::from_secs(30),
            memory_storage: true,
            ..Default::default()
        })
        .await
        .map_err(|err| nats("read the dead letters")(&err))?;
    let name = reader.cached_info().name.clone();
    let result = async {
        let pending = reader
            .info()
            .await
            .map_err(|err| nats("count the dead letters")(&err))?
            .num_pending;
        let wanted = usize::try_from(pending).unwrap_or(usize::MAX).min(limit);
        let mut letters = Vec::with_capacity(wanted);
        if wanted == 0 {
            return Ok(letters);
        }
        let mut batch = reader
            .fetch()
            .max_messages(wanted)
            .expires(Duration::from_secs(2))
            .messages()
            .await
            .map_err(|err| nats("read the dead letters")(&err))?;
        while let Some(message) = batch.next().await {
            let message = message.map_err(|err| nats("read a dead letter")(&err))?;
            let sequence = message
                .info()
                .map_err(|err| nats("read a dead letter's sequence")(&err))?
                .stream_sequence;
            letters.push(read(sequence, message.headers.as_ref(), &message.payload));
        }
        Ok(letters)
    }
    .await;
    // Left over, the reader goes after 30 s of inactivity anyway.
    let _ = stream.delete_consumer(&name).await;
    result
}

/// The dead letter of `sequence`; `None` when there is none (never was, replayed, expired).
pub async fn get(
    js: &jetstream::Context,
    tenant: &str,
    sequence: u64,
) -> Result<Option<DeadLetter>, DeadLetterError> {
    let stream = stream(js, tenant).await?;
    Ok(raw(&stream, sequence)
        .await?
        .map(|message| read(sequence, Some(&message.headers), &message.payload)))
}

async fn raw(
    stream: &jetstream::stream::Stream,
    sequence: u64,
) -> Result<Option<jetstream::message::StreamMessage>, DeadLetterError> {
    if sequence == 0 {
        return Ok(None);
    }
    match stream.get_raw_message(sequence).await {
        Ok(message) => Ok(Some(message)),
        Err(err) => match err.kind() {
            jetstream::stream::RawMessageErrorKind::NoMessageFound => Ok(None),
            _ => Err(nats(format!("read dead letter {sequence}"))(&err)),
        },
    }
}

/// Publishes the dead letter of `sequence` again to its original subject, then removes it;
/// answers it, or `None` when there is none.
pub async fn replay(
    js: &jetstream::Context,
    tenant: &str,
    sequence: u64,
) -> Result<Option<DeadLetter>, DeadLetterError> {
    let stream = stream(js, tenant).await?;
    let Some(message) = raw(&stream, sequence).await? else {
        return Ok(None);
    };
    let letter = read(sequence, Some(&message.headers), &message.payload);
    // Only into this tenant's events: a dead letter is data, and must not pick the subject.
    let topic = letter
        .original_subject
        .strip_prefix(&format!("carerp.{tenant}."))
        .filter(|topic| !topic.is_empty() && !topic.contains(['*', '>', ' ']));
    if topic.is_none() {
        return Err(DeadLetterError::NotReplayable {
            sequence,
            subject: letter.original_subject,
        });
    }
    let mut headers = HeaderMap::new();
    let event_id = letter.event_id.map(|id| id.to_string()).unwrap_or_default();
    headers.insert(
        "Nats-Msg-Id",
        format!("replay-{sequence}-{event_id}").as_str(),
    );
    headers.insert(REPLAYED_FROM_HEADER, sequence.to_string().as_str());
    js.publish_with_headers(letter.original_subject.clone(), headers, message.payload)
        .await
        .map_err(|err| nats(format!("replay to {}", letter.original_subject))(&err))?
        .await
        .map_err(|err| nats(format!("replay to {}", letter.original_subject))(&err))?;
    // A dead letter that stays (the delete failed) is replayed again harmlessly: within two
    // minutes the message id dedupes it, after that the inboxes do.
    stream
        .delete_message(sequence)
        .await
        .map_err(|err| nats(format!("remove dead letter {sequence} after replaying it"))(&err))?;
    Ok(Some(letter))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_becomes_one_bounded_header_line() {
        assert_eq!(header_value("a\r\nb"), "a  b");
        let long = "é".repeat(MAX_ERROR_BYTES);
        let value = header_value(&long);
        assert!(value.len() <= MAX_ERROR_BYTES);
        assert!(value.chars().all(|c| c == 'é'));
    }

    #[test]
    fn a_dead_letter_reads_back_from_its_headers_and_payload() {
        let mut headers = HeaderMap::new();
        headers.insert(ERROR_HEADER, "no such work order");
        headers.insert(CONSUMER_HEADER, "billing");
        headers.insert(TOPIC_HEADER, "workorder.completed");
        headers.insert(ATTEMPTS_HEADER, "5");
        headers.insert(ORIGINAL_SUBJECT_HEADER, "carerp.acme.workorder.completed");
        headers.insert(DEAD_LETTERED_AT_HEADER, "2026-12-02T10:00:00.000Z");
        let id = Uuid::now_v7();
        let payload = serde_json::to_vec(&serde_json::json!({"id": id, "data": {}})).unwrap();
        let letter = read(7, Some(&headers), &payload);
        assert_eq!(letter.sequence, 7);
        assert_eq!(letter.consumer, "billing");
        assert_eq!(letter.topic, "workorder.completed");
        assert_eq!(letter.event_id, Some(id));
        assert_eq!(letter.attempts, 5);
        assert_eq!(letter.error, "no such work order");
        assert_eq!(
            letter.dead_lettered_at.unwrap().to_rfc3339(),
            "2026-12-02T10:00:00+00:00"
        );
        let garbage = read(8, None, b"\xffnot json");
        assert_eq!(garbage.event_id, None);
        assert!(garbage.event.is_string());
    }
}
