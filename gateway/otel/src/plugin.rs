//! The opentelemetry plugin's handlers: propagation in access, the trace-id response header
//! in header_filter, and the export of a sampled request's spans after the log phase.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tracing::warn;

use gangway_pipeline::catalog::{Build, BuildResult};
use gangway_pipeline::context::{AccessCtx, ResponseCtx};
use gangway_pipeline::flow::Flow;
use gangway_pipeline::trace::{self, LogTraceId, new_trace_id};
use gangway_pipeline::{Plugin, TraceCtx};
use gangway_plugins::log_queue::{self, Endpoint, Queue};

use super::NAME;
use super::export;
use super::propagation::{self, Extracted, Format, InjectCtx};

#[derive(Debug, Deserialize)]
struct PropagationConfig {
    extract: Option<Vec<String>>,
    clear: Option<Vec<String>>,
    inject: Option<Vec<String>>,
    default_format: String,
}

#[derive(Debug, Deserialize)]
struct Config {
    traces_endpoint: Option<String>,
    logs_endpoint: Option<String>,
    headers: Option<BTreeMap<String, String>>,
    resource_attributes: Option<BTreeMap<String, String>>,
    queue: log_queue::QueueConfig,
    batch_span_count: Option<usize>,
    batch_flush_delay: Option<f64>,
    connect_timeout: u64,
    send_timeout: u64,
    read_timeout: u64,
    http_response_header_for_traceid: Option<String>,
    header_type: Option<String>,
    sampling_rate: Option<f64>,
    propagation: PropagationConfig,
}

/// An `inject` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Injector {
    /// The format the context was extracted from, else `default_format`.
    Preserve,
    Format(Format),
}

/// The propagation settings after Kong's mapping of the deprecated `header_type`.
#[derive(Debug)]
struct Propagation {
    extract: Vec<Format>,
    clear: Vec<String>,
    inject: Vec<Injector>,
    default_format: Format,
}

/// The order Kong's old propagation module tried formats in, which `header_type` keeps.
const LEGACY_EXTRACT: [Format; 7] = [
    Format::B3,
    Format::W3c,
    Format::Jaeger,
    Format::Ot,
    Format::Datadog,
    Format::Aws,
    Format::Gcp,
];

fn format(name: &str, field: &str) -> Result<Format, (String, String)> {
    Format::parse(name).ok_or_else(|| (field.to_owned(), format!("unknown format '{name}'")))
}

impl Propagation {
    /// Whether a request without a trace context is propagated in w3c alone (the default),
    /// which [`OpenTelemetry::access`] writes without building an [`InjectCtx`].
    fn injects_only_w3c_when_absent(&self) -> bool {
        match self.inject.as_slice() {
            [Injector::Format(Format::W3c)] => true,
            [Injector::Preserve] => self.default_format == Format::W3c,
            _ => false,
        }
    }

    /// Kong's `get_plugin_params`: the `propagation` record as given when any of extract,
    /// clear or inject is set; otherwise what `header_type` used to mean.
    fn from_config(conf: &Config) -> Result<Propagation, (String, String)> {
        let p = &conf.propagation;
        let default_format = format(&p.default_format, "propagation.default_format")?;
        let parse_inject = |names: &[String]| -> Result<Vec<Injector>, (String, String)> {
            names
                .iter()
                .map(|n| match n.as_str() {
                    "preserve" => Ok(Injector::Preserve),
                    other => format(other, "propagation.inject").map(Injector::Format),
                })
                .collect()
        };
        if p.extract.is_some() || p.clear.is_some() || p.inject.is_some() {
            return Ok(Propagation {
                extract: p
                    .extract
                    .iter()
                    .flatten()
                    .map(|n| format(n, "propagation.extract"))
                    .collect::<Result<_, _>>()?,
                clear: p.clear.clone().unwrap_or_default(),
                inject: parse_inject(p.inject.as_deref().unwrap_or_default())?,
                default_format,
            });
        }
        let (extract, inject) = match conf.header_type.as_deref() {
            None => (Vec::new(), Vec::new()),
            Some("preserve") => (LEGACY_EXTRACT.to_vec(), vec![Injector::Preserve]),
            Some("ignore") => (Vec::new(), vec![Injector::Format(default_format)]),
            Some(other) => (
                LEGACY_EXTRACT.to_vec(),
                vec![
                    Injector::Preserve,
                    Injector::Format(format(other, "header_type")?),
                ],
            ),
        };
        Ok(Propagation {
            extract,
            clear: Vec::new(),
            inject,
            default_format,
        })
    }
}

