//! The outbox worker: delivers due messages, retries failures after 1 s,
//! 10 s, 1 min, 5 min, 15 min, 30 min and then hourly, marks a message dead
//! after `[smtp].max_attempts` — or at once when the relay says the
//! recipient's mailbox does not exist — and erases bodies once sent or dead.
//! A message whose link stopped working while it waited is not sent.
//! Without `[smtp]` each message becomes `state_dir/mail/<id>.eml` (0600).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use rusqlite::params;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Outbox, SEAL_PURPOSE};
use crate::config::{Commit, Config, Preparing, Reloadable, SmtpSection, SmtpSecurity};
use crate::keys::MasterKey;
use crate::store::{Store, StoreError};

const BATCH: i64 = 20;

/// Seconds before the next attempt after the `attempts`-th failure. A blip
/// is retried at once; with the default 8 attempts the last is about two
/// hours after the first, so a relay restarted or a password fixed within
/// the hour still delivers (doubling from 1 s gave up after two minutes).
fn retry_delay(attempts: i64) -> i64 {
    const DELAYS: [i64; 7] = [1, 10, 60, 300, 900, 1800, LONGEST_RETRY_DELAY];
    let i = usize::try_from(attempts.max(1) - 1).unwrap_or(usize::MAX);
    DELAYS.get(i).copied().unwrap_or(LONGEST_RETRY_DELAY)
}

/// The longest wait between two attempts, in seconds.
const LONGEST_RETRY_DELAY: i64 = 3600;

/// A delivery that failed: why, and whether the relay refused the
/// recipient's mailbox for good, so that trying again cannot help.
struct Failed {
    reason: String,
    mailbox_refused: bool,
}

impl From<String> for Failed {
    fn from(reason: String) -> Failed {
        Failed { reason, mailbox_refused: false }
    }
}

/// RFC 3463 codes that say the recipient's mailbox itself is bad: unknown
/// (5.1.1), its system unknown (5.1.2), its address malformed (5.1.3),
/// moved (5.1.6), a domain that takes no mail (5.1.10, null MX), disabled
/// (5.2.1). A mistyped address at registration gets one of these: retried,
/// it stayed queued for two hours and then died anyway. Sender, policy
/// and capacity codes (5.1.7, 5.1.8, 5.7.x, 5.2.2…) and replies without an
/// enhanced code may be the operator's to fix, and are retried.
const MAILBOX_REFUSED: [&str; 6] = ["5.1.1", "5.1.2", "5.1.3", "5.1.6", "5.1.10", "5.2.1"];

fn mailbox_refused(e: &lettre::transport::smtp::Error) -> bool {
    let reply = std::error::Error::source(e).map(ToString::to_string).unwrap_or_default();
    e.is_permanent() && reply.split_whitespace().next().is_some_and(|code| MAILBOX_REFUSED.contains(&code))
}

struct Due {
    id: String,
    recipient: String,
    body: Vec<u8>,
    attempts: i64,
    /// It carries a link that no longer works (expired, used or replaced).
    link_dead: bool,
}

/// Whether a due message's link (`outbox.link_hash`) stopped working:
/// neither a live one-time token nor a live change of address has it.
const LINK_DEAD: &str = "link_hash IS NOT NULL
    AND NOT EXISTS (SELECT 1 FROM one_time_tokens t
                    WHERE t.hash = outbox.link_hash AND t.used_at IS NULL AND t.expires_at > ?1)
    AND NOT EXISTS (SELECT 1 FROM email_changes e
                    WHERE e.hash = outbox.link_hash AND e.used_at IS NULL AND e.expires_at > ?1)";

/// What `latchctl outbox list` shows for a message not sent for that.
const LINK_DEAD_ERROR: &str =
    "not sent: its link stopped working while it waited (expired, used or replaced)";

/// Starts the worker on `tracker`; it stops when `cancel` fires.
pub fn spawn(
    tracker: &TaskTracker,
    cancel: CancellationToken,
    store: Store,
    config: Arc<ArcSwap<Config>>,
    key: MasterKey,
    outbox: Outbox,
) {
    if config.load().smtp.is_none() {
        tracing::warn!(
            dir = %config.load().state.mail().display(),
            "email is not configured ([smtp] absent): messages are written to files instead"
        );
    }
    tracker.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut last_prune = std::time::Instant::now();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = outbox.wake.notified() => {},
                _ = tick.tick() => {},
            }
            let cfg = config.load_full();
            if let Err(e) = deliver_due(&store, &cfg, &key).await {
                tracing::warn!(error = %e, "outbox: delivery round failed");
            }
            let retention = cfg.email.file_retention.0;
            if last_prune.elapsed() >= retention.min(Duration::from_secs(60)) {
                last_prune = std::time::Instant::now();
                prune_mail_files(&cfg.state.mail(), retention);
                prune_finished(&store, retention).await;
            }
        }
    });
}

