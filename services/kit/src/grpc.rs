//! gRPC server plumbing: authentication and the permission check, request context and
//! logging, metrics, health, reflection, and a graceful drain.

use std::net::SocketAddr;
use std::task::{Context as TaskContext, Poll};
use std::time::Instant;

use futures::future::BoxFuture;
use http::{HeaderMap, Request, Response};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::body::Body;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Status};
use tracing::Instrument;

use crate::auth::{AUTHORIZATION_HEADER, Principal, TokenError, VerifyingKeys};
use crate::context::{CORRELATION_HEADER, RequestContext, TRACEPARENT_HEADER};
use crate::metrics::Metrics;
use crate::permissions;
use crate::telemetry::request_span;

/// Wraps every gRPC call: takes or makes the correlation id and trace context, opens the
/// request span, verifies the caller's token and checks the permission table before any
/// handler runs, logs the outcome once, and records metrics.
#[derive(Clone)]
pub struct RequestLayer {
    metrics: Metrics,
    keys: VerifyingKeys,
}

impl RequestLayer {
    pub fn new(metrics: Metrics, keys: VerifyingKeys) -> Self {
        Self { metrics, keys }
    }
}

impl<S> tower::Layer<S> for RequestLayer {
    type Service = RequestService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestService {
            inner,
            metrics: self.metrics.clone(),
            keys: self.keys.clone(),
        }
    }
}

#[derive(Clone)]
pub struct RequestService<S> {
    inner: S,
    metrics: Metrics,
    keys: VerifyingKeys,
}

impl<S, ResBody> tower::Service<Request<Body>> for RequestService<S>
where
    S: tower::Service<Request<Body>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send,
    ResBody: Default + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        // The clone is the one that was not polled ready; keep the ready one for this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let method = request.uri().path().to_string();
        if is_infrastructure(&method) {
            return Box::pin(inner.call(request));
        }
        let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok());
        let incoming =
            RequestContext::from_headers(header(CORRELATION_HEADER), header(TRACEPARENT_HEADER));
        let action = method.rsplit('/').next().unwrap_or_default().to_string();
        let (span, mut context) = request_span(&action, incoming);
        let admitted = admit(&self.keys, &method, header(AUTHORIZATION_HEADER));
        let metrics = self.metrics.clone();
        let started = Instant::now();
        let admitted = match admitted {
            Ok(principal) => {
                context.principal = principal;
                request.extensions_mut().insert(context);
                Ok(inner)
            }
            Err(status) => Err(status),
        };
        Box::pin(
            async move {
                let result = match admitted {
                    Ok(mut inner) => inner.call(request).await,
                    Err(status) => Ok(status.into_http()),
                };
                let code = match &result {
                    Ok(response) => grpc_code(response.headers()),
                    Err(_) => Code::Unknown,
                };
                let elapsed = started.elapsed();
                metrics.observe_grpc(&method, code, elapsed);
                let elapsed_ms = elapsed.as_millis() as u64;
                match code {
                    Code::Ok => tracing::info!(elapsed_ms, "{action} completed"),
                    Code::Internal | Code::Unknown | Code::DataLoss | Code::Unavailable => {
                        tracing::error!(elapsed_ms, code = ?code, "{action} failed")
                    }
                    _ => tracing::warn!(elapsed_ms, code = ?code, "{action} refused"),
                }
                result
            }
            .instrument(span),
        )
    }
}

/// The caller of `method`, or the refusal: public methods need no token (a token sent
/// anyway is still checked, so a forged one is never silently ignored); every other method
/// needs a valid token of a role the permission table allows.
fn admit(
    keys: &VerifyingKeys,
    method: &str,
    authorization: Option<&str>,
) -> Result<Option<Principal>, Status> {
    if permissions::is_public(method) && authorization.is_none() {
        return Ok(None);
    }
    let principal = keys
        .verify_header(authorization)
        .map_err(|err| Status::unauthenticated(err.to_string()))?;
    if !permissions::is_public(method) {
        permissions::require(principal.role, method)?;
    }
    Ok(Some(principal))
}

/// The caller of a handler's request: every method but the public ones has one, since the
/// layer refused the call otherwise.
pub fn principal<T>(request: &tonic::Request<T>) -> Result<Principal, Status> {
    request
        .extensions()
        .get::<RequestContext>()
        .and_then(|context| context.principal.clone())
        .ok_or_else(|| Status::unauthenticated(TokenError::Missing.to_string()))
}

/// Health checks and reflection are neither logged nor counted: probes would drown the rest.
fn is_infrastructure(method: &str) -> bool {
    method.starts_with("/grpc.health.") || method.starts_with("/grpc.reflection.")
}

/// Unary errors are sent trailers-only, so their status is in the headers; a response
/// without one succeeded.
fn grpc_code(headers: &HeaderMap) -> Code {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map(Code::from_i32)
        .unwrap_or(Code::Ok)
}

/// The request context the layer attached; a fresh one when called outside the layer.
pub fn request_context<T>(request: &tonic::Request<T>) -> RequestContext {
    request
        .extensions()
        .get::<RequestContext>()
        .cloned()
        .unwrap_or_else(RequestContext::new_root)
}

