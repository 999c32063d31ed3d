//! whittle's trial and rotation playbooks and their executor.
//!
//! The playbook files (TOML) live beside this crate in `playbooks/`. The executor will drive
//! trials and rotations through ports it defines here (`IamApi`, `SecretStore`, `Clock`, ...)
//! and that the daemon implements with the AWS SDK; no SDK type ever enters this crate.
//! The crate is empty until the trial and rotation features land; it exists now so the
//! workspace layout and dependency direction (daemon -> playbooks -> state) are fixed.
