//! Readiness-probe parsing on arbitrary text: `http:` URLs never panic, and an
//! accepted one yields a loopback-or-literal address and one complete GET head;
//! a status line gives a code of three digits or a reason.
#![no_main]

use agent_procs::probe::{Target, http_target, status_code};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let url = String::from_utf8_lossy(data);
    match http_target(&url) {
        Ok(Target::Http {
            request,
            url: shown,
            ..
        }) => {
            assert_eq!(shown, url);
            assert!(
                request.starts_with(b"GET /"),
                "{:?}",
                String::from_utf8_lossy(&request)
            );
            assert!(request.ends_with(b"\r\n\r\n"));
            let head_end = request.windows(4).position(|w| w == b"\r\n\r\n");
            assert_eq!(
                head_end,
                Some(request.len() - 4),
                "one head, nothing after it"
            );
        }
        Ok(other) => panic!("an http URL gave {other:?}"),
        Err(why) => assert!(why.starts_with("invalid URL"), "{why}"),
    }
    match status_code(data) {
        Some(Ok(code)) => assert!(code <= 999),
        Some(Err(why)) => assert!(!why.is_empty()),
        None => assert!(!data.contains(&b'\n') && data.len() <= 1024),
    }
});
