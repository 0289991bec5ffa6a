//! Integration tests: the real `gangway` binary, real sockets, a real upstream.
//!
//! Run once per I/O backend (`GANGWAY_TEST_IO_BACKEND=io_uring|epoll`); `cargo xtask test` does
//! both.

mod harness;

mod admin;
mod aio_kong;
mod conformance;
mod deck;
mod dns;
mod ebpf;
mod errors;
mod kernel_counters;
mod lambda;
mod lifecycle;
mod metrics;
mod otel;
mod pirate_weather;
mod plugins;
mod plugins_cache;
mod plugins_cors;
mod plugins_http_log;
mod plugins_log;
mod plugins_misc;
mod postgres_harness;
mod proxy;
mod proxy_protocol;
mod ratelimit;
mod store;
mod store_migrations;
mod store_tls;
mod tls;
mod transformers;
mod upstream_tls;
mod upstreams;
