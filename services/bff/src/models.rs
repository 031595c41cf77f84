//! The REST representations: camelCase JSON, money as `{amountMinor, currency}`, RFC 3339
//! timestamps, enums as their upper-case names. Conversions from the gRPC messages live next
//! to each type.
//!
//! Request bodies refuse unknown fields, so a misspelt field is an error rather than silently
//! ignored.

use carerp_proto::billing::v1 as billing;
use carerp_proto::common::v1 as common;
use carerp_proto::customer::v1 as customer;
use carerp_proto::inventory::v1 as inventory;
use carerp_proto::workorder::v1 as workorder;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

// ---------------------------------------------------------------------------------------
// shared

/// An amount in the smallest unit of its currency (cents for EUR).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Money {
    #[schema(example = 12345, minimum = 0)]
    pub amount_minor: i64,
    /// ISO 4217 code.
    #[schema(example = "EUR", pattern = r"^[A-Z]{3}$")]
    pub currency: String,
}

impl From<common::Money> for Money {
    fn from(m: common::Money) -> Self {
        Self {
            amount_minor: m.amount_minor,
            currency: m.currency,
        }
    }
}

impl From<Money> for common::Money {
    fn from(m: Money) -> Self {
        Self {
            amount_minor: m.amount_minor,
            currency: m.currency,
        }
    }
}

/// A request's amount of money, with the range the service enforces on it; the currency must
/// be the garage's (the services know it, the document cannot say it).
macro_rules! money_in {
    ($(#[$meta:meta])* $name:ident, $($range:tt)*) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        pub struct $name {
            #[schema(example = 12345, $($range)*)]
            pub amount_minor: i64,
            /// ISO 4217 code: the garage's currency.
            #[schema(example = "EUR", pattern = r"^[A-Z]{3}$")]
            pub currency: String,
        }

        impl From<$name> for common::Money {
            fn from(m: $name) -> Self {
                Self {
                    amount_minor: m.amount_minor,
                    currency: m.currency,
                }
            }
        }
    };
}

money_in!(
    /// A part's cost or price: 0 to 10^12 minor units (`MAX_UNIT_PRICE_MINOR`).
    Price,
    minimum = 0,
    maximum = 1_000_000_000_000_i64
);
money_in!(
    /// A labour rate per hour: 0 to 10^8 minor units (`MAX_HOURLY_RATE_MINOR`).
    HourlyRate,
    minimum = 0,
    maximum = 100_000_000
);
money_in!(
    /// An amount paid: more than 0, and at most the invoice's balance (which only the
    /// invoice knows).
    AmountPaid,
    minimum = 1
);

fn money(m: Option<common::Money>) -> Option<Money> {
    m.map(Money::from)
}

pub fn time(t: Option<prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    t.as_ref().and_then(carerp_kit::convert::from_timestamp)
}

pub fn non_empty(s: String) -> Option<String> {
    if s.is_empty() { None } else { Some(s) }
}

/// When a record was created and last changed, and its version for optimistic concurrency
/// (send it back as `expectedVersion`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Audit {
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    pub version: i64,
}

pub fn audit(a: Option<common::Audit>) -> Audit {
    a.map(|a| Audit {
        created_at: time(a.created_at),
        updated_at: time(a.updated_at),
        version: a.version,
    })
    .unwrap_or_default()
}

/// A service whose part of an aggregated answer is missing, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Missing {
    /// `customer`, `workorder`, `inventory` or `billing`.
    pub service: String,
    pub reason: String,
}

macro_rules! page_type {
    ($name:ident, $item:ty) => {
        /// One page of a list; pass `nextCursor` as `cursor` for the next one.
        #[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
        #[serde(rename_all = "camelCase")]
        pub struct $name {
            pub items: Vec<$item>,
            /// Null on the last page.
            pub next_cursor: Option<String>,
        }

        impl $name {
            pub fn new(items: Vec<$item>, page: Option<common::PageResponse>) -> Self {
                Self {
                    items,
                    next_cursor: page.and_then(|p| non_empty(p.next_page_token)),
                }
            }
        }
    };
}

