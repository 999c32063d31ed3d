//! whittle's planning logic: pure functions over data, no IO.
//!
//! Today it holds target selection, the first safety rule every later stage relies on:
//! which roles whittle may touch at all. Mining, usage and proposals grow here as their own
//! modules; the AWS-facing parts stay in the daemon, behind ports this crate defines.

pub mod targets;
