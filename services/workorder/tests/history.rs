//! A vehicle's history and its recommended work over gRPC, against the real customer and
//! inventory services and a real database: declined and deferred jobs come back at the next
//! visit, priced anew, and every bad input is refused without a change.

mod common;

use carerp_kit::auth::Role;
use carerp_proto::common::v1::{Money, PageRequest};
use carerp_proto::inventory::v1 as ipb;
use carerp_proto::workorder::v1 as pb;
use carerp_proto::workorder::v1::{DecisionChannel as C, JobState as J, ReservationState as R};
use common::*;
use sqlx::PgPool;
use tonic::Code;

fn today() -> chrono::NaiveDate {
    chrono::Utc::now().date_naive()
}

async fn add_job(g: &mut Garage, id: &str, title: &str) -> String {
    let order = g
        .client
        .add_job(pb::AddJobRequest {
            work_order_id: id.into(),
            title: title.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    order.jobs.last().unwrap().id.clone()
}

async fn decide(g: &mut Garage, id: &str, job_id: &str, decision: J, remind_after: &str) {
    g.client
        .decide_job(pb::DecideJobRequest {
            work_order_id: id.into(),
            job_id: job_id.into(),
            decision: decision as i32,
            channel: C::Phone as i32,
            reason: "Not this time".into(),
            remind_after: remind_after.into(),
            ..Default::default()
        })
        .await
        .unwrap();
}

/// A first visit of a new vehicle: brakes (2 pads, 90 min) declined and wipers (1 blade set)
/// deferred for a month. Answers (order, brakes job, wipers job, pads part).
async fn first_visit(g: &mut Garage) -> (pb::WorkOrder, String, String, String) {
    let order = g.order().await;
    let n = &order.number[order.number.len() - 6..];
    let pads = g.part(&format!("BP-{n}"), 2500, 10).await;
    let blades = g.part(&format!("WB-{n}"), 1800, 10).await;
    let brakes = add_job(g, &order.id, "Front brakes grinding").await;
    let wipers = add_job(g, &order.id, "Wiper blades smear").await;
    for (job, part, quantity) in [(&brakes, &pads, 2), (&wipers, &blades, 1)] {
        g.client
            .add_part_line(pb::AddPartLineRequest {
                work_order_id: order.id.clone(),
                part_id: part.clone(),
                quantity,
                job_id: job.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
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
    decide(g, &order.id, &brakes, J::Declined, "").await;
    let in_a_month = (today() + chrono::Days::new(30)).to_string();
    decide(g, &order.id, &wipers, J::Deferred, &in_a_month).await;
    (g.get(&order.id).await, brakes, wipers, pads)
}

fn offer(work_order_id: &str, job_id: &str, key: &str) -> pb::OfferAgainRequest {
    pb::OfferAgainRequest {
        work_order_id: work_order_id.into(),
        job_id: job_id.into(),
        expected_version: 0,
        idempotency_key: key.into(),
    }
}

fn titles(recommended: &[pb::Recommendation]) -> Vec<&str> {
    recommended.iter().map(|r| r.title.as_str()).collect()
}

#[sqlx::test(migrator = "carerp_workorder::MIGRATOR")]
async fn declined_and_deferred_work_comes_back_at_the_next_visit_priced_anew(pool: PgPool) {
    let mut g = Garage::start(pool).await;
    let (first, brakes, wipers, pads) = first_visit(&mut g).await;
    let mut desk = g.history_as(Role::ServiceAdvisor).await;
    let mut tech = g.history_as(Role::Technician).await;

    let history = tech
        .get_vehicle_history(pb::GetVehicleHistoryRequest {
            vehicle_id: first.vehicle_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(history.visits.len(), 1);
    assert_eq!(
        titles(&history.recommended),
        ["Front brakes grinding", "Wiper blades smear"]
    );
    let declined = &history.recommended[0];
    assert_eq!(declined.state, J::Declined as i32);
    assert_eq!(declined.reason, "Not this time");
    assert_eq!(declined.work_order_number, first.number);
    assert_eq!(
        declined.total.as_ref().unwrap().amount_minor,
        2 * 2500 + LABOR_RATE * 3 / 2
    );
    assert_eq!(history.recommended[1].remind_after.len(), 10);
    assert_eq!(history.odometer.len(), 1);
    assert_eq!(history.odometer[0].odometer_km, first.odometer_km);

    // Due today: the declined job; the deferred one from its day on.
    let due = |due_by: String| pb::ListRecommendedWorkRequest {
        due_by,
        vehicle_id: first.vehicle_id.clone(),
        ..Default::default()
    };
    let now = desk
        .list_recommended_work(due(String::new()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(titles(&now.recommended), ["Front brakes grinding"]);
    let later = desk
        .list_recommended_work(due((today() + chrono::Days::new(31)).to_string()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(titles(&later.recommended).len(), 2);
    let err = tech
        .list_recommended_work(due(String::new()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // Pads cost more at the next visit, and the labour rate is the tenant's.
    g.parts
        .as_mut()
        .unwrap()
        .update_part(ipb::UpdatePartRequest {
            id: pads.clone(),
            unit_price: Some(Money {
                amount_minor: 2700,
                currency: "EUR".into(),
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let second = g.create(&first.customer_id, &first.vehicle_id).await;
    let other_vehicle = g.order().await;

    for (target, job, code, words) in [
        (&first.id, &brakes, Code::FailedPrecondition, "new decision"),
        (
            &other_vehicle.id,
            &brakes,
            Code::FailedPrecondition,
            "another vehicle",
        ),
        (
            &second.id,
            &first.jobs[0].id,
            Code::FailedPrecondition,
            "APPROVED",
        ),
        (
            &second.id,
            &uuid::Uuid::now_v7().to_string(),
            Code::NotFound,
            "not found",
        ),
    ] {
        let err = tech.offer_again(offer(target, job, "")).await.unwrap_err();
        assert_eq!(err.code(), code, "{err:?}");
        assert!(err.message().contains(words), "{err:?}");
    }
    let err = tech
        .offer_again(offer("nope", &brakes, ""))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(g.get(&second.id).await.jobs.len(), 1, "nothing was added");

    let offered = tech
        .offer_again(offer(&second.id, &brakes, "offer-brakes"))
        .await
        .unwrap()
        .into_inner();
    let job = offered.jobs.last().unwrap();
    assert_eq!(job.title, "Front brakes grinding");
    assert_eq!(job.state, J::Proposed as i32);
    let part = offered
        .part_lines
        .iter()
        .find(|line| line.job_id == job.id)
        .unwrap();
    assert_eq!(part.quantity, 2);
    assert_eq!(part.reservation_state, R::Quoted as i32);
    assert_eq!(part.unit_price.as_ref().unwrap().amount_minor, 2700);
    assert_eq!(
        job.total.as_ref().unwrap().amount_minor,
        2 * 2700 + LABOR_RATE * 3 / 2
    );

    let retried = tech
        .offer_again(offer(&second.id, &brakes, "offer-brakes"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        retried.jobs.len(),
        offered.jobs.len(),
        "a retry adds it once"
    );
    let err = tech
        .offer_again(offer(&second.id, &brakes, "another-key"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("no longer recommended"), "{err:?}");

    let history = tech
        .get_vehicle_history(pb::GetVehicleHistoryRequest {
            vehicle_id: first.vehicle_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(history.visits.len(), 2);
    assert_eq!(history.visits[0].work_order.as_ref().unwrap().id, second.id);
    assert_eq!(
        history.visits[1].offered_again_in.get(&brakes),
        Some(&second.number)
    );
    assert_eq!(titles(&history.recommended), ["Wiper blades smear"]);
    assert_eq!(history.recommended[0].job_id, wipers);
    assert_eq!(history.odometer.len(), 2);

    // Removing the job offered again makes the earlier one recommended again.
    g.client
        .remove_job(pb::RemoveJobRequest {
            work_order_id: second.id.clone(),
            job_id: job.id.clone(),
            expected_version: 0,
        })
        .await
        .unwrap();
    let again = desk
        .list_recommended_work(due(String::new()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(titles(&again.recommended), ["Front brakes grinding"]);
}

#[sqlx::test(migrator = "carerp_workorder::MIGRATOR")]
async fn recommended_work_pages_and_leaves_out_cancelled_orders(pool: PgPool) {
    let mut g = Garage::start(pool).await;
    let (first, ..) = first_visit(&mut g).await;
    let (cancelled, ..) = first_visit(&mut g).await;
    let (_third, ..) = first_visit(&mut g).await;
    g.client
        .change_status(pb::ChangeStatusRequest {
            id: cancelled.id.clone(),
            status: pb::WorkOrderStatus::Cancelled as i32,
            reason: "Customer went elsewhere".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut desk = g.history_as(Role::Owner).await;
    let due_by = (today() + chrono::Days::new(60)).to_string();
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = desk
            .list_recommended_work(pb::ListRecommendedWorkRequest {
                page: Some(PageRequest {
                    page_size: 1,
                    page_token: token.clone(),
                }),
                due_by: due_by.clone(),
                vehicle_id: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.recommended.len() <= 1);
        seen.extend(page.recommended);
        token = page.page.unwrap().next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(seen.len(), 4, "two of each order that was not cancelled");
    assert!(seen.iter().all(|r| r.work_order_id != cancelled.id));
    assert!(seen.iter().any(|r| r.work_order_id == first.id));
    // Declined jobs (due the day they were declined) before the deferred ones.
    assert_eq!(seen[0].state, J::Declined as i32);
    assert_eq!(seen[3].state, J::Deferred as i32);

    for (due_by, page_token, field) in [
        ("tomorrow", "", "due_by"),
        ("", "not-a-token", "page.page_token"),
    ] {
        let err = desk
            .list_recommended_work(pb::ListRecommendedWorkRequest {
                page: Some(PageRequest {
                    page_size: 10,
                    page_token: page_token.into(),
                }),
                due_by: due_by.into(),
                vehicle_id: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(
            fields(&err)
                .iter()
                .any(|f| f.contains(field.rsplit('.').next().unwrap())),
            "{err:?}"
        );
    }
    let err = desk
        .get_vehicle_history(pb::GetVehicleHistoryRequest {
            vehicle_id: "x".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}
