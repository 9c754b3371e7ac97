//! Wall-clock time in the two forms the API and the database use: RFC 3339
//! UTC text and Unix seconds.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub fn now_unix() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// Milliseconds since the Unix epoch (WAL archive commit times). A test
/// sets this clock ahead, as a host's clock is before it is corrected:
/// `LATCH_TEST_PAUSE="clock_ahead:7200000"` (debug builds only).
pub fn now_unix_ms() -> i64 {
    let ahead = crate::pause::duration("clock_ahead").map_or(0, |d| d.as_millis() as i64);
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64 + ahead
}

/// Current time as RFC 3339 UTC with whole seconds, e.g. `2026-11-22T10:00:00Z`.
pub fn now_rfc3339() -> String {
    rfc3339(now_unix())
}

pub fn rfc3339(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".into())
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_whole_seconds_in_utc() {
        assert_eq!(super::rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
