//! The moments latchctl's commands take (`audit export --since/--until`,
//! `backup restore --to-time`), read here in one way: RFC 3339, a date
//! alone (its 00:00 UTC, as journalctl reads one), Unix seconds, or a
//! while ago ("24h": that long before now, read as the config's durations
//! are). Read here rather than passed on, so a mistake is told in
//! latchctl's terms: "3651d" is too long a while, not a malformed time.

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime};

use crate::config::HumanDuration;

/// `arg` as Unix seconds; clap's parser for a moment argument.
pub fn moment(arg: &str) -> Result<i64, String> {
    let arg = arg.trim();
    if let Ok(secs) = arg.parse::<i64>() {
        return Ok(secs);
    }
    if looks_like_a_while(arg) {
        let ago = arg.parse::<HumanDuration>()?;
        let secs = i64::try_from(ago.0.as_secs()).map_err(|e| e.to_string())?;
        return Ok(crate::clock::now_unix().saturating_sub(secs));
    }
    if let Ok(at) = OffsetDateTime::parse(arg, &Rfc3339) {
        return Ok(at.unix_timestamp());
    }
    if let Ok(day) = Date::parse(arg, format_description!("[year]-[month]-[day]")) {
        return Ok(day.midnight().assume_utc().unix_timestamp());
    }
    Err("expected a time like 2026-12-02T10:15:00Z, a date like 2026-12-02 (from its 00:00 UTC), \
         Unix seconds, or a while ago like 24h"
        .into())
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
}
