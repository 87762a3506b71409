//! Logs, traces and metrics for every service.
//!
//! - Logs: `tracing` with JSON (production) or pretty (a developer's terminal) output.
//! - Traces: spans become OpenTelemetry spans; exported over OTLP/gRPC when an endpoint is
//!   configured. The W3C `traceparent` is extracted from incoming HTTP headers and gRPC metadata
//!   and injected into outgoing gRPC metadata, so one trace spans gateway → services.
//! - Metrics: the `metrics` facade with a Prometheus recorder, rendered on each service's admin
//!   port at `/metrics`.
//!
//! Subscribers and recorders are process-wide by nature; [`init`] installs them once, and a
//! second call (the embedded fleet starts six services in one process) is a no-op.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde::{Deserialize, Serialize};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line, for log collectors.
    #[default]
    Json,
    /// Human-readable, for a terminal.
    Pretty,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    pub log_format: LogFormat,
    /// An `EnvFilter` directive, e.g. `info` or `info,catalog=debug`.
    pub log_level: String,
    /// OTLP/gRPC collector, e.g. `http://otel-collector:4317`. Traces are exported only when set.
    pub otlp_endpoint: Option<String>,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Json,
            log_level: "info".into(),
            otlp_endpoint: None,
        }
    }
}

impl TelemetryConfig {
    pub fn validate(&self) -> Result<(), String> {
        EnvFilter::try_new(&self.log_level)
            .map_err(|error| format!("telemetry.log_level `{}`: {error}", self.log_level))?;
        if let Some(endpoint) = &self.otlp_endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(format!(
                "telemetry.otlp_endpoint must be an http(s) URL (got `{endpoint}`)"
            ));
        }
        Ok(())
    }
}

/// Keeps the trace pipeline alive; flushes pending spans when dropped.
pub struct TelemetryGuard {
    tracer_provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.tracer_provider.take()
            && let Err(error) = provider.shutdown()
        {
            eprintln!("pillivery: flushing traces failed: {error}");
        }
    }
}

/// Installs logging, tracing and the metrics recorder for this process.
///
/// Must be called from within a Tokio runtime when an OTLP endpoint is set (the batch exporter
/// runs on it).
pub fn init(service_name: &str, config: &TelemetryConfig) -> TelemetryGuard {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    let mut guard = TelemetryGuard {
        tracer_provider: None,
    };
    if INSTALLED.set(()).is_err() {
        return guard;
    }
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let _ = metrics_handle();

    let mut provider_builder = SdkTracerProvider::builder().with_resource(
        opentelemetry_sdk::Resource::builder()
            .with_service_name(service_name.to_owned())
            .build(),
    );
    let mut export_error = None;
    if let Some(endpoint) = &config.otlp_endpoint {
        use opentelemetry_otlp::WithExportConfig;
        match opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone())
            .build()
        {
            Ok(exporter) => provider_builder = provider_builder.with_batch_exporter(exporter),
            Err(error) => export_error = Some(error.to_string()),
        }
    }
    let provider = provider_builder.build();
    let tracer = provider.tracer(service_name.to_owned());
    opentelemetry::global::set_tracer_provider(provider.clone());

    // The log level filters the log output only: the trace layer keeps every span at INFO and
    // above, so a quiet log (`warn`) does not break trace propagation between services.
    let log_filter =
        EnvFilter::try_new(&config.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    let format_layer = match config.log_format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_filter(log_filter)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .compact()
            .with_filter(log_filter)
            .boxed(),
    };
    let trace_layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(tracing_subscriber::filter::LevelFilter::INFO);
    let installed = tracing_subscriber::registry()
        .with(format_layer)
        .with(trace_layer)
        .try_init();
    if installed.is_ok() {
        if let Some(error) = export_error {
            tracing::error!(%error, "OTLP exporter could not be built; traces are not exported");
        }
        guard.tracer_provider = Some(provider);
    }
    guard
}

/// The process-wide Prometheus recorder, installed on first use.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder was installed first (a test harness); the handle
            // then renders an empty page rather than crashing the service.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Makes the current span a child of the trace described by `traceparent`/`tracestate` in
/// `carrier` (HTTP headers or gRPC metadata).
pub fn continue_trace(span: &tracing::Span, carrier: &impl Extractor) {
    let parent =
        opentelemetry::global::get_text_map_propagator(|propagator| propagator.extract(carrier));
    let _ = span.set_parent(parent);
    // Every log line inside the span carries the trace id (JSON logs include the span's
    // fields), so logs and traces of one request can be joined. Spans without a `trace_id`
    // field ignore this.
    let trace_id = trace_id_of(span);
    if !trace_id.is_empty() {
        span.record("trace_id", trace_id.as_str());
    }
}

/// Writes the current span's W3C context into `carrier` (outgoing gRPC metadata).
pub fn inject_trace(span: &tracing::Span, carrier: &mut impl Injector) {
    let context = span.context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, carrier)
    });
}

/// HTTP headers as a propagation carrier.
pub struct HeaderCarrier<'a>(pub &'a http::HeaderMap);

impl Extractor for HeaderCarrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|name| name.as_str()).collect()
    }
}

/// gRPC metadata as a propagation carrier, for both directions.
pub struct MetadataCarrier<'a>(pub &'a mut tonic::metadata::MetadataMap);

impl Extractor for MetadataCarrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .filter_map(|key| match key {
                tonic::metadata::KeyRef::Ascii(name) => Some(name.as_str()),
                tonic::metadata::KeyRef::Binary(_) => None,
            })
            .collect()
    }
}

impl Injector for MetadataCarrier<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// The trace id of `span` as hex (empty when it has none, e.g. tracing is not installed).
pub fn trace_id_of(span: &tracing::Span) -> String {
    use opentelemetry::trace::TraceContextExt;
    let context = span.context();
    let span_context = context.span().span_context().clone();
    if span_context.is_valid() {
        span_context.trace_id().to_string()
    } else {
        String::new()
    }
}
