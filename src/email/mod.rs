//! Email through a persisted outbox: features enqueue a sealed message
//! inside their own write transaction; a background worker delivers it over
//! SMTP (or, without `[smtp]`, writes it to `state_dir/mail/`) with retries
//! and backoff, and marks it dead after `[smtp].max_attempts`. No request
//! ever waits on SMTP.

mod templates;
mod worker;

use std::sync::Arc;

use lettre::Message;
use lettre::message::Body;
use lettre::message::Mailbox;
use lettre::message::header::{ContentTransferEncoding, ContentType, HeaderName, HeaderValue};
use rusqlite::{Connection, params};
use tokio::sync::Notify;

use crate::config::Config;
use crate::keys::MasterKey;
use crate::store::{StoreError, exec};

pub use templates::{SecondFactorChange, Template};
pub use worker::{SmtpSettings, spawn as spawn_worker};

/// The AEAD purpose for queued bodies.
const SEAL_PURPOSE: &[u8] = b"outbox body";

#[derive(Debug, thiserror::Error)]
pub enum EmailError {
    #[error("invalid address: {0}")]
    Address(#[from] lettre::address::AddressError),
    #[error("building the message: {0}")]
    Build(#[from] lettre::error::Error),
    #[error("sealing the message: {0}")]
    Seal(#[from] crate::keys::KeyError),
}

/// Wakes the worker when something was queued.
#[derive(Clone, Default)]
pub struct Outbox {
    pub wake: Arc<Notify>,
}

/// A message ready to be queued: built and sealed outside the write
/// transaction, so the transaction only inserts a row.
pub struct Prepared {
    id: String,
    recipient: String,
    kind: &'static str,
    /// Sent because someone asked (anyone may ask for these).
    on_request: bool,
    /// The hash of the link's token: the worker sends the message only
    /// while that link still works.
    link_hash: Option<Vec<u8>>,
    sealed: Vec<u8>,
}

/// Builds and seals `template` for `to`.
pub fn prepare(cfg: &Config, key: &MasterKey, to: &str, template: &Template) -> Result<Prepared, EmailError> {
    let from: Mailbox = cfg.email.from.parse()?;
    let id = uuid::Uuid::now_v7().to_string();
    // RFC 5322 asks every message for a Message-ID, and spam filters score
    // its absence when the relay does not add one; the outbox row's id
    // keeps it the same across delivery retries. Auto-Submitted (RFC 3834)
    // tells vacation responders not to answer a machine.
    let message_id = format!("<{id}@{}>", from.email.domain());
    let message = Message::builder()
        .from(from)
        .to(to.parse()?)
        .subject(template.subject())
        .message_id(Some(message_id))
        .raw_header(HeaderValue::new(AUTO_SUBMITTED, "auto-generated".into()))
        .header(ContentType::TEXT_PLAIN)
        .body(readable_body(template.body(cfg)))?;
    Ok(Prepared {
        id,
        recipient: to.to_ascii_lowercase(),
        kind: template.kind(),
        on_request: template.anyone_can_ask(),
        link_hash: template.link_token().map(crate::keys::token_hash),
        sealed: key.seal(SEAL_PURPOSE, &message.formatted())?,
    })
}

const AUTO_SUBMITTED: HeaderName = HeaderName::new_from_ascii_str("Auto-Submitted");

/// The longest line RFC 5322 allows, without its CRLF.
const MAX_LINE: usize = 998;

/// The body as plain 7-bit text when it can be: lettre quoted-printable
/// encodes any line over 76 characters, which breaks a long link into
/// `token=3D…=` pieces — unreadable in a `mail/*.eml` file, where a
/// newcomer copies the token from. RFC 5322 allows lines to 998.
fn readable_body(text: String) -> Body {
    let plain = text.is_ascii() && !text.contains(['\0', '\r']) && text.lines().all(|l| l.len() <= MAX_LINE);
    if !plain {
        return Body::new(text);
    }
    let crlf = text.replace('\n', "\r\n");
    Body::dangerous_pre_encoded(crlf.into_bytes(), ContentTransferEncoding::SevenBit)
}

/// Queues `msg` unless its recipient already got `max_per_recipient`
/// (`[email]`) messages in the past hour (then it is dropped silently and
/// counted). Returns whether it was queued.
///
/// Messages dated after now were queued while the clock ran ahead: they
/// are not counted, since counted they would hold the recipient's mail
/// for as long as the clock was ahead, not for an hour (a clock set back
/// by a day silenced an address for a day). At worst an address gets one
/// more hour's allowance once.
///
/// Security: mails anyone can ask for (verification, reset, "already
/// registered") stop one short of the cap, so a flood of "forgot
/// password" requests cannot use up the hour's last message and silence
/// the notice that the password or second factor then changed.
pub fn enqueue(c: &Connection, max_per_recipient: u32, msg: Prepared) -> Result<bool, StoreError> {
    let cap = match msg.on_request {
        true => max_per_recipient.saturating_sub(1).max(1),
        false => max_per_recipient,
    };
    let now = crate::clock::now_unix();
    let recent: i64 = c.query_row(
        "SELECT COUNT(*) FROM outbox WHERE recipient = ?1 AND created_at > ?2 AND created_at <= ?3",
        params![msg.recipient, now - 3600, now],
        |r| r.get(0),
    )?;
    if recent >= i64::from(cap) {
        metrics::counter!("latch_emails_total", "result" => "dropped").increment(1);
        return Ok(false);
    }
    exec(
        c,
        "INSERT INTO outbox (id, recipient, kind, body, status, next_attempt_at, created_at, link_hash)
         VALUES (?1, ?2, ?3, ?4, 'queued', ?5, ?5, ?6)",
        params![msg.id, msg.recipient, msg.kind, msg.sealed, now, msg.link_hash],
    )?;
    Ok(true)
}
