//! The controller: keeps every `CarErpTenant` converged.
//!
//! Reconcile (`converge`) is named steps: refuse an invalid spec or a namespace that is not
//! the tenant's, `ensure_databases` (and the URLs the Secrets hold), `apply_objects` (namespace,
//! key Secrets, database Secrets, then everything else, with server-side apply), `prune` what is
//! no longer desired, `ensure_stream`, then the status, computed by the pure
//! [`status::converged`], with Events on transitions. Deletion runs behind the
//! `carerp.io/cleanup` finalizer. Errors requeue with a per-tenant exponential backoff and show
//! their reason in the `Ready` condition and in a Warning Event. The real PostgreSQL and NATS
//! behind [`Provisioner`] are `infrastructure.rs`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference, Secret};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::{OperatorConfig, RESYNC};
use crate::crd::{
    CarErpTenant, CarErpTenantStatus, DeletionPolicy, MessagingSpec, Phase, SERVICES, Service,
};
use crate::desired::{self, Object};
use crate::metrics::Metrics;
use crate::provision::{self, ProvisionError};
use crate::status;
use crate::validate::validate;

/// Finalizer that holds a tenant until, with `deletionPolicy: Delete`, its stream and databases
/// are gone (`Retain` keeps both).
pub const FINALIZER: &str = "carerp.io/cleanup";
/// Field manager of every server-side apply.
pub const MANAGER: &str = "carerp-operator";
/// How soon a tenant that is not ready yet is looked at again.
const NOT_READY_REQUEUE: Duration = Duration::from_secs(15);
/// How soon a tenant refused a namespace that is not its own looks again.
const NAMESPACE_CONFLICT_REQUEUE: Duration = Duration::from_secs(60);

/// Databases and stream, behind a trait so reconcile tests can fail them on purpose.
pub trait Provisioner: Send + Sync + 'static {
    fn ensure_databases<'a>(
        &'a self,
        tenant: &'a str,
        passwords: &'a BTreeMap<Service, String>,
    ) -> BoxFuture<'a, Result<BTreeMap<Service, String>, ProvisionError>>;
    fn drop_databases<'a>(&'a self, tenant: &'a str) -> BoxFuture<'a, Result<(), ProvisionError>>;
    fn ensure_stream<'a>(
        &'a self,
        tenant: &'a str,
        spec: &'a MessagingSpec,
    ) -> BoxFuture<'a, Result<(), ProvisionError>>;
    fn delete_stream<'a>(&'a self, tenant: &'a str) -> BoxFuture<'a, Result<(), ProvisionError>>;
}

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed; `doing` says which (`apply Deployment/customer`).
    #[error("{doing}: {}", api_message(.source))]
    Kube {
        doing: String,
        #[source]
        source: kube::Error,
    },
    #[error("{0}")]
    Provision(#[from] ProvisionError),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("NATS credentials: {0}")]
    NatsCredentials(#[from] crate::nats_auth::IssuerError),
}

impl Error {
    /// Label of the errors metric and reason of the condition.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Kube { .. } => "KubernetesError",
            Error::Provision(err) => err.reason(),
            Error::NatsCredentials(_) => "NatsCredentialsError",
            Error::Finalizer(inner) => match inner.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(err)
                | kube::runtime::finalizer::Error::CleanupFailed(err) => err.reason(),
                _ => "FinalizerError",
            },
        }
    }
}

/// What the API server said, without the debug dump `kube::Error`'s own message appends.
fn api_message(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(status) => {
            format!("{} ({}, {})", status.message, status.reason, status.code)
        }
        other => other.to_string(),
    }
}

