//! The screen as a pure function of the model: state + size → rows of styled
//! cells, each row exactly as wide as the terminal. Layout: a header row, the
//! process list beside the selected process's output, a status bar.

use super::label::{proc_label, state_mark};
use super::model::{Link, Mode, Model};
use super::style::{self, BOLD, DIM, MUTED, REVERSE, Style, apply_sgr};
use crate::protocol::Stream;

/// One terminal cell. A wide character fills its cell and the next, which holds
/// `'\0'` (nothing is written for it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cell {
    pub ch: char,
    pub style: Style,
}

pub const BLANK: Cell = Cell {
    ch: ' ',
    style: Style {
        fg: style::Color::Default,
        bg: style::Color::Default,
        attrs: 0,
    },
};

pub type Frame = Vec<Vec<Cell>>;

const HEADER: Style = Style::fg(15).on(style::DARK_BG).with(BOLD);
const BAR: Style = Style::fg(250).on(style::DARK_BG);
const SELECTED_BG: u8 = 238;
const STDERR: Style = Style::fg(style::YELLOW);

const HELP: &[&str] = &[
    "j/k, Up/Down    select a process (mouse: click, wheel)",
    "e               stream: stdout, stderr, both",
    "u/d, PgUp/PgDn  scroll half a page / a page (mouse wheel)",
    "g/G             top of the history / bottom",
    "Space           pause / resume following",
    "L               jump to live output",
    "/               filter (Tab: regex), Enter applies",
    "Esc             clear the filter",
    "r               restart the selected process",
    "s               start the selected process if stopped",
    "x / X           stop the selected process / all",
    "q               quit (processes keep running)",
    "Q               quit and shut the daemon down",
    "Ctrl-L          redraw the whole screen",
    "",
    "any key closes this help",
];

/// Cells a character takes: 0 for combining marks and zero-width characters, 2
/// for East Asian wide and emoji, else 1 (an approximation of wcwidth).
pub fn char_width(c: char) -> usize {
    let u = c as u32;
    match u {
        0x0300..=0x036f | 0x200b..=0x200f | 0x20d0..=0x20ff | 0xfe00..=0xfe0f | 0xfeff => 0,
        0x1100..=0x115f
        | 0x2e80..=0x303e
        | 0x3041..=0x33ff
        | 0x3400..=0x4dbf
        | 0x4e00..=0x9fff
        | 0xa000..=0xa4cf
        | 0xac00..=0xd7a3
        | 0xf900..=0xfaff
        | 0xfe30..=0xfe4f
        | 0xff00..=0xff60
        | 0xffe0..=0xffe6
        | 0x1f300..=0x1f64f
        | 0x1f900..=0x1f9ff
        | 0x20000..=0x3fffd => 2,
        _ => 1,
    }
}

/// Write `text` into `row` from `col`, not past `end`; returns the next column.
fn put(row: &mut [Cell], mut col: usize, end: usize, text: &str, style: Style) -> usize {
    let end = end.min(row.len());
    for c in text.chars() {
        let w = char_width(c);
        if w == 0 {
            continue;
        }
        if col + w > end {
            break;
        }
        row[col] = Cell { ch: c, style };
        if w == 2 {
            row[col + 1] = Cell { ch: '\0', style };
        }
        col += w;
    }
    col
}

/// `put` for sanitized child output: SGR sequences restyle, TABs expand to the
/// next multiple of 8 from `col`.
fn put_ansi(row: &mut [Cell], start: usize, end: usize, text: &str, base: Style) -> usize {
    let end = end.min(row.len());
    let mut style = base;
    let mut col = start;
    let mut rest = text;
    while !rest.is_empty() && col < end {
        if let Some(seq) = rest.strip_prefix("\x1b[") {
            let stop = seq.find('m').unwrap_or(seq.len());
            apply_sgr(&mut style, &seq[..stop], base);
            rest = seq.get(stop + 1..).unwrap_or("");
            continue;
        }
        let upto = rest.find(['\x1b', '\t']).unwrap_or(rest.len());
        if upto == 0 {
            // A TAB (an ESC not starting SGR cannot be here; skip it to be safe).
            if rest.starts_with('\t') {
                let to = (start + ((col - start) / 8 + 1) * 8).min(end);
                col = put(row, col, to, &" ".repeat(to - col), style);
            }
            rest = &rest[1..];
            continue;
        }
        col = put(row, col, end, &rest[..upto], style);
        rest = &rest[upto..];
    }
    col
}

