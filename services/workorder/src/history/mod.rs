//! A vehicle's history and the work recommended at its earlier visits (see
//! `docs/history.md`): a job the customer DECLINED or DEFERRED stays recommended until a
//! later work order of the same vehicle offers it again. This module holds the rules and does
//! no I/O; [`store`] the queries and the use case, [`api`] the gRPC handlers.

pub mod api;
pub mod store;

use std::collections::HashMap;

use uuid::Uuid;

use crate::canned::{CannedLabor, CannedPart};
use crate::domain::Status;
use crate::error::Error;
use crate::jobs::{Job, JobState};
use crate::store::WorkOrder;

/// Orders of a vehicle's history, newest first, at most.
pub const MAX_VISITS: i64 = 500;

/// Whether `job` of `order` is a recommendation: declined or deferred on an order that was
/// not cancelled (a cancelled order's decisions were never the customer's last word on the
/// car). It is open until a later job offers it again.
pub fn is_recommendation(order: &WorkOrder, job: &Job) -> bool {
    matches!(job.state, JobState::Declined | JobState::Deferred)
        && order.status != Status::Cancelled
}

/// The open recommendations of a vehicle's orders (given newest first), oldest first.
pub fn open_recommendations<'a>(
    orders: &'a [WorkOrder],
    offered_again_in: &HashMap<Uuid, String>,
) -> Vec<(&'a WorkOrder, &'a Job)> {
    orders
        .iter()
        .rev()
        .flat_map(|order| order.jobs.iter().map(move |job| (order, job)))
        .filter(|(order, job)| {
            is_recommendation(order, job) && !offered_again_in.contains_key(&job.id)
        })
        .collect()
}

/// What offering job `job_id` of `earlier` again on `target` adds: its title and its part and
/// labour lines, to be priced anew. Refused when the job is not a recommendation `target` may
/// take: of the same order (decide it again there), of another vehicle, or not one. Whether
/// another order offers it already is the store's to refuse, in the transaction that adds it
/// (so that a retried offer answers as the first did).
pub fn lines_to_offer(
    earlier: &WorkOrder,
    job_id: Uuid,
    target: &WorkOrder,
) -> Result<(String, Vec<CannedPart>, Vec<CannedLabor>), Error> {
    let job = earlier
        .jobs
        .iter()
        .find(|job| job.id == job_id)
        .ok_or(Error::EarlierJobNotFound(job_id))?;
    if earlier.id() == target.id() {
        return Err(Error::Conflict(format!(
            "job {job_id} is a job of work order {}: record the customer's new decision on it \
             instead of offering it again",
            target.header.number
        )));
    }
    if earlier.header.vehicle_id != target.header.vehicle_id {
        return Err(Error::Conflict(format!(
            "job {job_id} was recommended for another vehicle than work order {}'s",
            target.header.number
        )));
    }
    if !is_recommendation(earlier, job) {
        return Err(Error::Conflict(format!(
            "job {job_id} is {} on work order {} ({}): only declined or deferred work is \
             recommended",
            job.state.as_str(),
            earlier.header.number,
            earlier.status.as_str()
        )));
    }
    let parts = earlier
        .part_lines
        .iter()
        .filter(|line| line.job_id == job_id)
        .map(|line| CannedPart {
            part_id: line.part_id,
            quantity: line.quantity,
        })
        .collect();
    let labor = earlier
        .labor_lines
        .iter()
        .filter(|line| line.job_id == job_id)
        .map(|line| CannedLabor {
            description: line.description.clone(),
            minutes: line.minutes,
        })
        .collect();
    Ok((job.title.clone(), parts, labor))
}
