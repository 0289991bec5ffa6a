//! A minimal Pingora reverse proxy for `cargo xtask bench proxy`: every request goes to one
//! plain-HTTP upstream over Pingora's keep-alive pool; nothing is logged.
//!
//! `pingora-peer LISTEN UPSTREAM THREADS DIR [CERT KEY]`: with CERT and KEY the listener
//! speaks TLS (rustls). DIR holds the pid file and upgrade socket, which Pingora otherwise
//! puts in /tmp where two instances would collide.

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;

struct OneUpstream {
    addr: String,
}

#[async_trait]
impl ProxyHttp for OneUpstream {
    type CTX = ();

    fn new_ctx(&self) -> Self::CTX {}

    async fn upstream_peer(&self, _: &mut Session, _: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(
            self.addr.as_str(),
            false,
            String::new(),
        )))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, upstream, threads, dir, tls @ ..] = args.as_slice() else {
        eprintln!("usage: pingora-peer LISTEN UPSTREAM THREADS DIR [CERT KEY]");
        std::process::exit(2);
    };
    let threads: usize = threads.parse().expect("THREADS is a number");
    let conf = ServerConf {
        threads,
        // Pingora's default pool of 128 idle upstream connections per service is below what
        // nginx keeps in this benchmark (512); match it.
        upstream_keepalive_pool_size: 512,
        // Single-threaded runtimes, one per thread, instead of tokio's work-stealing one:
        // measured here with one thread, 36.7k against 31.4k requests a second.
        work_stealing: false,
        // SIGTERM (how the benchmark stops its contenders) ends it at once.
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        pid_file: format!("{dir}/pingora.pid"),
        upgrade_sock: format!("{dir}/pingora_upgrade.sock"),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = http_proxy_service(
        &server.configuration,
        OneUpstream {
            addr: upstream.clone(),
        },
    );
    match tls {
        [] => proxy.add_tcp(listen),
        [cert, key] => proxy
            .add_tls(listen, cert, key)
            .expect("TLS certificate and key load"),
        _ => {
            eprintln!("usage: pingora-peer LISTEN UPSTREAM THREADS DIR [CERT KEY]");
            std::process::exit(2);
        }
    }
    server.add_service(proxy);
    server.run_forever();
}
