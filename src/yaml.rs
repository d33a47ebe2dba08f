//! The YAML subset agent-procs reads: text to a tree of `Node`s that know their line
//! and column, or a `YamlError` saying where the problem is and what to write instead.
//! Pure and schema-free: no I/O, and no meaning given to keys (that is `config.rs`).
//! Scalars are typed the YAML 1.2 core-schema way; anchors, tags and friends are refused.

use std::collections::HashMap;
use std::fmt;

/// Collections nested deeper than this are refused, which bounds the recursion.
pub const MAX_DEPTH: usize = 64;

/// One value of the tree, with the 1-based line and column where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub line: usize,
    pub col: usize,
    pub value: Value,
}

/// A map key, with its own position so that errors about it can point at it.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub name: String,
    pub line: usize,
    pub col: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Node>),
    /// Entries in file order; keys are unique.
    Map(Vec<(Key, Node)>),
}

impl Value {
    /// What kind of value this is, worded for "expected a string, found a list".
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::List(_) => "a list",
            Value::Map(_) => "a map",
        }
    }
}

/// A syntax error, or a construct outside the subset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub line: usize,
    pub col: usize,
    pub msg: String,
}

impl fmt::Display for YamlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.col, self.msg)
    }
}

impl std::error::Error for YamlError {}

type Result<T> = std::result::Result<T, YamlError>;

/// Parse one YAML document. An empty document is a `Null` node at 1:1.
pub fn parse(text: &str) -> Result<Node> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    check_characters(text)?;
    let normalized;
    let text = if text.contains('\r') {
        normalized = text.replace("\r\n", "\n");
        normalized.as_str()
    } else {
        text
    };
    let mut p = Parser {
        src: text,
        pos: 0,
        line: 1,
        col: 1,
        indent: -1,
        depth: 0,
    };
    p.document()
}

/// YAML text is printable Unicode: no control characters but tab and line breaks,
/// and carriage returns only as part of `\r\n`.
fn check_characters(text: &str) -> Result<()> {
    let bytes = text.as_bytes();
    if bytes
        .iter()
        .all(|&b| (0x20..0x7f).contains(&b) || b == b'\n')
    {
        return Ok(()); // plain ASCII text, checked a vector at a time
    }
    // Byte-wise: every bad character starts with one of these bytes (C0 controls and
    // DEL; 0xC2 for U+0080-U+009F; 0xEF for U+FFFE and U+FFFF), so the common case
    // is one comparison per byte. Line and column are counted only for an error.
    let Some(at) = bytes.iter().enumerate().position(|(i, &b)| match b {
        b'\t' | b'\n' => false,
        b'\r' => bytes.get(i + 1) != Some(&b'\n'),
        0..0x20 | 0x7f => true,
        0xc2 => matches!(bytes.get(i + 1), Some(0x80..=0x84 | 0x86..=0x9f)),
        0xef => bytes.get(i + 1) == Some(&0xbf) && matches!(bytes.get(i + 2), Some(0xbe | 0xbf)),
        _ => false,
    }) else {
        return Ok(());
    };
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    let c = text[at..].chars().next().unwrap_or('\0');
    let msg = if c == '\r' {
        "carriage return without a line feed; save the file with \\n or \\r\\n line endings".into()
    } else {
        let code = c as u32;
        let escape = if code <= 0xff {
            format!("\\x{code:02X}")
        } else {
            format!("\\u{code:04X}")
        };
        format!(
            "character U+{code:04X} is not allowed in YAML text; write it as an escape in double quotes, like \"{escape}\""
        )
    };
    Err(YamlError { line, col, msg })
}

/// Where a plain scalar's text on one line stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// End of the line or of the input.
    End,
    /// At a `#` that follows whitespace.
    Comment,
    /// At a `:` that separates a key from its value.
    Colon,
    /// At one of `,[]{}` inside a flow collection.
    Flow,
}

/// What `next_line` stepped over on the way to the next line with content.
#[derive(Debug, Clone, Copy, Default)]
struct Skipped {
    /// Empty lines before the first comment line (or before the content line).
    blanks: usize,
    /// Whether a comment-only line was among them.
    comment: bool,
}

/// How a block scalar treats its final line breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chomp {
    Strip,
    Clip,
    Keep,
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
    line: usize,
    col: usize,
    /// Set by `next_line`: the indent of the line the cursor stands on (the cursor is at
    /// its first content character), or -1 at the end of input or at a document marker.
    indent: i64,
    depth: usize,
}

fn is_blank(b: Option<u8>) -> bool {
    matches!(b, None | Some(b' ' | b'\t' | b'\n'))
}

fn is_flow_indicator(b: Option<u8>) -> bool {
    matches!(b, Some(b',' | b'[' | b']' | b'{' | b'}'))
}

impl<'a> Parser<'a> {
    // ---- the cursor ----

    fn peek(&self) -> Option<u8> {
        self.src.as_bytes().get(self.pos).copied()
    }

    fn peek_at(&self, k: usize) -> Option<u8> {
        self.src.as_bytes().get(self.pos + k).copied()
    }

    /// Step over one character (all its UTF-8 bytes), keeping line and column.
    fn bump(&mut self) {
        match self.peek() {
            None => {}
            Some(b'\n') => {
                self.pos += 1;
                self.line += 1;
                self.col = 1;
            }
            Some(b) => {
                self.pos += match b {
                    0..=0x7f => 1,
                    0xf0.. => 4,
                    0xe0.. => 3,
                    _ => 2,
                };
                self.col += 1;
            }
        }
    }

    fn here(&self) -> (usize, usize) {
        (self.line, self.col)
    }

    fn error<T>(&self, at: (usize, usize), msg: impl Into<String>) -> Result<T> {
        Err(YamlError {
            line: at.0,
            col: at.1,
            msg: msg.into(),
        })
    }

    fn skip_inline_ws(&mut self) {
        while let Some(b' ' | b'\t') = self.peek() {
            self.bump();
        }
    }

    fn skip_to_eol(&mut self) {
        let rest = &self.src.as_bytes()[self.pos..];
        let n = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        self.advance_in_line(n);
    }

    /// Move `n` bytes ahead on the current line (no line break among them).
    fn advance_in_line(&mut self, n: usize) {
        let skipped = &self.src.as_bytes()[self.pos..self.pos + n];
        self.col += skipped.iter().filter(|&&b| b & 0xc0 != 0x80).count();
        self.pos += n;
    }

    fn after_ws(&self) -> bool {
        self.pos > 0 && matches!(self.src.as_bytes()[self.pos - 1], b' ' | b'\t')
    }

    /// At `---` or `...` in column 1, followed by a blank or the end.
    fn at_marker(&self) -> bool {
        let rest = &self.src.as_bytes()[self.pos..];
        self.col == 1
            && (rest.starts_with(b"---") || rest.starts_with(b"..."))
            && is_blank(rest.get(3).copied())
    }

    fn at_dash(&self) -> bool {
        self.peek() == Some(b'-') && is_blank(self.peek_at(1))
    }

