//! whittle's integration tests: the real binary and the AWS SDK against the local emulator.
//! One test binary (ripgrep style); each module covers one capability.

mod accounts;
mod athena;
mod cli;
mod daemon;
// The longest test (the demo run 23 times, one per statement of whittle's own policy): named to
// sort early, as libtest starts tests in name order and the run ends with its longest starter.
mod demo_self_policy;
mod emulator;
mod functions;
mod layout;
mod mining;
mod plan;
mod report;
mod rotation;
mod split;
mod support;
mod trial;
