//! One trace from the first request through the events it causes: the trace id of the
//! caller's `traceparent` is in the envelopes, in the consumers' log lines, and in the spans
//! exported over OTLP to a collector.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use carerp_e2e::{Platform, eventually};
use carerp_kit::ServiceConfig;
use carerp_kit::config::LogFormat;
use carerp_proto::customer::v1 as customer;
use carerp_proto::inventory::v1 as inventory;
use carerp_proto::workorder::v1 as wo;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;

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

/// An OpenTelemetry collector's trace endpoint that keeps what it is sent.
#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<ExportTraceServiceRequest>>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// A received span: its service, name, trace id and parent span id, in hex.
#[derive(Debug)]
struct ReceivedSpan {
    service: String,
    name: String,
    trace_id: String,
    parent_span_id: String,
}

impl Collector {
    async fn serve(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let service = TraceServiceServer::new(self.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        url
    }

    fn spans(&self) -> Vec<ReceivedSpan> {
        let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let mut spans = Vec::new();
        for request in self.0.lock().unwrap().iter() {
            for resource_spans in &request.resource_spans {
                let service = resource_spans
                    .resource
                    .iter()
                    .flat_map(|r| &r.attributes)
                    .find(|a| a.key == "service.name")
                    .and_then(|a| a.value.as_ref()?.value.as_ref())
                    .map(|v| match v {
                        AnyValue::StringValue(s) => s.clone(),
                        other => format!("{other:?}"),
                    })
                    .unwrap_or_default();
                for span in resource_spans.scope_spans.iter().flat_map(|s| &s.spans) {
                    spans.push(ReceivedSpan {
                        service: service.clone(),
                        name: span.name.clone(),
                        trace_id: hex(&span.trace_id),
                        parent_span_id: hex(&span.parent_span_id),
                    });
                }
            }
        }
        spans
    }
}

const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";

const CALLER_SPAN_ID: &str = "b7ad6b7169203331";

/// Multi-threaded: stopping trace export waits for the last batch, which the runtime sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_requests_trace_id_reaches_envelopes_consumer_logs_and_the_collector() {
    let collector = Collector::default();
    let mut config = ServiceConfig::for_tests("e2e", "e2e", None);
    config.otlp_endpoint = Some(collector.serve().await);
    config.log_format = LogFormat::Json;
    let captured = Captured::default();
    let writer = captured.clone();
    let telemetry = carerp_kit::telemetry::init_with_writer(&config, move || writer.clone())
        .expect("telemetry starts");

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
        job_id: String::new(),
    });
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{TRACE_ID}-{CALLER_SPAN_ID}-01")
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

    // Stopping export sends what is left; every span of the saga is in the caller's trace.
    tokio::task::spawn_blocking(move || drop(telemetry))
        .await
        .unwrap();
    let spans = collector.spans();
    let span = |name: &str| {
        spans
            .iter()
            .find(|s| s.name == name && s.trace_id == TRACE_ID)
            .unwrap_or_else(|| panic!("no span {name} in trace {TRACE_ID}: {spans:#?}"))
    };
    let request = span("AddPartLine");
    assert_eq!(request.parent_span_id, CALLER_SPAN_ID);
    assert_eq!(request.service, "carerp-e2e");
    // The consumers' spans continue it, each with a parent inside the trace.
    for consumed in ["workorder.parts-added", "inventory.parts-reserved"] {
        let span = span(consumed);
        assert!(!span.parent_span_id.is_empty(), "{span:?}");
        assert_ne!(span.parent_span_id, CALLER_SPAN_ID, "{span:?}");
    }
}
