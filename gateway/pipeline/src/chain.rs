//! Plugin chains, compiled per route when a snapshot is built.
//!
//! A chain is an array of steps in access order, one per plugin name that can apply to the
//! route. Each step holds the instance Kong's scope precedence picks when no consumer is
//! known, plus the consumer-scoped instances that win once a consumer is authenticated. A
//! request walks the array; nothing is looked up by plugin name.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::Value;

use super::Plugin;
use gangway_config::ConfigErrors;
use gangway_config::model::{Config, Id, Plugin as PluginEntity, Route};

/// A compiled plugin instance.
pub struct Instance {
    /// The plugin's name.
    pub name: &'static str,
    /// Kong's PRIORITY: higher runs first.
    pub priority: i32,
    /// Position of the entity in `Config::plugins`.
    pub entity: usize,
    /// The handler with its compiled config; consumer-scoped instances with equal configs
    /// share one.
    pub handler: Arc<dyn Plugin>,
}

/// Kong's precedence of scopes (higher wins): route+service+consumer, route+consumer,
/// service+consumer, route+service, consumer, route, service, global.
fn rank(p: &PluginEntity) -> u8 {
    match (p.route.is_some(), p.service.is_some(), p.consumer.is_some()) {
        (true, true, true) => 8,
        (true, false, true) => 7,
        (false, true, true) => 6,
        (true, true, false) => 5,
        (false, false, true) => 4,
        (true, false, false) => 3,
        (false, true, false) => 2,
        (false, false, false) => 1,
    }
}

#[derive(Debug, Clone, Copy)]
struct Pick {
    instance: u32,
    rank: u8,
}

/// One plugin name's place in a chain.
#[derive(Debug, Default)]
pub struct Step {
    default: Option<Pick>,
    /// Instances scoped to a consumer and to this route or its service (foldhash, not
    /// SipHash: looked up on every request, built for every consumer at load).
    consumers: hashbrown::HashMap<Id, Pick>,
    /// Instances scoped to a consumer only: the same for every chain, so shared by all.
    consumer_only: Option<Arc<ConsumerOnly>>,
}

/// A plugin's consumer-only instances (a portal's per-consumer plans), built once per
/// snapshot and shared by every chain, with what the chains need to know of them.
#[derive(Debug, Default)]
struct ConsumerOnly {
    picks: hashbrown::HashMap<Id, Pick>,
    needs_body: bool,
    filters_headers: bool,
    chunked_body_limit: Option<u64>,
    filters_body: bool,
    logs: bool,
    log_entries: bool,
    exports_traces: bool,
    rewrites: bool,
}

impl Step {
    /// The instance that applies, given the consumer authenticated so far.
    pub fn resolve(&self, consumer: Option<Id>) -> Option<u32> {
        let scoped = consumer.and_then(|c| {
            self.consumers
                .get(&c)
                .or_else(|| self.consumer_only.as_ref()?.picks.get(&c))
        });
        match (self.default, scoped) {
            (Some(d), Some(s)) if s.rank > d.rank => Some(s.instance),
            (Some(d), _) => Some(d.instance),
            (None, s) => s.map(|s| s.instance),
        }
    }

    /// True when some instance is consumer-scoped.
    pub fn has_consumer_scope(&self) -> bool {
        !self.consumers.is_empty() || self.consumer_only.is_some()
    }
}

/// The plugins of one route (or the global chain), ready to walk.
#[derive(Debug, Default)]
pub struct Chain {
    /// Steps in access order (priority, adjusted by `ordering`).
    pub steps: Vec<Step>,
    /// Step indexes in priority order, for the phases `ordering` does not affect.
    pub by_priority: Vec<u16>,
    /// Some instance reads or rewrites the request body, so it must be buffered.
    pub needs_body: bool,
    /// True when any step has an instance that implements `header_filter`.
    pub filters_headers: bool,
    /// The largest [`Plugin::chunked_body_limit`] of the instances: a chunked body is
    /// buffered up to this many bytes. `None` when no instance sets one.
    pub chunked_body_limit: Option<u64>,
    /// True when any step has an instance that may filter response bodies.
    pub filters_body: bool,
    /// True when any step has an instance with a log handler.
    pub logs: bool,
    /// True when any of those log handlers reads the serialized entry.
    pub log_entries: bool,
    /// True when any step has an instance that exports traces.
    pub exports_traces: bool,
    /// True when any step has an instance with a rewrite handler.
    pub rewrites: bool,
}

impl Chain {
    /// True when no plugin applies.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Marks each step's non-consumer instance as run (`resolved` gets one entry per step):
    /// what the later phases use when access did not run, as for a request no route
    /// matched.
    pub fn resolve_defaults(&self, resolved: &mut Vec<u32>) {
        resolved.clear();
        resolved.extend(
            self.steps
                .iter()
                .map(|s| s.default.map_or(super::NOT_RUN, |p| p.instance)),
        );
    }
}

