//! A vehicle's history and the work recommended at earlier visits (`docs/history.md`).

use std::collections::BTreeMap;

use carerp_proto::common::v1 as common;
use carerp_proto::workorder::v1 as workorder;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{
    InspectionState, InvoiceSummary, JobState, Missing, Money, WorkOrder, money, non_empty, time,
};

/// What the inspection of a visit found, counted by rating.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InspectionSummary {
    pub id: String,
    pub state: Option<InspectionState>,
    pub template_name: String,
    pub ok: i32,
    pub advise: i32,
    pub urgent: i32,
    pub unrated: i32,
    pub completed_at: Option<DateTime<Utc>>,
}

impl From<workorder::InspectionSummary> for InspectionSummary {
    fn from(s: workorder::InspectionSummary) -> Self {
        Self {
            id: s.id,
            state: InspectionState::from_proto(s.state),
            template_name: s.template_name,
            ok: s.ok,
            advise: s.advise,
            urgent: s.urgent,
            unrated: s.unrated,
            completed_at: time(s.completed_at),
        }
    }
}

/// One work order of the vehicle with its jobs and decisions, its inspection and its invoice.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Visit {
    pub work_order: WorkOrder,
    /// Null when the order had no inspection.
    pub inspection: Option<InspectionSummary>,
    /// Jobs of this visit offered again later: job id -> the number of the work order
    /// offering it.
    pub offered_again_in: BTreeMap<String, String>,
    /// Null before invoicing, or when billing did not answer or the caller may not read
    /// invoices (then `missing` says which).
    pub invoice: Option<InvoiceSummary>,
}

/// The odometer at a visit's intake.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OdometerReading {
    pub read_at: Option<DateTime<Utc>>,
    pub odometer_km: i64,
    pub work_order_id: String,
}

/// A declined or deferred job not yet offered again on a later work order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Recommendation {
    /// The declined or deferred job; offer it again with this id.
    pub job_id: String,
    pub title: String,
    /// `DECLINED` or `DEFERRED`.
    pub state: Option<JobState>,
    pub reason: Option<String>,
    /// `YYYY-MM-DD` for a deferred job; null for a declined one (due at the next visit).
    pub remind_after: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
    pub work_order_id: String,
    pub work_order_number: String,
    pub customer_id: String,
    pub vehicle_id: String,
    /// As quoted at that visit; offering it again prices it anew.
    pub total: Option<Money>,
}

impl From<workorder::Recommendation> for Recommendation {
    fn from(r: workorder::Recommendation) -> Self {
        Self {
            job_id: r.job_id,
            title: r.title,
            state: JobState::from_proto(r.state),
            reason: non_empty(r.reason),
            remind_after: non_empty(r.remind_after),
            decided_at: time(r.decided_at),
            work_order_id: r.work_order_id,
            work_order_number: r.work_order_number,
            customer_id: r.customer_id,
            vehicle_id: r.vehicle_id,
            total: money(r.total),
        }
    }
}

/// Everything the garage knows of a vehicle from its visits.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VehicleHistory {
    pub vehicle_id: String,
    /// Newest first, at most the 500 newest.
    pub visits: Vec<Visit>,
    /// Oldest first.
    pub odometer: Vec<OdometerReading>,
    /// The open recommendations, oldest first.
    pub recommended: Vec<Recommendation>,
    /// Invoices are billing's: when billing did not answer, or the caller may not read
    /// invoices, the visits carry none and this says so.
    pub missing: Vec<Missing>,
}

page_type!(RecommendationPage, Recommendation);

/// Offer a recommendation of an earlier visit of the same vehicle again, as a PROPOSED job
/// of this work order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OfferAgain {
    /// The declined or deferred job (`jobId` of a recommendation).
    #[schema(format = Uuid)]
    pub job_id: String,
    /// The work order's `audit.version`; 0 skips the check.
    #[serde(default)]
    pub expected_version: i64,
}
