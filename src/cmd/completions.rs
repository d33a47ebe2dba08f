//! `completions bash|zsh|fish`: print the script (written by `crate::completions`
//! from the command table).

use crate::cli::Shell;
use crate::error::Result;

pub fn run(shell: Shell) -> Result<i32> {
    print!("{}", crate::completions::script(shell));
    Ok(0)
}
