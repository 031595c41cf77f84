//! Work orders as the garage runs them: the life cycle, the lines and the money.
//! Pure: no I/O, so every rule is unit-tested directly.

use carerp_kit::{FieldViolation, Violations};
use uuid::Uuid;

pub use crate::jobs::{Job, JobState};

const MAX_COMPLAINT: usize = 2000;
const MAX_NOTES: usize = 4000;
const MAX_TEXT: usize = 200;
const MAX_DESCRIPTION: usize = 500;
const MAX_REASON: usize = 500;
/// A million kilometres more than any car on the road; beyond that it is a typo.
pub const MAX_ODOMETER_KM: i64 = 10_000_000;
/// Far more pieces of one part than one repair needs; beyond that it is a typo.
pub const MAX_QUANTITY: i32 = 10_000;
/// One month of one technician's time: a single labour line longer than that is a typo.
pub const MAX_MINUTES: i32 = 31 * 24 * 60;
/// Keeps `minutes * rate` far below `i64::MAX`, so labour arithmetic cannot overflow.
pub const MAX_HOURLY_RATE_MINOR: i64 = 100_000_000;
/// The most part lines, and labour lines, one work order may have: with every text at its
/// maximum, `workorder.completed` stays under half the broker's 1 MiB default max payload.
pub const MAX_PART_LINES: usize = 100;
pub const MAX_LABOR_LINES: usize = 100;
pub use carerp_kit::events::MAX_UNIT_PRICE_MINOR;

/// Where a work order is in its life cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Open,
    /// The estimate was sent: waiting for the customer's decisions before work starts.
    Estimate,
    InProgress,
    AwaitingParts,
    Completed,
    Invoiced,
    Cancelled,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::Open,
        Status::Estimate,
        Status::InProgress,
        Status::AwaitingParts,
        Status::Completed,
        Status::Invoiced,
        Status::Cancelled,
    ];

    /// The name used in the database, in messages and in the contract (without prefix).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "OPEN",
            Status::Estimate => "ESTIMATE",
            Status::InProgress => "IN_PROGRESS",
            Status::AwaitingParts => "AWAITING_PARTS",
            Status::Completed => "COMPLETED",
            Status::Invoiced => "INVOICED",
            Status::Cancelled => "CANCELLED",
        }
    }

    pub fn parse(value: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str() == value)
    }

    /// Lines (parts and labour) change only while the work is not finished.
    pub fn allows_line_changes(self) -> bool {
        matches!(
            self,
            Status::Open | Status::Estimate | Status::InProgress | Status::AwaitingParts
        )
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What asks for a status change: only some transitions belong to events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// Someone in the garage, through `ChangeStatus`.
    Request,
    /// Inventory could not reserve parts (`inventory.reservation-failed`).
    ReservationFailed,
    /// Billing invoiced the work order (`invoice.created`).
    InvoiceCreated,
    /// Billing voided the order's invoice (`invoice.voided`): the order is COMPLETED again,
    /// waiting for the corrected invoice.
    InvoiceVoided,
    /// The estimate went to the customer (`SendEstimate`).
    EstimateSent,
}

/// Why a status change was refused; the message says from what to what and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("cannot change status from {0} to {0}: the work order is already {0}")]
    Unchanged(Status),
    #[error("cannot change status from {from} to {to}: {why}")]
    Refused {
        from: Status,
        to: Status,
        why: &'static str,
    },
    #[error(
        "cannot change status from {from} to COMPLETED: every part line of an approved job must be RESERVED, these are not: {}",
        describe_unreserved(.lines)
    )]
    UnreservedLines {
        from: Status,
        lines: Vec<(Uuid, ReservationState)>,
    },
    #[error(
        "cannot change status from {from} to {to}: the customer has not decided on these jobs yet: {}; approve, decline or defer them (or remove them) first",
        describe_jobs(.jobs)
    )]
    UndecidedJobs {
        from: Status,
        to: Status,
        jobs: Vec<(Uuid, String)>,
    },
}

