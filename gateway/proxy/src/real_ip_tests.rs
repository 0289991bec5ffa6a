use std::net::IpAddr;

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn nets(list: &[&str]) -> Vec<IpNet> {
    list.iter().map(|n| n.parse().expect("test CIDR")).collect()
}

fn cfg(trusted: &[&str], header: &str, recursive: bool) -> RealIpConfig {
    RealIpConfig::new(nets(trusted), header, recursive)
}

fn resolve(c: &RealIpConfig, peer: &str, lines: &[&str]) -> IpAddr {
    c.resolve(ip(peer), None, lines.iter().map(|l| l.as_bytes()))
}

const LB: &str = "10.0.0.1";

#[test]
fn an_untrusted_peer_keeps_its_address() {
    let c = cfg(&["10.0.0.0/8"], "X-Forwarded-For", true);
    assert_eq!(resolve(&c, "192.0.2.1", &["1.1.1.1"]), ip("192.0.2.1"));
    let nobody = cfg(&[], "X-Real-IP", false);
    assert_eq!(
        resolve(&nobody, LB, &["1.1.1.1"]),
        ip(LB),
        "Kong's default trusts no one"
    );
    assert!(!nobody.is_trusted(ip(LB)));
}

#[test]
fn a_trusted_peer_is_replaced_by_the_header() {
    let c = cfg(&["10.0.0.0/8"], "X-Real-IP", false);
    assert_eq!(resolve(&c, LB, &["1.1.1.1"]), ip("1.1.1.1"));
    assert_eq!(resolve(&c, LB, &["2001:db8::1"]), ip("2001:db8::1"));
    assert_eq!(resolve(&c, LB, &[]), ip(LB), "no header keeps the peer");
}

#[test]
fn without_recursion_the_last_address_wins_even_if_trusted() {
    let c = cfg(&["10.0.0.0/8"], "X-Forwarded-For", false);
    assert_eq!(resolve(&c, LB, &["1.1.1.1, 2.2.2.2"]), ip("2.2.2.2"));
    assert_eq!(resolve(&c, LB, &["1.1.1.1, 10.0.0.2"]), ip("10.0.0.2"));
    assert_eq!(
        resolve(&c, LB, &["1.1.1.1 2.2.2.2"]),
        ip("2.2.2.2"),
        "space separates too"
    );
    assert_eq!(
        resolve(&c, LB, &["1.1.1.1, 2.2.2.2, "]),
        ip("2.2.2.2"),
        "trailing separators"
    );
}

#[test]
fn with_recursion_the_rightmost_untrusted_address_wins() {
    let c = cfg(&["10.0.0.0/8", "2001:db8::/32"], "X-Forwarded-For", true);
    assert_eq!(
        resolve(&c, LB, &["1.1.1.1, 2.2.2.2, 10.0.0.3, 10.0.0.2"]),
        ip("2.2.2.2")
    );
    assert_eq!(resolve(&c, LB, &["1.1.1.1, 2001:db8::5"]), ip("1.1.1.1"));
    assert_eq!(
        resolve(&c, LB, &["10.0.0.5, 10.0.0.3, 10.0.0.2"]),
        ip("10.0.0.5"),
        "all trusted: the leftmost"
    );
    assert_eq!(resolve(&c, LB, &["3.3.3.3"]), ip("3.3.3.3"));
}

#[test]
fn x_forwarded_for_lines_join_in_order() {
    let rec = cfg(&["10.0.0.0/8"], "X-Forwarded-For", true);
    assert_eq!(
        resolve(&rec, LB, &["1.1.1.1, 2.2.2.2", "10.0.0.3", "10.0.0.2"]),
        ip("2.2.2.2")
    );
    assert_eq!(resolve(&rec, LB, &["10.0.0.7", "10.0.0.3"]), ip("10.0.0.7"));
    let last = cfg(&["10.0.0.0/8"], "x-forwarded-for", false);
    assert_eq!(
        resolve(&last, LB, &["1.1.1.1", "2.2.2.2, 3.3.3.3"]),
        ip("3.3.3.3")
    );
}

#[test]
fn other_headers_use_their_first_line_only() {
    let c = cfg(&["10.0.0.0/8"], "X-Real-IP", true);
    assert_eq!(resolve(&c, LB, &["1.1.1.1", "2.2.2.2"]), ip("1.1.1.1"));
    // nginx still reads the line as a list.
    assert_eq!(
        resolve(&c, LB, &["1.1.1.1, 10.0.0.9", "2.2.2.2"]),
        ip("1.1.1.1")
    );
    let custom = cfg(&["10.0.0.0/8"], "CF-Connecting-IP", false);
    assert_eq!(custom.header_name(), Some("cf-connecting-ip"));
    assert_eq!(resolve(&custom, LB, &["4.4.4.4", "5.5.5.5"]), ip("4.4.4.4"));
}

