//! `GET /upstreams/{u}/health` (`kong/api/routes/upstreams.lua`): each target of an upstream
//! with the health this node's balancer sees for it.

use axum::response::Response;
use gangway_config::dao::kind_named;
use gangway_config::store::{Address, PageQuery};
use serde_json::{Value, json};

use crate::AdminState;
use crate::reply;

/// True when the upstream has no health check on: Kong then reports `HEALTHCHECKS_OFF`.
fn checks_off(upstream: &Value) -> bool {
    let checks = &upstream["healthchecks"];
    let zero = |v: &Value| v.as_u64().unwrap_or(0) == 0;
    let active = &checks["active"];
    let passive = &checks["passive"];
    zero(&active["healthy"]["interval"])
        && zero(&active["unhealthy"]["interval"])
        && zero(&passive["healthy"]["successes"])
        && ["tcp_failures", "timeouts", "http_failures"]
            .iter()
            .all(|f| zero(&passive["unhealthy"][*f]))
}

/// `GET /upstreams/{key}/health`.
pub async fn upstream_health(state: &AdminState, key: &str) -> Response {
    let (Some(upstreams), Some(targets)) = (kind_named("upstreams"), kind_named("targets")) else {
        return reply::not_found();
    };
    let upstream = match state.store.select(upstreams, &Address::parse(key)).await {
        Ok(Some(u)) => u,
        Ok(None) => return reply::not_found(),
        Err(e) => return reply::dao_error(&e),
    };
    let Some(id) = upstream["id"].as_str().and_then(|s| s.parse().ok()) else {
        return reply::not_found();
    };
    let name = upstream["name"].as_str().unwrap_or_default();
    let off = checks_off(&upstream);
    let mut query = PageQuery {
        size: 1000,
        parent: Some(("upstream", id)),
        ..PageQuery::default()
    };
    let mut data = Vec::new();
    loop {
        let page = match state.store.page(targets, &query).await {
            Ok(page) => page,
            Err(e) => return reply::dao_error(&e),
        };
        for mut target in page.data {
            let health = if off {
                "HEALTHCHECKS_OFF"
            } else {
                let address = target["target"].as_str().unwrap_or_default();
                match state.gateway.health.get(name, address).is_healthy() {
                    true => "HEALTHY",
                    false => "UNHEALTHY",
                }
            };
            target["health"] = json!(health);
            data.push(target);
        }
        match page.offset {
            Some(next) => query.offset = Some(next),
            None => break,
        }
    }
    let node_id = gangway_config::node::node_id();
    reply::json(
        200,
        &json!({"data": data, "next": null, "node_id": node_id}),
    )
}