    fn enter(&mut self, at: (usize, usize)) -> Result<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return self.error(
                at,
                format!("nesting deeper than {MAX_DEPTH} levels; flatten the structure"),
            );
        }
        Ok(())
    }

    // ---- lines ----

    /// From the end of a line, move to the first content character of the next line
    /// that has any, stepping over empty and comment-only lines; sets `self.indent`.
    fn next_line(&mut self) -> Result<Skipped> {
        let mut skipped = Skipped::default();
        loop {
            match self.peek() {
                None => {
                    self.indent = -1;
                    return Ok(skipped);
                }
                Some(b'\n') => self.bump(),
                Some(_) => return self.error(self.here(), "unexpected text"),
            }
            if self.content_here(&mut skipped)? {
                return Ok(skipped);
            }
        }
    }

    /// At the start of a line: step over its indentation. True if the line has content
    /// (or is a document marker); false for an empty or comment line, left at its end.
    fn content_here(&mut self, skipped: &mut Skipped) -> Result<bool> {
        if self.at_marker() {
            self.indent = -1;
            return Ok(true);
        }
        let mut tab = None;
        while let Some(b @ (b' ' | b'\t')) = self.peek() {
            if b == b'\t' && tab.is_none() {
                tab = Some(self.here());
            }
            self.bump();
        }
        match self.peek() {
            None | Some(b'\n') => {
                if !skipped.comment {
                    skipped.blanks += 1;
                }
                Ok(false)
            }
            Some(b'#') => {
                skipped.comment = true;
                self.skip_to_eol();
                Ok(false)
            }
            Some(_) => {
                if let Some(at) = tab {
                    return self.error(at, "tab character in indentation; indent with spaces");
                }
                self.indent = self.col as i64 - 1;
                Ok(true)
            }
        }
    }

    /// Finish the current line after a value (blanks and a comment may follow), then
    /// move to the next line with content.
    fn end_line(&mut self) -> Result<Skipped> {
        self.skip_inline_ws();
        match self.peek() {
            None | Some(b'\n') => {}
            Some(b'#') if self.after_ws() => self.skip_to_eol(),
            Some(b'#') => return self.error(self.here(), "a comment needs a space before '#'"),
            Some(b':') if is_blank(self.peek_at(1)) => {
                return self.error(
                    self.here(),
                    "unexpected ':' after the value; a nested map goes on the next lines, indented",
                );
            }
            Some(b':') => return self.error(self.here(), "put a space after ':'"),
            Some(_) => {
                return self.error(
                    self.here(),
                    "unexpected text after the value; quote the whole value if it belongs to it",
                );
            }
        }
        self.next_line()
    }

    // ---- document ----

    fn document(&mut self) -> Result<Node> {
        let mut skipped = Skipped::default();
        while !self.content_here(&mut skipped)? {
            if self.peek().is_none() {
                self.indent = -1;
                break;
            }
            self.bump();
        }
        if self.peek() == Some(b'%') && self.col == 1 {
            return self.error(
                self.here(),
                "directives ('%YAML', '%TAG') are not supported; remove this line",
            );
        }
        if self.at_marker() && self.peek() == Some(b'-') {
            for _ in 0..3 {
                self.bump();
            }
            self.skip_inline_ws();
            if !matches!(self.peek(), None | Some(b'\n' | b'#')) {
                return self.error(self.here(), "put the document on the line after '---'");
            }
            self.end_line()?;
        }
        let root = if self.indent < 0 {
            Node {
                line: 1,
                col: 1,
                value: Value::Null,
            }
        } else {
            self.block_node(-1)?
        };
        if self.indent >= 0 {
            return self.error(
                self.here(),
                "expected the end of the document; check the indentation of this line",
            );
        }
        if self.peek() == Some(b'.') {
            for _ in 0..3 {
                self.bump();
            }
            self.end_line()?;
            if self.indent >= 0 || self.peek() == Some(b'.') {
                return self.error(
                    self.here(),
                    "content after the end-of-document marker '...'; remove it or the marker",
                );
            }
        }
        if self.peek() == Some(b'-') {
            return self.error(
                self.here(),
                "a second document ('---') is not supported; keep one document per file",
            );
        }
        Ok(root)
    }

    // ---- block context ----

    /// A block node whose first character is under the cursor, inside a collection at
    /// indent `n`. The node's own indent is its column: for `- a: 1` the map's is `a`'s.
    fn block_node(&mut self, n: i64) -> Result<Node> {
        let at = self.here();
        let own = self.col as i64 - 1;
        match self.peek() {
            Some(b'-') if is_blank(self.peek_at(1)) => self.block_list(own),
            Some(b'|' | b'>') => self.block_scalar(n),
            Some(b'[' | b'{') => {
                let node = self.flow_collection(n)?;
                self.skip_inline_ws();
                if self.peek() == Some(b':') && is_blank(self.peek_at(1)) {
                    return self.error(
                        at,
                        "a key must be a plain or quoted string, not a flow collection",
                    );
                }
                self.end_line()?;
                Ok(node)
            }
            Some(b'"' | b'\'') => {
                let (text, multiline) = self.quoted(n)?;
                self.skip_inline_ws();
                if self.peek() == Some(b':') && is_blank(self.peek_at(1)) {
                    if multiline {
                        return self.error(at, "a key must be on one line");
                    }
                    let key = self.make_key(text, at, false)?;
                    return self.block_map(own, key);
                }
                self.end_line()?;
                Ok(str_node(text, at))
            }
            _ => {
                self.check_plain_start(false)?;
                let (start, end, stop) = self.plain_segment(false);
                if stop == Stop::Colon {
                    let key = self.make_key(self.src[start..end].to_string(), at, true)?;
                    return self.block_map(own, key);
                }
                self.plain_rest(n, start, end, stop, at)
            }
        }
    }

    /// Keys are names: a plain key that YAML would type as null, a boolean or a number
    /// is refused rather than read differently from other YAML tools.
    fn make_key(&self, name: String, at: (usize, usize), plain: bool) -> Result<Key> {
        if plain && name == "<<" {
            return self.error(
                at,
                "merge keys ('<<') are not supported; repeat the keys instead",
            );
        }
        if plain {
            let typed = match self.resolve(&name, at) {
                Ok(Value::Str(_)) => None,
                Ok(value) => Some(value.kind()),
                Err(_) => Some("an integer"),
            };
            if let Some(kind) = typed {
                return self.error(
                    at,
                    format!("the key {name} is {kind} in YAML; quote it (\"{name}\") to use it as a name"),
                );
            }
        }
        Ok(Key {
            name,
            line: at.0,
            col: at.1,
        })
    }

    /// The key of a further entry of a block map, at the map's indent; leaves the
    /// cursor on the `:`.
    fn map_key(&mut self) -> Result<Key> {
        let at = self.here();
        match self.peek() {
            Some(b'-') if is_blank(self.peek_at(1)) => self.error(
                at,
                "expected 'key: value' at this indent, found a list item; indent the list under its key",
            ),
            Some(b'[' | b'{') => self.error(at, "a key must be a plain or quoted string, not a flow collection"),
            Some(b'"' | b'\'') => {
                let (text, multiline) = self.quoted(-1)?;
                self.skip_inline_ws();
                if multiline {
                    return self.error(at, "a key must be on one line");
                }
                if self.peek() == Some(b':') && is_blank(self.peek_at(1)) {
                    return self.make_key(text, at, false);
                }
                self.error(self.here(), "expected ':' after the key")
            }
            _ => {
                self.check_plain_start(false)?;
                let (start, end, stop) = self.plain_segment(false);
                if stop == Stop::Colon {
                    return self.make_key(self.src[start..end].to_string(), at, true);
                }
                if self.src[start..end].contains(':') {
                    return self.error(at, "expected 'key: value'; put a space after ':'");
                }
                self.error(at, "expected 'key: value' at this indent")
            }
        }
    }

    /// A block map at indent `m` whose first key has been read; the cursor is on its `:`.
    fn block_map(&mut self, m: i64, first: Key) -> Result<Node> {
        let at = (first.line, first.col);
        self.enter(at)?;
        let mut entries: Vec<(Key, Node)> = Vec::new();
        let mut seen = Seen::default();
        let mut key = first;
        loop {
            self.bump(); // the ':'
            seen.check(&entries, &key)?;
            let value = self.map_value(m)?;
            entries.push((key, value));
            if self.indent < m {
                break;
            }
            if self.indent > m {
                return self.error(
                    self.here(),
                    format!(
                        "bad indentation: the keys of this map are in column {}; align this line with them",
                        m + 1
                    ),
                );
            }
            key = self.map_key()?;
        }
        self.depth -= 1;
        Ok(Node {
            line: at.0,
            col: at.1,
            value: Value::Map(entries),
        })
    }

    /// The value after `key:` of a map at indent `m`.
    fn map_value(&mut self, m: i64) -> Result<Node> {
        let after = self.here();
        self.skip_inline_ws();
        let at = self.here();
        match self.peek() {
            None | Some(b'\n' | b'#') => {
                self.end_line()?;
                if self.indent > m {
                    self.block_node(m)
                } else if self.indent == m && self.at_dash() {
                    self.block_list(m)
                } else {
                    Ok(null_node(after))
                }
            }
            Some(b'-') if is_blank(self.peek_at(1)) => self.error(
                at,
                "a list cannot start on the line of its key; put '- item' on the next line, indented",
            ),
            Some(b'|' | b'>') => self.block_scalar(m),
            Some(b'[' | b'{') => {
                let node = self.flow_collection(m)?;
                self.end_line()?;
                Ok(node)
            }
            Some(b'"' | b'\'') => {
                let (text, _) = self.quoted(m)?;
                self.end_line()?;
                Ok(str_node(text, at))
            }
            _ => {
                self.check_plain_start(false)?;
                let (start, end, stop) = self.plain_segment(false);
                if stop == Stop::Colon {
                    return self.error(
                        self.here(),
                        "':' followed by a space is not allowed in an unquoted value; quote the value",
                    );
                }
                self.plain_rest(m, start, end, stop, at)
            }
        }
    }

    /// A block list at indent `s`; the cursor is on the first `-`.
    fn block_list(&mut self, s: i64) -> Result<Node> {
        let at = self.here();
        self.enter(at)?;
        let mut items = Vec::new();
        loop {
            let dash = self.here();
            self.bump(); // the '-'
            self.skip_inline_ws();
            let item = match self.peek() {
                None | Some(b'\n' | b'#') => {
                    let after = (dash.0, dash.1 + 1);
                    self.end_line()?;
                    if self.indent > s {
                        self.block_node(s)?
                    } else {
                        null_node(after)
                    }
                }
                _ => self.block_node(s)?,
            };
            items.push(item);
            if self.indent != s || !self.at_dash() {
                break;
            }
        }
        if self.indent > s {
            return self.error(
                self.here(),
                format!(
                    "bad indentation: the items of this list are in column {}; align this line with them",
                    s + 1
                ),
            );
        }
        self.depth -= 1;
        Ok(Node {
            line: at.0,
            col: at.1,
            value: Value::List(items),
        })
    }

    /// Refuse what cannot start a plain scalar.
    fn check_plain_start(&self, flow: bool) -> Result<()> {
        let at = self.here();
        let next = self.peek_at(1);
        let sep = is_blank(next) || (flow && is_flow_indicator(next));
        match self.peek() {
            Some(b'&') => self.error(at, "anchors ('&name') are not supported; repeat the value instead"),
            Some(b'*') => self.error(at, "aliases ('*name') are not supported; repeat the value instead"),
            Some(b'!') => self.error(
                at,
                "tags ('!tag') are not supported; remove the tag (quote the value if it is a string)",
            ),
            Some(b'?') if sep => self.error(at, "explicit keys ('? ') are not supported; write 'key: value'"),
            Some(b':') if sep => self.error(at, "a key is missing before ':'"),
            Some(b'-') if sep && flow => self.error(
                at,
                "a block list item ('- ') cannot appear inside '[ ]' or '{ }'; separate items with ','",
            ),
            Some(b'|' | b'>') if flow => self.error(
                at,
                "block scalars ('|', '>') cannot appear inside '[ ]' or '{ }'; use a quoted string",
            ),
            Some(b'#') => self.error(at, "a comment needs a space before '#'"),
            Some(c @ (b'%' | b'@' | b'`' | b',' | b']' | b'}')) => self.error(
                at,
                format!("'{}' cannot start an unquoted value; quote the value", c as char),
            ),
            _ => Ok(()),
        }
    }

    /// Scan plain-scalar text on the current line. Returns the text's byte range
    /// (trailing blanks excluded) and why it stopped; the cursor is left at the stop.
    fn plain_segment(&mut self, flow: bool) -> (usize, usize, Stop) {
        let bytes = self.src.as_bytes();
        let start = self.pos;
        let mut end = start;
        let mut i = start;
        let stop = loop {
            match bytes.get(i) {
                None | Some(b'\n') => break Stop::End,
                Some(b' ' | b'\t') => {}
                Some(b'#') if i > start && matches!(bytes[i - 1], b' ' | b'\t') => {
                    break Stop::Comment;
                }
                Some(b':')
                    if is_blank(bytes.get(i + 1).copied())
                        || (flow && is_flow_indicator(bytes.get(i + 1).copied())) =>
                {
                    break Stop::Colon;
                }
                Some(b',' | b'[' | b']' | b'{' | b'}') if flow => break Stop::Flow,
                Some(_) => end = i + 1,
            }
            i += 1;
        };
        // `end` may sit inside a multi-byte character; the text ends with that character.
        while !self.src.is_char_boundary(end) {
            end += 1;
        }
        self.advance_in_line(i - start);
        (start, end, stop)
    }

    /// The rest of a plain scalar in block context: continuation lines indented more
    /// than `n` are folded in. Ends on the next line with content.
    fn plain_rest(
        &mut self,
        n: i64,
        start: usize,
        end: usize,
        mut stop: Stop,
        at: (usize, usize),
    ) -> Result<Node> {
        let mut text = self.src[start..end].to_string();
        loop {
            if stop == Stop::Comment {
                self.end_line()?;
                break;
            }
            let skipped = self.next_line()?;
            if skipped.comment || self.indent <= n {
                break;
            }
            if skipped.blanks == 0 {
                text.push(' ');
            } else {
                text.extend(std::iter::repeat_n('\n', skipped.blanks));
            }
            let line_at = self.here();
            let (s, e, st) = self.plain_segment(false);
            if st == Stop::Colon {
                return self.error(
                    line_at,
                    "bad indentation: this 'key: value' is indented more than the keys of its map; align it with them",
                );
            }
            text.push_str(&self.src[s..e]);
            stop = st;
        }
        let value = self.resolve(&text, at)?;
        Ok(Node {
            line: at.0,
            col: at.1,
            value,
        })
    }

    /// The core-schema type of a plain scalar.
    fn resolve(&self, text: &str, at: (usize, usize)) -> Result<Value> {
        // Only these can start a null, boolean or number: most text is done here.
        let typed_start = |b: &u8| b.is_ascii_digit() || b"+-.~nNtTfF".contains(b);
        if !text.as_bytes().first().is_none_or(typed_start) {
            return Ok(Value::Str(text.to_string()));
        }
        match text {
            "" | "~" | "null" | "Null" | "NULL" => return Ok(Value::Null),
            "true" | "True" | "TRUE" => return Ok(Value::Bool(true)),
            "false" | "False" | "FALSE" => return Ok(Value::Bool(false)),
            ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
                return Ok(Value::Float(f64::INFINITY));
            }
            "-.inf" | "-.Inf" | "-.INF" => return Ok(Value::Float(f64::NEG_INFINITY)),
            ".nan" | ".NaN" | ".NAN" => return Ok(Value::Float(f64::NAN)),
            _ => {}
        }
        let too_big = || {
            self.error(
                at,
                format!("integer {text} does not fit in 64 bits; quote it to keep it as text"),
            )
        };
        let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
        if !unsigned.is_empty() && unsigned.bytes().all(|b| b.is_ascii_digit()) {
            return text.parse::<i64>().map(Value::Int).or_else(|_| too_big());
        }
        for (prefix, radix) in [("0x", 16), ("0o", 8)] {
            if let Some(digits) = text.strip_prefix(prefix)
                && !digits.is_empty()
                && digits.chars().all(|c| c.is_digit(radix))
            {
                return i64::from_str_radix(digits, radix)
                    .map(Value::Int)
                    .or_else(|_| too_big());
            }
        }
        if is_core_float(text)
            && let Ok(f) = text.parse::<f64>()
        {
            return Ok(Value::Float(f));
        }
        Ok(Value::Str(text.to_string()))
    }

    /// A `|` or `>` block scalar in a collection at indent `n`; the cursor is on the indicator.
    /// The block scalar's header: `|` or `>`, then a chomping indicator and an
    /// indentation digit in either order, then at most a comment.
    fn block_header(&mut self) -> Result<(bool, Chomp, Option<usize>)> {
        let literal = self.peek() == Some(b'|');
        self.bump();
        let mut chomp = Chomp::Clip;
        let mut explicit: Option<usize> = None;
        for _ in 0..2 {
            match self.peek() {
                Some(b'-') if chomp == Chomp::Clip => chomp = Chomp::Strip,
                Some(b'+') if chomp == Chomp::Clip => chomp = Chomp::Keep,
                Some(d @ b'1'..=b'9') if explicit.is_none() => explicit = Some((d - b'0') as usize),
                Some(b'0') => {
                    return self.error(
                        self.here(),
                        "the indentation indicator must be 1 to 9, not 0",
                    );
                }
                _ => break,
            }
            self.bump();
        }
        self.skip_inline_ws();
        match self.peek() {
            None | Some(b'\n') => {}
            Some(b'#') if self.after_ws() => self.skip_to_eol(),
            _ => {
                return self.error(
                    self.here(),
                    "expected '-', '+', an indentation digit or a comment after the block scalar indicator; the text starts on the next line",
                );
            }
        }
        Ok((literal, chomp, explicit))
    }

    fn block_scalar(&mut self, n: i64) -> Result<Node> {
        let at = self.here();
        let (literal, chomp, explicit) = self.block_header()?;
        let base = n.max(0) as usize;
        let min = (n + 1).max(0) as usize; // a top-level scalar may use column 1
        let mut indent = explicit.map(|k| base + k);
        let bytes = self.src.as_bytes();
        let mut folded = Folded::new(literal);
        let mut max_blank = (0usize, 0usize); // most spaces on a leading empty line, and its line
        let mut pos = self.pos; // always at a '\n' or the end
        let mut line = self.line;
        let mut last_start = None;
        // Each turn reads the line after the '\n' at `pos`; a final '\n' has none.
        while pos + 1 < bytes.len() {
            let start = pos + 1;
            let eol = bytes[start..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(bytes.len(), |i| start + i);
            let text_line = &self.src[start..eol];
            let marker = (text_line.starts_with("---") || text_line.starts_with("..."))
                && is_blank(text_line.as_bytes().get(3).copied());
            if marker {
                break;
            }
            let spaces = text_line.bytes().take_while(|&b| b == b' ').count();
            let blank = text_line[spaces..].bytes().all(|b| b == b' ' || b == b'\t');
            let want = match indent {
                Some(i) => i,
                None if blank => {
                    if spaces > max_blank.0 {
                        max_blank = (spaces, line + 1);
                    }
                    usize::MAX
                }
                None if spaces < min => break,
                None => {
                    if max_blank.0 > spaces {
                        return self.error(
                            (max_blank.1, 1),
                            "a leading empty line of this block scalar has more spaces than its first text line; remove them",
                        );
                    }
                    indent = Some(spaces);
                    spaces
                }
            };
            let content = if spaces >= want && text_line.len() > want {
                Some(&text_line[want..])
            } else if blank {
                None
            } else {
                break; // a less indented line ends the scalar
            };
            folded.push(content);
            pos = eol;
            line += 1;
            last_start = Some(start);
        }
        if let Some(start) = last_start {
            self.col = self.src[start..pos].chars().count() + 1;
            self.pos = pos;
            self.line = line;
        }
        let out = folded.finish(chomp);
        self.next_line()?;
        Ok(str_node(out, at))
    }

    // ---- quoted scalars ----

    /// A single- or double-quoted scalar; continuation lines must be indented more
    /// than `n`. Returns the text and whether it spanned several lines.
    fn quoted(&mut self, n: i64) -> Result<(String, bool)> {
        let open = self.here();
        let double = self.peek() == Some(b'"');
        let quote = if double { b'"' } else { b'\'' };
        self.bump();
        let mut out = String::new();
        let mut keep = 0; // length of `out` without trailing blanks that folding drops
        let mut multiline = false;
        loop {
            match self.peek() {
                None => {
                    let what = if double {
                        "unterminated double-quoted string; add the closing '\"'"
                    } else {
                        "unterminated single-quoted string; add the closing \"'\""
                    };
                    return self.error(open, what);
                }
                Some(b'\'') if !double && self.peek_at(1) == Some(b'\'') => {
                    out.push('\'');
                    self.bump();
                    self.bump();
                    keep = out.len();
                }
                Some(b) if b == quote => {
                    self.bump();
                    return Ok((out, multiline));
                }
                Some(b'\\') if double && self.peek_at(1) == Some(b'\n') => {
                    self.bump();
                    multiline = true;
                    self.fold(n, open, &mut out, true)?;
                    keep = out.len();
                }
                Some(b'\\') if double => {
                    self.escape(&mut out)?;
                    keep = out.len();
                }
                Some(b'\n') => {
                    multiline = true;
                    out.truncate(keep);
                    self.fold(n, open, &mut out, false)?;
                    keep = out.len();
                }
                Some(b' ' | b'\t') => {
                    out.push(self.peek().map_or(' ', char::from));
                    self.bump();
                }
                Some(_) => {
                    let rest = &self.src[self.pos..];
                    if let Some(c) = rest.chars().next() {
                        out.push(c);
                    }
                    self.bump();
                    keep = out.len();
                }
            }
        }
    }

    /// Fold the line break under the cursor inside a quoted scalar: one break becomes
    /// a space (nothing after an escaped break), each empty line a `\n`.
    fn fold(
        &mut self,
        n: i64,
        open: (usize, usize),
        out: &mut String,
        escaped: bool,
    ) -> Result<()> {
        let mut empty = 0;
        loop {
            self.bump(); // the '\n'
            if self.at_marker() {
                return self.error(
                    self.here(),
                    "document marker inside a quoted string; indent this line or close the quote",
                );
            }
            self.skip_inline_ws();
            match self.peek() {
                Some(b'\n') => empty += 1,
                None => {
                    return self.error(open, "unterminated quoted string; add the closing quote");
                }
                Some(_) => {
                    if self.col as i64 - 1 <= n {
                        return self.error(
                            self.here(),
                            format!(
                                "bad indentation: the lines of a quoted string must be indented more than column {}",
                                n + 1
                            ),
                        );
                    }
                    break;
                }
            }
        }
        if empty > 0 {
            out.extend(std::iter::repeat_n('\n', empty));
        } else if !escaped {
            out.push(' ');
        }
        Ok(())
    }

    /// One backslash escape of a double-quoted scalar; the cursor is on the backslash.
    fn escape(&mut self, out: &mut String) -> Result<()> {
        let at = self.here();
        self.bump();
        let Some(c) = self.peek() else {
            return self.error(
                at,
                "unterminated double-quoted string; add the closing '\"'",
            );
        };
        let simple = match c {
            b'0' => Some('\0'),
            b'a' => Some('\u{7}'),
            b'b' => Some('\u{8}'),
            b't' | b'\t' => Some('\t'),
            b'n' => Some('\n'),
            b'v' => Some('\u{b}'),
            b'f' => Some('\u{c}'),
            b'r' => Some('\r'),
            b'e' => Some('\u{1b}'),
            b' ' => Some(' '),
            b'"' => Some('"'),
            b'/' => Some('/'),
            b'\\' => Some('\\'),
            b'N' => Some('\u{85}'),
            b'_' => Some('\u{a0}'),
            b'L' => Some('\u{2028}'),
            b'P' => Some('\u{2029}'),
            _ => None,
        };
        if let Some(ch) = simple {
            out.push(ch);
            self.bump();
            return Ok(());
        }
        let width = match c {
            b'x' => 2,
            b'u' => 4,
            b'U' => 8,
            _ => {
                let shown: String = self.src[self.pos..].chars().take(1).collect();
                return self.error(
                    at,
                    format!(
                        "unknown escape '\\{shown}' in a double-quoted string; write '\\\\' for a backslash"
                    ),
                );
            }
        };
        let digits = self
            .src
            .get(self.pos + 1..self.pos + 1 + width)
            .unwrap_or("");
        if digits.len() != width || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return self.error(
                at,
                format!("escape '\\{}' needs {} hex digits", c as char, width),
            );
        }
        let code = u32::from_str_radix(digits, 16).unwrap_or(u32::MAX);
        let Some(ch) = char::from_u32(code) else {
            return self.error(
                at,
                format!(
                    "escape '\\{}{digits}' is not a valid Unicode character",
                    c as char
                ),
            );
        };
        out.push(ch);
        for _ in 0..=width {
            self.bump();
        }
        Ok(())
    }

    // ---- flow context ----

    /// A `[..]` or `{..}` collection starting in block context; `n` is the indent of
    /// the block collection around it, which its continuation lines must exceed.
    fn flow_collection(&mut self, n: i64) -> Result<Node> {
        if self.peek() == Some(b'[') {
            self.flow_list(n)
        } else {
            self.flow_map(n)
        }
    }

    /// A node inside the flow collection `within`.
    fn flow_node(&mut self, n: i64, within: &Flow) -> Result<Node> {
        let at = self.here();
        match self.peek() {
            Some(b'[' | b'{') => self.flow_collection(n),
            Some(b'"' | b'\'') => {
                let (text, _) = self.quoted(n)?;
                Ok(str_node(text, at))
            }
            _ => {
                let text = self.flow_plain(n, within)?;
                let value = self.resolve(&text, at)?;
                Ok(Node {
                    line: at.0,
                    col: at.1,
                    value,
                })
            }
        }
    }

    /// A plain scalar inside a flow collection, possibly over several lines.
    fn flow_plain(&mut self, n: i64, within: &Flow) -> Result<String> {
        self.check_plain_start(true)?;
        let (start, end, mut stop) = self.plain_segment(true);
        let mut text = self.src[start..end].to_string();
        while stop == Stop::End {
            let crossed = self.flow_space(n, within)?;
            if crossed.comment
                || matches!(
                    self.peek(),
                    Some(b',' | b']' | b'}' | b'[' | b'{' | b':' | b'"' | b'\'' | b'#')
                )
            {
                break;
            }
            if crossed.blanks <= 1 {
                text.push(' ');
            } else {
                text.extend(std::iter::repeat_n('\n', crossed.blanks - 1));
            }
            let (s, e, st) = self.plain_segment(true);
            text.push_str(&self.src[s..e]);
            stop = st;
        }
        Ok(text)
    }

    /// Step over blanks, line breaks and comments inside the flow collection `within`;
    /// `blanks` counts the line breaks crossed.
    fn flow_space(&mut self, n: i64, within: &Flow) -> Result<Skipped> {
        let mut skipped = Skipped::default();
        loop {
            match self.peek() {
                Some(b' ' | b'\t') => self.bump(),
                Some(b'#') if self.after_ws() || self.col == 1 => {
                    skipped.comment = true;
                    self.skip_to_eol();
                }
                Some(b'#') => return self.error(self.here(), "a comment needs a space before '#'"),
                Some(b'\n') => {
                    self.bump();
                    skipped.blanks += 1;
                    if self.at_marker() {
                        return self.error(
                            self.here(),
                            format!(
                                "document marker inside a {}; close it with '{}' first",
                                within.what, within.close
                            ),
                        );
                    }
                }
                None => {
                    return self.error(
                        within.open,
                        format!(
                            "unterminated {}; add the closing '{}'",
                            within.what, within.close
                        ),
                    );
                }
                Some(_) => {
                    // Closing brackets too: YAML 1.2 indents every line of a flow
                    // collection past its parent, unlike libyaml.
                    if skipped.blanks > 0 && self.col as i64 - 1 <= n {
                        return self.error(
                            self.here(),
                            format!(
                                "bad indentation: the lines inside '[ ]' or '{{ }}' must be indented more than column {}",
                                n + 1
                            ),
                        );
                    }
                    return Ok(skipped);
                }
            }
        }
    }

    fn flow_list(&mut self, n: i64) -> Result<Node> {
        let open = self.here();
        self.enter(open)?;
        self.bump(); // '['
        let within = Flow {
            open,
            what: "flow list",
            close: ']',
        };
        let mut items = Vec::new();
        loop {
            self.flow_space(n, &within)?;
            match self.peek() {
                Some(b']') => {
                    self.bump();
                    break;
                }
                Some(b',') => {
                    return self.error(
                        self.here(),
                        "empty entry in a flow list; remove the extra ','",
                    );
                }
                _ => {}
            }
            items.push(self.flow_node(n, &within)?);
            self.flow_space(n, &within)?;
            match self.peek() {
                Some(b',') => self.bump(),
                Some(b']') => {
                    self.bump();
                    break;
                }
                Some(b':') => {
                    return self.error(
                        self.here(),
                        "'key: value' pairs inside '[ ]' are not supported; wrap the pair in '{ }'",
                    );
                }
                _ => {
                    return self.error(
                        self.here(),
                        format!(
                            "expected ',' or ']' in the flow list opened at line {}, column {}",
                            open.0, open.1
                        ),
                    );
                }
            }
        }
        self.depth -= 1;
        Ok(Node {
            line: open.0,
            col: open.1,
            value: Value::List(items),
        })
    }

    fn flow_map(&mut self, n: i64) -> Result<Node> {
        let open = self.here();
        self.enter(open)?;
        self.bump(); // '{'
        let within = Flow {
            open,
            what: "flow map",
            close: '}',
        };
        let mut entries: Vec<(Key, Node)> = Vec::new();
        let mut seen = Seen::default();
        loop {
            self.flow_space(n, &within)?;
            let at = self.here();
            let key = match self.peek() {
                Some(b'}') => {
                    self.bump();
                    break;
                }
                Some(b',') => {
                    return self.error(at, "empty entry in a flow map; remove the extra ','");
                }
                Some(b'[' | b'{') => {
                    return self.error(
                        at,
                        "a key must be a plain or quoted string, not a flow collection",
                    );
                }
                Some(b'"' | b'\'') => {
                    let (text, multiline) = self.quoted(n)?;
                    if multiline {
                        return self.error(at, "a key must be on one line");
                    }
                    self.make_key(text, at, false)?
                }
                _ => {
                    let text = self.flow_plain(n, &within)?;
                    self.make_key(text, at, true)?
                }
            };
            seen.check(&entries, &key)?;
            self.flow_space(n, &within)?;
            let value = if self.peek() == Some(b':') {
                self.bump();
                self.flow_space(n, &within)?;
                if matches!(self.peek(), Some(b',' | b'}')) {
                    null_node(self.here())
                } else {
                    self.flow_node(n, &within)?
                }
            } else {
                null_node(at)
            };
            entries.push((key, value));
            self.flow_space(n, &within)?;
            match self.peek() {
                Some(b',') => self.bump(),
                Some(b'}') => {
                    self.bump();
                    break;
                }
                _ => {
                    return self.error(
                        self.here(),
                        format!(
                            "expected ',' or '}}' in the flow map opened at line {}, column {}",
                            open.0, open.1
                        ),
                    );
                }
            }
        }
        self.depth -= 1;
        Ok(Node {
            line: open.0,
            col: open.1,
            value: Value::Map(entries),
        })
    }
}