/// Adds the caller's token, correlation id and trace context to an outgoing call, so the next
/// service knows who asks and continues the same trace. The principal also rides in the
/// request's extensions, for a client-side permission check (the BFF's channel).
pub fn propagate<T>(context: &RequestContext, mut request: tonic::Request<T>) -> tonic::Request<T> {
    if let Some(principal) = &context.principal {
        if let Ok(value) = format!("Bearer {}", principal.token.expose()).parse() {
            request.metadata_mut().insert(AUTHORIZATION_HEADER, value);
        }
        request.extensions_mut().insert(principal.clone());
    }
    let metadata = request.metadata_mut();
    if let Ok(value) = context.correlation_id.parse() {
        metadata.insert(CORRELATION_HEADER, value);
    }
    if let Ok(value) = context.traceparent().parse() {
        metadata.insert(TRACEPARENT_HEADER, value);
    }
    request
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("reflection service: {0}")]
    Reflection(String),
    #[error("gRPC server failed: {0}")]
    Grpc(#[from] tonic::transport::Error),
    #[error("admin server failed: {0}")]
    Admin(std::io::Error),
    #[error("a task of the service failed: {0}")]
    Task(String),
}

/// A service that is serving; [`RunningService::stop`] drains it.
pub struct RunningService {
    pub grpc_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    shutdown: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<Result<(), ServeError>>>,
}

impl RunningService {
    /// Stops accepting calls, lets the ones in flight finish, and waits for the servers.
    pub async fn stop(self) -> Result<(), ServeError> {
        self.shutdown.cancel();
        self.wait().await
    }

    /// Waits until the servers end (after [`RunningService::stop`] or a failure).
    pub async fn wait(mut self) -> Result<(), ServeError> {
        for task in std::mem::take(&mut self.tasks) {
            match task.await {
                Ok(result) => result?,
                Err(join) => return Err(ServeError::Task(join.to_string())),
            }
        }
        Ok(())
    }

    /// A token that, when cancelled, stops the service; for background tasks that should
    /// end with it.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Runs a background task (relay, consumer) that ends when the service stops; `stop`
    /// waits for it.
    pub fn run_alongside<F>(&mut self, task: impl FnOnce(CancellationToken) -> F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let future = task(self.shutdown.clone());
        self.tasks.push(tokio::spawn(async move {
            future.await;
            Ok(())
        }));
    }
}

/// A service whose handle is dropped stops: its background tasks (relay, consumer) must not
/// outlive the code that started it, holding connections to a database being dropped.
impl Drop for RunningService {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// What a service hands over to be served.
pub struct GrpcService {
    /// Fully-qualified gRPC service name, reported by `grpc.health.v1`.
    pub name: &'static str,
    pub routes: Routes,
    pub metrics: Metrics,
    /// Checked by `/readyz`.
    pub pool: Option<sqlx::PgPool>,
    /// The tenant's public keys: every call's token is verified with them.
    pub verifying_keys: VerifyingKeys,
}

/// Binds the gRPC and admin listeners and serves until stopped.
pub async fn start(
    grpc_addr: SocketAddr,
    admin_addr: SocketAddr,
    service: GrpcService,
) -> Result<RunningService, ServeError> {
    let grpc_listener = bind(grpc_addr).await?;
    let admin_listener = bind(admin_addr).await?;
    let grpc_addr = local_addr(&grpc_listener, grpc_addr)?;
    let admin_addr = local_addr(&admin_listener, admin_addr)?;

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status(service.name, tonic_health::ServingStatus::Serving)
        .await;
    health
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(carerp_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|err| ServeError::Reflection(err.to_string()))?;
    let routes = service
        .routes
        .add_service(health_service)
        .add_service(reflection);

    let shutdown = CancellationToken::new();
    let grpc_shutdown = shutdown.clone();
    let layer = RequestLayer::new(service.metrics.clone(), service.verifying_keys);
    let grpc_task = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .layer(layer)
            .add_routes(routes)
            .serve_with_incoming_shutdown(without_delay(grpc_listener), async move {
                grpc_shutdown.cancelled().await;
                // Tell load balancers first, then drain what is in flight.
                health
                    .set_service_status("", tonic_health::ServingStatus::NotServing)
                    .await;
            })
            .await?;
        Ok::<_, ServeError>(())
    });
    let admin_task = tokio::spawn(crate::admin::serve(
        admin_listener,
        crate::admin::AdminState {
            metrics: service.metrics,
            pool: service.pool,
        },
        shutdown.clone(),
    ));
    tracing::info!(%grpc_addr, %admin_addr, "serving {}", service.name);
    Ok(RunningService {
        grpc_addr,
        admin_addr,
        shutdown,
        tasks: vec![grpc_task, admin_task],
    })
}

/// Connections accepted with TCP_NODELAY: without it a response of more than one segment
/// waits ~40 ms for the client's delayed ACK (the server builder's own nodelay setting does
/// not apply to a listener we bind ourselves).
fn without_delay(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}

pub(crate) async fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })
}

pub(crate) fn local_addr(
    listener: &TcpListener,
    addr: SocketAddr,
) -> Result<SocketAddr, ServeError> {
    listener
        .local_addr()
        .map_err(|source| ServeError::Bind { addr, source })
}

/// Resolves on SIGTERM (Kubernetes) or Ctrl-C (a developer).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            futures::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => futures::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = futures::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_stream::StreamExt;

    #[tokio::test]
    async fn grpc_connections_are_accepted_without_delay() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut incoming = without_delay(listener);
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let accepted = incoming.next().await.unwrap().unwrap();
        assert!(accepted.nodelay().unwrap());
    }
}