struct OpenTelemetry {
    queue: Arc<Queue>,
    propagation: Propagation,
    sampling_rate: Option<f64>,
    trace_id_header: Option<String>,
}

/// Builds an instance from its validated config.
pub fn build(b: &Build<'_>) -> BuildResult {
    let problem = |field: &str, message: String| vec![(field.to_owned(), message)];
    let conf: Config =
        serde_json::from_value(b.config.clone()).map_err(|e| problem("", e.to_string()))?;
    if conf.logs_endpoint.is_some() {
        return Err(problem(
            "logs_endpoint",
            "gangway does not export logs over OTLP; use traces_endpoint, and the file-log or \
             http-log plugin for logs"
                .into(),
        ));
    }
    let Some(url) = conf.traces_endpoint.as_deref() else {
        return Err(problem(
            "",
            "at least one of these fields must be non-empty: 'config.traces_endpoint', \
             'config.logs_endpoint'"
                .into(),
        ));
    };
    let endpoint = Endpoint::parse(url).map_err(|e| problem("traces_endpoint", e))?;
    let propagation = Propagation::from_config(&conf).map_err(|(f, m)| problem(&f, m))?;
    let ms = |v: u64| Duration::from_millis(v.max(1));
    let settings = log_queue::Settings {
        content_type: "application/x-protobuf".into(),
        headers: conf
            .headers
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        connect_timeout: ms(conf.connect_timeout),
        send_timeout: ms(conf.send_timeout),
        read_timeout: ms(conf.read_timeout),
        encoder_context: export::encoded_resource(
            &conf.resource_attributes.clone().unwrap_or_default(),
        ),
        ..conf.queue.settings(
            NAME,
            endpoint,
            log_queue::deprecated(conf.batch_span_count, 200),
            log_queue::deprecated(conf.batch_flush_delay, 3.0),
        )
    };
    Ok(Box::new(OpenTelemetry {
        queue: Queue::shared(settings, export::batch),
        propagation,
        sampling_rate: conf.sampling_rate,
        trace_id_header: conf.http_response_header_for_traceid,
    }))
}