/// Upper-case enum names in JSON, the proto's numbers inside.
macro_rules! api_enum {
    ($(#[$meta:meta])* $name:ident : $proto:ty { $($variant:ident = $proto_variant:ident),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
        #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
        pub enum $name {
            $($variant),+
        }

        impl $name {
            pub fn to_proto(self) -> $proto {
                match self {
                    $($name::$variant => <$proto>::$proto_variant),+
                }
            }

            /// `None` for UNSPECIFIED or a number this BFF does not know yet.
            pub fn from_proto(value: i32) -> Option<Self> {
                match <$proto>::try_from(value).ok()? {
                    $(<$proto>::$proto_variant => Some($name::$variant),)+
                    #[allow(unreachable_patterns)]
                    _ => None,
                }
            }
        }
    };
}

// ---------------------------------------------------------------------------------------
// customers and vehicles

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Address {
    #[schema(max_length = 200)]
    pub line1: String,
    #[schema(max_length = 200)]
    pub line2: String,
    #[schema(max_length = 20)]
    pub postal_code: String,
    #[schema(max_length = 200)]
    pub city: String,
    /// ISO 3166-1 alpha-2, e.g. `DE`.
    #[schema(pattern = r"^([A-Za-z]{2})?$")]
    pub country: String,
}

impl From<customer::Address> for Address {
    fn from(a: customer::Address) -> Self {
        Self {
            line1: a.line1,
            line2: a.line2,
            postal_code: a.postal_code,
            city: a.city,
            country: a.country,
        }
    }
}

impl From<Address> for customer::Address {
    fn from(a: Address) -> Self {
        Self {
            line1: a.line1,
            line2: a.line2,
            postal_code: a.postal_code,
            city: a.city,
            country: a.country,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Customer {
    pub id: String,
    pub name: String,
    pub email: String,
    /// International form, e.g. `+4930123456`.
    pub phone: String,
    pub address: Option<Address>,
    pub notes: String,
    pub archived: bool,
    pub vehicles: Vec<Vehicle>,
    pub audit: Audit,
}

impl From<customer::Customer> for Customer {
    fn from(c: customer::Customer) -> Self {
        Self {
            id: c.id,
            name: c.name,
            email: c.email,
            phone: c.phone,
            address: c.address.map(Address::from),
            notes: c.notes,
            archived: c.archived,
            vehicles: c.vehicles.into_iter().map(Vehicle::from).collect(),
            audit: audit(c.audit),
        }
    }
}

/// Who a work order or invoice is for, as shown next to it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomerSummary {
    pub id: String,
    pub name: String,
    pub email: String,
    pub phone: String,
    pub address: Option<Address>,
    pub archived: bool,
}

impl From<customer::Customer> for CustomerSummary {
    fn from(c: customer::Customer) -> Self {
        Self {
            id: c.id,
            name: c.name,
            email: c.email,
            phone: c.phone,
            address: c.address.map(Address::from),
            archived: c.archived,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Vehicle {
    pub id: String,
    pub customer_id: String,
    pub vin: String,
    pub make: String,
    pub model: String,
    pub year: i32,
    pub license_plate: String,
    /// Kilometres.
    pub mileage: i64,
    pub audit: Audit,
    /// What the VIN says of itself; absent when the stored VIN is not 17 VIN characters.
    pub vin_decoding: Option<VinDecoding>,
}

api_enum! {
    /// Position 9 of the VIN. `NOT_USED`: the region does not use a check digit (only WMIs
    /// starting `1`-`5` or `7F`-`7Z`, North America, and `L`, China, do). `INVALID` is only
    /// seen on vehicles stored before the check digit was enforced.
    CheckDigit: customer::CheckDigit {
        NotUsed = NotUsed,
        Valid = Valid,
        Invalid = Invalid,
    }
}

/// Decoded offline from the VIN's WMI (positions 1-3) and year code (position 10). The
/// vehicle's `make` and `year` stay as typed; `makeDiffers` and `yearDiffers` say where they
/// disagree with the VIN.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VinDecoding {
    /// The WMI's manufacturer, e.g. `Volkswagen`; absent when the table does not list it.
    pub manufacturer: Option<String>,
    /// From position 10; absent when it holds no year code.
    pub model_year: Option<i32>,
    /// `true`: settled by position 7 (North American VINs) or by the typed year falling in
    /// the same 30-year cycle; `false`: the latest year of the cycle not after next year.
    pub model_year_certain: bool,
    pub check_digit: Option<CheckDigit>,
    pub make_differs: bool,
    pub year_differs: bool,
}

impl From<customer::VinDecoding> for VinDecoding {
    fn from(d: customer::VinDecoding) -> Self {
        Self {
            manufacturer: non_empty(d.manufacturer),
            model_year: (d.model_year != 0).then_some(d.model_year),
            model_year_certain: d.model_year_certain,
            check_digit: CheckDigit::from_proto(d.check_digit),
            make_differs: d.make_differs,
            year_differs: d.year_differs,
        }
    }
}

impl From<customer::Vehicle> for Vehicle {
    fn from(v: customer::Vehicle) -> Self {
        Self {
            vin_decoding: v.vin_decoding.map(VinDecoding::from),
            id: v.id,
            customer_id: v.customer_id,
            vin: v.vin,
            make: v.make,
            model: v.model,
            year: v.year,
            license_plate: v.license_plate,
            mileage: v.mileage,
            audit: audit(v.audit),
        }
    }
}

page_type!(CustomerPage, Customer);
page_type!(VehiclePage, Vehicle);

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateCustomer {
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub name: String,
    #[serde(default)]
    #[schema(
        max_length = 254,
        pattern = r"^([!-?A-~]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+)?$"
    )]
    pub email: String,
    #[serde(default)]
    #[schema(
        max_length = 40,
        pattern = r"^(\+[ ().-]*[1-9]([ ().-]*[0-9]){7,14}[ ().-]*)?$"
    )]
    pub phone: String,
    #[serde(default)]
    pub address: Option<Address>,
    #[serde(default)]
    #[schema(max_length = 4000)]
    pub notes: String,
}

/// Replaces the customer's contact fields.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateCustomer {
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub name: String,
    #[serde(default)]
    #[schema(
        max_length = 254,
        pattern = r"^([!-?A-~]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+)?$"
    )]
    pub email: String,
    #[serde(default)]
    #[schema(
        max_length = 40,
        pattern = r"^(\+[ ().-]*[1-9]([ ().-]*[0-9]){7,14}[ ().-]*)?$"
    )]
    pub phone: String,
    #[serde(default)]
    pub address: Option<Address>,
    #[serde(default)]
    #[schema(max_length = 4000)]
    pub notes: String,
    /// The `audit.version` the change is based on; 0 or absent skips the check.
    #[serde(default)]
    #[schema(minimum = 0)]
    pub expected_version: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateVehicle {
    /// 17 characters (no I, O, Q), unique in the garage; where the region uses a check digit
    /// (WMI starting `1`-`5`, `7F`-`7Z`, `L`), position 9 must be the right one.
    #[schema(pattern = r"^[A-HJ-NPR-Z0-9]{17}$")]
    pub vin: String,
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub make: String,
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub model: String,
    #[schema(minimum = 1886)]
    pub year: i32,
    #[serde(default)]
    #[schema(max_length = 16)]
    pub license_plate: String,
    #[serde(default)]
    #[schema(minimum = 0)]
    pub mileage: i64,
}

