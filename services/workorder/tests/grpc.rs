//! The work order service over gRPC, against the real customer service and a real database:
//! every RPC, and every bad input.

mod common;

use std::collections::HashSet;

use carerp_proto::common::v1::{Money, PageRequest};
use carerp_proto::workorder::v1 as pb;
use carerp_proto::workorder::v1::WorkOrderStatus as S;
use chrono::Datelike;
use common::*;
use sqlx::PgPool;
use tonic::Code;

const PART: &str = "0192f0c1-6b2a-7c3d-8e4f-0123456789ab";
const PART_2: &str = "0192f0c1-6b2a-7c3d-8e4f-0123456789ac";
const UNKNOWN: &str = "0192f0c1-0000-7000-8000-000000000000";

#[sqlx::test(migrator = "carerp_workorder::MIGRATOR")]
async fn create_opens_a_numbered_order_and_announces_it(pool: PgPool) {
    let mut g = Garage::start(pool).await;
    let (customer_id, vehicle_id) = g
        .customer_with_vehicle("Jane Doe", "WVWZZZ1KZAW000001")
        .await;
    let first = g.create(&customer_id, &vehicle_id).await;
    let second = g.create(&customer_id, &vehicle_id).await;
    let year = chrono::Utc::now().year();
    assert_eq!(first.number, format!("WO-{year}-000001"));
    assert_eq!(second.number, format!("WO-{year}-000002"));
    assert_eq!(first.status, S::Open as i32);
    assert_eq!(first.customer_id, customer_id);
    assert_eq!(first.vehicle_id, vehicle_id);
    assert_eq!(first.complaint, "Brakes squeal when stopping");
    assert_eq!(first.odometer_km, 81_234);
    assert_eq!(first.notes, "Customer waits");
    assert_eq!(version(&first), 1);
    assert_eq!(totals(&first), (0, 0, 0));
    assert_eq!(
        first
            .totals
            .as_ref()
            .unwrap()
            .parts
            .as_ref()
            .unwrap()
            .currency,
        "EUR"
    );
    assert!(first.started_at.is_none() && first.completed_at.is_none());
    let events = g.events(&first.id).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].0, "workorder.created");
    assert_eq!(events[0].1["workOrderId"], first.id);
    assert_eq!(events[0].1["number"], first.number);
    assert_eq!(events[0].1["customerId"], customer_id);
    assert_eq!(events[0].1["vehicleId"], vehicle_id);
    assert_eq!(g.get(&first.id).await, first);
    g.stop().await;
}

#[sqlx::test(migrator = "carerp_workorder::MIGRATOR")]
async fn create_with_the_same_idempotency_key_returns_the_first_order(pool: PgPool) {
    let mut g = Garage::start(pool).await;
    let (customer_id, vehicle_id) = g
        .customer_with_vehicle("Jane Doe", "WVWZZZ1KZAW000001")
        .await;
    let request = pb::CreateWorkOrderRequest {
        idempotency_key: "intake-42".into(),
        ..new_order(&customer_id, &vehicle_id)
    };
    let first = g
        .client
        .create_work_order(request.clone())
        .await
        .unwrap()
        .into_inner();
    let again = g
        .client
        .create_work_order(request)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first, again);
    assert_eq!(g.count("work_orders").await, 1);
    assert_eq!(g.count("outbox").await, 1);
    let err = g
        .client
        .create_work_order(pb::CreateWorkOrderRequest {
            idempotency_key: "k".repeat(201),
            ..new_order(&customer_id, &vehicle_id)
        })
        .await
        .unwrap_err();
    assert_eq!(fields(&err), vec!["idempotency_key"]);
    // No number was used up by the repeat.
    let next = g.create(&customer_id, &vehicle_id).await;
    assert!(next.number.ends_with("-000002"), "{}", next.number);
    // A retry answers from what was written, even when the customer service is gone by now.
    g.customer_service.take().unwrap().stop().await.unwrap();
    let retried = g
        .client
        .create_work_order(pb::CreateWorkOrderRequest {
            idempotency_key: "intake-42".into(),
            ..new_order(&customer_id, &vehicle_id)
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retried, first);
    g.stop().await;
}

#[sqlx::test(migrator = "carerp_workorder::MIGRATOR")]
async fn create_refuses_bad_input_naming_every_field(pool: PgPool) {
    let mut g = Garage::start(pool).await;
    let err = g
        .client
        .create_work_order(pb::CreateWorkOrderRequest {
            customer_id: String::new(),
            vehicle_id: "not-a-uuid".into(),
            complaint: "  ".into(),
            odometer_km: -1,
            notes: "x".repeat(4001),
            idempotency_key: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        fields(&err),
        vec![
            "customer_id",
            "vehicle_id",
            "complaint",
            "odometer_km",
            "notes"
        ]
    );
    assert!(
        err.message().contains("customer_id: is required"),
        "{}",
        err.message()
    );
    // A NUL byte the database could not store is refused by field, as is any other control
    // character.
    let err = g
        .client
        .create_work_order(pb::CreateWorkOrderRequest {
            complaint: "brakes\u{0} squeal".into(),
            notes: "\u{1b}[2J".into(),
            ..new_order(UNKNOWN, PART)
        })
        .await
        .unwrap_err();
    assert_eq!(fields(&err), vec!["complaint", "notes"]);
    assert!(
        err.message()
            .contains("must not contain control characters"),
        "{}",
        err.message()
    );
    assert_eq!(g.count("work_orders").await, 0);
    assert_eq!(g.count("outbox").await, 0);
    g.stop().await;
}

#[sqlx::test(migrator = "carerp_workorder::MIGRATOR")]
async fn create_checks_customer_and_vehicle_with_the_customer_service(pool: PgPool) {
    let mut g = Garage::start(pool).await;
    let (jane, janes_car) = g
        .customer_with_vehicle("Jane Doe", "WVWZZZ1KZAW000001")
        .await;
    let (john, _johns_car) = g
        .customer_with_vehicle("John Roe", "WVWZZZ1KZAW000002")
        .await;

    let err = g
        .client
        .create_work_order(new_order(&john, &janes_car))
        .await
        .unwrap_err();
    assert_eq!(fields(&err), vec!["vehicle_id"]);
    assert!(
        err.message().contains("belongs to another customer"),
        "{}",
        err.message()
    );

    let err = g
        .client
        .create_work_order(new_order(UNKNOWN, &janes_car))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(err.message(), format!("customer {UNKNOWN} not found"));

    let err = g
        .client
        .create_work_order(new_order(&jane, UNKNOWN))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(err.message(), format!("vehicle {UNKNOWN} not found"));

    g.customers
        .as_mut()
        .unwrap()
        .archive_customer(carerp_proto::customer::v1::ArchiveCustomerRequest { id: jane.clone() })
        .await
        .unwrap();
    let err = g
        .client
        .create_work_order(new_order(&jane, &janes_car))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("archived"), "{}", err.message());

    assert_eq!(g.count("work_orders").await, 0);
    assert_eq!(g.count("work_order_counters").await, 0);
    assert_eq!(g.count("outbox").await, 0);
    g.stop().await;
}

