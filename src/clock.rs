//! Wall-clock time in the forms the API and the database use: RFC 3339
//! UTC text, Unix seconds, and Unix milliseconds for the WAL archive; and
//! whether it has just jumped (`steady`), which deletions by age ask first.
//! Debug builds let a test run this clock ahead and set it back
//! (`test_ahead`).

use std::sync::Mutex;
use std::time::{Duration, Instant};

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
/// NTP puts it right: `LATCH_TEST_PAUSE="clock_ahead:7200000"` (ms); with
/// `clock_jump_at:<Unix ms>` only from the moment the real clock reaches
/// that (a jump while running), and with `clock_set_back_at:<Unix ms>`
/// only until then, as if NTP set it right then.
#[cfg(debug_assertions)]
fn test_ahead(real: OffsetDateTime) -> time::Duration {
    let Some(ahead) = crate::pause::duration("clock_ahead") else { return time::Duration::ZERO };
    let real_ms = real.unix_timestamp_nanos() / 1_000_000;
    let moment = |name| crate::pause::duration(name).map(|d| d.as_millis() as i128);
    let before_jump = moment("clock_jump_at").is_some_and(|at| real_ms < at);
    if before_jump || moment("clock_set_back_at").is_some_and(|at| real_ms >= at) {
        return time::Duration::ZERO;
    }
    time::Duration::try_from(ahead).unwrap_or(time::Duration::ZERO)
}

/// How far the wall clock may move against the monotonic clock between
/// two looks before that counts as a jump. NTP slews by at most 500 ppm: a
/// few milliseconds over the minutes between looks.
const JUMP_MS: i128 = 60_000;
/// How long deletions by age wait after a jump.
const SETTLE: Duration = Duration::from_secs(3600);

/// The wall clock against the monotonic one at the last look.
struct Steadiness {
    anchor: Instant,
    /// Wall-clock ms less monotonic ms since `anchor`.
    offset_ms: i128,
    jumped_at: Option<Instant>,
}

static STEADINESS: Mutex<Option<Steadiness>> = Mutex::new(None);

/// Whether the wall clock has gone at the monotonic clock's pace for the
/// last hour, as far as the looks (every upkeep pass takes one) saw. The
/// upkeep that deletes by age asks first: a clock jumped ahead by a month
/// (a bad time source) would otherwise end every session and delete their
/// refresh tokens, and `[audit].retention` delete a month of audit rows,
/// for good — the clock set right again minutes later brings none back.
/// After a jump either way such deletions wait an hour (WARN, once per
/// jump); a jump that was a correction costs that hour's delay only.
pub fn steady() -> bool {
    let (mono, wall_ms) = (Instant::now(), i128::from(now_unix_ms()));
    let mut looked = STEADINESS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let last = looked.get_or_insert(Steadiness { anchor: mono, offset_ms: wall_ms, jumped_at: None });
    let offset_ms = wall_ms - mono.duration_since(last.anchor).as_millis() as i128;
    let moved_ms = offset_ms - last.offset_ms;
    last.offset_ms = offset_ms;
    if moved_ms.abs() > JUMP_MS {
        last.jumped_at = Some(mono);
        tracing::warn!(
            seconds = moved_ms / 1000,
            "the wall clock jumped: deleting by age (ended sessions, their refresh tokens, expired links, \
             [audit].retention) waits an hour, in case the clock is set right again"
        );
    }
    last.jumped_at.is_none_or(|at| mono.duration_since(at) >= SETTLE)
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