/// Replaces the vehicle's fields; the VIN and owner do not change.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateVehicle {
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub make: String,
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub model: String,
    #[schema(minimum = 1886)]
    pub year: i32,
    /// Replaced like the rest: left out, it would erase the plate, so it is required
    /// (`""` for none).
    #[schema(max_length = 16)]
    pub license_plate: String,
    /// Left out, it would read as 0 km and be refused as a decrease: required.
    #[schema(minimum = 0)]
    pub mileage: i64,
    #[serde(default)]
    #[schema(minimum = 0)]
    pub expected_version: i64,
}

// ---------------------------------------------------------------------------------------
// work orders

api_enum! {
    /// `OPEN [-> ESTIMATE] -> IN_PROGRESS <-> AWAITING_PARTS -> COMPLETED -> INVOICED`;
    /// `CANCELLED` before `COMPLETED`. `ESTIMATE`: the estimate was sent, waiting for the
    /// customer's decisions.
    WorkOrderStatus: workorder::WorkOrderStatus {
        Open = Open,
        Estimate = Estimate,
        InProgress = InProgress,
        AwaitingParts = AwaitingParts,
        Completed = Completed,
        Invoiced = Invoiced,
        Cancelled = Cancelled,
    }
}

impl WorkOrderStatus {
    pub const ALL: [WorkOrderStatus; 7] = [
        WorkOrderStatus::Open,
        WorkOrderStatus::Estimate,
        WorkOrderStatus::InProgress,
        WorkOrderStatus::AwaitingParts,
        WorkOrderStatus::Completed,
        WorkOrderStatus::Invoiced,
        WorkOrderStatus::Cancelled,
    ];

    pub fn name(self) -> &'static str {
        match self {
            WorkOrderStatus::Open => "OPEN",
            WorkOrderStatus::Estimate => "ESTIMATE",
            WorkOrderStatus::InProgress => "IN_PROGRESS",
            WorkOrderStatus::AwaitingParts => "AWAITING_PARTS",
            WorkOrderStatus::Completed => "COMPLETED",
            WorkOrderStatus::Invoiced => "INVOICED",
            WorkOrderStatus::Cancelled => "CANCELLED",
        }
    }
}

