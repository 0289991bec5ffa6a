//! The kernel fast path in the process: started (or not, and why) by the `ebpf` setting,
//! kept in step with each published snapshot's connection policy, reported by `/status`,
//! and detached at shutdown.
//!
//! Without eBPF (`ebpf = off`, a build without the `ebpf` feature or without clang, no
//! privileges, no interface to attach to) the same policy runs at accept
//! (`runtime::worker`); with `ebpf = required` such a node does not start.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gangway_config::settings::{EbpfMode, Settings};
use gangway_proxy::Gateway;
use serde_json::{Value, json};
use tracing::{info, warn};

use crate::runtime::StartError;

/// How often a policy the kernel's maps refused is tried again (each try is logged).
const RETRY_REFUSED: Duration = Duration::from_secs(10);

#[cfg(feature = "ebpf")]
type Guard = gangway_ebpf::KernelGuard;
#[cfg(not(feature = "ebpf"))]
type Guard = std::convert::Infallible;

enum State {
    /// Not running, and why.
    Off(String),
    /// Loaded and attached, with the policy last written to it.
    On(Box<Guard>, Arc<gangway_net::conn_policy::ConnectionPolicy>),
}

/// The process's kernel fast path.
pub struct Kernel {
    state: Mutex<State>,
}

impl Kernel {
    /// Starts the programs as `ebpf` asks and writes the current policy into them.
    pub fn start(gateway: &Gateway) -> Result<Arc<Kernel>, StartError> {
        let settings = &gateway.settings;
        let state = match settings.ebpf {
            EbpfMode::Off => State::Off("ebpf = off".to_owned()),
            EbpfMode::Auto | EbpfMode::Required => match load(settings) {
                Ok(mut guard) => {
                    let policy = gateway.snapshot().conn_policy.clone();
                    let written = write_policy(&mut guard, &policy);
                    // An empty policy stands for "not written": `follow` tries again.
                    State::On(guard, if written { policy } else { Default::default() })
                }
                Err(reason) if settings.ebpf == EbpfMode::Required => {
                    return Err(StartError::Ebpf(reason));
                }
                Err(reason) => {
                    warn!(%reason, "eBPF off; the connection policy is enforced at accept");
                    State::Off(reason)
                }
            },
        };
        Ok(Arc::new(Kernel {
            state: Mutex::new(state),
        }))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Rewrites the maps whenever a published snapshot's policy differs from the last one
    /// written, and takes in the closed connections' counters every 100 ms (the kernel's
    /// ring holds about 3,600 records: at more closes per second than 36,000 some are lost
    /// to the totals, never to the live counts). Runs until the process stops; returns at
    /// once when eBPF is off.
    pub async fn follow(self: Arc<Self>, gateway: Arc<Gateway>) {
        if !matches!(*self.state(), State::On(..)) {
            // Nothing to write or take in; no timer waking the control thread for nothing.
            return;
        }
        let mut published = gateway.published();
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // When the maps last refused the policy: it is tried again every RETRY_REFUSED.
        let mut refused_at = (!self.sync_policy(&gateway)).then(Instant::now);
        loop {
            tokio::select! {
                changed = published.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    refused_at = (!self.sync_policy(&gateway)).then(Instant::now);
                }
                _ = tick.tick() => {
                    self.take_in_closed();
                    if refused_at.is_some_and(|at| at.elapsed() >= RETRY_REFUSED) {
                        refused_at = (!self.sync_policy(&gateway)).then(Instant::now);
                    }
                }
            }
        }
    }

    /// Writes the current snapshot's policy unless the maps hold it already; false when the
    /// maps refused it (the kernel then keeps the last policy written).
    fn sync_policy(&self, gateway: &Gateway) -> bool {
        let policy = gateway.snapshot().conn_policy.clone();
        let State::On(guard, applied) = &mut *self.state() else {
            return true;
        };
        if **applied == *policy {
            return true;
        }
        let written = write_policy(guard, &policy);
        if written {
            *applied = policy;
        }
        written
    }

