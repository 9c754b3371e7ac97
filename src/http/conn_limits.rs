//! How many HTTPS connections latchd holds at once. Every connection holds
//! a file descriptor until it ends, and a process out of them can open
//! neither its database nor a backup file nor a connection on its admin
//! socket (actix logs "Too many open files" and stops accepting for half a
//! second at a time). A client needs no password to cost one: a TCP
//! connection that never begins its handshake is held 5 s, so one address
//! opening 200 a second took every descriptor under systemd's default
//! limit of 1024.
//!
//! So the HTTPS listeners count their connections from the accept on, in
//! all and per client network, and close a new one at once, before any
//! TLS work:
//! - beyond `[http].max_connections_per_ip` open from one address (IPv6:
//!   one `[defense].ipv6_prefix` network), unless it is in
//!   `[defense].allowlist` or `trusted_proxies` (a proxy carries many
//!   people's connections) or the limit is 0;
//! - beyond the ceiling: the process's open-file limit less what latchd
//!   keeps for its own files (`reserved_descriptors`), and less the share
//!   of the plain-HTTP and Unix listeners (`Budget`), which actix caps by
//!   pausing its accepts instead.
//!
//! The limits are read at each accept, so a reload applies to the next
//! connection; connections already open stay.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use nix::sys::resource::{RLIM_INFINITY, Resource, getrlimit};

use super::client::canonical;
use crate::config::{Cidr, Config};

/// Refusals are logged at most this often (with a count of those since).
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The counts of open HTTPS connections, shared by every HTTPS listener.
pub struct ConnectionLimits {
    config: Arc<ArcSwap<Config>>,
    ceiling: usize,
    open: Mutex<OpenCounts>,
    warned: Mutex<Warned>,
}

#[derive(Default)]
struct OpenCounts {
    total: usize,
    /// Only the networks under a per-address limit.
    per_network: HashMap<IpAddr, usize>,
}

#[derive(Default)]
struct Warned {
    at: Option<Instant>,
    since: u64,
}

/// Why a connection was closed at its accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    PerAddress { network: IpAddr, limit: usize },
    Ceiling,
}

/// One admitted connection: counted open until dropped.
pub struct CountedConnection {
    limits: Arc<ConnectionLimits>,
    network: Option<IpAddr>,
}

impl Drop for CountedConnection {
    fn drop(&mut self) {
        let mut open = self.limits.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.total = open.total.saturating_sub(1);
        if let Some(network) = self.network
            && let Some(count) = open.per_network.get_mut(&network)
        {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.per_network.remove(&network);
            }
        }
        metrics::gauge!("latch_http_connections_open").set(open.total as f64);
    }
}

/// Descriptors latchd keeps for itself beyond its HTTPS connections: its
/// database pool (two or three per connection, two connections per core),
/// each worker's event loop, backups, the WAL archive, mail files, the
/// admin socket and its callers (`ADMIN_CONNECTIONS` at most), a plain-HTTP
/// listener's proxy.
fn reserved_descriptors(cores: usize) -> usize {
    256 + 8 * cores
}

/// How many connections fit under an open-file limit of `soft`: what the
/// reserve leaves, but never less than a quarter of the limit.
fn ceiling_under(soft: u64, cores: usize) -> usize {
    let soft = usize::try_from(soft).unwrap_or(usize::MAX);
    soft.saturating_sub(reserved_descriptors(cores)).max(soft / 4)
}

/// The connections that fit under the open-file limit, shared between the
/// HTTPS listeners (counted here, a connection past `https` closed at its
/// accept) and the plain-HTTP and Unix listeners: actix counts those per
/// worker and stops accepting at `per_worker` (the kernel queues what
/// comes meanwhile, holding no descriptor of ours), so a flood on a plain
/// listener cannot take the descriptors the database and backups need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// The process's open-file limit (`u64::MAX`: none).
    pub soft: u64,
    pub https: usize,
    /// For each plain-HTTP or Unix listener, on each of its workers.
    pub per_worker: usize,
}

