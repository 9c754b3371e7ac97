//! Wall-clock time in the forms the API and the database use: RFC 3339
//! UTC text, Unix seconds, and Unix milliseconds for the WAL archive. Debug
//! builds let a test run this clock ahead and set it back (`test_ahead`).

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub fn now_unix() -> i64 {
    now().unix_timestamp()
}

/// Milliseconds since the Unix epoch (WAL archive commit times).
pub fn now_unix_ms() -> i64 {
    (now().unix_timestamp_nanos() / 1_000_000) as i64
}

fn now() -> OffsetDateTime {
    let real = OffsetDateTime::now_utc();
    #[cfg(debug_assertions)]
    return real + test_ahead(real);
    #[cfg(not(debug_assertions))]
    real
}

/// How far a test sets this clock ahead, as a host's clock can be before
/// NTP puts it right: `LATCH_TEST_PAUSE="clock_ahead:7200000"` (ms), and
/// with `clock_set_back_at:<Unix ms>` only until the real clock reaches
/// that moment, as if NTP set it right then.
#[cfg(debug_assertions)]
fn test_ahead(real: OffsetDateTime) -> time::Duration {
    let Some(ahead) = crate::pause::duration("clock_ahead") else { return time::Duration::ZERO };
    let set_back_at = crate::pause::duration("clock_set_back_at").map(|d| d.as_millis() as i128);
    if set_back_at.is_some_and(|at| real.unix_timestamp_nanos() / 1_000_000 >= at) {
        return time::Duration::ZERO;
    }
    time::Duration::try_from(ahead).unwrap_or(time::Duration::ZERO)
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
