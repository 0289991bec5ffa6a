//! gangway's kernel fast path: two eBPF programs in C (`src/*.bpf.c`, one object built by
//! clang in `build.rs`) loaded with aya.
//!
//! - The IP guard (XDP, `gw_ip_guard`) drops TCP packets to a guarded port from denied
//!   sources, from sources outside an allow list, and SYNs from a source already at
//!   `max_connections_per_ip`, before the kernel spends a socket on them.
//! - The connection tracker (sockops, `gw_conn_track`, on gangway's own cgroup) keeps the
//!   kernel's TCP counters per connection by socket cookie, and the live count per source
//!   that the guard's connection limit reads.
//!
//! [`KernelGuard::start`] loads and attaches both; [`KernelGuard::apply`] writes a
//! [`ConnectionPolicy`] into the maps without a moment where an allowed packet is dropped
//! (see [`maps`]). Dropping the guard detaches everything. Attachments are bpf_links, which
//! the kernel releases when their process exits however it exits, so a crashed gangway
//! leaves nothing attached. One XDP program per interface: a second gangway on the same
//! host finds the interface busy and guards its own ports in userspace instead (the rule is
//! in `ebpf/README.md`).

pub mod abi;
mod inspect;
mod interfaces;
mod maps;
mod netlink;

use std::collections::BTreeMap;
use std::fs::File;
use std::io;

use aya::maps::{MapData, RingBuf};
use aya::programs::{CgroupAttachMode, SockOps, Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader};
use gangway_net::conn_policy::ConnectionPolicy;
use tracing::{info, warn};

pub use inspect::{Loaded, inspect};
pub use interfaces::interfaces_for;
pub use maps::{DropCounts, PortReport, Traffic};

/// The object built from `src/gangway.bpf.c` (empty when clang was missing at build time).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/gangway.bpf.o"));

/// Why the programs were not built: `ok`, or the reason `build.rs` recorded.
const BUILD: &str = env!("GANGWAY_EBPF_BUILD");

/// The programs' names in the object (and in `bpftool prog`).
const XDP_PROGRAM: &str = "gw_ip_guard";
const SOCKOPS_PROGRAM: &str = "gw_conn_track";

/// How to attach the IP guard.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AttachMode {
    /// Native where the driver supports it, else generic (the default).
    #[default]
    Auto,
    /// Native only.
    Native,
    /// Generic (skb) only.
    Skb,
}

/// What to load.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Interfaces to attach the IP guard to.
    pub interfaces: Vec<String>,
    /// XDP attach mode.
    pub mode: AttachMode,
    /// Connections the tracker's maps hold (the node's connection capacity).
    pub capacity: u32,
}

/// Why the kernel fast path is not running.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unavailable(pub String);

/// One interface the guard is attached to, or could not be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    /// Interface name.
    pub interface: String,
    /// `native` or `skb` when attached; the reason when not.
    pub state: Result<&'static str, String>,
}

/// The loaded programs and their attachments; dropping it detaches them.
pub struct KernelGuard {
    ebpf: Ebpf,
    closed: RingBuf<MapData>,
    traffic: BTreeMap<u16, Traffic>,
    attachments: Vec<Attachment>,
    tracker: Result<(), String>,
    generation: u8,
}

impl std::fmt::Debug for KernelGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelGuard")
            .field("attachments", &self.attachments)
            .field("tracker", &self.tracker)
            .finish_non_exhaustive()
    }
}

/// True when this build embeds the programs; else the reason they were not built.
pub fn built() -> Result<(), Unavailable> {
    if OBJECT.is_empty() {
        return Err(Unavailable(format!("built without eBPF programs: {BUILD}")));
    }
    Ok(())
}

fn load_error(what: &str, e: impl std::fmt::Display) -> Unavailable {
    let text = e.to_string();
    let hint = if text.contains("Operation not permitted") || text.contains("EPERM") {
        " (needs root, or CAP_BPF with CAP_NET_ADMIN)"
    } else {
        ""
    };
    Unavailable(format!("{what}: {text}{hint}"))
}

