//! `gangway-invoke-double [PORT]`: serves the Invoke API double on 127.0.0.1:PORT (a free
//! port when absent) until killed, printing `listening on <addr>` once it accepts. The
//! benchmarks run it as a process of its own, so its CPU is not gangway's.

fn main() {
    let port = std::env::args()
        .nth(1)
        .map(|p| p.parse::<u16>().expect("PORT is a number"));
    let invoke = gangway_invoke_double::Invoke::start_on(port.unwrap_or(0), &[]);
    println!("listening on {}", invoke.addr);
    loop {
        std::thread::park();
    }
}
