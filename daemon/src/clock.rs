//! The one place whittle reads the wall clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use whittle_state::Timestamp;

pub fn now() -> Timestamp {
    // A clock before 1970 is a broken host; treat it as the epoch rather than panic.
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    Timestamp(u64::try_from(millis).unwrap_or(u64::MAX))
}

/// Milliseconds since the Unix epoch, signed, as the planner's times are.
pub fn now_ms() -> i64 {
    i64::try_from(now().0).unwrap_or(i64::MAX)
}

/// RFC 3339 in UTC, to the second: `2026-11-24T10:00:00Z`.
pub fn format(at: Timestamp) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(at.0)).to_string()
}

pub fn to_chrono(at: Timestamp) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(i64::try_from(at.0).unwrap_or(i64::MAX))
        .unwrap_or_default()
}
