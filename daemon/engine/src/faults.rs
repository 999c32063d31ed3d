//! Fault injection for the crash tests.
//!
//! Debug builds only: when `WHITTLE_CRASH_AFTER` names a crash point, the process aborts
//! right there (no destructors, no flushing beyond what was already durable), as a SIGKILL
//! would. The crash tests run each journalled operation once per crash point and prove that
//! the next start restores a consistent state. Release builds compile this to nothing.

/// A point right after a durable journal write, named `operation:step`.
pub fn crash_point(point: &str) {
    #[cfg(debug_assertions)]
    if std::env::var("WHITTLE_CRASH_AFTER").is_ok_and(|wanted| wanted == point) {
        eprintln!("WHITTLE_CRASH_AFTER={point}: aborting");
        std::process::abort();
    }
    #[cfg(not(debug_assertions))]
    let _ = point;
}
