//! What the login rules (`new_ip`, `new_devices`) know of an account's
//! earlier sign-ins: the networks they came from, and when each device was
//! first seen. Kept in memory per account: loaded from the account's newest
//! sessions at its first login, then brought up to date by every login
//! after it, so a login reads the database only when its account is not in
//! memory. (Grouping up to 1,000 sessions on every login was a third of
//! latch's own work around one.)
//!
//! latch is one process and every session starts with a login that passes
//! through here, so memory and the table agree, but for two differences
//! that can only make a rule fire less, never more: a remembered place
//! stays known while its sessions leave the table (swept after they end,
//! or more than 1,000 sessions back), until the account is forgotten and
//! loaded again, at most `KEPT_FOR` after it was loaded.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::queries::SeenSession;

/// How long an account's places are kept before they are read again.
const KEPT_FOR: Duration = Duration::from_secs(15 * 60);
/// Accounts kept at once (most take a few hundred bytes).
const MAX_ACCOUNTS: usize = 10_000;
/// Networks and devices kept for one account; an account past it is read
/// from the database again (where only the newest 1,000 sessions count).
const MAX_PLACES: usize = 2_000;
/// Networks and devices kept for all accounts together (about 50 bytes
/// each), checked as an account is kept (the logins of kept accounts add
/// a few more until the next): accounts made to sign in from a thousand
/// places each cannot grow the daemon by more than ~10 MB.
const MAX_KEPT_PLACES: usize = 200_000;

/// One login, as the rules see it.
pub struct Login<'a> {
    pub ip: &'a str,
    /// The device name the client gave, else its user agent.
    pub device: Option<&'a str>,
    pub at: i64,
}

/// What the rules make of a login.
#[derive(Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The login came from a network none of the earlier sessions did
    /// (never true for an account's first session).
    pub new_network: bool,
    /// Devices first seen within the window, this login's included.
    pub new_devices: usize,
}

/// Every account's known places; one per daemon.
pub struct Places {
    kept: Mutex<Kept>,
    /// Devices are kept as keyed hashes: a user agent can be long, and
    /// only equality matters.
    keys: RandomState,
}

/// The accounts kept, and how many places they hold together.
#[derive(Default)]
struct Kept {
    accounts: HashMap<String, Known>,
    places: usize,
}

/// One account's earlier sign-ins.
struct Known {
    loaded: Instant,
    v6_prefix: u8,
    /// Whether there is any earlier session at all.
    any: bool,
    networks: HashSet<ipnet::IpNet>,
    /// Device hash → when it was first seen.
    devices: HashMap<u64, i64>,
}

impl Places {
    pub fn new() -> Self {
        Self { kept: Mutex::new(Kept::default()), keys: RandomState::new() }
    }

    /// The verdict on `login`, which is then remembered — if the account
    /// is in memory, for networks as `v6_prefix` groups them.
    pub fn judge(&self, user_id: &str, login: &Login, window: Duration, v6_prefix: u8) -> Option<Verdict> {
        let mut kept = self.kept.lock().ok()?;
        let known = kept.accounts.get_mut(user_id)?;
        if known.v6_prefix != v6_prefix || known.loaded.elapsed() >= KEPT_FOR {
            kept.remove(user_id);
            return None;
        }
        let before = known.size();
        let verdict = known.judge_and_add(login, window, &self.keys);
        let after = known.size();
        kept.places += after - before;
        if after > MAX_PLACES {
            kept.remove(user_id);
        }
        Some(verdict)
    }

    /// The verdict on `login` from the account's `earlier` sessions (read
    /// from the store, the newest first or not); the account is then kept.
    pub fn judge_read(
        &self,
        user_id: &str,
        earlier: &[SeenSession],
        login: &Login,
        window: Duration,
        v6_prefix: u8,
    ) -> Verdict {
        let mut known = Known::read(earlier, v6_prefix, &self.keys);
        let verdict = known.judge_and_add(login, window, &self.keys);
        self.keep(user_id, known);
        verdict
    }

    /// Keeps `known` for `user_id`, merged with what another login of the
    /// same account kept meanwhile (both saw only sessions that exist).
    fn keep(&self, user_id: &str, known: Known) {
        let Ok(mut kept) = self.kept.lock() else { return };
        if let Some(earlier) = kept.accounts.get_mut(user_id)
            && earlier.v6_prefix == known.v6_prefix
        {
            let before = earlier.size();
            earlier.merge(known);
            let after = earlier.size();
            kept.places += after - before;
            if after > MAX_PLACES {
                kept.remove(user_id);
            }
            return;
        }
        kept.remove(user_id);
        if known.size() > MAX_PLACES {
            return;
        }
        if kept.full(known.size()) {
            kept.retain_fresh();
        }
        if kept.full(known.size()) {
            // All recent: start over rather than scan for the oldest on
            // every login; each account costs one read to come back.
            *kept = Kept::default();
        }
        kept.places += known.size();
        kept.accounts.insert(user_id.to_string(), known);
    }