/// Finds duplicate keys: by scanning while a map is small, by hashing once it is not,
/// so that checking stays linear without a hash table for every little map.
#[derive(Default)]
struct Seen {
    index: HashMap<String, usize>,
}

impl Seen {
    const SCAN: usize = 16;

    /// Refuse `key` if `entries` (the map so far) has it already.
    fn check(&mut self, entries: &[(Key, Node)], key: &Key) -> Result<()> {
        let first = if entries.len() < Self::SCAN {
            entries
                .iter()
                .find(|(k, _)| k.name == key.name)
                .map(|(k, _)| k.line)
        } else {
            if self.index.is_empty() {
                self.index = entries
                    .iter()
                    .map(|(k, _)| (k.name.clone(), k.line))
                    .collect();
            }
            let first = self.index.get(&key.name).copied();
            self.index.entry(key.name.clone()).or_insert(key.line);
            first
        };
        match first {
            Some(line) => Err(YamlError {
                line: key.line,
                col: key.col,
                msg: format!(
                    "duplicate key '{}' (first on line {line}); remove one of them",
                    key.name
                ),
            }),
            None => Ok(()),
        }
    }
}

/// The flow collection a flow node sits in, for its error messages.
struct Flow {
    open: (usize, usize),
    what: &'static str,
    close: char,
}