#[sqlx::test(migrator = "carerp_workorder::MIGRATOR")]
async fn create_while_the_customer_service_is_down_is_unavailable_and_writes_nothing(pool: PgPool) {
    let closed = carerp_kit::config::ClosedPort::bind().unwrap();
    let mut g = Garage::start_pointing_at(pool, &closed.url()).await;
    let started = std::time::Instant::now();
    let err = g
        .client
        .create_work_order(new_order(UNKNOWN, PART))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(
        err.message().starts_with("customer service unavailable"),
        "{}",
        err.message()
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(g.count("work_orders").await, 0);
    assert_eq!(g.count("work_order_counters").await, 0);
    assert_eq!(g.count("outbox").await, 0);
    // The rest of the service still works without it.
    let err = g
        .client
        .get_work_order(pb::GetWorkOrderRequest { id: UNKNOWN.into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    g.stop().await;
}

/// A customer service that accepts connections and never answers: the deadline ends the
/// wait, the caller gets Unavailable, and nothing is written.
#[sqlx::test(migrator = "carerp_workorder::MIGRATOR")]
async fn create_gives_up_on_a_customer_service_that_does_not_answer(pool: PgPool) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let deadline = std::time::Duration::from_millis(300);
    let url = format!("http://{addr}");
    let peers = carerp_workorder::Peers::connect_lazy(&url, &url, deadline).unwrap();
    let mut g = Garage::start_with_peers(pool, peers).await;
    let started = std::time::Instant::now();
    let err = g
        .client
        .create_work_order(new_order(UNKNOWN, PART))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(g.count("work_orders").await, 0);
    assert_eq!(g.count("outbox").await, 0);
    silent.abort();
    g.stop().await;
}

#[sqlx::test(migrator = "carerp_workorder::MIGRATOR")]
async fn get_refuses_unknown_and_malformed_ids(pool: PgPool) {
    let mut g = Garage::start(pool).await;
    let err = g
        .client
        .get_work_order(pb::GetWorkOrderRequest { id: UNKNOWN.into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(err.message(), format!("work order {UNKNOWN} not found"));
    let err = g
        .client
        .get_work_order(pb::GetWorkOrderRequest { id: "42".into() })
        .await
        .unwrap_err();
    assert_eq!(fields(&err), vec!["id"]);
    g.stop().await;
}

#[sqlx::test(migrator = "carerp_workorder::MIGRATOR")]
async fn list_filters_and_pages_without_gaps_or_repeats(pool: PgPool) {
    let mut g = Garage::start(pool).await;
    let (jane, janes_car) = g
        .customer_with_vehicle("Jane Doe", "WVWZZZ1KZAW000001")
        .await;
    let (john, johns_car) = g
        .customer_with_vehicle("John Roe", "WVWZZZ1KZAW000002")
        .await;
    let mut janes = Vec::new();
    for _ in 0..5 {
        janes.push(g.create(&jane, &janes_car).await.id);
    }
    let johns = g.create(&john, &johns_car).await.id;
    g.status(&janes[0], S::InProgress).await;
    g.status(&johns, S::Cancelled).await;

    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = g
            .client
            .list_work_orders(pb::ListWorkOrdersRequest {
                page: Some(PageRequest {
                    page_size: 2,
                    page_token: token.clone(),
                }),
                customer_id: jane.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.work_orders.len() <= 2);
        seen.extend(page.work_orders.into_iter().map(|o| o.id));
        token = page.page.unwrap().next_page_token;
        if token.is_empty() {
            break;
        }
    }
    let mut newest_first = janes.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first);

    let list = |statuses: Vec<S>, customer: &str, vehicle: &str| pb::ListWorkOrdersRequest {
        page: None,
        statuses: statuses.into_iter().map(|s| s as i32).collect(),
        customer_id: customer.into(),
        vehicle_id: vehicle.into(),
    };
    let ids = |response: pb::ListWorkOrdersResponse| -> HashSet<String> {
        response.work_orders.into_iter().map(|o| o.id).collect()
    };
    let all = g
        .client
        .list_work_orders(list(vec![], "", ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.work_orders.len(), 6);
    let active = g
        .client
        .list_work_orders(list(vec![S::InProgress, S::Cancelled], "", ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        ids(active),
        HashSet::from([janes[0].clone(), johns.clone()])
    );
    let by_vehicle = g
        .client
        .list_work_orders(list(vec![], "", &johns_car))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ids(by_vehicle), HashSet::from([johns.clone()]));
    let none = g
        .client
        .list_work_orders(list(vec![S::Open], &john, ""))
        .await
        .unwrap()
        .into_inner();
    assert!(none.work_orders.is_empty());

    // The counts per status agree with the lists: every status, zeros included.
    let counts: Vec<(i32, i64)> = g
        .client
        .count_work_orders(pb::CountWorkOrdersRequest {})
        .await
        .unwrap()
        .into_inner()
        .counts
        .into_iter()
        .map(|c| (c.status, c.count))
        .collect();
    assert_eq!(
        counts,
        vec![
            (S::Open as i32, 4),
            (S::Estimate as i32, 0),
            (S::InProgress as i32, 1),
            (S::AwaitingParts as i32, 0),
            (S::Completed as i32, 0),
            (S::Invoiced as i32, 0),
            (S::Cancelled as i32, 1),
        ]
    );

    let err = g
        .client
        .list_work_orders(pb::ListWorkOrdersRequest {
            page: Some(PageRequest {
                page_size: -1,
                page_token: "garbage!".into(),
            }),
            statuses: vec![0, 99],
            customer_id: "nope".into(),
            vehicle_id: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        fields(&err),
        vec![
            "page.page_size",
            "page.page_token",
            "statuses[0]",
            "statuses[1]",
            "customer_id",
            "vehicle_id"
        ]
    );
    g.stop().await;
}

/// Parts short at intake park an OPEN order in AWAITING_PARTS; once they are reserved the
/// work still has to start before the order can be completed.
#[sqlx::test(migrator = "carerp_workorder::MIGRATOR")]
async fn an_order_waiting_for_parts_since_intake_must_start_before_completing(pool: PgPool) {
    let mut g = Garage::start(pool).await;
    let order = g.order().await;
    let with_part = g.add_part(&order.id, PART, 1).await;
    fail_reservation(&g.pool, &with_part, "not enough stock").await;
    let waiting = g.get(&order.id).await;
    assert_eq!(waiting.status, S::AwaitingParts as i32);
    let retried = g
        .client
        .retry_reservation(pb::RetryReservationRequest {
            id: order.id.clone(),
            expected_version: 0,
            idempotency_key: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    reserve(&g.pool, &retried, 1250).await;

    let err = g.try_status(&order.id, S::Completed).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains("work has not started"),
        "{}",
        err.message()
    );
    g.status(&order.id, S::InProgress).await;
    let done = g.status(&order.id, S::Completed).await;
    assert!(done.started_at.is_some() && done.completed_at.is_some());
    g.stop().await;
}

#[sqlx::test(migrator = "carerp_workorder::MIGRATOR")]
async fn the_life_cycle_from_intake_to_completion(pool: PgPool) {
    let mut g = Garage::start(pool).await;
    let order = g.order().await;
    let started = g.status(&order.id, S::InProgress).await;
    assert_eq!(started.status, S::InProgress as i32);
    assert!(started.started_at.is_some());
    assert_eq!(version(&started), 2);
    let waiting = g.status(&order.id, S::AwaitingParts).await;
    assert_eq!(waiting.status, S::AwaitingParts as i32);
    let resumed = g.status(&order.id, S::InProgress).await;
    assert_eq!(
        resumed.started_at, started.started_at,
        "the first start is kept"
    );
    g.add_part(&order.id, PART, 2).await;
    let order_with_parts = g.add_labor(&order.id, 90, None).await;
    reserve(&g.pool, &order_with_parts, 1250).await;
    let done = g.status(&order.id, S::Completed).await;
    assert_eq!(done.status, S::Completed as i32);
    assert!(done.completed_at.is_some());
    assert_eq!(totals(&done), (2500, 13500, 16000));

    let events = g.events(&order.id).await;
    let topics: Vec<&str> = events.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        topics,
        vec![
            "workorder.created",
            "workorder.parts-added",
            "workorder.completed"
        ]
    );
    let completed = &events[2].1;
    assert_eq!(completed["workOrderId"], order.id);
    assert_eq!(completed["number"], order.number);
    assert_eq!(completed["customerId"], order.customer_id);
    assert_eq!(completed["vehicleId"], order.vehicle_id);
    assert_eq!(completed["currency"], "EUR");
    assert_eq!(completed["partsTotalMinor"], 2500);
    assert_eq!(completed["laborTotalMinor"], 13500);
    assert_eq!(completed["totalMinor"], 16000);
    let part = &completed["partLines"][0];
    assert_eq!(part["partId"], PART);
    assert_eq!(part["quantity"], 2);
    assert_eq!(part["unitPriceMinor"], 1250);
    assert_eq!(part["lineTotalMinor"], 2500);
    assert_eq!(part["sku"], format!("SKU-{}", &PART[..8]));
    assert_eq!(part["name"], "Brake pad set");
    let labor = &completed["laborLines"][0];
    assert_eq!(labor["description"], "Replace brake pads");
    assert_eq!(labor["technician"], "Ana");
    assert_eq!(labor["minutes"], 90);
    assert_eq!(labor["hourlyRateMinor"], LABOR_RATE);
    assert_eq!(labor["lineTotalMinor"], 13500);

    // A completed order moves on only by invoice.
    for to in [S::Cancelled, S::InProgress, S::Invoiced, S::Open] {
        let err = g
            .client
            .change_status(pb::ChangeStatusRequest {
                id: order.id.clone(),
                status: to as i32,
                reason: "changed mind".into(),
                expected_version: 0,
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{to:?}");
        assert!(
            err.message()
                .starts_with("cannot change status from COMPLETED to "),
            "{}",
            err.message()
        );
    }
    assert_eq!(g.get(&order.id).await, done);
    g.stop().await;
}

#[sqlx::test(migrator = "carerp_workorder::MIGRATOR")]
async fn refused_transitions_say_from_what_to_what_and_why(pool: PgPool) {
    let mut g = Garage::start(pool).await;
    let order = g.order().await;
    let change = |status: S, reason: &str| pb::ChangeStatusRequest {
        id: order.id.clone(),
        status: status as i32,
        reason: reason.into(),
        expected_version: 0,
    };
    let err = g
        .client
        .change_status(change(S::Completed, ""))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(
        err.message(),
        "cannot change status from OPEN to COMPLETED: work has not started: move it to IN_PROGRESS first"
    );
    let err = g
        .client
        .change_status(change(S::Invoiced, ""))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("invoice.created"),
        "{}",
        err.message()
    );
    // The status it already has: a retry after a lost answer succeeds, and changes nothing.
    let before = g.get(&order.id).await;
    let same = g
        .client
        .change_status(change(S::Open, ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(same.status, S::Open as i32);
    assert_eq!(version(&same), version(&before));
    assert_eq!(g.events(&order.id).await.len(), 1, "no second event");

    let err = g
        .client
        .change_status(change(S::Unspecified, ""))
        .await
        .unwrap_err();
    assert_eq!(fields(&err), vec!["status"]);
    let err = g
        .client
        .change_status(pb::ChangeStatusRequest {
            status: 42,
            ..change(S::Open, "")
        })
        .await
        .unwrap_err();
    assert_eq!(fields(&err), vec!["status"]);
    let err = g
        .client
        .change_status(change(S::Cancelled, "  "))
        .await
        .unwrap_err();
    assert_eq!(fields(&err), vec!["reason"]);
    let err = g
        .client
        .change_status(pb::ChangeStatusRequest {
            id: "x".into(),
            expected_version: -1,
            ..change(S::InProgress, "")
        })
        .await
        .unwrap_err();
    assert_eq!(fields(&err), vec!["id", "expected_version"]);
    let err = g
        .client
        .change_status(pb::ChangeStatusRequest {
            id: UNKNOWN.into(),
            ..change(S::InProgress, "")
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    let cancelled = g
        .client
        .change_status(change(S::Cancelled, " customer declined the quote "))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cancelled.status, S::Cancelled as i32);
    assert_eq!(cancelled.cancellation_reason, "customer declined the quote");
    assert!(cancelled.cancelled_at.is_some());
    let events = g.events(&order.id).await;
    assert_eq!(events.last().unwrap().0, "workorder.cancelled");
    assert_eq!(
        events.last().unwrap().1["reason"],
        "customer declined the quote"
    );
    let err = g
        .client
        .change_status(change(S::InProgress, ""))
        .await
        .unwrap_err();
    assert_eq!(
        err.message(),
        "cannot change status from CANCELLED to IN_PROGRESS: a cancelled work order is final"
    );
    // Refusals wrote nothing.
    assert_eq!(g.events(&order.id).await.len(), 2);
    assert_eq!(version(&g.get(&order.id).await), 2);
    g.stop().await;
}

#[sqlx::test(migrator = "carerp_workorder::MIGRATOR")]
async fn completing_with_unreserved_lines_names_them(pool: PgPool) {
    let mut g = Garage::start(pool).await;
    let order = g.order().await;
    g.status(&order.id, S::InProgress).await;
    let one = g.add_part(&order.id, PART, 1).await;
    reserve(&g.pool, &one, 500).await;
    let two = g.add_part(&order.id, PART_2, 3).await;
    let pending = two
        .part_lines
        .iter()
        .find(|l| l.part_id == PART_2)
        .unwrap()
        .id
        .clone();
    let reserved = two
        .part_lines
        .iter()
        .find(|l| l.part_id == PART)
        .unwrap()
        .id
        .clone();
    let err = g.try_status(&order.id, S::Completed).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message()
            .starts_with("cannot change status from IN_PROGRESS to COMPLETED"),
        "{}",
        err.message()
    );
    assert!(
        err.message().contains(&format!("{pending} (PENDING)")),
        "{}",
        err.message()
    );
    assert!(!err.message().contains(&reserved), "{}", err.message());
    assert_eq!(g.get(&order.id).await.status, S::InProgress as i32);
    g.stop().await;
}

#[sqlx::test(migrator = "carerp_workorder::MIGRATOR")]
async fn part_lines_are_added_announced_and_removed(pool: PgPool) {
    let mut g = Garage::start(pool).await;
    let order = g.order().await;
    let with_line = g.add_part(&order.id, PART, 4).await;
    assert_eq!(with_line.part_lines.len(), 1);
    let line = &with_line.part_lines[0];
    assert_eq!(line.part_id, PART);
    assert_eq!(line.quantity, 4);
    assert_eq!(line.reservation_state, pb::ReservationState::Pending as i32);
    assert!(line.unit_price.is_none() && line.line_total.is_none());
    assert_eq!(version(&with_line), 2);
    let with_two = g.add_part(&order.id, PART_2, 1).await;
    let events = g.events(&order.id).await;
    let added: Vec<_> = events
        .iter()
        .filter(|(t, _)| t == "workorder.parts-added")
        .collect();
    assert_eq!(added.len(), 2);
    // Each event carries only its new line.
    assert_eq!(added[0].1["lines"].as_array().unwrap().len(), 1);
    assert_eq!(added[0].1["lines"][0]["lineId"], line.id);
    assert_eq!(added[0].1["lines"][0]["partId"], PART);
    assert_eq!(added[0].1["lines"][0]["quantity"], 4);
    assert_eq!(added[1].1["lines"].as_array().unwrap().len(), 1);
    assert_eq!(added[1].1["lines"][0]["partId"], PART_2);

    let removed = g
        .client
        .remove_part_line(pb::RemovePartLineRequest {
            work_order_id: order.id.clone(),
            line_id: line.id.clone(),
            expected_version: version(&with_two),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(removed.part_lines.len(), 1);
    assert_eq!(removed.part_lines[0].part_id, PART_2);
    assert_eq!(version(&removed), version(&with_two) + 1);
    g.stop().await;
}

#[sqlx::test(migrator = "carerp_workorder::MIGRATOR")]
async fn removing_a_reserved_or_pending_part_line_announces_it_for_release(pool: PgPool) {
    let mut g = Garage::start(pool).await;
    let order = g.order().await;
    let remove = |line_id: &str| pb::RemovePartLineRequest {
        work_order_id: order.id.clone(),
        line_id: line_id.into(),
        expected_version: 0,
    };
    let removed_events = |events: Vec<(String, serde_json::Value)>| -> Vec<serde_json::Value> {
        events
            .into_iter()
            .filter(|(topic, _)| topic == "workorder.parts-removed")
            .map(|(_, data)| data)
            .collect()
    };

    // RESERVED: announced with the line's part and quantity.
    let reserved = g.add_part(&order.id, PART, 3).await;
    reserve(&g.pool, &reserved, 1250).await;
    let reserved_line = reserved.part_lines[0].id.clone();
    g.client
        .remove_part_line(remove(&reserved_line))
        .await
        .unwrap();
    let announced = removed_events(g.events(&order.id).await);
    assert_eq!(announced.len(), 1);
    assert_eq!(announced[0]["workOrderId"], order.id);
    assert_eq!(announced[0]["lines"].as_array().unwrap().len(), 1);
    assert_eq!(announced[0]["lines"][0]["lineId"], reserved_line);
    assert_eq!(announced[0]["lines"][0]["partId"], PART);
    assert_eq!(announced[0]["lines"][0]["quantity"], 3);

    // PENDING: inventory may still reserve it, so it is announced too.
    let pending = g.add_part(&order.id, PART_2, 1).await;
    let pending_line = pending.part_lines[0].id.clone();
    g.client
        .remove_part_line(remove(&pending_line))
        .await
        .unwrap();
    let announced = removed_events(g.events(&order.id).await);
    assert_eq!(announced.len(), 2);
    assert_eq!(announced[1]["lines"][0]["lineId"], pending_line);

    // FAILED: nothing is held for it, nothing to announce.
    let failing = g.add_part(&order.id, PART, 2).await;
    fail_reservation(&g.pool, &failing, "out of stock").await;
    let failed = g.get(&order.id).await;
    assert_eq!(
        failed.part_lines[0].reservation_state,
        pb::ReservationState::Failed as i32
    );
    g.client
        .remove_part_line(remove(&failed.part_lines[0].id))
        .await
        .unwrap();
    assert_eq!(removed_events(g.events(&order.id).await).len(), 2);
    assert_eq!(g.count("part_lines").await, 0);

    // A refused removal announces nothing.
    let err = g
        .client
        .remove_part_line(remove(&reserved_line))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(removed_events(g.events(&order.id).await).len(), 2);
    g.stop().await;
}

#[sqlx::test(migrator = "carerp_workorder::MIGRATOR")]
async fn part_line_bad_input_unknown_ids_and_stale_versions_are_refused(pool: PgPool) {
    let mut g = Garage::start(pool).await;
    let order = g.order().await;
    let other = g.order().await;
    let other_line = g.add_part(&other.id, PART, 1).await.part_lines[0]
        .id
        .clone();
    let add = |quantity: i32| pb::AddPartLineRequest {
        work_order_id: order.id.clone(),
        part_id: PART.into(),
        quantity,
        expected_version: 0,
        idempotency_key: String::new(),
        job_id: String::new(),
    };
    for quantity in [0, -3, 10_001] {
        let err = g.client.add_part_line(add(quantity)).await.unwrap_err();
        assert_eq!(fields(&err), vec!["quantity"], "{quantity}");
    }
    let err = g
        .client
        .add_part_line(pb::AddPartLineRequest {
            work_order_id: String::new(),
            part_id: "p".into(),
            expected_version: -2,
            ..add(1)
        })
        .await
        .unwrap_err();
    assert_eq!(
        fields(&err),
        vec!["work_order_id", "part_id", "expected_version"]
    );
    let err = g
        .client
        .add_part_line(pb::AddPartLineRequest {
            work_order_id: UNKNOWN.into(),
            ..add(1)
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = g
        .client
        .add_part_line(pb::AddPartLineRequest {
            expected_version: 7,
            ..add(1)
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Aborted);
    assert!(
        err.message()
            .contains("expected version 7, current version 1"),
        "{}",
        err.message()
    );

    let remove = |line_id: &str| pb::RemovePartLineRequest {
        work_order_id: order.id.clone(),
        line_id: line_id.into(),
        expected_version: 0,
    };
    let err = g
        .client
        .remove_part_line(remove(UNKNOWN))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    // A line of another work order is not this order's line.
    let err = g
        .client
        .remove_part_line(remove(&other_line))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(err.message().starts_with("part line"), "{}", err.message());
    let err = g.client.remove_part_line(remove("")).await.unwrap_err();
    assert_eq!(fields(&err), vec!["line_id"]);
    assert_eq!(g.count("part_lines").await, 1);
    assert_eq!(version(&g.get(&order.id).await), 1);
    g.stop().await;
}

#[sqlx::test(migrator = "carerp_workorder::MIGRATOR")]
async fn retried_line_additions_with_the_same_idempotency_key_add_one_line(pool: PgPool) {
    let mut g = Garage::start(pool).await;
    let order = g.order().await;
    let part = |key: &str| pb::AddPartLineRequest {
        work_order_id: order.id.clone(),
        part_id: PART.into(),
        quantity: 2,
        expected_version: version(&order),
        idempotency_key: key.into(),
        job_id: String::new(),
    };
    let first = g
        .client
        .add_part_line(part("add-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.part_lines.len(), 1);
    // The retry carries the version the first call was based on: it still succeeds.
    let again = g
        .client
        .add_part_line(part("add-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, first);
    assert_eq!(g.count("part_lines").await, 1);
    let parts_added = |events: &[(String, serde_json::Value)]| {
        events
            .iter()
            .filter(|(topic, _)| topic == "workorder.parts-added")
            .count()
    };
    assert_eq!(parts_added(&g.events(&order.id).await), 1);
    // A different key is a different line.
    let second = g
        .client
        .add_part_line(pb::AddPartLineRequest {
            expected_version: version(&first),
            ..part("add-2")
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.part_lines.len(), 2);
    assert_eq!(version(&second), version(&first) + 1);
    assert_eq!(parts_added(&g.events(&order.id).await), 2);
    // A key names one request: on another work order it is refused, naming the key, and
    // nothing is added there.
    let other = g.order().await;
    let elsewhere = g
        .client
        .add_part_line(pb::AddPartLineRequest {
            work_order_id: other.id.clone(),
            expected_version: 0,
            ..part("add-1")
        })
        .await
        .unwrap_err();
    assert_eq!(elsewhere.code(), Code::InvalidArgument, "{elsewhere:?}");
    assert_eq!(fields(&elsewhere), vec!["idempotency_key"]);
    assert!(
        elsewhere.message().contains("\"add-1\" was already used"),
        "{elsewhere:?}"
    );
    assert!(g.get(&other.id).await.part_lines.is_empty());

    let labor = |key: &str| pb::AddLaborLineRequest {
        work_order_id: order.id.clone(),
        description: "Replace brake pads".into(),
        technician: "Ana".into(),
        minutes: 30,
        hourly_rate: None,
        expected_version: 0,
        idempotency_key: key.into(),
        job_id: String::new(),
    };
    let with_labor = g
        .client
        .add_labor_line(labor("labor-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(with_labor.labor_lines.len(), 1);
    // A part line's key for a labour line is a different request.
    let err = g.client.add_labor_line(labor("add-1")).await.unwrap_err();
    assert_eq!(fields(&err), vec!["idempotency_key"]);
    let repeated = g
        .client
        .add_labor_line(labor("labor-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(repeated, with_labor);
    assert_eq!(g.count("labor_lines").await, 1);
    let more = g
        .client
        .add_labor_line(labor("labor-3"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(more.labor_lines.len(), 2);
    assert_eq!(g.count("labor_lines").await, 2);
    // Once the order is cancelled, a retry of an earlier add still answers with the order.
    let cancelled = g.status(&order.id, S::Cancelled).await;
    let late = g
        .client
        .add_labor_line(labor("labor-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(late, cancelled);
    let outbox_before = g.count("outbox").await;
    let late = g
        .client
        .add_part_line(part("add-2"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(late, cancelled);
    assert_eq!(g.count("outbox").await, outbox_before);
    // A new key on the cancelled order is refused as before.
    let err = g
        .client
        .add_part_line(pb::AddPartLineRequest {
            expected_version: 0,
            ..part("add-9")
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let err = g
        .client
        .add_part_line(pb::AddPartLineRequest {
            expected_version: 0,
            ..part(&"k".repeat(201))
        })
        .await
        .unwrap_err();
    assert_eq!(fields(&err), vec!["idempotency_key"]);
    g.stop().await;
}

#[sqlx::test(migrator = "carerp_workorder::MIGRATOR")]
async fn labour_lines_default_to_the_tenant_rate_and_refuse_bad_input(pool: PgPool) {
    let mut g = Garage::start(pool).await;
    let order = g.order().await;
    let with_default = g.add_labor(&order.id, 90, None).await;
    let line = &with_default.labor_lines[0];
    assert_eq!(line.hourly_rate.as_ref().unwrap().amount_minor, LABOR_RATE);
    assert_eq!(line.hourly_rate.as_ref().unwrap().currency, "EUR");
    assert_eq!(line.line_total.as_ref().unwrap().amount_minor, 13500);
    assert_eq!(line.minutes, 90);
    assert_eq!(line.technician, "Ana");
    let with_rate = g.add_labor(&order.id, 30, Some(6000)).await;
    assert_eq!(
        with_rate.labor_lines[1]
            .hourly_rate
            .as_ref()
            .unwrap()
            .amount_minor,
        6000
    );
    assert_eq!(totals(&with_rate), (0, 16500, 16500));

    let add = |minutes: i32| pb::AddLaborLineRequest {
        work_order_id: order.id.clone(),
        description: "Diagnosis".into(),
        technician: String::new(),
        minutes,
        hourly_rate: None,
        expected_version: 0,
        idempotency_key: String::new(),
        job_id: String::new(),
    };
    for minutes in [0, -15, 31 * 24 * 60 + 1] {
        let err = g.client.add_labor_line(add(minutes)).await.unwrap_err();
        assert_eq!(fields(&err), vec!["minutes"], "{minutes}");
    }
    let err = g
        .client
        .add_labor_line(pb::AddLaborLineRequest {
            work_order_id: "nope".into(),
            description: " ".into(),
            hourly_rate: Some(Money {
                amount_minor: -1,
                currency: "USD".into(),
            }),
            ..add(10)
        })
        .await
        .unwrap_err();
    assert_eq!(
        fields(&err),
        vec![
            "work_order_id",
            "description",
            "hourly_rate.amount_minor",
            "hourly_rate.currency"
        ]
    );
    let err = g
        .client
        .add_labor_line(pb::AddLaborLineRequest {
            work_order_id: UNKNOWN.into(),
            ..add(10)
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let remove = |line_id: &str| pb::RemoveLaborLineRequest {
        work_order_id: order.id.clone(),
        line_id: line_id.into(),
        expected_version: 0,
    };
    let err = g
        .client
        .remove_labor_line(remove(UNKNOWN))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(
        err.message().starts_with("labour line"),
        "{}",
        err.message()
    );
    let err = g.client.remove_labor_line(remove("bad")).await.unwrap_err();
    assert_eq!(fields(&err), vec!["line_id"]);
    let removed = g
        .client
        .remove_labor_line(remove(&line.id))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(removed.labor_lines.len(), 1);
    assert_eq!(totals(&removed), (0, 3000, 3000));
    g.stop().await;
}

#[sqlx::test(migrator = "carerp_workorder::MIGRATOR")]
async fn totals_follow_every_line_change_including_removal(pool: PgPool) {
    let mut g = Garage::start(pool).await;
    let order = g.order().await;
    let o = g.add_part(&order.id, PART, 2).await;
    assert_eq!(
        totals(&o),
        (0, 0, 0),
        "unpriced lines count once inventory prices them"
    );
    reserve(&g.pool, &o, 1999).await;
    let o = g.get(&order.id).await;
    assert_eq!(totals(&o), (3998, 0, 3998));
    assert_eq!(
        o.part_lines[0].line_total.as_ref().unwrap().amount_minor,
        3998
    );
    assert_eq!(
        o.part_lines[0].unit_price.as_ref().unwrap().amount_minor,
        1999
    );
    let o = g.add_labor(&order.id, 45, None).await;
    assert_eq!(totals(&o), (3998, 6750, 10748));
    let o = g.add_labor(&order.id, 1, Some(99)).await;
    assert_eq!(
        totals(&o),
        (3998, 6752, 10750),
        "1 minute at 0.99/h rounds half-up to 2"
    );
    let o = g.add_part(&order.id, PART_2, 1).await;
    let new_line: Vec<_> = o
        .part_lines
        .iter()
        .filter(|l| l.part_id == PART_2)
        .cloned()
        .collect();
    reserve(
        &g.pool,
        &pb::WorkOrder {
            part_lines: new_line,
            ..o.clone()
        },
        1,
    )
    .await;
    let o = g.get(&order.id).await;
    assert_eq!(totals(&o), (3999, 6752, 10751));
    let o = g
        .client
        .remove_part_line(pb::RemovePartLineRequest {
            work_order_id: order.id.clone(),
            line_id: o.part_lines[0].id.clone(),
            expected_version: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(totals(&o), (1, 6752, 6753));
    let o = g
        .client
        .remove_labor_line(pb::RemoveLaborLineRequest {
            work_order_id: order.id.clone(),
            line_id: o.labor_lines[0].id.clone(),
            expected_version: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(totals(&o), (1, 2, 3));
    let o = g
        .client
        .remove_labor_line(pb::RemoveLaborLineRequest {
            work_order_id: order.id.clone(),
            line_id: o.labor_lines[0].id.clone(),
            expected_version: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let o = g
        .client
        .remove_part_line(pb::RemovePartLineRequest {
            work_order_id: order.id.clone(),
            line_id: o.part_lines[0].id.clone(),
            expected_version: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(totals(&o), (0, 0, 0));
    g.stop().await;
}

#[sqlx::test(migrator = "carerp_workorder::MIGRATOR")]
async fn lines_cannot_change_on_a_completed_or_cancelled_order(pool: PgPool) {
    let mut g = Garage::start(pool).await;
    let completed = g.order().await;
    g.status(&completed.id, S::InProgress).await;
    let with_lines = g.add_labor(&completed.id, 30, None).await;
    let with_lines = {
        let o = g.add_part(&with_lines.id, PART, 1).await;
        reserve(&g.pool, &o, 100).await;
        o
    };
    g.status(&completed.id, S::Completed).await;
    let cancelled = g.order().await;
    g.status(&cancelled.id, S::Cancelled).await;

    for (order, status) in [(&with_lines, "COMPLETED"), (&cancelled, "CANCELLED")] {
        let before = g.get(&order.id).await;
        let expected = format!(
            "lines of work order {} cannot change: it is {status}",
            order.id
        );
        let errors = vec![
            g.client
                .add_part_line(pb::AddPartLineRequest {
                    work_order_id: order.id.clone(),
                    part_id: PART.into(),
                    quantity: 1,
                    expected_version: 0,
                    idempotency_key: String::new(),
                    job_id: String::new(),
                })
                .await
                .unwrap_err(),
            g.client
                .add_labor_line(pb::AddLaborLineRequest {
                    work_order_id: order.id.clone(),
                    description: "More".into(),
                    minutes: 10,
                    ..Default::default()
                })
                .await
                .unwrap_err(),
            g.client
                .remove_part_line(pb::RemovePartLineRequest {
                    work_order_id: order.id.clone(),
                    line_id: order
                        .part_lines
                        .first()
                        .map(|l| l.id.clone())
                        .unwrap_or(UNKNOWN.into()),
                    expected_version: 0,
                })
                .await
                .unwrap_err(),
            g.client
                .remove_labor_line(pb::RemoveLaborLineRequest {
                    work_order_id: order.id.clone(),
                    line_id: order
                        .labor_lines
                        .first()
                        .map(|l| l.id.clone())
                        .unwrap_or(UNKNOWN.into()),
                    expected_version: 0,
                })
                .await
                .unwrap_err(),
            g.client
                .retry_reservation(pb::RetryReservationRequest {
                    id: order.id.clone(),
                    expected_version: 0,
                    idempotency_key: String::new(),
                })
                .await
                .unwrap_err(),
        ];
        for err in errors {
            assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
            assert!(err.message().starts_with(&expected), "{}", err.message());
        }
        assert_eq!(g.get(&order.id).await, before);
    }
    g.stop().await;
}

#[sqlx::test(migrator = "carerp_workorder::MIGRATOR")]
async fn notes_are_updated_in_any_status_with_a_version_check(pool: PgPool) {
    let mut g = Garage::start(pool).await;
    let order = g.order().await;
    let updated = g
        .client
        .update_notes(pb::UpdateNotesRequest {
            id: order.id.clone(),
            notes: "  Customer wants the old pads back ".into(),
            expected_version: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.notes, "Customer wants the old pads back");
    assert_eq!(version(&updated), 2);
    let err = g
        .client
        .update_notes(pb::UpdateNotesRequest {
            id: order.id.clone(),
            notes: "lost update".into(),
            expected_version: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Aborted);
    assert!(
        err.message()
            .contains("expected version 1, current version 2"),
        "{}",
        err.message()
    );
    let err = g
        .client
        .update_notes(pb::UpdateNotesRequest {
            id: order.id.clone(),
            notes: "x".repeat(4001),
            expected_version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(fields(&err), vec!["notes"]);
    let err = g
        .client
        .update_notes(pb::UpdateNotesRequest {
            id: UNKNOWN.into(),
            notes: "x".into(),
            expected_version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    g.status(&order.id, S::Cancelled).await;
    let after = g
        .client
        .update_notes(pb::UpdateNotesRequest {
            id: order.id.clone(),
            notes: "Cancelled by phone".into(),
            expected_version: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after.notes, "Cancelled by phone");
    assert_eq!(g.get(&order.id).await.notes, "Cancelled by phone");
    g.stop().await;
}

#[sqlx::test(migrator = "carerp_workorder::MIGRATOR")]
async fn retry_reservation_announces_the_failed_lines_again(pool: PgPool) {
    let mut g = Garage::start(pool).await;
    let order = g.order().await;
    g.status(&order.id, S::InProgress).await;
    let o = g.add_part(&order.id, PART, 2).await;
    reserve(&g.pool, &o, 700).await;
    let err = g
        .client
        .retry_reservation(pb::RetryReservationRequest {
            id: order.id.clone(),
            expected_version: 0,
            idempotency_key: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(
        err.message(),
        format!("work order {} has no FAILED part lines to retry", order.id)
    );

    let o = g.add_part(&order.id, PART_2, 5).await;
    let failing: Vec<_> = o
        .part_lines
        .iter()
        .filter(|l| l.part_id == PART_2)
        .cloned()
        .collect();
    fail_reservation(
        &g.pool,
        &pb::WorkOrder {
            part_lines: failing.clone(),
            ..o.clone()
        },
        "only 3 on hand",
    )
    .await;
    let waiting = g.get(&order.id).await;
    assert_eq!(waiting.status, S::AwaitingParts as i32);
    let failed = waiting
        .part_lines
        .iter()
        .find(|l| l.part_id == PART_2)
        .unwrap();
    assert_eq!(
        failed.reservation_state,
        pb::ReservationState::Failed as i32
    );
    assert_eq!(failed.failure_reason, "only 3 on hand");

    let retry = pb::RetryReservationRequest {
        id: order.id.clone(),
        expected_version: version(&waiting),
        idempotency_key: "retry-after-delivery-88".into(),
    };
    let retried = g
        .client
        .retry_reservation(retry.clone())
        .await
        .unwrap()
        .into_inner();
    // The same call again (its answer lost): the order as it is, nothing announced again.
    let announced = g.events(&order.id).await.len();
    let again = g
        .client
        .retry_reservation(retry)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, retried);
    assert_eq!(g.events(&order.id).await.len(), announced);
    let line = retried
        .part_lines
        .iter()
        .find(|l| l.part_id == PART_2)
        .unwrap();
    assert_eq!(line.reservation_state, pb::ReservationState::Pending as i32);
    assert_eq!(line.failure_reason, "");
    let still = retried
        .part_lines
        .iter()
        .find(|l| l.part_id == PART)
        .unwrap();
    assert_eq!(
        still.reservation_state,
        pb::ReservationState::Reserved as i32
    );
    let events = g.events(&order.id).await;
    let (topic, data) = events.last().unwrap();
    assert_eq!(topic, "workorder.parts-added");
    assert_eq!(data["lines"].as_array().unwrap().len(), 1);
    assert_eq!(data["lines"][0]["lineId"], failing[0].id);
    assert_eq!(data["lines"][0]["quantity"], 5);

    let err = g
        .client
        .retry_reservation(pb::RetryReservationRequest {
            id: UNKNOWN.into(),
            expected_version: 0,
            idempotency_key: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = g
        .client
        .retry_reservation(pb::RetryReservationRequest {
            id: order.id.clone(),
            expected_version: 1,
            idempotency_key: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Aborted);
    let err = g
        .client
        .retry_reservation(pb::RetryReservationRequest {
            id: String::new(),
            expected_version: 0,
            idempotency_key: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(fields(&err), vec!["id"]);
    let err = g
        .client
        .retry_reservation(pb::RetryReservationRequest {
            id: order.id.clone(),
            expected_version: 0,
            idempotency_key: "k".repeat(201),
        })
        .await
        .unwrap_err();
    assert_eq!(fields(&err), vec!["idempotency_key"]);
    g.stop().await;
}

/// Of two status changes based on the same version, exactly one wins; the other is Aborted
/// and left no trace. Repeated on several orders so a lucky interleaving cannot hide a race.
#[sqlx::test(migrator = "carerp_workorder::MIGRATOR")]
async fn two_concurrent_status_changes_exactly_one_succeeds(pool: PgPool) {
    let mut g = Garage::start(pool).await;
    for _ in 0..8 {
        let order = g.order().await;
        let request = |status: S| pb::ChangeStatusRequest {
            id: order.id.clone(),
            status: status as i32,
            reason: "customer declined".into(),
            expected_version: version(&order),
        };
        let mut a = g.client.clone();
        let mut b = g.client.clone();
        let (first, second) = tokio::join!(
            a.change_status(request(S::InProgress)),
            b.change_status(request(S::Cancelled))
        );
        let results = [first, second];
        let wins: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        let losses: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
        assert_eq!(wins.len(), 1, "{results:?}");
        assert_eq!(losses[0].code(), Code::Aborted, "{:?}", losses[0]);
        let winner = wins[0].get_ref();
        let stored = g.get(&order.id).await;
        assert_eq!(&stored, winner);
        assert_eq!(version(&stored), version(&order) + 1);
        let cancelled_events = g
            .events(&order.id)
            .await
            .into_iter()
            .filter(|(t, _)| t == "workorder.cancelled")
            .count();
        let expected_events = usize::from(stored.status == S::Cancelled as i32);
        assert_eq!(cancelled_events, expected_events);
    }
    g.stop().await;
}

/// Without an expected version the second change is checked against the first's result.
#[sqlx::test(migrator = "carerp_workorder::MIGRATOR")]
async fn concurrent_completion_and_cancellation_cannot_both_happen(pool: PgPool) {
    let mut g = Garage::start(pool).await;
    for _ in 0..5 {
        let order = g.order().await;
        g.status(&order.id, S::InProgress).await;
        let request = |status: S| pb::ChangeStatusRequest {
            id: order.id.clone(),
            status: status as i32,
            reason: "customer declined".into(),
            expected_version: 0,
        };
        let mut a = g.client.clone();
        let mut b = g.client.clone();
        let (first, second) = tokio::join!(
            a.change_status(request(S::Completed)),
            b.change_status(request(S::Cancelled))
        );
        let results = [first, second];
        assert_eq!(
            results.iter().filter(|r| r.is_ok()).count(),
            1,
            "{results:?}"
        );
        let loss = results.iter().find_map(|r| r.as_ref().err()).unwrap();
        assert_eq!(loss.code(), Code::FailedPrecondition, "{loss:?}");
        let topics: Vec<String> = g
            .events(&order.id)
            .await
            .into_iter()
            .map(|(t, _)| t)
            .collect();
        let finals = topics
            .iter()
            .filter(|t| *t == "workorder.completed" || *t == "workorder.cancelled")
            .count();
        assert_eq!(finals, 1, "{topics:?}");
    }
    g.stop().await;
}

#[sqlx::test(migrator = "carerp_workorder::MIGRATOR")]
async fn concurrent_line_additions_on_one_version_add_exactly_one_line(pool: PgPool) {
    let mut g = Garage::start(pool).await;
    let order = g.order().await;
    let request = |part: &str| pb::AddPartLineRequest {
        work_order_id: order.id.clone(),
        part_id: part.into(),
        quantity: 1,
        expected_version: 1,
        idempotency_key: String::new(),
        job_id: String::new(),
    };
    let mut a = g.client.clone();
    let mut b = g.client.clone();
    let (first, second) = tokio::join!(
        a.add_part_line(request(PART)),
        b.add_part_line(request(PART_2))
    );
    assert_eq!(u8::from(first.is_ok()) + u8::from(second.is_ok()), 1);
    let loss = first.as_ref().err().or(second.as_ref().err()).unwrap();
    assert_eq!(loss.code(), Code::Aborted);
    let stored = g.get(&order.id).await;
    assert_eq!(stored.part_lines.len(), 1);
    assert_eq!(g.count("part_lines").await, 1);
    let added = g
        .events(&order.id)
        .await
        .into_iter()
        .filter(|(t, _)| t == "workorder.parts-added")
        .count();
    assert_eq!(added, 1);
    g.stop().await;
}

/// Technicians move work along and book their time, at the tenant's rate: cancelling,
/// reopening and pricing labour are the front desk's, refused by name; who changed the
/// status is the token's user.
#[sqlx::test(migrator = "carerp_workorder::MIGRATOR")]
async fn technicians_start_and_complete_but_neither_cancel_nor_price(pool: PgPool) {
    let mut garage = Garage::start(pool).await;
    let order = garage.order().await;
    let technician_id = uuid::Uuid::now_v7();
    let mut technician = pb::work_order_service_client::WorkOrderServiceClient::new(
        carerp_kit::auth::testing::connect_with(
            format!("http://{}", garage.workorder.grpc_addr),
            &carerp_kit::auth::testing::token_for(
                &garage.tenant,
                technician_id,
                carerp_kit::auth::Role::Technician,
            ),
        )
        .await,
    );
    let change = |status: S| pb::ChangeStatusRequest {
        id: order.id.clone(),
        status: status as i32,
        reason: "customer declined".into(),
        expected_version: 0,
    };
    let err = technician
        .change_status(change(S::Cancelled))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(
        err.message().contains("workorder.ChangeStatus:any-status"),
        "{err:?}"
    );
    let started = technician
        .change_status(change(S::InProgress))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(started.status_changed_by, technician_id.to_string());

    let labor = |rate: Option<i64>| pb::AddLaborLineRequest {
        work_order_id: order.id.clone(),
        description: "Replace brake pads".into(),
        technician: "Ana".into(),
        minutes: 60,
        hourly_rate: rate.map(|amount_minor| Money {
            amount_minor,
            currency: "EUR".into(),
        }),
        expected_version: 0,
        idempotency_key: String::new(),
        job_id: String::new(),
    };
    let err = technician.add_labor_line(labor(Some(1))).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(
        err.message().contains("workorder.AddLaborLine:hourly-rate"),
        "{err:?}"
    );
    let booked = technician
        .add_labor_line(labor(None))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(booked.labor_lines.len(), 1);
    assert_eq!(
        booked.labor_lines[0]
            .hourly_rate
            .as_ref()
            .unwrap()
            .amount_minor,
        LABOR_RATE
    );

    let err = technician
        .create_work_order(new_order(&order.customer_id, &order.vehicle_id))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    // The front desk may cancel.
    let cancelled = garage.status(&order.id, S::Cancelled).await;
    assert_eq!(cancelled.status, S::Cancelled as i32);
    assert_ne!(cancelled.status_changed_by, technician_id.to_string());
    garage.stop().await;
}
