//! A release `latchd` on one HTTPS listener with no limit, lock, block or
//! mail cap in the way, and a client that trusts its certificate: what the
//! benches that time single requests start. Included with `#[path]`, next
//! to `harness.rs` (which this uses as `super::harness`).

/// The config: everything a bench hammers stays allowed.
pub const CONFIG: &str = "[server]\nstate_dir = \"STATE\"\n[[listener]]\nkind = \"https\"\naddr = \"127.0.0.1:0\"\n\
     [accounts]\nrequire_verified_email = false\n[email]\nmax_per_recipient = 100000000\n\
     [rate_limits]\nglobal = \"10000000/1m\"\nip = \"10000000/1m\"\nip_hourly = \"10000000/1h\"\n\
     credential = \"10000000/1m\"\naccount = \"10000000/1m\"\n\
     [defense]\nip_block = { failures = 10000000, window = \"5m\", duration = \"1h\" }\n\
     account_lock = { failures = 10000000, base_delay = \"1s\", max_delay = \"1s\", max_failures_per_hour = 10000000 }\n\
     [defense.anomaly]\nbot = { requests = 10000000, window = \"1m\", action = \"flag\", block_for = \"1m\" }\n\
     [http]\nmax_connections_per_ip = 0\n";

/// The daemon, its HTTPS base URL and a TLS 1.3 client for it.
pub async fn start() -> (super::harness::Latchd, String, reqwest::Client) {
    start_with("").await
}

/// As `start`, with `extra` appended to the config.
pub async fn start_with(extra: &str) -> (super::harness::Latchd, String, reqwest::Client) {
    let dir = tempfile::tempdir().expect("tempdir");
    super::harness::write_config(dir.path(), &format!("{CONFIG}{extra}"));
    let latchd = super::harness::Latchd::start_in_with_env(dir, &[("RUST_LOG", "warn")]).await;
    let tls = super::harness::client_tls(&latchd.cert_path(), &[&rustls::version::TLS13]);
    let client = reqwest::Client::builder().use_preconfigured_tls((*tls).clone()).build().expect("client");
    let base = latchd.https_url("");
    (latchd, base, client)
}