#[test]
fn invalid_entries_keep_the_peer_or_the_last_trusted_address_reached() {
    let c = cfg(&["10.0.0.0/8"], "X-Forwarded-For", true);
    assert_eq!(resolve(&c, LB, &["not-an-ip"]), ip(LB));
    assert_eq!(resolve(&c, LB, &[""]), ip(LB));
    assert_eq!(resolve(&c, LB, &["1.1.1.1, bogus"]), ip(LB));
    assert_eq!(resolve(&c, LB, &["bogus, 10.0.0.4"]), ip("10.0.0.4"));
    assert_eq!(
        resolve(&c, LB, &["1.1.1.1", "bogus", "10.0.0.4"]),
        ip("10.0.0.4")
    );
    assert_eq!(
        resolve(&c, LB, &["1.1.1.1", "", "10.0.0.4"]),
        ip("10.0.0.4")
    );
    // nginx reads ",10.0.0.4" as one unparsable entry, but ", 10.0.0.4" as two.
    assert_eq!(resolve(&c, LB, &["1.1.1.1", ",10.0.0.4"]), ip(LB));
    assert_eq!(resolve(&c, LB, &["1.1.1.1", ", 10.0.0.4"]), ip("10.0.0.4"));
    assert_eq!(resolve(&c, LB, &["1.1.1.1", ",, 3.3.3.3"]), ip("3.3.3.3"));
    assert_eq!(resolve(&c, LB, &["1.1.1.1", "10.0.0.4,"]), ip("1.1.1.1"));
    let last = cfg(&["10.0.0.0/8"], "X-Forwarded-For", false);
    assert_eq!(resolve(&last, LB, &["1.1.1.1", "256.1.1.1"]), ip(LB));
}

#[test]
fn the_proxy_protocol_source_replaces_a_trusted_peer() {
    let c = cfg(&["10.0.0.0/8"], "proxy_protocol", false);
    assert_eq!(c.source(), &RealIpSource::ProxyProtocol);
    assert_eq!(c.header_name(), None);
    let src = Some(ip("203.0.113.9"));
    let none = std::iter::empty::<&[u8]>;
    assert_eq!(c.resolve(ip(LB), src, none()), ip("203.0.113.9"));
    assert_eq!(c.resolve(ip("192.0.2.1"), src, none()), ip("192.0.2.1"));
    assert_eq!(
        c.resolve(ip(LB), None, none()),
        ip(LB),
        "LOCAL or UNKNOWN header"
    );
    let lines: [&[u8]; 1] = [b"1.1.1.1"];
    assert_eq!(
        c.resolve(ip(LB), src, lines.into_iter()),
        ip("203.0.113.9"),
        "headers do not matter"
    );
}

/// A CDN's published ranges: hundreds of networks of mixed lengths and both families.
#[test]
fn a_long_trusted_list_matches_every_entry_and_nothing_else() {
    let mut entries: Vec<String> = (0..=255).map(|i| format!("198.{i}.0.0/16")).collect();
    entries.extend((0..64).map(|i| format!("2001:db8:{i:x}::/48")));
    entries.push("203.0.113.7/32".into());
    let refs: Vec<&str> = entries.iter().map(String::as_str).collect();
    let c = cfg(&refs, "X-Real-IP", false);
    assert!(c.is_trusted(ip("198.0.0.1")) && c.is_trusted(ip("198.255.255.254")));
    assert!(c.is_trusted(ip("::ffff:198.77.1.2")));
    assert!(c.is_trusted(ip("203.0.113.7")) && !c.is_trusted(ip("203.0.113.8")));
    assert!(!c.is_trusted(ip("199.0.0.1")));
    assert!(c.is_trusted(ip("2001:db8:3f:ffff::1")));
    assert!(!c.is_trusted(ip("2001:db8:40::1")));
}

#[test]
fn ipv4_mapped_peers_match_ipv4_networks() {
    let c = cfg(&["10.0.0.0/8"], "X-Real-IP", false);
    assert!(c.is_trusted(ip("::ffff:10.1.2.3")));
    assert!(!c.is_trusted(ip("::ffff:11.1.2.3")));
    assert!(c.is_trusted(ip("10.255.255.255")));
    let all = cfg(&["0.0.0.0/0", "::/0"], "X-Real-IP", false);
    assert!(all.is_trusted(ip("2001:db8::1")) && all.is_trusted(ip("192.0.2.1")));
}

#[test]
fn addresses_parse_with_ports_and_brackets_as_nginx_reads_them() {
    let p = |s: &str| parse_addr_port(s.as_bytes());
    assert_eq!(p("1.2.3.4"), Some(ip("1.2.3.4")));
    assert_eq!(p("1.2.3.4:5678"), Some(ip("1.2.3.4")));
    assert_eq!(
        p("001.002.003.004"),
        Some(ip("1.2.3.4")),
        "decimal despite zeroes"
    );
    assert_eq!(p("::1"), Some(ip("::1")));
    assert_eq!(p("2001:db8::1"), Some(ip("2001:db8::1")));
    assert_eq!(p("[2001:db8::1]"), Some(ip("2001:db8::1")));
    assert_eq!(p("[2001:db8::1]:443"), Some(ip("2001:db8::1")));
    assert_eq!(p("::ffff:1.2.3.4"), Some(ip("::ffff:1.2.3.4")));
    assert_eq!(p("[1.2.3.4]:80"), Some(ip("1.2.3.4")));
    for bad in [
        "",
        "1.2.3",
        "1.2.3.4.5",
        "1.2.3.256",
        "1..2.3",
        "1.2.3.4:",
        "1.2.3.4:0",
        "1.2.3.4:65536",
        "1.2.3.4:-1",
        "1.2.3.4:+80",
        "1.2.3.4:80:90",
        "[2001:db8::1]443",
        "[2001:db8::1",
        "2001:db8::1]",
        "fe80::1%eth0",
        "example.com",
        "unknown",
        "1.2.3.4 ",
    ] {
        assert_eq!(p(bad), None, "{bad:?}");
    }
    assert_eq!(
        p("1.2.3.4:065535"),
        Some(ip("1.2.3.4")),
        "ngx_atoi reads leading zeroes"
    );
}