fn str_node(text: String, at: (usize, usize)) -> Node {
    Node {
        line: at.0,
        col: at.1,
        value: Value::Str(text),
    }
}

fn null_node(at: (usize, usize)) -> Node {
    Node {
        line: at.0,
        col: at.1,
        value: Value::Null,
    }
}

/// `[-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?`
fn is_core_float(text: &str) -> bool {
    let b = text.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'-' | b'+')));
    let digits = |i: &mut usize| {
        let from = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - from
    };
    let whole = digits(&mut i);
    if b.get(i) == Some(&b'.') {
        i += 1;
        let frac = digits(&mut i);
        if whole == 0 && frac == 0 {
            return false;
        }
    } else if whole == 0 {
        return false;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'-' | b'+')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// How YAML 1.2 would show a float: `1.5`, `1.0`, `1e+30`, `.inf`, `-.inf`, `.nan`.
pub fn format_float(f: f64) -> String {
    if f.is_nan() {
        ".nan".into()
    } else if f.is_infinite() {
        if f > 0.0 {
            ".inf".into()
        } else {
            "-.inf".into()
        }
    } else {
        format!("{f:?}")
    }
}

/// A block scalar's text as its lines come: kept (`|`) or folded (`>`).
struct Folded {
    literal: bool,
    out: String,
    /// Empty lines since the last text line.
    pending: usize,
    had_text: bool,
    /// The last text line started with a blank (more indented: not folded).
    prev_more: bool,
}

