//! Identifier newtypes, so a client number is never passed where a wait or a
//! probe number is expected. Each is a plain number underneath; the loop
//! turns a `ClientId` into its poll token and back, components never do.

use std::fmt;

/// A control connection, numbered by the poll token it was registered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(pub usize);

/// A readiness probe in progress (`daemon/readiness.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProbeId(pub u64);

/// A pending `wait` request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WaitId(pub u64);

/// Who learns the outcome of a readiness probe: a `wait --port/--http`, or
/// entry `entry` of `up` run `run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeOwner {
    Wait(WaitId),
    Up { run: u64, entry: usize },
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}", self.0)
    }
}

impl fmt::Display for WaitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "w{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_compare_and_hash_by_their_number() {
        let set: HashSet<ClientId> = [ClientId(3), ClientId(3), ClientId(4)].into();
        assert_eq!(set.len(), 2);
        assert!(WaitId(1) < WaitId(2));
        assert_eq!(ClientId(7).to_string(), "c7");
        assert_eq!(WaitId(9).to_string(), "w9");
    }
}
