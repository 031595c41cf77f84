//! What a tenant's status says, computed from what one reconcile found: no I/O, and the time
//! passed in, so every phase and condition is tested here without an API server.
//!
//! Conditions: `DatabasesReady`, `MessagingReady`, `WorkloadsReady` and `Ready`, each keeping
//! its `lastTransitionTime` while its status holds. The phase: a provisioner failure makes a
//! Ready tenant `Degraded` and a new one `Provisioning`; otherwise `Suspended`, `Ready` when
//! every service has its replicas, or `Degraded`/`Provisioning` while some have not.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::config::OperatorConfig;
use crate::crd::{CarErpTenant, CarErpTenantStatus, Phase, SERVICES, Service, ServiceStatus};
use crate::desired;
use crate::provision::{self, ProvisionError};

/// A condition, keeping the previous transition time when its status did not change.
pub fn condition(
    previous: &[Condition],
    type_: &str,
    ok: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    let status = if ok { "True" } else { "False" };
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time,
    }
}

/// What one reconcile found out.
pub struct Observed<'a> {
    /// The databases' provisioning: `Err` when it failed.
    pub databases: Result<(), &'a ProvisionError>,
    /// The stream's.
    pub messaging: Result<(), &'a ProvisionError>,
    /// Ready replicas of each service's Deployment, by service name, as the API server
    /// returned them on apply; a service missing here has none.
    pub ready: BTreeMap<String, i32>,
}

impl Observed<'_> {
    /// The provisioner failure the tenant reports, databases first.
    pub fn failure(&self) -> Option<&ProvisionError> {
        self.databases.err().or(self.messaging.err())
    }
}

/// Whether a tenant in `phase` has settled, to be looked at again only at the resync.
pub fn settled(phase: Option<Phase>) -> bool {
    matches!(phase, Some(Phase::Ready | Phase::Suspended))
}

fn provisioned(
    previous: &[Condition],
    type_: &str,
    result: Result<(), &ProvisionError>,
    message: String,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    match result {
        Ok(()) => condition(
            previous,
            type_,
            true,
            "Provisioned",
            message,
            generation,
            now,
        ),
        Err(err) => condition(
            previous,
            type_,
            false,
            err.reason(),
            err.to_string(),
            generation,
            now,
        ),
    }
}