/// Rows deleted per prune: one short job in a write batch.
const PRUNE_ROWS: i64 = 2_000;

/// Deletes the rows of mail sent or given up more than `retention` ago
/// (`[email].file_retention`), so the outbox does not grow by a row per
/// email forever; the admin outbox shows the recent ones.
async fn prune_finished(store: &Store, retention: Duration) {
    let cutoff = crate::clock::now_unix() - i64::try_from(retention.as_secs()).unwrap_or(i64::MAX / 2);
    let deleted = store
        .write(move |c| {
            let sql = "DELETE FROM outbox WHERE rowid IN (SELECT rowid FROM outbox
                       WHERE status IN ('sent', 'dead') AND created_at < ?1 LIMIT ?2)";
            Ok(c.prepare_cached(sql)?.execute(params![cutoff, PRUNE_ROWS])?)
        })
        .await;
    match deleted {
        Ok(0) => {}
        Ok(n) => tracing::info!(deleted = n, "outbox rows past file_retention deleted"),
        Err(e) => tracing::warn!(error = %e, "pruning the outbox failed; will retry"),
    }
}

/// Mail due now: its next attempt has come, or lies further ahead than any
/// retry delay, as it does once a clock that ran ahead is set back (such
/// mail would otherwise wait out the skew).
async fn deliver_due(store: &Store, cfg: &Config, key: &MasterKey) -> Result<(), StoreError> {
    let now = crate::clock::now_unix();
    let due: Vec<Due> = store
        .read(move |c| {
            let mut stmt = c.prepare(&format!(
                "SELECT id, recipient, body, attempts, {LINK_DEAD} FROM outbox
                 WHERE status = 'queued' AND (next_attempt_at <= ?1 OR next_attempt_at > ?1 + ?3)
                 ORDER BY next_attempt_at LIMIT ?2",
            ))?;
            let rows = stmt.query_map(params![now, BATCH, LONGEST_RETRY_DELAY], |r| {
                let (id, recipient, body, attempts) = (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
                Ok(Due { id, recipient, body, attempts, link_dead: r.get(4)? })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await?;
    // Built only when there is mail: it reads the password file.
    let transport =
        if due.is_empty() { None } else { cfg.smtp.as_ref().map(|smtp| smtp_transport(cfg, smtp)) };
    for msg in due {
        if msg.link_dead {
            drop_dead_link(store, &msg).await?;
            continue;
        }
        let outcome = match key.open(SEAL_PURPOSE, &msg.body) {
            None => Err("the stored message cannot be decrypted with this master key".to_string().into()),
            Some(raw) => match &transport {
                Some(Ok(t)) => send_smtp(t, cfg, &msg.recipient, &raw).await,
                Some(Err(e)) => Err(e.clone().into()),
                None => write_file(&cfg.state.mail(), &msg.id, &raw).map_err(Failed::from),
            },
        };
        record_outcome(store, cfg, &msg, outcome).await?;
    }
    let depth: i64 = store
        .read(|c| Ok(c.query_row("SELECT COUNT(*) FROM outbox WHERE status = 'queued'", [], |r| r.get(0))?))
        .await?;
    metrics::gauge!("latch_email_queue_depth").set(depth as f64);
    Ok(())
}

/// A message whose link stopped working while it waited (an outage longer
/// than a reset link lives) is not sent: the person would open a dead
/// link, and can ask for a new one.
async fn drop_dead_link(store: &Store, msg: &Due) -> Result<(), StoreError> {
    metrics::counter!("latch_emails_total", "result" => "expired").increment(1);
    tracing::warn!(
        id = msg.id,
        attempts = msg.attempts,
        "email not sent: its link stopped working while it waited"
    );
    let id = msg.id.clone();
    store
        .write(move |c| {
            c.execute(
                "UPDATE outbox SET status = 'dead', body = NULL, last_error = ?2 WHERE id = ?1",
                params![id, LINK_DEAD_ERROR],
            )?;
            Ok(())
        })
        .await
}

async fn record_outcome(
    store: &Store,
    cfg: &Config,
    msg: &Due,
    outcome: Result<(), Failed>,
) -> Result<(), StoreError> {
    let max_attempts = i64::from(cfg.smtp.as_ref().map_or(8, |s| s.max_attempts));
    let id = msg.id.clone();
    let attempts = msg.attempts + 1;
    let now = crate::clock::now_unix();
    let result = match &outcome {
        Ok(()) => "sent",
        // Counted apart from "dead": a mistyped address is not the relay's
        // fault, and the dead-letter alert asks the operator to check it.
        Err(f) if f.mailbox_refused => "refused",
        Err(_) if attempts >= max_attempts => "dead",
        Err(_) => "retry",
    };
    metrics::counter!("latch_emails_total", "result" => result).increment(1);
    match &outcome {
        // Without [smtp] the file writer already said where it went.
        Ok(()) if cfg.smtp.is_some() => tracing::info!(id, "email delivered"),
        Ok(()) => {}
        // The address's owner (if any) cannot be reached: a warning, with
        // the relay's words kept in last_error.
        Err(f) if result == "refused" => {
            tracing::warn!(id, error = %f.reason, "email not delivered: the relay says the mailbox does not exist")
        }
        // A dead message is lost mail (a reset link, a security notice): an
        // error for the operator, where a retry is only a warning.
        Err(f) if result == "dead" => {
            tracing::error!(id, attempts, error = %f.reason, "email given up after smtp.max_attempts")
        }
        Err(f) => tracing::warn!(id, attempts, error = %f.reason, result, "email delivery failed"),
    }
    let error = outcome.err().map(|f| f.reason);
    store
        .write(move |c| {
            match result {
                "sent" => c.execute(
                    "UPDATE outbox SET status = 'sent', body = NULL, attempts = ?2, sent_at = ?3, last_error = NULL WHERE id = ?1",
                    params![id, attempts, now],
                )?,
                "dead" | "refused" => c.execute(
                    "UPDATE outbox SET status = 'dead', body = NULL, attempts = ?2, last_error = ?3 WHERE id = ?1",
                    params![id, attempts, error],
                )?,
                _ => {
                    c.execute(
                        "UPDATE outbox SET attempts = ?2, next_attempt_at = ?3, last_error = ?4 WHERE id = ?1",
                        params![id, attempts, now + retry_delay(attempts), error],
                    )?
                }
            };
            Ok(())
        })
        .await
}

/// The SMTP settings as a reloadable service: a password file that cannot
/// be read (or is empty), or a CA file without a certificate, fails the
/// start or rejects the reload, naming the file, instead of turning every
/// message into a retry and then a dead letter while the daemon looks
/// healthy.
pub struct SmtpSettings;

impl SmtpSettings {
    pub fn check(cfg: &Config) -> Result<(), String> {
        cfg.smtp.as_ref().map_or(Ok(()), |smtp| smtp_transport(cfg, smtp).map(drop))
    }
}

impl Reloadable for SmtpSettings {
    fn prepare<'a>(&'a self, next: &'a Config) -> Preparing<'a> {
        Box::pin(async move { Self::check(next).map(|()| Box::new(|| {}) as Commit) })
    }
}

fn smtp_transport(cfg: &Config, smtp: &SmtpSection) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host)
        .port(smtp.port)
        .timeout(Some(Duration::from_secs(15)));
    if let Some(name) = hello_name(&cfg.public_host) {
        builder = builder.hello_name(name);
    }
    if let Some(tls) = relay_tls(smtp)? {
        builder = builder.tls(tls);
    }
    if !smtp.username.is_empty() {
        let file =
            smtp.password_file.as_deref().ok_or("smtp.username is set but smtp.password_file is not")?;
        let password = std::fs::read_to_string(file)
            .map_err(|e| format!("smtp.password_file {}: {e}", file.display()))?;
        let password = password.trim_end();
        if password.is_empty() {
            return Err(format!("smtp.password_file {}: is empty", file.display()));
        }
        builder = builder.credentials(Credentials::new(smtp.username.clone(), password.to_string()));
    }
    Ok(builder.build())
}

/// The name latch gives the relay in EHLO: `public_url`'s host when it is
/// a domain name (RFC 5321 §4.1.4 asks for the client's own name), else
/// lettre's address literal `[127.0.0.1]`, which spam filters score when
/// it comes from another machine.
fn hello_name(public_host: &str) -> Option<ClientId> {
    // An absolute name's trailing dot is not part of SMTP's domain syntax;
    // an IPv6 host comes bracketed; the url crate already made a
    // non-ASCII name its ASCII (punycode) form.
    let name = public_host.trim_end_matches('.');
    let literal = name.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>().is_ok();
    (name.contains('.') && !literal).then(|| ClientId::Domain(name.to_ascii_lowercase()))
}

/// How the connection to the relay is protected: STARTTLS before anything
/// is sent (never a fallback to plaintext), or TLS from the first byte;
/// the relay's certificate must name `host` and chain to a public root or
/// to a CA of `ca_file`.
fn relay_tls(smtp: &SmtpSection) -> Result<Option<Tls>, String> {
    let protect = match smtp.security {
        SmtpSecurity::None => return Ok(None),
        SmtpSecurity::Starttls => Tls::Required,
        SmtpSecurity::Tls => Tls::Wrapper,
    };
    let mut params = TlsParameters::builder(smtp.host.clone());
    if let Some(file) = &smtp.ca_file {
        params = params.add_root_certificate(ca_certificates(file)?);
    }
    let params = params.build().map_err(|e| match &smtp.ca_file {
        Some(file) => format!("smtp.ca_file {}: {e}", file.display()),
        None => format!("smtp.host {}: {e}", smtp.host),
    })?;
    Ok(Some(protect(params)))
}

/// The CA certificates of `ca_file`; a file without one is an error, not
/// a relay no certificate can satisfy.
fn ca_certificates(file: &Path) -> Result<Certificate, String> {
    let fail = |why: String| format!("smtp.ca_file {}: {why}", file.display());
    let pem = std::fs::read(file).map_err(|e| fail(e.to_string()))?;
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&pem).collect();
    match certs {
        Err(e) => Err(fail(format!("not PEM certificates: {e}"))),
        Ok(certs) if certs.is_empty() => Err(fail("holds no PEM certificate".into())),
        Ok(_) => Certificate::from_pem(&pem).map_err(|e| fail(e.to_string())),
    }
}

async fn send_smtp(
    transport: &AsyncSmtpTransport<Tokio1Executor>,
    cfg: &Config,
    recipient: &str,
    raw: &[u8],
) -> Result<(), Failed> {
    let from: lettre::message::Mailbox = cfg.email.from.parse().map_err(|e| format!("email.from: {e}"))?;
    let to: Address = recipient.parse().map_err(|e| format!("recipient: {e}"))?;
    let envelope = Envelope::new(Some(from.email), vec![to]).map_err(|e| e.to_string())?;
    let sent = transport.send_raw(&envelope, raw).await;
    sent.map(drop).map_err(|e| Failed { mailbox_refused: mailbox_refused(&e), reason: e.to_string() })
}

/// Deletes `.eml` files older than `[email].file_retention`: they hold
/// one-time tokens and should not pile up. A `.partial` file is a write cut
/// short (disk full, crash); it goes after the same time.
fn prune_mail_files(dir: &Path, retention: Duration) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > retention));
        if old && path.extension().is_some_and(|e| e == "eml" || e == "partial") {
            match std::fs::remove_file(&path) {
                Ok(()) => tracing::info!(file = %path.display(), "mail file past its retention removed"),
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "could not remove an old mail file")
                }
            }
        }
    }
}

