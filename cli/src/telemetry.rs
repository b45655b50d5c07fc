//! Logging and tracing, set up once per process. Logs go to stderr (`RUST_LOG`, default
//! `info`). When `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is
//! set, spans also go to that OTLP collector over gRPC, batched on a thread and runtime of
//! their own so that exporting never holds up a request: when the collector is down or slow,
//! spans are dropped (and counted) instead. `service.name` is the role unless
//! `OTEL_SERVICE_NAME` says otherwise; sampling follows `OTEL_TRACES_SAMPLER`/`_ARG`.

use std::sync::atomic::{AtomicU64, Ordering};

use opentelemetry::trace::TracerProvider;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use opentelemetry_sdk::Resource;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;

/// Spans lost because an export to the collector failed.
pub static SPANS_DROPPED: AtomicU64 = AtomicU64::new(0);

/// Keeps the exporter alive; dropping it flushes what is queued (briefly) and stops it.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
    _runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = provider.shutdown();
        }
    }
}

/// An exporter that counts the spans of every batch it failed to deliver.
#[derive(Debug)]
struct Counted<E>(E);

impl<E: SpanExporter> SpanExporter for Counted<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len() as u64;
        let result = self.0.export(batch).await;
        if result.is_err() {
            SPANS_DROPPED.fetch_add(n, Ordering::Relaxed);
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: std::time::Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.0.set_resource(resource);
    }
}

pub fn init(role: &str) -> anyhow::Result<Telemetry> {
    opentelemetry::global::set_text_map_propagator(opentelemetry_sdk::propagation::TraceContextPropagator::new());
    // RUST_LOG picks the log lines; spans for tracing are info level whatever it says, so
    // quieting the logs does not blind the traces.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    // Colours only on a terminal: a log file or a pipe gets plain text (and NO_COLOR is honoured).
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(colour).with_filter(filter);
    let wanted = ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|s| !s.is_empty()));
    if !wanted {
        tracing_subscriber::registry().with(logs).init();
        return Ok(Telemetry { provider: None, _runtime: None });
    }
    // The tonic exporter's connection lives on this runtime, apart from the request runtime.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("otlp-export")
        .enable_all()
        .build()?;
    let exporter = runtime.block_on(async { opentelemetry_otlp::SpanExporter::builder().with_tonic().build() })?;
    let name = std::env::var("OTEL_SERVICE_NAME").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| role.to_string());
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(Counted(exporter))
        .with_resource(Resource::builder().with_service_name(name).build())
        .build();
    let tracer = provider.tracer("jacolbert");
    let spans = tracing_opentelemetry::layer().with_tracer(tracer).with_filter(LevelFilter::INFO);
    tracing_subscriber::registry().with(logs).with(spans).init();
    Ok(Telemetry { provider: Some(provider), _runtime: Some(runtime) })
}
