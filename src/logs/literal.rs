//! The longest run of plain text every match of a regex must contain, found
//! conservatively from the pattern's source. It lets a `--regex` search skip
//! whole blocks with a fast substring search and run the (slow, line-by-line)
//! regex engine only on lines that contain the run. `None` when unsure.

/// Escapes that stand for one literal character.
const ESCAPED_LITERALS: &str = r"\.+*?()|[]{}^$#&-~ /'!";

pub fn required_literal(pattern: &str) -> Option<String> {
    // Alternatives and inline flags (case folding) defeat a simple literal.
    if pattern.contains('|') || pattern.contains("(?") {
        return None;
    }
    let chars: Vec<char> = pattern.chars().collect();
    let mut best = String::new();
    let mut run = String::new();
    let mut depth = 0usize;
    let mut i = 0;
    // The token before was a repetition (1) or its lazy marker (2): one `?` right
    // after a repetition makes it lazy; any other repetition of a repetition
    // (`a+*`, `a{2}??`) is beyond this simple reading.
    let mut after_quantifier = 0u8;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        let quantifier = matches!(c, '*' | '?' | '+' | '{');
        match (quantifier, after_quantifier) {
            (true, 1) if c == '?' => {
                after_quantifier = 2;
                continue;
            }
            (true, 1 | 2) => return None,
            _ => {}
        }
        after_quantifier = u8::from(quantifier);
        match c {
            '\\' => {
                let next = *chars.get(i)?;
                i += 1;
                if ESCAPED_LITERALS.contains(next) {
                    if depth == 0 {
                        run.push(next);
                    } else {
                        keep_longest(&mut run, &mut best);
                    }
                } else if "dDwWsSbBAz".contains(next) {
                    keep_longest(&mut run, &mut best);
                } else {
                    return None; // \x41, \p{…}, \u…: not worth understanding here
                }
            }
            '[' => {
                keep_longest(&mut run, &mut best);
                i = after_class(&chars, i)?;
            }
            '(' => {
                keep_longest(&mut run, &mut best);
                depth += 1;
            }
            ')' => {
                keep_longest(&mut run, &mut best);
                depth = depth.checked_sub(1)?;
            }
            '.' | '^' | '$' => keep_longest(&mut run, &mut best),
            '*' | '?' => {
                // The atom before is optional.
                run.pop();
                keep_longest(&mut run, &mut best);
            }
            '+' => keep_longest(&mut run, &mut best),
            '{' => {
                let (min, close) = repetition(&chars, i)?;
                if min == 0 {
                    run.pop();
                }
                keep_longest(&mut run, &mut best);
                i = close + 1;
            }
            other if depth == 0 => run.push(other),
            _ => keep_longest(&mut run, &mut best),
        }
    }
    keep_longest(&mut run, &mut best);
    (best.chars().count() >= 2).then_some(best)
}

/// Just inside a class's `[`: where the class ends (after its `]`). A leading
/// `]` or `^]` is a member, `\]` is escaped. None when it never closes.
fn after_class(chars: &[char], mut i: usize) -> Option<usize> {
    if chars.get(i) == Some(&'^') {
        i += 1;
    }
    if chars.get(i) == Some(&']') {
        i += 1;
    }
    loop {
        match chars.get(i)? {
            '\\' => i += 2,
            ']' => return Some(i + 1),
            _ => i += 1,
        }
    }
}

/// Just inside a `{`: the least number of repetitions, and where the `}` is.
/// None for anything but `{N}`, `{N,}` or `{N,M}`.
fn repetition(chars: &[char], i: usize) -> Option<(u32, usize)> {
    let close = chars[i..].iter().position(|&c| c == '}')? + i;
    let body: String = chars[i..close].iter().collect();
    let min = body.split(',').next()?.trim();
    if min.is_empty() || !min.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((min.parse::<u32>().ok()?, close))
}

fn keep_longest(run: &mut String, best: &mut String) {
    if run.len() > best.len() {
        *best = std::mem::take(run);
    }
    run.clear();
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn literals_table() {
        let cases: &[(&str, Option<&str>)] = &[
            (r"port \d+", Some("port ")),
            ("Serving HTTP", Some("Serving HTTP")),
            (r"ready in \d+ms", Some("ready in ")),
            ("colou?r", Some("colo")),
            ("a|b", None),
            ("(?i)abc", None),
            ("[abc]+def", Some("def")),
            ("x(abc)*yz", Some("yz")),
            ("ab{0,3}c", None),
            ("abc{2}d", Some("abc")),
            (r"foo\.bar", Some("foo.bar")),
            (r"\x41bc", None),
            ("^Listening on .*:(8080)$", Some("Listening on ")),
            ("[]]abc", Some("abc")),
            ("a*", None),
            ("", None),
        ];
        for (pattern, want) in cases {
            assert_eq!(required_literal(pattern).as_deref(), *want, "{pattern}");
        }
    }

    fn fragment() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-c ]{1,3}",
            Just(r"\d".to_string()),
            Just(".".to_string()),
            Just("[ab]".to_string()),
            Just("(ab)".to_string()),
            Just("?".to_string()),
            Just("*".to_string()),
            Just("+".to_string()),
            Just("{0,2}".to_string()),
            Just("{2}".to_string()),
            Just(r"\.".to_string()),
        ]
    }

    proptest! {
        /// Soundness: whenever the regex matches a line, the line holds the literal.
        #[test]
        fn every_match_contains_the_literal(
            parts in proptest::collection::vec(fragment(), 1..8),
            lines in proptest::collection::vec("[a-c0-9 .]{0,16}", 1..20),
        ) {
            let pattern: String = parts.concat();
            let Ok(re) = regex_lite::Regex::new(&pattern) else { return Ok(()) };
            if let Some(literal) = required_literal(&pattern) {
                for line in &lines {
                    if re.is_match(line) {
                        prop_assert!(line.contains(&literal), "{pattern:?} matched {line:?} without {literal:?}");
                    }
                }
            }
        }
    }
}