#[test]
fn settings_defaults_build_kongs_realip() {
    let s = Settings::default();
    let c = RealIpConfig::from_settings(&s);
    assert_eq!(c.header_name(), Some("x-real-ip"));
    assert_eq!(
        c.resolve(ip(LB), None, [&b"1.1.1.1"[..]].into_iter()),
        ip(LB),
        "trusted_ips is empty by default"
    );
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rc {
    Declined,
    Done,
    Ok,
}

/// nginx's walk over one header value, index for index: from the right, trimming separators,
/// never testing byte 0 as a separator, and reading the byte *before* the value (in nginx,
/// part of the header line; here a ':' that never parses) when the remainder is empty.
fn nginx_line(c: &RealIpConfig, addr: &mut IpAddr, value: &str) -> Rc {
    let w: Vec<u8> = std::iter::once(b':').chain(value.bytes()).collect();
    let base: usize = 1;
    let mut len = value.len();
    let mut found = false;
    loop {
        if !c.is_trusted(*addr) {
            return if found { Rc::Done } else { Rc::Declined };
        }
        let mut p = base + len - 1;
        while p > base {
            if !is_separator(w[p]) {
                break;
            }
            p -= 1;
            len -= 1;
        }
        while p > base {
            if is_separator(w[p]) {
                p += 1;
                break;
            }
            p -= 1;
        }
        match parse_addr_port(&w[p..base + len]) {
            None => return if found { Rc::Done } else { Rc::Declined },
            Some(ip) => {
                *addr = ip;
                found = true;
            }
        }
        if !(c.recursive && p > base) {
            return Rc::Ok;
        }
        len = p - 1 - base;
    }
}

/// nginx's `ngx_http_get_forwarded_addr`: X-Forwarded-For lines last first, other headers'
/// first line only.
fn reference(c: &RealIpConfig, peer: IpAddr, lines: &[&str]) -> IpAddr {
    let RealIpSource::Header { all_lines, .. } = c.source() else {
        return peer;
    };
    let mut addr = peer;
    if !*all_lines {
        return match lines.first() {
            Some(l) if nginx_line(c, &mut addr, l) != Rc::Declined => addr,
            _ => peer,
        };
    }
    let mut rc = Rc::Declined;
    let mut found = false;
    for l in lines.iter().rev() {
        rc = nginx_line(c, &mut addr, l);
        if !c.recursive {
            break;
        }
        if rc == Rc::Declined && found {
            rc = Rc::Done;
            break;
        }
        if rc != Rc::Ok {
            break;
        }
        found = true;
    }
    if rc == Rc::Declined { peer } else { addr }
}

#[test]
fn the_single_pass_agrees_with_nginx_right_to_left_walk() {
    let pool = [
        "10.0.0.1",
        "10.0.0.2",
        "10.9.9.9",
        "1.1.1.1",
        "2.2.2.2",
        "bad",
        "",
        "[::1]:80",
        "2001:db8::1",
        "::ffff:10.0.0.3",
        "3.3.3.3:8080",
    ];
    let seps = [", ", ",", " ", ",,", " , "];
    let mut rng = fastrand::Rng::with_seed(7);
    for recursive in [false, true] {
        for header in ["X-Forwarded-For", "X-Real-IP"] {
            let c = cfg(&["10.0.0.0/8", "::1/128"], header, recursive);
            for _ in 0..4000 {
                let nlines = rng.usize(0..4);
                let lines: Vec<String> = (0..nlines)
                    .map(|_| {
                        let mut l = String::new();
                        if rng.u8(..) < 30 {
                            l.push_str(seps[rng.usize(..seps.len())]);
                        }
                        for i in 0..rng.usize(0..4) {
                            if i > 0 {
                                l.push_str(seps[rng.usize(..seps.len())]);
                            }
                            l.push_str(pool[rng.usize(..pool.len())]);
                        }
                        if rng.u8(..) < 30 {
                            l.push_str(seps[rng.usize(..seps.len())]);
                        }
                        l
                    })
                    .collect();
                let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
                let peer = ip(LB);
                assert_eq!(
                    resolve(&c, LB, &lines),
                    reference(&c, peer, &lines),
                    "{header} recursive={recursive} lines={lines:?}"
                );
            }
        }
    }
}
