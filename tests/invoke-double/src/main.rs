//! `gangway-invoke-double [PORT]`: serves the Invoke API double on 127.0.0.1:PORT (a free
//! port when absent) until killed. Once it accepts it prints one line,
//! `listening on <addr> region <region> key <access key id> secret <secret>`, the
//! credentials a client must sign with. The benchmarks run it as a process of its own, so
//! its CPU is not gangway's.

fn main() {
    let port = std::env::args()
        .nth(1)
        .map(|p| p.parse::<u16>().expect("PORT is a number"));
    let invoke = gangway_invoke_double::Invoke::start_on(port.unwrap_or(0), &[]);
    println!(
        "listening on {} region {} key {} secret {}",
        invoke.addr,
        gangway_invoke_double::REGION,
        gangway_invoke_double::ACCESS_KEY,
        gangway_invoke_double::SECRET_KEY
    );
    loop {
        std::thread::park();
    }
}