    fn take_in_closed(&self) {
        #[cfg(feature = "ebpf")]
        if let State::On(guard, _) = &mut *self.state() {
            guard.traffic();
        }
    }

    /// Detaches everything (dropping the programs releases their links).
    pub fn stop(&self) {
        let mut state = self.state();
        if matches!(*state, State::On(..)) {
            *state = State::Off("stopped".to_owned());
            info!("eBPF programs detached");
        }
    }

    /// Sets the `gangway_ebpf_*` metrics from the maps (at scrape time).
    pub fn record_metrics(&self) {
        match &mut *self.state() {
            State::Off(_) => metrics::gauge!("gangway_ebpf_up").set(0.0),
            #[cfg(feature = "ebpf")]
            State::On(guard, _) => record_on(guard),
            #[cfg(not(feature = "ebpf"))]
            State::On(never, _) => match **never {},
        }
    }

    /// The `ebpf` object of `/status`.
    pub fn status(&self) -> Value {
        match &mut *self.state() {
            State::Off(reason) => json!({"state": "off", "reason": reason}),
            #[cfg(feature = "ebpf")]
            State::On(guard, _) => on_status(guard),
            #[cfg(not(feature = "ebpf"))]
            State::On(never, _) => match **never {},
        }
    }
}

#[cfg(feature = "ebpf")]
fn on_status(guard: &mut Guard) -> Value {
    let interfaces: serde_json::Map<String, Value> = guard
        .attachments()
        .iter()
        .map(|a| {
            let state = match &a.state {
                Ok(mode) => json!(mode),
                Err(reason) => json!(format!("not attached: {reason}")),
            };
            (a.interface.clone(), state)
        })
        .collect();
    let drops = guard.drops().unwrap_or_default();
    let live: serde_json::Map<String, Value> = guard
        .live_per_port()
        .unwrap_or_default()
        .into_iter()
        .map(|(port, n)| (port.to_string(), json!(n)))
        .collect();
    let traffic: serde_json::Map<String, Value> = guard
        .traffic()
        .iter()
        .map(|(port, t)| {
            let totals = json!({
                "connections": t.connections,
                "bytes_in": t.bytes_in,
                "bytes_out": t.bytes_out,
                "segments_in": t.segs_in,
                "segments_out": t.segs_out,
                "retransmits": t.retrans,
            });
            (port.to_string(), totals)
        })
        .collect();
    json!({
        "state": "on",
        "interfaces": interfaces,
        "connection_tracker": match guard.tracker() {
            Ok(()) => json!("on"),
            Err(reason) => json!(format!("off: {reason}")),
        },
        "drops": {
            "denied": drops.denied,
            "not_allowed": drops.not_allowed,
            "connection_limit": drops.connection_limit,
        },
        "packets_checked": drops.checked,
        "live_connections": live,
        "closed_connections": traffic,
    })
}

#[cfg(feature = "ebpf")]
fn record_on(guard: &mut Guard) {
    metrics::gauge!("gangway_ebpf_up").set(1.0);
    let drops = guard.drops().unwrap_or_default();
    for (reason, n) in [
        ("denied", drops.denied),
        ("not_allowed", drops.not_allowed),
        ("connection_limit", drops.connection_limit),
    ] {
        metrics::counter!("gangway_ebpf_drops_total", "reason" => reason).absolute(n);
    }
    metrics::counter!("gangway_ebpf_packets_checked_total").absolute(drops.checked);
    for (port, n) in guard.live_per_port().unwrap_or_default() {
        metrics::gauge!("gangway_ebpf_live_connections", "port" => port.to_string()).set(n as f64);
    }
    for (port, t) in guard.traffic() {
        let port = port.to_string();
        for (direction, bytes) in [("ingress", t.bytes_in), ("egress", t.bytes_out)] {
            metrics::counter!("gangway_ebpf_closed_bytes_total", "port" => port.clone(), "direction" => direction)
                .absolute(bytes);
        }
        metrics::counter!("gangway_ebpf_closed_connections_total", "port" => port.clone())
            .absolute(t.connections);
        metrics::counter!("gangway_ebpf_retransmits_total", "port" => port).absolute(t.retrans);
    }
}

