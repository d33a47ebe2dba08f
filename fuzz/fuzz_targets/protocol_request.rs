//! The control protocol decoder, as the daemon runs it on each request line:
//! never panics, and a request that decodes encodes to a line that decodes to
//! the same request (what the CLI sends is what the daemon reads).
#![no_main]

use agent_procs::protocol::decode_request;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The daemon splits its input at '\n' and skips blank lines (control.rs).
    for line in data.split(|&b| b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match decode_request(line) {
            Ok(request) => {
                let encoded = serde_json::to_vec(&request).expect("a request encodes");
                assert!(!encoded.contains(&b'\n'), "an encoded request is one line");
                let again = decode_request(&encoded).expect("an encoded request decodes");
                assert_eq!(request, again, "decode, encode, decode changed the request");
            }
            Err(message) => assert!(message.starts_with("invalid request: "), "{message}"),
        }
    }
});
