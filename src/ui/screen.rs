//! From one frame to the next with as few bytes as possible: only cells that
//! changed are written, runs of them after one cursor move, styles set only when
//! they change, all inside a synchronized update so nothing flickers. No clears.

use super::render::{Cell, Frame};
use super::style::{Style, write_sgr};
use std::fmt::Write as _;

/// Unchanged cells shorter than this between two changes are rewritten rather
/// than jumped over (a cursor move costs about as much).
const GAP: usize = 6;

#[derive(Default)]
pub struct Screen {
    /// What the terminal shows; empty when unknown (start, resize).
    shown: Frame,
}

impl Screen {
    /// Forget what the terminal shows: the next `update` repaints every cell.
    pub fn invalidate(&mut self) {
        self.shown.clear();
    }

    /// The bytes that turn the terminal from the last frame into `next`.
    pub fn update(&mut self, next: &Frame) -> String {
        let mut out = String::new();
        let fresh = self.shown.len() != next.len()
            || self.shown.first().map(Vec::len) != next.first().map(Vec::len);
        let mut style: Option<Style> = None;
        for (y, row) in next.iter().enumerate() {
            let old = if fresh { None } else { self.shown.get(y) };
            let mut x = 0;
            while x < row.len() {
                if old.is_some_and(|o| o.get(x) == row.get(x)) {
                    x += 1;
                    continue;
                }
                // A change: extend the run while cells differ or the gap is short.
                let mut start = x;
                if row[start].ch == '\0' && start > 0 {
                    start -= 1; // redraw the wide character this half belongs to
                }
                let mut end = x + 1;
                let mut same = 0;
                while end < row.len() && same < GAP {
                    if old.is_some_and(|o| o.get(end) == row.get(end)) {
                        same += 1;
                    } else {
                        same = 0;
                    }
                    end += 1;
                }
                let end = end - same;
                let _ = write!(out, "\x1b[{};{}H", y + 1, start + 1);
                for cell in &row[start..end] {
                    put_cell(&mut out, cell, &mut style);
                }
                // The run ended on the first half of a wide character: add the second.
                x = end;
            }
        }
        self.shown = next.clone();
        if out.is_empty() {
            return out;
        }
        format!("\x1b[?2026h{out}\x1b[0m\x1b[?2026l")
    }
}

fn put_cell(out: &mut String, cell: &Cell, style: &mut Option<Style>) {
    if cell.ch == '\0' {
        return; // the wide character before it covered this cell
    }
    if *style != Some(cell.style) {
        write_sgr(out, cell.style);
        *style = Some(cell.style);
    }
    out.push(cell.ch);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::render::BLANK;

    fn frame(rows: &[&str]) -> Frame {
        rows.iter()
            .map(|r| {
                r.chars()
                    .map(|ch| Cell {
                        ch,
                        style: Style::default(),
                    })
                    .collect()
            })
            .collect()
    }

    /// Apply escape output to a grid, as a terminal would (cursor moves and text only).
    fn apply(grid: &mut [Vec<char>], out: &str) {
        let (mut y, mut x) = (0usize, 0usize);
        let mut rest = out;
        while let Some(c) = rest.chars().next() {
            if let Some(seq) = rest.strip_prefix("\x1b[") {
                let end = seq.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(0);
                if seq.as_bytes()[end] == b'H' {
                    let (r, col) = seq[..end].split_once(';').unwrap();
                    y = r.parse::<usize>().unwrap() - 1;
                    x = col.parse::<usize>().unwrap() - 1;
                }
                rest = &seq[end + 1..];
                continue;
            }
            grid[y][x] = c;
            x += crate::ui::render::char_width(c);
            rest = &rest[c.len_utf8()..];
        }
    }

    #[test]
    fn only_changes_are_written_table() {
        let mut s = Screen::default();
        let a = frame(&["hello world", "second row!"]);
        let first = s.update(&a);
        assert!(first.contains("hello world") && first.contains("second row!"));
        assert!(!first.contains("\x1b[2J"), "never clears");
        assert_eq!(s.update(&a), "", "nothing changed, nothing written");
        let b = frame(&["hello World", "second row!"]);
        let out = s.update(&b);
        assert!(out.contains("\x1b[1;7H"), "{out:?}");
        assert!(!out.contains("second"), "{out:?}");
        s.invalidate();
        assert!(s.update(&b).contains("second row!"));
    }

    #[test]
    fn updates_reproduce_the_frame_on_a_terminal() {
        let frames = [
            frame(&["abcdefghij", "0123456789", "          "]),
            frame(&["abcXefghiZ", "0123456789", "  x       "]),
            frame(&["aaaaaaaaaa", "0123406789", "          "]),
        ];
        let mut s = Screen::default();
        let mut grid = vec![vec![' '; 10]; 3];
        for f in &frames {
            let out = s.update(f);
            apply(&mut grid, &out);
            let want: Vec<Vec<char>> = f.iter().map(|r| r.iter().map(|c| c.ch).collect()).collect();
            assert_eq!(grid, want);
        }
    }

    #[test]
    fn a_changed_half_of_a_wide_character_redraws_the_whole_character() {
        let mut s = Screen::default();
        let mut f = vec![vec![BLANK; 4]];
        f[0][0] = Cell {
            ch: '日',
            style: Style::default(),
        };
        f[0][1] = Cell {
            ch: '\0',
            style: Style::default(),
        };
        s.update(&f);
        let mut g = f.clone();
        g[0][1].style = Style::fg(1);
        g[0][0].style = Style::fg(1);
        let out = s.update(&g);
        assert!(out.contains("\x1b[1;1H") && out.contains('日'), "{out:?}");
    }
}
