//! Glob patterns for `--watch` and `--watch-ignore`: pattern text to a compiled
//! `Glob`, or a `GlobError` saying where the pattern is wrong and how to fix it;
//! then whether a changed path (relative to the watched root, `/`-separated, no
//! leading `./`) matches. Pure: walking the tree and inotify are `daemon/watch.rs`.
//!
//! Syntax. `*` matches any run of characters inside one path segment, `?` exactly
//! one character (a Unicode scalar, so `é` counts as one); neither matches `/`.
//! Both match a leading dot: `*` matches `.env`, unlike a shell. `[abc]`, `[a-z]`,
//! `[!a-z]` and `[^a-z]` match one character of (or not of) the set, never `/`;
//! a `]` right after `[`, `[!` or `[^` is a member, and so is a `-` first or last.
//! `{a,b,c}` matches any of the alternatives, which may hold wildcards, `/` and
//! nested braces (at most 8 deep; at most 256 alternatives and 16384 characters
//! in all once expanded); `{}` is one empty alternative and a `,` outside braces
//! is an ordinary character. A backslash makes the next character literal, inside
//! `[...]` too. Matching is case-sensitive. Errors name the byte offset and say
//! what to write instead (unclosed `[` or `{`, stray `}`, backwards range `[z-a]`,
//! trailing `\`, NUL, empty, too long, nested too deep, expands too far).
//!
//! `**` forming a whole segment spans segments: `src/**/*.rs` matches `src/a.rs`
//! and `src/x/y/a.rs`, `**/*.py` matches `a.py` and `d/a.py`, and `dir/**` matches
//! `dir` itself and everything under it (so an ignore pattern can skip the whole
//! directory). Two or more stars that are not a whole segment (`a**b`, `**.rs`)
//! are simply `*`.
//!
//! Anchoring, the gitignore way. A pattern without `/` (`*.rs`, `Makefile`) is
//! matched against the file name, the last segment, at any depth. A pattern with
//! a `/` is matched against the whole path from the root: `src/*.rs` matches
//! `src/a.rs` but not `x/src/a.rs` (write `**/src/*.rs` for that). A leading `/`
//! only anchors (`/Makefile` is the top-level one); a trailing `/` means the
//! directory and everything under it (`build/` is `build/**`). An escaped `\/` is
//! a plain separator without those two conveniences. With braces, each expanded
//! alternative is anchored on its own: `{*.rs,docs/*.md}` is `*.rs` or `docs/*.md`.
//!
//! Matching runs a state-set simulation over each expanded alternative, never
//! backtracking: O(tokens × path) per alternative, so at most O(16384 × path)
//! whatever the pattern's shape (`*a*a*a*a*b`, many `**`).

use std::fmt;

/// Patterns longer than this many bytes are refused.
pub const MAX_LEN: usize = 4096;
/// A pattern may expand to at most this many alternatives through its braces.
pub const MAX_ALTERNATIVES: usize = 256;
/// Braces may nest at most this deep; it also bounds the parser's recursion.
pub const MAX_NESTING: usize = 8;
/// The alternatives may hold at most this many pattern characters in all, which
/// bounds the memory and the matching time (O(this × path) at worst).
pub const MAX_EXPANDED: usize = 4 * MAX_LEN;

/// A compiled glob pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: String,
    /// The pattern with its braces expanded; the path matches if any matches.
    alternatives: Vec<Alternative>,
    /// The `[...]` sets, shared by all alternatives and named by index.
    classes: Vec<Class>,
}

/// Why a pattern is invalid: the byte offset in the pattern and what is wrong,
/// worded for a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobError {
    pub pos: usize,
    pub message: String,
}

impl fmt::Display for GlobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at byte {})", self.message, self.pos)
    }
}

impl std::error::Error for GlobError {}

impl Glob {
    pub fn new(pattern: &str) -> Result<Glob, GlobError> {
        if pattern.len() > MAX_LEN {
            return Err(error(
                MAX_LEN,
                format!("pattern is longer than {MAX_LEN} bytes; split it into several patterns"),
            ));
        }
        if pattern.is_empty() {
            return Err(error(
                0,
                "empty pattern; write '**' to match every file".into(),
            ));
        }
        if let Some(pos) = pattern.find('\0') {
            return Err(error(pos, "NUL byte in pattern; remove it".into()));
        }
        let mut parser = Parser {
            src: pattern,
            pos: 0,
            classes: Vec::new(),
        };
        let (items, _) = parser.sequence(0)?;
        let alternatives = expand(&items).into_iter().map(compile).collect();
        Ok(Glob {
            pattern: pattern.to_string(),
            alternatives,
            classes: parser.classes,
        })
    }

