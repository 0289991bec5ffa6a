//! OTLP encoding, as Kong's `kong.observability.otlp` shapes it: a sampled request's spans
//! are queued as plain data (one entry of the plugin's queue per request); the sender thread
//! turns them into OTLP `Span`s and wraps a batch in one `ExportTraceServiceRequest` with
//! the plugin's resource and Kong's scope (`kong-internal` 0.1.0). The worker only copies.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{Span, Status};
use prost::Message as _;
use prost::encoding::{self, WireType};

use gangway_config::node::{KONG_VERSION, node_id};
use gangway_pipeline::trace::{FinishedTrace, Span as Recorded, SpanName};
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

/// Field numbers of the OTLP messages this encoder frames by hand.
const REQUEST_RESOURCE_SPANS: u32 = 1;
const RESOURCE_SPANS_RESOURCE: u32 = 1;
const RESOURCE_SPANS_SCOPE_SPANS: u32 = 2;
const SCOPE_SPANS_SCOPE: u32 = 1;
const SCOPE_SPANS_SPANS: u32 = 2;

/// Appends field `tag` holding `bytes` (an encoded message).
fn put_message(tag: u32, bytes: &[u8], out: &mut Vec<u8>) {
    encoding::encode_key(tag, WireType::LengthDelimited, out);
    encoding::encode_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// The queue's encoder: one `ExportTraceServiceRequest` for a batch of entries, each the
/// spans of one request already framed as `ScopeSpans.spans` fields, so the sender thread
/// only concatenates (no decoding, no copy of a span into a new message).
pub fn batch(settings: &log_queue::Settings, traces: &[Vec<u8>]) -> Vec<u8> {
    let scope = InstrumentationScope {
        name: "kong-internal".into(),
        version: "0.1.0".into(),
        ..Default::default()
    }
    .encode_to_vec();
    let mut scope_spans =
        Vec::with_capacity(scope.len() + traces.iter().map(Vec::len).sum::<usize>() + 8);
    put_message(SCOPE_SPANS_SCOPE, &scope, &mut scope_spans);
    for trace in traces {
        scope_spans.extend_from_slice(trace);
    }
    let mut resource_spans =
        Vec::with_capacity(scope_spans.len() + settings.encoder_context.len() + 16);
    put_message(
        RESOURCE_SPANS_RESOURCE,
        &settings.encoder_context,
        &mut resource_spans,
    );
    put_message(
        RESOURCE_SPANS_SCOPE_SPANS,
        &scope_spans,
        &mut resource_spans,
    );
    let mut request = Vec::with_capacity(resource_spans.len() + 8);
    put_message(REQUEST_RESOURCE_SPANS, &resource_spans, &mut request);
    request
}

/// A finished trace waiting in the queue, encoded by the sender thread.
pub struct Queued(pub FinishedTrace);

impl log_queue::Deferred for Queued {
    fn size(&self) -> usize {
        self.0.size()
    }

    fn encode(&self, out: &mut Vec<u8>) {
        encode_trace(&self.0, out);
    }
}

/// Appends every span of `trace` as `ScopeSpans.spans` fields: one queue entry.
pub fn encode_trace(trace: &FinishedTrace, out: &mut Vec<u8>) {
    let spans = &trace.spans;
    out.reserve(spans.len() * 160);
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
        encoding::encode_key(SCOPE_SPANS_SPANS, WireType::LengthDelimited, out);
        encoding::encode_varint(otlp.encoded_len() as u64, out);
        otlp.encode_raw(out);
    }
}

/// Kong's attributes. Numbers are doubles but for `http.status_code`, as Kong's encoder
/// types them (it maps Lua numbers to `double_value`).
fn attributes(trace: &FinishedTrace, span: &Recorded) -> Vec<KeyValue> {
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

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

    use super::*;
    use gangway_config::settings::Instrumentations;
    use gangway_pipeline::trace::{RequestTrace, Tracer};
    use gangway_plugins::log_queue::{Endpoint, QueueConfig};

    fn recorded() -> FinishedTrace {
        let mut trace = RequestTrace::default();
        let tracer = Tracer {
            instrumentations: Instrumentations::ALL,
            sampling_rate: 1.0,
        };
        let exporting = gangway_pipeline::TraceExporters {
            any: true,
            max_sampling_rate: None,
        };
        trace.begin(&tracer, exporting, || false);
        let router = trace.open(Instrumentations::ROUTER, SpanName::Router);
        trace.close(router);
        trace.finish_request(200, Some("/a"));
        trace.finished()
    }

    fn encoded(trace: &FinishedTrace) -> Vec<u8> {
        let mut out = Vec::new();
        encode_trace(trace, &mut out);
        out
    }

    #[test]
    fn batches_decode_as_export_requests_with_every_span() {
        let queue = QueueConfig {
            max_batch_size: 200,
            max_coalescing_delay: 1.0,
            max_entries: 10,
            max_bytes: None,
            max_retry_time: 1.0,
            initial_retry_delay: 0.01,
            max_retry_delay: 1.0,
        };
        let mut settings = queue.settings(
            "opentelemetry",
            Endpoint::parse("http://collector:4318/v1/traces").expect("url"),
            None,
            None,
        );
        let overrides = BTreeMap::from([("service.name".to_owned(), "api".to_owned())]);
        settings.encoder_context = encoded_resource(&overrides);
        let (one, two) = (recorded(), recorded());
        let body = batch(&settings, &[encoded(&one), encoded(&two)]);
        let request = ExportTraceServiceRequest::decode(body.as_slice()).expect("decodes");
        let resource_spans = &request.resource_spans[0];
        let resource = resource_spans.resource.as_ref().expect("resource");
        let name = resource
            .attributes
            .iter()
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| kv.value.clone());
        assert_eq!(
            name.and_then(|v| v.value),
            Some(any_value::Value::StringValue("api".into()))
        );
        let scope_spans = &resource_spans.scope_spans[0];
        assert_eq!(
            scope_spans.scope.as_ref().map(|s| s.name.as_str()),
            Some("kong-internal")
        );
        let spans = &scope_spans.spans;
        assert_eq!(spans.len(), 4);
        assert_eq!(spans[0].name, "kong");
        assert_eq!(spans[1].name, "kong.router");
        assert_eq!(spans[1].parent_span_id, spans[0].span_id);
        assert_eq!(spans[2].trace_id, two.trace_id.to_vec());
        assert!(spans[1].end_time_unix_nano >= spans[1].start_time_unix_nano);
    }
}
