//! Kong's plugin pipeline: the [`Plugin`] trait, its phases, what a handler sees
//! ([`context`]), per-route chains with Kong's scope resolution ([`chain`]), the consumer and
//! credential index ([`identity`]), and the [`catalog`] of plugins a process can run.
//!
//! A request walks its route's [`Chain`]: rewrite (global plugins only), access (in
//! priority order, adjusted by `ordering`), then header_filter and log for every plugin that
//! ran in access, whether the upstream answered or a plugin did. When a plugin asks for it at
//! header time, the upstream's body is buffered whole and passed through body_filter.
//!
//! This crate defines how plugins run, not which plugins exist (that is `gangway-plugins` and
//! the edge crates, assembled into a [`Catalog`] by the binary), and it never touches a socket:
//! the proxy calls the `run_*` functions and does the I/O.

pub mod catalog;
pub mod chain;
pub mod context;
pub mod edits;
pub mod flow;
pub mod identity;
pub mod quota;
pub mod row_cache;
pub mod trace;

pub use catalog::{Build, Catalog, Spec};
pub use chain::{Chain, Instance, Pipeline, TraceExporters};
pub use context::{
    AccessCtx, LazyEntry, LogCtx, LogFacts, NOT_RUN, ReadLimits, RequestState, ResponseCtx,
};
pub use flow::{Flow, Pending, Response, ResponseBody};
pub use trace::RequestTrace;

use edits::StaticName;
use gangway_config::settings::Instrumentations;
use trace::{PluginPhase, SpanName};

/// A plugin instance with its compiled config. Handlers never do I/O themselves.
pub trait Plugin: Send + Sync {
    /// Runs in the rewrite phase, before routing, for global instances only (`ctx.route` is
    /// `None`). Default: nothing.
    fn rewrite(&self, _ctx: &mut AccessCtx<'_>) -> Flow {
        Flow::Continue
    }

    /// True when [`Plugin::rewrite`] does something. Default false.
    fn rewrites(&self) -> bool {
        false
    }

    /// Runs in the access phase. Default: nothing.
    fn access(&self, _ctx: &mut AccessCtx<'_>) -> Flow {
        Flow::Continue
    }

    /// False when [`Plugin::access`] does nothing (a log-only plugin): access skips it, and
    /// no access span is recorded for it. Default true.
    fn accesses(&self) -> bool {
        true
    }

    /// Finishes an access handler that returned [`Flow::Await`], with the output of its
    /// future. Returning `Await` again is treated as `Continue`. Default: carry on.
    fn resume(&self, _ctx: &mut AccessCtx<'_>, _output: Box<dyn std::any::Any>) -> Flow {
        Flow::Continue
    }

