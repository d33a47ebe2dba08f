//! `ui`: the terminal UI; its implementation is `crate::ui`.

use crate::error::Result;

pub fn run(session: &str) -> Result<i32> {
    crate::ui::run(session)
}
