//! The server's logging and, with the `otlp` feature, its OpenTelemetry trace export over OTLP/HTTP
//! (protobuf bodies), configured by the standard `OTEL_*` environment variables
//! (docs/observability.md). What the variables ask for is read here in every build, so a build
//! without the feature refuses a configuration that asks for export instead of ignoring it.
// Without the feature, only whether export is asked for is read; the rest is for the tests.
#![cfg_attr(not(feature = "otlp"), allow(dead_code))]

use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue};
use reqwest::Url;

/// Turns the OpenTelemetry SDK off, whatever else is set (`true`).
const SDK_DISABLED: &str = "OTEL_SDK_DISABLED";
/// `otlp` turns export on (to the default endpoint when none is set), `none` off.
const TRACES_EXPORTER: &str = "OTEL_TRACES_EXPORTER";
/// Used as is.
const TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
/// The collector's base URL; `/v1/traces` is appended.
const ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
const TRACES_HEADERS: &str = "OTEL_EXPORTER_OTLP_TRACES_HEADERS";
const HEADERS: &str = "OTEL_EXPORTER_OTLP_HEADERS";
const TRACES_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL";
const PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
const TRACES_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT";
const TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TIMEOUT";
const TRACES_COMPRESSION: &str = "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION";
const COMPRESSION: &str = "OTEL_EXPORTER_OTLP_COMPRESSION";
const SERVICE_NAME: &str = "OTEL_SERVICE_NAME";
const RESOURCE_ATTRIBUTES: &str = "OTEL_RESOURCE_ATTRIBUTES";

/// The OTLP/HTTP default, when `OTEL_TRACES_EXPORTER=otlp` names no endpoint.
const DEFAULT_TRACES_ENDPOINT: &str = "http://localhost:4318/v1/traces";

