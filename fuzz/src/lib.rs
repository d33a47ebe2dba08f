//! agent-procs' modules, included by path so that the fuzz targets can call the
//! parsers of a binary-only crate. Only the targets use this; much of it is unused.
#![allow(dead_code, unused_imports, unreachable_pub)]
// Lints about a public API: these modules are one binary's, public here only for the targets.
#![allow(clippy::should_implement_trait, clippy::len_without_is_empty)]

#[path = "../../src/cli.rs"]
pub mod cli;
#[path = "../../src/client.rs"]
pub mod client;
#[path = "../../src/completions.rs"]
pub mod completions;
#[path = "../../src/config.rs"]
pub mod config;
#[path = "../../src/config_cmd.rs"]
pub mod config_cmd;
#[path = "../../src/daemon/mod.rs"]
pub mod daemon;
#[path = "../../src/error.rs"]
pub mod error;
#[path = "../../src/export.rs"]
pub mod export;
#[path = "../../src/export_cmd.rs"]
pub mod export_cmd;
#[path = "../../src/glob.rs"]
pub mod glob;
#[path = "../../src/logs/mod.rs"]
pub mod logs;
#[path = "../../src/mcp/mod.rs"]
pub mod mcp;
#[path = "../../src/paths.rs"]
pub mod paths;
#[path = "../../src/probe.rs"]
pub mod probe;
#[path = "../../src/procinfo.rs"]
pub mod procinfo;
#[path = "../../src/protocol.rs"]
pub mod protocol;
#[path = "../../src/proxy/mod.rs"]
pub mod proxy;
#[path = "../../src/ratelimit.rs"]
pub mod ratelimit;
#[path = "../../src/session.rs"]
pub mod session;
#[path = "../../src/sys.rs"]
pub mod sys;
#[path = "../../src/timefmt.rs"]
pub mod timefmt;
#[path = "../../src/ui/mod.rs"]
pub mod ui;
#[path = "../../src/up_cmd.rs"]
pub mod up_cmd;
#[path = "../../src/yaml.rs"]
pub mod yaml;
