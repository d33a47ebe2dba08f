//! A line pattern for `wait --until`, `logs --grep` and follow filters: a plain
//! substring, or a regex (with the text every match must contain, when it can be
//! told, so callers can search blocks for that first).

use super::literal::required_literal;
use super::query::contains;

pub enum Pattern {
    Substring(String),
    /// The regex, and text every match must contain (when it can be told).
    Regex(regex_lite::Regex, Option<String>),
}

impl Pattern {
    /// `regex`: `text` is a regular expression; `ignore_case`: match regardless of
    /// case (through the regex engine, so there is no literal to search for).
    pub fn new(text: &str, regex: bool, ignore_case: bool) -> Result<Pattern, String> {
        if !regex && !ignore_case {
            return Ok(Pattern::Substring(text.to_string()));
        }
        let source = if regex {
            text.to_string()
        } else {
            regex_lite::escape(text)
        };
        let literal = if ignore_case {
            None
        } else {
            required_literal(text)
        };
        regex_lite::RegexBuilder::new(&source)
            .case_insensitive(ignore_case)
            .build()
            .map(|re| Pattern::Regex(re, literal))
            .map_err(|e| format!("invalid regex: {e}"))
    }

    /// Plain text a line must contain to match: lets blocks be searched fast.
    pub fn literal(&self) -> Option<&str> {
        match self {
            Pattern::Substring(text) => Some(text),
            Pattern::Regex(_, literal) => literal.as_deref(),
        }
    }

    pub fn matches(&self, line: &[u8]) -> bool {
        match self {
            Pattern::Substring(needle) => contains(line, needle.as_bytes()),
            Pattern::Regex(re, _) => re.is_match(&String::from_utf8_lossy(line)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regex_patterns_match_lossy_text_and_report_bad_syntax() {
        let p = Pattern::new(r"port \d+", true, false).unwrap();
        assert!(p.matches(b"listening on port 8080 \xff"));
        assert!(!p.matches(b"listening"));
        assert_eq!(p.literal(), Some("port "));
        let err = Pattern::new("(unclosed", true, false).err().unwrap();
        assert!(err.starts_with("invalid regex: "), "{err}");
    }

    #[test]
    fn ignore_case_matches_any_case_and_keeps_plain_text_plain() {
        let p = Pattern::new("a.b", false, true).unwrap();
        assert!(p.matches(b"xxA.Bxx"));
        assert!(!p.matches(b"aXb"), "the dot is literal");
        assert_eq!(p.literal(), None);
        let plain = Pattern::new("a.b", false, false).unwrap();
        assert_eq!(plain.literal(), Some("a.b"));
    }
}
