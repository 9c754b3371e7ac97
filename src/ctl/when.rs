//! The moments latchctl's commands take (`audit export --since/--until`,
//! `backup restore --to-time`, `api-keys create --expires-at`), read here
//! in one way: RFC 3339, a date alone (its 00:00 UTC, as journalctl reads
//! one), Unix seconds, or — where a past moment is meant — a while ago
//! ("24h": that long before now, read as the config's durations are).
//! Read here rather than passed on, so a mistake is told in latchctl's
//! terms: "3651d" is too long a while, not a malformed time.

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime};

use crate::config::HumanDuration;

/// `arg` as Unix seconds; clap's parser for a moment argument.
pub fn moment(arg: &str) -> Result<i64, String> {
    let arg = arg.trim();
    if looks_like_a_while(arg) {
        let ago = arg.parse::<HumanDuration>()?;
        let secs = i64::try_from(ago.0.as_secs()).map_err(|e| e.to_string())?;
        return Ok(crate::clock::now_unix().saturating_sub(secs));
    }
    fixed(arg).ok_or_else(|| format!("{EXPECTED}, Unix seconds, or a while ago like 24h"))
}

/// `--expires-at`: a moment named outright, as RFC 3339 for the daemon. A
/// while ("90d") is meant from now, which is `--for`'s, and is told so
/// rather than read as 90 days ago.
pub fn deadline(arg: &str) -> Result<String, String> {
    let arg = arg.trim();
    if looks_like_a_while(arg) {
        return Err(format!("a while from now is given as --for {arg}"));
    }
    let secs = fixed(arg).ok_or_else(|| format!("{EXPECTED} or Unix seconds"))?;
    // Out of range, `rfc3339` would say 1970 and the daemon "in the past".
    OffsetDateTime::from_unix_timestamp(secs).map_err(|_| "is past the year 9999".to_string())?;
    Ok(crate::clock::rfc3339(secs))
}

const EXPECTED: &str =
    "expected a time like 2026-12-02T10:15:00Z, a date like 2026-12-02 (from its 00:00 UTC)";

/// Unix seconds, RFC 3339 or a date alone (its 00:00 UTC).
fn fixed(arg: &str) -> Option<i64> {
    if let Ok(secs) = arg.parse::<i64>() {
        return Some(secs);
    }
    if let Ok(at) = OffsetDateTime::parse(arg, &Rfc3339) {
        return Some(at.unix_timestamp());
    }
    let day = Date::parse(arg, format_description!("[year]-[month]-[day]")).ok()?;
    Some(day.midnight().assume_utc().unix_timestamp())
}

/// Digits then letters ("15m", "7d", "5y"): meant as a while, so a unit
/// latch does not read, or a while too long, is told as such.
fn looks_like_a_while(arg: &str) -> bool {
    let unit = arg.trim_start_matches(|c: char| c.is_ascii_digit());
    unit.len() < arg.len() && !unit.is_empty() && unit.chars().all(|c| c.is_ascii_alphabetic())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_way_of_naming_a_moment_is_read() {
        assert_eq!(moment("1796563596"), Ok(1_796_563_596));
        assert_eq!(moment("2026-12-02T10:15:00Z"), Ok(1_796_206_500));
        assert_eq!(moment("2026-12-02T11:15:00+01:00"), Ok(1_796_206_500));
        assert_eq!(moment("2026-12-02"), Ok(1_796_169_600));
        let hour_ago = moment("1h").unwrap();
        assert!((crate::clock::now_unix() - 3600 - hour_ago).abs() <= 1, "{hour_ago}");
    }

    #[test]
    fn a_mistake_is_told_for_what_was_meant() {
        assert!(moment("3651d").unwrap_err().contains("longer than the longest duration"));
        assert!(moment("5y").unwrap_err().contains("expected a duration like"));
        let told = moment("yesterday").unwrap_err();
        assert!(told.contains("a date like 2026-12-02") && told.contains("a while ago like 24h"), "{told}");
        assert!(moment("2026-13-02").unwrap_err().contains("expected a time like"));
    }

    #[test]
    fn a_deadline_is_named_outright_and_a_while_is_sent_to_for() {
        assert_eq!(deadline("2027-01-31").as_deref(), Ok("2027-01-31T00:00:00Z"));
        assert_eq!(deadline("2027-01-31T12:00:00+01:00").as_deref(), Ok("2027-01-31T11:00:00Z"));
        assert_eq!(deadline("90d"), Err("a while from now is given as --for 90d".into()));
        assert_eq!(deadline("99999999999999"), Err("is past the year 9999".into()));
        assert!(deadline("next week").unwrap_err().ends_with("(from its 00:00 UTC) or Unix seconds"));
    }
}
