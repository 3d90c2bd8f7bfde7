//! Logging: `tracing` to stdout, JSON by default (one object per line, for
//! log pipelines) or human-readable text, filtered by `RUST_LOG`. Metrics:
//! the `metrics` facade, recorded for Prometheus and served at `/metrics`.
//!
//! A JSON line carries the fields of every span it was logged in, flattened
//! beside its own: `request_id` and `order_id` (the `commerce.http` span of
//! the request), `saga_id` and `order_id` (the `commerce.saga` span of a
//! saga run), so a pipeline filters one request or one saga by a top-level
//! field. The line's own fields win over a span's of the same name.
//!
//! No OpenTelemetry export: it would add an OTLP exporter and its
//! dependencies to every build for traces nobody collects yet; the span
//! names (`commerce.<area>.<op>`) and ids above are what an exporter would
//! carry when one is added.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Output format of the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Text when stdout is a terminal (a person reading), JSON otherwise
    /// (a log pipeline, a container runtime, a file).
    Auto,
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Text,
}

impl LogFormat {
    /// `Auto` decided for this process's stdout.
    pub fn resolve(self) -> LogFormat {
        match self {
            LogFormat::Auto if std::io::IsTerminal::is_terminal(&std::io::stdout()) => {
                LogFormat::Text
            }
            LogFormat::Auto => LogFormat::Json,
            other => other,
        }
    }
}

/// Installs the global subscriber. `default_filter` applies when `RUST_LOG`
/// is not set.
pub fn init(format: LogFormat, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    let result = match format.resolve() {
        LogFormat::Json | LogFormat::Auto => builder
            .fmt_fields(JsonFields::new())
            .event_format(FlatJson)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
    // A second init (tests) keeps the first subscriber.
    let _ = result;
}

/// One JSON object per line: `timestamp`, `level`, `target`, `span` (the
/// innermost span's name), the fields of every enclosing span from the
/// outermost in, then the event's own fields (`message` among them).
struct FlatJson;

impl<S, N> FormatEvent<S, N> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                .into(),
        );
        line.insert("level".into(), meta.level().as_str().into());
        line.insert("target".into(), meta.target().into());
        if let Some(scope) = ctx.event_scope() {
            let mut innermost = None;
            for span in scope.from_root() {
                innermost = Some(span.name());
                let extensions = span.extensions();
                // With `JsonFields`, a span's fields are kept as a JSON object.
                if let Some(fields) = extensions.get::<FormattedFields<N>>()
                    && let Ok(Value::Object(fields)) = serde_json::from_str(&fields.fields)
                {
                    line.extend(fields);
                }
            }
            if let Some(name) = innermost {
                line.insert("span".into(), name.into());
            }
        }
        event.record(&mut JsonVisitor(&mut line));
        let text = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

/// Collects an event's fields as JSON values.
struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}
