//! Target health on the Admin API (`kong/api/routes/upstreams.lua`): `GET
//! /upstreams/{u}/health` lists each target with the health this node's balancer sees for
//! it and for each of its addresses (`?balancer_health=1`: the upstream's as a whole), and
//! `PUT /upstreams/{u}/targets/{t}[/{address}]/healthy|unhealthy` sets it by hand, on this
//! node and (through the store) on the others that share its database.

use std::net::IpAddr;

use axum::response::Response;
use gangway_config::dao::kind_named;
use gangway_config::model::split_target;
use gangway_config::store::{Address, PageQuery};
use gangway_proxy::upstream::status::{Resolution, TargetStatus};
use serde_json::{Value, json};
use tracing::{info, warn};
use uuid::Uuid;

use crate::{AdminState, crud, reply};

/// True when the upstream has no health check on (Kong's `is_upstream_using_healthcheck`):
/// Kong then reports `HEALTHCHECKS_OFF` and has no health checker to set.
fn checks_off(upstream: &Value) -> bool {
    let checks = &upstream["healthchecks"];
    let zero = |v: &Value| v.as_u64().unwrap_or(0) == 0;
    let active = &checks["active"];
    let passive = &checks["passive"];
    zero(&active["healthy"]["interval"])
        && zero(&active["unhealthy"]["interval"])
        && ["tcp_failures", "timeouts", "http_failures"]
            .iter()
            .all(|f| zero(&passive["unhealthy"][*f]))
}

/// The upstream addressed by `key` and its id, or the reply to send instead.
async fn upstream_of(state: &AdminState, key: &str) -> Result<(Value, Uuid), Response> {
    let Some(upstreams) = kind_named("upstreams") else {
        return Err(reply::not_found());
    };
    let upstream = match state.store.select(upstreams, &Address::parse(key)).await {
        Ok(Some(u)) => u,
        Ok(None) => return Err(reply::not_found()),
        Err(e) => return Err(reply::dao_error(&e)),
    };
    match upstream["id"].as_str().and_then(|s| s.parse().ok()) {
        Some(id) => Ok((upstream, id)),
        None => Err(reply::not_found()),
    }
}

/// The upstream addressed by `key` and every target of it (in the store's order), or the
/// reply to send instead.
async fn upstream_and_targets(
    state: &AdminState,
    key: &str,
) -> Result<(Value, Vec<Value>), Response> {
    let (upstream, id) = upstream_of(state, key).await?;
    let Some(targets) = kind_named("targets") else {
        return Err(reply::not_found());
    };
    let mut query = PageQuery {
        size: 1000,
        parent: Some(("upstream", id)),
        ..PageQuery::default()
    };
    let mut all = Vec::new();
    loop {
        let page = state
            .store
            .page(targets, &query)
            .await
            .map_err(|e| reply::dao_error(&e))?;
        all.extend(page.data);
        match page.offset {
            Some(next) => query.offset = Some(next),
            None => return Ok((upstream, all)),
        }
    }
}

/// The health this node sees for `target` (a target entity) of upstream `name`.
fn status_of(state: &AdminState, name: &str, target: &Value) -> TargetStatus {
    let target = target["target"].as_str().unwrap_or_default();
    state.gateway.shared.health.target_status(name, target)
}

/// A target's total and unavailable weight: every address carries the target's weight.
fn weights(status: &TargetStatus, weight: u64) -> (u64, u64) {
    let down = status.addresses.iter().filter(|(_, ok)| !ok).count() as u64;
    (weight * status.addresses.len() as u64, weight * down)
}

/// Kong's `getTargetStatus` with each address's `health`.
fn target_data(status: &TargetStatus, weight: u64, off: bool) -> Value {
    let health = |healthy: bool| match (off || weight == 0, healthy) {
        (true, _) => "HEALTHCHECKS_OFF",
        (false, true) => "HEALTHY",
        (false, false) => "UNHEALTHY",
    };
    let addresses: Vec<Value> = status
        .addresses
        .iter()
        .map(|(ip, healthy)| {
            json!({"ip": ip.to_string(), "port": status.port, "weight": weight, "health": health(*healthy)})
        })
        .collect();
    let (total, unavailable) = weights(status, weight);
    json!({
        "host": status.host,
        "port": status.port,
        "dns": status.dns(),
        "nodeWeight": weight,
        "weight": {"total": total, "unavailable": unavailable, "available": total - unavailable},
        "addresses": addresses,
    })
}

/// A target's `health`, as Kong sums its addresses up: `HEALTHY` if any is, else
/// `UNHEALTHY` if any is, else `HEALTHCHECKS_OFF`; `DNS_ERROR` when its name has no
/// addresses.
fn target_health(status: &TargetStatus, weight: u64, off: bool) -> &'static str {
    match status.resolution {
        Resolution::Failed => "DNS_ERROR",
        // Not looked up yet: the balancer will try it, so it is healthy until shown not.
        Resolution::Pending if off || weight == 0 => "HEALTHCHECKS_OFF",
        Resolution::Pending => "HEALTHY",
        _ if off || weight == 0 => "HEALTHCHECKS_OFF",
        _ if status.any_healthy() => "HEALTHY",
        _ => "UNHEALTHY",
    }
}