impl Folded {
    fn new(literal: bool) -> Folded {
        Folded {
            literal,
            out: String::new(),
            pending: 0,
            had_text: false,
            prev_more: false,
        }
    }

    /// One line of the scalar, its indentation removed; None for an empty one.
    fn push(&mut self, content: Option<&str>) {
        let Some(t) = content else {
            self.pending += 1;
            return;
        };
        let more = t.starts_with([' ', '\t']);
        if self.had_text {
            if !self.literal && !self.prev_more && !more && self.pending == 0 {
                self.out.push(' ');
            } else {
                let extra = usize::from(self.literal || self.prev_more || more);
                self.out
                    .extend(std::iter::repeat_n('\n', self.pending + extra));
            }
        } else {
            self.out.extend(std::iter::repeat_n('\n', self.pending));
        }
        self.out.push_str(t);
        self.pending = 0;
        self.had_text = true;
        self.prev_more = more;
    }

    /// The text, its final line breaks chomped as the header said.
    fn finish(mut self, chomp: Chomp) -> String {
        match chomp {
            Chomp::Strip => {}
            Chomp::Clip => {
                if self.had_text {
                    self.out.push('\n');
                }
            }
            Chomp::Keep => {
                if self.had_text {
                    self.out.push('\n');
                }
                self.out.extend(std::iter::repeat_n('\n', self.pending));
            }
        }
        self.out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;
    use std::path::{Path, PathBuf};

    /// A tree without positions, in file order; `NaN` equals itself here.
    #[derive(Debug, Clone)]
    pub enum Plain {
        Null,
        Bool(bool),
        Int(i64),
        Float(f64),
        Str(String),
        List(Vec<Plain>),
        Map(Vec<(String, Plain)>),
    }

    impl PartialEq for Plain {
        fn eq(&self, other: &Plain) -> bool {
            use Plain::*;
            match (self, other) {
                (Null, Null) => true,
                (Bool(a), Bool(b)) => a == b,
                (Int(a), Int(b)) => a == b,
                (Float(a), Float(b)) => a == b || (a.is_nan() && b.is_nan()),
                (Str(a), Str(b)) => a == b,
                (List(a), List(b)) => a == b,
                (Map(a), Map(b)) => a == b,
                _ => false,
            }
        }
    }

    pub fn plain(node: &Node) -> Plain {
        match &node.value {
            Value::Null => Plain::Null,
            Value::Bool(b) => Plain::Bool(*b),
            Value::Int(i) => Plain::Int(*i),
            Value::Float(f) => Plain::Float(*f),
            Value::Str(s) => Plain::Str(s.clone()),
            Value::List(items) => Plain::List(items.iter().map(plain).collect()),
            Value::Map(entries) => Plain::Map(
                entries
                    .iter()
                    .map(|(k, v)| (k.name.clone(), plain(v)))
                    .collect(),
            ),
        }
    }

    /// As JSON, for tables; non-finite floats become the strings `.inf`, `-.inf`, `.nan`.
    pub fn json_of(tree: &Plain) -> serde_json::Value {
        match tree {
            Plain::Null => serde_json::Value::Null,
            Plain::Bool(b) => json!(b),
            Plain::Int(i) => json!(i),
            Plain::Float(f) => serde_json::Number::from_f64(*f)
                .map_or_else(|| json!(format_float(*f)), serde_json::Value::Number),
            Plain::Str(s) => json!(s),
            Plain::List(items) => items.iter().map(json_of).collect(),
            Plain::Map(entries) => entries
                .iter()
                .map(|(k, v)| (k.clone(), json_of(v)))
                .collect::<serde_json::Map<_, _>>()
                .into(),
        }
    }

    fn tree(text: &str) -> Plain {
        match parse(text) {
            Ok(node) => plain(&node),
            Err(e) => panic!("{text:?}: {e}"),
        }
    }

    /// What the reference YAML 1.2 library makes of `text`, in the same shape.
    fn oracle(text: &str) -> std::result::Result<Plain, String> {
        use saphyr::{LoadableYamlNode, Scalar, Yaml};
        fn key(y: &Yaml) -> String {
            match y {
                Yaml::Value(Scalar::String(s)) => s.to_string(),
                Yaml::Value(Scalar::Integer(i)) => i.to_string(),
                Yaml::Value(Scalar::Boolean(b)) => b.to_string(),
                Yaml::Value(Scalar::FloatingPoint(f)) => format_float(f.into_inner()),
                Yaml::Value(Scalar::Null) => "null".into(),
                other => format!("{other:?}"),
            }
        }
        fn convert(y: &Yaml) -> Plain {
            match y {
                Yaml::Value(Scalar::Null) => Plain::Null,
                Yaml::Value(Scalar::Boolean(b)) => Plain::Bool(*b),
                Yaml::Value(Scalar::Integer(i)) => Plain::Int(*i),
                Yaml::Value(Scalar::FloatingPoint(f)) => Plain::Float(f.into_inner()),
                Yaml::Value(Scalar::String(s)) => Plain::Str(s.to_string()),
                Yaml::Sequence(items) => Plain::List(items.iter().map(convert).collect()),
                Yaml::Mapping(m) => {
                    Plain::Map(m.iter().map(|(k, v)| (key(k), convert(v))).collect())
                }
                other => Plain::Str(format!("unexpected oracle node {other:?}")),
            }
        }
        let docs = Yaml::load_from_str(text).map_err(|e| e.to_string())?;
        match docs.as_slice() {
            [] => Ok(Plain::Null),
            [doc] => Ok(convert(doc)),
            _ => Err(format!("{} documents", docs.len())),
        }
    }

    /// Block and flow collections.
    fn collections() -> Vec<(&'static str, serde_json::Value)> {
        vec![
            ("", json!(null)),
            ("# only a comment\n\n", json!(null)),
            ("a: 1\nb: two\n", json!({"a": 1, "b": "two"})),
            ("a:\n  b:\n    c: d\n", json!({"a": {"b": {"c": "d"}}})),
            (
                "list:\n- a\n- b\nnext: 1",
                json!({"list": ["a", "b"], "next": 1}),
            ),
            ("list:\n  - a\n  - b\n", json!({"list": ["a", "b"]})),
            ("- a: 1\n  b: 2\n- c", json!([{"a": 1, "b": 2}, "c"])),
            ("- - a\n  - b\n- c", json!([["a", "b"], "c"])),
            ("-\n- a\n-  # comment\n", json!([null, "a", null])),
            ("a:\n  -\n    b: 1\n", json!({"a": [{"b": 1}]})),
            (
                "flow: [a, 'b c', \"d\", 1, true, null, {x: 1}]",
                json!({"flow": ["a", "b c", "d", 1, true, null, {"x": 1}]}),
            ),
            (
                "m: {a, b: 2, c: }",
                json!({"m": {"a": null, "b": 2, "c": null}}),
            ),
            ("[a, b, ]", json!(["a", "b"])),
            ("[]", json!([])),
            ("{}", json!({})),
            ("{\"a\":1, 'b':[x]}", json!({"a": 1, "b": ["x"]})),
            ("{a:1}", json!({"a:1": null})),
            ("a: [1,\n  2,\n  3\n  ]", json!({"a": [1, 2, 3]})),
            ("a: [x\n  y, z]", json!({"a": ["x y", "z"]})),
        ]
    }

    /// Quoted and plain scalars: strings, booleans, nulls, numbers.
    fn scalars() -> Vec<(&'static str, serde_json::Value)> {
        vec![
            ("s: 'it''s'", json!({"s": "it's"})),
            (
                r#"s: "a\tb\n\"q\" \\ \x41 \u00e9 \U0001F600 \/ \ ""#,
                json!({"s": "a\tb\n\"q\" \\ A é 😀 /  "}),
            ),
            (
                "s: \"\\e\\0\\a\\b\\v\\f\\r\\N\\_\\L\\P\"",
                json!({"s": "\u{1b}\0\u{7}\u{8}\u{b}\u{c}\r\u{85}\u{a0}\u{2028}\u{2029}"}),
            ),
            (
                "t: [True, TRUE, false, FALSE, yes, no, on, off, y, n]",
                json!({"t": [true, true, false, false, "yes", "no", "on", "off", "y", "n"]}),
            ),
            (
                "[~, null, Null, NULL, '', \"~\", nil]",
                json!([null, null, null, null, "", "~", "nil"]),
            ),
            ("a:\nb: ~", json!({"a": null, "b": null})),
            (
                "[0, -5, +7, 0x1F, 0xff, 0o17, 007, -0]",
                json!([0, -5, 7, 31, 255, 15, 7, 0]),
            ),
            (
                "[1.5, -0.25, 1e3, .5, 1., +2.5E-2, 6.02e+23]",
                json!([1.5, -0.25, 1000.0, 0.5, 1.0, 0.025, 6.02e23]),
            ),
            (
                "['1', \"2\", 1.2.3, 0x, 0xZZ, 0o8, 1_000, 12:30, .e1, 1e, 0b101, +.5.]",
                json!([
                    "1", "2", "1.2.3", "0x", "0xZZ", "0o8", "1_000", "12:30", ".e1", "1e", "0b101",
                    "+.5."
                ]),
            ),
            (
                "[.inf, -.Inf, +.INF, .nan, .NaN, inf, nan]",
                json!([".inf", "-.inf", ".inf", ".nan", ".nan", "inf", "nan"]),
            ),
        ]
    }

    /// Literal and folded block scalars.
    fn block_scalars() -> Vec<(&'static str, serde_json::Value)> {
        vec![
            (
                "s: |\n  line 1\n  line 2\n",
                json!({"s": "line 1\nline 2\n"}),
            ),
            (
                "s: |\n  line 1\n\n   line 3\n\n\nt: 1",
                json!({"s": "line 1\n\n line 3\n", "t": 1}),
            ),
            (
                "a: |-\n  x\n\nb: |+\n  y\n\n\nc: 1",
                json!({"a": "x", "b": "y\n\n\n", "c": 1}),
            ),
            (
                "s: >\n  a\n  b\n\n  c\n    d\n  e\n",
                json!({"s": "a b\nc\n  d\ne\n"}),
            ),
            ("s: >-\n  a\n\n\n  b\n", json!({"s": "a\n\nb"})),
            ("s: |2\n    x\n  y\n", json!({"s": "  x\ny\n"})),
            ("s: |-2\n    x\n", json!({"s": "  x"})),
            ("s: |+\n\n", json!({"s": "\n"})),
            ("s: |\nt: 1", json!({"s": "", "t": 1})),
            (
                "- |\n  in a list\n- >\n  folded\n  item\n",
                json!(["in a list\n", "folded item\n"]),
            ),
            (
                "s: |  # comment\n  # not a comment\n",
                json!({"s": "# not a comment\n"}),
            ),
        ]
    }

    /// Comments, folding, documents, keys, tabs and odd characters.
    fn layout() -> Vec<(&'static str, serde_json::Value)> {
        vec![
            (
                "a: 1 # c\n# full\nb: 'x' # c\nc: a#b\nd: \"#\"",
                json!({"a": 1, "b": "x", "c": "a#b", "d": "#"}),
            ),
            (
                "cmd: python -m http.server\n  --bind 127.0.0.1\n\n  8000",
                json!({"cmd": "python -m http.server --bind 127.0.0.1\n8000"}),
            ),
            ("- a\n  - b", json!(["a - b"])),
            ("s: \"a\n  b\\\n  c\n\n  d\"", json!({"s": "a bc\nd"})),
            ("s: 'a  \n  b'", json!({"s": "a b"})),
            ("s: \"a\\t\n  b\"", json!({"s": "a\t b"})),
            ("---\na: 1\n...\n", json!({"a": 1})),
            ("--- # doc\na: 1\n... # end\n# after", json!({"a": 1})),
            ("---\n", json!(null)),
            (
                "名前: 値\nemoji: \"😀\"",
                json!({"名前": "値", "emoji": "😀"}),
            ),
            (
                "'a b': 1\n\"c\": 2\nd e: 3\nf : 4",
                json!({"a b": 1, "c": 2, "d e": 3, "f": 4}),
            ),
            ("a: 1\r\nb: 2\r\n", json!({"a": 1, "b": 2})),
            ("\u{feff}a: 1", json!({"a": 1})),
            ("hello", json!("hello")),
            ("hello\nworld", json!("hello world")),
            (
                "url: http://x:80/a?b#c",
                json!({"url": "http://x:80/a?b#c"}),
            ),
            ("a: b\tc", json!({"a": "b\tc"})),
            ("a:\t1", json!({"a": 1})),
            (
                "a: -1\nb: -x\nc: ?x\nd: :x",
                json!({"a": -1, "b": "-x", "c": "?x", "d": ":x"}),
            ),
            ("  a: 1\n  b: 2\n", json!({"a": 1, "b": 2})),
            (
                "a:\n    b: 1\n    c: 2\nd: 3",
                json!({"a": {"b": 1, "c": 2}, "d": 3}),
            ),
            ("\t\na: 1\n  \t\n", json!({"a": 1})),
            ("\t# tab before a comment\na: 1", json!({"a": 1})),
            (
                "\"1\": one\n'true': yes\n\"null\": x",
                json!({"1": "one", "true": "yes", "null": "x"}),
            ),
        ]
    }

    #[test]
    fn the_subset_parses_to_the_expected_trees() {
        let cases = [collections(), scalars(), block_scalars(), layout()].concat();
        for (text, want) in cases {
            let ours = tree(text);
            assert_eq!(json_of(&ours), want, "{text:?}");
            // saphyr refuses a tab after ':', which YAML 1.2 allows (s-separate-in-line).
            if text != "a:\t1" {
                assert_eq!(oracle(text).as_ref(), Ok(&ours), "oracle on {text:?}");
            }
        }
    }

    #[test]
    fn keys_keep_file_order() {
        let Plain::Map(entries) = tree("z: 1\na: 2\nm: 3\n") else {
            panic!()
        };
        let keys: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["z", "a", "m"]);
    }

