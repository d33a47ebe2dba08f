//! Quoting for `sh`: a leaf shared by the CLI (`run -- a b c`) and the exporters.

/// Quote one word for `sh` if it needs it: a word of only safe characters as
/// it is, anything else in single quotes (a `'` inside as `'\''`). Used to join
/// `run -- a b c` into one command line and by `export procfile`.
pub fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, '_' | '-' | '.' | '/' | ':' | '=' | '@' | '%' | '+' | ',')
        });
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_what_sh_would_split_or_expand() {
        let table = [
            ("npm", "npm"),
            ("--port=3000", "--port=3000"),
            ("a/b.c:d@e%f+g,h", "a/b.c:d@e%f+g,h"),
            ("", "''"),
            ("two words", "'two words'"),
            ("$HOME", "'$HOME'"),
            ("it's", r"'it'\''s'"),
            ("*", "'*'"),
            ("a\nb", "'a\nb'"),
        ];
        for (word, want) in table {
            assert_eq!(quote(word), want, "quoting {word:?}");
        }
    }

    #[test]
    fn sh_reads_every_quoted_word_back_unchanged() {
        let words = [
            "",
            "plain",
            "two words",
            "it's",
            "'",
            "$(id)",
            "`x`",
            "a\"b",
            "\\",
            "*?[]",
            "~",
        ];
        let line: Vec<String> = words.iter().map(|w| quote(w)).collect();
        let script = format!(
            "for a in {}; do printf '%s\\0' \"$a\"; done",
            line.join(" ")
        );
        let out = std::process::Command::new("sh")
            .args(["-c", &script])
            .output()
            .expect("sh runs");
        let back: Vec<&str> = std::str::from_utf8(&out.stdout)
            .expect("utf-8")
            .split_terminator('\0')
            .collect();
        assert_eq!(back, words);
    }
}
