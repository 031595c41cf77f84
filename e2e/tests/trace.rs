//! One trace from the first request through the events it causes: the trace id of the
//! caller's `traceparent` is in the envelopes and in the consumers' log lines.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use carerp_e2e::{Platform, eventually};
use carerp_kit::telemetry::JsonLogLayer;
use carerp_proto::customer::v1 as customer;
use carerp_proto::inventory::v1 as inventory;
use carerp_proto::workorder::v1 as wo;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn lines(&self) -> Vec<serde_json::Value> {
        let bytes = self.0.lock().unwrap().clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";

#[tokio::test]
async fn the_first_requests_trace_id_reaches_envelopes_and_consumer_logs() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("info"))
        .with(JsonLogLayer::new("e2e", "e2e", move || writer.clone()))
        .init();

    let mut p = Platform::start(Default::default()).await.unwrap();
    let c = p
        .customers
        .create_customer(customer::CreateCustomerRequest {
            name: "Trace Customer".into(),
            email: "trace@example.com".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let v = p
        .customers
        .add_vehicle(customer::AddVehicleRequest {
            customer_id: c.id.clone(),
            vin: "WVWZZZ1KZAW654321".into(),
            make: "Skoda".into(),
            model: "Octavia".into(),
            year: 2020,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let part = p
        .inventory
        .create_part(inventory::CreatePartRequest {
            sku: "TRC-1".into(),
            name: "Wiper blade".into(),
            unit_price: Some(carerp_proto::common::v1::Money {
                amount_minor: 1000,
                currency: "EUR".into(),
            }),
            unit_cost: Some(carerp_proto::common::v1::Money {
                amount_minor: 500,
                currency: "EUR".into(),
            }),
            initial_quantity: 4,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let order = p
        .work_orders
        .create_work_order(wo::CreateWorkOrderRequest {
            customer_id: c.id.clone(),
            vehicle_id: v.id.clone(),
            complaint: "wipers smear".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();

    let mut request = tonic::Request::new(wo::AddPartLineRequest {
        work_order_id: order.id.clone(),
        part_id: part.id.clone(),
        quantity: 2,
        expected_version: 0,
        idempotency_key: String::new(),
    });
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{TRACE_ID}-b7ad6b7169203331-01")
            .parse()
            .unwrap(),
    );
    request
        .metadata_mut()
        .insert("x-correlation-id", "trace-test-1".parse().unwrap());
    p.work_orders.add_part_line(request).await.unwrap();

    eventually(
        "the line is reserved",
        Duration::from_secs(20),
        async || {
            let o = p
                .work_orders
                .get_work_order(wo::GetWorkOrderRequest {
                    id: order.id.clone(),
                })
                .await
                .unwrap()
                .into_inner();
            (o.part_lines[0].reservation_state == wo::ReservationState::Reserved as i32)
                .then_some(())
        },
    )
    .await
    .unwrap();

    // The envelopes: parts-added by the work order service, parts-reserved by inventory.
    let added: String =
        sqlx::query_scalar("SELECT traceparent FROM outbox WHERE topic = 'workorder.parts-added'")
            .fetch_one(&p.pools[1])
            .await
            .unwrap();
    assert!(added.contains(TRACE_ID), "{added}");
    let reserved: (String, String) = sqlx::query_as(
        "SELECT traceparent, correlation_id FROM outbox WHERE topic = 'inventory.parts-reserved'",
    )
    .fetch_one(&p.pools[2])
    .await
    .unwrap();
    assert!(reserved.0.contains(TRACE_ID), "{reserved:?}");
    assert_eq!(reserved.1, "trace-test-1");

    // The consumers' log lines carry the trace id and correlation id.
    let lines = eventually(
        "both consumers logged",
        Duration::from_secs(10),
        async || {
            let lines = captured.lines();
            let handled = |topic: &str| {
                lines.iter().any(|l| {
                    l["action"] == topic
                        && l["trace_id"] == TRACE_ID
                        && l["correlation_id"] == "trace-test-1"
                })
            };
            (handled("workorder.parts-added") && handled("inventory.parts-reserved"))
                .then_some(lines)
        },
    )
    .await
    .unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l["action"] == "AddPartLine" && l["trace_id"] == TRACE_ID)
    );
    p.stop().await.unwrap();
}