    #[test]
    fn nodes_and_keys_know_where_they_start() {
        let root = parse("# c\nprocesses:\n  web:\n    cmd: \"x\"\n    env: {A: 1}\n    list:\n    - é: |\n        t\n").unwrap();
        assert_eq!((root.line, root.col), (2, 1));
        let Value::Map(top) = &root.value else {
            panic!()
        };
        let (key, procs) = &top[0];
        assert_eq!((key.name.as_str(), key.line, key.col), ("processes", 2, 1));
        let Value::Map(procs) = &procs.value else {
            panic!()
        };
        let (web, def) = &procs[0];
        assert_eq!((web.line, web.col), (3, 3));
        let Value::Map(fields) = &def.value else {
            panic!()
        };
        let at: Vec<(&str, usize, usize, usize, usize)> = fields
            .iter()
            .map(|(k, v)| (k.name.as_str(), k.line, k.col, v.line, v.col))
            .collect();
        assert_eq!(
            at,
            [
                ("cmd", 4, 5, 4, 10),
                ("env", 5, 5, 5, 10),
                ("list", 6, 5, 7, 5)
            ]
        );
        let Value::Map(env) = &fields[1].1.value else {
            panic!()
        };
        assert_eq!((env[0].0.col, env[0].1.col), (11, 14));
        let Value::List(items) = &fields[2].1.value else {
            panic!()
        };
        let Value::Map(item) = &items[0].value else {
            panic!()
        };
        // Columns count characters, not bytes: 'é' is two bytes.
        assert_eq!((item[0].0.col, item[0].1.line, item[0].1.col), (7, 7, 10));
    }

    #[test]
    fn non_finite_floats_are_floats() {
        let Plain::List(items) = tree("[.inf, -.inf, .nan]") else {
            panic!()
        };
        assert!(matches!(items[0], Plain::Float(f) if f == f64::INFINITY));
        assert!(matches!(items[1], Plain::Float(f) if f == f64::NEG_INFINITY));
        assert!(matches!(items[2], Plain::Float(f) if f.is_nan()));
    }