/// Every compiled instance and the chain of each route.
#[derive(Default)]
pub struct Pipeline {
    /// Compiled instances, indexed by the chains.
    pub instances: Vec<Instance>,
    /// One chain per route, by route position.
    pub routes: Vec<Chain>,
    /// Global plugins: the rewrite phase, and requests that matched no route.
    pub global: Chain,
    /// Trace exporters in this config, and the highest sampling rate any of them sets of its
    /// own: without an exporter no span is recorded; with one, a request is recorded only
    /// when some exporter could sample it.
    pub tracing: TraceExporters,
}

/// What the config's trace exporters need recorded (see [`Pipeline::tracing`]).
#[derive(Debug, Default, Clone, Copy)]
pub struct TraceExporters {
    /// Some instance exports traces. Default false.
    pub any: bool,
    /// The highest [`Plugin::trace_sampling_rate`] of those instances, if any sets one.
    pub max_sampling_rate: Option<f64>,
}

/// Reads `ordering.{before,after}.access`, already shape-checked by the loader.
fn ordering_names<'v>(ordering: Option<&'v Value>, side: &str) -> Vec<&'v str> {
    ordering
        .and_then(|o| o.get(side))
        .and_then(|s| s.get("access"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// True for an instance scoped to a consumer and nothing else.
fn consumer_only(p: &PluginEntity) -> bool {
    p.consumer.is_some() && p.route.is_none() && p.service.is_none()
}

/// The consumer-only instances of each plugin name, with their chain flags.
fn consumer_only_picks(
    config: &Config,
    instances: &[Instance],
) -> BTreeMap<&'static str, (i32, Arc<ConsumerOnly>)> {
    let mut by_name: BTreeMap<&'static str, (i32, ConsumerOnly)> = BTreeMap::new();
    for (i, inst) in instances.iter().enumerate() {
        let p = &config.plugins[inst.entity];
        let Some(consumer) = p.consumer.filter(|_| consumer_only(p)) else {
            continue;
        };
        let (_, only) = by_name
            .entry(inst.name)
            .or_insert_with(|| (inst.priority, ConsumerOnly::default()));
        only.picks.entry(consumer.id).or_insert(Pick {
            instance: i as u32,
            rank: rank(p),
        });
        let h = &inst.handler;
        only.needs_body |= h.needs_body();
        only.filters_headers |= h.filters_headers();
        only.chunked_body_limit = only.chunked_body_limit.max(h.chunked_body_limit());
        only.filters_body |= h.filters_body();
        only.logs |= h.logs();
        only.log_entries |= h.logs() && h.log_reads_entry();
        only.exports_traces |= h.exports_traces();
        only.rewrites |= h.rewrites();
    }
    by_name
        .into_iter()
        .map(|(name, (priority, only))| (name, (priority, Arc::new(only))))
        .collect()
}

/// Builds the chain for requests on `route` (or the global chain for `None`). `scoped` lists
/// the instances that are not consumer-only; those come in `shared`.
fn build_chain(
    config: &Config,
    instances: &[Instance],
    scoped: &[usize],
    shared: &BTreeMap<&'static str, (i32, Arc<ConsumerOnly>)>,
    route: Option<&Route>,
    path: &str,
    errors: &mut ConfigErrors,
) -> Chain {
    let route_id = route.map(|r| r.id);
    let service_id = route.and_then(|r| r.service).map(|s| s.id);
    let mut by_name: BTreeMap<&'static str, Step> = BTreeMap::new();
    let mut priority: HashMap<&'static str, i32> = HashMap::new();
    for (name, (prio, only)) in shared {
        priority.insert(name, *prio);
        by_name.entry(name).or_default().consumer_only = Some(only.clone());
    }
    for &i in scoped {
        let inst = &instances[i];
        let p = &config.plugins[inst.entity];
        let applies = p.route.is_none_or(|r| Some(r.id) == route_id)
            && p.service.is_none_or(|s| Some(s.id) == service_id);
        if !applies {
            continue;
        }
        priority.insert(inst.name, inst.priority);
        let step = by_name.entry(inst.name).or_default();
        let pick = Pick {
            instance: i as u32,
            rank: rank(p),
        };
        match p.consumer {
            Some(c) => {
                let slot = step.consumers.entry(c.id).or_insert(pick);
                if pick.rank > slot.rank {
                    *slot = pick;
                }
            }
            None => {
                if step.default.is_none_or(|d| pick.rank > d.rank) {
                    step.default = Some(pick);
                }
            }
        }
    }
    let mut names: Vec<&'static str> = by_name.keys().copied().collect();
    names.sort_by(|a, b| priority[b].cmp(&priority[a]).then(a.cmp(b)));
    let by_priority_names = names.clone();
    let order = apply_ordering(&names, &by_name, instances, config, path, errors);
    let position: HashMap<&str, u16> = order
        .iter()
        .enumerate()
        .map(|(i, n)| (*n, i as u16))
        .collect();
    let mut steps_by_name = by_name;
    let steps: Vec<Step> = order
        .iter()
        .map(|n| steps_by_name.remove(n).unwrap_or_default())
        .collect();
    let picks = || {
        steps
            .iter()
            .flat_map(|s| s.default.iter().chain(s.consumers.values()))
            .map(|p| &instances[p.instance as usize])
    };
    let only = || steps.iter().filter_map(|s| s.consumer_only.as_deref());
    let needs_body = picks().any(|i| i.handler.needs_body()) || only().any(|o| o.needs_body);
    let filters_headers =
        picks().any(|i| i.handler.filters_headers()) || only().any(|o| o.filters_headers);
    let chunked_body_limit = picks()
        .filter_map(|i| i.handler.chunked_body_limit())
        .chain(only().filter_map(|o| o.chunked_body_limit))
        .max();
    let filters_body = picks().any(|i| i.handler.filters_body()) || only().any(|o| o.filters_body);
    let logs = picks().any(|i| i.handler.logs()) || only().any(|o| o.logs);
    let exports_traces =
        picks().any(|i| i.handler.exports_traces()) || only().any(|o| o.exports_traces);
    let log_entries = picks().any(|i| i.handler.logs() && i.handler.log_reads_entry())
        || only().any(|o| o.log_entries);
    let rewrites = picks().any(|i| i.handler.rewrites()) || only().any(|o| o.rewrites);
    Chain {
        by_priority: by_priority_names.iter().map(|n| position[n]).collect(),
        needs_body,
        filters_headers,
        chunked_body_limit,
        filters_body,
        logs,
        log_entries,
        exports_traces,
        rewrites,
        steps,
    }
}

/// Applies `ordering` constraints to names already in priority order: a stable topological
/// sort that keeps priority order wherever no constraint says otherwise.
fn apply_ordering(
    names: &[&'static str],
    steps: &BTreeMap<&'static str, Step>,
    instances: &[Instance],
    config: &Config,
    path: &str,
    errors: &mut ConfigErrors,
) -> Vec<&'static str> {
    let index: HashMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let mut after: Vec<Vec<usize>> = vec![Vec::new(); names.len()];
    let mut constrained = false;
    for (i, name) in names.iter().enumerate() {
        let Some(pick) = steps[name].default else {
            continue;
        };
        let ordering = config.plugins[instances[pick.instance as usize].entity]
            .ordering
            .as_ref();
        for other in ordering_names(ordering, "before") {
            if let Some(&j) = index.get(other) {
                after[j].push(i);
                constrained = true;
            }
        }
        for other in ordering_names(ordering, "after") {
            if let Some(&j) = index.get(other) {
                after[i].push(j);
                constrained = true;
            }
        }
    }
    if !constrained {
        return names.to_vec();
    }
    // Depth-first in priority order: a plugin's prerequisites are emitted just before it, so
    // moving request-transformer before key-auth leaves acl after key-auth, where its
    // priority puts it.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Visiting,
        Done,
    }
    fn visit(
        i: usize,
        after: &[Vec<usize>],
        marks: &mut [Mark],
        out: &mut Vec<usize>,
    ) -> Result<(), usize> {
        match marks[i] {
            Mark::Done => return Ok(()),
            Mark::Visiting => return Err(i),
            Mark::New => {}
        }
        marks[i] = Mark::Visiting;
        let mut deps = after[i].clone();
        deps.sort_unstable();
        for j in deps {
            visit(j, after, marks, out)?;
        }
        marks[i] = Mark::Done;
        out.push(i);
        Ok(())
    }
    let mut marks = vec![Mark::New; names.len()];
    let mut out = Vec::with_capacity(names.len());
    for i in 0..names.len() {
        if visit(i, &after, &mut marks, &mut out).is_err() {
            let cycle: Vec<&str> = (0..names.len())
                .filter(|&k| marks[k] == Mark::Visiting)
                .map(|k| names[k])
                .collect();
            errors.push(
                path,
                format!("plugin ordering has a cycle among: {}", cycle.join(", ")),
            );
            return names.to_vec();
        }
    }
    out.into_iter().map(|i| names[i]).collect()
}

/// Builds every route's chain from compiled instances.
pub fn build(config: &Config, instances: Vec<Instance>, errors: &mut ConfigErrors) -> Pipeline {
    let shared = consumer_only_picks(config, &instances);
    let scoped: Vec<usize> = (0..instances.len())
        .filter(|&i| !consumer_only(&config.plugins[instances[i].entity]))
        .collect();
    let exporters = instances.iter().filter(|i| i.handler.exports_traces());
    let tracing = TraceExporters {
        any: exporters.clone().next().is_some(),
        max_sampling_rate: exporters
            .filter_map(|i| i.handler.trace_sampling_rate())
            .reduce(f64::max),
    };
    let routes = config
        .routes
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let path = format!("routes[{i}]");
            build_chain(config, &instances, &scoped, &shared, Some(r), &path, errors)
        })
        .collect();
    let global = build_chain(
        config, &instances, &scoped, &shared, None, "plugins", errors,
    );
    Pipeline {
        instances,
        routes,
        global,
        tracing,
    }
}
