//! Jobs and estimates, as the garage and its customer agree on work: a job is one concern
//! ("front brakes grinding") with its part and labour lines and the customer's decision on it.
//! Pure: no I/O, so every rule is unit-tested directly.
//!
//! Every work order has its intake job, the complaint it was opened for, APPROVED at intake.
//! Further jobs start PROPOSED: their part lines are QUOTED (priced, not reserved), they count
//! toward neither the invoice nor the approved totals, and an estimate sent to the customer
//! asks for a decision on each. Only APPROVED jobs reserve parts and are invoiced.

use carerp_kit::{FieldViolation, Violations};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{LaborLine, PartLine, Status};

pub const MAX_TITLE: usize = 200;
const MAX_REASON: usize = 500;
/// Jobs per work order; with the line limits this keeps every event far below the broker's
/// max payload.
pub const MAX_JOBS: usize = 30;
/// How long an approval link works after the estimate is sent.
pub const LINK_LIFETIME: chrono::TimeDelta = chrono::TimeDelta::days(7);
/// The decider recorded for a decision taken through the approval link.
pub const CUSTOMER_ACTOR: &str = "customer";

/// Where the customer stands on a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobState {
    Proposed,
    Approved,
    Declined,
    /// Not now: remembered with a reason and a day to remind the customer after.
    Deferred,
}

impl JobState {
    pub const ALL: [JobState; 4] = [
        JobState::Proposed,
        JobState::Approved,
        JobState::Declined,
        JobState::Deferred,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Proposed => "PROPOSED",
            JobState::Approved => "APPROVED",
            JobState::Declined => "DECLINED",
            JobState::Deferred => "DEFERRED",
        }
    }

    pub fn parse(value: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|s| s.as_str() == value)
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a decision reached the garage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    InPerson,
    Phone,
    Email,
    /// The approval link: the customer decided on the public approval page.
    Link,
    /// The intake job, authorised when the order was opened.
    Intake,
}

impl Channel {
    pub const ALL: [Channel; 5] = [
        Channel::InPerson,
        Channel::Phone,
        Channel::Email,
        Channel::Link,
        Channel::Intake,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::InPerson => "IN_PERSON",
            Channel::Phone => "PHONE",
            Channel::Email => "EMAIL",
            Channel::Link => "LINK",
            Channel::Intake => "INTAKE",
        }
    }

    pub fn parse(value: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.as_str() == value)
    }
}

/// A job of a work order, with the decision on it once there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: Uuid,
    pub title: String,
    pub state: JobState,
    pub intake: bool,
    pub decision: Option<Decision>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// A user or API token id, [`CUSTOMER_ACTOR`] or `system`.
    pub decided_by: String,
    pub channel: Channel,
    pub decided_at: DateTime<Utc>,
    pub reason: String,
    pub remind_after: Option<NaiveDate>,
    /// The estimate version decided on; 0 without one.
    pub estimate_version: i32,
}

/// A decision asked for, validated: what the job becomes and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub state: JobState,
    pub reason: String,
    pub remind_after: Option<NaiveDate>,
}

impl Verdict {
    /// A decline or deferral says why; a deferral says until when (a day after `today`).
    pub fn validate(
        state: JobState,
        reason: &str,
        remind_after: &str,
        today: NaiveDate,
    ) -> Result<Self, Violations> {
        let mut v = Violations::new();
        if state == JobState::Proposed {
            v.add(
                "decision",
                "must be APPROVED, DECLINED or DEFERRED: a job is PROPOSED until decided",
            );
        }
        let reason = match state {
            JobState::Declined | JobState::Deferred => {
                v.required_text("reason", reason, MAX_REASON)
            }
            _ => v.optional_text("reason", reason, MAX_REASON),
        };
        let remind_after = match (state, remind_after.trim()) {
            (JobState::Deferred, "") => {
                v.add(
                    "remind_after",
                    "is required when deferring a job (YYYY-MM-DD)",
                );
                None
            }
            (JobState::Deferred, day) => match NaiveDate::parse_from_str(day, "%Y-%m-%d") {
                Ok(day) if day > today => Some(day),
                Ok(day) => {
                    v.add(
                        "remind_after",
                        format!("must be after today ({today}), is {day}"),
                    );
                    None
                }
                Err(_) => {
                    v.add(
                        "remind_after",
                        format!("must be a day YYYY-MM-DD, is {day:?}"),
                    );
                    None
                }
            },
            (_, "") => None,
            (_, _) => {
                v.add("remind_after", "is only for deferring a job");
                None
            }
        };
        v.into_result(Self {
            state,
            reason,
            remind_after,
        })
    }
}

