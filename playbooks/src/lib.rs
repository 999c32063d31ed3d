//! whittle's trial and rotation playbooks and their executor.
//!
//! The playbook files (TOML) live beside this crate in `playbooks/`. The executor drives
//! rotations through ports it defines here ([`rotation::machine::Ports`]) and that the daemon
//! implements with the AWS SDK; no SDK type ever enters this crate. A trial playbook is
//! data the daemon's trial runner reads.
//!
//! - [`trial`]: trial playbooks (window, mode, exercise, signals).
//! - [`rotation`]: rotation playbooks (`random`, `command`), secret values that redact
//!   themselves, and the journaled rotation state machine.

pub mod rotation;
pub mod trial;
