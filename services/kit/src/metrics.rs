//! Prometheus metrics of a service, served on the admin port.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodCode {
    method: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Method {
    method: String,
}

type LatencyFamily = Family<Method, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 1 ms to about 16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// The registry and the gRPC server metrics every service has. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
    requests: Family<MethodCode, Counter>,
    errors: Family<MethodCode, Counter>,
    latency: LatencyFamily,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("carerp");
        let requests = Family::<MethodCode, Counter>::default();
        let errors = Family::<MethodCode, Counter>::default();
        let latency = LatencyFamily::new_with_constructor(latency_histogram);
        registry.register(
            "grpc_server_requests",
            "gRPC requests handled, by method and status code",
            requests.clone(),
        );
        registry.register(
            "grpc_server_errors",
            "gRPC requests that ended with a non-OK status, by method and code",
            errors.clone(),
        );
        registry.register(
            "grpc_server_request_duration_seconds",
            "gRPC request latency, by method",
            latency.clone(),
        );
        Self {
            registry: Arc::new(Mutex::new(registry)),
            requests,
            errors,
            latency,
        }
    }

    /// Adds a service's own metric (outbox backlog, consumer lag, ...).
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        if let Ok(mut registry) = self.registry.lock() {
            registry.register(name, help, metric);
        }
    }

    pub fn observe_grpc(&self, method: &str, code: tonic::Code, elapsed: Duration) {
        let labels = MethodCode {
            method: method.to_string(),
            code: format!("{code:?}"),
        };
        self.requests.get_or_create(&labels).inc();
        if code != tonic::Code::Ok {
            self.errors.get_or_create(&labels).inc();
        }
        self.latency
            .get_or_create(&Method {
                method: method.to_string(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// The Prometheus text exposition of every registered metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if let Ok(registry) = self.registry.lock() {
            // Writing into a String cannot fail.
            let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_errors_and_latency_are_exposed_per_method_and_code() {
        let metrics = Metrics::new();
        let method = "/carerp.customer.v1.CustomerService/GetCustomer";
        metrics.observe_grpc(method, tonic::Code::Ok, Duration::from_millis(3));
        metrics.observe_grpc(method, tonic::Code::NotFound, Duration::from_millis(2));
        let text = metrics.encode();
        assert!(
            text.contains(&format!(
                "carerp_grpc_server_requests_total{{method=\"{method}\",code=\"Ok\"}} 1"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "carerp_grpc_server_errors_total{{method=\"{method}\",code=\"NotFound\"}} 1"
            )),
            "{text}"
        );
        assert!(!text.contains("carerp_grpc_server_errors_total{method=\"/carerp.customer.v1.CustomerService/GetCustomer\",code=\"Ok\"}"));
        assert!(
            text.contains(&format!(
                "carerp_grpc_server_request_duration_seconds_count{{method=\"{method}\"}} 2"
            )),
            "{text}"
        );
    }
}
