//! `gangway ebpf status`: the maps of every IP guard loaded on this host, read by id from the
//! kernel (another process's programs, typically the running gangway's).

use std::collections::BTreeMap;
use std::net::IpAddr;

use aya::maps::{Map, MapData};
use aya::programs::loaded_programs;

use crate::maps::{self, DropCounts, PortReport};

/// One loaded IP guard and what its maps hold.
#[derive(Debug)]
pub struct Loaded {
    /// The kernel's id of the `gw_ip_guard` program.
    pub program_id: u32,
    /// Guarded ports of the active policy generation.
    pub ports: Vec<PortReport>,
    /// Packet counts.
    pub drops: DropCounts,
    /// Live connections per (port, source).
    pub live: Vec<(u16, IpAddr, u32)>,
}

/// Every `gw_ip_guard` program loaded on the host, with its maps read. Needs root (or
/// CAP_BPF); the error says so.
pub fn inspect() -> Result<Vec<Loaded>, String> {
    let mut found = Vec::new();
    for program in loaded_programs() {
        let program =
            program.map_err(|e| format!("listing BPF programs: {e} (needs root or CAP_BPF)"))?;
        if program.name_as_str() != Some(crate::XDP_PROGRAM) {
            continue;
        }
        let ids = program
            .map_ids()
            .map_err(|e| format!("reading the maps of program {}: {e}", program.id()))?
            .unwrap_or_default();
        let mut by_name: BTreeMap<String, Map> = BTreeMap::new();
        for id in ids {
            let data = MapData::from_id(id).map_err(|e| format!("opening map {id}: {e}"))?;
            let name = data
                .info()
                .ok()
                .and_then(|i| i.name_as_str().map(str::to_owned))
                .unwrap_or_default();
            if let Ok(map) = Map::from_map_data(data) {
                by_name.insert(name, map);
            }
        }
        let get = |name: &str| {
            by_name
                .get(name)
                .ok_or_else(|| format!("program {} has no map {name}", program.id()))
        };
        let text = |e: std::io::Error| e.to_string();
        found.push(Loaded {
            program_id: program.id(),
            ports: maps::active_ports(
                get("gw_active")?,
                get("gw_ports")?,
                get("gw_lpm4")?,
                get("gw_lpm6")?,
            )
            .map_err(text)?,
            drops: maps::drops(get("gw_stats")?).map_err(text)?,
            live: maps::live_sources(get("gw_live")?).map_err(text)?,
        });
    }
    Ok(found)
}