/// `GET /upstreams/{key}/health[?balancer_health=1]`: a page of targets (Kong's `size` and
/// `offset`), or with `balancer_health=1` the upstream as a whole.
pub async fn upstream_health(
    state: &AdminState,
    key: &str,
    balancer_health: bool,
    query: Option<&str>,
) -> Response {
    if balancer_health {
        return balancer(state, key).await;
    }
    let mut page_query = match crud::ListArgs::parse(query).query() {
        Ok(q) => q,
        Err(e) => return reply::dao_error(&e),
    };
    let (upstream, id) = match upstream_of(state, key).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let Some(targets) = kind_named("targets") else {
        return reply::not_found();
    };
    page_query.parent = Some(("upstream", id));
    let mut page = match state.store.page(targets, &page_query).await {
        Ok(page) => page,
        Err(e) => return reply::dao_error(&e),
    };
    let name = upstream["name"].as_str().unwrap_or_default();
    let off = checks_off(&upstream);
    for target in &mut page.data {
        let status = status_of(state, name, target);
        let weight = target["weight"].as_u64().unwrap_or(0);
        target["health"] = json!(target_health(&status, weight, off));
        target["data"] = target_data(&status, weight, off);
    }
    let next = page
        .offset
        .as_ref()
        .map(|offset| format!("/upstreams/{key}/health?offset={}", crud::escape(offset)));
    let mut body = crud::list_body(page, next);
    body["node_id"] = json!(gangway_config::node::node_id());
    reply::json(200, &body)
}

/// `GET /upstreams/{key}/health?balancer_health=1`: Kong's `get_balancer_health`.
async fn balancer(state: &AdminState, key: &str) -> Response {
    let (upstream, targets) = match upstream_and_targets(state, key).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let name = upstream["name"].as_str().unwrap_or_default();
    let off = checks_off(&upstream);
    let (mut total, mut unavailable, mut hosts) = (0, 0, Vec::new());
    for target in targets {
        let status = status_of(state, name, &target);
        let weight = target["weight"].as_u64().unwrap_or(0);
        let (target_total, target_unavailable) = weights(&status, weight);
        total += target_total;
        unavailable += target_unavailable;
        hosts.push(target_data(&status, weight, off));
    }
    let healthy = total > unavailable;
    let health = if healthy { "HEALTHY" } else { "UNHEALTHY" };
    reply::json(
        200,
        &json!({
            "data": {
                "health": if off { "HEALTHCHECKS_OFF" } else { health },
                "balancer_health": health,
                "id": upstream["id"],
                "details": {
                    "healthy": healthy,
                    "weight": {"total": total, "unavailable": unavailable, "available": total - unavailable},
                    "hosts": hosts,
                },
            },
            "next": null,
            "node_id": gangway_config::node::node_id(),
        }),
    )
}

/// `PUT /upstreams/{u}/targets/{t}[/{address}]/healthy|unhealthy`: 204. Without an address,
/// every address of the target; an address is `ip[:port]`, its port 8000 when left out (as
/// Kong reads it).
pub async fn set_target_health(
    state: &AdminState,
    key: &str,
    target_key: &str,
    address: Option<&str>,
    healthy: bool,
) -> Response {
    let (upstream, targets) = match upstream_and_targets(state, key).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let Some(target) = targets
        .iter()
        .find(|t| t["id"].as_str() == Some(target_key) || t["target"].as_str() == Some(target_key))
    else {
        return reply::not_found();
    };
    let name = upstream["name"].as_str().unwrap_or_default();
    if checks_off(&upstream) {
        return reply::message(400, &format!("no healthchecker found for {name}"));
    }
    let status = status_of(state, name, target);
    let target = target["target"].as_str().unwrap_or_default();
    // A name in the address's place means the whole target, as in Kong.
    let ip = match address.map(|a| (a, split_target(a))) {
        None => None,
        Some((given, None)) => {
            return reply::message(400, &format!("invalid address '{given}'"));
        }
        Some((_, Some((host, port)))) => match host.parse::<IpAddr>() {
            Ok(ip) if port == status.port && status.addresses.iter().any(|(a, _)| *a == ip) => {
                Some(ip)
            }
            Ok(_) => return reply::message(400, "target not found"),
            Err(_) => None,
        },
    };
    state
        .gateway
        .shared
        .health
        .get(name, target)
        .set_healthy(ip, healthy);
    let address = ip.map(|ip| ip.to_string()).unwrap_or_default();
    info!(upstream = %name, %target, %address, healthy, "target health set through the Admin API");
    // The other nodes on the database learn it as Kong's cluster does; this node's answer
    // does not wait on them.
    if let Err(e) = state
        .store
        .broadcast_target_health(name, target, ip, healthy)
        .await
    {
        warn!(error = %e.message, upstream = %name, %target, "could not tell the other nodes of a target's health");
    }
    reply::empty(204)
}