    /// Whether `path` (relative, '/'-separated) matches the whole pattern.
    pub fn matches(&self, path: &str) -> bool {
        let name = path.rsplit('/').next().unwrap_or(path);
        self.alternatives.iter().any(|alt| {
            let text = if alt.anchored { path } else { name };
            run(&alt.tokens, &self.classes, text)
        })
    }

    /// The pattern as given.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }
}

/// Whether `path` is ignored by default: any segment equal to `.git`, `node_modules`,
/// `target`, `__pycache__`, `.DS_Store`, or a last segment ending in `.pyc`.
pub fn ignored_by_default(path: &str) -> bool {
    const NAMES: [&str; 5] = [".git", "node_modules", "target", "__pycache__", ".DS_Store"];
    path.split('/').any(|segment| NAMES.contains(&segment))
        || path
            .rsplit('/')
            .next()
            .is_some_and(|name| name.ends_with(".pyc"))
}

fn error(pos: usize, message: String) -> GlobError {
    GlobError { pos, message }
}

/// One expanded alternative, ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Alternative {
    tokens: Vec<Token>,
    /// Matched against the whole path; otherwise against its last segment.
    anchored: bool,
}

/// One step of a compiled alternative.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Char(char),
    /// `/`.
    Sep,
    /// `?`: one character but `/`.
    One,
    /// `[...]`: an index into `Glob::classes`.
    Class(usize),
    /// `*`: any run without `/`.
    Star,
    /// `**/`: zero or more whole segments, each with its `/`.
    Dirs,
    /// `/**` at the end: nothing, or `/` and anything after it.
    Under,
    /// `**` that is the whole pattern (or follows a `**/`): anything at all.
    Rest,
}

/// A `[...]` set; it never matches `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Class {
    negated: bool,
    /// Inclusive ranges; a single member is `(c, c)`.
    ranges: Vec<(char, char)>,
}

impl Class {
    fn matches(&self, c: char) -> bool {
        c != '/' && self.ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != self.negated
    }
}

/// A piece of the pattern that is not a brace group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Atom {
    Char(char),
    /// `/`; `plain` is false for an escaped `\/`, which skips the leading and
    /// trailing `/` conveniences.
    Sep {
        plain: bool,
    },
    Star,
    One,
    Class(usize),
}

/// The parsed pattern, before brace expansion.
#[derive(Debug)]
enum Item {
    Atom(Atom),
    /// `{...}`: one sequence per alternative.
    Braces(Vec<Vec<Item>>),
}