/// Why a job cannot take a decision or a change; the message names the job and its state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    #[error(
        "job {id} is the intake job, authorised when the work order was opened: it takes no decision"
    )]
    IntakeDecided { id: Uuid },
    #[error("job {id} is already {state}")]
    AlreadyDecided { id: Uuid, state: JobState },
    #[error(
        "job {id} was APPROVED: an approved job is not decided again; add the change as a new job"
    )]
    ApprovedIsFinal { id: Uuid },
    #[error("job {id} is {state}: its lines change only while it is PROPOSED or APPROVED")]
    LinesOfDecided { id: Uuid, state: JobState },
    #[error("job {id} is the intake job: it is removed with the work order only")]
    IntakeRemoved { id: Uuid },
    #[error("job {id} is {state}: only a PROPOSED job can be removed")]
    RemoveDecided { id: Uuid, state: JobState },
    #[error("work order is {status}: jobs change and are decided only before COMPLETED")]
    OrderClosed { status: Status },
}

/// Whether `job` may take `verdict`: a PROPOSED job takes any; a DECLINED or DEFERRED one may
/// still be APPROVED (the customer changed their mind); an APPROVED one is final, since its
/// parts are reserved and its work may be done.
pub fn check_decision(job: &Job, verdict: JobState) -> Result<(), JobError> {
    if job.intake {
        return Err(JobError::IntakeDecided { id: job.id });
    }
    match (job.state, verdict) {
        (from, to) if from == to => Err(JobError::AlreadyDecided {
            id: job.id,
            state: from,
        }),
        (JobState::Approved, _) => Err(JobError::ApprovedIsFinal { id: job.id }),
        (JobState::Proposed, _) | (_, JobState::Approved) => Ok(()),
        (from, _) => Err(JobError::AlreadyDecided {
            id: job.id,
            state: from,
        }),
    }
}

/// Lines may be added to or removed from a PROPOSED job (the estimate being built) and an
/// APPROVED one (the work being done), never to what the customer declined or deferred.
pub fn check_lines_editable(job: &Job) -> Result<(), JobError> {
    match job.state {
        JobState::Proposed | JobState::Approved => Ok(()),
        state => Err(JobError::LinesOfDecided { id: job.id, state }),
    }
}

pub fn check_removable(job: &Job) -> Result<(), JobError> {
    if job.intake {
        return Err(JobError::IntakeRemoved { id: job.id });
    }
    match job.state {
        JobState::Proposed => Ok(()),
        state => Err(JobError::RemoveDecided { id: job.id, state }),
    }
}

pub fn check_title(title: &str) -> Result<String, FieldViolation> {
    carerp_kit::status::text("title", title, MAX_TITLE, true)
}

/// What a job costs: its priced part lines and its labour.
pub fn job_total_minor(job_id: Uuid, part_lines: &[PartLine], labor_lines: &[LaborLine]) -> i64 {
    let parts = part_lines
        .iter()
        .filter(|line| line.job_id == job_id)
        .filter_map(PartLine::line_total_minor);
    let labor = labor_lines
        .iter()
        .filter(|line| line.job_id == job_id)
        .map(LaborLine::line_total_minor);
    parts.chain(labor).fold(0i64, i64::saturating_add)
}

