//! Terminal input: bytes from stdin in raw mode → keys and mouse events. Pure.
//! Sequences may arrive split across reads; an incomplete one waits in the
//! parser, and a lone ESC becomes the Esc key when `flush` says no more came.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Char(char),
    /// Ctrl and a letter, lower case (`Ctrl('c')`).
    Ctrl(char),
    Enter,
    Esc,
    Backspace,
    Tab,
    Up,
    Down,
    Left,
    Right,
    PageUp,
    PageDown,
    Home,
    End,
    Delete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    Key(Key),
    /// Columns and rows count from 0.
    WheelUp {
        col: u16,
        row: u16,
    },
    WheelDown {
        col: u16,
        row: u16,
    },
    Click {
        col: u16,
        row: u16,
    },
}

/// Longest escape sequence we wait for; anything longer is dropped.
const MAX_SEQUENCE: usize = 32;

#[derive(Debug, Default)]
pub struct Parser {
    pending: Vec<u8>,
}

/// What one attempt to read an event from the front of the buffer found.
enum Step {
    Event(Option<Input>, usize),
    /// The buffer ends inside a sequence or a character.
    Incomplete,
}

impl Parser {
    /// Events for `bytes`, after whatever was pending.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Input> {
        self.pending.extend_from_slice(bytes);
        let mut out = Vec::new();
        let mut at = 0;
        while at < self.pending.len() {
            match step(&self.pending[at..]) {
                Step::Event(event, used) => {
                    out.extend(event);
                    at += used.max(1);
                }
                Step::Incomplete if self.pending.len() - at > MAX_SEQUENCE => at += 1,
                Step::Incomplete => break,
            }
        }
        self.pending.drain(..at);
        out
    }

    /// True while a sequence is incomplete (the loop then waits briefly and flushes).
    pub fn waiting(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Nothing more arrived: a pending ESC is the Esc key, the rest is read as typed.
    pub fn flush(&mut self) -> Vec<Input> {
        let pending = std::mem::take(&mut self.pending);
        let mut out = Vec::new();
        let mut rest = &pending[..];
        while let Some((&first, tail)) = rest.split_first() {
            if first == 0x1b {
                out.push(Input::Key(Key::Esc));
                rest = tail;
                continue;
            }
            match step(rest) {
                Step::Event(event, used) => {
                    out.extend(event);
                    rest = &rest[used.max(1).min(rest.len())..];
                }
                Step::Incomplete => {
                    // A cut UTF-8 character: nothing more will complete it.
                    out.push(Input::Key(Key::Char('\u{fffd}')));
                    rest = tail;
                }
            }
        }
        out
    }
}

fn key(k: Key) -> Option<Input> {
    Some(Input::Key(k))
}

fn step(buf: &[u8]) -> Step {
    let Some(&b) = buf.first() else {
        return Step::Incomplete;
    };
    match b {
        0x1b => escape(buf),
        b'\r' | b'\n' => Step::Event(key(Key::Enter), 1),
        0x7f | 0x08 => Step::Event(key(Key::Backspace), 1),
        b'\t' => Step::Event(key(Key::Tab), 1),
        0x01..=0x1a => Step::Event(key(Key::Ctrl((b - 1 + b'a') as char)), 1),
        0x00 | 0x1c..=0x1f => Step::Event(None, 1),
        0x20..=0x7e => Step::Event(key(Key::Char(b as char)), 1),
        _ => utf8(buf),
    }
}

fn utf8(buf: &[u8]) -> Step {
    let len = match buf[0] {
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => return Step::Event(None, 1),
    };
    if buf.len() < len {
        // Incomplete only if what came so far is a valid start.
        return if buf[1..].iter().all(|b| b & 0xc0 == 0x80) {
            Step::Incomplete
        } else {
            Step::Event(None, 1)
        };
    }
    match std::str::from_utf8(&buf[..len])
        .ok()
        .and_then(|s| s.chars().next())
    {
        Some(c) => Step::Event(key(Key::Char(c)), len),
        None => Step::Event(None, 1),
    }
}

fn escape(buf: &[u8]) -> Step {
    match buf.get(1) {
        None => Step::Incomplete,
        Some(b'[') => csi(buf),
        Some(b'O') => match buf.get(2) {
            None => Step::Incomplete,
            Some(&f) => Step::Event(final_key(f).and_then(key), 3),
        },
        // ESC ESC, or Alt+key: the Esc key, then the rest on its own.
        Some(_) => Step::Event(key(Key::Esc), 1),
    }
}

fn final_key(f: u8) -> Option<Key> {
    Some(match f {
        b'A' => Key::Up,
        b'B' => Key::Down,
        b'C' => Key::Right,
        b'D' => Key::Left,
        b'H' => Key::Home,
        b'F' => Key::End,
        _ => return None,
    })
}

