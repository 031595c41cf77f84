//! Logs and traces.
//!
//! Every log line is one JSON object with `timestamp`, `level`, `service`, `tenant`,
//! `trace_id`, `correlation_id`, `action` and `message` (the seed's format, plus trace ids),
//! so one search finds everything a request caused across services. The request's ids live
//! as fields of its span; [`JsonLogLayer`] copies them onto every line logged inside it.

use std::io::Write;

use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::config::{LogFormat, ServiceConfig};
use crate::context::RequestContext;

/// Flushes and stops trace export when dropped, at the end of `main`.
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(err) = provider.shutdown()
        {
            eprintln!("trace export did not shut down cleanly: {err}");
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("cannot build the OTLP exporter for {endpoint}: {reason}")]
    Exporter { endpoint: String, reason: String },
    #[error("a global subscriber is already installed")]
    AlreadyInstalled,
}

/// Installs the global subscriber: logs in the configured format, and OTLP trace export when
/// `OTEL_EXPORTER_OTLP_ENDPOINT` is set. Call once, from `main`.
pub fn init(config: &ServiceConfig) -> Result<TelemetryGuard, TelemetryError> {
    init_with_writer(config, std::io::stdout)
}

/// [`init`], with log lines written where `make_writer` says (tests read them back).
///
/// Must be called inside a Tokio runtime when trace export is on: the exporter's gRPC channel
/// runs on it.
pub fn init_with_writer<W>(
    config: &ServiceConfig,
    make_writer: W,
) -> Result<TelemetryGuard, TelemetryError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,h2=warn,tower=warn,hyper=warn"));
    let provider = match &config.otlp_endpoint {
        Some(endpoint) => Some(otlp_provider(config.service, endpoint)?),
        None => None,
    };
    let otel_layer = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer().with_tracer(provider.tracer(config.service))
    });
    let registry = tracing_subscriber::registry().with(filter).with(otel_layer);
    let installed = match config.log_format {
        LogFormat::Json => registry
            .with(JsonLogLayer::new(
                config.service,
                &config.tenant,
                make_writer,
            ))
            .try_init(),
        LogFormat::Pretty => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .compact()
                    .with_writer(make_writer),
            )
            .try_init(),
    };
    installed.map_err(|_| TelemetryError::AlreadyInstalled)?;
    Ok(TelemetryGuard { provider })
}

fn otlp_provider(service: &str, endpoint: &str) -> Result<SdkTracerProvider, TelemetryError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(|err| TelemetryError::Exporter {
            endpoint: endpoint.into(),
            reason: err.to_string(),
        })?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(format!("carerp-{service}"))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// Opens the span of one unit of work (a gRPC call, a consumed event) and settles its ids.
///
/// With trace export on, the span continues the caller's trace and its own OpenTelemetry
/// ids become the context's; without it, the context's ids stand. Either way the ids in log
/// lines, outgoing calls and events are the ids of this span.
pub fn request_span(action: &str, mut context: RequestContext) -> (tracing::Span, RequestContext) {
    let span = tracing::info_span!(
        "request",
        otel.name = %action,
        action = %action,
        correlation_id = %context.correlation_id,
        trace_id = tracing::field::Empty,
    );
    if let Some(parent) = remote_parent(&context) {
        // Fails only when no OpenTelemetry layer is installed; the context's ids stand then.
        let _ = span.set_parent(parent);
    }
    let own = span.context().span().span_context().clone();
    if own.is_valid() {
        context.trace_id = own.trace_id().to_string();
        context.span_id = own.span_id().to_string();
    }
    span.record("trace_id", context.trace_id.as_str());
    (span, context)
}

