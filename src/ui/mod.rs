//! `agent-procs ui`: a terminal UI on raw termios and ANSI escapes.

#![allow(dead_code)]

mod input;
mod model;
mod render;
mod sanitize;
mod screen;
mod style;