/// A trace export setting that cannot be used. Messages name the variable and never print a
/// header's value (headers carry collectors' API keys).
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("{var} is set, but this brevet was built without OpenTelemetry trace export: build it with the `otlp` feature (`cargo build --release -p brevet-cli --features otlp`), or unset {var} (or set OTEL_TRACES_EXPORTER=none) to run without trace export")]
    #[cfg_attr(feature = "otlp", allow(dead_code))]
    NotBuiltIn { var: &'static str },
    #[error("{var}={value:?} is not supported: use `otlp` (export traces) or `none`")]
    UnknownExporter { var: &'static str, value: String },
    #[error("{var} is not a valid URL ({reason}): give the collector's OTLP/HTTP address, such as http://otel-collector:4318")]
    Endpoint { var: &'static str, reason: String },
    #[error("{var}={value:?} is not supported: this build exports over HTTP with protobuf bodies; set it to http/protobuf (and point the endpoint at the collector's HTTP port, 4318 by default)")]
    Protocol { var: &'static str, value: String },
    #[error("{var}: entry {position} {reason}; write headers as key=value pairs separated by commas, values percent-encoded")]
    Header {
        var: &'static str,
        position: usize,
        reason: String,
    },
    #[error("{var}={value:?} is not a timeout: give it in whole milliseconds, such as 10000")]
    Timeout { var: &'static str, value: String },
    #[error("{var}={value:?} is not supported: this build sends spans uncompressed; unset it or set it to none")]
    Compression { var: &'static str, value: String },
    #[error("{var} is not valid Unicode")]
    NotUnicode { var: &'static str },
    #[cfg(feature = "otlp")]
    #[error("cannot set up the OTLP trace exporter: {0}")]
    Build(#[from] opentelemetry_otlp::ExporterBuildError),
}

/// Where and how spans are sent, read from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceExport {
    /// The full URL spans are POSTed to (`…/v1/traces`).
    pub endpoint: Url,
    /// Extra request headers, values as written (percent-encoded); never logged.
    headers: Vec<(String, String)>,
    pub timeout: Option<Duration>,
    /// `service.name`, unless `OTEL_RESOURCE_ATTRIBUTES` sets it.
    pub service_name: Option<String>,
}

impl TraceExport {
    /// The endpoint as it can be shown: scheme, host, port and path (a query may carry a key).
    pub fn endpoint_shown(&self) -> String {
        let mut shown = self.endpoint.clone();
        shown.set_query(None);
        shown.set_fragment(None);
        shown.to_string()
    }
}

/// Reads one variable: unset and empty are the same (as the OpenTelemetry specification says).
type Lookup<'a> = &'a dyn Fn(&'static str) -> Result<Option<String>, TelemetryError>;

fn from_process(var: &'static str) -> Result<Option<String>, TelemetryError> {
    match std::env::var(var) {
        Ok(v) if v.trim().is_empty() => Ok(None),
        Ok(v) => Ok(Some(v)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(TelemetryError::NotUnicode { var }),
    }
}

/// Which variable asks for trace export, if any does: an endpoint, or `OTEL_TRACES_EXPORTER=otlp`;
/// `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` turn it off.
fn requested_by(env: Lookup<'_>) -> Result<Option<&'static str>, TelemetryError> {
    if env(SDK_DISABLED)?.is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return Ok(None);
    }
    let exporter = env(TRACES_EXPORTER)?;
    match exporter.as_deref().map(|v| v.trim().to_ascii_lowercase()) {
        Some(v) if v == "none" => return Ok(None),
        Some(v) if v == "otlp" => {}
        Some(_) => {
            return Err(TelemetryError::UnknownExporter {
                var: TRACES_EXPORTER,
                value: exporter.unwrap_or_default(),
            })
        }
        None => {}
    }
    for var in [TRACES_ENDPOINT, ENDPOINT] {
        if env(var)?.is_some() {
            return Ok(Some(var));
        }
    }
    Ok(exporter.map(|_| TRACES_EXPORTER))
}

/// The export the environment asks for (`None`: none), every value checked.
fn trace_export(env: Lookup<'_>) -> Result<Option<TraceExport>, TelemetryError> {
    if requested_by(env)?.is_none() {
        return Ok(None);
    }
    let endpoint = match (env(TRACES_ENDPOINT)?, env(ENDPOINT)?) {
        (Some(url), _) => endpoint_url(TRACES_ENDPOINT, &url)?,
        (None, Some(base)) => {
            let mut url = endpoint_url(ENDPOINT, &base)?;
            let path = format!("{}/v1/traces", url.path().trim_end_matches('/'));
            url.set_path(&path);
            url
        }
        (None, None) => endpoint_url(TRACES_EXPORTER, DEFAULT_TRACES_ENDPOINT)?,
    };
    let (var, protocol) = first_set(env, TRACES_PROTOCOL, PROTOCOL)?;
    if let Some(p) = protocol {
        if p.trim() != "http/protobuf" {
            return Err(TelemetryError::Protocol { var, value: p });
        }
    }
    let (var, compression) = first_set(env, TRACES_COMPRESSION, COMPRESSION)?;
    if let Some(c) = compression {
        if !c.trim().eq_ignore_ascii_case("none") {
            return Err(TelemetryError::Compression { var, value: c });
        }
    }
    let (var, timeout) = first_set(env, TRACES_TIMEOUT, TIMEOUT)?;
    let timeout = match timeout {
        None => None,
        Some(t) => Some(Duration::from_millis(
            t.trim()
                .parse::<u64>()
                .map_err(|_| TelemetryError::Timeout { var, value: t })?,
        )),
    };
    let (var, headers) = first_set(env, TRACES_HEADERS, HEADERS)?;
    let headers = match headers {
        None => Vec::new(),
        Some(h) => parse_headers(var, &h)?,
    };
    let service_name = env(SERVICE_NAME)?.map(|s| s.trim().to_owned());
    // Brevet's own name unless the operator named the service, here or among the attributes.
    let named_in_attributes = env(RESOURCE_ATTRIBUTES)?.is_some_and(|a| {
        a.split(',')
            .any(|kv| kv.split('=').next().map(str::trim) == Some("service.name"))
    });
    let service_name = match service_name {
        Some(s) => Some(s),
        None if named_in_attributes => None,
        None => Some("brevet".to_owned()),
    };
    Ok(Some(TraceExport {
        endpoint,
        headers,
        timeout,
        service_name,
    }))
}

/// The signal's own variable if set, else the general one (as the specification orders them).
fn first_set(
    env: Lookup<'_>,
    signal: &'static str,
    general: &'static str,
) -> Result<(&'static str, Option<String>), TelemetryError> {
    Ok(match env(signal)? {
        Some(v) => (signal, Some(v)),
        None => (general, env(general)?),
    })
}

fn endpoint_url(var: &'static str, value: &str) -> Result<Url, TelemetryError> {
    let bad = |reason: &str| TelemetryError::Endpoint {
        var,
        reason: reason.to_owned(),
    };
    // The parser's messages never repeat the input, which may hold a password.
    let url = Url::parse(value.trim()).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("its scheme must be http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("it names no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "it holds credentials; put them in OTEL_EXPORTER_OTLP_HEADERS instead, which is never logged",
        ));
    }
    Ok(url)
}

/// `key=value` pairs separated by commas, values percent-encoded (the W3C baggage format the
/// specification uses). Errors say which entry and, for a bad key, the key, never a value.
fn parse_headers(var: &'static str, text: &str) -> Result<Vec<(String, String)>, TelemetryError> {
    let mut out = Vec::new();
    for (i, entry) in text.split(',').enumerate() {
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        let bad = |reason: String| TelemetryError::Header {
            var,
            position: i + 1,
            reason,
        };
        let Some((key, value)) = entry.split_once('=') else {
            return Err(bad("has no `=`".into()));
        };
        let key = key.trim();
        if HeaderName::from_bytes(key.as_bytes()).is_err() {
            return Err(bad(format!("has `{key}`, which is not a header name")));
        }
        let value = value.trim();
        if value.is_empty() {
            return Err(bad(format!("(`{key}`) has no value")));
        }
        let decoded = percent_decode(value).ok_or_else(|| {
            bad(format!(
                "(`{key}`) has a value that is not percent-encoded UTF-8"
            ))
        })?;
        if HeaderValue::from_str(&decoded).is_err() {
            return Err(bad(format!(
                "(`{key}`) has a value that cannot be sent in a header"
            )));
        }
        out.push((key.to_owned(), value.to_owned()));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// What is logged and exported: `BREVET_LOG` (default `info`), with the OpenTelemetry crates
/// held to warnings, whose debug output may echo a collector's answer. One filter for both, in
/// front of every layer: per-layer filters (`Layer::with_filter`) were seen to drop some spans
/// for every layer at once.
fn log_filter() -> tracing_subscriber::EnvFilter {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("BREVET_LOG").unwrap_or_else(|_| "info".into());
    [
        "opentelemetry=warn",
        "opentelemetry_sdk=warn",
        "opentelemetry_otlp=warn",
        "opentelemetry_http=warn",
    ]
    .into_iter()
    .filter_map(|d| d.parse().ok())
    .fold(filter, tracing_subscriber::EnvFilter::add_directive)
}

/// What `brevet server` set up; [`Telemetry::shutdown`] sends the spans still buffered.
pub struct Telemetry {
    #[cfg(feature = "otlp")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

/// The log lines on stderr.
fn log_layer<S>() -> impl tracing_subscriber::Layer<S> + Send + Sync
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_subscriber::fmt::layer().with_writer(std::io::stderr)
}

/// Sets up logging to stderr. This build has no trace export, so it refuses an environment
/// that asks for it rather than run without what the operator expects.
#[cfg(not(feature = "otlp"))]
pub fn init() -> Result<Telemetry, TelemetryError> {
    use tracing_subscriber::prelude::*;
    if let Some(var) = requested_by(&from_process)? {
        return Err(TelemetryError::NotBuiltIn { var });
    }
    tracing_subscriber::registry()
        .with(log_filter())
        .with(log_layer())
        .init();
    Ok(Telemetry {})
}

/// Sets up logging to stderr and, when the environment asks for it, trace export. Runs on the
/// tokio runtime: the batch span processor is a task on it.
#[cfg(feature = "otlp")]
pub fn init() -> Result<Telemetry, TelemetryError> {
    use tracing_subscriber::prelude::*;
    let export = trace_export(&from_process)?;
    let (layer, provider) = match &export {
        Some(export) => {
            let (layer, provider) = otlp::layer(export)?;
            (Some(layer), Some(provider))
        }
        None => (None, None),
    };
    tracing_subscriber::registry()
        .with(log_filter())
        .with(log_layer())
        .with(layer)
        .init();
    if let Some(export) = &export {
        tracing::info!(
            endpoint = %export.endpoint_shown(),
            headers = export.headers.len(),
            "exporting traces over OTLP/HTTP"
        );
    }
    Ok(Telemetry { provider })
}

impl Telemetry {
    /// Sends what the batch processor still holds and stops it (bounded: a collector that does
    /// not answer does not hold up shutdown).
    #[cfg(feature = "otlp")]
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        // `shutdown` blocks until the processor's task has exported: off the runtime's workers,
        // which that task needs.
        let flushed = tokio::time::timeout(
            Duration::from_secs(15),
            tokio::task::spawn_blocking(move || provider.shutdown()),
        )
        .await;
        match flushed {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "could not send the last spans"),
            Ok(Err(e)) => tracing::warn!(error = %e, "could not send the last spans"),
            Err(_) => tracing::warn!("the collector did not take the last spans within 15s"),
        }
    }

    #[cfg(not(feature = "otlp"))]
    pub async fn shutdown(self) {}
}

#[cfg(feature = "otlp")]
mod otlp {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
    use opentelemetry_sdk::trace::{span_processor_with_async_runtime, SdkTracerProvider};
    use tracing_subscriber::Layer;

    use super::{TelemetryError, TraceExport};

    /// The exporter, a batch span processor on the tokio runtime, and the `tracing` layer that
    /// turns the spans the log filter lets through into OpenTelemetry spans (and the events
    /// inside them into span events).
    pub(super) fn layer<S>(
        export: &TraceExport,
    ) -> Result<(impl Layer<S>, SdkTracerProvider), TelemetryError>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        let mut exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(export.endpoint.as_str())
            .with_headers(export.headers.iter().cloned().collect());
        if let Some(timeout) = export.timeout {
            exporter = exporter.with_timeout(timeout);
        }
        let exporter = exporter.build()?;
        let processor = span_processor_with_async_runtime::BatchSpanProcessor::builder(
            exporter,
            opentelemetry_sdk::runtime::Tokio,
        )
        .build();
        // The detectors read OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME.
        let mut resource = opentelemetry_sdk::Resource::builder().with_attribute(
            opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
        );
        if let Some(name) = &export.service_name {
            resource = resource.with_service_name(name.clone());
        }
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(resource.build())
            .build();
        let tracer = provider.tracer("brevet");
        let layer = tracing_opentelemetry::layer().with_tracer(tracer);
        Ok((layer, provider))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn with(
        vars: &[(&'static str, &str)],
    ) -> impl Fn(&'static str) -> Result<Option<String>, TelemetryError> {
        let vars: HashMap<&'static str, String> =
            vars.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        move |k| Ok(vars.get(k).filter(|v| !v.trim().is_empty()).cloned())
    }

    fn export(vars: &[(&'static str, &str)]) -> Result<Option<TraceExport>, TelemetryError> {
        trace_export(&with(vars))
    }

    #[test]
    fn nothing_set_exports_nothing() {
        assert_eq!(export(&[]).unwrap(), None);
        assert_eq!(requested_by(&with(&[])).unwrap(), None);
        // Headers alone ask for nothing.
        assert_eq!(export(&[(HEADERS, "k=v")]).unwrap(), None);
    }

    #[test]
    fn endpoints_follow_the_specification() {
        let e = export(&[(ENDPOINT, "http://collector:4318")])
            .unwrap()
            .unwrap();
        assert_eq!(e.endpoint.as_str(), "http://collector:4318/v1/traces");
        let e = export(&[(ENDPOINT, "https://gw.example/otlp/")])
            .unwrap()
            .unwrap();
        assert_eq!(e.endpoint.as_str(), "https://gw.example/otlp/v1/traces");
        // The signal's own endpoint is used as is, and wins.
        let e = export(&[
            (ENDPOINT, "http://a:4318"),
            (TRACES_ENDPOINT, "http://b:9999/custom"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(e.endpoint.as_str(), "http://b:9999/custom");
        let e = export(&[(TRACES_EXPORTER, "otlp")]).unwrap().unwrap();
        assert_eq!(e.endpoint.as_str(), DEFAULT_TRACES_ENDPOINT);
        assert_eq!(e.service_name.as_deref(), Some("brevet"));
    }

    #[test]
    fn export_can_be_turned_off() {
        for off in [(SDK_DISABLED, "true"), (TRACES_EXPORTER, "none")] {
            assert_eq!(export(&[(ENDPOINT, "http://c:4318"), off]).unwrap(), None);
        }
        assert_eq!(
            requested_by(&with(&[(ENDPOINT, "http://c:4318")])).unwrap(),
            Some(ENDPOINT)
        );
    }

    #[test]
    fn bad_values_name_their_variable() {
        let cases: &[(&[(&'static str, &str)], &str)] = &[
            (&[(ENDPOINT, "localhost:4318")], ENDPOINT),
            (&[(TRACES_ENDPOINT, "not a url")], TRACES_ENDPOINT),
            (&[(ENDPOINT, "ftp://c:21")], ENDPOINT),
            (&[(TRACES_EXPORTER, "zipkin")], TRACES_EXPORTER),
            (&[(ENDPOINT, "http://c:4318"), (PROTOCOL, "grpc")], PROTOCOL),
            (
                &[(ENDPOINT, "http://c:4318"), (TRACES_TIMEOUT, "10s")],
                TRACES_TIMEOUT,
            ),
            (
                &[(ENDPOINT, "http://c:4318"), (COMPRESSION, "gzip")],
                COMPRESSION,
            ),
            (
                &[(ENDPOINT, "http://c:4318"), (HEADERS, "novalue")],
                HEADERS,
            ),
        ];
        for (vars, var) in cases {
            let e = export(vars).expect_err(&format!("{vars:?} accepted"));
            assert!(e.to_string().starts_with(var), "{vars:?}: {e}");
        }
    }

    #[test]
    fn errors_never_show_secrets() {
        let e = export(&[(ENDPOINT, "http://user:hunter2@c:4318")]).unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let e = export(&[
            (ENDPOINT, "http://c:4318"),
            (HEADERS, "api-key=hunter2,x-bad=caf%ZZ"),
        ])
        .unwrap_err();
        assert!(e.to_string().contains("entry 2"), "{e}");
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let e = export(&[(ENDPOINT, "http://c:4318"), (HEADERS, "bad key=hunter2")]).unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let ok = export(&[(ENDPOINT, "http://c:4318/?key=hunter2")])
            .unwrap()
            .unwrap();
        assert!(!ok.endpoint_shown().contains("hunter2"));
    }

    #[test]
    fn headers_are_read_as_written() {
        let e = export(&[
            (ENDPOINT, "http://c:4318"),
            (HEADERS, "general=1"),
            (TRACES_HEADERS, " api-key = a%20b , ,x-tenant=t1"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            e.headers,
            vec![
                ("api-key".to_owned(), "a%20b".to_owned()),
                ("x-tenant".to_owned(), "t1".to_owned())
            ]
        );
    }

    #[test]
    fn the_service_is_named() {
        let base = (ENDPOINT, "http://c:4318");
        let name = |vars: &[(&'static str, &str)]| export(vars).unwrap().unwrap().service_name;
        assert_eq!(name(&[base]).as_deref(), Some("brevet"));
        assert_eq!(
            name(&[base, (SERVICE_NAME, "brevet-eu")]).as_deref(),
            Some("brevet-eu")
        );
        assert_eq!(
            name(&[
                base,
                (
                    RESOURCE_ATTRIBUTES,
                    "deployment.environment=prod,service.name=x"
                )
            ]),
            None
        );
    }

    #[cfg(not(feature = "otlp"))]
    #[test]
    fn a_build_without_the_feature_says_how_to_get_it() {
        let e = TelemetryError::NotBuiltIn { var: ENDPOINT };
        let m = e.to_string();
        assert!(m.contains("OTEL_EXPORTER_OTLP_ENDPOINT is set"), "{m}");
        assert!(m.contains("--features otlp"), "{m}");
    }
}
