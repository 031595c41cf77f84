//! `/metrics` of the operator: reconciles, errors by reason, durations, tenants by phase.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::crd::Phase;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabel {
    phase: String,
}

/// Cheap to clone: every clone updates the same metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    reconciles: Counter,
    errors: Family<ReasonLabel, Counter>,
    duration: Histogram,
    phases: Family<PhaseLabel, Gauge>,
    tenants: Arc<Mutex<HashMap<String, Phase>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("carerp_operator");
        let reconciles = Counter::default();
        let errors = Family::<ReasonLabel, Counter>::default();
        let duration = Histogram::new(exponential_buckets(0.01, 2.0, 12));
        let phases = Family::<PhaseLabel, Gauge>::default();
        registry.register("reconciliations", "Reconciles run", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by reason",
            errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "How long a reconcile took",
            duration.clone(),
        );
        registry.register("tenants", "Tenants by phase", phases.clone());
        Self {
            registry: Arc::new(registry),
            reconciles,
            errors,
            duration,
            phases,
            tenants: Arc::default(),
        }
    }
}

impl Metrics {
    /// Records one reconcile; `error` is the reason when it failed.
    pub fn observe(&self, took: Duration, error: Option<&str>) {
        self.reconciles.inc();
        self.duration.observe(took.as_secs_f64());
        if let Some(reason) = error {
            self.errors
                .get_or_create(&ReasonLabel {
                    reason: reason.into(),
                })
                .inc();
        }
    }

    /// Remembers the tenant's phase and recounts tenants by phase.
    pub fn set_phase(&self, tenant: &str, phase: Option<Phase>) {
        let mut tenants = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
        match phase {
            Some(phase) => tenants.insert(tenant.to_string(), phase),
            None => tenants.remove(tenant),
        };
        self.recount(&tenants);
    }

    /// A deleted tenant no longer counts.
    pub fn forget(&self, tenant: &str) {
        self.set_phase(tenant, None);
    }

    fn recount(&self, tenants: &HashMap<String, Phase>) {
        for phase in Phase::ALL {
            let n = tenants.values().filter(|p| **p == phase).count();
            self.phases
                .get_or_create(&PhaseLabel {
                    phase: phase.as_str().into(),
                })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// The Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_reconciles_errors_and_phases() {
        let m = Metrics::default();
        m.observe(Duration::from_millis(20), None);
        m.observe(Duration::from_millis(30), Some("DatabaseError"));
        m.set_phase("a", Some(Phase::Ready));
        m.set_phase("b", Some(Phase::Ready));
        m.set_phase("b", Some(Phase::Degraded));
        m.forget("a");
        let text = m.encode();
        assert!(
            text.contains("carerp_operator_reconciliations_total 2"),
            "{text}"
        );
        assert!(
            text.contains("carerp_operator_reconcile_errors_total{reason=\"DatabaseError\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("carerp_operator_tenants{phase=\"Degraded\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("carerp_operator_tenants{phase=\"Ready\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("carerp_operator_reconcile_duration_seconds_count 2"),
            "{text}"
        );
    }
}