pub fn render(m: &Model) -> Frame {
    let (cols, rows) = (m.cols as usize, m.rows as usize);
    let mut frame: Frame = vec![vec![BLANK; cols]; rows];
    if rows == 0 || cols == 0 {
        return frame;
    }
    let list_w = m.list_width().min(cols);
    let out_x = (list_w + 1).min(cols);
    let pane = m.pane_rows().min(rows.saturating_sub(1));

    // Header.
    if let Some(row) = frame.first_mut() {
        row.fill(Cell {
            ch: ' ',
            style: HEADER,
        });
        put(
            row,
            1,
            list_w,
            &format!("processes ({})", m.procs.len()),
            HEADER,
        );
        put(row, out_x, cols, &output_title(m), HEADER);
    }

    draw_list(m, &mut frame, list_w, cols, pane);
    draw_output(m, &mut frame, out_x, cols, pane);

    if m.mode == Mode::Help {
        draw_help(&mut frame, out_x, cols, pane);
    }
    if rows >= 2 {
        draw_status(m, &mut frame[rows - 1]);
    }
    frame
}

/// The process list on the left, one row per process from `list_top`, the
/// selected one highlighted, and the separator after it.
fn draw_list(m: &Model, frame: &mut Frame, list_w: usize, cols: usize, pane: usize) {
    let top = m.list_top;
    for r in 0..pane {
        let Some(row) = frame.get_mut(r + 1) else {
            break;
        };
        if list_w < cols {
            row[list_w] = Cell {
                ch: '│',
                style: MUTED,
            };
        }
        let Some(p) = m.procs.get(top + r) else {
            continue;
        };
        let selected = top + r == m.selected;
        let bg = |s: Style| {
            if selected {
                s.on(SELECTED_BG).with(BOLD)
            } else {
                s
            }
        };
        if selected {
            row[..list_w].fill(Cell {
                ch: ' ',
                style: bg(Style::default()),
            });
        }
        let label = proc_label(p);
        let (mark, mark_style) = state_mark(p);
        let col = put(row, 1, list_w, &mark.to_string(), bg(mark_style));
        let rest = label.split_once(' ').map_or("", |(_, r)| r);
        put(row, col + 1, list_w, rest, bg(Style::default()));
    }
}

/// The output pane: the lines shown, stderr in its colour, or why there are none.
fn draw_output(m: &Model, frame: &mut Frame, out_x: usize, cols: usize, pane: usize) {
    if m.lines.is_empty() && pane > 0 {
        let text = if m.procs.is_empty() {
            "no processes in this session"
        } else if m.filter.is_some() {
            "no matching lines"
        } else {
            "no output yet"
        };
        if let Some(row) = frame.get_mut(1) {
            put(row, out_x + 1, cols, text, MUTED);
        }
    }
    for (r, line) in m.lines.iter().take(pane).enumerate() {
        if let Some(row) = frame.get_mut(r + 1) {
            let base = if line.stream == Stream::Stderr {
                STDERR
            } else {
                Style::default()
            };
            put_ansi(row, out_x + 1, cols, &line.text, base);
        }
    }
}

fn output_title(m: &Model) -> String {
    let Some(p) = m.procs.get(m.selected) else {
        return String::new();
    };
    let mut title = format!("{} · {}", p.name, m.stream.name());
    if let Some(url) = &p.url {
        title.push_str(&format!(" · {url}"));
    }
    if let Some(f) = &m.filter {
        let kind = if f.regex { "regex" } else { "filter" };
        title.push_str(&format!(" · {kind} '{}'", f.text));
    }
    if m.live {
        title.push_str(" · live");
    } else if m.unseen > 0 {
        title.push_str(&format!(" · paused, {} new", m.unseen));
    } else {
        title.push_str(" · paused");
    }
    title
}

