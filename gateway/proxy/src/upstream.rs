//! Upstream connections: the per-worker keep-alive pool, DNS cache, load balancer and
//! passive health checks.

pub mod active;
pub mod balancer;
pub mod dns;
pub mod health;
pub mod load;
pub mod pool;
pub mod status;
pub mod stream;