/// The estimate as sent: the PROPOSED jobs with their lines and totals, kept as a version so
/// "what the customer was asked to agree to" is never overwritten by later edits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EstimateContent {
    pub currency: String,
    pub jobs: Vec<EstimateJob>,
    pub total_minor: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EstimateJob {
    pub job_id: Uuid,
    pub title: String,
    pub lines: Vec<EstimateLine>,
    pub total_minor: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EstimateLine {
    pub description: String,
    pub total_minor: i64,
}

/// Why an estimate cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EstimateError {
    #[error("work order {id} has no PROPOSED job: add the jobs the customer is to decide on first")]
    NothingProposed { id: Uuid },
    #[error("job {job_id} ({title:?}) has no lines: an estimate says what each job costs")]
    EmptyJob { job_id: Uuid, title: String },
}

/// The estimate of the PROPOSED jobs, each with at least one line.
pub fn estimate_content(
    work_order_id: Uuid,
    currency: &str,
    jobs: &[Job],
    part_lines: &[PartLine],
    labor_lines: &[LaborLine],
) -> Result<EstimateContent, EstimateError> {
    let mut estimate_jobs = Vec::new();
    for job in jobs.iter().filter(|job| job.state == JobState::Proposed) {
        let parts = part_lines
            .iter()
            .filter(|line| line.job_id == job.id)
            .map(|line| EstimateLine {
                description: format!("{} × {}", line.quantity, line.name),
                total_minor: line.line_total_minor().unwrap_or(0),
            });
        let labor = labor_lines
            .iter()
            .filter(|line| line.job_id == job.id)
            .map(|line| EstimateLine {
                description: format!(
                    "{} ({})",
                    line.description,
                    crate::domain::format_hours(line.minutes)
                ),
                total_minor: line.line_total_minor(),
            });
        let lines: Vec<EstimateLine> = parts.chain(labor).collect();
        if lines.is_empty() {
            return Err(EstimateError::EmptyJob {
                job_id: job.id,
                title: job.title.clone(),
            });
        }
        estimate_jobs.push(EstimateJob {
            job_id: job.id,
            title: job.title.clone(),
            total_minor: lines
                .iter()
                .map(|line| line.total_minor)
                .fold(0, i64::saturating_add),
            lines,
        });
    }
    if estimate_jobs.is_empty() {
        return Err(EstimateError::NothingProposed { id: work_order_id });
    }
    Ok(EstimateContent {
        currency: currency.to_string(),
        total_minor: estimate_jobs
            .iter()
            .map(|job| job.total_minor)
            .fold(0, i64::saturating_add),
        jobs: estimate_jobs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ReservationState;

    fn job(state: JobState, intake: bool) -> Job {
        Job {
            id: Uuid::now_v7(),
            title: "Front brakes grinding".into(),
            state,
            intake,
            decision: None,
        }
    }

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, 2).unwrap()
    }

    #[test]
    fn decisions_table() {
        use JobState::*;
        for from in JobState::ALL {
            for to in [Approved, Declined, Deferred] {
                let result = check_decision(&job(from, false), to);
                let allowed = matches!((from, to), (Proposed, _) | (Declined | Deferred, Approved));
                assert_eq!(result.is_ok(), allowed, "{from} -> {to}: {result:?}");
            }
        }
        let approved = job(Approved, false);
        assert_eq!(
            check_decision(&approved, Approved).unwrap_err().to_string(),
            format!("job {} is already APPROVED", approved.id)
        );
        let intake = job(Approved, true);
        assert_eq!(
            check_decision(&intake, Declined),
            Err(JobError::IntakeDecided { id: intake.id })
        );
    }

    #[test]
    fn lines_and_removal_follow_the_decision() {
        use JobState::*;
        assert!(check_lines_editable(&job(Proposed, false)).is_ok());
        assert!(check_lines_editable(&job(Approved, true)).is_ok());
        assert!(check_lines_editable(&job(Declined, false)).is_err());
        assert!(check_lines_editable(&job(Deferred, false)).is_err());
        assert!(check_removable(&job(Proposed, false)).is_ok());
        assert!(check_removable(&job(Approved, false)).is_err());
        assert!(check_removable(&job(Approved, true)).is_err());
    }

    #[test]
    fn a_verdict_says_why_and_until_when() {
        use JobState::*;
        assert_eq!(
            Verdict::validate(Approved, "", "", today()).unwrap(),
            Verdict {
                state: Approved,
                reason: String::new(),
                remind_after: None
            }
        );
        let fields = |err: Violations| -> Vec<String> {
            err.as_slice().iter().map(|v| v.field.clone()).collect()
        };
        assert_eq!(
            fields(Verdict::validate(Declined, " ", "", today()).unwrap_err()),
            ["reason"]
        );
        assert_eq!(
            fields(Verdict::validate(Deferred, "next service", "", today()).unwrap_err()),
            ["remind_after"]
        );
        let past = Verdict::validate(Deferred, "later", "2026-12-02", today()).unwrap_err();
        assert!(past.to_string().contains("must be after today"), "{past}");
        assert!(Verdict::validate(Deferred, "later", "2027-13-01", today()).is_err());
        assert!(Verdict::validate(Approved, "", "2027-01-01", today()).is_err());
        assert!(Verdict::validate(Proposed, "", "", today()).is_err());
        let deferred =
            Verdict::validate(Deferred, " at next service ", "2027-03-01", today()).unwrap();
        assert_eq!(deferred.reason, "at next service");
        assert_eq!(deferred.remind_after, NaiveDate::from_ymd_opt(2027, 3, 1));
    }

    #[test]
    fn an_estimate_holds_the_proposed_jobs_with_their_lines() {
        let intake = job(JobState::Approved, true);
        let brakes = job(JobState::Proposed, false);
        let wipers = Job {
            title: "Wipers".into(),
            ..job(JobState::Proposed, false)
        };
        let parts = vec![PartLine {
            id: Uuid::now_v7(),
            job_id: brakes.id,
            part_id: Uuid::now_v7(),
            quantity: 2,
            state: ReservationState::Quoted,
            failure_reason: String::new(),
            sku: "BP-1".into(),
            name: "Brake pad".into(),
            unit_price_minor: Some(2500),
        }];
        let labor = vec![LaborLine {
            id: Uuid::now_v7(),
            job_id: wipers.id,
            description: "Replace blades".into(),
            technician: String::new(),
            minutes: 15,
            hourly_rate_minor: 8000,
        }];
        let jobs = vec![intake.clone(), brakes.clone(), wipers.clone()];
        let content = estimate_content(Uuid::nil(), "EUR", &jobs, &parts, &labor).unwrap();
        assert_eq!(content.jobs.len(), 2);
        assert_eq!(content.jobs[0].lines[0].description, "2 × Brake pad");
        assert_eq!(content.jobs[0].total_minor, 5000);
        assert_eq!(
            content.jobs[1].lines[0].description,
            "Replace blades (0.25 h)"
        );
        assert_eq!(content.total_minor, 5000 + 2000);
        assert_eq!(job_total_minor(brakes.id, &parts, &labor), 5000);

        let empty = job(JobState::Proposed, false);
        let with_empty = vec![brakes.clone(), empty.clone()];
        assert_eq!(
            estimate_content(Uuid::nil(), "EUR", &with_empty, &parts, &labor),
            Err(EstimateError::EmptyJob {
                job_id: empty.id,
                title: empty.title.clone()
            })
        );
        assert!(matches!(
            estimate_content(Uuid::nil(), "EUR", &[intake], &parts, &labor),
            Err(EstimateError::NothingProposed { .. })
        ));
    }
}
