//! Processes that outlive a stop. A stop ends a process group; a process that
//! left the group (`setsid`, a daemonizing double fork) is not in it any more.
//! Once its parent in the group dies it is re-parented to the daemon, which is
//! the children's subreaper, so after a stop such escapees are exactly the
//! daemon's children that lead no managed process, with their descendants. Each
//! child is told which process it belongs to by `MARKER` in its environment,
//! which its escapees inherit. Found (through `crate::sys`) when a stop ends, never polled.

use crate::sys::command_of;
use crate::sys::procinfo::children;

/// Set in every child's environment to the name of its process.
pub const MARKER: &str = "AGENT_PROCS_NAME";
/// How many are recorded for one stop; more are counted, not listed.
const MAX_LISTED: usize = 16;

#[derive(Debug, Clone, PartialEq)]
pub struct Survivor {
    pub pid: i32,
    /// The start time in /proc, so a reused pid is not taken for the survivor.
    pub start_ticks: Option<u64>,
    pub command: String,
}

impl Survivor {
    pub fn alive(&self) -> bool {
        self.start_ticks.is_some() && crate::sys::start_ticks(self.pid as u32) == self.start_ticks
    }
}

/// The escapees of process `name`: our children that lead no managed process and
/// carry `name` in their environment, and their descendants.
pub fn find(name: &str, is_leader: impl Fn(i32) -> bool) -> Vec<Survivor> {
    let me = std::process::id() as i32;
    let mut found = Vec::new();
    let mut queue: Vec<i32> = children(me)
        .into_iter()
        .filter(|&pid| !is_leader(pid) && marked(pid, name))
        .collect();
    while let Some(pid) = queue.pop() {
        if found.len() == MAX_LISTED {
            break;
        }
        let start_ticks = crate::sys::start_ticks(pid as u32);
        if start_ticks.is_none() {
            continue; // gone meanwhile
        }
        found.push(Survivor {
            pid,
            start_ticks,
            command: command_of(pid),
        });
        queue.extend(children(pid));
    }
    found.sort_by_key(|s| s.pid);
    found
}

/// Whether `pid`'s environment holds `MARKER=name`.
fn marked(pid: i32, name: &str) -> bool {
    // Environments are small; the cap keeps a hostile one from costing much.
    let Some(environ) = crate::sys::environ(pid, 1 << 20) else {
        return false;
    };
    let wanted = format!("{MARKER}={name}");
    environ
        .split(|&b| b == 0)
        .any(|entry| entry == wanted.as_bytes())
}

/// `pid 4242 (sleep 300)`, `pids 4242 (sleep 300), 4250 (tail -f x)`.
pub fn describe(survivors: &[Survivor]) -> String {
    let list: Vec<String> = survivors
        .iter()
        .map(|s| format!("{} ({})", s.pid, s.command))
        .collect();
    let noun = if survivors.len() == 1 { "pid" } else { "pids" };
    format!("{noun} {}", list.join(", "))
}

/// The sentence a stop's answer and daemon.log carry about what outlived it.
pub fn sentence(name: &str, survivors: &[Survivor]) -> String {
    let pids: Vec<String> = survivors.iter().map(|s| s.pid.to_string()).collect();
    format!(
        "{name} left processes running outside its process group (they called setsid): {}; end them with: kill {}",
        describe(survivors),
        pids.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_command_line_and_environment_are_read() {
        let me = std::process::id() as i32;
        assert!(!command_of(me).is_empty());
        // The test harness has no marker; a name never matches a missing variable.
        assert!(!marked(me, "api"));
        assert!(!marked(-1, "api"));
        assert_eq!(command_of(-1), "");
    }

    #[test]
    fn the_sentence_names_pids_and_commands() {
        let s = |pid, command: &str| Survivor {
            pid,
            start_ticks: None,
            command: command.into(),
        };
        assert_eq!(
            sentence("api", &[s(42, "sleep 300")]),
            "api left processes running outside its process group (they called setsid): pid 42 (sleep 300); end them with: kill 42"
        );
        assert_eq!(describe(&[s(1, "a"), s(2, "b c")]), "pids 1 (a), 2 (b c)");
    }
}
