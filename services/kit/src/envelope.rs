//! The CloudEvents 1.0 envelope (JSON structured mode) every event travels in.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::context::RequestContext;
use crate::outbox::OutboxRow;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CloudEvent {
    pub specversion: String,
    pub id: Uuid,
    /// The publishing service, e.g. `workorder`.
    pub source: String,
    /// The topic, e.g. `workorder.completed`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The aggregate the event is about.
    pub subject: String,
    pub time: DateTime<Utc>,
    pub datacontenttype: String,
    pub data: serde_json::Value,
    pub tenant: String,
    pub correlationid: String,
    pub traceparent: String,
}

impl CloudEvent {
    pub fn from_outbox(row: &OutboxRow, service: &str, tenant: &str) -> Self {
        Self {
            specversion: "1.0".into(),
            id: row.id,
            source: service.into(),
            event_type: row.topic.clone(),
            subject: row.aggregate_id.clone(),
            time: row.created_at,
            datacontenttype: "application/json".into(),
            data: row.data.clone(),
            tenant: tenant.into(),
            correlationid: row.correlation_id.clone(),
            traceparent: row.traceparent.clone(),
        }
    }

    /// The context of the request that caused the event: handling it continues that trace.
    pub fn context(&self) -> RequestContext {
        RequestContext::from_headers(Some(&self.correlationid), Some(&self.traceparent))
    }

    pub fn data_as<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_value(self.data.clone())
    }
}

/// `carerp.<tenant>.<topic>`.
pub fn subject(tenant: &str, topic: &str) -> String {
    format!("carerp.{tenant}.{topic}")
}

/// Where `service`'s dead letters of `topic` go: `carerp-dlq.<tenant>.<service>.<topic>`, in
/// the tenant's dead-letter stream ([`dlq_stream_name`]). Outside `carerp.<tenant>.>` on
/// purpose: the events stream owns those subjects, and a dead letter must outlive it.
pub fn dlq_subject(tenant: &str, service: &str, topic: &str) -> String {
    format!("carerp-dlq.{tenant}.{service}.{topic}")
}

/// `CARERP_<TENANT>-DLQ`: the tenant's dead letters. The `-` keeps it apart from every
/// tenant's events stream (a tenant named `<tenant>-dlq` has `CARERP_<TENANT>_DLQ`).
pub fn dlq_stream_name(tenant: &str) -> String {
    format!("{}-DLQ", stream_name(tenant))
}

/// `CARERP_<TENANT>`, upper case, `-` to `_` (stream names allow neither `.` nor `-` well).
pub fn stream_name(tenant: &str) -> String {
    format!("CARERP_{}", tenant.to_ascii_uppercase().replace('-', "_"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_architecture() {
        assert_eq!(
            subject("acme-motors", "workorder.completed"),
            "carerp.acme-motors.workorder.completed"
        );
        assert_eq!(
            dlq_subject("acme-motors", "billing", "workorder.completed"),
            "carerp-dlq.acme-motors.billing.workorder.completed"
        );
        assert_eq!(stream_name("acme-motors"), "CARERP_ACME_MOTORS");
        assert_eq!(dlq_stream_name("acme-motors"), "CARERP_ACME_MOTORS-DLQ");
        assert_ne!(dlq_stream_name("acme"), stream_name("acme-dlq"));
    }

    #[test]
    fn the_envelope_is_cloudevents_json() {
        let row = OutboxRow {
            seq: 1,
            id: Uuid::now_v7(),
            topic: "customer.created".into(),
            aggregate_id: "c-1".into(),
            data: serde_json::json!({"customerId": "c-1"}),
            correlation_id: "corr-1".into(),
            traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
            created_at: Utc::now(),
            published_at: None,
        };
        let event = CloudEvent::from_outbox(&row, "customer", "acme");
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["specversion"], "1.0");
        assert_eq!(json["type"], "customer.created");
        assert_eq!(json["subject"], "c-1");
        assert_eq!(json["tenant"], "acme");
        assert_eq!(json["correlationid"], "corr-1");
        let context = event.context();
        assert_eq!(context.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(context.correlation_id, "corr-1");
        let back: CloudEvent = serde_json::from_value(json).unwrap();
        assert_eq!(back, event);
    }
}
