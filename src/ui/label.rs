//! How a process reads in the list: its state mark and its label. Shared by the
//! model (the list's width) and the renderer (the row it draws).

use super::style::{self, BOLD, MUTED, Style};
use crate::protocol::ProcessInfo;

/// The state mark of a process and its colour.
pub fn state_mark(p: &ProcessInfo) -> (char, Style) {
    match p.state.as_str() {
        "running" => ('●', Style::fg(style::GREEN)),
        "stopping" => ('◌', Style::fg(style::YELLOW)),
        "backoff" => ('↻', Style::fg(style::YELLOW)),
        "failed" => ('✗', Style::fg(style::RED).with(BOLD)),
        "exited" if p.exit_code == Some(0) => ('✓', MUTED),
        "exited" => ('✗', Style::fg(style::RED)),
        _ => ('?', MUTED),
    }
}

/// The list row of a process, mark included: `● api 2/5↻ W :3000`.
pub fn proc_label(p: &ProcessInfo) -> String {
    let mut label = format!("{} {}", state_mark(p).0, p.name);
    match (p.restart_count, p.max_restarts) {
        (Some(n), Some(max)) if n > 0 => label.push_str(&format!(" {n}/{max}↻")),
        (Some(n), None) if n > 0 => label.push_str(&format!(" {n}↻")),
        _ => {}
    }
    if p.watched == Some(true) {
        label.push_str(" W");
    }
    if let Some(port) = p.port {
        label.push_str(&format!(" :{port}"));
    }
    label
}
