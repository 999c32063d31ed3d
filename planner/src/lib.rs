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

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    /// The repository's root: the nearest directory above the crate with a `Cargo.lock`.
    fn repo_root() -> &'static Path {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .find(|dir| dir.join("Cargo.lock").exists())
            .expect("the workspace root")
    }

    /// A path in the shared test data beside the repository (`../shared/testdata`).
    pub(crate) fn shared_testdata(relative: &str) -> PathBuf {
        repo_root().join("../shared/testdata").join(relative)
    }

    /// The unit tests are built from this source by `whittle-planner-unit`, which must build it
    /// with exactly the planner's dependencies.
    #[test]
    fn planner_unit_manifest_matches_the_planner() {
        let manifest = |path: PathBuf| -> toml::Table {
            let text = std::fs::read_to_string(&path).expect("a manifest");
            toml::from_str(&text).expect("TOML")
        };
        let planner = manifest(repo_root().join("planner/Cargo.toml"));
        let unit = manifest(repo_root().join("planner/unit/Cargo.toml"));
        for table in ["dependencies", "dev-dependencies"] {
            assert_eq!(
                unit.get(table),
                planner.get(table),
                "planner/unit/Cargo.toml's [{table}] differ from planner/Cargo.toml's"
            );
        }
    }
}