/// The status of a tenant that was converged (as far as its provisioners allowed).
pub fn converged(
    tenant: &CarErpTenant,
    config: &OperatorConfig,
    observed: &Observed<'_>,
    now: &Time,
) -> CarErpTenantStatus {
    let generation = tenant.metadata.generation;
    let previous = tenant.status.clone().unwrap_or_default();
    let prev = &previous.conditions;
    let name = tenant.metadata.name.clone().unwrap_or_default();

    let services: BTreeMap<String, ServiceStatus> = SERVICES
        .into_iter()
        .map(|service| {
            let status = ServiceStatus {
                ready: observed.ready.get(service.name()).copied().unwrap_or(0),
                desired: desired::replicas(tenant, service),
                image: desired::image(tenant, config, service),
            };
            (service.name().to_string(), status)
        })
        .collect();
    let not_ready: Vec<&str> = SERVICES
        .into_iter()
        .filter(|s| services[s.name()].ready < services[s.name()].desired)
        .map(Service::name)
        .collect();
    let workloads_ready = not_ready.is_empty();

    let databases = provisioned(
        prev,
        "DatabasesReady",
        observed.databases,
        format!(
            "{} databases ready",
            SERVICES.iter().filter(|s| s.has_database()).count()
        ),
        generation,
        now,
    );
    let messaging = provisioned(
        prev,
        "MessagingReady",
        observed.messaging,
        format!("stream {} ready", provision::stream_name(&name)),
        generation,
        now,
    );
    let workloads = if workloads_ready {
        condition(
            prev,
            "WorkloadsReady",
            true,
            "AllReady",
            "every service is ready",
            generation,
            now,
        )
    } else {
        condition(
            prev,
            "WorkloadsReady",
            false,
            "Progressing",
            format!("waiting for {}", not_ready.join(", ")),
            generation,
            now,
        )
    };

    let failure = observed.failure();
    let was_ready = matches!(previous.phase, Some(Phase::Ready | Phase::Degraded));
    let phase = if failure.is_some() {
        if previous.phase == Some(Phase::Ready) {
            Phase::Degraded
        } else {
            Phase::Provisioning
        }
    } else if tenant.spec.suspend {
        Phase::Suspended
    } else if workloads_ready {
        Phase::Ready
    } else if was_ready {
        Phase::Degraded
    } else {
        Phase::Provisioning
    };
    let ready = match failure {
        Some(err) => condition(
            prev,
            "Ready",
            false,
            err.reason(),
            err.to_string(),
            generation,
            now,
        ),
        None if settled(Some(phase)) => condition(
            prev,
            "Ready",
            true,
            phase.as_str(),
            "tenant converged",
            generation,
            now,
        ),
        None => condition(
            prev,
            "Ready",
            false,
            "Progressing",
            workloads.message.clone(),
            generation,
            now,
        ),
    };
    let ready_count = SERVICES.len() - not_ready.len();
    CarErpTenantStatus {
        phase: Some(phase),
        observed_generation: generation,
        conditions: vec![databases, messaging, workloads, ready],
        namespace: Some(desired::namespace_name(tenant, config)),
        endpoint: Some(desired::endpoint(tenant, config)),
        ready_services: Some(format!("{ready_count}/{}", SERVICES.len())),
        services,
    }
}

/// The status of a tenant that is not converged at all (an invalid spec, a namespace that is
/// not its own): `Failed`, with only the `Ready` condition, saying why.
pub fn refused(
    tenant: &CarErpTenant,
    reason: &str,
    message: &str,
    now: &Time,
) -> CarErpTenantStatus {
    let generation = tenant.metadata.generation;
    let previous = tenant.status.clone().unwrap_or_default();
    CarErpTenantStatus {
        phase: Some(Phase::Failed),
        observed_generation: generation,
        conditions: vec![condition(
            &previous.conditions,
            "Ready",
            false,
            reason,
            message,
            generation,
            now,
        )],
        ..previous
    }
}

/// The tenant's status with a failure the status does not show yet in its `Ready` condition
/// (the other conditions stay as they were): `Deleting` while it is deleted, else `Degraded`
/// if it was ready, else `Provisioning`.
pub fn with_failure(
    tenant: &CarErpTenant,
    reason: &str,
    message: &str,
    now: &Time,
) -> CarErpTenantStatus {
    let mut status = tenant.status.clone().unwrap_or_default();
    let ready = condition(
        &status.conditions,
        "Ready",
        false,
        reason,
        message,
        tenant.metadata.generation,
        now,
    );
    match status.conditions.iter_mut().find(|c| c.type_ == "Ready") {
        Some(existing) => *existing = ready,
        None => status.conditions.push(ready),
    }
    status.phase = Some(if tenant.metadata.deletion_timestamp.is_some() {
        Phase::Deleting
    } else if matches!(status.phase, Some(Phase::Ready | Phase::Degraded)) {
        Phase::Degraded
    } else {
        Phase::Provisioning
    });
    status
}

#[cfg(test)]
mod tests {
    use k8s_openapi::jiff::Timestamp;