    /// Runs on the response head before it is written. Default: nothing.
    fn header_filter(&self, _ctx: &mut ResponseCtx<'_>) {}

    /// True when [`Plugin::header_filter`] does something. Default false.
    fn filters_headers(&self) -> bool {
        false
    }

    /// True when the access handler needs the whole request body. Default false.
    fn needs_body(&self) -> bool {
        false
    }

    /// For a body of unknown size (chunked, no Content-Length): the most bytes this plugin
    /// accepts. The chain then buffers such a body (and only such a body) up to the largest
    /// limit of its plugins; a longer one is not read further and access sees
    /// [`RequestState::body_over_limit`] instead. Default `None` (request-size-limiting sets
    /// it).
    fn chunked_body_limit(&self) -> Option<u64> {
        None
    }

    /// True when [`Plugin::body_filter`] may want a response body (so chains without such a
    /// plugin never ask [`Plugin::wants_body`]). Default false.
    fn filters_body(&self) -> bool {
        false
    }

    /// Decides, once the response head is final (after every header_filter), whether this
    /// response's whole body should be buffered and handed to [`Plugin::body_filter`].
    /// Default false.
    fn wants_body(&self, _ctx: &ResponseCtx<'_>) -> bool {
        false
    }

    /// The largest response body worth buffering for [`Plugin::body_filter`]; past it this
    /// plugin does without the body, and when every plugin that wanted it does, the body
    /// streams through unfiltered (proxy-cache: the largest entry its store keeps). `None`:
    /// the plugin must see the whole body, or the request fails (response-transformer must
    /// not pass on a body it was told to change). Default `None`.
    fn body_wanted_up_to(&self) -> Option<u64> {
        None
    }

    /// Runs on the whole (decoded) response body before it is sent; the proxy frames the
    /// result with its own `Content-Length`. Only called when some plugin of the chain
    /// wanted the body. Default: nothing.
    fn body_filter(&self, _ctx: &mut ResponseCtx<'_>, _body: &mut Vec<u8>) {}

    /// Runs once the response is sent, with Kong's serialized transaction. It must not
    /// block: I/O is handed to a background task. Default: nothing.
    fn log(&self, _ctx: &LogCtx<'_>) {}

    /// True when [`Plugin::log`] does something. Default false.
    fn logs(&self) -> bool {
        false
    }

    /// True when [`Plugin::log`] reads the serialized entry ([`LogCtx::entry`]), so the
    /// proxy captures the request half for it. A plugin that reads only [`LogCtx::facts`]
    /// says false. Default true.
    fn log_reads_entry(&self) -> bool {
        true
    }

    /// Runs after every plugin's log handler, with the request's finished spans
    /// ([`TraceCtx::trace`]). It must not block: export is handed to a background task.
    /// Default: nothing.
    fn export_trace(&self, _ctx: &TraceCtx<'_>) {}

    /// True when [`Plugin::export_trace`] does something. Default false.
    fn exports_traces(&self) -> bool {
        false
    }

    /// The sampling rate this exporter applies instead of `tracing_sampling_rate`, if it
    /// sets one. Default `None`.
    fn trace_sampling_rate(&self) -> Option<f64> {
        None
    }
}

/// What a trace exporter sees once the log phase is over.
pub struct TraceCtx<'a> {
    /// The request's spans, all ended.
    pub trace: &'a RequestTrace,
    /// The transaction's figures.
    pub facts: &'a LogFacts<'a>,
    /// Plugin state as the log phase left it.
    pub state: &'a RequestState,
    /// The chain step being run.
    pub step: usize,
}

/// Runs the rewrite phase: the global chain's instances that have a rewrite handler, in
/// priority order. Every global instance counts as run afterwards, so header_filter and log
/// see them all, as in Kong (no instance is resolved per consumer before access).
pub fn run_rewrite(pipeline: &Pipeline, ctx: &mut AccessCtx<'_>) -> Flow {
    let global = &pipeline.global;
    global.resolve_defaults(&mut ctx.state.resolved);
    if !global.rewrites {
        return Flow::Continue;
    }
    for &step in &global.by_priority {
        let step = usize::from(step);
        let instance = ctx.state.resolved[step];
        if instance == NOT_RUN {
            continue;
        }
        let handler = &pipeline.instances[instance as usize].handler;
        if !handler.rewrites() {
            continue;
        }
        ctx.step = step;
        let name = pipeline.instances[instance as usize].name;
        let span = ctx.state.trace.open(
            Instrumentations::PLUGIN_REWRITE,
            SpanName::Plugin(PluginPhase::Rewrite, name),
        );
        let flow = handler.rewrite(ctx);
        ctx.state.trace.close(span);
        if let Flow::Respond(r) = flow {
            return Flow::Respond(r);
        }
    }
    Flow::Continue
}

/// The instance chain step `step` resolved in access, if it ran.
fn ran(resolved: &[u32], step: u16) -> Option<(usize, u32)> {
    let step = usize::from(step);
    let instance = resolved.get(step).copied().unwrap_or(NOT_RUN);
    (instance != NOT_RUN).then_some((step, instance))
}

/// Runs the access phase of `chain`. After a plugin answers, the remaining access handlers
/// are skipped but their instances are still resolved, as Kong's collecting iterator does:
/// header_filter, body_filter and log then run for them too. A handler that waits
/// ([`Flow::Await`]) holds up this request only; the worker serves others meanwhile. The
/// result is never `Await`.
pub async fn run_access(pipeline: &Pipeline, chain: &Chain, ctx: &mut AccessCtx<'_>) -> Flow {
    let mut answer = None;
    for (i, step) in chain.steps.iter().enumerate() {
        let consumer = ctx.state.consumer.map(|c| ctx.identities.consumer(c).id);
        let Some(instance) = step.resolve(consumer) else {
            continue;
        };
        ctx.state.resolved[i] = instance;
        if answer.is_some() {
            continue;
        }
        ctx.step = i;
        let instance = &pipeline.instances[instance as usize];
        let handler = &instance.handler;
        if !handler.accesses() {
            continue;
        }
        let span = ctx.state.trace.open(
            Instrumentations::PLUGIN_ACCESS,
            SpanName::Plugin(PluginPhase::Access, instance.name),
        );
        let flow = match handler.access(ctx) {
            Flow::Await(Pending(pending)) => {
                let output = pending.await;
                handler.resume(ctx, output)
            }
            flow => flow,
        };
        ctx.state.trace.close(span);
        if let Flow::Respond(r) = flow {
            answer = Some(r);
        }
    }
    answer.map_or(Flow::Continue, Flow::Respond)
}

/// Runs header_filter for every plugin that ran in access, in priority order.
pub fn run_header_filter(pipeline: &Pipeline, chain: &Chain, ctx: &mut ResponseCtx<'_>) {
    if !chain.filters_headers {
        return;
    }
    for &step in &chain.by_priority {
        let Some((step, instance)) = ran(&ctx.state.resolved, step) else {
            continue;
        };
        ctx.step = step;
        let instance = &pipeline.instances[instance as usize];
        if !instance.handler.filters_headers() {
            continue;
        }
        let span = ctx.state.trace.open(
            Instrumentations::PLUGIN_HEADER_FILTER,
            SpanName::Plugin(PluginPhase::HeaderFilter, instance.name),
        );
        instance.handler.header_filter(ctx);
        ctx.state.trace.close(span);
    }
}

/// What the plugins that ran want of a response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyWanted {
    /// Nothing: it streams through.
    No,
    /// All of it, whatever its size: some plugin must see it (the proxy's own cap applies).
    Whole,
    /// All of it if it is at most this many bytes; past them the body streams through
    /// unfiltered.
    UpTo(u64),
}

/// Whether the plugins that ran in access want this response's body buffered, and how much
/// of it (see [`Plugin::wants_body`] and [`Plugin::body_wanted_up_to`]). Free when no
/// plugin of the chain filters bodies.
pub fn wants_body(pipeline: &Pipeline, chain: &Chain, ctx: &mut ResponseCtx<'_>) -> BodyWanted {
    if !chain.filters_body {
        return BodyWanted::No;
    }
    let mut wanted = BodyWanted::No;
    for &step in &chain.by_priority {
        let Some((step, instance)) = ran(&ctx.state.resolved, step) else {
            continue;
        };
        // Each plugin reads its own slot (`ctx.saved()`), as in the other phases.
        ctx.step = step;
        let handler = &pipeline.instances[instance as usize].handler;
        if !handler.wants_body(ctx) {
            continue;
        }
        wanted = match (wanted, handler.body_wanted_up_to()) {
            (BodyWanted::Whole, _) | (_, None) => return BodyWanted::Whole,
            (BodyWanted::UpTo(a), Some(b)) => BodyWanted::UpTo(a.max(b)),
            (BodyWanted::No, Some(b)) => BodyWanted::UpTo(b),
        };
    }
    wanted
}

/// Runs body_filter on the buffered response body for every plugin that ran in access, in
/// priority order.
pub fn run_body_filter(
    pipeline: &Pipeline,
    chain: &Chain,
    ctx: &mut ResponseCtx<'_>,
    body: &mut Vec<u8>,
) {
    for &step in &chain.by_priority {
        let Some((step, instance)) = ran(&ctx.state.resolved, step) else {
            continue;
        };
        ctx.step = step;
        pipeline.instances[instance as usize]
            .handler
            .body_filter(ctx, body);
    }
}

/// Runs the log phase for every plugin that ran in access (or every global plugin when no
/// route matched), in priority order, then hands the finished `trace`, when it was recorded,
/// to the plugins that export traces. Free when no plugin of the chain logs or exports.
pub fn run_log(pipeline: &Pipeline, chain: &Chain, ctx: &mut LogCtx<'_>, trace: &mut RequestTrace) {
    if chain.logs {
        for &step in &chain.by_priority {
            let Some((step, instance)) = ran(&ctx.state.resolved, step) else {
                continue;
            };
            ctx.step = step;
            let instance = &pipeline.instances[instance as usize];
            if !instance.handler.logs() {
                continue;
            }
            let span = trace.open(
                Instrumentations::PLUGIN_LOG,
                SpanName::Plugin(PluginPhase::Log, instance.name),
            );
            instance.handler.log(ctx);
            trace.close(span);
        }
    }
    trace.end_log_phase();
    if !chain.exports_traces || !trace.is_recording() {
        return;
    }
    for &step in &chain.by_priority {
        let Some((step, instance)) = ran(&ctx.state.resolved, step) else {
            continue;
        };
        let handler = &pipeline.instances[instance as usize].handler;
        if handler.exports_traces() {
            handler.export_trace(&TraceCtx {
                trace,
                facts: ctx.facts,
                state: ctx.state,
                step,
            });
        }
    }
}

/// The wall clock in epoch seconds (credential `ttl` expiry).
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Sets Kong's consumer headers for the upstream: `X-Consumer-ID`, `X-Consumer-Custom-ID`,
/// `X-Consumer-Username` and `X-Credential-Identifier`. Absent values clear any copy the
/// client sent.
pub fn consumer_headers(
    edits: &mut edits::HeaderEdits,
    identities: &identity::Identities,
    consumer: identity::ConsumerRef,
    credential: Option<identity::CredentialRef>,
) {
    const CONSUMER_ID: StaticName = StaticName::new("X-Consumer-ID");
    const CUSTOM_ID: StaticName = StaticName::new("X-Consumer-Custom-ID");
    const USERNAME: StaticName = StaticName::new("X-Consumer-Username");
    const CREDENTIAL: StaticName = StaticName::new("X-Credential-Identifier");
    let c = identities.consumer(consumer);
    let mut uuid = uuid::Uuid::encode_buffer();
    edits.set(
        CONSUMER_ID,
        c.id.hyphenated().encode_lower(&mut uuid).as_bytes(),
    );
    match c.custom_id.as_deref() {
        Some(v) => edits.set(CUSTOM_ID, v.as_bytes()),
        None => edits.remove(CUSTOM_ID),
    }
    match c.username.as_deref() {
        Some(v) => edits.set(USERNAME, v.as_bytes()),
        None => edits.remove(USERNAME),
    }
    match credential {
        Some(cred) => {
            let id = identities.credential(cred).id;
            edits.set(
                CREDENTIAL,
                id.hyphenated().encode_lower(&mut uuid).as_bytes(),
            );
        }
        None => edits.remove(CREDENTIAL),
    }
}

#[cfg(test)]
mod tests;