    /// YAML outside the subset, and the error that says so and what to do instead.
    const OUTSIDE_THE_SUBSET: &[(&str, &str)] = &[
        (
            "a: &x 1",
            "1:4: anchors ('&name') are not supported; repeat the value instead",
        ),
        (
            "a: *x",
            "1:4: aliases ('*name') are not supported; repeat the value instead",
        ),
        (
            "a: !!str 1",
            "1:4: tags ('!tag') are not supported; remove the tag (quote the value if it is a string)",
        ),
        (
            "- !x\n",
            "1:3: tags ('!tag') are not supported; remove the tag (quote the value if it is a string)",
        ),
        (
            "a: 1\n---\nb: 2",
            "2:1: a second document ('---') is not supported; keep one document per file",
        ),
        (
            "a: 1\n...\n---\nb: 2",
            "3:1: a second document ('---') is not supported; keep one document per file",
        ),
        (
            "a: 1\n...\nb: 2",
            "3:1: content after the end-of-document marker '...'; remove it or the marker",
        ),
        (
            "%YAML 1.2\n---\na: 1",
            "1:1: directives ('%YAML', '%TAG') are not supported; remove this line",
        ),
        ("--- a: 1", "1:5: put the document on the line after '---'"),
        (
            "a: 1\nb: 2\na: 3",
            "3:1: duplicate key 'a' (first on line 1); remove one of them",
        ),
        (
            "a: {b: 1, b: 2}",
            "1:11: duplicate key 'b' (first on line 1); remove one of them",
        ),
        (
            "a:\n\tb: 1",
            "2:1: tab character in indentation; indent with spaces",
        ),
        (
            "a:\n  \tb: 1",
            "2:3: tab character in indentation; indent with spaces",
        ),
        (
            "a:\n  b: 1\n c: 2",
            "3:2: bad indentation: the keys of this map are in column 1; align this line with them",
        ),
        (
            "a:\n  - x\n  b: 1",
            "3:3: bad indentation: the keys of this map are in column 1; align this line with them",
        ),
        (
            "- a:\n    - x\n   - y",
            "3:4: bad indentation: the keys of this map are in column 3; align this line with them",
        ),
        (
            "a: 1\n  b: 2",
            "2:3: bad indentation: this 'key: value' is indented more than the keys of its map; align it with them",
        ),
        (
            "  a: 1\nb: 2",
            "2:1: expected the end of the document; check the indentation of this line",
        ),
        (
            "a: \"abc",
            "1:4: unterminated double-quoted string; add the closing '\"'",
        ),
        (
            "a: 'abc\n  def",
            "1:4: unterminated single-quoted string; add the closing \"'\"",
        ),
        (
            "a: \"abc\n",
            "1:4: unterminated quoted string; add the closing quote",
        ),
        (
            "a: [1, 2",
            "1:4: unterminated flow list; add the closing ']'",
        ),
        (
            "a: {x: 1,\n  y: 2",
            "1:4: unterminated flow map; add the closing '}'",
        ),
        (
            "<<: {a: 1}",
            "1:1: merge keys ('<<') are not supported; repeat the keys instead",
        ),
        (
            "a:\n  <<: {a: 1}",
            "2:3: merge keys ('<<') are not supported; repeat the keys instead",
        ),
        (
            "a: b: c",
            "1:5: ':' followed by a space is not allowed in an unquoted value; quote the value",
        ),
        (
            "a: - b",
            "1:4: a list cannot start on the line of its key; put '- item' on the next line, indented",
        ),
        (
            "a: 1\n- b",
            "2:1: expected 'key: value' at this indent, found a list item; indent the list under its key",
        ),
        (
            "a: 1\nb:2",
            "2:1: expected 'key: value'; put a space after ':'",
        ),
        (
            "1: one",
            "1:1: the key 1 is an integer in YAML; quote it (\"1\") to use it as a name",
        ),
        (
            "a: 1\ntrue: x",
            "2:1: the key true is a boolean in YAML; quote it (\"true\") to use it as a name",
        ),
        (
            "a: {~: x}",
            "1:5: the key ~ is null in YAML; quote it (\"~\") to use it as a name",
        ),
        (
            "- 1.5: x",
            "1:3: the key 1.5 is a number in YAML; quote it (\"1.5\") to use it as a name",
        ),
        (
            "99999999999999999999: x",
            "1:1: the key 99999999999999999999 is an integer in YAML; quote it (\"99999999999999999999\") to use it as a name",
        ),
        (
            "a: 1\njust text",
            "2:1: expected 'key: value' at this indent",
        ),
        (
            "a: \"x\"\"y\"",
            "1:7: unexpected text after the value; quote the whole value if it belongs to it",
        ),
        (
            "a: [1] x",
            "1:8: unexpected text after the value; quote the whole value if it belongs to it",
        ),
        (
            "a: \"x\": 1",
            "1:7: unexpected ':' after the value; a nested map goes on the next lines, indented",
        ),
        ("- \"a\":1", "1:6: put a space after ':'"),
        ("a: \"x\"#c", "1:7: a comment needs a space before '#'"),
        ("a: [x,#c\n]", "1:7: a comment needs a space before '#'"),
        (
            "? a\n: b",
            "1:1: explicit keys ('? ') are not supported; write 'key: value'",
        ),
        (": b", "1:1: a key is missing before ':'"),
        (
            "a: @x",
            "1:4: '@' cannot start an unquoted value; quote the value",
        ),
        (
            "a: `x`",
            "1:4: '`' cannot start an unquoted value; quote the value",
        ),
        (
            "a: %x",
            "1:4: '%' cannot start an unquoted value; quote the value",
        ),
        (
            "a: ]",
            "1:4: ']' cannot start an unquoted value; quote the value",
        ),
        (
            "a: [b: 1]",
            "1:6: 'key: value' pairs inside '[ ]' are not supported; wrap the pair in '{ }'",
        ),
        (
            "a: [1,,2]",
            "1:7: empty entry in a flow list; remove the extra ','",
        ),
        (
            "a: {,}",
            "1:5: empty entry in a flow map; remove the extra ','",
        ),
        (
            "a: [1 [2]]",
            "1:7: expected ',' or ']' in the flow list opened at line 1, column 4",
        ),
        (
            "a: {x: 1 y: 2}",
            "1:11: expected ',' or '}' in the flow map opened at line 1, column 4",
        ),
        (
            "a: {[x]: 1}",
            "1:5: a key must be a plain or quoted string, not a flow collection",
        ),
        (
            "[x]: 1",
            "1:1: a key must be a plain or quoted string, not a flow collection",
        ),
        ("\"a\nb\": 1", "1:1: a key must be on one line"),
        (
            "a: [- x]",
            "1:5: a block list item ('- ') cannot appear inside '[ ]' or '{ }'; separate items with ','",
        ),
        (
            "a: [|\n  x]",
            "1:5: block scalars ('|', '>') cannot appear inside '[ ]' or '{ }'; use a quoted string",
        ),
        (
            "a: [\nb]",
            "2:1: bad indentation: the lines inside '[ ]' or '{ }' must be indented more than column 1",
        ),
        (
            "a:\n  b: {\n    c: 1\n  }",
            "4:3: bad indentation: the lines inside '[ ]' or '{ }' must be indented more than column 3",
        ),
        (
            "a: 'x\nb'",
            "2:1: bad indentation: the lines of a quoted string must be indented more than column 1",
        ),
        (
            "a: 'x\n---\n'",
            "2:1: document marker inside a quoted string; indent this line or close the quote",
        ),
        (
            "a: [x,\n---\n]",
            "2:1: document marker inside a flow list; close it with ']' first",
        ),
        (
            "a: \"\\q\"",
            "1:5: unknown escape '\\q' in a double-quoted string; write '\\\\' for a backslash",
        ),
        ("a: \"\\x4\"", "1:5: escape '\\x' needs 2 hex digits"),
        ("a: \"\\u12\"", "1:5: escape '\\u' needs 4 hex digits"),
        (
            "a: \"\\uD800\"",
            "1:5: escape '\\uD800' is not a valid Unicode character",
        ),
        (
            "a: \"\\U00110000\"",
            "1:5: escape '\\U00110000' is not a valid Unicode character",
        ),
        (
            "a: 99999999999999999999",
            "1:4: integer 99999999999999999999 does not fit in 64 bits; quote it to keep it as text",
        ),
        (
            "a: 0x8000000000000000",
            "1:4: integer 0x8000000000000000 does not fit in 64 bits; quote it to keep it as text",
        ),
        (
            "a: |0\n  x",
            "1:5: the indentation indicator must be 1 to 9, not 0",
        ),
        (
            "a: |x\n  y",
            "1:5: expected '-', '+', an indentation digit or a comment after the block scalar indicator; the text starts on the next line",
        ),
        (
            "a: |\n\n    \n  x",
            "3:1: a leading empty line of this block scalar has more spaces than its first text line; remove them",
        ),
        (
            "a: x\u{7}",
            "1:5: character U+0007 is not allowed in YAML text; write it as an escape in double quotes, like \"\\x07\"",
        ),
        (
            "a: \"\u{feff}\u{fffe}\"",
            "1:6: character U+FFFE is not allowed in YAML text; write it as an escape in double quotes, like \"\\uFFFE\"",
        ),
        (
            "a: 1\rb: 2",
            "1:5: carriage return without a line feed; save the file with \\n or \\r\\n line endings",
        ),
    ];

    #[test]
    fn outside_the_subset_is_an_error_saying_what_to_do() {
        for (text, want) in OUTSIDE_THE_SUBSET {
            match parse(text) {
                Ok(node) => panic!("{text:?} parsed as {:?}", plain(&node)),
                Err(e) => assert_eq!(e.to_string(), *want, "{text:?}"),
            }
        }
    }