    use super::*;
    use crate::crd::CarErpTenantSpec;

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).unwrap())
    }

    fn tenant(previous: Option<Phase>, suspend: bool) -> CarErpTenant {
        let mut tenant = CarErpTenant::new(
            "acme",
            CarErpTenantSpec {
                display_name: "ACME".into(),
                suspend,
                ..serde_json::from_value(serde_json::json!({"displayName": "ACME"})).unwrap()
            },
        );
        tenant.metadata.generation = Some(3);
        tenant.status = previous.map(|phase| CarErpTenantStatus {
            phase: Some(phase),
            ..CarErpTenantStatus::default()
        });
        tenant
    }

    /// Every service with the replicas its plan wants.
    fn all_ready(tenant: &CarErpTenant) -> BTreeMap<String, i32> {
        SERVICES
            .into_iter()
            .map(|s| (s.name().to_string(), desired::replicas(tenant, s)))
            .collect()
    }

    fn database_down() -> ProvisionError {
        ProvisionError::Database {
            action: "connect".into(),
            source: sqlx::Error::PoolTimedOut,
        }
    }

    fn ready_condition(status: &CarErpTenantStatus) -> &Condition {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap()
    }

    fn status_of(tenant: &CarErpTenant, observed: &Observed<'_>) -> CarErpTenantStatus {
        converged(tenant, &OperatorConfig::example(), observed, &at(1000))
    }

    #[test]
    fn phases_follow_provisioning_and_workloads() {
        let down = database_down();
        // (phase before, suspended, databases fail, every service ready) -> phase after
        let cases = [
            (None, false, false, true, Phase::Ready),
            (None, false, false, false, Phase::Provisioning),
            (Some(Phase::Ready), false, false, false, Phase::Degraded),
            (Some(Phase::Degraded), false, false, false, Phase::Degraded),
            (Some(Phase::Degraded), false, false, true, Phase::Ready),
            (None, false, true, true, Phase::Provisioning),
            (Some(Phase::Ready), false, true, true, Phase::Degraded),
            (
                Some(Phase::Provisioning),
                false,
                true,
                true,
                Phase::Provisioning,
            ),
            (None, true, false, false, Phase::Suspended),
            (Some(Phase::Ready), true, true, false, Phase::Degraded),
        ];
        for (before, suspend, fail, ready, after) in cases {
            let t = tenant(before, suspend);
            let observed = Observed {
                databases: if fail { Err(&down) } else { Ok(()) },
                messaging: Ok(()),
                ready: if ready {
                    all_ready(&t)
                } else {
                    BTreeMap::new()
                },
            };
            let status = status_of(&t, &observed);
            assert_eq!(
                status.phase,
                Some(after),
                "{before:?} suspend={suspend} fail={fail} ready={ready}"
            );
            assert_eq!(
                ready_condition(&status).status == "True",
                settled(Some(after)) && !fail,
                "{after:?}"
            );
        }
    }

    #[test]
    fn a_converged_tenant_reports_every_condition_and_service() {
        let t = tenant(None, false);
        let status = status_of(
            &t,
            &Observed {
                databases: Ok(()),
                messaging: Ok(()),
                ready: all_ready(&t),
            },
        );
        let conditions: Vec<(&str, &str, &str)> = status
            .conditions
            .iter()
            .map(|c| (c.type_.as_str(), c.status.as_str(), c.reason.as_str()))
            .collect();
        assert_eq!(
            conditions,
            [
                ("DatabasesReady", "True", "Provisioned"),
                ("MessagingReady", "True", "Provisioned"),
                ("WorkloadsReady", "True", "AllReady"),
                ("Ready", "True", "Ready"),
            ]
        );
        assert_eq!(status.conditions[0].message, "5 databases ready");
        assert_eq!(status.conditions[1].message, "stream CARERP_ACME ready");
        assert_eq!(status.ready_services.as_deref(), Some("6/6"));
        assert_eq!(status.namespace.as_deref(), Some("carerp-acme"));
        assert_eq!(status.observed_generation, Some(3));
        assert_eq!(status.services.len(), SERVICES.len());
        assert!(
            status
                .conditions
                .iter()
                .all(|c| c.observed_generation == Some(3))
        );
    }

    #[test]
    fn waiting_services_are_named_and_counted() {
        let t = tenant(None, false);
        let mut ready = all_ready(&t);
        ready.remove("billing");
        ready.insert("bff".into(), 0);
        let status = status_of(
            &t,
            &Observed {
                databases: Ok(()),
                messaging: Ok(()),
                ready,
            },
        );
        assert_eq!(status.conditions[2].message, "waiting for billing, bff");
        let ready = ready_condition(&status);
        assert_eq!(
            (ready.reason.as_str(), ready.message.as_str()),
            ("Progressing", "waiting for billing, bff")
        );
        assert_eq!(status.ready_services.as_deref(), Some("4/6"));
        assert_eq!(status.services["billing"].ready, 0);
    }

    #[test]
    fn a_provisioner_failure_is_the_ready_reason() {
        let t = tenant(Some(Phase::Ready), false);
        let nats = ProvisionError::Nats {
            action: "connect".into(),
            message: "refused".into(),
        };
        let status = status_of(
            &t,
            &Observed {
                databases: Ok(()),
                messaging: Err(&nats),
                ready: all_ready(&t),
            },
        );
        assert_eq!(status.conditions[0].status, "True");
        assert_eq!(status.conditions[1].reason, "MessagingError");
        let ready = ready_condition(&status);
        assert_eq!(ready.reason, "MessagingError");
        assert_eq!(ready.message, "NATS: connect: refused");
    }

    #[test]
    fn transition_time_is_kept_while_status_holds() {
        let first = condition(&[], "Ready", false, "Progressing", "a", Some(1), &at(10));
        let same = condition(
            std::slice::from_ref(&first),
            "Ready",
            false,
            "Progressing",
            "b",
            Some(2),
            &at(20),
        );
        assert_eq!(same.last_transition_time, at(10));
        assert_eq!(same.message, "b");
        let flipped = condition(
            std::slice::from_ref(&first),
            "Ready",
            true,
            "Ready",
            "c",
            Some(2),
            &at(30),
        );
        assert_eq!(flipped.status, "True");
        assert_eq!(flipped.last_transition_time, at(30));
    }

    #[test]
    fn a_refused_tenant_is_failed_with_only_the_reason() {
        let mut t = tenant(Some(Phase::Ready), false);
        if let Some(status) = t.status.as_mut() {
            status.namespace = Some("carerp-acme".into());
        }
        let status = refused(&t, "InvalidSpec", "bad currency", &at(5));
        assert_eq!(status.phase, Some(Phase::Failed));
        assert_eq!(status.conditions.len(), 1);
        assert_eq!(status.conditions[0].reason, "InvalidSpec");
        assert_eq!(status.namespace.as_deref(), Some("carerp-acme"), "kept");
    }

    #[test]
    fn a_failure_replaces_only_the_ready_condition() {
        let t = tenant(Some(Phase::Ready), false);
        let before = status_of(
            &t,
            &Observed {
                databases: Ok(()),
                messaging: Ok(()),
                ready: all_ready(&t),
            },
        );
        let mut t = t;
        t.status = Some(before.clone());
        let after = with_failure(
            &t,
            "KubernetesError",
            "apply Deployment/bff: forbidden",
            &at(9),
        );
        assert_eq!(after.phase, Some(Phase::Degraded));
        assert_eq!(after.conditions[..3], before.conditions[..3]);
        assert_eq!(ready_condition(&after).reason, "KubernetesError");
        assert_eq!(ready_condition(&after).last_transition_time, at(9));

        t.metadata.deletion_timestamp = Some(at(8));
        assert_eq!(
            with_failure(&t, "MessagingError", "x", &at(9)).phase,
            Some(Phase::Deleting)
        );
        let new = tenant(None, false);
        let status = with_failure(&new, "KubernetesError", "x", &at(9));
        assert_eq!(status.phase, Some(Phase::Provisioning));
        assert_eq!(status.conditions.len(), 1);
    }
}