impl KernelGuard {
    /// Loads both programs, attaches the tracker to this process's cgroup and the guard to
    /// `options.interfaces`. Fails only when nothing could be attached; an interface or the
    /// tracker that failed is reported by [`Self::attachments`] and [`Self::tracker`].
    pub fn start(options: &Options) -> Result<KernelGuard, Unavailable> {
        built()?;
        raise_memlock();
        let capacity = options.capacity.max(1024);
        let mut ebpf = EbpfLoader::new()
            .map_max_entries("gw_live", capacity)
            .load(OBJECT)
            .map_err(|e| load_error("loading the eBPF object", e))?;
        let closed = ebpf
            .take_map("gw_closed")
            .ok_or_else(|| Unavailable("gw_closed missing from the object".to_owned()))
            .and_then(|m| RingBuf::try_from(m).map_err(|e| load_error("the gw_closed ring", e)))?;
        let tracker = attach_tracker(&mut ebpf);
        if let Err(reason) = &tracker {
            warn!(reason = %reason, "eBPF connection tracker not attached; the connection limit is enforced at accept");
        }
        let program: &mut Xdp = ebpf
            .program_mut(XDP_PROGRAM)
            .ok_or_else(|| Unavailable(format!("{XDP_PROGRAM} missing from the object")))?
            .try_into()
            .map_err(|e| load_error("the IP guard", e))?;
        program
            .load()
            .map_err(|e| load_error("loading the IP guard", e))?;
        let attachments: Vec<Attachment> = options
            .interfaces
            .iter()
            .map(|name| Attachment {
                interface: name.clone(),
                state: attach_xdp(program, name, options.mode),
            })
            .collect();
        for a in &attachments {
            match &a.state {
                Ok(mode) => info!(interface = %a.interface, mode, "eBPF IP guard attached"),
                Err(reason) => {
                    warn!(interface = %a.interface, reason = %reason, "eBPF IP guard not attached")
                }
            }
        }
        if !attachments.iter().any(|a| a.state.is_ok()) {
            let why = attachments
                .iter()
                .map(|a| match &a.state {
                    Err(reason) => format!("{}: {reason}", a.interface),
                    Ok(_) => String::new(),
                })
                .collect::<Vec<_>>()
                .join("; ");
            return Err(Unavailable(if why.is_empty() {
                "no interface to attach the IP guard to".to_owned()
            } else {
                format!("the IP guard attached nowhere ({why})")
            }));
        }
        Ok(KernelGuard {
            ebpf,
            closed,
            traffic: BTreeMap::new(),
            attachments,
            tracker,
            generation: 0,
        })
    }

    /// Where the guard is attached, and why not elsewhere.
    pub fn attachments(&self) -> &[Attachment] {
        &self.attachments
    }

    /// Whether the connection tracker (and so the kernel's connection limit) runs.
    pub fn tracker(&self) -> Result<(), &str> {
        self.tracker.as_ref().map(|_| ()).map_err(String::as_str)
    }

    /// Interfaces the guard holds.
    pub fn guarded_interfaces(&self) -> impl Iterator<Item = &str> {
        self.attachments
            .iter()
            .filter(|a| a.state.is_ok())
            .map(|a| a.interface.as_str())
    }

    /// Writes `policy` into the generation the programs do not read, then flips them to it:
    /// a packet sees the old policy or the new one, never a half-written one.
    pub fn apply(&mut self, policy: &ConnectionPolicy) -> io::Result<()> {
        let next = 1 - self.generation;
        maps::write_generation(&mut self.ebpf, next, policy)?;
        maps::activate(&mut self.ebpf, next)?;
        self.generation = next;
        Ok(())
    }

    /// The guard's packet counts since it loaded.
    pub fn drops(&self) -> io::Result<DropCounts> {
        maps::drops(maps::map(&self.ebpf, "gw_stats")?)
    }

    /// Live tracked connections per port.
    pub fn live_per_port(&self) -> io::Result<BTreeMap<u16, u64>> {
        maps::live_per_port(maps::map(&self.ebpf, "gw_live")?)
    }

    /// Traffic of the connections closed so far, by port (the kernel's payload byte,
    /// segment and retransmit counts), after taking in what the ring holds.
    pub fn traffic(&mut self) -> &BTreeMap<u16, Traffic> {
        maps::drain_closed(&mut self.closed, &mut self.traffic);
        &self.traffic
    }
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK, whose default is too small.
fn raise_memlock() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit with a valid, initialized struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } != 0 {
        tracing::debug!("RLIMIT_MEMLOCK not raised (newer kernels do not need it)");
    }
}