impl Budget {
    /// This process's budget, for `plain` plain-HTTP and Unix listeners
    /// (and HTTPS ones, if `https`) served by `workers` workers each.
    pub fn now(https: bool, plain: usize, workers: usize) -> Budget {
        let soft = match getrlimit(Resource::RLIMIT_NOFILE) {
            Ok((soft, _)) if soft != RLIM_INFINITY => soft,
            _ => u64::MAX,
        };
        Budget::split(soft, https, plain, workers)
    }

    /// Beside HTTPS the plain listeners take a quarter: they are meant for
    /// loopback (a proxy on this host, a metrics scraper, local apps).
    fn split(soft: u64, https: bool, plain: usize, workers: usize) -> Budget {
        let total = ceiling_under(soft, workers);
        let plain_total = match (https, plain) {
            (_, 0) => 0,
            (true, _) => total / 4,
            (false, _) => total,
        };
        let per_worker = (plain_total / plain.max(1) / workers.max(1)).max(1);
        Budget { soft, https: total - plain_total, per_worker }
    }
}

/// The connections open on one plain-HTTP or Unix listener. Actix caps
/// them (`Budget::per_worker` on each worker) by pausing its accepts, so a
/// listener at its cap (an app that never closes its connections) makes
/// new requests wait, not fail: `latch_http_plain_connections_open` beside
/// `latch_http_plain_connections_max` is what shows it.
#[derive(Clone)]
pub struct PlainCount(metrics::Gauge);

impl PlainCount {
    /// The count for `listener` (its address or socket path), which holds
    /// at most `max` connections.
    pub fn new(listener: &str, max: usize) -> PlainCount {
        let label = [("listener", listener.to_string())];
        metrics::gauge!("latch_http_plain_connections_max", &label).set(max as f64);
        let open = metrics::gauge!("latch_http_plain_connections_open", &label);
        open.set(0.0);
        PlainCount(open)
    }

    /// Counts a connection open until what this returns is dropped: kept
    /// in the connection's data, it is dropped when the connection ends.
    pub fn opened(&self) -> PlainConnection {
        self.0.increment(1.0);
        PlainConnection(self.0.clone())
    }
}

/// One open plain-HTTP or Unix connection, counted until dropped.
pub struct PlainConnection(metrics::Gauge);

impl Drop for PlainConnection {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// The network a per-address limit counts: the address itself for IPv4
/// (an IPv4-mapped IPv6 address is read as IPv4), the `v6_prefix` network
/// for IPv6.
fn client_network(ip: IpAddr, v6_prefix: u8) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => ipnet::Ipv6Net::new(v6, v6_prefix.min(128)).map_or(ip, |n| IpAddr::V6(n.network())),
        v4 => v4,
    }
}

fn listed(ip: IpAddr, lists: [&[Cidr]; 2]) -> bool {
    lists.iter().flat_map(|l| l.iter()).any(|c| c.0.contains(&ip))
}

impl ConnectionLimits {
    /// The limits for this process: its ceiling from its budget, the
    /// per-address limit from `config` at each accept.
    pub fn new(config: Arc<ArcSwap<Config>>, budget: &Budget) -> Arc<Self> {
        let (soft, ceiling) = (budget.soft, budget.https);
        metrics::gauge!("latch_http_connections_max").set(ceiling as f64);
        metrics::gauge!("latch_http_connections_open").set(0.0);
        let per_ip = config.load().http.max_connections_per_ip;
        tracing::info!(
            ceiling,
            open_file_limit = soft,
            per_address = per_ip,
            "HTTPS connections: at most {ceiling} at once (the open-file limit {soft} less what latchd keeps \
             for its own files), {per_ip} per client address (0: no limit)"
        );
        Arc::new(ConnectionLimits { config, ceiling, open: Mutex::default(), warned: Mutex::default() })
    }