struct Parser<'a> {
    src: &'a str,
    /// Byte offset of the next character.
    pos: usize,
    classes: Vec<Class>,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    /// The character after a backslash at `at` (already consumed).
    fn escaped(&mut self, at: usize) -> Result<char, GlobError> {
        self.bump().ok_or_else(|| {
            error(
                at,
                r"'\' at the end escapes nothing; remove it or write '\\' for a backslash".into(),
            )
        })
    }

    /// A sequence up to the end, or (inside braces, `depth > 0`) up to the `,` or
    /// `}` that ends it. Returns the items and the size of their expansion.
    fn sequence(&mut self, depth: usize) -> Result<(Vec<Item>, Size), GlobError> {
        let mut items = Vec::new();
        let mut size = Size { count: 1, len: 0 };
        while let Some(c) = self.peek() {
            let at = self.pos;
            if depth > 0 && (c == ',' || c == '}') {
                break;
            }
            self.bump();
            let atom = match c {
                '}' => {
                    return Err(error(
                        at,
                        r"unmatched '}'; remove it or escape it as '\}'".into(),
                    ));
                }
                '{' => {
                    let (branches, inner) = self.braces(at, depth + 1)?;
                    // Every alternative so far, followed by every one of the group.
                    size = Size {
                        count: size.count * inner.count,
                        len: size.len * inner.count + inner.len * size.count,
                    };
                    size.check(at)?;
                    items.push(Item::Braces(branches));
                    continue;
                }
                '[' => Atom::Class(self.class(at)?),
                '\\' => match self.escaped(at)? {
                    '/' => Atom::Sep { plain: false },
                    c => Atom::Char(c),
                },
                '*' => Atom::Star,
                '?' => Atom::One,
                '/' => Atom::Sep { plain: true },
                c => Atom::Char(c),
            };
            items.push(Item::Atom(atom));
            size.len += size.count;
            size.check(at)?;
        }
        Ok((items, size))
    }

    /// The alternatives of a brace group whose `{` (at `open`) is consumed.
    fn braces(&mut self, open: usize, depth: usize) -> Result<(Vec<Vec<Item>>, Size), GlobError> {
        if depth > MAX_NESTING {
            return Err(error(
                open,
                format!("'{{' nested more than {MAX_NESTING} deep; flatten the alternatives"),
            ));
        }
        let mut branches = Vec::new();
        let mut size = Size { count: 0, len: 0 };
        loop {
            let (items, inner) = self.sequence(depth)?;
            size = Size {
                count: size.count + inner.count,
                len: size.len + inner.len,
            };
            size.check(open)?;
            branches.push(items);
            match self.bump() {
                Some(',') => {}
                Some('}') => return Ok((branches, size)),
                _ => {
                    return Err(error(
                        open,
                        r"unclosed '{'; close it with '}' or escape it as '\{'".into(),
                    ));
                }
            }
        }
    }

    /// A `[...]` set whose `[` (at `open`) is consumed; returns its index.
    fn class(&mut self, open: usize) -> Result<usize, GlobError> {
        let unclosed = || {
            error(
                open,
                r"unclosed '['; close it with ']' or escape it as '\['".into(),
            )
        };
        let negated = matches!(self.peek(), Some('!' | '^'));
        if negated {
            self.bump();
        }
        let mut ranges = Vec::new();
        loop {
            let at = self.pos;
            let lo = match self.bump().ok_or_else(unclosed)? {
                ']' if !ranges.is_empty() => break,
                '\\' => self.escaped(at)?,
                c => c,
            };
            // A `-` between two members makes a range; before `]` it is a member.
            let mut rest = self.src[self.pos..].chars();
            if rest.next() == Some('-') && !matches!(rest.next(), None | Some(']')) {
                self.bump();
                let hi_at = self.pos;
                let hi = match self.bump().ok_or_else(unclosed)? {
                    '\\' => self.escaped(hi_at)?,
                    c => c,
                };
                if hi < lo {
                    return Err(error(
                        at,
                        format!("range '{lo}-{hi}' is backwards; write it as '{hi}-{lo}'"),
                    ));
                }
                ranges.push((lo, hi));
            } else {
                ranges.push((lo, lo));
            }
        }
        self.classes.push(Class { negated, ranges });
        Ok(self.classes.len() - 1)
    }
}

/// How big the brace expansion of part of a pattern is.
#[derive(Debug, Clone, Copy)]
struct Size {
    /// Alternatives.
    count: usize,
    /// Pattern characters over all alternatives.
    len: usize,
}

impl Size {
    /// Refuse a pattern that has grown too big at `at`. Both fields stay small
    /// (checked after every step), so the products that make them cannot overflow.
    fn check(self, at: usize) -> Result<(), GlobError> {
        if self.count > MAX_ALTERNATIVES {
            return Err(error(
                at,
                format!(
                    "'{{' expands the pattern to more than {MAX_ALTERNATIVES} alternatives; \
                     split it into several patterns"
                ),
            ));
        }
        if self.len > MAX_EXPANDED {
            return Err(error(
                at,
                format!(
                    "braces expand the pattern to more than {MAX_EXPANDED} characters in all; \
                     split it into several patterns"
                ),
            ));
        }
        Ok(())
    }
}

/// Every alternative of `items`, braces multiplied out. The parser has bounded
/// their number and size (`Size::check`).
fn expand(items: &[Item]) -> Vec<Vec<Atom>> {
    let mut done: Vec<Vec<Atom>> = vec![Vec::new()];
    for item in items {
        match item {
            Item::Atom(atom) => done.iter_mut().for_each(|alt| alt.push(*atom)),
            Item::Braces(branches) => {
                let tails: Vec<Vec<Atom>> = branches.iter().flat_map(|b| expand(b)).collect();
                done = done
                    .iter()
                    .flat_map(|head| {
                        tails
                            .iter()
                            .map(move |tail| [head.as_slice(), tail].concat())
                    })
                    .collect();
            }
        }
    }
    done
}