    /// Forgets accounts loaded more than `KEPT_FOR` ago.
    pub fn evict(&self) {
        if let Ok(mut kept) = self.kept.lock() {
            kept.retain_fresh();
            kept.accounts.shrink_to_fit();
        }
    }
}

impl Kept {
    fn remove(&mut self, user_id: &str) {
        if let Some(known) = self.accounts.remove(user_id) {
            self.places -= known.size();
        }
    }

    fn retain_fresh(&mut self) {
        self.accounts.retain(|_, k| k.loaded.elapsed() < KEPT_FOR);
        self.places = self.accounts.values().map(Known::size).sum();
    }

    /// No room for one more account with `places`.
    fn full(&self, places: usize) -> bool {
        self.accounts.len() >= MAX_ACCOUNTS || self.places + places > MAX_KEPT_PLACES
    }
}

/// The start of the `new_devices` window ending at `at`.
fn since(at: i64, window: Duration) -> i64 {
    at - i64::try_from(window.as_secs()).unwrap_or(i64::MAX / 2)
}

/// The network an address belongs to for `new_ip`: its /24 for IPv4, its
/// /`v6_prefix` for IPv6 (a home connection keeps neither exactly).
fn network(ip: &str, v6_prefix: u8) -> Option<ipnet::IpNet> {
    let ip: IpAddr = ip.parse().ok()?;
    let prefix = if ip.is_ipv4() { 24 } else { v6_prefix.min(128) };
    ipnet::IpNet::new(ip, prefix).ok().map(|n| n.trunc())
}

impl Known {
    fn read(earlier: &[SeenSession], v6_prefix: u8, keys: &RandomState) -> Self {
        let mut known = Known {
            loaded: Instant::now(),
            v6_prefix,
            any: !earlier.is_empty(),
            networks: HashSet::new(),
            devices: HashMap::new(),
        };
        for seen in earlier {
            known.networks.extend(seen.ip.as_deref().and_then(|ip| network(ip, v6_prefix)));
            if let Some(device) = &seen.device {
                known.first_seen(keys.hash_one(device.as_str()), seen.created_at);
            }
        }
        known
    }

    /// The verdict on `login` against what is known, which then includes it.
    fn judge_and_add(&mut self, login: &Login, window: Duration, keys: &RandomState) -> Verdict {
        let device = login.device.map(|d| keys.hash_one(d));
        let verdict = self.judge(login, device, since(login.at, window));
        self.add(login, device);
        verdict
    }

    /// A device is new within the window when it was first seen at or
    /// after `since`; this login's device counts unless it was seen before.
    fn judge(&self, login: &Login, device: Option<u64>, since: i64) -> Verdict {
        let net = network(login.ip, self.v6_prefix);
        let new_network = self.any && net.is_some_and(|n| !self.networks.contains(&n));
        let mut new_devices = self.devices.values().filter(|first| **first >= since).count();
        if device.is_some_and(|d| !self.devices.contains_key(&d)) {
            new_devices += 1;
        }
        Verdict { new_network, new_devices }
    }

    /// Networks and devices kept.
    fn size(&self) -> usize {
        self.networks.len() + self.devices.len()
    }

    fn add(&mut self, login: &Login, device: Option<u64>) {
        self.any = true;
        self.networks.extend(network(login.ip, self.v6_prefix));
        if let Some(device) = device {
            self.first_seen(device, login.at);
        }
    }

    fn first_seen(&mut self, device: u64, at: i64) {
        self.devices.entry(device).and_modify(|first| *first = (*first).min(at)).or_insert(at);
    }