api_enum! {
    /// `QUOTED`: of a job not approved (yet), priced for the estimate and not reserved.
    ReservationState: workorder::ReservationState {
        Quoted = Quoted,
        Pending = Pending,
        Reserved = Reserved,
        Failed = Failed,
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartLine {
    pub id: String,
    pub job_id: String,
    pub part_id: String,
    pub quantity: i32,
    pub reservation_state: Option<ReservationState>,
    /// Why the reservation failed, when `FAILED`.
    pub failure_reason: Option<String>,
    /// Recorded when inventory reserved the line.
    pub sku: Option<String>,
    pub name: Option<String>,
    pub unit_price: Option<Money>,
    pub line_total: Option<Money>,
}

impl From<workorder::PartLine> for PartLine {
    fn from(l: workorder::PartLine) -> Self {
        Self {
            id: l.id,
            job_id: l.job_id,
            part_id: l.part_id,
            quantity: l.quantity,
            reservation_state: ReservationState::from_proto(l.reservation_state),
            failure_reason: non_empty(l.failure_reason),
            sku: non_empty(l.sku),
            name: non_empty(l.name),
            unit_price: money(l.unit_price),
            line_total: money(l.line_total),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LaborLine {
    pub id: String,
    pub job_id: String,
    pub description: String,
    pub technician: String,
    pub minutes: i32,
    pub hourly_rate: Option<Money>,
    pub line_total: Option<Money>,
}

impl From<workorder::LaborLine> for LaborLine {
    fn from(l: workorder::LaborLine) -> Self {
        Self {
            id: l.id,
            job_id: l.job_id,
            description: l.description,
            technician: l.technician,
            minutes: l.minutes,
            hourly_rate: money(l.hourly_rate),
            line_total: money(l.line_total),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
/// Parts, labour and their sum of the APPROVED jobs (what will be invoiced), and what the
/// PROPOSED jobs would add.
pub struct Totals {
    pub parts: Option<Money>,
    pub labor: Option<Money>,
    pub estimated_total: Option<Money>,
    pub proposed: Option<Money>,
}

api_enum! {
    /// `PROPOSED` until the customer decides: `APPROVED`, `DECLINED`, or `DEFERRED` (with a
    /// reason and a day to remind them after).
    JobState: workorder::JobState {
        Proposed = Proposed,
        Approved = Approved,
        Declined = Declined,
        Deferred = Deferred,
    }
}

api_enum! {
    /// How the decision reached the garage. `LINK` and `INTAKE` are recorded by the server
    /// only (the approval link; the job the order was opened for).
    DecisionChannel: workorder::DecisionChannel {
        InPerson = InPerson,
        Phone = Phone,
        Email = Email,
        Link = Link,
        Intake = Intake,
    }
}

api_enum! {
    /// A decision the garage records for the customer.
    StaffDecision: workorder::JobState {
        Approved = Approved,
        Declined = Declined,
        Deferred = Deferred,
    }
}

api_enum! {
    /// How the customer told the garage (`LINK` and `INTAKE` are the server's own).
    StaffChannel: workorder::DecisionChannel {
        InPerson = InPerson,
        Phone = Phone,
        Email = Email,
    }
}

api_enum! {
    /// A decision on the approval page: deferring is the garage's to record.
    CustomerChoice: workorder::JobState {
        Approved = Approved,
        Declined = Declined,
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// A user or API token id, `customer` for the approval link, `system`.
    pub decided_by: String,
    pub channel: Option<DecisionChannel>,
    pub decided_at: Option<DateTime<Utc>>,
    pub reason: Option<String>,
    /// `YYYY-MM-DD`, deferred jobs only.
    pub remind_after: Option<String>,
    /// The estimate version decided on; 0 without one.
    pub estimate_version: i32,
}

/// One concern of the work order with its lines (`jobId` on each line) and the decision.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    pub id: String,
    pub title: String,
    pub state: Option<JobState>,
    /// The job the order was opened for, approved at intake.
    pub intake: bool,
    pub decision: Option<Decision>,
    pub total: Option<Money>,
}

impl From<workorder::Job> for Job {
    fn from(j: workorder::Job) -> Self {
        Self {
            id: j.id,
            title: j.title,
            state: JobState::from_proto(j.state),
            intake: j.intake,
            decision: j.decision.map(|d| Decision {
                decided_by: d.decided_by,
                channel: DecisionChannel::from_proto(d.channel),
                decided_at: time(d.decided_at),
                reason: non_empty(d.reason),
                remind_after: non_empty(d.remind_after),
                estimate_version: d.estimate_version,
            }),
            total: money(j.total),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkOrder {
    pub id: String,
    /// e.g. `WO-2026-000042`.
    pub number: String,
    pub customer_id: String,
    pub vehicle_id: String,
    pub complaint: String,
    pub odometer_km: i64,
    pub notes: String,
    pub status: Option<WorkOrderStatus>,
    /// The intake job first, then in the order they were added.
    pub jobs: Vec<Job>,
    pub part_lines: Vec<PartLine>,
    pub labor_lines: Vec<LaborLine>,
    pub totals: Option<Totals>,
    /// The last estimate sent (0: none), and whether a job changed since (its approval link
    /// then no longer works).
    pub estimate_version: i32,
    pub estimate_outdated: bool,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub invoiced_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub cancellation_reason: Option<String>,
    pub invoice_id: Option<String>,
    pub audit: Audit,
}

impl From<workorder::WorkOrder> for WorkOrder {
    fn from(w: workorder::WorkOrder) -> Self {
        Self {
            id: w.id,
            number: w.number,
            customer_id: w.customer_id,
            vehicle_id: w.vehicle_id,
            complaint: w.complaint,
            odometer_km: w.odometer_km,
            notes: w.notes,
            status: WorkOrderStatus::from_proto(w.status),
            jobs: w.jobs.into_iter().map(Job::from).collect(),
            part_lines: w.part_lines.into_iter().map(PartLine::from).collect(),
            labor_lines: w.labor_lines.into_iter().map(LaborLine::from).collect(),
            totals: w.totals.map(|t| Totals {
                parts: money(t.parts),
                labor: money(t.labor),
                estimated_total: money(t.estimated_total),
                proposed: money(t.proposed),
            }),
            estimate_version: w.estimate_version,
            estimate_outdated: w.estimate_outdated,
            started_at: time(w.started_at),
            completed_at: time(w.completed_at),
            invoiced_at: time(w.invoiced_at),
            cancelled_at: time(w.cancelled_at),
            cancellation_reason: non_empty(w.cancellation_reason),
            invoice_id: non_empty(w.invoice_id),
            audit: audit(w.audit),
        }
    }
}

page_type!(WorkOrderPage, WorkOrder);

/// What an invoice shows next to its work order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InvoiceSummary {
    pub id: String,
    /// e.g. `INV-2026-000017`.
    pub number: String,
    pub status: Option<InvoiceStatus>,
    pub total: Option<Money>,
    pub balance: Option<Money>,
    pub overdue: bool,
}

impl From<billing::Invoice> for InvoiceSummary {
    fn from(i: billing::Invoice) -> Self {
        Self {
            id: i.id,
            number: i.number,
            status: InvoiceStatus::from_proto(i.status),
            total: money(i.total),
            balance: money(i.balance),
            overdue: i.overdue,
        }
    }
}

/// A work order with its customer, vehicle and, once invoiced, its invoice. A part whose
/// service did not answer is absent and named in `missing`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkOrderView {
    #[serde(flatten)]
    pub work_order: WorkOrder,
    pub customer: Option<CustomerSummary>,
    pub vehicle: Option<Vehicle>,
    pub invoice: Option<InvoiceSummary>,
    pub missing: Vec<Missing>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateWorkOrder {
    #[schema(format = Uuid)]
    pub customer_id: String,
    #[schema(format = Uuid)]
    pub vehicle_id: String,
    #[schema(min_length = 1, max_length = 2000, pattern = r"\S")]
    pub complaint: String,
    #[serde(default)]
    #[schema(minimum = 0, maximum = 10_000_000)]
    pub odometer_km: i64,
    #[serde(default)]
    #[schema(max_length = 4000)]
    pub notes: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChangeWorkOrderStatus {
    pub status: WorkOrderStatus,
    /// Required when cancelling.
    #[serde(default)]
    #[schema(max_length = 500)]
    pub reason: String,
    #[serde(default)]
    #[schema(minimum = 0)]
    pub expected_version: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AddPartLine {
    #[schema(format = Uuid)]
    pub part_id: String,
    #[schema(minimum = 1, maximum = 10_000)]
    pub quantity: i32,
    /// Absent: the intake job. A PROPOSED job's part is quoted at its current price.
    #[serde(default)]
    #[schema(format = Uuid)]
    pub job_id: String,
    #[serde(default)]
    #[schema(minimum = 0)]
    pub expected_version: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AddLaborLine {
    #[schema(min_length = 1, max_length = 500, pattern = r"\S")]
    pub description: String,
    #[serde(default)]
    #[schema(max_length = 200)]
    pub technician: String,
    #[schema(minimum = 1, maximum = 44_640)]
    pub minutes: i32,
    /// Absent: the garage's labour rate.
    #[serde(default)]
    pub hourly_rate: Option<HourlyRate>,
    /// Absent: the intake job.
    #[serde(default)]
    #[schema(format = Uuid)]
    pub job_id: String,
    #[serde(default)]
    #[schema(minimum = 0)]
    pub expected_version: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AddJob {
    /// The concern as the customer reads it, e.g. "Front brakes grinding" (1-200 characters).
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub title: String,
    #[serde(default)]
    #[schema(minimum = 0)]
    pub expected_version: i64,
}

/// The customer's decision on a job, as they told the garage.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DecideJob {
    pub decision: StaffDecision,
    pub channel: StaffChannel,
    /// Required when declining or deferring.
    #[serde(default)]
    #[schema(max_length = 500)]
    pub reason: String,
    /// Required when deferring: `YYYY-MM-DD`, after today.
    #[serde(default)]
    #[schema(pattern = r"^(\d{4}-\d{2}-\d{2})?$")]
    pub remind_after: String,
    #[serde(default)]
    #[schema(minimum = 0)]
    pub expected_version: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SendEstimate {
    #[serde(default)]
    #[schema(minimum = 0)]
    pub expected_version: i64,
    /// How the customer gets the link: `LINK` (default: the answer carries it, to pass on by
    /// hand) or `EMAIL` (also emailed to the customer's address on their record).
    #[serde(default)]
    pub deliver: Delivery,
}

/// How an estimate's approval link reaches the customer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Delivery {
    /// The answer carries the link; the garage passes it on.
    #[default]
    Link,
    /// The BFF emails the link to the customer too.
    Email,
}

/// What became of the estimate's email. The estimate is sent either way: when `delivered`
/// is false the link in the answer is the way to reach the customer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EmailSent {
    /// The customer's address it was sent to.
    pub to: String,
    /// The mail server accepted it.
    pub delivered: bool,
    /// Why it was not delivered (the mail server's answer; never a secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EstimateLine {
    pub description: String,
    pub total: Option<Money>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EstimateJob {
    pub job_id: String,
    pub title: String,
    pub lines: Vec<EstimateLine>,
    pub total: Option<Money>,
}

/// An estimate as it was sent: never changed afterwards.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Estimate {
    pub id: String,
    pub version: i32,
    pub sent_by: String,
    pub sent_at: Option<DateTime<Utc>>,
    pub jobs: Vec<EstimateJob>,
    pub total: Option<Money>,
    pub link_expires_at: Option<DateTime<Utc>>,
    /// A job changed after it was sent, or a newer version was sent: its link no longer works.
    pub outdated: bool,
}

impl From<workorder::Estimate> for Estimate {
    fn from(e: workorder::Estimate) -> Self {
        Self {
            id: e.id,
            version: e.version,
            sent_by: e.sent_by,
            sent_at: time(e.sent_at),
            jobs: e
                .jobs
                .into_iter()
                .map(|j| EstimateJob {
                    job_id: j.job_id,
                    title: j.title,
                    lines: j
                        .lines
                        .into_iter()
                        .map(|l| EstimateLine {
                            description: l.description,
                            total: money(l.total),
                        })
                        .collect(),
                    total: money(j.total),
                })
                .collect(),
            total: money(e.total),
            link_expires_at: time(e.link_expires_at),
            outdated: e.outdated,
        }
    }
}

/// What sending an estimate gives: the order, the estimate as kept, and the approval link
/// (shown once: only its SHA-256 is kept).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SentEstimate {
    pub work_order: WorkOrder,
    pub estimate: Estimate,
    pub approval_token: String,
    /// The customer's page: `/approve/{approvalToken}` on this server.
    pub approval_path: String,
    /// With `deliver: EMAIL`: to whom the email went, and whether it was delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailSent>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EstimateList {
    /// Newest first.
    pub items: Vec<Estimate>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobDecision {
    pub job_id: String,
    pub state: Option<JobState>,
}

/// What the approval link opens: the estimate as sent and each job's decision now.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Approval {
    pub estimate: Option<Estimate>,
    pub work_order_number: String,
    pub decisions: Vec<JobDecision>,
}

impl From<workorder::EstimateForCustomer> for Approval {
    fn from(a: workorder::EstimateForCustomer) -> Self {
        Self {
            estimate: a.estimate.map(Estimate::from),
            work_order_number: a.work_order_number,
            decisions: a
                .decisions
                .into_iter()
                .map(|d| JobDecision {
                    job_id: d.job_id,
                    state: JobState::from_proto(d.state),
                })
                .collect(),
        }
    }
}

/// The customer's decision on the approval page.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CustomerDecision {
    pub decision: CustomerChoice,
    #[serde(default)]
    #[schema(max_length = 500)]
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateNotes {
    #[schema(max_length = 4000)]
    pub notes: String,
    #[serde(default)]
    #[schema(minimum = 0)]
    pub expected_version: i64,
}

// ---------------------------------------------------------------------------------------
// parts

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Part {
    pub id: String,
    pub sku: String,
    pub name: String,
    pub description: String,
    pub category: String,
    pub unit_cost: Option<Money>,
    pub unit_price: Option<Money>,
    /// Storage bin, e.g. `A-03-2`.
    pub location: String,
    /// Low stock when available <= reorder point.
    pub reorder_point: i32,
    pub reorder_quantity: i32,
    pub active: bool,
    pub quantity_on_hand: i32,
    pub quantity_reserved: i32,
    pub quantity_available: i32,
    pub audit: Audit,
}

impl From<inventory::Part> for Part {
    fn from(p: inventory::Part) -> Self {
        Self {
            id: p.id,
            sku: p.sku,
            name: p.name,
            description: p.description,
            category: p.category,
            unit_cost: money(p.unit_cost),
            unit_price: money(p.unit_price),
            location: p.location,
            reorder_point: p.reorder_point,
            reorder_quantity: p.reorder_quantity,
            active: p.active,
            quantity_on_hand: p.quantity_on_hand,
            quantity_reserved: p.quantity_reserved,
            quantity_available: p.quantity_available,
            audit: audit(p.audit),
        }
    }
}

page_type!(PartPage, Part);

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreatePart {
    /// Letters, digits, `-`, `_`, `.` and `/`; stored in upper case.
    #[schema(min_length = 1, max_length = 64, pattern = r"^[A-Za-z0-9._/-]+$")]
    pub sku: String,
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub name: String,
    #[serde(default)]
    #[schema(max_length = 4000)]
    pub description: String,
    #[serde(default)]
    #[schema(max_length = 200)]
    pub category: String,
    pub unit_cost: Price,
    pub unit_price: Price,
    #[serde(default)]
    #[schema(max_length = 200)]
    pub location: String,
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1_000_000)]
    pub reorder_point: i32,
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1_000_000)]
    pub reorder_quantity: i32,
    /// Opening stock, recorded as a receipt.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1_000_000)]
    pub initial_quantity: i32,
}

/// Only the fields present change.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct UpdatePart {
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub name: Option<String>,
    #[schema(max_length = 4000)]
    pub description: Option<String>,
    #[schema(max_length = 200)]
    pub category: Option<String>,
    pub unit_cost: Option<Price>,
    pub unit_price: Option<Price>,
    #[schema(max_length = 200)]
    pub location: Option<String>,
    #[schema(minimum = 0, maximum = 1_000_000)]
    pub reorder_point: Option<i32>,
    #[schema(minimum = 0, maximum = 1_000_000)]
    pub reorder_quantity: Option<i32>,
    pub active: Option<bool>,
    #[schema(minimum = 0)]
    pub expected_version: i64,
}

api_enum! {
    /// `RECEIPT`: goods received (delta > 0). `ADJUSTMENT`: count correction, damage, loss.
    AdjustmentKind: inventory::AdjustmentKind {
        Receipt = Receipt,
        Adjustment = Adjustment,
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AdjustStock {
    pub kind: AdjustmentKind,
    #[schema(minimum = -1_000_000, maximum = 1_000_000)]
    pub delta: i32,
    #[schema(min_length = 1, max_length = 500, pattern = r"\S")]
    pub reason: String,
}

api_enum! {
    MovementKind: inventory::MovementKind {
        Receipt = Receipt,
        Adjustment = Adjustment,
        Reservation = Reservation,
        Release = Release,
        Consumption = Consumption,
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Movement {
    pub id: String,
    pub part_id: String,
    pub kind: Option<MovementKind>,
    pub on_hand_delta: i32,
    pub reserved_delta: i32,
    pub work_order_id: Option<String>,
    pub line_id: Option<String>,
    pub reason: String,
    /// Who made the change: the user (or API token) id of the caller's token, or the event
    /// that caused it (`workorder.completed event <id>`).
    pub actor: String,
    pub at: Option<DateTime<Utc>>,
}

impl From<inventory::Movement> for Movement {
    fn from(m: inventory::Movement) -> Self {
        Self {
            id: m.id,
            part_id: m.part_id,
            kind: MovementKind::from_proto(m.kind),
            on_hand_delta: m.on_hand_delta,
            reserved_delta: m.reserved_delta,
            work_order_id: non_empty(m.work_order_id),
            line_id: non_empty(m.line_id),
            reason: m.reason,
            actor: m.actor,
            at: time(m.at),
        }
    }
}

page_type!(MovementPage, Movement);

// ---------------------------------------------------------------------------------------
// invoices

api_enum! {
    InvoiceStatus: billing::InvoiceStatus {
        Issued = Issued,
        PartiallyPaid = PartiallyPaid,
        Paid = Paid,
        Void = Void,
    }
}

api_enum! {
    LineKind: billing::LineKind {
        Part = Part,
        Labor = Labor,
    }
}

api_enum! {
    PaymentMethod: billing::PaymentMethod {
        Cash = Cash,
        Card = Card,
        BankTransfer = BankTransfer,
        Other = Other,
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InvoiceLine {
    pub kind: Option<LineKind>,
    pub description: String,
    /// Parts: pieces. Labour: minutes.
    pub quantity: i32,
    /// Parts: price per piece. Labour: hourly rate.
    pub unit_price: Option<Money>,
    pub line_total: Option<Money>,
    pub tax: Option<Money>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Payment {
    pub id: String,
    pub amount: Option<Money>,
    pub method: Option<PaymentMethod>,
    pub reference: String,
    pub received_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Invoice {
    pub id: String,
    pub number: String,
    pub work_order_id: String,
    pub work_order_number: String,
    pub customer_id: String,
    pub vehicle_id: String,
    pub lines: Vec<InvoiceLine>,
    pub subtotal: Option<Money>,
    pub tax: Option<Money>,
    pub total: Option<Money>,
    pub tax_rate_basis_points: i32,
    /// ISO date in the garage's time zone.
    pub issue_date: String,
    pub due_date: String,
    pub status: Option<InvoiceStatus>,
    /// Due date passed and a balance remains.
    pub overdue: bool,
    pub payments: Vec<Payment>,
    pub paid: Option<Money>,
    pub balance: Option<Money>,
    pub void_reason: Option<String>,
    pub audit: Audit,
}

impl From<billing::Invoice> for Invoice {
    fn from(i: billing::Invoice) -> Self {
        Self {
            id: i.id,
            number: i.number,
            work_order_id: i.work_order_id,
            work_order_number: i.work_order_number,
            customer_id: i.customer_id,
            vehicle_id: i.vehicle_id,
            lines: i
                .lines
                .into_iter()
                .map(|l| InvoiceLine {
                    kind: LineKind::from_proto(l.kind),
                    description: l.description,
                    quantity: l.quantity,
                    unit_price: money(l.unit_price),
                    line_total: money(l.line_total),
                    tax: money(l.tax),
                })
                .collect(),
            subtotal: money(i.subtotal),
            tax: money(i.tax),
            total: money(i.total),
            tax_rate_basis_points: i.tax_rate_basis_points,
            issue_date: i.issue_date,
            due_date: i.due_date,
            status: InvoiceStatus::from_proto(i.status),
            overdue: i.overdue,
            payments: i
                .payments
                .into_iter()
                .map(|p| Payment {
                    id: p.id,
                    amount: money(p.amount),
                    method: PaymentMethod::from_proto(p.method),
                    reference: p.reference,
                    received_at: time(p.received_at),
                })
                .collect(),
            paid: money(i.paid),
            balance: money(i.balance),
            void_reason: non_empty(i.void_reason),
            audit: audit(i.audit),
        }
    }
}

page_type!(InvoicePage, Invoice);

/// An invoice with the customer it is addressed to.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InvoiceView {
    #[serde(flatten)]
    pub invoice: Invoice,
    pub customer: Option<CustomerSummary>,
    pub missing: Vec<Missing>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecordPayment {
    pub amount: AmountPaid,
    pub method: PaymentMethod,
    #[serde(default)]
    #[schema(max_length = 200)]
    pub reference: String,
    /// Absent: now.
    #[serde(default)]
    pub received_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VoidInvoice {
    #[schema(min_length = 1, max_length = 500, pattern = r"\S")]
    pub reason: String,
    #[serde(default)]
    #[schema(minimum = 0)]
    pub expected_version: i64,
}

/// The statuses a client may ask for through `PUT /api/invoices/{id}/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RequestedInvoiceStatus {
    /// Records a payment: of `amount`, or of the whole balance when absent.
    Paid,
    /// Voids the invoice; `reason` is required.
    Void,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChangeInvoiceStatus {
    pub status: RequestedInvoiceStatus,
    /// `PAID`: the amount paid; absent: the balance.
    #[serde(default)]
    pub amount: Option<AmountPaid>,
    /// `PAID`: how it was paid; absent: `OTHER`.
    #[serde(default)]
    pub method: Option<PaymentMethod>,
    #[serde(default)]
    #[schema(max_length = 200)]
    pub reference: String,
    /// `VOID`: why.
    #[serde(default)]
    #[schema(max_length = 500)]
    pub reason: String,
    #[serde(default)]
    #[schema(minimum = 0)]
    pub expected_version: i64,
}

/// What `PUT /api/invoices/{id}/status` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InvoiceAction {
    PaymentRecorded,
    Voided,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InvoiceStatusChanged {
    pub action: InvoiceAction,
    pub invoice: Invoice,
}

// ---------------------------------------------------------------------------------------
// dashboard

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkOrderCounts {
    pub open: u64,
    /// Estimate sent, waiting for the customer.
    pub estimate: u64,
    pub in_progress: u64,
    pub awaiting_parts: u64,
    pub completed: u64,
    pub invoiced: u64,
    pub cancelled: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LowStock {
    /// Active parts at or below their reorder point.
    pub count: u64,
    /// The first of them (at most 20).
    pub parts: Vec<Part>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InvoiceTotals {
    pub unpaid_total: Option<Money>,
    pub unpaid_count: i32,
    pub overdue_total: Option<Money>,
    pub overdue_count: i32,
    /// Net totals of the invoices issued this month, void ones excluded.
    pub revenue_this_month: Option<Money>,
    pub period_from: String,
    pub period_to: String,
}

/// The garage at a glance. Each section comes from one service; a section whose service did
/// not answer is null and named in `missing`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Dashboard {
    pub work_orders_by_status: Option<WorkOrderCounts>,
    pub low_stock: Option<LowStock>,
    pub invoices: Option<InvoiceTotals>,
    pub missing: Vec<Missing>,
    /// False when something is missing.
    pub complete: bool,
}

// ---------------------------------------------------------------------------------------
// inspections (after `api_enum!`, which they use)

mod canned;
mod history;
mod inspection;
pub use canned::*;
pub use history::*;
pub use inspection::*;
