//! Kong's injectors: header values, the formatted trace id for the log, and the id resizing of
//! the injector base class.

use super::codec::{
    SPAN_ID_LEN, TRACE_ID_LEN, escape_uri, to_dec, to_hex, to_id_array, to_id_size, traceparent,
};
use super::{Format, InjectCtx};

use std::borrow::Cow;

/// One injector run.
#[derive(Debug)]
pub(super) struct Injected {
    /// Headers with fixed names, in the order written.
    pub(super) headers: Vec<(&'static str, String)>,
    /// Jaeger / ot baggage headers, whose names depend on the baggage keys.
    pub(super) baggage: Vec<(String, String)>,
    /// The `trace_id` log entry: (key, formatted id).
    pub(super) trace_id: (&'static str, String),
}

/// Kong's `trace_id_allowed_sizes`: the first is the default, the others are kept when the
/// trace id arrived in that size.
fn allowed_trace_sizes(format: Format) -> &'static [usize] {
    match format {
        Format::W3c | Format::Aws | Format::Gcp => &[16],
        Format::B3 | Format::B3Single | Format::Jaeger => &[16, 8],
        Format::Ot => &[8, 16],
        // Kong has no 128-bit datadog ids yet (they need the `_dd.p.tid` tag).
        Format::Datadog => &[8],
    }
}

/// Formats whose injector declares `context_validate.all = { "trace_id", "span_id" }`; b3 and
/// datadog accept a partial context.
fn needs_ids(format: Format) -> bool {
    !matches!(format, Format::B3 | Format::B3Single | Format::Datadog)
}

/// Validates and resizes the context, then builds `format`'s headers.
pub(super) fn run(format: Format, ctx: &InjectCtx) -> Result<Injected, String> {
    let present = |id: &[u8]| !id.is_empty();
    if needs_ids(format) {
        for (field, id) in [("trace_id", &ctx.trace_id), ("span_id", &ctx.span_id)] {
            if !present(id) {
                return Err(format!(
                    "{} injector context is invalid: field {field} not found in context",
                    format.name()
                ));
            }
        }
    }

    let allowed = allowed_trace_sizes(format);
    let original = ctx.trace_id.len();
    let size = if allowed.contains(&original) {
        original
    } else {
        allowed.first().copied().unwrap_or(TRACE_ID_LEN)
    };
    let ids = Ids {
        trace: present(&ctx.trace_id).then(|| to_id_size(&ctx.trace_id, size)),
        span: present(&ctx.span_id).then(|| to_id_size(&ctx.span_id, SPAN_ID_LEN)),
        parent: ctx
            .parent_id
            .as_deref()
            .filter(|p| present(p))
            .map(|p| to_id_size(p, SPAN_ID_LEN)),
    };
    Ok(build(format, ctx, &ids))
}

/// The context's ids at the injector's sizes; None for an absent id.
struct Ids<'c> {
    trace: Option<Cow<'c, [u8]>>,
    span: Option<Cow<'c, [u8]>>,
    parent: Option<Cow<'c, [u8]>>,
}