    #[test]
    fn nesting_is_capped_at_64_levels() {
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse(&ok).is_ok());
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert_eq!(
            parse(&deep).unwrap_err().to_string(),
            "1:65: nesting deeper than 64 levels; flatten the structure"
        );
        let block = |levels: usize| {
            (0..levels)
                .map(|i| format!("{}k{i}:\n", "  ".repeat(i)))
                .collect::<String>()
        };
        assert!(parse(&block(MAX_DEPTH)).is_ok());
        assert_eq!(
            parse(&block(MAX_DEPTH + 1)).unwrap_err().to_string(),
            "65:129: nesting deeper than 64 levels; flatten the structure"
        );
        let dashes = format!("{}x", "- ".repeat(MAX_DEPTH + 1));
        assert!(parse(&dashes).is_err());
        // Far past the cap: an error, not a stack overflow.
        assert!(parse(&"[".repeat(100_000)).is_err());
        assert!(parse(&"{a: ".repeat(100_000)).is_err());
        assert!(parse(&block(5_000)).is_err());
    }

    #[test]
    fn large_inputs_parse_in_linear_time() {
        // Quadratic behaviour would make these take minutes in a debug build.
        let long_line = format!("[{}]", vec!["é"; 200_000].join(", "));
        assert!(
            matches!(parse(&long_line).map(|n| n.value), Ok(Value::List(v)) if v.len() == 200_000)
        );
        let many_keys: String = (0..50_000).map(|i| format!("k{i}: v\n")).collect();
        assert!(parse(&many_keys).is_ok());
        let blank_lines = format!("a:{}\n  b", "\n".repeat(200_000));
        assert!(parse(&blank_lines).is_ok());
    }

    // ---- the corpus and the oracle ----

    fn corpus(dir: &str) -> Vec<(PathBuf, String)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/configs")
            .join(dir);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        files.sort();
        files
            .into_iter()
            .map(|p| {
                let text =
                    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                (p, text)
            })
            .collect()
    }

    #[test]
    fn the_corpus_parses_as_the_oracle_parses_it() {
        let mut files = corpus("valid");
        assert!(files.len() >= 15, "only {} valid configs", files.len());
        files.extend(corpus("yaml"));
        for (path, text) in &files {
            let ours = tree(text);
            let theirs = oracle(text).unwrap_or_else(|e| panic!("{}: oracle: {e}", path.display()));
            assert_eq!(json_of(&ours), json_of(&theirs), "{}", path.display());
            assert_eq!(ours, theirs, "{} (order)", path.display());
        }
    }

    #[test]
    fn every_prefix_of_the_corpus_parses_or_fails_cleanly() {
        let mut files = corpus("valid");
        files.extend(corpus("yaml"));
        for (_, text) in &files {
            for (end, _) in text.char_indices().chain([(text.len(), ' ')]) {
                let _ = parse(&text[..end]);
            }
        }
    }

    // ---- generated trees ----

    fn is_plain_safe(s: &str, flow: bool) -> bool {
        let Some(first) = s.chars().next() else {
            return false;
        };
        let resolves_to_text = matches!(
            Parser {
                src: s,
                pos: 0,
                line: 1,
                col: 1,
                indent: -1,
                depth: 0
            }
            .resolve(s, (1, 1)),
            Ok(Value::Str(_))
        );
        resolves_to_text
            && !"-?:,[]{}#&*!|>'\"%@` \t".contains(first)
            && !s.ends_with([' ', ':'])
            && !s.starts_with("---")
            && !s.starts_with("...")
            && !s.contains(": ")
            && !s.contains(" #")
            && !(flow && s.contains([',', '[', ']', '{', '}', ':', '#']))
            // saphyr refuses a blank followed by an indicator inside a flow plain scalar
            // (`[a -]`), which YAML 1.2 allows; keep such text quoted.
            && !(flow && s.contains([' ', '\t']) && s.contains(['-', '?']))
            && s.chars().all(|c| !c.is_control() && !"\u{85}\u{2028}\u{2029}\u{feff}\u{fffe}\u{ffff}\t".contains(c))
    }

    fn double_quoted(s: &str) -> String {
        let mut out = String::from("\"");
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x20 || ('\u{7f}'..='\u{9f}').contains(&c) => {
                    out.push_str(&format!("\\x{:02x}", c as u32))
                }
                '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}' => {
                    out.push_str(&format!("\\u{:04x}", c as u32))
                }
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    fn scalar(tree: &Plain, flow: bool) -> String {
        match tree {
            Plain::Null => "null".into(),
            Plain::Bool(b) => b.to_string(),
            Plain::Int(i) => i.to_string(),
            Plain::Float(f) => format_float(*f),
            Plain::Str(s) if is_plain_safe(s, flow) => s.clone(),
            Plain::Str(s)
                if s.len() % 2 == 0
                    && s.chars().all(|c| {
                        !c.is_control()
                            && c != '\u{85}'
                            && c != '\u{2028}'
                            && c != '\u{2029}'
                            && c != '\u{feff}'
                    })
                    && !s.starts_with(' ')
                    && !s.ends_with(' ') =>
            {
                format!("'{}'", s.replace('\'', "''"))
            }
            Plain::Str(s) => double_quoted(s),
            _ => flow_yaml(tree),
        }
    }

    fn key_text(k: &str) -> String {
        if is_plain_safe(k, true) && k != "<<" {
            k.to_string()
        } else {
            double_quoted(k)
        }
    }

    fn flow_yaml(tree: &Plain) -> String {
        match tree {
            Plain::List(items) => format!(
                "[{}]",
                items.iter().map(flow_yaml).collect::<Vec<_>>().join(", ")
            ),
            Plain::Map(entries) => format!(
                "{{{}}}",
                entries
                    .iter()
                    .map(|(k, v)| format!("{}: {}", key_text(k), flow_yaml(v)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            scalar_tree => scalar(scalar_tree, true),
        }
    }

    /// A string as a `|` block scalar with an explicit indentation indicator, for
    /// strings with line breaks and nothing that needs escaping.
    fn literal(s: &str, n: usize) -> Option<String> {
        if !s.contains('\n')
            || s.chars().any(|c| {
                (c.is_control() && c != '\n' && c != '\t')
                    || "\u{85}\u{2028}\u{2029}\u{feff}".contains(c)
            })
        {
            return None;
        }
        let body = s.trim_end_matches('\n');
        let trailing = s.len() - body.len();
        let chomp = match (body.is_empty(), trailing) {
            (true, _) => "+",
            (false, 0) => "-",
            (false, 1) => "",
            _ => "+",
        };
        let mut out = format!("|2{chomp}\n");
        if !body.is_empty() {
            for line in body.split('\n') {
                if !line.is_empty() {
                    out.push_str(&" ".repeat(n + 2));
                    out.push_str(line);
                }
                out.push('\n');
            }
        }
        let extra = if body.is_empty() {
            trailing
        } else {
            trailing.saturating_sub(1)
        };
        out.push_str(&"\n".repeat(extra));
        Some(out)
    }

    /// `tree` as block YAML: the value part after `key:` or `-` of a collection at
    /// indent `n`, ending with a line break.
    fn block_value(tree: &Plain, n: usize, same_indent_list: bool) -> String {
        match tree {
            Plain::Map(entries) if !entries.is_empty() => {
                format!("\n{}", block_map(entries, n + 2))
            }
            Plain::List(items) if !items.is_empty() => {
                let at = if same_indent_list { n } else { n + 2 };
                format!("\n{}", block_list(items, at))
            }
            Plain::Str(s) => match literal(s, n) {
                Some(block) => format!(" {block}"),
                None => format!(" {}\n", scalar(tree, false)),
            },
            _ => format!(" {}\n", scalar(tree, false)),
        }
    }

    fn block_map(entries: &[(String, Plain)], n: usize) -> String {
        entries
            .iter()
            .enumerate()
            .map(|(i, (k, v))| {
                format!(
                    "{}{}:{}",
                    " ".repeat(n),
                    key_text(k),
                    block_value(v, n, i % 2 == 0)
                )
            })
            .collect()
    }

    fn block_list(items: &[Plain], n: usize) -> String {
        let mut out = String::new();
        for item in items {
            out.push_str(&" ".repeat(n));
            out.push('-');
            match item {
                // Compact forms: the nested collection starts on the dash's line.
                Plain::Map(entries) if !entries.is_empty() => {
                    out.push(' ');
                    out.push_str(block_map(entries, n + 2).trim_start_matches(' '));
                }
                Plain::List(nested) if !nested.is_empty() => {
                    out.push(' ');
                    out.push_str(block_list(nested, n + 2).trim_start_matches(' '));
                }
                _ => out.push_str(&block_value(item, n, false)),
            }
        }
        out
    }

    fn block_yaml(tree: &Plain) -> String {
        match tree {
            Plain::Map(entries) if !entries.is_empty() => block_map(entries, 0),
            Plain::List(items) if !items.is_empty() => block_list(items, 0),
            other => format!("{}\n", scalar(other, false)),
        }
    }

    fn text_strategy() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z][a-z0-9_]{0,8}",
            "\\PC{0,10}",
            "[ a-z\\t\\n:#'\"\\\\\\-?,\\[\\]{}|>&*!%@`~.]{0,10}",
            "[\\x00-\\x1f\\x7f\\u{85}\\u{a0}\\u{2028}\\u{feff}a ]{0,4}",
            prop::sample::select(vec![
                "true",
                "False",
                "null",
                "~",
                "",
                "1",
                "-2",
                "0x1F",
                "0o7",
                "1.5",
                "1e3",
                ".inf",
                ".nan",
                "yes",
                "no",
                "on",
                "- a",
                "a: b",
                "#x",
                "a #b",
                "'q'",
                "\"q\"",
                "a\n",
                "\n",
                "\n\n",
                " a\nb ",
                "a\n\nb\n\n",
                "  lead",
                "trail  ",
                "---",
                "...",
                "é",
                "😀",
                "\u{2028}",
                "a\tb",
            ])
            .prop_map(String::from),
        ]
    }

    fn tree_strategy() -> impl Strategy<Value = Plain> {
        let leaf = prop_oneof![
            Just(Plain::Null),
            any::<bool>().prop_map(Plain::Bool),
            any::<i64>().prop_map(Plain::Int),
            prop_oneof![
                any::<f64>().prop_filter("finite", |f| f.is_finite()),
                Just(f64::INFINITY),
                Just(f64::NEG_INFINITY),
                Just(0.5),
                Just(-1e-7),
            ]
            .prop_map(Plain::Float),
            text_strategy().prop_map(Plain::Str),
        ];
        leaf.prop_recursive(5, 64, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Plain::List),
                prop::collection::vec((text_strategy(), inner), 0..5).prop_map(|entries| {
                    let mut seen = std::collections::HashSet::new();
                    Plain::Map(
                        entries
                            .into_iter()
                            .filter(|(k, _)| seen.insert(k.clone()))
                            .collect(),
                    )
                }),
            ]
        })
    }

    /// Lines of YAML-looking fragments at random indents: text that is often valid.
    fn yamlish_lines() -> impl Strategy<Value = String> {
        let fragment = prop::sample::select(vec![
            "a:",
            "b: 1",
            "c: x y",
            "- ",
            "- d",
            "- e: 2",
            "- - f",
            "|",
            "|-",
            ">",
            ">+",
            "|2",
            "key: |",
            "key: >-",
            "text",
            "more text",
            "'single",
            "quote'",
            "\"dq\\n",
            "end\"",
            "[a,",
            "b]",
            "[x, y]",
            "{k: v}",
            "{k: v,",
            "w: 1}",
            "# comment",
            "x # c",
            "...",
            "---",
            "\"k\": v",
            "'k': v",
            "",
            " ",
            "~",
            "null",
            "true",
            "1.5",
            "0x1F",
            "p: a: b",
            "s: 'a",
            "  b'",
            "u: \"\\u00e9\"",
            "- |",
            "- >-",
            "? q",
            "&a x",
            "l: [",
            "]",
            "}",
        ]);
        prop::collection::vec((0usize..7, fragment), 1..8).prop_map(|lines| {
            lines
                .into_iter()
                .map(|(indent, text)| format!("{}{text}\n", " ".repeat(indent)))
                .collect()
        })
    }

    proptest! {
        // 512 cases by default; PROPTEST_CASES=100000 for a long soak.
        #![proptest_config(ProptestConfig::with_cases(
            std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(512)
        ))]

        #[test]
        fn generated_trees_survive_block_and_flow_yaml(tree in tree_strategy()) {
            for text in [block_yaml(&tree), flow_yaml(&tree)] {
                let ours = parse(&text).map(|n| plain(&n));
                prop_assert_eq!(ours.as_ref(), Ok(&tree), "our parse of {:?}", text);
                let theirs = oracle(&text);
                prop_assert_eq!(theirs.as_ref(), Ok(&tree), "oracle parse of {:?}", text);
            }
        }

        /// Random text never panics, and whatever both parsers accept, they read alike.
        #[test]
        fn arbitrary_text_is_refused_or_read_as_the_oracle_reads_it(
            text in prop_oneof![
                "\\PC{0,40}",
                "[ \\n\\t\\-:#\\[\\]{}'\"|>a1.~,?]{0,60}",
                yamlish_lines(),
            ]
        ) {
            if let (Ok(ours), Ok(theirs)) = (parse(&text), oracle(&text)) {
                prop_assert_eq!(plain(&ours), theirs, "{:?}", text);
            }
        }
    }
}
