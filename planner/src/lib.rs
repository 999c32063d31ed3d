//! whittle's planning logic: pure functions over data, no IO.
//!
//! - [`targets`]: which roles whittle may touch at all, the first safety rule.
//! - [`catalog`]: the IAM action catalog (every action, its access level, resource types).
//! - [`trail`]: CloudTrail records, parsed tolerantly from a log file's bytes.
//! - [`mapping`]: CloudTrail event -> IAM action(s), checked against the catalog.
//! - [`usage`]: what each principal used, aggregated, merged, aged out and reported.
//! - [`policy`]: IAM policy documents and the evaluator.
//!
//! The AWS-facing parts (listing S3, LookupEvents, Athena) stay in the daemon.

pub mod benchgen;
pub mod catalog;
pub mod mapping;
pub mod plan;
pub mod policy;
pub mod targets;
pub mod trail;
pub mod usage;
