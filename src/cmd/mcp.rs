//! `mcp`: the Model Context Protocol server on stdio; its implementation is
//! `crate::mcp`.

use crate::error::Result;
use std::path::PathBuf;

pub fn run(session: &str, root: Option<PathBuf>) -> Result<i32> {
    crate::mcp::run(session, root)
}