fn build(format: Format, ctx: &InjectCtx, ids: &Ids<'_>) -> Injected {
    let sampled = ctx.should_sample == Some(true);
    let trace_hex = ids.trace.as_deref().map(to_hex).unwrap_or_default();
    let span_hex = ids.span.as_deref().map(to_hex).unwrap_or_default();
    let mut headers = Vec::new();
    let mut baggage = Vec::new();
    let trace_id = match format {
        Format::W3c => {
            let value = traceparent(
                &to_id_array(ids.trace.as_deref().unwrap_or_default()),
                &to_id_array(ids.span.as_deref().unwrap_or_default()),
                sampled,
            );
            headers.push(("traceparent", String::from_utf8_lossy(&value).into_owned()));
            ("w3c", trace_hex)
        }
        Format::B3 => {
            if ids.trace.is_some() && ids.span.is_some() {
                headers.push(("x-b3-traceid", trace_hex.clone()));
                headers.push(("x-b3-spanid", span_hex));
                if let Some(parent) = &ids.parent {
                    headers.push(("x-b3-parentspanid", to_hex(parent)));
                }
            }
            // The debug flag implies sampling, so b3 sends one or the other.
            match ctx.flags {
                Some(flags) => headers.push(("x-b3-flags", flags.to_string())),
                None => headers.push(("x-b3-sampled", if sampled { "1" } else { "0" }.into())),
            }
            ("b3", trace_hex)
        }
        Format::B3Single => {
            let state = match (ctx.flags, ctx.should_sample) {
                (Some(1), _) => Some("d"),
                (_, Some(true)) => Some("1"),
                (_, Some(false)) => Some("0"),
                (_, None) => None,
            };
            let value = if ids.trace.is_some() && ids.span.is_some() {
                let mut value = format!("{trace_hex}-{span_hex}");
                if let Some(state) = state {
                    value.push('-');
                    value.push_str(state);
                }
                if let Some(parent) = &ids.parent {
                    value.push('-');
                    value.push_str(&to_hex(parent));
                }
                value
            } else {
                // Without ids b3 propagates the sampling decision alone.
                state.unwrap_or("0").to_owned()
            };
            headers.push(("b3", value));
            ("b3", trace_hex)
        }
        Format::Jaeger => {
            let parent = ids.parent.as_deref().map_or_else(|| "0".into(), to_hex);
            let flags = if sampled { "01" } else { "00" };
            let value = format!("{trace_hex}:{span_hex}:{parent}:{flags}");
            headers.push(("uber-trace-id", value));
            baggage = escaped_baggage(ctx, "uberctx-");
            ("jaeger", trace_hex)
        }
        Format::Ot => {
            headers.push(("ot-tracer-traceid", trace_hex.clone()));
            headers.push(("ot-tracer-spanid", span_hex));
            if let Some(sample) = ctx.should_sample {
                headers.push(("ot-tracer-sampled", if sample { "1" } else { "0" }.into()));
            }
            baggage = escaped_baggage(ctx, "ot-baggage-");
            ("ot", trace_hex)
        }
        Format::Aws => {
            // X-Ray's id is version-timestamp-unique: the first 8 hex digits are the timestamp.
            let (timestamp, unique) = trace_hex.split_at_checked(8).unwrap_or((&trace_hex, ""));
            let flag = if sampled { "1" } else { "0" };
            let value = format!("Root=1-{timestamp}-{unique};Parent={span_hex};Sampled={flag}");
            headers.push(("x-amzn-trace-id", value));
            ("aws", trace_hex)
        }
        Format::Gcp => {
            let span = ids.span.as_deref().map(to_dec).unwrap_or_default();
            let flag = if sampled { "1" } else { "0" };
            headers.push((
                "x-cloud-trace-context",
                format!("{trace_hex}/{span};o={flag}"),
            ));
            ("gcp", trace_hex)
        }
        Format::Datadog => {
            let trace = ids.trace.as_deref().map(to_dec);
            if let Some(trace) = &trace {
                headers.push(("x-datadog-trace-id", trace.clone()));
            }
            if let Some(span) = &ids.span {
                headers.push(("x-datadog-parent-id", to_dec(span)));
            }
            if let Some(sample) = ctx.should_sample {
                let priority = if sample { "1" } else { "0" };
                headers.push(("x-datadog-sampling-priority", priority.into()));
            }
            ("datadog", trace.unwrap_or_default())
        }
    };
    Injected {
        headers,
        baggage,
        trace_id,
    }
}

/// `<prefix><key>: <escaped value>` for each baggage item.
fn escaped_baggage(ctx: &InjectCtx, prefix: &str) -> Vec<(String, String)> {
    ctx.baggage
        .iter()
        .map(|(key, value)| (format!("{prefix}{key}"), escape_uri(value)))
        .collect()
}
