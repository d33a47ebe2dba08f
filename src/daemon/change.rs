//! What happened to a process, as components report it (`Action::Emit`) and
//! before the events component gives it its number and time. A leaf, so the
//! action type and the events component can both name it.

/// What happened to a process, before it gets its number and time.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Change {
    pub event: &'static str,
    pub pid: Option<u32>,
    pub exit_code: Option<i32>,
    pub exit_signal: Option<String>,
    pub delay_ms: Option<u64>,
    pub detail: Option<String>,
}

impl Change {
    pub fn new(event: &'static str) -> Change {
        Change {
            event,
            ..Change::default()
        }
    }

    pub fn pid(mut self, pid: u32) -> Change {
        self.pid = Some(pid);
        self
    }

    pub fn exit(mut self, code: Option<i32>, signal: Option<String>) -> Change {
        self.exit_code = code;
        self.exit_signal = signal;
        self
    }

    pub fn delay_ms(mut self, ms: u64) -> Change {
        self.delay_ms = Some(ms);
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Change {
        self.detail = Some(detail.into());
        self
    }
}
