//! whittle's integration tests: the real binary and the AWS SDK against the local emulator.
//! One test binary (ripgrep style); each module covers one capability.

mod accounts;
mod athena;
mod cli;
mod daemon;
mod emulator;
mod functions;
mod mining;
mod plan;
mod report;
mod rotation;
mod self_policy;
mod split;
mod support;
mod trial;