fn draw_status(m: &Model, row: &mut [Cell]) {
    let cols = row.len();
    row.fill(Cell {
        ch: ' ',
        style: BAR,
    });
    let (running, exited, failed) = m.counts();
    let mut counts = format!("{running} running · {exited} exited");
    if failed > 0 {
        counts.push_str(&format!(" · {failed} failed"));
    }
    if m.link == Link::Down {
        counts = format!("daemon lost, reconnecting · {counts}");
    }
    let counts_w: usize = counts.chars().map(char_width).sum::<usize>() + 1;
    let counts_x = cols.saturating_sub(counts_w);
    let left_end = counts_x.saturating_sub(1);
    match &m.mode {
        Mode::Filter { text, regex } => {
            let prompt = if *regex { "regex /" } else { "filter /" };
            let col = put(row, 1, left_end, prompt, BAR.with(BOLD));
            let col = put(row, col, left_end, text, BAR);
            let col = put(row, col, left_end, "▏", BAR);
            put(
                row,
                col + 2,
                left_end,
                "Tab regex  Enter apply  Esc cancel",
                BAR.with(DIM),
            );
        }
        _ => match &m.message {
            Some(message) => {
                put(row, 1, left_end, message, BAR.with(BOLD));
            }
            None => {
                let hints = if m.live {
                    "j/k select  e stream  / filter  Space pause  r restart  x stop  ? help  q quit"
                } else {
                    "u/d PgUp/PgDn scroll  g/G top/bottom  L live  / filter  ? help  q quit"
                };
                // As many whole hints as fit.
                let mut shown = String::new();
                for hint in hints.split("  ") {
                    let wider = if shown.is_empty() {
                        hint.to_string()
                    } else {
                        format!("{shown}  {hint}")
                    };
                    if wider.chars().count() + 1 > left_end {
                        break;
                    }
                    shown = wider;
                }
                put(row, 1, left_end, &shown, BAR);
            }
        },
    }
    let style = if failed > 0 { BAR.with(BOLD) } else { BAR };
    put(row, counts_x, cols, &counts, style);
}