/// Wraps a failed API call with what it was doing.
fn kube_err(doing: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let doing = doing.into();
    move |source| Error::Kube { doing, source }
}

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub config: OperatorConfig,
    pub provisioner: Arc<dyn Provisioner>,
    pub recorder: Recorder,
    pub metrics: Metrics,
    /// Signs each tenant's NATS user when the installation has one (`config.nats_credentials`).
    pub nats_issuer: Option<Arc<crate::nats_auth::Issuer>>,
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(
        client: Client,
        config: OperatorConfig,
        provisioner: Arc<dyn Provisioner>,
        metrics: Metrics,
        instance: Option<String>,
    ) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: MANAGER.into(),
                instance,
            },
        );
        Self {
            client,
            config,
            provisioner,
            recorder,
            metrics,
            nats_issuer: None,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Gives every tenant NATS credentials signed by `issuer`.
    pub fn with_nats_issuer(mut self, issuer: Arc<crate::nats_auth::Issuer>) -> Self {
        self.nats_issuer = Some(issuer);
        self
    }

    /// 5s, 10s, 20s ... up to 5 minutes for a tenant that keeps failing.
    fn backoff(&self, tenant: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = failures.entry(tenant.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        Duration::from_secs(5u64.saturating_mul(1 << (*n - 1).min(6))).min(Duration::from_secs(300))
    }

    fn succeeded(&self, tenant: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(tenant);
    }
}

fn now() -> Time {
    Time(Timestamp::now())
}

fn object_ref(tenant: &CarErpTenant) -> ObjectReference {
    tenant.object_ref(&())
}

async fn publish(
    ctx: &Context,
    tenant: &CarErpTenant,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(err) = ctx.recorder.publish(&event, &object_ref(tenant)).await {
        tracing::warn!(tenant = %tenant.name_any(), error = %err, "cannot publish event");
    }
}

async fn apply_namespaced<K>(client: &Client, object: &K) -> Result<K, kube::Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned,
{
    let namespace = object.meta().namespace.clone().unwrap_or_default();
    let name = object.meta().name.clone().unwrap_or_default();
    let api: Api<K> = Api::namespaced(client.clone(), &namespace);
    api.patch(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
}

/// Applies one object; for a Deployment, returns what its status says about readiness.
async fn apply_object(client: &Client, object: &Object) -> Result<Option<Deployment>, kube::Error> {
    match object {
        Object::Namespace(o) => {
            let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
            let name = o.metadata.name.clone().unwrap_or_default();
            api.patch(
                &name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(o),
            )
            .await?;
        }
        Object::ConfigMap(o) => drop(apply_namespaced(client, o).await?),
        Object::ServiceAccount(o) => drop(apply_namespaced(client, o).await?),
        Object::Service(o) => drop(apply_namespaced(client, o).await?),
        Object::Deployment(o) => return Ok(Some(apply_namespaced(client, o).await?)),
        Object::PodDisruptionBudget(o) => drop(apply_namespaced(client, o).await?),
        Object::NetworkPolicy(o) => drop(apply_namespaced(client, o).await?),
        Object::ResourceQuota(o) => drop(apply_namespaced(client, o).await?),
        Object::Ingress(o) => drop(apply_namespaced(client, o).await?),
    }
    Ok(None)
}

/// The password inside a Secret's `DATABASE_URL` (`postgres://user:password@host/db`).
fn password_from_url(url: &str) -> Option<String> {
    let rest = url.split("://").nth(1)?;
    let userinfo = &rest[..rest.rfind('@')?];
    let (_, password) = userinfo.split_once(':')?;
    (!password.is_empty()).then(|| password.to_string())
}

/// `DATABASE_URL` of the database Secrets that exist, so a reconcile keeps their passwords.
async fn read_database_urls(
    client: &Client,
    namespace: &str,
) -> Result<BTreeMap<Service, String>, Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut urls = BTreeMap::new();
    for service in SERVICES.into_iter().filter(|s| s.has_database()) {
        let name = desired::secret_name(service);
        if let Some(secret) = api
            .get_opt(&name)
            .await
            .map_err(kube_err(format!("read Secret/{name}")))?
            && let Some(url) = secret.data.as_ref().and_then(|d| d.get("DATABASE_URL"))
            && let Ok(url) = std::str::from_utf8(&url.0)
        {
            urls.insert(service, url.to_string());
        }
    }
    Ok(urls)
}

/// Why the existing namespace `namespace` is not the tenant's to use, if it is not: it must
/// carry the operator's labels for this tenant and be owned by this very tenant (its uid), so a
/// namespace someone made by hand, or one left by an earlier tenant of the same name that is
/// still being deleted, is never adopted.
pub fn foreign_namespace(
    namespace: &k8s_openapi::api::core::v1::Namespace,
    tenant: &CarErpTenant,
) -> Option<String> {
    let name = namespace.metadata.name.as_deref().unwrap_or_default();
    let labels = namespace.metadata.labels.clone().unwrap_or_default();
    if labels
        .get("app.kubernetes.io/managed-by")
        .map(String::as_str)
        != Some(MANAGER)
    {
        return Some(format!(
            "namespace {name} already exists and is not managed by the Car ERP operator; delete it or choose another tenant name"
        ));
    }
    let tenant_name = tenant.name_any();
    if let Some(other) = labels.get("carerp.io/tenant")
        && *other != tenant_name
    {
        return Some(format!(
            "namespace {name} already exists and belongs to tenant {other}"
        ));
    }
    let uid = tenant.metadata.uid.as_deref();
    let owners = namespace
        .metadata
        .owner_references
        .clone()
        .unwrap_or_default();
    let owned = owners
        .iter()
        .any(|o| o.kind == CarErpTenant::kind(&()) && Some(o.uid.as_str()) == uid);
    if owned {
        return None;
    }
    Some(
        match owners.iter().find(|o| o.kind == CarErpTenant::kind(&())) {
            Some(other) => format!(
                "namespace {name} already exists and is owned by another CarErpTenant {} (uid {}), which may still be being deleted",
                other.name, other.uid
            ),
            None => format!("namespace {name} already exists and is not owned by this tenant"),
        },
    )
}

async fn namespace_conflict(
    client: &Client,
    tenant: &CarErpTenant,
    namespace: &str,
) -> Result<Option<String>, Error> {
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let existing = api
        .get_opt(namespace)
        .await
        .map_err(kube_err(format!("read Namespace/{namespace}")))?;
    Ok(existing.and_then(|ns| foreign_namespace(&ns, tenant)))
}

/// Deletes the tenant's objects of kind `K` that are not in `keep` (`Kind/name`s). Only objects
/// carrying the tenant's managed-by labels are looked at; one already gone is done.
async fn prune_kind<K>(
    client: &Client,
    namespace: &str,
    selector: &str,
    keep: &BTreeSet<String>,
) -> Result<(), Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + DeserializeOwned,
{
    let kind = K::kind(&());
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let existing = api
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(kube_err(format!("list {kind} objects")))?;
    for object in existing {
        let name = object.name_any();
        let described = format!("{kind}/{name}");
        if keep.contains(&described) {
            continue;
        }
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => tracing::info!(namespace, object = %described, "deleted, no longer desired"),
            Err(kube::Error::Api(status)) if status.is_not_found() => {}
            Err(err) => return Err(kube_err(format!("delete {described}"))(err)),
        }
    }
    Ok(())
}