fn remote_parent(context: &RequestContext) -> Option<opentelemetry::Context> {
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
    let parent = context.parent_span_id.as_deref()?;
    let span_context = SpanContext::new(
        TraceId::from_hex(&context.trace_id).ok()?,
        SpanId::from_hex(parent).ok()?,
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    Some(opentelemetry::Context::new().with_remote_span_context(span_context))
}

/// The ids a span contributes to the lines logged inside it.
#[derive(Debug, Default, Clone)]
struct SpanIds {
    trace_id: Option<String>,
    correlation_id: Option<String>,
    action: Option<String>,
}

impl SpanIds {
    /// Fields of an inner span win over those of outer ones.
    fn overlay(&mut self, inner: &SpanIds) {
        if inner.trace_id.is_some() {
            self.trace_id.clone_from(&inner.trace_id);
        }
        if inner.correlation_id.is_some() {
            self.correlation_id.clone_from(&inner.correlation_id);
        }
        if inner.action.is_some() {
            self.action.clone_from(&inner.action);
        }
    }
}

impl Visit for SpanIds {
    fn record_str(&mut self, field: &Field, value: &str) {
        let slot = match field.name() {
            "trace_id" => &mut self.trace_id,
            "correlation_id" => &mut self.correlation_id,
            "action" => &mut self.action,
            _ => return,
        };
        *slot = Some(value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }
}

/// The fields of one event: its message, an `action` if it names one, and the rest.
#[derive(Default)]
struct EventFields {
    message: String,
    action: Option<String>,
    extra: Map<String, Value>,
}

impl Visit for EventFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message = value.to_string(),
            "action" => self.action = Some(value.to_string()),
            name => {
                self.extra.insert(name.to_string(), Value::from(value));
            }
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.extra
            .insert(field.name().to_string(), Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.extra
            .insert(field.name().to_string(), Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.extra
            .insert(field.name().to_string(), Value::from(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.extra
            .insert(field.name().to_string(), Value::from(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }
}

/// Writes each event as one JSON line in the documented shape.
pub struct JsonLogLayer<W> {
    service: String,
    tenant: String,
    make_writer: W,
}

impl<W> JsonLogLayer<W> {
    pub fn new(service: &str, tenant: &str, make_writer: W) -> Self {
        Self {
            service: service.to_string(),
            tenant: tenant.to_string(),
            make_writer,
        }
    }
}

impl<S, W> Layer<S> for JsonLogLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        let mut ids = SpanIds::default();
        attrs.record(&mut ids);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(ids);
        }
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: Context<'_, S>,
    ) {
        if let Some(span) = ctx.span(id)
            && let Some(ids) = span.extensions_mut().get_mut::<SpanIds>()
        {
            values.record(ids);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut ids = SpanIds::default();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(inner) = span.extensions().get::<SpanIds>() {
                    ids.overlay(inner);
                }
            }
        }
        let mut fields = EventFields::default();
        event.record(&mut fields);

        let metadata = event.metadata();
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            Value::from(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        );
        line.insert(
            "level".into(),
            Value::from(metadata.level().as_str().to_ascii_lowercase()),
        );
        line.insert("service".into(), Value::from(self.service.as_str()));
        line.insert("tenant".into(), Value::from(self.tenant.as_str()));
        line.insert(
            "trace_id".into(),
            ids.trace_id.map_or(Value::Null, Value::from),
        );
        line.insert(
            "correlation_id".into(),
            ids.correlation_id.map_or(Value::Null, Value::from),
        );
        let action = fields
            .action
            .or(ids.action)
            .unwrap_or_else(|| metadata.target().to_string());
        line.insert("action".into(), Value::from(action));
        line.insert("message".into(), Value::from(fields.message));
        for (key, value) in fields.extra {
            line.entry(key).or_insert(value);
        }

        let mut text = Value::Object(line).to_string();
        text.push('\n');
        // A log line that cannot be written has nowhere better to go.
        let _ = self.make_writer.make_writer().write_all(text.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

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

    fn lines(captured: &Captured) -> Vec<Value> {
        let bytes = captured.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    #[test]
    fn every_line_has_the_documented_fields_from_the_enclosing_span() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::registry().with(JsonLogLayer::new(
            "customer",
            "acme-motors",
            move || writer.clone(),
        ));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(
                "grpc",
                action = "CreateCustomer",
                correlation_id = "corr-1",
                trace_id = tracing::field::Empty
            );
            span.record("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736");
            let _entered = span.enter();
            tracing::info!(customer_id = 7, "customer created");
            tracing::warn!(action = "CreateCustomer.failed", "refused");
        });
        tracing::subscriber::with_default(
            tracing_subscriber::registry().with(JsonLogLayer::new("customer", "acme", {
                let writer = captured.clone();
                move || writer.clone()
            })),
            || tracing::info!("outside any request"),
        );

        let lines = lines(&captured);
        assert_eq!(lines.len(), 3);
        let first = &lines[0];
        for key in [
            "timestamp",
            "level",
            "service",
            "tenant",
            "trace_id",
            "correlation_id",
            "action",
            "message",
        ] {
            assert!(first.get(key).is_some(), "{key} missing in {first}");
        }
        assert_eq!(first["level"], "info");
        assert_eq!(first["service"], "customer");
        assert_eq!(first["tenant"], "acme-motors");
        assert_eq!(first["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(first["correlation_id"], "corr-1");
        assert_eq!(first["action"], "CreateCustomer");
        assert_eq!(first["message"], "customer created");
        assert_eq!(first["customer_id"], 7);
        assert_eq!(lines[1]["action"], "CreateCustomer.failed");
        assert_eq!(lines[1]["level"], "warn");
        assert_eq!(lines[2]["trace_id"], Value::Null);
        assert_eq!(lines[2]["action"], "carerp_kit::telemetry::tests");
    }
}
