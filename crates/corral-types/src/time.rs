//! Wall-clock helpers. Times are stored as integer milliseconds since the Unix epoch on both
//! stores, so no database-specific time type leaks into SQL.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