    fn merge(&mut self, other: Known) {
        self.any |= other.any;
        self.networks.extend(other.networks);
        for (device, at) in other.devices {
            self.first_seen(device, at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn seen(created_at: i64, ip: &str, device: &str) -> SeenSession {
        SeenSession { created_at, ip: Some(ip.into()), device: Some(device.into()) }
    }

    fn login<'a>(ip: &'a str, device: &'a str, at: i64) -> Login<'a> {
        Login { ip, device: Some(device), at }
    }

    fn read(earlier: &[SeenSession], login: &Login) -> Verdict {
        Places::new().judge_read("u", earlier, login, HOUR, 64)
    }

    #[test]
    fn new_networks_and_new_devices_are_told_from_known_ones() {
        let earlier = [seen(0, "198.51.100.7", "laptop")];
        assert!(!read(&earlier, &login("198.51.100.99", "laptop", 10)).new_network, "same /24");
        assert!(read(&earlier, &login("203.0.113.9", "laptop", 10)).new_network);
        assert!(!read(&[], &login("203.0.113.9", "laptop", 10)).new_network, "a first login is not new");
        assert!(!read(&earlier, &login("unix", "laptop", 10)).new_network, "no address, no network");
        let recent = [seen(0, "x", "laptop"), seen(5000, "x", "phone"), seen(5100, "x", "tablet")];
        assert_eq!(read(&recent, &login("x", "watch", 5200)).new_devices, 3);
        assert_eq!(read(&recent, &login("x", "laptop", 5200)).new_devices, 2);
        assert_eq!(read(&recent, &login("x", "phone", 5200)).new_devices, 2);
        let again = [seen(0, "x", "phone"), seen(5000, "x", "phone")];
        assert_eq!(read(&again, &login("x", "watch", 5200)).new_devices, 1, "phone was seen before");
    }

    #[test]
    fn logins_judged_from_memory_agree_with_the_store_every_time() {
        let places = Places::new();
        let ips = ["192.0.2.1", "192.0.2.200", "198.51.100.7", "2001:db8:1:2::1", "2001:db8:1:3::1", "unix"];
        let devices = ["laptop", "phone", "tablet", "watch", "tv"];
        let mut earlier: Vec<SeenSession> = Vec::new();
        for i in 0..200_i64 {
            let (ip, device, at) = (ips[(i * 7 % 11 % 6) as usize], devices[(i * i % 5) as usize], i * 97);
            let now = login(ip, device, at);
            let from_memory = match places.judge("u", &now, HOUR, 64) {
                Some(verdict) => verdict,
                None => places.judge_read("u", &earlier, &now, HOUR, 64),
            };
            assert_eq!(from_memory, read(&earlier, &now), "login {i} from {ip} on {device}");
            earlier.push(seen(at, ip, device));
        }
        let fired = |v: Verdict| (v.new_network, v.new_devices > 1);
        let verdicts: Vec<_> =
            (0..200).map(|i| fired(read(&earlier[..i], &login(ips[i % 6], "tv", 0)))).collect();
        assert!(
            verdicts.contains(&(true, true)) && verdicts.contains(&(false, false)),
            "a sequence that tells"
        );
        let next = login("192.0.2.1", "laptop", 20_000);
        assert!(places.judge("u", &next, HOUR, 64).is_some(), "kept");
        assert!(places.judge("u", &next, HOUR, 48).is_none(), "another IPv6 prefix reads again");
    }

    #[test]
    fn two_first_logins_at_once_keep_what_both_read() {
        let places = Places::new();
        let old = [seen(0, "192.0.2.1", "laptop")];
        places.judge_read("u", &old, &login("198.51.100.7", "phone", 10_000), HOUR, 64);
        // The other login read before the first one's session existed.
        places.judge_read("u", &old, &login("203.0.113.9", "tablet", 10_001), HOUR, 64);
        let next = places.judge("u", &login("198.51.100.8", "phone", 10_020), HOUR, 64).unwrap();
        assert!(!next.new_network, "the first login's network is known");
        let next = places.judge("u", &login("203.0.113.10", "tablet", 10_021), HOUR, 64).unwrap();
        assert_eq!(next, Verdict { new_network: false, new_devices: 2 });
    }

    #[test]
    fn all_accounts_together_keep_a_bounded_number_of_places() {
        let places = Places::new();
        let earlier: Vec<SeenSession> =
            (0..1000).map(|i| seen(i, &format!("10.{}.{}.1", i / 256, i % 256), "tv")).collect();
        let accounts = MAX_KEPT_PLACES / 1002 + 1;
        for a in 0..accounts {
            places.judge_read(&format!("u{a}"), &earlier, &login("192.0.2.1", "tv", 5000), HOUR, 64);
        }
        let kept = places.kept.lock().unwrap();
        assert!(kept.places <= MAX_KEPT_PLACES, "{} places kept", kept.places);
        assert_eq!(kept.places, kept.accounts.values().map(Known::size).sum::<usize>());
        assert!(kept.accounts.contains_key(&format!("u{}", accounts - 1)), "the newest is kept");
        assert!(!kept.accounts.contains_key("u0"), "the oldest were let go");
    }

    #[test]
    fn an_account_with_too_many_places_is_read_again() {
        let places = Places::new();
        places.judge_read("u", &[], &login("192.0.2.1", "d0", 0), HOUR, 64);
        let names: Vec<String> = (1..=MAX_PLACES).map(|i| format!("d{i}")).collect();
        for (i, name) in names.iter().enumerate() {
            let judged = places.judge("u", &login("192.0.2.1", name, i as i64), HOUR, 64);
            assert_eq!(judged.is_some(), i + 2 <= MAX_PLACES, "device {i}");
            if judged.is_none() {
                return;
            }
        }
        panic!("never forgotten");
    }
}