fn describe_jobs(jobs: &[(Uuid, String)]) -> String {
    jobs.iter()
        .map(|(id, title)| format!("{id} ({title:?})"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn describe_unreserved(lines: &[(Uuid, ReservationState)]) -> String {
    lines
        .iter()
        .map(|(id, state)| format!("{id} ({state})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The life cycle `OPEN [-> ESTIMATE] -> IN_PROGRESS <-> AWAITING_PARTS -> COMPLETED ->
/// INVOICED`, with `CANCELLED` from any state before `COMPLETED`.
///
/// Sending the estimate moves an `OPEN` order to `ESTIMATE`; work on it starts once the
/// customer has decided on at least one of its jobs (an order whose jobs are all still
/// PROPOSED waits). Completing is allowed from `IN_PROGRESS` and from `AWAITING_PARTS` (the
/// parts may have arrived and been reserved while the order waited), needs every job decided
/// and every part line of the APPROVED jobs `RESERVED`.
/// A failed reservation moves an `OPEN` or `IN_PROGRESS` order to `AWAITING_PARTS`: parts are
/// usually ordered at intake, before work starts. Such an order has never `started` and goes
/// through `IN_PROGRESS` before it can be completed. `INVOICED` belongs to billing alone, and
/// so does the one way back: a voided invoice returns the order to `COMPLETED`.
pub fn check_transition(
    from: Status,
    to: Status,
    cause: Cause,
    started: bool,
    jobs: &[Job],
    part_lines: &[PartLine],
) -> Result<(), TransitionError> {
    use Status::*;
    if from == to {
        return Err(TransitionError::Unchanged(from));
    }
    let refused = |why| Err(TransitionError::Refused { from, to, why });
    match (cause, from, to) {
        (Cause::InvoiceVoided, Invoiced, Completed) => Ok(()),
        (Cause::InvoiceVoided, _, _) => {
            refused("only an INVOICED work order returns to COMPLETED when its invoice is voided")
        }
        (_, Invoiced, _) => refused("an invoiced work order is final"),
        (_, Cancelled, _) => refused("a cancelled work order is final"),
        (Cause::InvoiceCreated, Completed, Invoiced) => Ok(()),
        (Cause::InvoiceCreated, _, Invoiced) => {
            refused("only a COMPLETED work order can be invoiced")
        }
        (_, _, Invoiced) => {
            refused("INVOICED is reached only when billing creates the invoice (invoice.created)")
        }
        (Cause::ReservationFailed, Open | Estimate | InProgress, AwaitingParts) => Ok(()),
        (Cause::EstimateSent, Open, Estimate) => Ok(()),
        (Cause::EstimateSent, _, _) => {
            refused("only an OPEN work order moves to ESTIMATE when its estimate is sent")
        }
        (Cause::ReservationFailed | Cause::InvoiceCreated, _, _) => {
            refused("this event does not lead to that status")
        }
        (Cause::Request, Completed, Cancelled) => {
            refused("a completed work order cannot be cancelled")
        }
        (Cause::Request, Completed, _) => {
            refused("a completed work order only moves on to INVOICED, when billing invoices it")
        }
        (Cause::Request, _, Open) => refused("a work order never returns to OPEN"),
        (Cause::Request, _, Estimate) => {
            refused("ESTIMATE is reached by sending the estimate (SendEstimate)")
        }
        (Cause::Request, Open, InProgress) => Ok(()),
        (Cause::Request, Estimate, InProgress) => {
            let undecided = undecided(jobs);
            let any_decided = jobs
                .iter()
                .any(|job| !job.intake && job.state != JobState::Proposed);
            if undecided.is_empty() || any_decided {
                Ok(())
            } else {
                Err(TransitionError::UndecidedJobs {
                    from,
                    to,
                    jobs: undecided,
                })
            }
        }
        (Cause::Request, Open | Estimate, AwaitingParts | Completed) => {
            refused("work has not started: move it to IN_PROGRESS first")
        }
        (Cause::Request, InProgress, AwaitingParts)
        | (Cause::Request, AwaitingParts, InProgress) => Ok(()),
        (Cause::Request, AwaitingParts, Completed) if !started => {
            refused("work has not started: move it to IN_PROGRESS first")
        }
        (Cause::Request, InProgress | AwaitingParts, Completed) => {
            let undecided = undecided(jobs);
            if !undecided.is_empty() {
                return Err(TransitionError::UndecidedJobs {
                    from,
                    to,
                    jobs: undecided,
                });
            }
            let lines: Vec<_> = approved_lines(jobs, part_lines)
                .filter(|line| line.state != ReservationState::Reserved)
                .map(|line| (line.id, line.state))
                .collect();
            if lines.is_empty() {
                Ok(())
            } else {
                Err(TransitionError::UnreservedLines { from, lines })
            }
        }
        (Cause::Request, Open | Estimate | InProgress | AwaitingParts, Cancelled) => Ok(()),
        // Every remaining pair has `from == to`, handled above; kept total for the compiler.
        (Cause::Request, _, _) => refused("this transition is not part of the life cycle"),
    }
}

/// The PROPOSED jobs, by id and title.
fn undecided(jobs: &[Job]) -> Vec<(Uuid, String)> {
    jobs.iter()
        .filter(|job| job.state == JobState::Proposed)
        .map(|job| (job.id, job.title.clone()))
        .collect()
}

/// Whether a job is one the customer approved (the intake job included).
pub fn is_approved(jobs: &[Job], job_id: Uuid) -> bool {
    jobs.iter()
        .any(|job| job.id == job_id && job.state == JobState::Approved)
}

/// The part lines that are the garage's to reserve, do and invoice.
pub fn approved_lines<'a>(
    jobs: &'a [Job],
    part_lines: &'a [PartLine],
) -> impl Iterator<Item = &'a PartLine> + 'a {
    part_lines
        .iter()
        .filter(move |line| is_approved(jobs, line.job_id))
}

/// Whether inventory holds the parts of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReservationState {
    /// Of a job not approved (yet): priced for the estimate, not reserved.
    Quoted,
    Pending,
    Reserved,
    Failed,
}

impl ReservationState {
    pub fn as_str(self) -> &'static str {
        match self {
            ReservationState::Quoted => "QUOTED",
            ReservationState::Pending => "PENDING",
            ReservationState::Reserved => "RESERVED",
            ReservationState::Failed => "FAILED",
        }
    }

    pub fn parse(value: &str) -> Option<ReservationState> {
        [
            ReservationState::Quoted,
            ReservationState::Pending,
            ReservationState::Reserved,
            ReservationState::Failed,
        ]
        .into_iter()
        .find(|s| s.as_str() == value)
    }
}

impl std::fmt::Display for ReservationState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A part the job needs. SKU, name and price are snapshots taken when the line was quoted
/// for an estimate or, without a quote, when inventory reserved it, so later price changes do
/// not alter the order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartLine {
    pub id: Uuid,
    pub job_id: Uuid,
    pub part_id: Uuid,
    pub quantity: i32,
    pub state: ReservationState,
    pub failure_reason: String,
    pub sku: String,
    pub name: String,
    /// Known once reserved.
    pub unit_price_minor: Option<i64>,
}

impl PartLine {
    /// Quantity times unit price; `None` until inventory has priced the line.
    pub fn line_total_minor(&self) -> Option<i64> {
        self.unit_price_minor
            .map(|price| price.saturating_mul(i64::from(self.quantity)))
    }
}

/// Time a technician spent, at an hourly rate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaborLine {
    pub id: Uuid,
    pub job_id: Uuid,
    pub description: String,
    pub technician: String,
    pub minutes: i32,
    pub hourly_rate_minor: i64,
}

impl LaborLine {
    /// `minutes / 60 * rate`, rounded half-up to the minor unit once per line (the
    /// architecture's rounding rule), so the line totals add up to what is shown.
    pub fn line_total_minor(&self) -> i64 {
        let product = i128::from(self.minutes) * i128::from(self.hourly_rate_minor);
        let rounded = (product + 30) / 60;
        i64::try_from(rounded).unwrap_or(i64::MAX)
    }
}

/// The money of a work order; always derived from its lines, never stored on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Totals {
    /// Priced part lines of the APPROVED jobs; unpriced lines count once inventory prices them.
    pub parts_minor: i64,
    /// Labour of the APPROVED jobs.
    pub labor_minor: i64,
    /// What will be invoiced: the APPROVED jobs.
    pub estimated_minor: i64,
    /// What waits for the customer's decision: the PROPOSED jobs.
    pub proposed_minor: i64,
}