fn attach_xdp(
    program: &mut Xdp,
    interface: &str,
    mode: AttachMode,
) -> Result<&'static str, String> {
    let tries: &[(XdpMode, &'static str)] = match mode {
        AttachMode::Auto => &[(XdpMode::Driver, "native"), (XdpMode::Skb, "skb")],
        AttachMode::Native => &[(XdpMode::Driver, "native")],
        AttachMode::Skb => &[(XdpMode::Skb, "skb")],
    };
    let mut last = String::new();
    let mut replaced = false;
    for (xdp_mode, name) in tries {
        match program.attach(interface, *xdp_mode) {
            Ok(_) => return Ok(name),
            Err(e) => {
                let text = chain(&e);
                let busy = text.contains("Device or resource busy") || text.contains("File exists");
                if !busy {
                    last = text;
                    continue;
                }
                if !replaced {
                    replace_stale(interface)?;
                    replaced = true;
                    if program.attach(interface, *xdp_mode).is_ok() {
                        return Ok(name);
                    }
                }
                last = text;
            }
        }
    }
    Err(last)
}

/// The interface holds an XDP program already. A gangway guard attached through netlink (a
/// crashed run's, on a kernel without XDP links: a netlink attachment outlives its process)
/// is detached so that this run can attach; anything else is left alone and named.
fn replace_stale(interface: &str) -> Result<(), String> {
    let c_name = std::ffi::CString::new(interface).map_err(|e| e.to_string())?;
    // SAFETY: a NUL-terminated name.
    let ifindex = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
    let attached = netlink::attached(ifindex)
        .map_err(|e| {
            format!("the interface is busy, and asking which program holds it failed: {e}")
        })?
        .ok_or("the interface is busy, but holds no XDP program")?;
    let id = attached.prog_id;
    let name = aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .find(|p| p.id() == id)
        .and_then(|p| p.name_as_str().map(str::to_owned))
        .unwrap_or_default();
    let linked = aya::programs::loaded_links()
        .filter_map(Result::ok)
        .any(|l| l.program_id() == id);
    if linked {
        return Err(format!(
            "another XDP program holds the interface ({name}, program id {id}, through a bpf_link of a running process: perhaps another gangway); left alone"
        ));
    }
    if name != XDP_PROGRAM {
        return Err(format!(
            "another XDP program holds the interface ({name}, program id {id}, attached through netlink); left alone"
        ));
    }
    netlink::detach(ifindex, attached.mode_flags)
        .map_err(|e| format!("detaching a stale gangway guard (program id {id}): {e}"))?;
    warn!(
        interface,
        program.id = id,
        "replaced a stale gangway IP guard left attached by an earlier run"
    );
    Ok(())
}

/// An error with its sources, which aya keeps the OS error in.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}

/// Attaches the tracker to the cgroup (v2) this process runs in, so that it sees gangway's
/// sockets and no one else's.
fn attach_tracker(ebpf: &mut Ebpf) -> Result<(), String> {
    let path = own_cgroup_path().ok_or("no cgroup v2 hierarchy found for this process")?;
    let cgroup = File::open(&path).map_err(|e| format!("opening {}: {e}", path.display()))?;
    let program: &mut SockOps = ebpf
        .program_mut(SOCKOPS_PROGRAM)
        .ok_or("gw_conn_track missing from the object")?
        .try_into()
        .map_err(|e| format!("{e}"))?;
    program.load().map_err(|e| format!("loading: {e}"))?;
    // A cgroup bpf_link takes no flags (the kernel refuses BPF_F_ALLOW_MULTI there) and
    // sits beside other links on the cgroup anyway.
    program
        .attach(cgroup, CgroupAttachMode::Single)
        .map_err(|e| format!("attaching to {}: {}", path.display(), chain(&e)))?;
    info!(cgroup = %path.display(), "eBPF connection tracker attached");
    Ok(())
}

/// The directory of this process's cgroup v2: the mount point of the `cgroup2` filesystem
/// joined with the `0::` line of `/proc/self/cgroup`.
fn own_cgroup_path() -> Option<std::path::PathBuf> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let relative = cgroups.lines().find_map(|l| l.strip_prefix("0::"))?;
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    let mount = mounts.lines().find_map(|l| {
        let mut fields = l.split_whitespace();
        let (_, point, fstype) = (fields.next()?, fields.next()?, fields.next()?);
        (fstype == "cgroup2").then(|| point.to_owned())
    })?;
    Some(std::path::Path::new(&mount).join(relative.trim_start_matches('/')))
}
