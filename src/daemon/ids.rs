//! Small ID newtypes, so that one kind of number is never passed as another.

/// A readiness probe in progress (`daemon/readiness.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ProbeId(pub u64);
