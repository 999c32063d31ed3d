//! whittle's workflows behind ports: mining, planning and applying, trials, rotations, the
//! reconcile pass, status and target discovery.
//!
//! The engine knows its [`ports`], the library crates (`planner`, `playbooks`, `state`) and
//! the configuration; it knows no AWS SDK, HTTP server or client, TLS, CLI or signal. Every
//! workflow takes an [`Engine`] (configuration, state, ports, turns) and is tested in process
//! against in-memory ports with a clock the test moves (`testing`). The binary wires the
//! adapters in.
//!
//! Modules, from the bottom up (none imports one above it):
//! - [`ports`], [`config`], [`records`] (every record stored in the state), [`time`],
//!   [`faults`], [`guard`] (turns, request pace, back-off), [`snapshot`] (one IAM read per
//!   account), [`targets`] (the one target discovery), [`trail`] (the
//!   one CloudTrail reader of whole log files), [`notify`];
//! - [`mine`], [`usage`], [`iam_data`];
//! - [`plan`] (plan, apply, rollback), [`trial`], [`rotate`];
//! - [`reconcile`], [`status`], [`jobs`], [`commands`] (the commands a running daemon takes
//!   over, as wire types).

pub mod commands;
pub mod config;
pub mod faults;
pub mod guard;
pub mod iam_data;
pub mod jobs;
pub mod mine;
pub mod notify;
pub mod organization;
pub mod plan;
pub mod ports;
pub mod reconcile;
pub mod records;
pub mod rotate;
pub mod self_policy;
pub mod snapshot;
pub mod split;
pub mod status;
pub mod switch;
pub mod targets;
pub mod time;
pub mod trail;
pub mod trial;
pub mod usage;

#[cfg(test)]
mod testing;
#[cfg(test)]
mod workflow_tests;

use std::sync::Arc;

use whittle_state::State;

pub use config::Config;
pub use ports::Ports;

/// What every workflow works with: the configuration, the state, the ports, and the turns
/// that keep two actors of this process off one subject.
#[derive(Debug)]
pub struct Engine<P> {
    pub config: Arc<Config>,
    pub state: Arc<State>,
    pub ports: Arc<P>,
    pub turns: Arc<guard::Turns>,
    /// The shared request pace per quota (LookupEvents, IAM account reads), account and
    /// region.
    pub pace: Arc<guard::Pace>,
}

impl<P> Clone for Engine<P> {
    fn clone(&self) -> Self {
        Engine {
            config: Arc::clone(&self.config),
            state: Arc::clone(&self.state),
            ports: Arc::clone(&self.ports),
            turns: Arc::clone(&self.turns),
            pace: Arc::clone(&self.pace),
        }
    }
}

impl<P: Ports> Engine<P> {
    pub fn new(config: Config, state: State, ports: P) -> Engine<P> {
        Engine {
            config: Arc::new(config),
            state: Arc::new(state),
            ports: Arc::new(ports),
            turns: Arc::default(),
            pace: Arc::default(),
        }
    }

    /// The same engine with another configuration (a command's overrides).
    pub fn with_config(&self, config: Config) -> Engine<P> {
        Engine {
            config: Arc::new(config),
            ..self.clone()
        }
    }

    /// The time now, from the clock port.
    pub fn now(&self) -> whittle_state::Timestamp {
        whittle_state::Clock::now(&*self.ports)
    }
}

/// An error and its causes as one message, skipping a cause whose text the message already
/// carries (error types that print their source would otherwise say it twice).
pub fn one_line(error: &anyhow::Error) -> String {
    let mut out = error.to_string();
    for cause in error.chain().skip(1) {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
    }
    out
}