/// Apply the anchoring rules and turn star runs into `*` or `**` tokens.
fn compile(mut atoms: Vec<Atom>) -> Alternative {
    let is_sep = |a: &Atom| matches!(a, Atom::Sep { .. });
    if atoms.last() == Some(&Atom::Sep { plain: true }) {
        atoms.extend([Atom::Star, Atom::Star]);
    }
    let anchored = atoms.iter().any(is_sep);
    if atoms.first() == Some(&Atom::Sep { plain: true }) {
        atoms.remove(0);
    }
    let mut tokens = Vec::with_capacity(atoms.len());
    let mut i = 0;
    while i < atoms.len() {
        let atom = atoms[i];
        i += 1;
        let token = match atom {
            Atom::Char(c) => Token::Char(c),
            Atom::Sep { .. } => Token::Sep,
            Atom::One => Token::One,
            Atom::Class(k) => Token::Class(k),
            Atom::Star => {
                let start = i - 1;
                while atoms.get(i) == Some(&Atom::Star) {
                    i += 1;
                }
                let whole_segment = i - start >= 2
                    && (start == 0 || is_sep(&atoms[start - 1]))
                    && atoms.get(i).is_none_or(is_sep);
                if !whole_segment {
                    Token::Star
                } else if i < atoms.len() {
                    i += 1; // the `/` after `**` is part of `Dirs`
                    Token::Dirs
                } else if tokens.last() == Some(&Token::Sep) {
                    tokens.pop();
                    Token::Under
                } else {
                    Token::Rest
                }
            }
        };
        tokens.push(token);
    }
    Alternative { tokens, anchored }
}

/// Whether `text` matches all of `tokens`. A state-set simulation: state `i`
/// means "the first `i` tokens matched the text so far"; `inside[i]` means "in
/// the middle of the segments a `Dirs` or `Under` at `i` is consuming". Each
/// character costs O(tokens), so a match is O(tokens × text), never exponential.
fn run(tokens: &[Token], classes: &[Class], text: &str) -> bool {
    let n = tokens.len() + 1;
    let (mut at, mut inside) = (vec![false; n], vec![false; n]);
    let (mut next_at, mut next_inside) = (vec![false; n], vec![false; n]);
    at[0] = true;
    close(tokens, &mut at, &inside);
    for c in text.chars() {
        next_at.fill(false);
        next_inside.fill(false);
        let slash = c == '/';
        let mut alive = false;
        for (i, token) in tokens.iter().enumerate() {
            if inside[i] {
                alive = true;
                match token {
                    // The segment ends at `/`; the next may start or `**/` may end.
                    Token::Dirs if slash => next_at[i] = true,
                    _ => next_inside[i] = true,
                }
            }
            if !at[i] {
                continue;
            }
            let (state, target) = match *token {
                Token::Char(x) if c == x => (&mut next_at, i + 1),
                Token::Sep if slash => (&mut next_at, i + 1),
                Token::One if !slash => (&mut next_at, i + 1),
                Token::Class(k) if classes.get(k).is_some_and(|class| class.matches(c)) => {
                    (&mut next_at, i + 1)
                }
                Token::Star if !slash => (&mut next_at, i),
                Token::Rest => (&mut next_at, i),
                Token::Dirs if slash => (&mut next_at, i),
                Token::Dirs => (&mut next_inside, i),
                Token::Under if slash => (&mut next_inside, i),
                _ => continue,
            };
            state[target] = true;
            alive = true;
        }
        if !alive {
            return false;
        }
        close(tokens, &mut next_at, &next_inside);
        std::mem::swap(&mut at, &mut next_at);
        std::mem::swap(&mut inside, &mut next_inside);
    }
    at[tokens.len()]
}

