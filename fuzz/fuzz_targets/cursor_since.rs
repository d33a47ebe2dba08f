//! `--after CURSOR` and `--since WHEN` parsing on arbitrary text: never panics,
//! a cursor that parses prints back as an equal cursor, and a `--since` span is
//! finite and under 1e10 seconds.
#![no_main]

use agent_procs::cli::{SinceArg, parse_since};
use agent_procs::logs::query::Position;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Some(p) = Position::parse(&text) {
        assert_eq!(Position::parse(&p.cursor()), Some(p), "{text:?}");
    }
    match parse_since(&text) {
        Some(SinceArg::Ago(d)) => assert!(d.as_secs_f64() < 1e10, "{text:?}: {d:?}"),
        Some(SinceArg::Restart) => assert_eq!(text, "restart"),
        Some(SinceArg::Start) => assert_eq!(text, "start"),
        None => {}
    }
    // The raw bytes as a cursor made of two u64s, printed and parsed back.
    if let Some((seq, delta)) = data.split_first_chunk::<8>().and_then(|(a, rest)| {
        Some((
            u64::from_le_bytes(*a),
            u64::from_le_bytes(*rest.first_chunk::<8>()?),
        ))
    }) {
        let p = Position { seq, delta };
        assert_eq!(Position::parse(&p.cursor()), Some(p));
    }
});
