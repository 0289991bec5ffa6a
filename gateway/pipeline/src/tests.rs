//! The phase runners on compiled chains, with test plugins standing in for real ones.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::chain::{self, Instance};
use super::*;
use crate::identity::Identities;
use gangway_config::ConfigErrors;
use gangway_config::PluginSchemas;
use gangway_config::declarative::load_str;
use gangway_config::schema::{Field, Schema};
use gangway_http::{Limits, RequestHead, parse_request};
use gangway_router::MatchScratch;

/// Records which phases ran; answers in rewrite or access when told to.
struct Probe {
    name: &'static str,
    answer_in_rewrite: bool,
    answer_in_access: bool,
    calls: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Probe {
    fn note(&self, phase: &str) {
        self.calls
            .lock()
            .expect("not poisoned")
            .push(format!("{}:{phase}", self.name));
    }
}

impl Plugin for Probe {
    fn rewrite(&self, ctx: &mut AccessCtx<'_>) -> Flow {
        self.note("rewrite");
        ctx.state.headers.set("x-rewritten", self.name.as_bytes());
        if self.answer_in_rewrite {
            return Flow::error(403, "rewrite says no");
        }
        Flow::Continue
    }
    fn rewrites(&self) -> bool {
        true
    }
    fn access(&self, _ctx: &mut AccessCtx<'_>) -> Flow {
        self.note("access");
        if self.answer_in_access {
            return Flow::error(401, "access says no");
        }
        Flow::Continue
    }
    fn log(&self, _ctx: &LogCtx<'_>) {
        self.note("log");
    }
    fn logs(&self) -> bool {
        true
    }
}

/// The output of a future that never waits (the probes do no I/O).
fn ready<T>(future: impl std::future::Future<Output = T>) -> T {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(out) => out,
        std::task::Poll::Pending => panic!("a probe chain waited"),
    }
}

/// Two global plugins (priority 20 and 10) and one route plugin (priority 15) on route 0.
const CONFIG: &str = r#"_format_version: "3.0"
plugins:
  - name: correlation-id
  - name: file-log
services:
  - name: s
    url: http://127.0.0.1:9
    routes:
      - name: r
        paths: ["/"]
        plugins:
          - name: request-termination
"#;

/// The plugin names [`CONFIG`] uses, each with an empty config record: the probes stand in
/// for the real plugins.
struct ProbeNames;

impl PluginSchemas for ProbeNames {
    fn schema(&self, name: &str) -> Option<Arc<Schema>> {
        const NAMES: [&str; 3] = ["correlation-id", "file-log", "request-termination"];
        let name = NAMES.into_iter().find(|n| *n == name)?;
        Some(Arc::new(Schema::new(name, Field::record(Vec::new()))))
    }

    fn knows(&self, name: &str) -> bool {
        self.schema(name).is_some()
    }
}

fn load(text: &str) -> gangway_config::Config {
    load_str(text, &ProbeNames).expect("valid config")
}

struct Fixture {
    identities: Identities,
    pipeline: Pipeline,
    calls: Arc<std::sync::Mutex<Vec<String>>>,
}

fn fixture(answer_in_rewrite: &[&str], answer_in_access: &[&str]) -> Fixture {
    let config = load(CONFIG);
    let calls = Arc::new(std::sync::Mutex::new(Vec::new()));
    let probe = |entity: usize, name: &'static str, priority: i32| Instance {
        name,
        priority,
        entity,
        handler: Arc::new(Probe {
            name,
            answer_in_rewrite: answer_in_rewrite.contains(&name),
            answer_in_access: answer_in_access.contains(&name),
            calls: calls.clone(),
        }),
    };
    let entity = |name: &str| {
        config
            .plugins
            .iter()
            .position(|p| p.name == name)
            .expect("entity")
    };
    let instances = vec![
        probe(entity("correlation-id"), "g20", 20),
        probe(entity("file-log"), "g10", 10),
        probe(entity("request-termination"), "r15", 15),
    ];
    let mut errors = ConfigErrors::default();
    let pipeline = chain::build(&config, instances, &mut errors);
    assert!(errors.is_empty(), "{errors}");
    Fixture {
        identities: Identities::default(),
        pipeline,
        calls,
    }
}

fn head() -> (Vec<u8>, RequestHead) {
    let raw = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    let mut parsed = RequestHead::default();
    parse_request(&raw, &Limits::default(), &mut parsed)
        .expect("valid head")
        .expect("complete head");
    (raw, parsed)
}

