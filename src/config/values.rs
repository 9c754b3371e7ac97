//! Value types of the config file that carry their own syntax ("15m",
//! "64KiB", "100/1m", CIDRs), parsed during deserialization so a bad value is
//! reported with the span — and so the line — of the value itself.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer};
use serde::{Serialize, Serializer};

/// A duration written as a number and a unit: `500ms`, `30s`, `15m`, `2h`, `7d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub const fn secs(s: u64) -> Self {
        HumanDuration(Duration::from_secs(s))
    }
}

impl FromStr for HumanDuration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let err = || format!("expected a duration like \"30s\", \"15m\" or \"7d\", got {s:?}");
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
        let (num, unit) = s.split_at(split);
        let n: u64 = num.parse().map_err(|_| err())?;
        let unit_secs = |mult: u64| n.checked_mul(mult).map(Duration::from_secs);
        let d = match unit {
            "ms" => Some(Duration::from_millis(n)),
            "s" => unit_secs(1),
            "m" => unit_secs(60),
            "h" => unit_secs(3600),
            "d" => unit_secs(86_400),
            _ => None,
        };
        let d = d.ok_or_else(err)?;
        if d > MAX_DURATION {
            return Err(format!("{s:?} is longer than the longest duration allowed, \"3650d\" (10 years)"));
        }
        Ok(HumanDuration(d))
    }
}

/// Every duration in the config is at most ten years, so `now + ttl` can
/// never overflow and a typo of a few zeros is caught.
pub const MAX_DURATION: Duration = Duration::from_secs(3650 * 86_400);

/// The largest unit that divides the duration evenly: "7d", "15m", "250ms".
impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        let (n, unit) = [(86_400_000, "d"), (3_600_000, "h"), (60_000, "m"), (1000, "s")]
            .into_iter()
            .find(|(u, _)| ms > 0 && ms.is_multiple_of(*u))
            .map_or((ms, "ms"), |(u, name)| (ms / u, name));
        write!(f, "{n}{unit}")
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.count, HumanDuration(self.period))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A size in bytes: `65536`, `64KiB`, `1MiB`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let err = || format!("expected a size like \"64KiB\" or \"1MiB\", got {s:?}");
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: u64 = num.parse().map_err(|_| err())?;
        let mult = match unit {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            _ => return Err(err()),
        };
        n.checked_mul(mult).map(ByteSize).ok_or_else(err)
    }
}

/// A rate limit written `"N/period"`, e.g. `"100/1m"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub period: Duration,
}

impl FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let err = || format!("expected \"N/period\" like \"100/1m\", got {s:?}");
        let (count, period) = s.split_once('/').ok_or_else(err)?;
        let count: u32 = count.trim().parse().map_err(|_| err())?;
        let period = HumanDuration::from_str(period).map_err(|_| err())?.0;
        if count == 0 || period.is_zero() {
            return Err(format!("a rate needs a count and a period above zero, got {s:?}"));
        }
        Ok(Rate { count, period })
    }
}

/// An IP network in CIDR notation; a bare address means a single host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr(pub ipnet::IpNet);

impl FromStr for Cidr {
    type Err = String;
    /// Refuses a network with bits set past its prefix: `203.0.113.7/2`
    /// is more likely a typo than a wish to cover a quarter of IPv4, and
    /// silently widening a block or a trusted range is the worse outcome.
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Ok(net) = s.parse::<ipnet::IpNet>() {
            if net.trunc() != net {
                return Err(format!(
                    "{s:?} has bits set past its /{} prefix: the network is {}; write that, or the prefix you meant",
                    net.prefix_len(),
                    net.trunc()
                ));
            }
            return Ok(Cidr(net));
        }
        s.parse::<std::net::IpAddr>()
            .map(|ip| Cidr(ipnet::IpNet::from(ip)))
            .map_err(|_| format!("expected a CIDR like \"10.0.0.0/8\" or an address, got {s:?}"))
    }
}

/// A path where an empty string means "not set" (how the shipped file
/// spells an unset path).
pub(super) fn optional_path<'de, D: Deserializer<'de>>(d: D) -> Result<Option<std::path::PathBuf>, D::Error> {
    let s = String::deserialize(d)?;
    Ok(Some(s).filter(|s| !s.trim().is_empty()).map(std::path::PathBuf::from))
}

/// A duration where an empty string means "not set".
pub(super) fn optional_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<HumanDuration>, D::Error> {
    let s = String::deserialize(d)?;
    if s.trim().is_empty() {
        return Ok(None);
    }
    s.parse().map(Some).map_err(de::Error::custom)
}

macro_rules! deserialize_from_str {
    ($($t:ty),*) => {$(
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(de::Error::custom)
            }
        }
    )*};
}
deserialize_from_str!(HumanDuration, ByteSize, Rate, Cidr);

/// Values are shown as they are written in the file.
macro_rules! serialize_display {
    ($($t:ty),*) => {$(
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    )*};
}
serialize_display!(HumanDuration, Rate, Cidr);

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!("15m".parse::<HumanDuration>().unwrap().0, Duration::from_secs(900));
        assert_eq!("7d".parse::<HumanDuration>().unwrap().0, Duration::from_secs(604_800));
        assert_eq!("250ms".parse::<HumanDuration>().unwrap().0, Duration::from_millis(250));
        assert!("15".parse::<HumanDuration>().is_err());
        assert!("m".parse::<HumanDuration>().is_err());
        assert!("5w".parse::<HumanDuration>().is_err());
        assert!("3650d".parse::<HumanDuration>().is_ok());
        assert!("3651d".parse::<HumanDuration>().unwrap_err().contains("10 years"));
        assert!("99999999999999999999s".parse::<HumanDuration>().is_err());
        for shown in ["7d", "15m", "90s", "250ms", "0ms"] {
            assert_eq!(shown.parse::<HumanDuration>().unwrap().to_string(), shown);
        }
    }

    #[test]
    fn networks_with_bits_past_their_prefix_are_refused() {
        assert!("10.1.2.3/8".parse::<Cidr>().unwrap_err().contains("the network is 10.0.0.0/8"));
        assert_eq!("2001:db8::1".parse::<Cidr>().unwrap().0.to_string(), "2001:db8::1/128");
        let typo = "10.0.0.0/4".parse::<Cidr>().unwrap_err();
        assert!(typo.contains("/4 prefix") && typo.contains("0.0.0.0/4"), "{typo}");
        assert!("2001:db8::1/32".parse::<Cidr>().unwrap_err().contains("2001:db8::/32"));
    }

    #[test]
    fn sizes_and_rates_parse() {
        assert_eq!("64KiB".parse::<ByteSize>().unwrap().0, 65_536);
        assert_eq!("100".parse::<ByteSize>().unwrap().0, 100);
        assert!("64KB".parse::<ByteSize>().is_err());
        let r: Rate = "100/1m".parse().unwrap();
        assert_eq!((r.count, r.period), (100, Duration::from_secs(60)));
        assert!("100 per minute".parse::<Rate>().is_err());
        assert!("0/1m".parse::<Rate>().is_err());
    }

    #[test]
    fn cidrs_accept_bare_addresses() {
        assert_eq!("10.0.0.0/8".parse::<Cidr>().unwrap().0.to_string(), "10.0.0.0/8");
        assert_eq!("::1".parse::<Cidr>().unwrap().0.to_string(), "::1/128");
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
    }
}