/// The one place where totals are computed.
pub fn totals(jobs: &[Job], part_lines: &[PartLine], labor_lines: &[LaborLine]) -> Totals {
    let parts_minor = approved_lines(jobs, part_lines)
        .filter_map(PartLine::line_total_minor)
        .fold(0i64, i64::saturating_add);
    let labor_minor = labor_lines
        .iter()
        .filter(|line| is_approved(jobs, line.job_id))
        .map(LaborLine::line_total_minor)
        .fold(0i64, i64::saturating_add);
    let proposed_minor = jobs
        .iter()
        .filter(|job| job.state == JobState::Proposed)
        .map(|job| crate::jobs::job_total_minor(job.id, part_lines, labor_lines))
        .fold(0i64, i64::saturating_add);
    Totals {
        parts_minor,
        labor_minor,
        estimated_minor: parts_minor.saturating_add(labor_minor),
        proposed_minor,
    }
}

/// Minutes as people read labour: `0.25 h`, `1.5 h`, `2 h`.
pub fn format_hours(minutes: i32) -> String {
    let hundredths = (i64::from(minutes) * 100 + 30) / 60;
    let text = format!("{}.{:02}", hundredths / 100, hundredths % 100);
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text} h")
}

/// The number people see: `WO-2026-000042`.
pub fn format_number(year: i32, sequence: i64) -> String {
    format!("WO-{year}-{sequence:06}")
}

