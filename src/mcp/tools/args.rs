//! What every tool shares: its arguments, read with messages that name the
//! tool and the argument, and the JSON object its result is written as.

use serde_json::{Map, Value};
use std::time::Duration;

/// A JSON object written field by field: less code than `json!`, which
/// builds a tree of values first.
pub(super) struct Obj(String);

impl Obj {
    pub(super) fn new() -> Obj {
        Obj(String::from("{"))
    }

    pub(super) fn raw(mut self, key: &str, json: &str) -> Obj {
        if self.0.len() > 1 {
            self.0.push(',');
        }
        self.0.push('"');
        self.0.push_str(key);
        self.0.push_str("\":");
        self.0.push_str(json);
        self
    }

    pub(super) fn str(self, key: &str, value: &str) -> Obj {
        self.raw(key, &crate::mcp::jsonrpc::string(value))
    }

    pub(super) fn opt_str(self, key: &str, value: Option<&str>) -> Obj {
        match value {
            Some(value) => self.str(key, value),
            None => self.raw(key, "null"),
        }
    }

    /// A number or a boolean (one copy of this for every type).
    pub(super) fn num(self, key: &str, value: &dyn std::fmt::Display) -> Obj {
        self.raw(key, &value.to_string())
    }

    pub(super) fn opt(self, key: &str, value: Option<&dyn std::fmt::Display>) -> Obj {
        match value {
            Some(value) => self.num(key, value),
            None => self.raw(key, "null"),
        }
    }

    pub(super) fn end(mut self) -> String {
        self.0.push('}');
        self.0
    }
}

/// A call's arguments, read with messages that name the tool and the argument.
pub(super) struct Args<'a> {
    pub(super) tool: &'a str,
    pub(super) args: &'a Map<String, Value>,
}

impl Args<'_> {
    /// Refuse arguments the tool does not take; `known` names them, separated
    /// by spaces (one string: an array of `&str` costs a relocation each).
    pub(super) fn only(&self, known: &str) -> Result<(), String> {
        let taken = |key: &str| known.split(' ').any(|k| !k.is_empty() && k == key);
        match self.args.keys().find(|k| !taken(k)) {
            Some(key) if known.is_empty() => {
                Err(format!("{} takes no arguments, not '{key}'", self.tool))
            }
            Some(key) => Err(format!(
                "{} has no argument '{key}'; it takes: {}",
                self.tool,
                known.replace(' ', ", ")
            )),
            None => Ok(()),
        }
    }

    pub(super) fn string(&self, key: &str) -> Result<Option<String>, String> {
        match self.args.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!("{}: {key} must be a string", self.tool)),
        }
    }

    pub(super) fn name(&self) -> Result<String, String> {
        match self.string("name")? {
            Some(name) if !name.is_empty() => Ok(name),
            _ => Err(format!(
                "{} needs name: the process name or id, as status lists it",
                self.tool
            )),
        }
    }

    pub(super) fn flag(&self, key: &str) -> Result<bool, String> {
        match self.args.get(key) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(format!("{}: {key} must be true or false", self.tool)),
        }
    }

    pub(super) fn integer(&self, key: &str, min: u64, max: u64) -> Result<Option<u64>, String> {
        match self.args.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => match v.as_u64() {
                Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
                _ => Err(format!(
                    "{}: {key} must be a whole number from {min} to {max}, not {v}",
                    self.tool
                )),
            },
        }
    }

    /// A positive number of seconds up to `max`.
    pub(super) fn seconds(&self, key: &str, max: u64) -> Result<Option<Duration>, String> {
        match self.args.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => match v.as_f64() {
                Some(s) if s > 0.0 && s <= max as f64 => Ok(Some(Duration::from_secs_f64(s))),
                _ => Err(format!(
                    "{}: {key} must be a number of seconds above 0 and at most {max}, not {v}",
                    self.tool
                )),
            },
        }
    }
}