fn draw_help(frame: &mut Frame, x0: usize, cols: usize, pane: usize) {
    let width = HELP.iter().map(|l| l.chars().count()).max().unwrap_or(0) + 4;
    let height = HELP.len() + 2;
    let left = x0 + (cols.saturating_sub(x0).saturating_sub(width)) / 2;
    let top = 1 + pane.saturating_sub(height) / 2;
    let boxed = Style::default().with(REVERSE);
    for (i, row) in frame
        .iter_mut()
        .skip(top)
        .take(height.min(pane))
        .enumerate()
    {
        let end = (left + width).min(cols);
        for cell in row.iter_mut().take(end).skip(left) {
            *cell = Cell {
                ch: ' ',
                style: boxed,
            };
        }
        // A wide character cut in half at a box edge would misalign the row.
        if let Some(cell) = row.get_mut(end)
            && cell.ch == '\0'
        {
            *cell = BLANK;
        }
        if let Some(cell) = left.checked_sub(1).and_then(|l| row.get_mut(l))
            && char_width(cell.ch) == 2
        {
            *cell = BLANK;
        }
        if i >= 1 && i <= HELP.len() {
            put(row, left + 2, end, HELP[i - 1], boxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::query::Position;
    use crate::protocol::ProcessInfo;
    use crate::ui::model::{Fetch, PaneLine};
    use proptest::prelude::*;

    fn text(frame: &Frame) -> Vec<String> {
        frame
            .iter()
            .map(|row| row.iter().filter(|c| c.ch != '\0').map(|c| c.ch).collect())
            .collect()
    }

    fn proc(name: &str, id: &str, state: &str) -> ProcessInfo {
        ProcessInfo {
            name: name.into(),
            id: id.into(),
            state: state.into(),
            ..ProcessInfo::default()
        }
    }

    fn model(cols: u16, rows: u16) -> Model {
        let mut m = Model::new(cols, rows);
        let mut api = proc("api", "p1", "running");
        api.restart_count = Some(2);
        api.max_restarts = Some(5);
        api.port = Some(3000);
        api.watched = Some(true);
        let mut worker = proc("worker", "p2", "exited");
        worker.exit_code = Some(1);
        m.set_status(vec![api, worker, proc("db", "p3", "failed")]);
        m
    }

    fn lines(texts: &[(&str, Stream)]) -> Vec<PaneLine> {
        texts
            .iter()
            .enumerate()
            .map(|(i, (t, s))| PaneLine {
                stream: *s,
                text: t.to_string(),
                pos: Position {
                    seq: i as u64,
                    delta: 0,
                },
            })
            .collect()
    }

    #[test]
    fn layout_table() {
        let mut m = model(60, 6);
        m.fetched(
            Fetch::Tail,
            lines(&[
                ("hello", Stream::Stdout),
                ("\x1b[31mred\x1b[0m after", Stream::Stdout),
                ("tab\tstop", Stream::Stderr),
            ]),
            None,
        );
        let want = [
            " processes (3)       api · stdout · live",
            " ● api 2/5↻ W :3000 │ hello",
            " ✗ worker           │ red after",
            " ✗ db               │ tab     stop",
            "                    │",
            " j/k select  e stream       1 running · 1 exited · 1 failed",
        ];
        let got = text(&render(&m));
        for (g, w) in got.iter().zip(want) {
            assert_eq!(g.trim_end(), w.trim_end());
        }
        let frame = render(&m);
        // The child's red applies to its word only; stderr has its own colour.
        let red = frame[2]
            .iter()
            .skip(21)
            .find(|c| c.ch == 'r')
            .map(|c| c.style);
        assert_eq!(red, Some(Style::fg(style::RED)));
        let after = frame[2].iter().rev().find(|c| c.ch == 'a').map(|c| c.style);
        assert_eq!(after, Some(Style::default()));
        let stderr = frame[3].iter().rev().find(|c| c.ch == 'p').map(|c| c.style);
        assert_eq!(stderr, Some(STDERR));
    }

    #[test]
    fn titles_and_bars_follow_the_mode_table() {
        let cases: &[(&[char], &str, &str)] = &[
            (&[], "api · stdout · live", "j/k select"),
            (&['e'], "api · stderr · live", "j/k select"),
            (&[' '], "api · stdout · paused", "u/d PgUp/PgDn"),
            (&['/', 'x'], "api · stdout · live", "filter /x▏"),
            (&['j'], "worker · stdout · live", "j/k select"),
            (&['r'], "api · stdout · live", "restarting api"),
        ];
        for (keys, title, bar) in cases {
            let mut m = model(100, 8);
            for &k in *keys {
                m.input(crate::ui::input::Input::Key(crate::ui::input::Key::Char(k)));
            }
            let t = text(&render(&m));
            assert!(t[0].contains(title), "{keys:?}: {:?}", t[0]);
            assert!(t[7].contains(bar), "{keys:?}: {:?}", t[7]);
        }
    }

    #[test]
    fn wide_characters_take_two_cells_and_never_overflow() {
        let mut m = model(40, 4);
        m.fetched(
            Fetch::Tail,
            lines(&[("日本語のテキストがとても長い行です", Stream::Stdout)]),
            None,
        );
        for row in render(&m) {
            assert_eq!(row.len(), 40);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Any size, any lines, any mode: exactly `rows` rows of exactly `cols` cells,
        /// and a wide character never loses its second half.
        #[test]
        fn every_frame_fills_the_terminal_exactly(
            cols in 0u16..120,
            rows in 0u16..30,
            texts in proptest::collection::vec("[a-z\\t日é\u{301}\x1b\\[0-9;m]{0,90}", 0..40),
            keys in proptest::collection::vec(prop_oneof![Just('j'), Just('e'), Just(' '), Just('?'), Just('/'), Just('x')], 0..4),
        ) {
            let mut m = model(cols, rows);
            for k in keys {
                m.input(crate::ui::input::Input::Key(crate::ui::input::Key::Char(k)));
            }
            let ls: Vec<(&str, Stream)> = texts.iter().map(|t| (t.as_str(), Stream::Stdout)).collect();
            m.fetched(Fetch::Tail, lines(&ls), None);
            let frame = render(&m);
            prop_assert_eq!(frame.len(), rows as usize);
            for row in &frame {
                prop_assert_eq!(row.len(), cols as usize);
                for (i, cell) in row.iter().enumerate() {
                    if char_width(cell.ch) == 2 {
                        prop_assert!(row.get(i + 1).is_some_and(|c| c.ch == '\0'));
                    }
                    if cell.ch == '\0' {
                        prop_assert!(i > 0 && char_width(row[i - 1].ch) == 2);
                    }
                }
            }
        }
    }
}