/// Follow the moves that consume nothing: past a `*`, `**/`, `/**` or `**` that
/// matches the empty string, and out of an `Under` that has taken `/...`.
/// Every such move goes one token forward, so one pass in order is enough.
fn close(tokens: &[Token], at: &mut [bool], inside: &[bool]) {
    for (i, token) in tokens.iter().enumerate() {
        let skip = match token {
            Token::Star | Token::Dirs | Token::Rest => at[i],
            Token::Under => at[i] || inside[i],
            _ => false,
        };
        if skip {
            at[i + 1] = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check(table: &[(&str, &str, bool)]) {
        let mut failures = Vec::new();
        for &(pattern, path, want) in table {
            match Glob::new(pattern) {
                Ok(glob) if glob.matches(path) == want => {}
                Ok(_) => failures.push(format!("{pattern:?} vs {path:?}: expected {want}")),
                Err(e) => failures.push(format!("{pattern:?}: unexpected error {e}")),
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn literals_and_anchoring() {
        check(&[
            ("Makefile", "Makefile", true),
            ("Makefile", "sub/dir/Makefile", true),
            ("Makefile", "Makefile.old", false),
            ("Makefile", "Makefile/x", false),
            ("src/main.rs", "src/main.rs", true),
            ("src/main.rs", "x/src/main.rs", false),
            ("src/main.rs", "src/main.rsx", false),
            ("/Makefile", "Makefile", true),
            ("/Makefile", "sub/Makefile", false),
            ("/src/a.rs", "src/a.rs", true),
            ("build/", "build", true),
            ("build/", "build/out.o", true),
            ("build/", "build/deep/out.o", true),
            ("build/", "x/build/out.o", false),
            ("build/", "builder/x", false),
            ("/", "anything/at/all", true),
            ("a,b", "a,b", true),
            ("a,b", "a", false),
            ("é.txt", "dir/é.txt", true),
        ]);
    }

    #[test]
    fn star_stays_in_one_segment() {
        check(&[
            ("*.rs", "main.rs", true),
            ("*.rs", "src/deep/main.rs", true),
            ("*.rs", "main.rs.bak", false),
            ("*.rs", ".rs", true),
            ("*", ".env", true), // dotfiles are not special
            ("*.env", ".env", true),
            ("*", "a/b", true), // no '/': the last segment
            ("src/*", "src/a", true),
            ("src/*", "src/a/b", false),
            ("src/*.rs", "src/a.rs", true),
            ("src/*.rs", "src/x/a.rs", false),
            ("*/*.rs", "src/a.rs", true),
            ("*/*.rs", "a.rs", false),
            ("a*b", "ab", true),
            ("a*b", "axxb", true),
            ("a*b", "ax/b", false), // no '/': only the name "b" is matched
            ("x/a*b", "x/ax/b", false),
            ("*a*a*b", "aaaab", true),
            ("*a*a*b", "aaaa", false),
            ("a**b", "axxb", true), // not a whole segment: plain `*`
            ("x/a**b", "x/a/b", false),
            ("x/**.rs", "x/a.rs", true),
            ("x/**.rs", "x/y/a.rs", false),
        ]);
    }

    #[test]
    fn question_mark_is_one_character() {
        check(&[
            ("?.rs", "a.rs", true),
            ("?.rs", "ab.rs", false),
            ("?.rs", ".rs", false),
            ("?", "é", true), // one Unicode scalar, two bytes
            ("??", "é", false),
            ("?", "日", true),
            ("a?b", "a/b", false),
            ("x/a?b", "x/a/b", false),
            ("??", ".x", true),
        ]);
    }

    #[test]
    fn globstar_spans_segments() {
        check(&[
            ("src/**/*.rs", "src/a.rs", true),
            ("src/**/*.rs", "src/x/a.rs", true),
            ("src/**/*.rs", "src/x/y/a.rs", true),
            ("src/**/*.rs", "a.rs", false),
            ("src/**/*.rs", "lib/src/a.rs", false),
            ("src/**/*.rs", "src/a.py", false),
            ("**/*.py", "a.py", true),
            ("**/*.py", "d/a.py", true),
            ("**/*.py", "d/e/f/a.py", true),
            ("**/*.py", "d/a.pyc", false),
            ("**", "a", true),
            ("**", "a/b/c", true),
            ("**/", "a/b/c", true),
            ("dir/**", "dir/a", true),
            ("dir/**", "dir/a/b/c", true),
            ("dir/**", "dir", true),
            ("dir/**", "dirx/a", false),
            ("dir/**", "x/dir/a", false),
            ("a/**/b", "a/b", true),
            ("a/**/b", "a/x/b", true),
            ("a/**/b", "a/x/y/b", true),
            ("a/**/b", "a/xb", false),
            ("a/**/b", "ab", false),
            ("a/**/b/**/c", "a/b/c", true),
            ("a/**/b/**/c", "a/1/b/2/3/c", true),
            ("a/**/b/**/c", "a/1/c", false),
            ("**/**/x", "x", true),
            ("**/**/x", "a/b/x", true),
            ("**/**", "a/b", true),
            ("***/x", "a/b/x", true),
            ("**/node_modules/**", "node_modules/a/b", true),
            ("**/node_modules/**", "web/node_modules/a", true),
            ("**/node_modules/**", "web/node_modules", true),
            ("**/.*", "a/.hidden", true),
            ("**/.*", "a/visible", false),
        ]);
    }

    #[test]
    fn classes() {
        check(&[
            ("[abc].rs", "b.rs", true),
            ("[abc].rs", "d.rs", false),
            ("[a-z]", "q", true),
            ("[a-z]", "Q", false),
            ("[a-cx-z]", "y", true),
            ("[a-cx-z]", "m", false),
            ("[!a-z]", "Q", true),
            ("[!a-z]", "q", false),
            ("[^a-z]", "Q", true),
            ("[^a-z]", "q", false),
            ("x/a[!b]c", "x/a/c", false), // negated sets never match '/'
            ("x/a[^b]c", "x/a/c", false),
            ("x/a[/]c", "x/a/c", false),
            ("[]]", "]", true),
            ("[]a]", "a", true),
            ("[!]]", "a", true),
            ("[!]]", "]", false),
            ("[-a]", "-", true),
            ("[a-]", "-", true),
            ("[a-]", "b", false),
            (r"[\]]", "]", true),
            (r"[\-a]", "-", true),
            (r"[a\-c]", "b", false),
            ("[é-ê]", "ê", true),
            ("[é-ê]", "e", false),
            ("[*?{]", "*", true),
            ("[*?{]", "a", false),
            ("[a,b]", ",", true),
            ("[!.]*", ".env", false),
        ]);
    }

    #[test]
    fn braces() {
        check(&[
            ("*.{rs,toml}", "a.rs", true),
            ("*.{rs,toml}", "Cargo.toml", true),
            ("*.{rs,toml}", "a.py", false),
            ("{a,b,c}", "b", true),
            ("{a,b,c}", "d", false),
            ("{src,lib}/*.rs", "lib/a.rs", true),
            ("{src,lib}/*.rs", "x/lib/a.rs", false),
            ("{*.rs,docs/*.md}", "deep/a.rs", true), // each alternative anchored on its own
            ("{*.rs,docs/*.md}", "docs/a.md", true),
            ("{*.rs,docs/*.md}", "x/docs/a.md", false),
            ("{src/**,tests}/*.rs", "src/a/b.rs", true),
            ("{src/**,tests}/*.rs", "tests/b.rs", true),
            ("{src/**,tests}/*.rs", "tests/a/b.rs", false),
            ("a/{**,x}/b", "a/1/2/b", true),
            ("a/{**,x}/b", "a/b", true),
            ("x{**,y}", "xz", true), // `x**`: not a whole segment
            ("d/x{**,y}", "d/x/z", false),
            ("{a,{b,{c,d}}}", "d", true),
            ("{a,{b,{c,d}}}", "e", false),
            ("{,.bak}", ".bak", true),
            ("main{,.bak}", "main", true),
            ("main{}", "main", true),
            ("{[ab],?x}", "b", true),
            ("{[ab],?x}", "zx", true),
            ("{a/,b}", "a/x", true),
            ("{/a,b}", "a", true),
            ("{/a,b}", "z/a", false),
            ("{/a,b}", "z/b", true),
        ]);
    }

    #[test]
    fn escapes() {
        check(&[
            (r"\*", "*", true),
            (r"\*", "a", false),
            (r"\?", "?", true),
            (r"\?", "a", false),
            (r"\[a]", "[a]", true),
            (r"\{a,b\}", "{a,b}", true),
            (r"a\\b", r"a\b", true),
            (r"\a", "a", true),
            (r"\*\*/x", "**/x", true),
            (r"\*\*/x", "a/x", false),
            (r"*\*", "a*", true),
            (r"x/\**", "x/*a", true),
            (r"x/\**", "x/a", false),
            (r"a\/b", "a/b", true), // a separator all the same
            (r"a\/b", "x/a/b", false),
            (r"\/a", "a", false), // no leading-`/` convenience: "/a" only
            (r"\/a", "/a", true),
            (r"a\/", "a/", true), // nor the trailing one
            (r"a\/", "a/x", false),
        ]);
    }

    #[test]
    fn empty_segments() {
        check(&[
            ("a//b", "a//b", true),
            ("a//b", "a/b", false),
            ("a/*/b", "a//b", true),
            ("a/?/b", "a//b", false),
            ("a/**/b", "a//b", true),
            ("**/x", "/x", true),
            ("*", "a/", true), // the last segment is empty
            ("?", "a/", false),
        ]);
    }

    /// Patterns refused, where (a byte offset) and why.
    const INVALID: &[(&str, usize, &str)] = &[
        ("", 0, "empty pattern; write '**' to match every file"),
        ("a\0b", 1, "NUL byte in pattern; remove it"),
        (
            r"a\",
            1,
            r"'\' at the end escapes nothing; remove it or write '\\' for a backslash",
        ),
        (
            r"[a\",
            2,
            r"'\' at the end escapes nothing; remove it or write '\\' for a backslash",
        ),
        (
            "src[ab",
            3,
            r"unclosed '['; close it with ']' or escape it as '\['",
        ),
        (
            "[]",
            0,
            r"unclosed '['; close it with ']' or escape it as '\['",
        ),
        (
            "[!]",
            0,
            r"unclosed '['; close it with ']' or escape it as '\['",
        ),
        (
            "x[a-",
            1,
            r"unclosed '['; close it with ']' or escape it as '\['",
        ),
        (
            "é[",
            2,
            r"unclosed '['; close it with ']' or escape it as '\['",
        ),
        ("[z-a]", 1, "range 'z-a' is backwards; write it as 'a-z'"),
        (
            "*.{rs,py",
            2,
            r"unclosed '{'; close it with '}' or escape it as '\{'",
        ),
        (
            "{a,{b}",
            0,
            r"unclosed '{'; close it with '}' or escape it as '\{'",
        ),
        (
            "{{b",
            1,
            r"unclosed '{'; close it with '}' or escape it as '\{'",
        ),
        ("a}", 1, r"unmatched '}'; remove it or escape it as '\}'"),
        (
            r"\{a,b}",
            5,
            r"unmatched '}'; remove it or escape it as '\}'",
        ),
        ("{a}}", 3, r"unmatched '}'; remove it or escape it as '\}'"),
    ];

    #[test]
    fn invalid_patterns_say_where_and_what_to_do() {
        let long = "a".repeat(MAX_LEN + 1);
        let nested = "{".repeat(MAX_NESTING + 1);
        let many_groups = "{a,b}".repeat(9);
        let wide = format!("{{{}}}", vec!["a"; MAX_ALTERNATIVES + 1].join(","));
        // 256 alternatives of 8 + 56 characters are 16384 in all; one more is too many.
        let bulky = "{a,b}".repeat(8) + &"x".repeat(57);
        let limits: &[(&str, usize, &str)] = &[
            (
                &long,
                4096,
                "pattern is longer than 4096 bytes; split it into several patterns",
            ),
            (
                &nested,
                MAX_NESTING,
                "'{' nested more than 8 deep; flatten the alternatives",
            ),
            (
                &many_groups,
                40,
                "'{' expands the pattern to more than 256 alternatives; split it into several patterns",
            ),
            (
                &wide,
                0,
                "'{' expands the pattern to more than 256 alternatives; split it into several patterns",
            ),
            (
                &bulky,
                96,
                "braces expand the pattern to more than 16384 characters in all; split it into several patterns",
            ),
        ];
        for &(pattern, pos, message) in INVALID.iter().chain(limits) {
            let want = GlobError {
                pos,
                message: message.to_string(),
            };
            assert_eq!(Glob::new(pattern), Err(want), "pattern {pattern:?}");
        }
    }

    #[test]
    fn limits_themselves_are_allowed() {
        assert!(Glob::new(&"a".repeat(MAX_LEN)).is_ok());
        assert!(Glob::new(&"{a,b}".repeat(8)).is_ok());
        let nested = format!("{}x{}", "{".repeat(MAX_NESTING), "}".repeat(MAX_NESTING));
        assert!(Glob::new(&nested).is_ok_and(|g| g.matches("x")));
        let wide = format!("{{{}}}", vec!["a"; MAX_ALTERNATIVES].join(","));
        assert!(Glob::new(&wide).is_ok());
        let bulky = "{a,b}".repeat(8) + &"x".repeat(56);
        let path = "ab".repeat(4) + &"x".repeat(56);
        assert!(Glob::new(&bulky).is_ok_and(|g| g.matches(&path)));
    }

    #[test]
    fn error_display_is_one_line_with_the_position() {
        let e = Glob::new("src/[ab").unwrap_err();
        assert_eq!(
            e.to_string(),
            r"unclosed '['; close it with ']' or escape it as '\[' (at byte 4)"
        );
    }

    #[test]
    fn as_str_gives_the_pattern_back() {
        assert_eq!(
            Glob::new("src/**/{a,b}.rs").unwrap().as_str(),
            "src/**/{a,b}.rs"
        );
    }

    #[test]
    fn default_ignores() {
        let table = [
            (".git", true),
            (".git/HEAD", true),
            ("sub/.git/index", true),
            ("node_modules/x/index.js", true),
            ("web/node_modules", true),
            ("target/debug/app", true),
            ("src/__pycache__/m.cpython-312.pyc", true),
            (".DS_Store", true),
            ("docs/.DS_Store", true),
            ("m.pyc", true),
            ("pkg/m.pyc", true),
            ("src/main.rs", false),
            ("m.py", false),
            ("pyc", false),
            ("m.pyc/readme", false), // `.pyc` counts only for the file name
            (".gitignore", false),
            ("targets/x", false),
            ("my_target", false),
            ("", false),
        ];
        for (path, want) in table {
            assert_eq!(ignored_by_default(path), want, "path {path:?}");
        }
    }

    #[test]
    fn hostile_patterns_finish_quickly() {
        let long_a = "a".repeat(20_000);
        assert!(
            !Glob::new("*a*a*a*a*a*a*a*a*a*a*b")
                .unwrap()
                .matches(&long_a)
        );
        let deep = "a/".repeat(5_000) + "a";
        let stars = "**/".repeat(200) + "b";
        assert!(!Glob::new(&stars).unwrap().matches(&deep));
        let stars = "**/a/".repeat(200) + "b";
        assert!(!Glob::new(&stars).unwrap().matches(&deep));
        let alts = "{*a,a*}".repeat(8) + "b";
        assert!(!Glob::new(&alts).unwrap().matches(&long_a[..2_000]));
    }

    /// The compiled tokens as a regex-lite pattern: an independent engine to
    /// check the state-set simulation against.
    fn oracle(glob: &Glob, path: &str) -> bool {
        let name = path.rsplit('/').next().unwrap_or(path);
        glob.alternatives.iter().any(|alt| {
            let mut re = String::from("(?s)^");
            for token in &alt.tokens {
                match *token {
                    Token::Char(c) => re += &format!(r"\x{{{:x}}}", c as u32),
                    Token::Sep => re += "/",
                    Token::One => re += "[^/]",
                    Token::Star => re += "[^/]*",
                    Token::Dirs => re += "(?:.*/)?",
                    Token::Under => re += "(?:/.*)?",
                    Token::Rest => re += ".*",
                    Token::Class(k) => {
                        // regex-lite has no `&&`: cut '/' out of the ranges instead.
                        let class = &glob.classes[k];
                        let mut set = String::new();
                        for &(lo, hi) in &class.ranges {
                            for (lo, hi) in [(lo, hi.min('.')), (lo.max('0'), hi)] {
                                if lo <= hi {
                                    set += &format!(r"\x{{{:x}}}-\x{{{:x}}}", lo as u32, hi as u32);
                                }
                            }
                        }
                        re += &match (class.negated, set.is_empty()) {
                            (true, _) => format!("[^/{set}]"),
                            (false, true) => r"\b\B".to_string(), // nothing but '/': never
                            (false, false) => format!("[{set}]"),
                        };
                    }
                }
            }
            re += "$";
            let text = if alt.anchored { path } else { name };
            let re = regex_lite::Regex::new(&re).unwrap_or_else(|e| panic!("{re}: {e}"));
            re.is_match(text)
        })
    }

    /// Strings heavy in glob syntax, so random patterns are mostly valid; at most
    /// `max_bytes` long.
    fn globby(max_bytes: usize) -> impl Strategy<Value = String> {
        let alphabet = vec![
            "a", "b", "é", ".", "/", "/", "*", "*", "**", "?", "[", "]", "!", "-", "{", "}", ",",
            "\\",
        ];
        prop::collection::vec(prop::sample::select(alphabet), 0..max_bytes).prop_map(
            move |pieces| {
                let mut out = String::new();
                for piece in pieces {
                    if out.len() + piece.len() > max_bytes {
                        break;
                    }
                    out += piece;
                }
                out
            },
        )
    }

    fn pathish(max: usize) -> impl Strategy<Value = String> {
        let alphabet = vec!['a', 'b', 'é', '.', '/', '/', '*', '-', ']'];
        prop::collection::vec(prop::sample::select(alphabet), 0..max).prop_map(String::from_iter)
    }

    /// Backslash before every character but letters and digits.
    fn escape(text: &str) -> String {
        let mut out = String::new();
        for c in text.chars() {
            if !c.is_alphanumeric() {
                out.push('\\');
            }
            out.push(c);
        }
        out
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_text(pattern in any::<String>(), path in any::<String>()) {
            if let Ok(glob) = Glob::new(&pattern) {
                glob.matches(&path);
            }
        }

        /// Random patterns up to 64 bytes against paths up to 256: a pathological
        /// matcher would hang here.
        #[test]
        fn never_panics_or_hangs_on_glob_syntax(pattern in globby(64), path in pathish(256)) {
            if let Ok(glob) = Glob::new(&pattern) {
                glob.matches(&path);
            }
        }

        #[test]
        fn agrees_with_a_regex_of_the_tokens(pattern in globby(16), path in pathish(12)) {
            if let Ok(glob) = Glob::new(&pattern) {
                prop_assert_eq!(glob.matches(&path), oracle(&glob, &path), "pattern {:?} path {:?}", pattern, path);
            }
        }

        #[test]
        fn an_escaped_text_matches_exactly_itself(
            text in prop_oneof!["[^\0]{1,40}", globby(40).prop_filter("empty", |t| !t.is_empty())],
            other in pathish(12),
        ) {
            let glob = Glob::new(&escape(&text)).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(glob.matches(&text));
            // Without a '/' it is a file name, matched at any depth.
            prop_assert_eq!(glob.matches(&format!("x/{text}")), !text.contains('/'));
            let name = other.rsplit('/').next().unwrap_or(&other);
            let want = if text.contains('/') { other == text } else { name == text };
            prop_assert_eq!(glob.matches(&other), want);
        }
    }
}
