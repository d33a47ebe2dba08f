//! The proxy's response-head parser on arbitrary bytes: a complete head ends
//! within the input, cutting it before its last byte makes it partial, the same
//! head alone parses the same, and the head rewritten for the client is itself a
//! valid response with the same status and framing.
#![no_main]

use agent_procs::proxy::http::{MAX_HEAD, Parsed, parse_response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, buf)) = data.split_first() else {
        return;
    };
    let (to_head, keep_alive) = (flags & 1 != 0, flags & 2 != 0);
    let mut out = Vec::new();
    let Parsed::Complete(res) = parse_response(buf, to_head, keep_alive, &mut out) else {
        return;
    };
    assert!(res.head_len > 0 && res.head_len <= buf.len().min(MAX_HEAD));
    assert!((100..=999).contains(&res.status));
    let head = &buf[..res.head_len];
    assert!(head.ends_with(b"\n"), "a head ends with its blank line");

    let mut again = Vec::new();
    assert_eq!(
        parse_response(head, to_head, keep_alive, &mut again),
        Parsed::Complete(res.clone()),
        "the head alone parses as it did with what follows"
    );
    assert_eq!(again, out);
    assert_eq!(
        parse_response(&head[..head.len() - 1], to_head, keep_alive, &mut again),
        Parsed::Partial,
        "a head cut before its last byte is partial"
    );

    let mut forwarded = Vec::new();
    match parse_response(&out, to_head, keep_alive, &mut forwarded) {
        Parsed::Complete(f) => {
            assert_eq!(f.head_len, out.len());
            assert_eq!(
                (f.status, f.framing),
                (res.status, res.framing),
                "the forwarded head means something else: {}",
                String::from_utf8_lossy(&out)
            );
        }
        // The proxy adds a Connection field, which may pass a limit.
        Parsed::Invalid(r) if r.status == 502 && r.reason.starts_with("more than 100") => {}
        Parsed::Invalid(r) if r.status == 502 && r.reason.contains("over 64 KiB") => {}
        other => panic!(
            "the forwarded head {:?} parses as {other:?}",
            String::from_utf8_lossy(&out)
        ),
    }
});