impl OpenTelemetry {
    /// Runs the extractors in order; the first format whose headers are present wins. A
    /// present but invalid header is skipped, as Kong's extractors do after a warning.
    fn extract(&self, ctx: &AccessCtx<'_>) -> Option<(Format, Extracted)> {
        let traced = ctx
            .head
            .headers()
            .iter()
            .any(|f| propagation::is_trace_header(f.name.get(ctx.buf)))
            || ctx
                .state
                .headers
                .added()
                .any(|(name, _)| propagation::is_trace_header(name));
        if self.propagation.extract.is_empty() || !traced {
            return None;
        }
        let header = |name: &str| {
            ctx.header(name)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        let headers = || {
            ctx.head
                .headers()
                .iter()
                .map(|f| {
                    (
                        String::from_utf8_lossy(f.name.get(ctx.buf)).to_ascii_lowercase(),
                        String::from_utf8_lossy(f.value.get(ctx.buf)).into_owned(),
                    )
                })
                .collect()
        };
        for &format in &self.propagation.extract {
            match propagation::extract(format, &header, &headers) {
                Ok(Some(found)) => return Some((format, found)),
                Ok(None) => {}
                Err(message) => {
                    // Kong warns too; a client controls this header, so it is counted
                    // against nothing and logged at the level Kong uses.
                    warn!(format = format.name(), %message, "opentelemetry: invalid trace header");
                }
            }
        }
        None
    }
}

/// The log's trace ids for a request propagated as w3c only, reusing the last request's
/// string when there is one.
fn set_log_trace_id(ids: &mut Vec<(&'static str, LogTraceId)>, trace_id: &[u8; 16]) {
    ids.clear();
    ids.push((Format::W3c.name(), LogTraceId::Hex(*trace_id)));
}

impl Plugin for OpenTelemetry {
    fn access(&self, ctx: &mut AccessCtx<'_>) -> Flow {
        let extracted = self.extract(ctx);
        let trace = &mut ctx.state.trace;
        let recording = trace.is_recording();
        if !recording {
            // Propagation without tracing: a trace of its own, never exported (Kong's
            // `kong.propagation_only` root).
            trace.trace_id = new_trace_id();
        }
        let found = extracted.as_ref().map(|(_, e)| e);
        if let Some(id) = found.and_then(|e| e.trace_id.as_deref()) {
            trace.trace_id = propagation::to_id_array(id);
        }
        trace.remote_parent = found
            .and_then(|e| e.span_id.as_deref().or(e.parent_id.as_deref()))
            .map(propagation::to_id_array);
        trace.propagated = true;
        let parent_sampled = found.and_then(|e| e.should_sample);
        trace.sampled = recording
            && parent_sampled != Some(false)
            && trace::sample(
                &trace.trace_id,
                self.sampling_rate.unwrap_or(trace.sampling_rate),
            );
        let span_id = trace
            .upstream_parent_id()
            .unwrap_or_else(|| fastrand::u64(1..).to_be_bytes());
        let parent_id = match trace.records(gangway_config::settings::Instrumentations::BALANCER) {
            true => trace.request_span_id(),
            false => trace.remote_parent,
        };
        for name in &self.propagation.clear {
            ctx.state.headers.remove(name);
        }
        if found.is_none() && self.propagation.injects_only_w3c_when_absent() {
            let value = propagation::traceparent(&trace.trace_id, &span_id, trace.sampled);
            ctx.state.headers.set("traceparent", &value);
            let trace = &mut ctx.state.trace;
            set_log_trace_id(&mut trace.log_trace_ids, &trace.trace_id);
            if self.trace_id_header.is_some() {
                let id = trace.trace_id;
                ctx.save(&id);
            }
            return Flow::Continue;
        }
        let inject = InjectCtx {
            // The extracted id at its own size (8 bytes for a 64-bit id), as Kong's injectors
            // keep it.
            trace_id: found
                .and_then(|e| e.trace_id.clone())
                .unwrap_or_else(|| trace.trace_id.to_vec()),
            span_id: span_id.to_vec(),
            parent_id: parent_id.map(|p| p.to_vec()),
            should_sample: Some(trace.sampled),
            baggage: found.map(|e| e.baggage.clone()).unwrap_or_default(),
            flags: found.and_then(|e| e.flags),
            w3c_flags: found.and_then(|e| e.w3c_flags),
            single_header: found.is_some_and(|e| e.single_header),
        };
        let mut headers = Vec::with_capacity(2);
        let mut ids = std::mem::take(&mut ctx.state.trace.log_trace_ids);
        ids.clear();
        for injector in &self.propagation.inject {
            let format = match injector {
                Injector::Format(f) => *f,
                Injector::Preserve => match extracted.as_ref().map(|(f, _)| *f) {
                    Some(Format::B3) if inject.single_header => Format::B3Single,
                    Some(f) => f,
                    None => self.propagation.default_format,
                },
            };
            match propagation::inject(format, &inject, &mut headers) {
                Ok((format, id)) => ids.push((format, LogTraceId::Text(id))),
                Err(message) => {
                    warn!(format = format.name(), %message, "opentelemetry: cannot inject");
                }
            }
            if matches!(format, Format::Jaeger | Format::Ot) && !inject.baggage.is_empty() {
                for (name, value) in propagation::baggage_headers(format, &inject) {
                    ctx.state.headers.set(&name, value.as_bytes());
                }
            }
        }
        for (name, value) in headers.drain(..) {
            ctx.state.headers.set(name, value.as_bytes());
        }
        ctx.state.trace.log_trace_ids = ids;
        if self.trace_id_header.is_some() {
            ctx.save(&inject.trace_id);
        }
        Flow::Continue
    }

    fn header_filter(&self, ctx: &mut ResponseCtx<'_>) {
        let Some(name) = &self.trace_id_header else {
            return;
        };
        // The id access propagated; a request answered before this plugin's access (an
        // authentication failure) has the trace's own id when spans are recorded.
        let id = match ctx.saved() {
            [] if ctx.state.trace.is_recording() => propagation::to_hex(&ctx.state.trace.trace_id),
            [] => return,
            saved => propagation::to_hex(saved),
        };
        ctx.state.response_headers.add(name, id.as_bytes());
    }

    fn filters_headers(&self) -> bool {
        self.trace_id_header.is_some()
    }

    fn export_trace(&self, ctx: &TraceCtx<'_>) {
        let trace = ctx.trace;
        if !trace.is_recording() || !trace.sampled {
            return;
        }
        self.queue
            .push(log_queue::Entry::Deferred(Box::new(export::Queued(
                trace.finished(),
            ))));
    }

    fn exports_traces(&self) -> bool {
        true
    }

    fn trace_sampling_rate(&self) -> Option<f64> {
        self.sampling_rate
    }
}

#[cfg(test)]
mod tests;
