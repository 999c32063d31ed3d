//! Formatting whittle's one time type, [`Timestamp`]. Reading the clock is a port
//! ([`whittle_state::Clock`]); nothing here reads it.

use std::time::{Duration, UNIX_EPOCH};

pub use whittle_state::Timestamp;

/// RFC 3339 in UTC, to the second: `2026-11-24T10:00:00Z`.
pub fn format(at: Timestamp) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(at.0)).to_string()
}

/// The same instant as chrono's type, for cron schedules.
pub fn to_chrono(at: Timestamp) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(at.as_millis_i64()).unwrap_or_default()
}

/// A new id: `PREFIX-` then the UTC time to the second and a random suffix, so ids sort by
/// age and never collide.
pub fn new_id(prefix: &str, now: Timestamp) -> String {
    let compact: String = format(now)
        .chars()
        .filter(char::is_ascii_digit)
        .take(14)
        .collect();
    format!(
        "{prefix}-{}-{}",
        compact,
        &format!("{:08x}", rand::random::<u32>())[..4]
    )
}