#[cfg(feature = "ebpf")]
/// Writes `policy` into the maps; false when they refused it (it is logged).
fn write_policy(guard: &mut Guard, policy: &gangway_net::conn_policy::ConnectionPolicy) -> bool {
    match guard.apply(policy) {
        Ok(()) => {
            info!(ports = policy.ports.len(), "eBPF IP guard policy written");
            true
        }
        Err(e) => {
            warn!(error = %e, "eBPF IP guard policy not written; the accept check still applies");
            false
        }
    }
}

#[cfg(not(feature = "ebpf"))]
fn write_policy(never: &mut Guard, _: &gangway_net::conn_policy::ConnectionPolicy) -> bool {
    match *never {}
}

#[cfg(feature = "ebpf")]
fn load(settings: &Settings) -> Result<Box<Guard>, String> {
    let interfaces = if settings.ebpf_interfaces.is_empty() {
        let addrs: Vec<std::net::IpAddr> = settings
            .proxy_listen
            .iter()
            .chain(&settings.admin_listen)
            .chain(settings.cluster_listeners())
            .map(|l| l.addr.ip())
            .collect();
        gangway_ebpf::interfaces_for(&addrs)
    } else {
        settings.ebpf_interfaces.clone()
    };
    let mode = match settings.ebpf_xdp_mode {
        gangway_config::settings::XdpMode::Auto => gangway_ebpf::AttachMode::Auto,
        gangway_config::settings::XdpMode::Native => gangway_ebpf::AttachMode::Native,
        gangway_config::settings::XdpMode::Skb => gangway_ebpf::AttachMode::Skb,
    };
    let capacity = settings
        .max_connections
        .saturating_mul(settings.worker_count())
        .min(1 << 20) as u32;
    gangway_ebpf::KernelGuard::start(&gangway_ebpf::Options {
        interfaces,
        mode,
        capacity,
    })
    .map(Box::new)
    .map_err(|e| e.0)
}

#[cfg(not(feature = "ebpf"))]
fn load(_: &Settings) -> Result<Box<Guard>, String> {
    Err("this build has no eBPF loader (feature \"ebpf\")".to_owned())
}

/// `gangway ebpf status`: prints what the maps of every loaded IP guard hold.
#[cfg(feature = "ebpf")]
pub fn command(step: crate::cli::EbpfStep) -> std::process::ExitCode {
    use std::process::ExitCode;
    let crate::cli::EbpfStep::Status = step;
    let loaded = match gangway_ebpf::inspect() {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("gangway ebpf status: {e}");
            return ExitCode::FAILURE;
        }
    };
    if loaded.is_empty() {
        println!("no gangway IP guard is loaded on this host");
        return ExitCode::SUCCESS;
    }
    for guard in loaded {
        println!("ip guard (program {}):", guard.program_id);
        let d = guard.drops;
        println!(
            "  drops: denied {}, not_allowed {}, connection_limit {} (of {} packets checked)",
            d.denied, d.not_allowed, d.connection_limit, d.checked
        );
        for p in &guard.ports {
            let cap = match p.max_conn_per_ip {
                0 => "no cap".to_owned(),
                n => format!("at most {n} per source"),
            };
            println!(
                "  port {}: {} deny, {} allow entries; {cap}",
                p.port, p.deny_entries, p.allow_entries
            );
        }
        for (port, source, n) in &guard.live {
            println!("  live: port {port} from {source}: {n}");
        }
    }
    ExitCode::SUCCESS
}

/// `gangway ebpf status` in a build without the loader.
#[cfg(not(feature = "ebpf"))]
pub fn command(_: crate::cli::EbpfStep) -> std::process::ExitCode {
    eprintln!("gangway ebpf: this build has no eBPF loader (feature \"ebpf\")");
    std::process::ExitCode::FAILURE
}