/// The fields of a new work order, validated and trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intake {
    pub complaint: String,
    pub odometer_km: i64,
    pub notes: String,
}

impl Intake {
    pub fn validate(complaint: &str, odometer_km: i64, notes: &str) -> Result<Self, Violations> {
        let mut v = Violations::new();
        let complaint = v.required_text("complaint", complaint, MAX_COMPLAINT);
        if !(0..=MAX_ODOMETER_KM).contains(&odometer_km) {
            v.add(
                "odometer_km",
                format!("must be 0 to {MAX_ODOMETER_KM} km, is {odometer_km}"),
            );
        }
        let notes = check_notes(notes).unwrap_or_else(|violation| {
            v.check(Err(violation));
            String::new()
        });
        v.into_result(Self {
            complaint,
            odometer_km,
            notes,
        })
    }
}

/// Notes are free text, bounded.
pub fn check_notes(notes: &str) -> Result<String, FieldViolation> {
    carerp_kit::status::text("notes", notes, MAX_NOTES, false)
}

pub fn check_quantity(quantity: i32) -> Result<(), FieldViolation> {
    if (1..=MAX_QUANTITY).contains(&quantity) {
        Ok(())
    } else {
        Err(FieldViolation::new(
            "quantity",
            format!("must be 1 to {MAX_QUANTITY}, is {quantity}"),
        ))
    }
}

/// A labour line's fields, validated; `rate` is the requested rate and its currency, or
/// `None` for the tenant's default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLabor {
    pub description: String,
    pub technician: String,
    pub minutes: i32,
    pub hourly_rate_minor: i64,
}

impl NewLabor {
    pub fn validate(
        description: &str,
        technician: &str,
        minutes: i32,
        rate: Option<(i64, &str)>,
        default_rate_minor: i64,
        currency: &str,
    ) -> Result<Self, Violations> {
        let mut v = Violations::new();
        let description = v.required_text("description", description, MAX_DESCRIPTION);
        let technician = v.optional_text("technician", technician, MAX_TEXT);
        if !(1..=MAX_MINUTES).contains(&minutes) {
            v.add(
                "minutes",
                format!("must be 1 to {MAX_MINUTES}, is {minutes}"),
            );
        }
        let hourly_rate_minor = match rate {
            None => default_rate_minor,
            Some((amount, rate_currency)) => {
                if !(0..=MAX_HOURLY_RATE_MINOR).contains(&amount) {
                    v.add(
                        "hourly_rate.amount_minor",
                        format!("must be 0 to {MAX_HOURLY_RATE_MINOR}, is {amount}"),
                    );
                }
                if !rate_currency.is_empty() && rate_currency != currency {
                    v.add(
                        "hourly_rate.currency",
                        format!(
                            "must be the work order's currency {currency}, is {rate_currency:?}"
                        ),
                    );
                }
                amount
            }
        };
        v.into_result(Self {
            description,
            technician,
            minutes,
            hourly_rate_minor,
        })
    }
}

