//! Cell styles and SGR both ways: `apply_sgr` reads a (sanitized) child's SGR
//! parameters into a `Style`, `write_sgr` emits the sequence that sets a style.
//! Pure; the screen and the renderer share it.

use std::fmt::Write as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Color {
    #[default]
    Default,
    /// The 256-colour palette; 0–15 are the terminal's own 16 colours.
    Idx(u8),
    Rgb(u8, u8, u8),
}

pub const BOLD: u8 = 1;
pub const DIM: u8 = 2;
pub const ITALIC: u8 = 4;
pub const UNDERLINE: u8 = 8;
pub const REVERSE: u8 = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Style {
    pub fg: Color,
    pub bg: Color,
    pub attrs: u8,
}

impl Style {
    pub const fn fg(color: u8) -> Style {
        Style {
            fg: Color::Idx(color),
            bg: Color::Default,
            attrs: 0,
        }
    }

    pub const fn with(mut self, attrs: u8) -> Style {
        self.attrs |= attrs;
        self
    }

    pub const fn on(mut self, color: u8) -> Style {
        self.bg = Color::Idx(color);
        self
    }
}

/// Colour numbers of the 16-colour palette.
pub const RED: u8 = 1;
pub const GREEN: u8 = 2;
pub const YELLOW: u8 = 3;
pub const GRAY: u8 = 8;
pub const DARK_BG: u8 = 236;

/// Secondary text: a finished process's mark, hints, the empty pane.
pub const MUTED: Style = Style::fg(GRAY);

/// Apply one SGR sequence's parameters (the text between `ESC [` and `m`) to
/// `style`; a reset goes back to `base` (the line's own style, e.g. stderr's).
pub fn apply_sgr(style: &mut Style, params: &str, base: Style) {
    // Colon sub-parameters (38:2::r:g:b) are read as if they were semicolons.
    let mut nums = params
        .split([';', ':'])
        .map(|p| p.parse::<u32>().unwrap_or(0))
        .peekable();
    if params.is_empty() {
        *style = base;
        return;
    }
    while let Some(n) = nums.next() {
        match n {
            0 => *style = base,
            1 => style.attrs |= BOLD,
            2 => style.attrs |= DIM,
            3 => style.attrs |= ITALIC,
            4 => style.attrs |= UNDERLINE,
            7 => style.attrs |= REVERSE,
            22 => style.attrs &= !(BOLD | DIM),
            23 => style.attrs &= !ITALIC,
            24 => style.attrs &= !UNDERLINE,
            27 => style.attrs &= !REVERSE,
            30..=37 => style.fg = Color::Idx((n - 30) as u8),
            39 => style.fg = base.fg,
            40..=47 => style.bg = Color::Idx((n - 40) as u8),
            49 => style.bg = base.bg,
            90..=97 => style.fg = Color::Idx((n - 90 + 8) as u8),
            100..=107 => style.bg = Color::Idx((n - 100 + 8) as u8),
            38 | 48 => {
                let color = match nums.next() {
                    Some(5) => nums.next().map(|i| Color::Idx(i.min(255) as u8)),
                    Some(2) => {
                        // 38;2;r;g;b, or 38:2::r:g:b with an empty colour-space id.
                        if nums.peek() == Some(&0) && params.contains("::") {
                            nums.next();
                        }
                        let mut c = [0u8; 3];
                        for v in &mut c {
                            *v = nums.next().unwrap_or(0).min(255) as u8;
                        }
                        Some(Color::Rgb(c[0], c[1], c[2]))
                    }
                    _ => None,
                };
                if let Some(color) = color {
                    if n == 38 {
                        style.fg = color;
                    } else {
                        style.bg = color;
                    }
                }
            }
            _ => {} // blink, fonts, ...: ignored
        }
    }
}

/// The SGR sequence that sets `style` from scratch (a reset first).
pub fn write_sgr(out: &mut String, style: Style) {
    out.push_str("\x1b[0");
    for (bit, code) in [
        (BOLD, "1"),
        (DIM, "2"),
        (ITALIC, "3"),
        (UNDERLINE, "4"),
        (REVERSE, "7"),
    ] {
        if style.attrs & bit != 0 {
            out.push(';');
            out.push_str(code);
        }
    }
    color(out, style.fg, 30);
    color(out, style.bg, 40);
    out.push('m');
}

fn color(out: &mut String, color: Color, base: u8) {
    let _ = match color {
        Color::Default => Ok(()),
        Color::Idx(i) if i < 8 => write!(out, ";{}", base + i),
        Color::Idx(i) if i < 16 => write!(out, ";{}", base + 60 + i - 8),
        Color::Idx(i) => write!(out, ";{};5;{i}", base + 8),
        Color::Rgb(r, g, b) => write!(out, ";{};2;{r};{g};{b}", base + 8),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sgr_parameters_table() {
        let base = Style::fg(YELLOW);
        let cases: &[(&str, Style)] = &[
            ("31", Style::fg(RED)),
            ("1;32", Style::fg(GREEN).with(BOLD)),
            ("0", base),
            ("", base),
            ("39", base),
            ("38;5;208", Style::fg(208)),
            ("91", Style::fg(9)),
            ("44", Style::fg(YELLOW).on(4)),
            (
                "38;2;1;2;3",
                Style {
                    fg: Color::Rgb(1, 2, 3),
                    ..base
                },
            ),
            (
                "38:2::1:2:3",
                Style {
                    fg: Color::Rgb(1, 2, 3),
                    ..base
                },
            ),
            ("1;22", base),
            ("5;99999", base),
        ];
        for (params, want) in cases {
            let mut style = base;
            apply_sgr(&mut style, params, base);
            assert_eq!(style, *want, "{params}");
        }
    }

    #[test]
    fn written_sgr_reads_back_the_same() {
        let styles = [
            Style::default(),
            Style::fg(RED).with(BOLD | UNDERLINE),
            Style::fg(12).on(DARK_BG).with(REVERSE),
            Style {
                fg: Color::Rgb(9, 8, 7),
                bg: Color::Idx(3),
                attrs: ITALIC | DIM,
            },
        ];
        for style in styles {
            let mut out = String::new();
            write_sgr(&mut out, style);
            let params = &out[2..out.len() - 1];
            let mut back = Style::fg(GREEN);
            apply_sgr(&mut back, params, Style::default());
            assert_eq!(back, style, "{out:?}");
        }
    }
}
