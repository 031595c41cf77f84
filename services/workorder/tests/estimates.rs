//! Jobs, estimates and the customer's approval over gRPC, against the real customer and
//! inventory services and a real database: the loop, and every bad input.

mod common;

use carerp_kit::auth::Role;
use carerp_proto::workorder::v1 as pb;
use carerp_proto::workorder::v1::{
    DecisionChannel as C, JobState as J, ReservationState as R, WorkOrderStatus as S,
};
use common::*;
use sqlx::PgPool;
use tonic::Code;

/// A work order with two PROPOSED jobs: brakes (2 pads at 25.00, 90 min labour) and wipers
/// (one blade set at 18.00). Answers the order and the two job ids.
async fn estimated_order(g: &mut Garage) -> (pb::WorkOrder, String, String) {
    let order = g.order().await;
    let n = &order.number[order.number.len() - 6..];
    let pads = g.part(&format!("BP-{n}"), 2500, 10).await;
    let blades = g.part(&format!("WB-{n}"), 1800, 10).await;
    let order = add_job(g, &order.id, "Front brakes grinding").await;
    let brakes = order.jobs[1].id.clone();
    let order = add_job(g, &order.id, "Wiper blades smear").await;
    let wipers = order.jobs[2].id.clone();
    let order = add_part(g, &order.id, &brakes, &pads, 2).await.unwrap();
    g.client
        .add_labor_line(pb::AddLaborLineRequest {
            work_order_id: order.id.clone(),
            description: "Replace front pads".into(),
            minutes: 90,
            job_id: brakes.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let order = add_part(g, &order.id, &wipers, &blades, 1).await.unwrap();
    (order, brakes, wipers)
}

async fn add_job(g: &mut Garage, id: &str, title: &str) -> pb::WorkOrder {
    g.client
        .add_job(pb::AddJobRequest {
            work_order_id: id.into(),
            title: title.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

async fn add_part(
    g: &mut Garage,
    id: &str,
    job_id: &str,
    part_id: &str,
    quantity: i32,
) -> Result<pb::WorkOrder, tonic::Status> {
    g.client
        .add_part_line(pb::AddPartLineRequest {
            work_order_id: id.into(),
            part_id: part_id.into(),
            quantity,
            job_id: job_id.into(),
            ..Default::default()
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn send(g: &mut Garage, id: &str) -> pb::SendEstimateResponse {
    g.client
        .send_estimate(pb::SendEstimateRequest {
            work_order_id: id.into(),
            expected_version: 0,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

async fn by_link(
    g: &mut Garage,
    token: &str,
    job_id: &str,
    decision: J,
) -> Result<pb::EstimateForCustomer, tonic::Status> {
    g.client
        .decide_job_by_link(pb::DecideJobByLinkRequest {
            token: token.into(),
            job_id: job_id.into(),
            decision: decision as i32,
            reason: String::new(),
        })
        .await
        .map(tonic::Response::into_inner)
}

fn job<'a>(order: &'a pb::WorkOrder, id: &str) -> &'a pb::Job {
    order.jobs.iter().find(|job| job.id == id).unwrap()
}

fn proposed_total(order: &pb::WorkOrder) -> i64 {
    order
        .totals
        .as_ref()
        .unwrap()
        .proposed
        .as_ref()
        .unwrap()
        .amount_minor
}

#[sqlx::test(migrator = "carerp_workorder::MIGRATOR")]
async fn a_new_order_has_its_intake_job_approved_and_lines_go_to_it(pool: PgPool) {
    let mut g = Garage::start(pool).await;
    let order = g.order().await;
    assert_eq!(order.jobs.len(), 1);
    let intake = &order.jobs[0];
    assert!(intake.intake);
    assert_eq!(intake.state, J::Approved as i32);
    assert_eq!(intake.title, order.complaint);
    let decision = intake.decision.as_ref().unwrap();
    assert_eq!(decision.channel, C::Intake as i32);
    assert_eq!(order.estimate_version, 0);
    // Without a job the line is the intake job's, reserved as before jobs existed.
    let order = g
        .client
        .add_labor_line(pb::AddLaborLineRequest {
            work_order_id: order.id.clone(),
            description: "Diagnosis".into(),
            minutes: 30,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(order.labor_lines[0].job_id, intake.id);
    assert_eq!(totals(&order), (0, 4500, 4500));
    // The intake job takes no decision and cannot be removed.
    let err = g
        .client
        .decide_job(pb::DecideJobRequest {
            work_order_id: order.id.clone(),
            job_id: intake.id.clone(),
            decision: J::Declined as i32,
            channel: C::Phone as i32,
            reason: "too dear".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("intake job"), "{}", err.message());
    let err = g
        .client
        .remove_job(pb::RemoveJobRequest {
            work_order_id: order.id.clone(),
            job_id: intake.id.clone(),
            expected_version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    g.stop().await;
}

#[sqlx::test(migrator = "carerp_workorder::MIGRATOR")]
async fn proposed_jobs_are_quoted_not_reserved_and_not_in_the_approved_totals(pool: PgPool) {
    let mut g = Garage::start(pool).await;
    let (order, brakes, _wipers) = estimated_order(&mut g).await;
    assert_eq!(job(&order, &brakes).state, J::Proposed as i32);
    let pads = order
        .part_lines
        .iter()
        .find(|l| l.job_id == brakes)
        .unwrap();
    assert_eq!(pads.reservation_state, R::Quoted as i32);
    assert!(pads.sku.starts_with("BP-"), "{}", pads.sku);
    assert_eq!(pads.unit_price.as_ref().unwrap().amount_minor, 2500);
    // Brakes: 2 × 25.00 + 1.5 h × 90.00; wipers 18.00. Nothing is approved yet.
    assert_eq!(
        job(&order, &brakes).total.as_ref().unwrap().amount_minor,
        5000 + 13500
    );
    assert_eq!(proposed_total(&order), 5000 + 13500 + 1800);
    assert_eq!(totals(&order), (0, 0, 0));
    // Quoting asks nothing of inventory but the price: no reservation was requested.
    let events = g.events(&order.id).await;
    assert!(
        events
            .iter()
            .all(|(topic, _)| topic != "workorder.parts-added"),
        "{events:?}"
    );
    g.stop().await;
}

#[sqlx::test(migrator = "carerp_workorder::MIGRATOR")]
async fn the_customer_approves_one_job_and_declines_another_through_the_link(pool: PgPool) {
    let mut g = Garage::start(pool).await;
    let (order, brakes, wipers) = estimated_order(&mut g).await;
    let sent = send(&mut g, &order.id).await;
    let estimate = sent.estimate.unwrap();
    assert_eq!(estimate.version, 1);
    assert_eq!(estimate.jobs.len(), 2);
    assert_eq!(estimate.total.as_ref().unwrap().amount_minor, 20300);
    assert!(
        estimate.jobs[0].lines[0]
            .description
            .starts_with("2 × Part BP-"),
        "{}",
        estimate.jobs[0].lines[0].description
    );
    assert_eq!(
        estimate.jobs[0].lines[1].description,
        "Replace front pads (1.5 h)"
    );
    let order = sent.work_order.unwrap();
    assert_eq!(order.status, S::Estimate as i32);
    assert_eq!(order.estimate_version, 1);
    assert!(!order.estimate_outdated);
    let token = sent.approval_token;
    assert_eq!(token.len(), 43);
    // Only the token's digest is kept.
    let (kept,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM estimates WHERE link_token_sha256 = sha256(convert_to($1, 'UTF8'))",
    )
    .bind(&token)
    .fetch_one(&g.pool)
    .await
    .unwrap();
    assert_eq!(kept, 1);
    let (in_clear,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM estimates WHERE content::text LIKE '%' || $1 || '%'")
            .bind(&token)
            .fetch_one(&g.pool)
            .await
            .unwrap();
    assert_eq!(in_clear, 0);

    // Work waits for the customer's decision.
    let err = g
        .client
        .change_status(pb::ChangeStatusRequest {
            id: order.id.clone(),
            status: S::InProgress as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("has not decided"),
        "{}",
        err.message()
    );

    let seen = g
        .client
        .get_estimate_by_link(pb::GetEstimateByLinkRequest {
            token: token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(seen.work_order_number, order.number);
    assert!(seen.decisions.iter().all(|d| d.state == J::Proposed as i32));

    let after = by_link(&mut g, &token, &brakes, J::Approved).await.unwrap();
    assert!(
        after
            .decisions
            .iter()
            .any(|d| d.job_id == brakes && d.state == J::Approved as i32)
    );
    by_link(&mut g, &token, &wipers, J::Declined).await.unwrap();
    // Approving twice is refused, and so is changing an approval.
    for again in [J::Approved, J::Declined] {
        let err = by_link(&mut g, &token, &brakes, again).await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{again:?}");
    }

    let order = g.get(&order.id).await;
    let brakes_job = job(&order, &brakes);
    let decision = brakes_job.decision.as_ref().unwrap();
    assert_eq!(decision.channel, C::Link as i32);
    assert_eq!(decision.decided_by, "customer");
    assert_eq!(decision.estimate_version, 1);
    assert_eq!(job(&order, &wipers).state, J::Declined as i32);
    // The approved job's parts now wait for inventory; the declined ones stay quoted.
    let states: Vec<(String, i32)> = order
        .part_lines
        .iter()
        .map(|l| (l.job_id.clone(), l.reservation_state))
        .collect();
    assert!(states.contains(&(brakes.clone(), R::Pending as i32)));
    assert!(states.contains(&(wipers.clone(), R::Quoted as i32)));
    assert_eq!(totals(&order), (5000, 13500, 18500));
    assert_eq!(proposed_total(&order), 0);

    let events = g.events(&order.id).await;
    let topics: Vec<&str> = events.iter().map(|(t, _)| t.as_str()).collect();
    for topic in [
        "estimate.sent",
        "job.approved",
        "job.declined",
        "workorder.parts-added",
    ] {
        assert!(topics.contains(&topic), "{topic} missing from {topics:?}");
    }
    let approved = events.iter().find(|(t, _)| t == "job.approved").unwrap();
    assert_eq!(approved.1["jobId"], brakes);
    assert_eq!(approved.1["channel"], "LINK");
    let added = events
        .iter()
        .find(|(t, _)| t == "workorder.parts-added")
        .unwrap();
    assert_eq!(added.1["lines"].as_array().unwrap().len(), 1);

    // Decided on: work starts.
    let started = g
        .client
        .change_status(pb::ChangeStatusRequest {
            id: order.id.clone(),
            status: S::InProgress as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(started.status, S::InProgress as i32);
    g.stop().await;
}

#[sqlx::test(migrator = "carerp_workorder::MIGRATOR")]
async fn a_link_is_refused_when_forged_expired_or_the_estimate_changed(pool: PgPool) {
    let mut g = Garage::start(pool).await;
    let (order, brakes, wipers) = estimated_order(&mut g).await;
    let token = send(&mut g, &order.id).await.approval_token;

    // Forged: malformed, or well-formed but unknown (one character changed).
    let mut tampered = token.clone().into_bytes();
    tampered[0] = if tampered[0] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    for forged in ["", "x", "../../etc", tampered.as_str()] {
        let err = g
            .client
            .get_estimate_by_link(pb::GetEstimateByLinkRequest {
                token: forged.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{forged:?}");
        assert_eq!(err.message(), "this approval link is not valid");
        let err = by_link(&mut g, forged, &brakes, J::Approved)
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{forged:?}");
    }

    // A job of another work order is not part of this estimate.
    let (other, other_brakes, _) = estimated_order(&mut g).await;
    let err = by_link(&mut g, &token, &other_brakes, J::Approved)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("not part of this estimate"),
        "{}",
        err.message()
    );
    // ... nor can the garage approve it through this order.
    let err = g
        .client
        .decide_job(pb::DecideJobRequest {
            work_order_id: order.id.clone(),
            job_id: other_brakes.clone(),
            decision: J::Approved as i32,
            channel: C::Phone as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(
        job(&g.get(&other.id).await, &other_brakes).state,
        J::Proposed as i32
    );

    // The estimate changes after sending: the link no longer works.
    g.client
        .add_labor_line(pb::AddLaborLineRequest {
            work_order_id: order.id.clone(),
            description: "Check wiper arms".into(),
            minutes: 10,
            job_id: wipers.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(g.get(&order.id).await.estimate_outdated);
    let err = by_link(&mut g, &token, &brakes, J::Approved)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("estimate changed"),
        "{}",
        err.message()
    );

    // Sent again: the new link works, and expires.
    let second = send(&mut g, &order.id).await;
    assert_eq!(second.estimate.as_ref().unwrap().version, 2);
    let err = by_link(&mut g, &token, &brakes, J::Approved)
        .await
        .unwrap_err();
    assert!(
        err.message().contains("estimate changed"),
        "{}",
        err.message()
    );
    sqlx::query(
        "UPDATE estimates SET link_expires_at = now() - interval '1 minute' WHERE version = 2",
    )
    .execute(&g.pool)
    .await
    .unwrap();
    let err = by_link(&mut g, &second.approval_token, &brakes, J::Approved)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("expired"), "{}", err.message());
    assert_eq!(
        job(&g.get(&order.id).await, &brakes).state,
        J::Proposed as i32
    );

    // Both versions are kept as sent.
    let estimates = g
        .client
        .list_estimates(pb::ListEstimatesRequest {
            work_order_id: order.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .estimates;
    assert_eq!(
        estimates.iter().map(|e| e.version).collect::<Vec<_>>(),
        [2, 1]
    );
    assert!(estimates[1].outdated);
    assert_eq!(estimates[1].jobs[1].lines.len(), 1);
    assert_eq!(estimates[0].jobs[1].lines.len(), 2);
    g.stop().await;
}

#[sqlx::test(migrator = "carerp_workorder::MIGRATOR")]
async fn decisions_told_to_the_garage_are_checked_and_declined_work_is_never_invoiced(
    pool: PgPool,
) {
    let mut g = Garage::start(pool).await;
    let (order, brakes, wipers) = estimated_order(&mut g).await;
    let decide =
        |job_id: &str, decision: J, channel: C, reason: &str, remind: &str| pb::DecideJobRequest {
            work_order_id: order.id.clone(),
            job_id: job_id.into(),
            decision: decision as i32,
            channel: channel as i32,
            reason: reason.into(),
            remind_after: remind.into(),
            expected_version: 0,
        };
    // Bad decisions, each named.
    for (request, field) in [
        (decide(&wipers, J::Declined, C::Phone, "", ""), "reason"),
        (
            decide(&wipers, J::Deferred, C::Phone, "later", ""),
            "remind_after",
        ),
        (
            decide(&wipers, J::Deferred, C::Phone, "later", "2020-01-01"),
            "remind_after",
        ),
        (decide(&wipers, J::Approved, C::Link, "", ""), "channel"),
        (decide(&wipers, J::Proposed, C::Phone, "", ""), "decision"),
    ] {
        let err = g.client.decide_job(request).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().contains(field), "{field}: {}", err.message());
    }
    // A technician does not take the customer's decisions.
    let mut technician = g.client_as(Role::Technician).await;
    let err = technician
        .decide_job(decide(&brakes, J::Approved, C::InPerson, "", ""))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    g.client
        .decide_job(decide(&brakes, J::Approved, C::InPerson, "", ""))
        .await
        .unwrap();
    let order = g
        .client
        .decide_job(decide(
            &wipers,
            J::Deferred,
            C::Phone,
            "next service",
            "2099-03-01",
        ))
        .await
        .unwrap()
        .into_inner();
    let deferred = job(&order, &wipers).decision.clone().unwrap();
    assert_eq!(deferred.remind_after, "2099-03-01");
    assert_eq!(deferred.reason, "next service");
    assert_eq!(deferred.channel, C::Phone as i32);
    // A deferred job's lines are what the customer was told; they do not change.
    let blades = g.part("WB-300", 900, 5).await;
    let err = add_part(&mut g, &order.id, &wipers, &blades, 1)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("DEFERRED"), "{}", err.message());
    // Quoting an inactive part is refused, naming it.
    let inactive = g.part("OLD-1", 100, 0).await;
    g.parts
        .as_mut()
        .unwrap()
        .update_part(carerp_proto::inventory::v1::UpdatePartRequest {
            id: inactive.clone(),
            active: Some(false),
            ..Default::default()
        })
        .await
        .unwrap();
    let extra = add_job(&mut g, &order.id, "Cabin filter").await;
    let cabin = extra.jobs.last().unwrap().id.clone();
    let err = add_part(&mut g, &order.id, &cabin, &inactive, 1)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("inactive"), "{}", err.message());
    // An undecided job holds the completion; removing it lets the order finish.
    let order = g
        .client
        .change_status(pb::ChangeStatusRequest {
            id: order.id.clone(),
            status: S::InProgress as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let pads_line = order
        .part_lines
        .iter()
        .find(|l| l.job_id == brakes)
        .unwrap()
        .id
        .clone();
    // Inventory's reservation of the approved pads, as its event would record it.
    sqlx::query("UPDATE part_lines SET reservation_state = 'RESERVED' WHERE id = $1::uuid")
        .bind(&pads_line)
        .execute(&g.pool)
        .await
        .unwrap();
    let complete = pb::ChangeStatusRequest {
        id: order.id.clone(),
        status: S::Completed as i32,
        ..Default::default()
    };
    let err = g.client.change_status(complete.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("Cabin filter"), "{}", err.message());
    g.client
        .remove_job(pb::RemoveJobRequest {
            work_order_id: order.id.clone(),
            job_id: cabin,
            expected_version: 0,
        })
        .await
        .unwrap();
    let done = g.client.change_status(complete).await.unwrap().into_inner();
    assert_eq!(done.status, S::Completed as i32);
    // The invoice's event holds the approved job only: the deferred blades are not in it.
    let events = g.events(&order.id).await;
    let completed = &events
        .iter()
        .find(|(t, _)| t == "workorder.completed")
        .unwrap()
        .1;
    let skus: Vec<&str> = completed["partLines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["sku"].as_str().unwrap())
        .collect();
    assert_eq!(skus.len(), 1);
    assert!(skus[0].starts_with("BP-"), "{skus:?}");
    // The quoted price is the approved one, whatever inventory charges by now.
    assert_eq!(completed["partLines"][0]["unitPriceMinor"], 2500);
    assert_eq!(completed["laborLines"].as_array().unwrap().len(), 1);
    assert_eq!(completed["totalMinor"], 18500);
    let deferred_event = events.iter().find(|(t, _)| t == "job.deferred").unwrap();
    assert_eq!(deferred_event.1["remindAfter"], "2099-03-01");
    g.stop().await;
}

#[sqlx::test(migrator = "carerp_workorder::MIGRATOR")]
async fn an_estimate_needs_proposed_jobs_with_lines(pool: PgPool) {
    let mut g = Garage::start(pool).await;
    let order = g.order().await;
    let err = g
        .client
        .send_estimate(pb::SendEstimateRequest {
            work_order_id: order.id.clone(),
            expected_version: 0,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("no PROPOSED job"),
        "{}",
        err.message()
    );
    let order = add_job(&mut g, &order.id, "Noise from the rear").await;
    let err = g
        .client
        .send_estimate(pb::SendEstimateRequest {
            work_order_id: order.id.clone(),
            expected_version: 0,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(err.message().contains("has no lines"), "{}", err.message());
    let err = g
        .client
        .add_job(pb::AddJobRequest {
            work_order_id: order.id.clone(),
            title: " ".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("title"), "{}", err.message());
    // A retried add with the same key adds one job.
    let keyed = pb::AddJobRequest {
        work_order_id: order.id.clone(),
        title: "Exhaust rattles".into(),
        idempotency_key: "job-1".into(),
        ..Default::default()
    };
    g.client.add_job(keyed.clone()).await.unwrap();
    let again = g.client.add_job(keyed).await.unwrap().into_inner();
    assert_eq!(again.jobs.len(), 3);
    g.stop().await;
}

/// The BFF retries a send whose email failed with the same key: the version the key sent,
/// with a fresh link that replaces the first; no second version, no second event.
#[sqlx::test(migrator = "carerp_workorder::MIGRATOR")]
async fn a_retried_send_with_its_key_answers_the_same_version_with_a_new_link(pool: PgPool) {
    let mut g = Garage::start(pool).await;
    let (order, _, wipers) = estimated_order(&mut g).await;
    let keyed = pb::SendEstimateRequest {
        work_order_id: order.id.clone(),
        expected_version: order.audit.as_ref().unwrap().version,
        idempotency_key: "send-1".into(),
    };
    let first = g
        .client
        .send_estimate(keyed.clone())
        .await
        .unwrap()
        .into_inner();
    let again = g
        .client
        .send_estimate(keyed.clone())
        .await
        .unwrap()
        .into_inner();
    let (one, two) = (first.estimate.unwrap(), again.estimate.unwrap());
    assert_eq!((one.id.as_str(), one.version), (two.id.as_str(), 1));
    assert_ne!(first.approval_token, again.approval_token);
    let link = |token: &str| pb::GetEstimateByLinkRequest {
        token: token.into(),
    };
    let err = g
        .client
        .get_estimate_by_link(link(&first.approval_token))
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::NotFound,
        "the replaced link opens nothing"
    );
    g.client
        .get_estimate_by_link(link(&again.approval_token))
        .await
        .unwrap();
    let list = g
        .client
        .list_estimates(pb::ListEstimatesRequest {
            work_order_id: order.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.estimates.len(), 1);

    // Once the estimate changed, the key's version is no longer worth a link.
    g.client
        .add_labor_line(pb::AddLaborLineRequest {
            work_order_id: order.id.clone(),
            description: "Check arms".into(),
            minutes: 5,
            job_id: wipers,
            ..Default::default()
        })
        .await
        .unwrap();
    let err = g.client.send_estimate(keyed).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("new key"), "{}", err.message());
    g.stop().await;
}