/// A cancellation says why, for the customer and the books.
pub fn check_cancellation_reason(reason: &str) -> Result<String, FieldViolation> {
    if reason.trim().is_empty() {
        return Err(FieldViolation::new(
            "reason",
            "is required when cancelling a work order",
        ));
    }
    carerp_kit::status::text("reason", reason, MAX_REASON, true)
}

/// A unit price inventory reports must be one this service can compute with.
pub fn check_unit_price(amount_minor: i64) -> Result<(), String> {
    if (0..=MAX_UNIT_PRICE_MINOR).contains(&amount_minor) {
        Ok(())
    } else {
        Err(format!(
            "unit price must be 0 to {MAX_UNIT_PRICE_MINOR} minor units, is {amount_minor}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Status::*;

    const INTAKE: Uuid = Uuid::from_u128(1);

    /// The intake job, approved, that the lines of these tests belong to.
    fn intake() -> Vec<Job> {
        vec![Job {
            id: INTAKE,
            title: "brakes squeal".into(),
            state: JobState::Approved,
            intake: true,
            decision: None,
        }]
    }

    fn part(state: ReservationState, quantity: i32, price: Option<i64>) -> PartLine {
        PartLine {
            id: Uuid::now_v7(),
            job_id: INTAKE,
            part_id: Uuid::now_v7(),
            quantity,
            state,
            failure_reason: String::new(),
            sku: String::new(),
            name: String::new(),
            unit_price_minor: price,
        }
    }

    fn labor(minutes: i32, rate: i64) -> LaborLine {
        LaborLine {
            id: Uuid::now_v7(),
            job_id: INTAKE,
            description: "work".into(),
            technician: String::new(),
            minutes,
            hourly_rate_minor: rate,
        }
    }

    /// What a request may do: every (from, to) pair, with the reason of each refusal.
    #[test]
    fn requested_transitions_table() {
        use std::collections::HashMap;
        let allowed: HashMap<(Status, Status), ()> = [
            (Open, InProgress),
            (Open, Cancelled),
            (Estimate, InProgress),
            (Estimate, Cancelled),
            (InProgress, AwaitingParts),
            (InProgress, Completed),
            (InProgress, Cancelled),
            (AwaitingParts, InProgress),
            (AwaitingParts, Completed),
            (AwaitingParts, Cancelled),
        ]
        .into_iter()
        .map(|pair| (pair, ()))
        .collect();
        let refusal = |from: Status, to: Status| -> &'static str {
            match (from, to) {
                (Invoiced, _) => "an invoiced work order is final",
                (Cancelled, _) => "a cancelled work order is final",
                (_, Invoiced) => {
                    "INVOICED is reached only when billing creates the invoice (invoice.created)"
                }
                (Completed, Cancelled) => "a completed work order cannot be cancelled",
                (Completed, _) => {
                    "a completed work order only moves on to INVOICED, when billing invoices it"
                }
                (_, Open) => "a work order never returns to OPEN",
                (_, Estimate) => "ESTIMATE is reached by sending the estimate (SendEstimate)",
                (Open | Estimate, AwaitingParts | Completed) => {
                    "work has not started: move it to IN_PROGRESS first"
                }
                other => panic!("no expected refusal for {other:?}"),
            }
        };
        let mut checked = 0;
        for from in Status::ALL {
            for to in Status::ALL {
                checked += 1;
                let result = check_transition(from, to, Cause::Request, true, &[], &[]);
                if from == to {
                    assert_eq!(result, Err(TransitionError::Unchanged(from)));
                } else if allowed.contains_key(&(from, to)) {
                    assert_eq!(result, Ok(()), "{from} -> {to}");
                } else {
                    let err = result.expect_err(&format!("{from} -> {to} must be refused"));
                    assert_eq!(
                        err,
                        TransitionError::Refused {
                            from,
                            to,
                            why: refusal(from, to)
                        }
                    );
                    let message = err.to_string();
                    assert!(
                        message.starts_with(&format!("cannot change status from {from} to {to}: ")),
                        "{message}"
                    );
                }
            }
        }
        assert_eq!(checked, 49);
    }

    /// What the events may do: only their own transition, every other pair refused.
    #[test]
    fn event_transitions_table() {
        for from in Status::ALL {
            for to in Status::ALL {
                let invoice = check_transition(from, to, Cause::InvoiceCreated, true, &[], &[]);
                let failed = check_transition(from, to, Cause::ReservationFailed, true, &[], &[]);
                let voided = check_transition(from, to, Cause::InvoiceVoided, true, &[], &[]);
                if from == to {
                    assert_eq!(invoice, Err(TransitionError::Unchanged(from)));
                    assert_eq!(failed, Err(TransitionError::Unchanged(from)));
                    assert_eq!(voided, Err(TransitionError::Unchanged(from)));
                    continue;
                }
                assert_eq!(
                    voided.is_ok(),
                    (from, to) == (Invoiced, Completed),
                    "invoice.voided: {from} -> {to}: {voided:?}"
                );
                assert_eq!(
                    invoice.is_ok(),
                    (from, to) == (Completed, Invoiced),
                    "invoice.created: {from} -> {to}: {invoice:?}"
                );
                assert_eq!(
                    failed.is_ok(),
                    matches!((from, to), (Open | Estimate | InProgress, AwaitingParts)),
                    "reservation-failed: {from} -> {to}: {failed:?}"
                );
            }
        }
        let err = check_transition(InProgress, Invoiced, Cause::InvoiceCreated, true, &[], &[])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot change status from IN_PROGRESS to INVOICED: only a COMPLETED work order can be invoiced"
        );
    }

    #[test]
    fn completing_needs_every_part_line_reserved_and_names_the_others() {
        let reserved = part(ReservationState::Reserved, 1, Some(100));
        let pending = part(ReservationState::Pending, 1, None);
        let failed = part(ReservationState::Failed, 2, None);
        let lines = vec![reserved.clone(), pending.clone(), failed.clone()];
        for from in [InProgress, AwaitingParts] {
            let err = check_transition(from, Completed, Cause::Request, true, &intake(), &lines)
                .unwrap_err();
            assert_eq!(
                err,
                TransitionError::UnreservedLines {
                    from,
                    lines: vec![
                        (pending.id, ReservationState::Pending),
                        (failed.id, ReservationState::Failed)
                    ]
                }
            );
            let message = err.to_string();
            assert!(
                message.contains(&format!("{} (PENDING)", pending.id)),
                "{message}"
            );
            assert!(
                message.contains(&format!("{} (FAILED)", failed.id)),
                "{message}"
            );
            assert!(!message.contains(&reserved.id.to_string()), "{message}");
            assert_eq!(
                check_transition(
                    from,
                    Completed,
                    Cause::Request,
                    true,
                    &intake(),
                    std::slice::from_ref(&reserved)
                ),
                Ok(())
            );
        }
        // Waiting for parts since intake, never started: the work comes first.
        assert_eq!(
            check_transition(
                AwaitingParts,
                Completed,
                Cause::Request,
                false,
                &intake(),
                std::slice::from_ref(&reserved)
            ),
            Err(TransitionError::Refused {
                from: AwaitingParts,
                to: Completed,
                why: "work has not started: move it to IN_PROGRESS first"
            })
        );
    }

    /// Work starts once the customer decided on a job of the estimate, and ends with every
    /// job decided; only approved jobs' parts must be reserved.
    #[test]
    fn the_estimate_holds_work_until_the_customer_decides() {
        let mut jobs = intake();
        let brakes = Job {
            id: Uuid::now_v7(),
            title: "Front brakes".into(),
            state: JobState::Proposed,
            intake: false,
            decision: None,
        };
        jobs.push(brakes.clone());
        let quoted = PartLine {
            job_id: brakes.id,
            ..part(ReservationState::Quoted, 1, Some(100))
        };
        let lines = vec![part(ReservationState::Reserved, 1, Some(100)), quoted];
        let err = check_transition(Estimate, InProgress, Cause::Request, false, &jobs, &lines)
            .unwrap_err();
        assert_eq!(
            err,
            TransitionError::UndecidedJobs {
                from: Estimate,
                to: InProgress,
                jobs: vec![(brakes.id, "Front brakes".into())]
            }
        );
        assert!(err.to_string().contains("has not decided"), "{err}");
        let err = check_transition(InProgress, Completed, Cause::Request, true, &jobs, &lines)
            .unwrap_err();
        assert!(
            matches!(err, TransitionError::UndecidedJobs { .. }),
            "{err}"
        );

        jobs[1].state = JobState::Declined;
        assert_eq!(
            check_transition(Estimate, InProgress, Cause::Request, false, &jobs, &lines),
            Ok(())
        );
        // The declined job's QUOTED line is not the garage's to reserve.
        assert_eq!(
            check_transition(InProgress, Completed, Cause::Request, true, &jobs, &lines),
            Ok(())
        );
        assert_eq!(totals(&jobs, &lines, &[]).estimated_minor, 100);
        jobs[1].state = JobState::Proposed;
        assert_eq!(totals(&jobs, &lines, &[]).proposed_minor, 100);

        assert_eq!(
            check_transition(Open, Estimate, Cause::EstimateSent, false, &jobs, &lines),
            Ok(())
        );
        assert!(
            check_transition(
                InProgress,
                Estimate,
                Cause::EstimateSent,
                true,
                &jobs,
                &lines
            )
            .is_err()
        );
        assert_eq!(format_hours(15), "0.25 h");
        assert_eq!(format_hours(90), "1.5 h");
        assert_eq!(format_hours(120), "2 h");
        assert_eq!(format_hours(50), "0.83 h");
    }

    #[test]
    fn totals_follow_every_line_change() {
        let mut parts = vec![part(ReservationState::Reserved, 2, Some(1250))];
        let mut labors = vec![labor(90, 9000)];
        assert_eq!(
            totals(&intake(), &parts, &labors),
            Totals {
                parts_minor: 2500,
                labor_minor: 13500,
                estimated_minor: 16000,
                proposed_minor: 0
            }
        );
        // An unpriced line counts nothing until inventory prices it.
        parts.push(part(ReservationState::Pending, 3, None));
        assert_eq!(totals(&intake(), &parts, &labors).parts_minor, 2500);
        parts[1].unit_price_minor = Some(100);
        parts[1].state = ReservationState::Reserved;
        assert_eq!(totals(&intake(), &parts, &labors).parts_minor, 2800);
        labors.push(labor(1, 9000));
        assert_eq!(totals(&intake(), &parts, &labors).labor_minor, 13500 + 150);
        parts.remove(0);
        labors.remove(0);
        assert_eq!(
            totals(&intake(), &parts, &labors),
            Totals {
                parts_minor: 300,
                labor_minor: 150,
                estimated_minor: 450,
                proposed_minor: 0
            }
        );
        parts.clear();
        labors.clear();
        assert_eq!(totals(&intake(), &parts, &labors), Totals::default());
    }

    #[test]
    fn labour_rounds_half_up_once_per_line() {
        // 1 minute at 0.99/h = 1.65 minor units -> 2; 1 minute at 0.90/h = 1.5 -> 2; 0.89/h -> 1.48 -> 1.
        assert_eq!(labor(1, 99).line_total_minor(), 2);
        assert_eq!(labor(1, 90).line_total_minor(), 2);
        assert_eq!(labor(1, 89).line_total_minor(), 1);
        assert_eq!(labor(60, 9000).line_total_minor(), 9000);
        assert_eq!(labor(0, 9000).line_total_minor(), 0);
        assert_eq!(
            labor(MAX_MINUTES, MAX_HOURLY_RATE_MINOR).line_total_minor(),
            i64::from(MAX_MINUTES) * MAX_HOURLY_RATE_MINOR / 60
        );
    }

    #[test]
    fn numbers_have_year_and_six_digits() {
        assert_eq!(format_number(2026, 42), "WO-2026-000042");
        assert_eq!(format_number(2027, 1), "WO-2027-000001");
        assert_eq!(format_number(2026, 1_234_567), "WO-2026-1234567");
    }

    #[test]
    fn statuses_round_trip_and_line_changes_stop_at_completion() {
        for status in Status::ALL {
            assert_eq!(Status::parse(status.as_str()), Some(status));
        }
        assert_eq!(Status::parse("open"), None);
        let editable: Vec<_> = Status::ALL
            .into_iter()
            .filter(|s| s.allows_line_changes())
            .collect();
        assert_eq!(editable, vec![Open, Estimate, InProgress, AwaitingParts]);
    }

    #[test]
    fn intake_is_trimmed_and_checked() {
        let intake = Intake::validate("  brakes squeal ", 120_000, " call first ").unwrap();
        assert_eq!(intake.complaint, "brakes squeal");
        assert_eq!(intake.notes, "call first");
        let err = Intake::validate(" ", -1, &"x".repeat(MAX_NOTES + 1)).unwrap_err();
        let fields: Vec<_> = err.as_slice().iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, vec!["complaint", "odometer_km", "notes"]);
        assert!(Intake::validate("x", MAX_ODOMETER_KM + 1, "").is_err());
    }

    #[test]
    fn quantities_must_be_positive_and_bounded() {
        for bad in [0, -1, MAX_QUANTITY + 1] {
            assert_eq!(check_quantity(bad).unwrap_err().field, "quantity");
        }
        assert!(check_quantity(1).is_ok());
        assert!(check_quantity(MAX_QUANTITY).is_ok());
    }

    #[test]
    fn labour_defaults_to_the_tenant_rate_and_checks_every_field() {
        let line = NewLabor::validate(" brake pads ", " Ana ", 45, None, 9000, "EUR").unwrap();
        assert_eq!(line.description, "brake pads");
        assert_eq!(line.technician, "Ana");
        assert_eq!(line.hourly_rate_minor, 9000);
        let given = NewLabor::validate("x", "", 45, Some((12000, "")), 9000, "EUR").unwrap();
        assert_eq!(given.hourly_rate_minor, 12000);
        let err = NewLabor::validate("", "", 0, Some((-5, "USD")), 9000, "EUR").unwrap_err();
        let fields: Vec<_> = err.as_slice().iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "description",
                "minutes",
                "hourly_rate.amount_minor",
                "hourly_rate.currency"
            ]
        );
        assert!(NewLabor::validate("x", "", -3, None, 0, "EUR").is_err());
        assert!(NewLabor::validate("x", "", MAX_MINUTES + 1, None, 0, "EUR").is_err());
    }

    #[test]
    fn cancellation_needs_a_reason() {
        assert_eq!(check_cancellation_reason("  ").unwrap_err().field, "reason");
        assert_eq!(
            check_cancellation_reason(" customer declined ").unwrap(),
            "customer declined"
        );
        assert!(check_cancellation_reason(&"x".repeat(MAX_REASON + 1)).is_err());
    }

    #[test]
    fn unit_prices_are_bounded() {
        assert!(check_unit_price(0).is_ok());
        assert!(check_unit_price(-1).is_err());
        assert!(check_unit_price(MAX_UNIT_PRICE_MINOR + 1).is_err());
        let line = part(
            ReservationState::Reserved,
            MAX_QUANTITY,
            Some(MAX_UNIT_PRICE_MINOR),
        );
        assert_eq!(
            line.line_total_minor(),
            Some(i64::from(MAX_QUANTITY) * MAX_UNIT_PRICE_MINOR)
        );
    }
}