/// Security: the log names the file, never its content (it holds a token).
/// Written through a hidden temp file and renamed, so whoever picks mail up
/// never reads half a message.
fn write_file(dir: &Path, id: &str, raw: &[u8]) -> Result<(), String> {
    let path = dir.join(format!("{id}.eml"));
    crate::state_dir::write_private(&path, raw).map_err(|e| format!("{}: {e}", path.display()))?;
    tracing::info!(file = %path.display(), "email not sent ([smtp] absent): written to file");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{hello_name, retry_delay};

    #[test]
    fn the_hello_name_is_a_bare_domain_or_none() {
        let named = |host: &str| hello_name(host).map(|id| id.to_string());
        assert_eq!(named("Auth.Example.com"), Some("auth.example.com".into()));
        assert_eq!(named("auth.example.com."), Some("auth.example.com".into()), "no trailing dot");
        assert_eq!(named("xn--bcher-kva.example"), Some("xn--bcher-kva.example".into()));
        for literal in ["localhost", "192.0.2.7", "[::1]", "[::ffff:192.0.2.7]"] {
            assert_eq!(named(literal), None, "{literal}: lettre's address literal");
        }
    }

    #[test]
    fn the_default_attempts_span_about_two_hours_and_start_quickly() {
        assert_eq!(retry_delay(1), 1, "a blip is retried at once");
        let default_attempts = 8;
        let span: i64 = (1..default_attempts).map(retry_delay).sum();
        assert!((6000..=7200).contains(&span), "last attempt {span} s after the first");
        assert_eq!(retry_delay(100), 3600, "hourly once past the schedule");
        assert_eq!(retry_delay(0), 1);
    }
}
