//! The proxy's chunked-body tracker on arbitrary bytes: it never claims more
//! than it was given, takes everything until the body ends, and gives the same
//! verdict whether the bytes come at once, in two pieces cut anywhere, or one
//! at a time.
#![no_main]

use agent_procs::proxy::http::Chunked;
use libfuzzer_sys::fuzz_target;

/// Where the body ended (bytes used, if it did), or the error, or still open.
#[derive(Debug, PartialEq)]
enum Verdict {
    Open,
    Done(usize),
    Failed(String),
}

fn feed_in_pieces<'a>(pieces: impl IntoIterator<Item = &'a [u8]>) -> Verdict {
    let mut body = Chunked::default();
    let mut total = 0;
    for piece in pieces {
        match body.feed(piece) {
            Err(reject) => {
                assert_eq!(reject.status, 400);
                // A failed body stays failed.
                assert!(body.feed(b"0\r\n\r\n").is_err());
                return Verdict::Failed(reject.reason);
            }
            Ok((used, done)) => {
                assert!(used <= piece.len(), "used {used} of {}", piece.len());
                total += used;
                if done {
                    // An ended body takes nothing more.
                    assert_eq!(body.feed(b"0\r\n\r\n").ok(), Some((0, true)));
                    return Verdict::Done(total);
                }
                assert_eq!(used, piece.len(), "an open body takes everything");
            }
        }
    }
    Verdict::Open
}

fuzz_target!(|data: &[u8]| {
    let Some((cut, body)) = data.split_first_chunk::<2>() else {
        return;
    };
    let whole = feed_in_pieces([body]);
    let at = usize::from(u16::from_le_bytes(*cut)) % (body.len() + 1);
    let (a, b) = body.split_at(at);
    assert_eq!(feed_in_pieces([a, b]), whole, "cut at {at}");
    assert_eq!(feed_in_pieces(body.chunks(1)), whole, "byte by byte");
});