    /// Counts a connection from `peer` open, or says no (and the caller
    /// closes it).
    pub fn admit(self: &Arc<Self>, peer: Option<IpAddr>) -> Option<CountedConnection> {
        let cfg = self.config.load();
        let limit = cfg.http.max_connections_per_ip;
        let limited = peer.filter(|ip| {
            limit > 0 && !listed(canonical(*ip), [&cfg.defense.allowlist, &cfg.defense.trusted_proxies])
        });
        let network = limited.map(|ip| client_network(ip, cfg.defense.ipv6_prefix));
        let refused = {
            let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
            let from_network = network.map_or(0, |n| open.per_network.get(&n).copied().unwrap_or(0));
            let refused = match network {
                _ if open.total >= self.ceiling => Some(Refusal::Ceiling),
                Some(network) if from_network >= limit => Some(Refusal::PerAddress { network, limit }),
                _ => None,
            };
            if refused.is_none() {
                open.total += 1;
                if let Some(network) = network {
                    *open.per_network.entry(network).or_default() += 1;
                }
                metrics::gauge!("latch_http_connections_open").set(open.total as f64);
            }
            refused
        };
        match refused {
            Some(refusal) => {
                self.refused(refusal);
                None
            }
            None => Some(CountedConnection { limits: Arc::clone(self), network }),
        }
    }

    /// Counts a refusal and logs it, at most once per `WARN_EVERY`.
    fn refused(&self, refusal: Refusal) {
        let reason = match refusal {
            Refusal::PerAddress { .. } => "per_address",
            Refusal::Ceiling => "ceiling",
        };
        metrics::counter!("latch_http_connections_refused_total", "reason" => reason).increment(1);
        let mut warned = self.warned.lock().unwrap_or_else(PoisonError::into_inner);
        warned.since += 1;
        if warned.at.is_some_and(|at| at.elapsed() < WARN_EVERY) {
            return;
        }
        let refused = std::mem::take(&mut warned.since);
        warned.at = Some(Instant::now());
        drop(warned);
        match refusal {
            Refusal::PerAddress { network, limit } => tracing::warn!(
                refused,
                client = %network,
                "closed new HTTPS connections at once: {network} already holds {limit} \
                 ([http].max_connections_per_ip; an address in [defense].allowlist or trusted_proxies is exempt)"
            ),
            Refusal::Ceiling => tracing::warn!(
                refused,
                ceiling = self.ceiling,
                "closed new HTTPS connections at once: {} are open, as many as the open-file limit leaves room \
                 for (raise LimitNOFILE= to hold more)",
                self.ceiling
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ceiling_keeps_descriptors_for_latchd_itself() {
        assert_eq!(ceiling_under(1024, 2), 1024 - 272);
        assert_eq!(ceiling_under(8192, 2), 8192 - 272);
        // A small limit still lets a quarter of it serve.
        assert_eq!(ceiling_under(300, 2), 75);
        assert_eq!(ceiling_under(1024, 128), 256);
    }

    #[test]
    fn plain_listeners_take_a_quarter_beside_https_and_all_without() {
        let alone = Budget::split(1024, true, 0, 2);
        assert_eq!((alone.https, alone.per_worker), (752, 1));
        // Two plain listeners of two workers each share 188 beside HTTPS.
        assert_eq!(Budget::split(1024, true, 2, 2), Budget { soft: 1024, https: 564, per_worker: 47 });
        assert_eq!(Budget::split(1024, false, 1, 2), Budget { soft: 1024, https: 0, per_worker: 376 });
        let unlimited = Budget::split(u64::MAX, true, 1, 2);
        assert!(unlimited.per_worker > 1 << 40 && unlimited.https > unlimited.per_worker, "{unlimited:?}");
    }

    #[test]
    fn ipv6_clients_count_by_network_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        assert_eq!(client_network(a, 64), client_network(b, 64));
        assert_ne!(client_network(a, 128), client_network(b, 128));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(client_network(mapped, 64), "192.0.2.7".parse::<IpAddr>().unwrap());
    }
}
