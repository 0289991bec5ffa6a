//! OTLP encoding, as Kong's `kong.observability.otlp` shapes it: each span becomes an
//! OTLP `Span` on the worker (entries of the plugin's queue), and the sender thread wraps a
//! batch in one `ExportTraceServiceRequest` with the plugin's resource and Kong's scope
//! (`kong-internal` 0.1.0).

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message as _;
use tracing::warn;

use gangway_config::node::{KONG_VERSION, node_id};
use gangway_pipeline::trace::{RequestTrace, Span as Recorded, SpanName};
use gangway_plugins::log_queue;

/// OTLP's status code for an error.
const STATUS_ERROR: i32 = 2;

fn string(key: &str, value: impl Into<String>) -> KeyValue {
    attr(key, any_value::Value::StringValue(value.into()))
}

fn attr(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

/// The resource Kong reports (`service.name` kong, `service.instance.id` the node id,
/// `service.version`), with the plugin's `resource_attributes` over it, encoded once per
/// plugin instance.
pub fn encoded_resource(overrides: &BTreeMap<String, String>) -> Vec<u8> {
    let mut attributes = BTreeMap::from([
        ("service.name".to_owned(), "kong".to_owned()),
        ("service.instance.id".to_owned(), node_id().to_string()),
        ("service.version".to_owned(), KONG_VERSION.to_owned()),
    ]);
    attributes.extend(overrides.iter().map(|(k, v)| (k.clone(), v.clone())));
    Resource {
        attributes: attributes
            .iter()
            .map(|(k, v)| string(k, v.as_str()))
            .collect(),
        ..Default::default()
    }
    .encode_to_vec()
}

/// The queue's encoder: one export request for a batch of encoded spans.
pub fn batch(settings: &log_queue::Settings, spans: &[Vec<u8>]) -> Vec<u8> {
    let resource = Resource::decode(settings.encoder_context.as_slice()).ok();
    let spans = spans
        .iter()
        .filter_map(|bytes| match Span::decode(bytes.as_slice()) {
            Ok(span) => Some(span),
            Err(e) => {
                // Entries are encoded by this crate: a failure here is a bug, not input.
                warn!(error = %e, "opentelemetry: dropping a span that does not decode");
                None
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource,
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "kong-internal".into(),
                    version: "0.1.0".into(),
                    ..Default::default()
                }),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

/// Encodes every span of `trace` into `out`, one entry per span.
pub fn encode_spans(trace: &RequestTrace, out: &mut Vec<Vec<u8>>) {
    let spans = trace.spans();
    for span in spans {
        let parent = match span.parent {
            Some(p) => spans
                .get(usize::from(p))
                .map_or_else(Vec::new, |p| p.id.to_vec()),
            None => trace.remote_parent.map_or_else(Vec::new, |p| p.to_vec()),
        };
        let otlp = Span {
            trace_id: trace.trace_id.to_vec(),
            span_id: span.id.to_vec(),
            parent_span_id: parent,
            name: span.name.to_string(),
            kind: span.kind as i32,
            start_time_unix_nano: trace.unix_ns(span.start_ns),
            end_time_unix_nano: trace.unix_ns(span.end_ns.unwrap_or(span.start_ns)),
            attributes: attributes(trace, span),
            status: span.error.then(|| Status {
                code: STATUS_ERROR,
                ..Default::default()
            }),
            ..Default::default()
        };
        out.push(otlp.encode_to_vec());
    }
}

/// Kong's attributes. Numbers are doubles but for `http.status_code`, as Kong's encoder
/// types them (it maps Lua numbers to `double_value`).
fn attributes(trace: &RequestTrace, span: &Recorded) -> Vec<KeyValue> {
    let double = |key: &str, v: f64| attr(key, any_value::Value::DoubleValue(v));
    let status = |v: u16| attr("http.status_code", any_value::Value::IntValue(i64::from(v)));
    match span.name {
        SpanName::Request => {
            let r = &trace.request;
            let mut attrs = vec![
                string("http.method", r.method.as_str()),
                string("http.url", r.url.as_str()),
                string("http.host", r.host.as_str()),
                string("http.scheme", r.scheme),
                string("http.flavor", r.flavor),
                string(
                    "kong.request.id",
                    String::from_utf8_lossy(&r.request_id).into_owned(),
                ),
                status(r.status),
                string("http.route", r.route.as_str()),
            ];
            if let Some(ip) = r.client_ip {
                attrs.push(string("http.client_ip", ip.to_string()));
            }
            if let Some(ip) = r.peer_ip {
                attrs.push(string("net.peer.ip", ip.to_string()));
            }
            attrs
        }
        SpanName::Balancer => {
            let mut attrs = vec![double("try_count", f64::from(span.try_count))];
            if let Some(peer) = span.peer {
                attrs.push(string("net.peer.ip", peer.ip().to_string()));
                attrs.push(double("net.peer.port", f64::from(peer.port())));
            }
            if let Some(code) = span.status {
                attrs.push(status(code));
            }
            attrs
        }
        _ => Vec::new(),
    }
}