/// Deletes what the desired state no longer holds among the kinds it holds only under
/// conditions: the collector ConfigMap (sidecar turned off), PodDisruptionBudgets (replicas
/// down to 1 or suspended: a PDB left behind would block node drains) and the Ingress
/// (`spec.ingress` removed).
async fn prune(
    client: &Client,
    tenant: &CarErpTenant,
    namespace: &str,
    objects: &[Object],
) -> Result<(), Error> {
    let keep: BTreeSet<String> = objects.iter().map(Object::describe).collect();
    let selector = desired::managed_selector(tenant);
    prune_kind::<ConfigMap>(client, namespace, &selector, &keep).await?;
    prune_kind::<PodDisruptionBudget>(client, namespace, &selector, &keep).await?;
    prune_kind::<Ingress>(client, namespace, &selector, &keep).await
}

async fn patch_status(
    ctx: &Context,
    tenant: &CarErpTenant,
    status: &CarErpTenantStatus,
) -> Result<(), kube::Error> {
    let api: Api<CarErpTenant> = Api::all(ctx.client.clone());
    let patch = serde_json::json!({
        "apiVersion": CarErpTenant::api_version(&()),
        "kind": CarErpTenant::kind(&()),
        "status": status,
    });
    api.patch_status(
        &tenant.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

/// Writes the status, counts the phase, and tells `kubectl describe` about a change of phase.
async fn report(
    ctx: &Context,
    tenant: &CarErpTenant,
    status: &CarErpTenantStatus,
) -> Result<(), kube::Error> {
    let before = tenant.status.as_ref().and_then(|s| s.phase);
    patch_status(ctx, tenant, status).await?;
    ctx.metrics.set_phase(&tenant.name_any(), status.phase);
    if let Some(phase) = status.phase
        && before != Some(phase)
    {
        let type_ = match phase {
            Phase::Failed | Phase::Degraded => EventType::Warning,
            _ => EventType::Normal,
        };
        let note = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .map(|c| c.message.clone())
            .unwrap_or_default();
        publish(ctx, tenant, type_, phase.as_str(), note).await;
    }
    Ok(())
}

/// Puts a failure the status does not show yet into the `Ready` condition (the other conditions
/// stay as they were) and into a Warning Event, so `kubectl describe` tells why the tenant is
/// stuck. Best effort: the failure is returned (and retried) whatever happens here.
async fn report_failure(ctx: &Context, tenant: &CarErpTenant, reason: &str, message: String) {
    let status = status::with_failure(tenant, reason, &message, &now());
    match patch_status(ctx, tenant, &status).await {
        Ok(()) => ctx.metrics.set_phase(&tenant.name_any(), status.phase),
        Err(err) => tracing::warn!(
            tenant = %tenant.name_any(),
            error = %api_message(&err),
            "cannot report the failure in the status"
        ),
    }
    publish(ctx, tenant, EventType::Warning, reason, message).await;
}

/// Converges the tenant. A failed Kubernetes API call goes into the status and an Event before
/// it is returned; provisioner failures are already there, with every condition.
async fn apply_tenant(tenant: Arc<CarErpTenant>, ctx: &Context) -> Result<Action, Error> {
    // The controller's cache can hand over a tenant that was deleted (and cleaned up) since:
    // converging it would recreate its stream and databases, and write into its terminating
    // namespace. Only the tenant as the API server has it now is converged.
    let api: Api<CarErpTenant> = Api::all(ctx.client.clone());
    let fresh = api
        .get_opt(&tenant.name_any())
        .await
        .map_err(kube_err("read the tenant"))?;
    let tenant = match fresh {
        Some(fresh)
            if fresh.metadata.deletion_timestamp.is_none() && fresh.uid() == tenant.uid() =>
        {
            Arc::new(fresh)
        }
        _ => return Ok(Action::await_change()),
    };
    let result = converge(&tenant, ctx).await;
    if let Err(err @ Error::Kube { .. }) = &result {
        report_failure(ctx, &tenant, err.reason(), err.to_string()).await;
    }
    result
}

/// One convergence, as named steps; each returns what the next needs, and the status is
/// computed from what they found ([`status::converged`]).
async fn converge(tenant: &CarErpTenant, ctx: &Context) -> Result<Action, Error> {
    let namespace = desired::namespace_name(tenant, &ctx.config);
    if let Some(action) = refuse_invalid_spec(tenant, ctx).await? {
        return Ok(action);
    }
    if let Some(action) = refuse_foreign_namespace(tenant, ctx, &namespace).await? {
        return Ok(action);
    }
    let databases = ensure_databases(tenant, ctx, &namespace).await?;
    let applied = apply_objects(tenant, ctx, &namespace, &databases).await?;
    prune(&ctx.client, tenant, &namespace, &applied.objects).await?;
    let messaging = ctx
        .provisioner
        .ensure_stream(&tenant.name_any(), &tenant.spec.messaging)
        .await;

    let observed = status::Observed {
        databases: databases.provisioned.as_ref().map(|_| ()),
        messaging: messaging.as_ref().copied(),
        ready: applied.ready,
    };
    let status = status::converged(tenant, &ctx.config, &observed, &now());
    report(ctx, tenant, &status)
        .await
        .map_err(kube_err("write the status"))?;
    if let Some(err) = observed.failure() {
        publish(
            ctx,
            tenant,
            EventType::Warning,
            err.reason(),
            err.to_string(),
        )
        .await;
    }
    databases.provisioned?;
    messaging?;
    Ok(if status::settled(status.phase) {
        Action::requeue(RESYNC)
    } else {
        Action::requeue(NOT_READY_REQUEUE)
    })
}

/// An invalid spec: `Failed`, a Warning Event when the message is new, and nothing to retry
/// until someone edits the spec.
async fn refuse_invalid_spec(
    tenant: &CarErpTenant,
    ctx: &Context,
) -> Result<Option<Action>, Error> {
    let Err(invalid) = validate(tenant) else {
        return Ok(None);
    };
    let message = invalid.to_string();
    refuse(tenant, ctx, "InvalidSpec", message, None).await?;
    Ok(Some(Action::await_change()))
}

/// A namespace of that name that is not ours is never adopted: applying to it would make it
/// the tenant's, and deleting the tenant would delete it. The other owner may let go of it,
/// so it is looked at again now and then.
async fn refuse_foreign_namespace(
    tenant: &CarErpTenant,
    ctx: &Context,
    namespace: &str,
) -> Result<Option<Action>, Error> {
    let Some(conflict) = namespace_conflict(&ctx.client, tenant, namespace).await? else {
        return Ok(None);
    };
    refuse(tenant, ctx, "NamespaceConflict", conflict, Some(None)).await?;
    Ok(Some(Action::requeue(NAMESPACE_CONFLICT_REQUEUE)))
}

/// Writes a [`status::refused`] status (with `namespace` replaced when given) and a Warning
/// Event unless a condition already says the same.
async fn refuse(
    tenant: &CarErpTenant,
    ctx: &Context,
    reason: &str,
    message: String,
    namespace: Option<Option<String>>,
) -> Result<(), Error> {
    let mut status = status::refused(tenant, reason, &message, &now());
    if let Some(namespace) = namespace {
        status.namespace = namespace;
    }
    report(ctx, tenant, &status)
        .await
        .map_err(kube_err("write the status"))?;
    let previous = tenant.status.clone().unwrap_or_default();
    if previous.conditions.iter().all(|c| c.message != message) {
        publish(ctx, tenant, EventType::Warning, reason, message).await;
    }
    Ok(())
}

/// The databases' provisioning and the URLs the Secrets will hold.
struct Databases {
    provisioned: Result<BTreeMap<Service, String>, ProvisionError>,
    /// The provisioned passwords' URLs, or (provisioner down) what the Secrets hold now, so a
    /// failure rolls nothing.
    urls: BTreeMap<Service, String>,
}

/// The databases first: the pod templates carry a hash of the Secret each service reads its
/// password from, so they must know the password in force (a new one when a lost Secret made
/// the provisioner reset it).
async fn ensure_databases(
    tenant: &CarErpTenant,
    ctx: &Context,
    namespace: &str,
) -> Result<Databases, Error> {
    let name = tenant.name_any();
    let existing = read_database_urls(&ctx.client, namespace).await?;
    let passwords: BTreeMap<Service, String> = existing
        .iter()
        .filter_map(|(service, url)| Some((*service, password_from_url(url)?)))
        .collect();
    let provisioned = ctx.provisioner.ensure_databases(&name, &passwords).await;
    let urls = match &provisioned {
        Ok(passwords) => passwords
            .iter()
            .map(|(service, password)| {
                let url = provision::database_url(
                    &ctx.config.database_host,
                    ctx.config.database_port,
                    &name,
                    *service,
                    password,
                );
                (*service, url)
            })
            .collect(),
        Err(_) => existing,
    };
    Ok(Databases { provisioned, urls })
}

/// What was applied, and the ready replicas the applied Deployments report.
struct Applied {
    objects: Vec<Object>,
    ready: BTreeMap<String, i32>,
}

/// The namespace, then the signing key, owner and NATS credentials Secrets, then the database Secrets (when
/// provisioning succeeded), then the rest: pods a Deployment rolls for a new password find it
/// in their Secret.
async fn apply_objects(
    tenant: &CarErpTenant,
    ctx: &Context,
    namespace: &str,
    databases: &Databases,
) -> Result<Applied, Error> {
    let hashes = databases
        .urls
        .iter()
        .map(|(service, url)| (*service, desired::database_secret_hash(&ctx.config, url)))
        .collect();
    let namespace_object = desired::desired(tenant, &ctx.config, &hashes, None)
        .into_iter()
        .find(|o| matches!(o, Object::Namespace(_)));
    for object in namespace_object.iter() {
        apply_object(&ctx.client, object)
            .await
            .map_err(kube_err(format!("apply {}", object.describe())))?;
    }
    let public_keys = crate::identity::ensure_secrets(&ctx.client, tenant, &ctx.config, namespace)
        .await
        .map_err(kube_err("ensure the signing key and the owner's Secret"))?;
    let nats_credentials = match ctx.nats_issuer.as_deref() {
        Some(issuer) if ctx.config.nats_credentials => Some(
            crate::nats_auth::ensure_secret(&ctx.client, tenant, &ctx.config, namespace, issuer)
                .await?,
        ),
        _ => None,
    };
    let objects = desired::desired_with_nats(
        tenant,
        &ctx.config,
        &hashes,
        Some(&public_keys),
        nats_credentials.as_deref(),
    );
    if databases.provisioned.is_ok() {
        for (service, url) in &databases.urls {
            let secret = desired::database_secret(tenant, &ctx.config, *service, url);
            apply_namespaced(&ctx.client, &secret)
                .await
                .map_err(kube_err(format!(
                    "apply Secret/{}",
                    desired::secret_name(*service)
                )))?;
        }
    }
    let mut ready = BTreeMap::new();
    for object in objects
        .iter()
        .filter(|o| !matches!(o, Object::Namespace(_)))
    {
        if let Some(deployment) = apply_object(&ctx.client, object)
            .await
            .map_err(kube_err(format!("apply {}", object.describe())))?
        {
            let replicas = deployment
                .status
                .as_ref()
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0);
            ready.insert(deployment.name_any(), replicas);
        }
    }
    Ok(Applied { objects, ready })
}

/// Runs the cleanup; a failure (stream or databases not removed, status not written) goes into
/// the `Ready` condition and a Warning Event, the tenant staying `Deleting` until it succeeds.
async fn cleanup_tenant(tenant: Arc<CarErpTenant>, ctx: &Context) -> Result<Action, Error> {
    let result = clean_up(&tenant, ctx).await;
    if let Err(err) = &result {
        report_failure(
            ctx,
            &tenant,
            err.reason(),
            format!("cannot finish deleting the tenant: {err}"),
        )
        .await;
    }
    result
}

async fn clean_up(tenant: &CarErpTenant, ctx: &Context) -> Result<Action, Error> {
    let name = tenant.name_any();
    let mut status = tenant.status.clone().unwrap_or_default();
    if status.phase != Some(Phase::Deleting) {
        status.phase = Some(Phase::Deleting);
        report(ctx, tenant, &status)
            .await
            .map_err(kube_err("write the status"))?;
    }
    // The stream is the tenant's data as much as its databases (events not yet consumed,
    // the dead letters): `Retain` keeps both.
    if tenant.spec.database.deletion_policy == DeletionPolicy::Delete {
        ctx.provisioner.delete_stream(&name).await?;
        ctx.provisioner.drop_databases(&name).await?;
        publish(
            ctx,
            tenant,
            EventType::Normal,
            "Deleted",
            "stream deleted, databases dropped".into(),
        )
        .await;
    } else {
        publish(
            ctx,
            tenant,
            EventType::Normal,
            "Deleted",
            "stream and databases retained".into(),
        )
        .await;
    }
    ctx.metrics.forget(&name);
    Ok(Action::await_change())
}

/// One reconcile of one tenant, behind the finalizer (one trace span each).
#[tracing::instrument(skip_all, fields(tenant = %tenant.name_any(), generation = tenant.metadata.generation))]
pub async fn reconcile(tenant: Arc<CarErpTenant>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let name = tenant.name_any();
    let api: Api<CarErpTenant> = Api::all(ctx.client.clone());
    let result = finalizer(&api, FINALIZER, tenant.clone(), |event| async {
        match event {
            Finalizer::Apply(tenant) => apply_tenant(tenant, &ctx).await,
            Finalizer::Cleanup(tenant) => cleanup_tenant(tenant, &ctx).await,
        }
    })
    .await
    .map_err(|err| Error::Finalizer(Box::new(err)));
    // Applying and cleaning up report their own failures; adding or removing the finalizer
    // itself is reported here.
    if let Err(err @ Error::Finalizer(inner)) = &result
        && matches!(
            inner.as_ref(),
            kube::runtime::finalizer::Error::AddFinalizer(_)
                | kube::runtime::finalizer::Error::RemoveFinalizer(_)
        )
    {
        report_failure(&ctx, &tenant, err.reason(), err.to_string()).await;
    }
    ctx.metrics
        .observe(started.elapsed(), result.as_ref().err().map(Error::reason));
    if result.is_ok() {
        ctx.succeeded(&name);
    }
    result
}

/// Requeue a failed tenant with backoff; the reason is already in its conditions.
pub fn error_policy(tenant: Arc<CarErpTenant>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff(&tenant.name_any());
    tracing::warn!(tenant = %tenant.name_any(), reason = error.reason(), error = %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// Runs the controller until `shutdown` resolves.
pub async fn run(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let tenants: Api<CarErpTenant> = Api::all(ctx.client.clone());
    let deployments: Api<Deployment> = Api::all(ctx.client.clone());
    Controller::new(tenants, watcher::Config::default().any_semantic())
        .owns(
            deployments,
            watcher::Config::default().labels("app.kubernetes.io/managed-by=carerp-operator"),
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(tenant = %object.name, "reconciled"),
                Err(err) => tracing::debug!(error = %err, "reconcile did not complete"),
            }
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_namespace_made_for_this_very_tenant_is_used() {
        let tenant: CarErpTenant = serde_json::from_value(serde_json::json!({
            "apiVersion": "carerp.io/v1alpha1", "kind": "CarErpTenant",
            "metadata": { "name": "acme", "uid": "uid-1" },
            "spec": { "displayName": "ACME" }
        }))
        .unwrap();
        let namespace = |labels: serde_json::Value, owner_uid: Option<&str>| {
            let owners: Vec<serde_json::Value> = owner_uid
                .map(|uid| {
                    serde_json::json!({
                        "apiVersion": "carerp.io/v1alpha1", "kind": "CarErpTenant",
                        "name": "acme", "uid": uid
                    })
                })
                .into_iter()
                .collect();
            serde_json::from_value::<k8s_openapi::api::core::v1::Namespace>(serde_json::json!({
                "metadata": { "name": "carerp-acme", "labels": labels, "ownerReferences": owners }
            }))
            .unwrap()
        };
        let ours = serde_json::json!({
            "app.kubernetes.io/managed-by": "carerp-operator", "carerp.io/tenant": "acme"
        });
        assert_eq!(
            foreign_namespace(&namespace(ours.clone(), Some("uid-1")), &tenant),
            None
        );
        let cases = [
            (
                namespace(serde_json::json!({}), None),
                "not managed by the Car ERP operator",
            ),
            (
                namespace(
                    serde_json::json!({
                        "app.kubernetes.io/managed-by": "carerp-operator", "carerp.io/tenant": "other"
                    }),
                    Some("uid-1"),
                ),
                "belongs to tenant other",
            ),
            (
                namespace(ours.clone(), Some("uid-0")),
                "owned by another CarErpTenant acme (uid uid-0)",
            ),
            (namespace(ours, None), "not owned by this tenant"),
        ];
        for (ns, why) in cases {
            let refused = foreign_namespace(&ns, &tenant).unwrap();
            assert!(refused.contains(why), "{refused}");
        }
    }

    #[test]
    fn passwords_are_read_back_from_urls() {
        assert_eq!(
            password_from_url("postgres://t_a_customer:s3cret@db:5432/t_a_customer").as_deref(),
            Some("s3cret")
        );
        assert_eq!(password_from_url("postgres://db/x"), None);
        assert_eq!(password_from_url("postgres://user@db/x"), None);
    }
}
