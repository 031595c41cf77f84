//! Every RPC and every bad input through gRPC, against the real service started in-process
//! on an ephemeral port, on a real database.

mod common;

use carerp_kit::auth::Role;
use carerp_kit::auth::testing::{self, AuthedChannel};
use carerp_kit::events::topic;
use carerp_kit::status::field_violations;
use carerp_kit::{RunningService, ServiceConfig};
use carerp_proto::common::v1::{Money, PageRequest};
use carerp_proto::inventory::v1 as pb;
use carerp_proto::inventory::v1::inventory_service_client::InventoryServiceClient;
use sqlx::PgPool;
use tonic::Code;
use tonic::transport::Channel;
use uuid::Uuid;

type Client = InventoryServiceClient<AuthedChannel>;

struct Service {
    running: RunningService,
    user: Uuid,
    client: Client,
    pool: PgPool,
}

impl Service {
    async fn start(pool: PgPool) -> Self {
        let config =
            ServiceConfig::for_tests("inventory", &carerp_kit::config::test_tenant(), None);
        let tenant = config.tenant.clone();
        let running = carerp_inventory::start_with_pool(config, pool.clone())
            .await
            .unwrap();
        // The client acts as one user, so the ledger can be checked for who did what.
        let user = Uuid::now_v7();
        let client = InventoryServiceClient::new(
            testing::connect_with(
                format!("http://{}", running.grpc_addr),
                &testing::token_for(&tenant, user, Role::Owner),
            )
            .await,
        );
        Self {
            running,
            user,
            client,
            pool,
        }
    }

    async fn stop(self) {
        drop(self.client);
        self.running.stop().await.unwrap();
    }
}

fn eur(amount_minor: i64) -> Option<Money> {
    Some(Money {
        amount_minor,
        currency: "EUR".into(),
    })
}

fn new_part(sku: &str) -> pb::CreatePartRequest {
    pb::CreatePartRequest {
        sku: sku.into(),
        name: format!("Part {sku}"),
        description: "fits most things".into(),
        category: "Filters".into(),
        unit_cost: eur(400),
        unit_price: eur(990),
        location: "A-03-2".into(),
        reorder_point: 3,
        reorder_quantity: 12,
        initial_quantity: 10,
        idempotency_key: String::new(),
    }
}

async fn create(client: &mut Client, request: pb::CreatePartRequest) -> pb::Part {
    client.create_part(request).await.unwrap().into_inner()
}

fn fields_of(status: &tonic::Status) -> Vec<String> {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    field_violations(status)
        .into_iter()
        .map(|v| v.field)
        .collect()
}

fn adjust(
    part_id: &str,
    kind: pb::AdjustmentKind,
    delta: i32,
    reason: &str,
) -> pb::AdjustStockRequest {
    pb::AdjustStockRequest {
        part_id: part_id.into(),
        kind: kind as i32,
        delta,
        reason: reason.into(),
        idempotency_key: String::new(),
    }
}

