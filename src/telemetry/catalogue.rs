//! Every metric latch exports, with its unit and help text, in one place:
//! Prometheus shows the help on every series, `promtool check metrics` finds
//! nothing to say, and the dashboard and alert rules have a list to follow.
//! The standard `process_*` series (memory, CPU, open files, start time)
//! come from metrics-process, collected just before each scrape.

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

/// Registers the help text and unit of every latch metric.
pub fn describe() {
    describe_counter!(
        "latch_http_requests_total",
        "HTTP requests answered, by method, route pattern (\"unmatched\" for 404s) and status."
    );
    describe_histogram!(
        "latch_http_request_duration_seconds",
        Unit::Seconds,
        "Time to answer an HTTP request, by method and route pattern."
    );
    describe_counter!("latch_auth_events_total", "Authentication events, by kind and result.");
    describe_gauge!("latch_hash_queue_depth", "Password hashes queued or running on the argon2 pool.");
    describe_counter!(
        "latch_password_hashes_total",
        "Argon2id work done: hashes made (op=hash) and passwords checked (op=verify)."
    );
    describe_histogram!(
        "latch_db_query_duration_seconds",
        Unit::Seconds,
        "Database work: read transactions (op=read) and write batches up to their commit (op=commit)."
    );
    describe_histogram!(
        "latch_db_commit_batch_size",
        Unit::Count,
        "Write jobs committed together in one transaction (group commit)."
    );
    describe_gauge!("latch_email_queue_depth", "Emails in the outbox waiting to be delivered.");
    describe_counter!(
        "latch_emails_total",
        "Emails by outcome: sent, retry, dead (gave up), refused (the relay says the mailbox does not exist), \
         dropped (per-recipient hourly cap), expired (its link stopped working while it waited; not sent)."
    );
    describe_counter!(
        "latch_background_dropped_total",
        "Deferred work dropped because its queue was full, by queue; the request was answered as usual."
    );
    describe_counter!("latch_config_reloads_total", "Config reloads, by result.");
    describe_gauge!(
        "latch_tls_cert_expiry_timestamp_seconds",
        Unit::Seconds,
        "When the served TLS certificate expires, as Unix time."
    );
    describe_gauge!(
        "latch_audit_chain_ok",
        "1 when the last walk of the audit log's HMAC chain found it intact, 0 when a row was changed outside latch."
    );
    describe_gauge!(
        "latch_db_damaged",
        "1 once SQLite met damage in the database file while serving (until a start on a whole file), else 0."
    );
    describe_gauge!("latch_build_info", "Always 1; the version label names the running latchd.");
    describe_gauge!("latch_sessions_active", "Sessions neither revoked nor past their maximum age.");
    describe_counter!(
        "latch_rate_limited_total",
        "Requests refused by a rate limit (scope global, ip, ip_hourly, credential, account) or an IP block (scope ip_block)."
    );
    describe_gauge!("latch_http_connections_open", "HTTPS connections open now, from their accept on.");
    describe_gauge!(
        "latch_http_connections_max",
        "HTTPS connections latchd holds at most: its open-file limit less what it keeps for its own files."
    );
    describe_gauge!(
        "latch_http_plain_connections_open",
        "Connections open now on a plain-HTTP or Unix listener (label listener: its address or path)."
    );
    describe_gauge!(
        "latch_http_plain_connections_max",
        "Connections a plain-HTTP or Unix listener holds at most; at it, it stops accepting until one ends, \
         and new requests wait."
    );
    describe_counter!(
        "latch_http_connections_refused_total",
        "New HTTPS connections closed at their accept, by reason: per_address (max_connections_per_ip) or \
         ceiling (latch_http_connections_max)."
    );
    describe_counter!(
        "latch_http_connections_cut_total",
        "HTTPS connections closed for what their client did, by reason: frame_timeout (an HTTP/2 frame \
         not finished within [http].header_timeout) or stream_limit (an HTTP/2 client far past the 128 \
         streams it may open)."
    );
    describe_gauge!("latch_blocked_ips", "IP blocks in force (automatic and by an admin).");
    describe_gauge!(
        "latch_locked_accounts",
        "Emails locked for login from every address: their failures crossed max_failures_per_hour."
    );
    describe_counter!("latch_anomalies_total", "Anomaly rules that fired, by rule.");
    describe_gauge!(
        "latch_backup_last_success_timestamp_seconds",
        Unit::Seconds,
        "When the last verified backup was taken, as Unix time."
    );
    describe_gauge!("latch_backup_duration_seconds", Unit::Seconds, "How long the last backup took.");
    describe_gauge!("latch_backup_size_bytes", Unit::Bytes, "Size of the last backup file (compressed).");
    describe_gauge!(
        "latch_wal_archive_lag_seconds",
        Unit::Seconds,
        "Age of the oldest commit not yet copied into the WAL archive; 0 when it has every commit."
    );
    process().describe();
}

/// The collector of the standard `process_*` series.
pub fn process() -> &'static metrics_process::Collector {
    static COLLECTOR: std::sync::OnceLock<metrics_process::Collector> = std::sync::OnceLock::new();
    COLLECTOR.get_or_init(metrics_process::Collector::default)
}
