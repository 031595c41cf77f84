//! Canned jobs over gRPC against the real inventory and a real database: kept by the front
//! desk, added to a work order in one action at today's prices, and every bad input.

mod common;

use carerp_kit::auth::Role;
use carerp_proto::inventory::v1 as ipb;
use carerp_proto::workorder::v1 as pb;
use carerp_proto::workorder::v1::{JobState as J, ReservationState as RS};
use common::*;
use sqlx::PgPool;
use tonic::Code;

fn oil_service(filter: &str, oil: &str) -> pb::SaveCannedJobRequest {
    pb::SaveCannedJobRequest {
        id: String::new(),
        name: "Oil service 5W-30".into(),
        parts: vec![
            pb::CannedPart {
                part_id: filter.into(),
                quantity: 1,
            },
            pb::CannedPart {
                part_id: oil.into(),
                quantity: 5,
            },
        ],
        labor: vec![pb::CannedLabor {
            description: "Oil and filter change".into(),
            minutes: 30,
        }],
    }
}

async fn set_price(g: &mut Garage, part_id: &str, price_minor: i64, active: bool) {
    g.parts
        .as_mut()
        .unwrap()
        .update_part(ipb::UpdatePartRequest {
            id: part_id.into(),
            unit_price: Some(carerp_proto::common::v1::Money {
                amount_minor: price_minor,
                currency: "EUR".into(),
            }),
            active: Some(active),
            ..Default::default()
        })
        .await
        .unwrap();
}

#[sqlx::test(migrator = "carerp_workorder::MIGRATOR")]
async fn a_canned_job_is_added_in_one_action_at_todays_prices(pool: PgPool) {
    let mut g = Garage::start(pool).await;
    let filter = g.part("FLT-1", 900, 10).await;
    let oil = g.part("OIL-5W30", 1200, 50).await;
    let mut desk = g.canned_jobs_as(Role::ServiceAdvisor).await;
    let mut tech = g.canned_jobs_as(Role::Technician).await;

    let err = tech
        .save_canned_job(oil_service(&filter, &oil))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let saved = desk
        .save_canned_job(oil_service(&filter, &oil))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(saved.parts.len(), 2);
    let err = desk
        .save_canned_job(pb::SaveCannedJobRequest {
            name: "oil SERVICE 5w-30".into(),
            ..oil_service(&filter, &oil)
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);

    // The oil costs more today than when the package was made: the job is priced today.
    set_price(&mut g, &oil, 1350, true).await;
    let order = g.order().await;
    let request = pb::AddCannedJobRequest {
        work_order_id: order.id.clone(),
        canned_job_id: saved.id.clone(),
        expected_version: 0,
        idempotency_key: format!("{}-oil", order.id),
    };
    let added = tech
        .add_canned_job(request.clone())
        .await
        .unwrap()
        .into_inner();
    let job = added.jobs.last().unwrap();
    assert_eq!(job.title, "Oil service 5W-30");
    assert_eq!(job.state, J::Proposed as i32);
    let lines: Vec<_> = added
        .part_lines
        .iter()
        .filter(|l| l.job_id == job.id)
        .collect();
    assert_eq!(lines.len(), 2);
    assert!(
        lines
            .iter()
            .all(|l| l.reservation_state == RS::Quoted as i32)
    );
    let oil_line = lines.iter().find(|l| l.part_id == oil).unwrap();
    assert_eq!(oil_line.unit_price.as_ref().unwrap().amount_minor, 1350);
    let labor: Vec<_> = added
        .labor_lines
        .iter()
        .filter(|l| l.job_id == job.id)
        .collect();
    assert_eq!(labor.len(), 1);
    assert_eq!(
        labor[0].hourly_rate.as_ref().unwrap().amount_minor,
        LABOR_RATE
    );
    // 900 + 5 × 1350 + half an hour at the rate, as proposed (not yet approved).
    let proposed = added
        .totals
        .as_ref()
        .unwrap()
        .proposed
        .as_ref()
        .unwrap()
        .amount_minor;
    assert_eq!(proposed, 900 + 5 * 1350 + LABOR_RATE / 2);

    // A retry with the key adds nothing twice; the same key for another package is refused.
    let again = tech
        .add_canned_job(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.jobs.len(), added.jobs.len());
    let brakes = desk
        .save_canned_job(pb::SaveCannedJobRequest {
            name: "Brake fluid".into(),
            parts: vec![],
            ..oil_service(&filter, &oil)
        })
        .await
        .unwrap()
        .into_inner();
    let err = tech
        .add_canned_job(pb::AddCannedJobRequest {
            canned_job_id: brakes.id.clone(),
            ..request
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let listed = desk
        .list_canned_jobs(pb::ListCannedJobsRequest {})
        .await
        .unwrap()
        .into_inner()
        .canned_jobs;
    let names: Vec<_> = listed.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["Brake fluid", "Oil service 5W-30"]);
}

#[sqlx::test(migrator = "carerp_workorder::MIGRATOR")]
async fn inactive_or_unknown_parts_and_bad_lines_are_refused_naming_them(pool: PgPool) {
    let mut g = Garage::start(pool).await;
    let filter = g.part("FLT-2", 900, 10).await;
    let oil = g.part("OIL-OLD", 1200, 50).await;
    let mut desk = g.canned_jobs_as(Role::Owner).await;
    let saved = desk
        .save_canned_job(oil_service(&filter, &oil))
        .await
        .unwrap()
        .into_inner();

    // The oil is discontinued: adding the package now is refused, naming the part.
    set_price(&mut g, &oil, 1200, false).await;
    let order = g.order().await;
    let err = desk
        .add_canned_job(pb::AddCannedJobRequest {
            work_order_id: order.id.clone(),
            canned_job_id: saved.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("OIL-OLD") && err.message().contains("inactive"),
        "{err:?}"
    );
    assert_eq!(g.get(&order.id).await.jobs.len(), 1, "nothing was added");
    // ... and saving a package with it too.
    let err = desk
        .save_canned_job(pb::SaveCannedJobRequest {
            name: "Another".into(),
            ..oil_service(&filter, &oil)
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let unknown = uuid::Uuid::now_v7().to_string();
    let err = desk
        .save_canned_job(pb::SaveCannedJobRequest {
            name: "Ghost".into(),
            ..oil_service(&filter, &unknown)
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(err.message().contains(&unknown), "{err:?}");

    let err = desk
        .save_canned_job(pb::SaveCannedJobRequest {
            id: String::new(),
            name: " ".into(),
            parts: vec![pb::CannedPart {
                part_id: filter.clone(),
                quantity: 0,
            }],
            labor: vec![pb::CannedLabor {
                description: "Check".into(),
                minutes: -5,
            }],
        })
        .await
        .unwrap_err();
    assert_eq!(
        fields(&err),
        ["name", "parts[0].quantity", "labor[0].minutes"]
    );

    // Unknown ids, and a closed order.
    let err = desk
        .add_canned_job(pb::AddCannedJobRequest {
            work_order_id: order.id.clone(),
            canned_job_id: unknown.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = desk
        .remove_canned_job(pb::RemoveCannedJobRequest { id: unknown })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    set_price(&mut g, &oil, 1200, true).await;
    g.status(
        &order.id,
        carerp_proto::workorder::v1::WorkOrderStatus::Cancelled,
    )
    .await;
    let err = desk
        .add_canned_job(pb::AddCannedJobRequest {
            work_order_id: order.id.clone(),
            canned_job_id: saved.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    desk.remove_canned_job(pb::RemoveCannedJobRequest { id: saved.id })
        .await
        .unwrap();
}
