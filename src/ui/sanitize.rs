//! Child output made safe for the screen: only SGR sequences (`ESC [ … m`, colours
//! and text attributes) survive; every other escape sequence (cursor movement,
//! clears, OSC titles and hyperlinks, DCS, …) and every control character but TAB
//! is dropped, so a process can colour its lines but never rewrite the terminal.

/// Longest SGR sequence kept; longer ones are dropped (no real colour needs more).
const MAX_SGR: usize = 64;

/// Where the scanner stands inside an escape sequence.
#[derive(Clone, Copy, PartialEq)]
enum State {
    Text,
    /// After ESC.
    Escape,
    /// After ESC and intermediate bytes (`ESC ( B`): one final byte ends it.
    EscapeTail,
    /// Inside `ESC [`; `start` is where the kept output would begin.
    Csi,
    /// Inside OSC, DCS, SOS, PM or APC: everything up to BEL or ST is dropped.
    String,
    /// ESC inside a string: `\` ends it (ST).
    StringEscape,
}

/// `line` (one line of a child's output, without its newline) with invalid UTF-8
/// replaced by U+FFFD and everything but text, TAB and SGR sequences removed.
pub fn sanitize(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    let mut out = String::with_capacity(text.len());
    let mut state = State::Text;
    let mut csi = String::new();
    for c in text.chars() {
        state = match state {
            State::Text => match c {
                '\x1b' => State::Escape,
                '\t' => {
                    out.push('\t');
                    State::Text
                }
                // 8-bit forms of CSI, OSC, DCS, SOS, PM, APC.
                '\u{9b}' => {
                    csi.clear();
                    State::Csi
                }
                '\u{90}' | '\u{98}' | '\u{9d}' | '\u{9e}' | '\u{9f}' => State::String,
                c if c.is_control() => State::Text,
                c => {
                    out.push(c);
                    State::Text
                }
            },
            State::Escape => match c {
                '[' => {
                    csi.clear();
                    State::Csi
                }
                ']' | 'P' | 'X' | '^' | '_' => State::String,
                '\x1b' => State::Escape,
                ' '..='/' => State::EscapeTail,
                _ => State::Text, // a two-byte sequence (ESC c, ESC 7, ...): dropped
            },
            State::EscapeTail => match c {
                ' '..='/' => State::EscapeTail,
                '\x1b' => State::Escape,
                _ => State::Text,
            },
            State::Csi => match c {
                '0'..='9' | ';' | ':' | '<'..='?' | ' '..='/' => {
                    csi.push(c);
                    State::Csi
                }
                '@'..='~' => {
                    let sgr = c == 'm'
                        && csi.len() <= MAX_SGR
                        && csi
                            .bytes()
                            .all(|b| b.is_ascii_digit() || b == b';' || b == b':');
                    if sgr {
                        out.push_str("\x1b[");
                        out.push_str(&csi);
                        out.push('m');
                    }
                    State::Text
                }
                '\x1b' => State::Escape,
                _ => State::Text, // malformed: drop what was gathered
            },
            State::String => match c {
                '\x07' | '\u{9c}' => State::Text,
                '\x1b' => State::StringEscape,
                _ => State::String,
            },
            State::StringEscape => match c {
                '\\' => State::Text,
                '\x1b' => State::StringEscape,
                _ => State::String,
            },
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn only_sgr_survives_table() {
        let cases: &[(&[u8], &str)] = &[
            (b"plain text", "plain text"),
            (b"\x1b[31mred\x1b[0m", "\x1b[31mred\x1b[0m"),
            (b"\x1b[1;38;5;208mo\x1b[m", "\x1b[1;38;5;208mo\x1b[m"),
            (b"\x1b[38:2::1:2:3mx", "\x1b[38:2::1:2:3mx"),
            (b"a\x1b]0;evil title\x07b", "ab"),
            (b"a\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\b", "alinkb"),
            (b"\x1b[2J\x1b[Hcleared", "cleared"),
            (b"\x1b[10;20Hmoved\x1b[5A", "moved"),
            (b"\x1b[?1049h\x1b[?25lalt", "alt"),
            (b"\x1bPq#0;2;0;0;0\x1b\\dcs", "dcs"),
            (b"\x1bcreset", "reset"),
            (b"\x1b(Bcharset", "charset"),
            (b"bell\x07 cr\r bs\x08 nul\x00", "bell cr bs nul"),
            (b"tab\there", "tab\there"),
            ("c1 \u{9b}2Jcsi \u{9d}0;t\u{9c}osc".as_bytes(), "c1 csi osc"),
            (b"\x1b[31;?m bad sgr", " bad sgr"),
            (b"invalid \xff utf8", "invalid \u{fffd} utf8"),
            (b"unterminated \x1b]0;title", "unterminated "),
            (b"trailing \x1b", "trailing "),
            ("wide 日本 ok".as_bytes(), "wide 日本 ok"),
        ];
        for (input, want) in cases {
            assert_eq!(
                sanitize(input),
                *want,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        /// Every ESC left in the output starts an SGR sequence, and no other control remains.
        #[test]
        fn output_holds_no_escape_but_sgr(input in proptest::collection::vec(
            prop_oneof![any::<u8>(), Just(0x1bu8), Just(b'['), Just(b']'), Just(b'm'), Just(b';'), Just(b'7')],
            0..80,
        )) {
            let out = sanitize(&input);
            let mut rest = out.as_str();
            while let Some(at) = rest.find(|c: char| c.is_control() && c != '\t') {
                let tail = &rest[at..];
                prop_assert!(tail.starts_with("\x1b["), "{out:?}");
                let end = tail.find('m');
                prop_assert!(end.is_some(), "{out:?}");
                let end = end.unwrap_or(0);
                prop_assert!(tail[2..end].bytes().all(|b| b.is_ascii_digit() || b == b';' || b == b':'), "{out:?}");
                rest = &tail[end + 1..];
            }
        }
    }
}