/// Runs rewrite, then (unless it answered) access on route 0, then log, as the proxy
/// does. Returns the status of the answer, if any.
fn run(f: &Fixture, state: &mut RequestState) -> Option<u16> {
    let (raw, parsed) = head();
    let scratch = MatchScratch::default();
    let id = [b'0'; 32];
    state.reset(0);
    let mut ctx = AccessCtx {
        head: &parsed,
        buf: &raw,
        captures: &scratch,
        client_ip: std::net::IpAddr::from([127, 0, 0, 1]),
        tls: false,
        identities: &f.identities,
        route: None,
        route_match: None,
        service: None,
        request_id: &id,
        state,
        step: 0,
    };
    let mut chain = &f.pipeline.global;
    let mut flow = run_rewrite(&f.pipeline, &mut ctx);
    if matches!(flow, Flow::Continue) {
        chain = &f.pipeline.routes[0];
        ctx.state.begin_chain(chain.steps.len());
        flow = ready(run_access(&f.pipeline, chain, &mut ctx));
    }
    let status = match flow {
        Flow::Respond(r) => Some(r.status),
        Flow::Continue | Flow::Await(_) => None,
    };
    let entry = serde_json::Value::Null;
    run_log(
        &f.pipeline,
        chain,
        &mut LogCtx {
            facts: &LogFacts::default(),
            entry: &LazyEntry::built(entry.clone()),
            state,
            step: 0,
        },
        &mut crate::RequestTrace::default(),
    );
    status
}

fn calls(f: &Fixture) -> Vec<String> {
    std::mem::take(&mut *f.calls.lock().expect("not poisoned"))
}

#[test]
fn rewrite_runs_global_plugins_only_and_its_edits_reach_access() {
    let f = fixture(&[], &[]);
    let mut state = RequestState::default();
    assert_eq!(run(&f, &mut state), None);
    assert_eq!(
        calls(&f),
        [
            "g20:rewrite",
            "g10:rewrite",
            "g20:access",
            "r15:access",
            "g10:access",
            "g20:log",
            "r15:log",
            "g10:log"
        ]
    );
    // The last rewrite's header edit survived routing.
    let seen: Vec<&[u8]> = state
        .headers
        .values("x-rewritten", std::iter::empty())
        .collect();
    assert_eq!(seen, [b"g10"]);
}

#[test]
fn a_rewrite_answer_skips_routing_and_still_logs_every_global_plugin() {
    let f = fixture(&["g20"], &[]);
    let mut state = RequestState::default();
    assert_eq!(run(&f, &mut state), Some(403));
    assert_eq!(calls(&f), ["g20:rewrite", "g20:log", "g10:log"]);
}

#[test]
fn after_an_access_answer_later_plugins_are_resolved_for_log_but_not_run() {
    let f = fixture(&[], &["g20"]);
    let mut state = RequestState::default();
    assert_eq!(run(&f, &mut state), Some(401));
    assert_eq!(
        calls(&f),
        [
            "g20:rewrite",
            "g10:rewrite",
            "g20:access",
            "g20:log",
            "r15:log",
            "g10:log"
        ]
    );
}

#[test]
fn chains_without_log_or_rewrite_handlers_skip_those_phases() {
    static LOGGED: AtomicUsize = AtomicUsize::new(0);
    struct Quiet;
    impl Plugin for Quiet {
        fn log(&self, _ctx: &LogCtx<'_>) {
            LOGGED.fetch_add(1, Ordering::Relaxed);
        }
    }
    let config = load(CONFIG);
    let instances = vec![Instance {
        name: "quiet",
        priority: 1,
        entity: 0,
        handler: Arc::new(Quiet),
    }];
    let mut errors = ConfigErrors::default();
    let pipeline = chain::build(&config, instances, &mut errors);
    assert!(!pipeline.global.logs && !pipeline.global.rewrites);
    let state = RequestState::default();
    let entry = serde_json::Value::Null;
    run_log(
        &pipeline,
        &pipeline.global,
        &mut LogCtx {
            facts: &LogFacts::default(),
            entry: &LazyEntry::built(entry.clone()),
            state: &state,
            step: 0,
        },
        &mut crate::RequestTrace::default(),
    );
    assert_eq!(LOGGED.load(Ordering::Relaxed), 0);
}
