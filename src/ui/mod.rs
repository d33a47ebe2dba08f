//! `agent-procs ui`: a terminal UI on raw termios and ANSI escapes.

#![allow(dead_code)]

mod input;
mod sanitize;
mod style;