#[sqlx::test(migrator = "carerp_inventory::MIGRATOR")]
async fn create_and_get_a_part(pool: PgPool) {
    let mut svc = Service::start(pool).await;
    let mut request = new_part(" of-0451 ");
    request.unit_price = Some(Money {
        amount_minor: 990,
        currency: String::new(),
    });
    let part = create(&mut svc.client, request).await;
    assert_eq!(part.sku, "OF-0451");
    assert_eq!(
        part.name, "Part  of-0451",
        "names are trimmed at the ends only"
    );
    assert_eq!(part.category, "Filters");
    assert_eq!(part.location, "A-03-2");
    assert_eq!(part.unit_cost, eur(400));
    assert_eq!(
        part.unit_price,
        eur(990),
        "the tenant's currency fills an empty one"
    );
    assert_eq!((part.reorder_point, part.reorder_quantity), (3, 12));
    assert!(part.active);
    assert_eq!(
        (
            part.quantity_on_hand,
            part.quantity_reserved,
            part.quantity_available
        ),
        (10, 0, 10)
    );
    let audit = part.audit.unwrap();
    assert_eq!(audit.version, 1);
    assert!(audit.created_at.is_some());

    let got = svc
        .client
        .get_part(pb::GetPartRequest {
            id: part.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, part);

    // The opening stock is a receipt in the ledger and an event.
    let movements = svc
        .client
        .list_movements(pb::ListMovementsRequest {
            part_id: part.id.clone(),
            page: None,
        })
        .await
        .unwrap()
        .into_inner()
        .movements;
    assert_eq!(movements.len(), 1);
    assert_eq!(movements[0].kind, pb::MovementKind::Receipt as i32);
    assert_eq!(
        (movements[0].on_hand_delta, movements[0].reserved_delta),
        (10, 0)
    );
    assert_eq!(movements[0].reason, "opening stock");
    let id = Uuid::parse_str(&part.id).unwrap();
    let adjusted = common::events(&svc.pool, id, topic::INVENTORY_STOCK_ADJUSTED).await;
    assert_eq!(adjusted.len(), 1);
    assert_eq!(adjusted[0]["quantityOnHand"], 10);
    assert_eq!(adjusted[0]["kind"], "receipt");
    svc.stop().await;
}

#[sqlx::test(migrator = "carerp_inventory::MIGRATOR")]
async fn create_is_idempotent_by_key(pool: PgPool) {
    let mut svc = Service::start(pool).await;
    let mut request = new_part("OF-1");
    request.idempotency_key = "create-of-1".into();
    let first = create(&mut svc.client, request.clone()).await;
    let again = create(&mut svc.client, request).await;
    assert_eq!(first, again);
    let id = Uuid::parse_str(&first.id).unwrap();
    assert_eq!(common::movement_count(&svc.pool, id, "receipt").await, 1);
    assert_eq!(common::get(&svc.pool, id).await.quantity_on_hand, 10);
    svc.stop().await;
}

#[sqlx::test(migrator = "carerp_inventory::MIGRATOR")]
async fn a_duplicate_sku_already_exists(pool: PgPool) {
    let mut svc = Service::start(pool).await;
    create(&mut svc.client, new_part("OF-1")).await;
    let err = svc.client.create_part(new_part(" of-1")).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    assert_eq!(err.message(), "a part with SKU OF-1 already exists");
    svc.stop().await;
}

#[sqlx::test(migrator = "carerp_inventory::MIGRATOR")]
async fn bad_new_parts_are_refused_field_by_field(pool: PgPool) {
    let mut svc = Service::start(pool).await;
    let request = pb::CreatePartRequest {
        sku: "has space".into(),
        name: " ".into(),
        unit_cost: eur(-1),
        unit_price: Some(Money {
            amount_minor: -990,
            currency: "USD".into(),
        }),
        reorder_point: -1,
        reorder_quantity: -1,
        initial_quantity: -5,
        ..new_part("x")
    };
    let err = svc.client.create_part(request).await.unwrap_err();
    assert_eq!(
        fields_of(&err),
        [
            "sku",
            "name",
            "unit_cost.amount_minor",
            "unit_price.currency",
            "unit_price.amount_minor",
            "reorder_point",
            "reorder_quantity",
            "initial_quantity"
        ]
    );
    assert!(
        err.message()
            .contains("unit_price.amount_minor: must be 0 to 1000000000000, is -990"),
        "{}",
        err.message()
    );
    // A price the work order service could not take is refused here, not in the saga.
    let err = svc
        .client
        .create_part(pb::CreatePartRequest {
            unit_price: eur(carerp_kit::events::MAX_UNIT_PRICE_MINOR + 1),
            ..new_part("x")
        })
        .await
        .unwrap_err();
    assert_eq!(fields_of(&err), ["unit_price.amount_minor"]);
    let err = svc
        .client
        .create_part(pb::CreatePartRequest {
            sku: String::new(),
            ..new_part("x")
        })
        .await
        .unwrap_err();
    assert_eq!(fields_of(&err), ["sku"]);
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM parts")
        .fetch_one(&svc.pool)
        .await
        .unwrap();
    assert_eq!(count, 0);
    svc.stop().await;
}

#[sqlx::test(migrator = "carerp_inventory::MIGRATOR")]
async fn get_refuses_unknown_and_malformed_ids(pool: PgPool) {
    let mut svc = Service::start(pool).await;
    let unknown = Uuid::now_v7().to_string();
    let err = svc
        .client
        .get_part(pb::GetPartRequest {
            id: unknown.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(err.message(), format!("part {unknown} not found"));
    let err = svc
        .client
        .get_part(pb::GetPartRequest { id: "nope".into() })
        .await
        .unwrap_err();
    assert_eq!(fields_of(&err), ["id"]);
    let err = svc
        .client
        .get_part(pb::GetPartRequest { id: String::new() })
        .await
        .unwrap_err();
    assert_eq!(fields_of(&err), ["id"]);
    svc.stop().await;
}

#[sqlx::test(migrator = "carerp_inventory::MIGRATOR")]
async fn list_searches_filters_and_pages(pool: PgPool) {
    let mut svc = Service::start(pool).await;
    let mut ids = std::collections::HashMap::new();
    for (sku, name, category, stock) in [
        ("OF-1", "Oil filter small", "Filters", 10),
        ("OF-2", "Oil filter large", "filters", 2),
        ("AF-1", "Air filter", "Filters", 1),
        ("BP-1", "Brake pads", "Brakes", 20),
        ("BP_2", "Brake pads 100%", "Brakes", 20),
    ] {
        let part = create(
            &mut svc.client,
            pb::CreatePartRequest {
                name: name.into(),
                category: category.into(),
                initial_quantity: stock,
                ..new_part(sku)
            },
        )
        .await;
        ids.insert(sku, part.id);
    }
    svc.client
        .update_part(pb::UpdatePartRequest {
            id: ids["AF-1"].clone(),
            active: Some(false),
            ..Default::default()
        })
        .await
        .unwrap();

    let list = |request: pb::ListPartsRequest| {
        let mut client = svc.client.clone();
        async move {
            let response = client.list_parts(request).await.unwrap().into_inner();
            let skus: Vec<String> = response.parts.iter().map(|p| p.sku.clone()).collect();
            (skus, response.page.unwrap().next_page_token)
        }
    };
    let (all_active, _) = list(pb::ListPartsRequest::default()).await;
    assert_eq!(all_active, ["BP-1", "BP_2", "OF-1", "OF-2"]);
    let (found, _) = list(pb::ListPartsRequest {
        query: "oil FILTER".into(),
        ..Default::default()
    })
    .await;
    assert_eq!(found, ["OF-1", "OF-2"]);
    let (found, _) = list(pb::ListPartsRequest {
        query: "bp-".into(),
        ..Default::default()
    })
    .await;
    assert_eq!(found, ["BP-1"]);
    // `%` and `_` are searched for literally.
    let (found, _) = list(pb::ListPartsRequest {
        query: "100%".into(),
        ..Default::default()
    })
    .await;
    assert_eq!(found, ["BP_2"]);
    let (found, _) = list(pb::ListPartsRequest {
        query: "_".into(),
        ..Default::default()
    })
    .await;
    assert_eq!(found, ["BP_2"]);
    let (found, _) = list(pb::ListPartsRequest {
        category: "FILTERS".into(),
        ..Default::default()
    })
    .await;
    assert_eq!(found, ["OF-1", "OF-2"]);
    let (found, _) = list(pb::ListPartsRequest {
        low_stock_only: true,
        ..Default::default()
    })
    .await;
    assert_eq!(found, ["OF-2"]);
    let (found, _) = list(pb::ListPartsRequest {
        active: pb::ActiveFilter::Inactive as i32,
        ..Default::default()
    })
    .await;
    assert_eq!(found, ["AF-1"]);
    let (found, _) = list(pb::ListPartsRequest {
        active: pb::ActiveFilter::All as i32,
        category: "filters".into(),
        ..Default::default()
    })
    .await;
    assert_eq!(found, ["AF-1", "OF-1", "OF-2"]);

    // Pages of two, until the token runs out.
    let mut pages = vec![];
    let mut token = String::new();
    loop {
        let (skus, next) = list(pb::ListPartsRequest {
            page: Some(PageRequest {
                page_size: 2,
                page_token: token,
            }),
            active: pb::ActiveFilter::All as i32,
            ..Default::default()
        })
        .await;
        pages.push(skus);
        if next.is_empty() {
            break;
        }
        token = next;
    }
    assert_eq!(
        pages,
        [vec!["AF-1", "BP-1"], vec!["BP_2", "OF-1"], vec!["OF-2"]]
    );

    let err = svc
        .client
        .list_parts(pb::ListPartsRequest {
            page: Some(PageRequest {
                page_size: -1,
                page_token: "garbage".into(),
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(fields_of(&err), ["page.page_size", "page.page_token"]);
    let err = svc
        .client
        .list_parts(pb::ListPartsRequest {
            active: 9,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(fields_of(&err), ["active"]);
    svc.stop().await;
}

#[sqlx::test(migrator = "carerp_inventory::MIGRATOR")]
async fn update_changes_only_given_fields_with_optimistic_concurrency(pool: PgPool) {
    let mut svc = Service::start(pool).await;
    let part = create(&mut svc.client, new_part("OF-1")).await;
    let updated = svc
        .client
        .update_part(pb::UpdatePartRequest {
            id: part.id.clone(),
            name: Some("Oil filter, premium".into()),
            unit_price: eur(1490),
            unit_cost: eur(700),
            location: Some("B-01-1".into()),
            reorder_point: Some(4),
            reorder_quantity: Some(24),
            expected_version: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.name, "Oil filter, premium");
    assert_eq!(updated.unit_price, eur(1490));
    assert_eq!(updated.unit_cost, eur(700));
    assert_eq!(updated.location, "B-01-1");
    assert_eq!((updated.reorder_point, updated.reorder_quantity), (4, 24));
    assert_eq!(updated.description, part.description);
    assert_eq!(updated.category, part.category);
    assert_eq!(updated.sku, part.sku);
    assert_eq!(updated.quantity_on_hand, 10);
    assert_eq!(updated.audit.unwrap().version, 2);

    let stale = svc
        .client
        .update_part(pb::UpdatePartRequest {
            id: part.id.clone(),
            name: Some("Lost update".into()),
            expected_version: 1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);
    assert!(
        stale
            .message()
            .contains("has version 2, the request expected version 1"),
        "{}",
        stale.message()
    );

    let bad = svc
        .client
        .update_part(pb::UpdatePartRequest {
            id: part.id.clone(),
            name: Some(String::new()),
            unit_price: eur(-1),
            unit_cost: Some(Money {
                amount_minor: 5,
                currency: "GBP".into(),
            }),
            reorder_point: Some(-3),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        fields_of(&bad),
        [
            "name",
            "unit_cost.currency",
            "unit_price.amount_minor",
            "reorder_point"
        ]
    );
    let err = svc
        .client
        .update_part(pb::UpdatePartRequest {
            id: part.id.clone(),
            expected_version: -1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(fields_of(&err), ["expected_version"]);
    let err = svc
        .client
        .update_part(pb::UpdatePartRequest {
            id: Uuid::now_v7().to_string(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = svc
        .client
        .update_part(pb::UpdatePartRequest::default())
        .await
        .unwrap_err();
    assert_eq!(fields_of(&err), ["id"]);
    let unchanged = svc
        .client
        .get_part(pb::GetPartRequest { id: part.id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(unchanged.name, "Oil filter, premium");
    svc.stop().await;
}

#[sqlx::test(migrator = "carerp_inventory::MIGRATOR")]
async fn adjust_stock_receipts_and_corrections(pool: PgPool) {
    let mut svc = Service::start(pool).await;
    let part = create(&mut svc.client, new_part("OF-1")).await;
    let received = svc
        .client
        .adjust_stock(adjust(
            &part.id,
            pb::AdjustmentKind::Receipt,
            5,
            "delivery 4711",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(received.quantity_on_hand, 15);
    let corrected = svc
        .client
        .adjust_stock(adjust(
            &part.id,
            pb::AdjustmentKind::Adjustment,
            -3,
            "damaged in storage",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (corrected.quantity_on_hand, corrected.quantity_available),
        (12, 12)
    );

    let movements = svc
        .client
        .list_movements(pb::ListMovementsRequest {
            part_id: part.id.clone(),
            page: None,
        })
        .await
        .unwrap()
        .into_inner()
        .movements;
    // Who made each movement is the token's user, never a name sent in the request.
    let user = svc.user.to_string();
    let summary: Vec<(i32, i32, &str, &str)> = movements
        .iter()
        .map(|m| (m.kind, m.on_hand_delta, m.reason.as_str(), m.actor.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            (
                pb::MovementKind::Receipt as i32,
                10,
                "opening stock",
                &*user
            ),
            (pb::MovementKind::Receipt as i32, 5, "delivery 4711", &*user),
            (
                pb::MovementKind::Adjustment as i32,
                -3,
                "damaged in storage",
                &*user
            ),
        ]
    );
    let id = Uuid::parse_str(&part.id).unwrap();
    let adjusted = common::events(&svc.pool, id, topic::INVENTORY_STOCK_ADJUSTED).await;
    assert_eq!(adjusted.len(), 3);
    assert_eq!(adjusted[2]["delta"], -3);
    assert_eq!(adjusted[2]["reason"], "damaged in storage");
    assert_eq!(adjusted[2]["kind"], "adjustment");
    assert_eq!(adjusted[2]["quantityOnHand"], 12);
    // Receipts and adjustments are in the audit trail, under the token's user.
    let mut conn = svc.pool.acquire().await.unwrap();
    let audited: Vec<serde_json::Value> =
        carerp_kit::outbox::rows_for(&mut conn, &format!("part/{id}"))
            .await
            .unwrap()
            .into_iter()
            .filter(|row| row.topic == topic::AUDIT_RECORDED)
            .map(|row| row.data)
            .collect();
    drop(conn);
    assert_eq!(audited.len(), 2, "{audited:?}");
    assert_eq!(audited[1]["actor"], user);
    assert_eq!(audited[1]["action"], "stock.adjusted");
    assert_eq!(audited[1]["details"]["delta"], -3);
    svc.stop().await;
}

#[sqlx::test(migrator = "carerp_inventory::MIGRATOR")]
async fn adjust_stock_never_below_zero_or_below_reserved(pool: PgPool) {
    let mut svc = Service::start(pool).await;
    let part = create(&mut svc.client, new_part("OF-1")).await;
    let id = Uuid::parse_str(&part.id).unwrap();
    let err = svc
        .client
        .adjust_stock(adjust(
            &part.id,
            pb::AdjustmentKind::Adjustment,
            -11,
            "count",
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(
        err.message(),
        "stock cannot go below zero: 10 on hand, delta -11"
    );

    common::reserve(
        &svc.pool,
        Uuid::now_v7(),
        &common::parts_added(Uuid::now_v7(), vec![common::line(id, 4)]),
    )
    .await;
    let err = svc
        .client
        .adjust_stock(adjust(
            &part.id,
            pb::AdjustmentKind::Adjustment,
            -7,
            "count",
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(
        err.message(),
        "stock cannot go below what is reserved: 10 on hand, 4 reserved, delta -7 would leave 3"
    );
    let ok = svc
        .client
        .adjust_stock(adjust(
            &part.id,
            pb::AdjustmentKind::Adjustment,
            -6,
            "count",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            ok.quantity_on_hand,
            ok.quantity_reserved,
            ok.quantity_available
        ),
        (4, 4, 0)
    );
    assert_eq!(common::movement_count(&svc.pool, id, "adjustment").await, 1);
    svc.stop().await;
}

#[sqlx::test(migrator = "carerp_inventory::MIGRATOR")]
async fn bad_adjustments_are_refused(pool: PgPool) {
    let mut svc = Service::start(pool).await;
    let part = create(&mut svc.client, new_part("OF-1")).await;
    let err = svc
        .client
        .adjust_stock(adjust(&part.id, pb::AdjustmentKind::Receipt, 3, "  "))
        .await
        .unwrap_err();
    assert_eq!(fields_of(&err), ["reason"]);
    let err = svc
        .client
        .adjust_stock(adjust(&part.id, pb::AdjustmentKind::Receipt, -3, "x"))
        .await
        .unwrap_err();
    assert_eq!(fields_of(&err), ["delta"]);
    let err = svc
        .client
        .adjust_stock(adjust(&part.id, pb::AdjustmentKind::Adjustment, 0, "x"))
        .await
        .unwrap_err();
    assert_eq!(fields_of(&err), ["delta"]);
    let err = svc
        .client
        .adjust_stock(adjust(&part.id, pb::AdjustmentKind::Unspecified, 1, "x"))
        .await
        .unwrap_err();
    assert_eq!(fields_of(&err), ["kind"]);
    let err = svc
        .client
        .adjust_stock(adjust("", pb::AdjustmentKind::Unspecified, 1, ""))
        .await
        .unwrap_err();
    assert_eq!(fields_of(&err), ["part_id", "kind", "reason"]);
    let unknown = Uuid::now_v7().to_string();
    let err = svc
        .client
        .adjust_stock(adjust(&unknown, pb::AdjustmentKind::Receipt, 1, "x"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let id = Uuid::parse_str(&part.id).unwrap();
    assert_eq!(common::get(&svc.pool, id).await.quantity_on_hand, 10);
    assert_eq!(common::movement_count(&svc.pool, id, "adjustment").await, 0);
    svc.stop().await;
}

#[sqlx::test(migrator = "carerp_inventory::MIGRATOR")]
async fn adjust_stock_is_idempotent_by_key(pool: PgPool) {
    let mut svc = Service::start(pool).await;
    let part = create(&mut svc.client, new_part("OF-1")).await;
    let other = create(&mut svc.client, new_part("OF-2")).await;
    let request = pb::AdjustStockRequest {
        idempotency_key: "delivery-4711".into(),
        ..adjust(&part.id, pb::AdjustmentKind::Receipt, 5, "delivery 4711")
    };
    let first = svc
        .client
        .adjust_stock(request.clone())
        .await
        .unwrap()
        .into_inner();
    let again = svc
        .client
        .adjust_stock(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.quantity_on_hand, 15);
    assert_eq!(again.quantity_on_hand, 15);
    let id = Uuid::parse_str(&part.id).unwrap();
    assert_eq!(common::movement_count(&svc.pool, id, "receipt").await, 2);
    let err = svc
        .client
        .adjust_stock(pb::AdjustStockRequest {
            part_id: other.id,
            ..request
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    assert!(err.message().contains("delivery-4711"), "{}", err.message());
    svc.stop().await;
}

/// One key on two parts at the same moment: the parts' locks do not order the two requests,
/// so the database's unique key decides, and the loser hears AlreadyExists, not Internal.
#[sqlx::test(migrator = "carerp_inventory::MIGRATOR")]
async fn one_key_on_two_parts_at_once_adjusts_one(pool: PgPool) {
    let mut svc = Service::start(pool).await;
    let mut ids = Vec::new();
    for round in 0..10 {
        let a = create(&mut svc.client, new_part(&format!("A-{round}"))).await;
        let b = create(&mut svc.client, new_part(&format!("B-{round}"))).await;
        let key = format!("delivery-{round}");
        let calls = [a.id.clone(), b.id.clone()].map(|part_id| {
            let mut client = svc.client.clone();
            let request = pb::AdjustStockRequest {
                idempotency_key: key.clone(),
                ..adjust(&part_id, pb::AdjustmentKind::Receipt, 5, "delivery")
            };
            tokio::spawn(async move { client.adjust_stock(request).await })
        });
        let mut succeeded = 0;
        for call in calls {
            match call.await.unwrap() {
                Ok(_) => succeeded += 1,
                Err(err) => assert_eq!(err.code(), Code::AlreadyExists, "{err:?}"),
            }
        }
        assert_eq!(succeeded, 1, "round {round}");
        ids.push(Uuid::parse_str(&a.id).unwrap());
        ids.push(Uuid::parse_str(&b.id).unwrap());
    }
    let mut receipts = 0;
    for id in ids {
        receipts += common::movement_count(&svc.pool, id, "receipt").await;
    }
    // Each part has its initial receipt; one per round got the delivery.
    assert_eq!(receipts, 20 + 10);
    svc.stop().await;
}

#[sqlx::test(migrator = "carerp_inventory::MIGRATOR")]
async fn list_low_stock_shows_active_parts_at_or_below_their_point(pool: PgPool) {
    let mut svc = Service::start(pool).await;
    // Reorder point 3 for all.
    let at_point = create(
        &mut svc.client,
        pb::CreatePartRequest {
            initial_quantity: 3,
            ..new_part("A-1")
        },
    )
    .await;
    create(
        &mut svc.client,
        pb::CreatePartRequest {
            initial_quantity: 4,
            ..new_part("B-1")
        },
    )
    .await;
    let reserved_down = create(
        &mut svc.client,
        pb::CreatePartRequest {
            initial_quantity: 8,
            ..new_part("C-1")
        },
    )
    .await;
    let inactive = create(
        &mut svc.client,
        pb::CreatePartRequest {
            initial_quantity: 0,
            ..new_part("D-1")
        },
    )
    .await;
    let empty = create(
        &mut svc.client,
        pb::CreatePartRequest {
            initial_quantity: 0,
            ..new_part("E-1")
        },
    )
    .await;
    svc.client
        .update_part(pb::UpdatePartRequest {
            id: inactive.id,
            active: Some(false),
            ..Default::default()
        })
        .await
        .unwrap();
    // Reservations count: 8 on hand, 6 reserved leaves 2 available.
    let id = Uuid::parse_str(&reserved_down.id).unwrap();
    common::reserve(
        &svc.pool,
        Uuid::now_v7(),
        &common::parts_added(Uuid::now_v7(), vec![common::line(id, 6)]),
    )
    .await;

    let response = svc
        .client
        .list_low_stock(pb::ListLowStockRequest {
            page: Some(PageRequest {
                page_size: 2,
                page_token: String::new(),
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let skus: Vec<&str> = response.parts.iter().map(|p| p.sku.as_str()).collect();
    assert_eq!(skus, ["A-1", "C-1"]);
    assert_eq!(response.parts[0].id, at_point.id);
    assert_eq!(response.parts[1].quantity_available, 2);
    let token = response.page.unwrap().next_page_token;
    assert!(!token.is_empty());
    let rest = svc
        .client
        .list_low_stock(pb::ListLowStockRequest {
            page: Some(PageRequest {
                page_size: 2,
                page_token: token,
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.parts.len(), 1);
    assert_eq!(rest.parts[0].id, empty.id);
    assert!(rest.page.unwrap().next_page_token.is_empty());
    let err = svc
        .client
        .list_low_stock(pb::ListLowStockRequest {
            page: Some(PageRequest {
                page_size: 0,
                page_token: "x".into(),
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(fields_of(&err), ["page.page_token"]);
    svc.stop().await;
}

#[sqlx::test(migrator = "carerp_inventory::MIGRATOR")]
async fn list_movements_pages_the_ledger_with_work_orders(pool: PgPool) {
    let mut svc = Service::start(pool).await;
    let part = create(&mut svc.client, new_part("OF-1")).await;
    let id = Uuid::parse_str(&part.id).unwrap();
    let wo = Uuid::now_v7();
    let line = common::line(id, 2);
    common::reserve(
        &svc.pool,
        Uuid::now_v7(),
        &common::parts_added(wo, vec![line.clone()]),
    )
    .await;
    common::complete(
        &svc.pool,
        &common::completed(wo, std::slice::from_ref(&line)),
    )
    .await;

    let first = svc
        .client
        .list_movements(pb::ListMovementsRequest {
            part_id: part.id.clone(),
            page: Some(PageRequest {
                page_size: 2,
                page_token: String::new(),
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.movements.len(), 2);
    let reservation = &first.movements[1];
    assert_eq!(reservation.kind, pb::MovementKind::Reservation as i32);
    assert_eq!(
        (reservation.on_hand_delta, reservation.reserved_delta),
        (0, 2)
    );
    assert_eq!(reservation.work_order_id, wo.to_string());
    assert_eq!(reservation.line_id, line.line_id.to_string());
    assert_eq!(reservation.part_id, part.id);
    assert!(reservation.at.is_some());
    let rest = svc
        .client
        .list_movements(pb::ListMovementsRequest {
            part_id: part.id.clone(),
            page: Some(PageRequest {
                page_size: 2,
                page_token: first.page.unwrap().next_page_token,
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.movements.len(), 1);
    assert_eq!(rest.movements[0].kind, pb::MovementKind::Consumption as i32);
    assert_eq!(
        (
            rest.movements[0].on_hand_delta,
            rest.movements[0].reserved_delta
        ),
        (-2, -2)
    );
    assert!(rest.page.unwrap().next_page_token.is_empty());

    let err = svc
        .client
        .list_movements(pb::ListMovementsRequest {
            part_id: Uuid::now_v7().to_string(),
            page: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = svc
        .client
        .list_movements(pb::ListMovementsRequest {
            part_id: "x".into(),
            page: Some(PageRequest {
                page_size: -2,
                page_token: String::new(),
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(fields_of(&err), ["part_id", "page.page_size"]);
    svc.stop().await;
}

#[sqlx::test(migrator = "carerp_inventory::MIGRATOR")]
async fn reconcile_proves_the_ledger_and_reports_differences(pool: PgPool) {
    let mut svc = Service::start(pool).await;
    let a = create(&mut svc.client, new_part("A-1")).await;
    let b = create(&mut svc.client, new_part("B-1")).await;
    let a_id = Uuid::parse_str(&a.id).unwrap();
    let wo = Uuid::now_v7();
    let line = common::line(a_id, 3);
    common::reserve(
        &svc.pool,
        Uuid::now_v7(),
        &common::parts_added(wo, vec![line.clone()]),
    )
    .await;
    svc.client
        .adjust_stock(adjust(&b.id, pb::AdjustmentKind::Adjustment, -2, "count"))
        .await
        .unwrap();

    let report = svc
        .client
        .reconcile(pb::ReconcileRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(report.inconsistent, 0);
    assert_eq!(report.parts.len(), 2);
    assert_eq!(
        report.parts[0],
        pb::PartReconciliation {
            part_id: a.id.clone(),
            sku: "A-1".into(),
            quantity_on_hand: 10,
            ledger_on_hand: 10,
            quantity_reserved: 3,
            ledger_reserved: 3,
            consistent: true,
        }
    );
    assert_eq!(
        (
            report.parts[1].quantity_on_hand,
            report.parts[1].ledger_on_hand
        ),
        (8, 8)
    );

    // Someone changes the quantities behind the ledger's back: reconcile tells.
    sqlx::query("UPDATE parts SET quantity_on_hand = 12 WHERE id = $1")
        .bind(a_id)
        .execute(&svc.pool)
        .await
        .unwrap();
    let report = svc
        .client
        .reconcile(pb::ReconcileRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(report.inconsistent, 1);
    let broken = &report.parts[0];
    assert!(!broken.consistent);
    assert_eq!((broken.quantity_on_hand, broken.ledger_on_hand), (12, 10));
    assert!(report.parts[1].consistent);

    let one = svc
        .client
        .reconcile(pb::ReconcileRequest {
            part_id: b.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(one.parts.len(), 1);
    assert_eq!(one.parts[0].part_id, b.id);
    assert_eq!(one.inconsistent, 0);
    let err = svc
        .client
        .reconcile(pb::ReconcileRequest {
            part_id: Uuid::now_v7().to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = svc
        .client
        .reconcile(pb::ReconcileRequest {
            part_id: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(fields_of(&err), ["part_id"]);
    svc.stop().await;
}

#[sqlx::test(migrator = "carerp_inventory::MIGRATOR")]
async fn the_service_reports_health_and_readiness(pool: PgPool) {
    let svc = Service::start(pool).await;
    let channel = Channel::from_shared(format!("http://{}", svc.running.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: carerp_inventory::SERVICE_NAME.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        status.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    drop(health);
    svc.stop().await;
}

#[sqlx::test(migrator = "carerp_inventory::MIGRATOR")]
async fn idempotency_keys_are_bounded(pool: PgPool) {
    let mut svc = Service::start(pool).await;
    let long = "k".repeat(201);
    let err = svc
        .client
        .create_part(pb::CreatePartRequest {
            idempotency_key: long.clone(),
            name: String::new(),
            ..new_part("OF-1")
        })
        .await
        .unwrap_err();
    assert_eq!(fields_of(&err), ["idempotency_key", "name"]);
    let part = create(&mut svc.client, new_part("OF-1")).await;
    let err = svc
        .client
        .adjust_stock(pb::AdjustStockRequest {
            idempotency_key: long,
            ..adjust(&part.id, pb::AdjustmentKind::Receipt, 1, "delivery")
        })
        .await
        .unwrap_err();
    assert_eq!(fields_of(&err), ["idempotency_key"]);
    svc.stop().await;
}
