//! The event contracts between services: topic names and the `data` of each event.
//!
//! Publishers and consumers share these types so a field renamed on one side fails to
//! compile on the other. JSON is camelCase; money is minor units plus currency; ids are
//! UUID strings. The CloudEvents envelope around `data` is added by the outbox relay.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Topic names: the event `type`, and the subject suffix after `carerp.<tenant>.`.
pub mod topic {
    pub const CUSTOMER_CREATED: &str = "customer.created";
    pub const CUSTOMER_UPDATED: &str = "customer.updated";
    pub const VEHICLE_ADDED: &str = "vehicle.added";
    pub const WORKORDER_CREATED: &str = "workorder.created";
    pub const WORKORDER_PARTS_ADDED: &str = "workorder.parts-added";
    pub const WORKORDER_PARTS_REMOVED: &str = "workorder.parts-removed";
    pub const WORKORDER_COMPLETED: &str = "workorder.completed";
    pub const WORKORDER_CANCELLED: &str = "workorder.cancelled";
    /// An estimate went to the customer: a version of the PROPOSED jobs, kept as sent.
    pub const ESTIMATE_SENT: &str = "estimate.sent";
    /// The customer's decision on a job: approved (its parts are reserved next), declined or
    /// deferred (remembered for a later visit).
    pub const JOB_APPROVED: &str = "job.approved";
    pub const JOB_DECLINED: &str = "job.declined";
    pub const JOB_DEFERRED: &str = "job.deferred";
    /// A technician finished a vehicle inspection: every item rated.
    pub const INSPECTION_COMPLETED: &str = "inspection.completed";
    pub const INVENTORY_PARTS_RESERVED: &str = "inventory.parts-reserved";
    pub const INVENTORY_RESERVATION_FAILED: &str = "inventory.reservation-failed";
    pub const INVENTORY_STOCK_ADJUSTED: &str = "inventory.stock-adjusted";
    pub const INVENTORY_LOW_STOCK: &str = "inventory.low-stock";
    pub const INVOICE_CREATED: &str = "invoice.created";
    pub const INVOICE_PAID: &str = "invoice.paid";
    pub const INVOICE_VOIDED: &str = "invoice.voided";
    /// A sensitive action of any service, for the identity service's audit trail.
    pub const AUDIT_RECORDED: &str = "audit.recorded";
    /// A session (or API token) ended before its access tokens expire: sign-out, refresh
    /// token reuse, a user deactivated or reset. The BFF refuses its tokens from then on.
    pub const SESSION_REVOKED: &str = "identity.session-revoked";
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Money {
    pub amount_minor: i64,
    pub currency: String,
}

impl Money {
    pub fn new(amount_minor: i64, currency: impl Into<String>) -> Self {
        Self {
            amount_minor,
            currency: currency.into(),
        }
    }
}

// ---- customer ----

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomerChanged {
    pub customer_id: Uuid,
    pub name: String,
    pub email: String,
    pub phone: String,
    pub archived: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VehicleAdded {
    pub vehicle_id: Uuid,
    pub customer_id: Uuid,
    pub vin: String,
    pub make: String,
    pub model: String,
    pub year: i32,
    pub license_plate: String,
}

// ---- work order ----

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkOrderCreated {
    pub work_order_id: Uuid,
    pub number: String,
    pub customer_id: Uuid,
    pub vehicle_id: Uuid,
}

/// Part lines a work order needs reserved: new lines, or FAILED lines announced again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkOrderPartsAdded {
    pub work_order_id: Uuid,
    pub lines: Vec<RequestedPart>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestedPart {
    pub line_id: Uuid,
    pub part_id: Uuid,
    pub quantity: i32,
}

/// Part lines removed from a work order while reserved or waiting for their reservation:
/// inventory releases what it reserved for them, and reserves nothing for them later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkOrderPartsRemoved {
    pub work_order_id: Uuid,
    pub lines: Vec<RemovedPart>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemovedPart {
    pub line_id: Uuid,
    pub part_id: Uuid,
    pub quantity: i32,
}

/// Everything billing needs to invoice the work order, and inventory to consume stock.
///
/// Published when the order is completed, and again when its invoice is voided: the order
/// returns to COMPLETED and billing issues a corrected invoice (`correctsInvoiceId` names the
/// voided one; inventory consumed the stock the first time and finds nothing left to do).
/// Billing invoices in `currency`, the work order's own, whatever the tenant's setting is now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkOrderCompleted {
    pub work_order_id: Uuid,
    pub number: String,
    pub customer_id: Uuid,
    pub vehicle_id: Uuid,
    pub currency: String,
    pub part_lines: Vec<CompletedPartLine>,
    pub labor_lines: Vec<CompletedLaborLine>,
    pub parts_total_minor: i64,
    pub labor_total_minor: i64,
    pub total_minor: i64,
    pub completed_at: DateTime<Utc>,
    /// The voided invoice this completion asks billing to replace; absent on a first
    /// completion (and in events from before corrections existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrects_invoice_id: Option<Uuid>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompletedPartLine {
    pub line_id: Uuid,
    pub part_id: Uuid,
    pub sku: String,
    pub name: String,
    pub quantity: i32,
    pub unit_price_minor: i64,
    pub line_total_minor: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompletedLaborLine {
    pub line_id: Uuid,
    pub description: String,
    pub technician: String,
    pub minutes: i32,
    pub hourly_rate_minor: i64,
    pub line_total_minor: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkOrderCancelled {
    pub work_order_id: Uuid,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EstimateSent {
    pub work_order_id: Uuid,
    pub estimate_id: Uuid,
    pub version: i32,
    pub job_ids: Vec<Uuid>,
    pub total: Money,
    pub link_expires_at: DateTime<Utc>,
}

/// `inspection.completed`: how many items were found OK, needing work soon, and now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InspectionCompleted {
    pub work_order_id: Uuid,
    pub inspection_id: Uuid,
    pub template_name: String,
    pub ok: u32,
    pub advise: u32,
    pub urgent: u32,
    /// A user or API token id.
    pub completed_by: String,
}

/// `job.approved`, `job.declined` and `job.deferred`: who decided, how, and on which estimate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobDecided {
    pub work_order_id: Uuid,
    pub job_id: Uuid,
    pub title: String,
    /// `IN_PERSON`, `PHONE`, `EMAIL` or `LINK`.
    pub channel: String,
    /// A user or API token id, or `customer` for the approval link.
    pub decided_by: String,
    pub reason: String,
    /// Deferred jobs: the day after which to remind the customer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remind_after: Option<chrono::NaiveDate>,
    /// 0 when decided without an estimate.
    pub estimate_version: i32,
}

// ---- inventory ----

/// Every line of one `parts-added` event, reserved together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartsReserved {
    pub work_order_id: Uuid,
    pub lines: Vec<ReservedLine>,
}

/// The highest unit price (or cost) a part may have, in minor units. Inventory refuses more
/// and the work order service accepts up to this in `parts-reserved`, so a price one side
/// takes can never strand an event the other refuses. It keeps `quantity * price` far below
/// `i64::MAX`.
pub const MAX_UNIT_PRICE_MINOR: i64 = 1_000_000_000_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReservedLine {
    pub line_id: Uuid,
    pub part_id: Uuid,
    pub quantity: i32,
    pub sku: String,
    pub name: String,
    pub unit_price: Money,
}

/// Nothing of the request was reserved. Every line of the request is listed; `reason` says
/// why that line could not be reserved, or that another line of the request blocked it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReservationFailed {
    pub work_order_id: Uuid,
    pub lines: Vec<FailedLine>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailedLine {
    pub line_id: Uuid,
    pub part_id: Uuid,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StockAdjusted {
    pub part_id: Uuid,
    pub sku: String,
    /// `receipt` or `adjustment`.
    pub kind: String,
    pub delta: i32,
    pub reason: String,
    pub quantity_on_hand: i32,
    pub quantity_reserved: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LowStock {
    pub part_id: Uuid,
    pub sku: String,
    pub name: String,
    pub quantity_available: i32,
    pub reorder_point: i32,
    pub reorder_quantity: i32,
}

// ---- billing ----

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvoiceCreated {
    pub invoice_id: Uuid,
    pub number: String,
    pub work_order_id: Uuid,
    pub customer_id: Uuid,
    pub total: Money,
    /// The voided invoice this one replaces, when it is a corrected invoice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrects_invoice_id: Option<Uuid>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvoicePaid {
    pub invoice_id: Uuid,
    pub number: String,
    pub work_order_id: Uuid,
    pub total: Money,
}

/// An invoice voided (only while nothing is paid on it). The work order service moves its
/// INVOICED order back to COMPLETED and announces `workorder.completed` again, so billing
/// issues the corrected invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvoiceVoided {
    pub invoice_id: Uuid,
    pub number: String,
    pub work_order_id: Uuid,
    pub reason: String,
}

// ---- identity and audit ----

/// One sensitive action, as every service records it in its outbox in the same transaction
/// as the action; the identity service keeps them (`GET /api/audit`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecorded {
    /// The user or API token id, or `system`.
    pub actor: String,
    /// `<resource>.<verb>`, e.g. `invoice.payment-recorded`, `stock.adjusted`.
    pub action: String,
    /// `<resource>/<id>`.
    pub target: String,
    /// Facts of the action; never a secret.
    pub details: serde_json::Value,
    pub at: DateTime<Utc>,
}

impl AuditRecorded {
    pub fn new(actor: String, action: &str, target: String, details: serde_json::Value) -> Self {
        Self {
            actor,
            action: action.to_string(),
            target,
            details,
            at: Utc::now(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionRevoked {
    pub session_id: Uuid,
    pub user_id: Uuid,
    /// `sign-out`, `refresh-token-reused`, `user-deactivated`, `password-reset`,
    /// `api-token-revoked`.
    pub reason: String,
    /// When the last access token of the session expires: nothing needs remembering after.
    pub tokens_expire_by: DateTime<Utc>,
}
