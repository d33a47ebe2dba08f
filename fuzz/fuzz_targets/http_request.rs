//! The proxy's request-head parser on arbitrary bytes: a complete head ends
//! within the input and within the 64 KiB limit, cutting it before its last byte
//! makes it partial, the same head alone parses the same, and the head rewritten
//! for the backend is itself a valid request with the same routing and framing.
#![no_main]

use agent_procs::proxy::http::{MAX_HEAD, Parsed, parse_request};
use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, buf)) = data.split_first() else {
        return;
    };
    let peer = if flags & 1 == 0 {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        IpAddr::V6(Ipv6Addr::LOCALHOST)
    };
    let mut out = Vec::new();
    let Parsed::Complete(req) = parse_request(buf, peer, &mut out) else {
        return;
    };
    assert!(req.head_len > 0 && req.head_len <= buf.len().min(MAX_HEAD));
    let head = &buf[..req.head_len];
    assert!(head.ends_with(b"\n"), "a head ends with its blank line");

    let mut again = Vec::new();
    assert_eq!(
        parse_request(head, peer, &mut again),
        Parsed::Complete(req.clone()),
        "the head alone parses as it did with what follows"
    );
    assert_eq!(again, out);
    assert_eq!(
        parse_request(&head[..head.len() - 1], peer, &mut again),
        Parsed::Partial,
        "a head cut before its last byte is partial"
    );

    // What goes to the backend parses as the same request (the proxy adds four
    // fields, so a head near the field or size limit may now exceed it).
    let mut forwarded = Vec::new();
    match parse_request(&out, peer, &mut forwarded) {
        Parsed::Complete(f) => {
            assert_eq!(f.head_len, out.len());
            assert_eq!(
                (
                    &f.route,
                    &f.host,
                    f.framing,
                    f.upgrade,
                    f.expect_continue,
                    f.is_head
                ),
                (
                    &req.route,
                    &req.host,
                    req.framing,
                    req.upgrade,
                    req.expect_continue,
                    req.is_head
                ),
                "the forwarded head means something else: {}",
                String::from_utf8_lossy(&out)
            );
        }
        Parsed::Invalid(r) if r.status == 431 => {}
        other => panic!(
            "the forwarded head {:?} parses as {other:?}",
            String::from_utf8_lossy(&out)
        ),
    }
});