/// `ESC [ params final`: cursor keys, `~` keys, SGR mouse reports.
fn csi(buf: &[u8]) -> Step {
    let body = &buf[2..];
    let Some(end) = body.iter().position(|b| (0x40..=0x7e).contains(b)) else {
        return Step::Incomplete;
    };
    let params = &body[..end];
    let used = 2 + end + 1;
    let fin = body[end];
    let event = if let Some(mouse) = params.strip_prefix(b"<") {
        mouse_event(mouse, fin)
    } else if fin == b'~' {
        let first = params.split(|&b| b == b';').next().unwrap_or_default();
        match first {
            b"1" | b"7" => key(Key::Home),
            b"4" | b"8" => key(Key::End),
            b"3" => key(Key::Delete),
            b"5" => key(Key::PageUp),
            b"6" => key(Key::PageDown),
            _ => None,
        }
    } else {
        final_key(fin).and_then(key)
    };
    Step::Event(event, used)
}

/// An SGR mouse report `b;x;y` ending in `M` (press) or `m` (release).
fn mouse_event(params: &[u8], fin: u8) -> Option<Input> {
    let text = std::str::from_utf8(params).ok()?;
    let mut parts = text.split(';').map(|p| p.parse::<u16>().ok());
    let (b, x, y) = (parts.next()??, parts.next()??, parts.next()??);
    let (col, row) = (x.saturating_sub(1), y.saturating_sub(1));
    if fin != b'M' || b & 32 != 0 {
        return None; // releases and motion
    }
    match b & !(4 | 8 | 16) {
        0 => Some(Input::Click { col, row }),
        64 => Some(Input::WheelUp { col, row }),
        65 => Some(Input::WheelDown { col, row }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn keys(bytes: &[u8]) -> Vec<Input> {
        let mut p = Parser::default();
        let mut out = p.feed(bytes);
        out.extend(p.flush());
        out
    }

    #[test]
    fn bytes_to_events_table() {
        use Key::*;
        let k = Input::Key;
        let cases: &[(&[u8], Vec<Input>)] = &[
            (b"jk", vec![k(Char('j')), k(Char('k'))]),
            (b"\x1b[A\x1b[B", vec![k(Up), k(Down)]),
            (b"\x1bOA\x1b[1;5B", vec![k(Up), k(Down)]),
            (b"\x1b[5~\x1b[6~", vec![k(PageUp), k(PageDown)]),
            (b"\x1b[H\x1b[4~\x1b[1~", vec![k(Home), k(End), k(Home)]),
            (b"\x1b", vec![k(Esc)]),
            (b"\x1b\x1b", vec![k(Esc), k(Esc)]),
            (b"\r\x7f\t", vec![k(Enter), k(Backspace), k(Tab)]),
            (b"\x03", vec![k(Ctrl('c'))]),
            ("é日".as_bytes(), vec![k(Char('é')), k(Char('日'))]),
            (
                b"\x1b[<64;10;5M\x1b[<65;1;1M",
                vec![
                    Input::WheelUp { col: 9, row: 4 },
                    Input::WheelDown { col: 0, row: 0 },
                ],
            ),
            (
                b"\x1b[<0;3;4M\x1b[<0;3;4m",
                vec![Input::Click { col: 2, row: 3 }],
            ),
            (b"\x1b[<32;3;4M", vec![]),
            (b"\x1b[99Zx", vec![k(Char('x'))]),
            (b"\xff?", vec![k(Char('?'))]),
        ];
        for (bytes, want) in cases {
            assert_eq!(keys(bytes), *want, "{bytes:?}");
        }
    }

    #[test]
    fn sequences_split_anywhere_give_the_same_events() {
        let input: &[u8] = "a\x1b[A\x1b[<64;10;5M\x1b[5~é\x1bOB".as_bytes();
        let whole = keys(input);
        for cut in 0..=input.len() {
            let mut p = Parser::default();
            let mut got = p.feed(&input[..cut]);
            got.extend(p.feed(&input[cut..]));
            got.extend(p.flush());
            assert_eq!(got, whole, "cut at {cut}");
        }
    }

    #[test]
    fn a_lone_escape_waits_for_flush() {
        let mut p = Parser::default();
        assert_eq!(p.feed(b"\x1b"), vec![]);
        assert!(p.waiting());
        assert_eq!(p.flush(), vec![Input::Key(Key::Esc)]);
        assert!(!p.waiting());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        /// Any bytes, fed in any two pieces: no panic, and nothing left after flush.
        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in proptest::collection::vec(prop_oneof![any::<u8>(), Just(0x1bu8), Just(b'['), Just(b'<'), Just(b';')], 0..64),
            cut in 0usize..64,
        ) {
            let mut p = Parser::default();
            let cut = cut.min(bytes.len());
            let _ = p.feed(&bytes[..cut]);
            let _ = p.feed(&bytes[cut..]);
            let _ = p.flush();
            prop_assert!(!p.waiting());
        }
    }
}
