//! Address-only requests (forgot password, resend verification) answer 202
//! once their input is valid; the lookup, the one-time token and the mail
//! happen afterwards, here, so the answer's timing cannot depend on whether
//! the account exists. The work waits in a queue of fixed depth: when a
//! flood fills it, requests are still answered exactly as usual and the
//! work is dropped and counted (`latch_background_dropped_total`), instead
//! of growing tasks without bound.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::passwords::RESET_TTL_SECS;
use super::queries;
use super::service::VERIFY_TTL_SECS;
use crate::audit::{self, Entry};
use crate::auth::normalize_email;
use crate::config::Config;
use crate::email::{self, Outbox, Template};
use crate::http::ClientInfo;
use crate::keys::{MasterKey, random_token, token_hash};
use crate::store::Store;

/// Requests waiting for their mail; beyond this they are dropped. Each
/// takes a read and a write (a millisecond or two), so a full queue is a
/// second or two of work.
pub const QUEUE_DEPTH: usize = 1024;

/// Which mail an address-only request sends, if the account exists.
#[derive(Clone, Copy)]
pub enum ByEmail {
    ResendVerification,
    PasswordReset,
}

struct Job {
    email: String,
    what: ByEmail,
    client: ClientInfo,
    cfg: Arc<Config>,
}

/// The queue's sending end; cheap to share.
pub struct Mailer {
    queue: mpsc::Sender<Job>,
}

impl Mailer {
    /// Queues the work for `email` (already validated), or drops it when
    /// the queue is full; the caller answers the same either way.
    pub fn offer(&self, email: String, what: ByEmail, client: ClientInfo, cfg: Arc<Config>) {
        if self.queue.try_send(Job { email, what, client, cfg }).is_err() {
            metrics::counter!("latch_background_dropped_total", "queue" => "account_email").increment(1);
        }
    }
}

/// What the worker needs to look up, seal and queue a message.
pub struct MailWork {
    pub store: Store,
    pub key: MasterKey,
    pub outbox: Outbox,
}

/// Starts the worker on `tracker` and returns the queue it drains; it stops
/// when `cancel` fires.
pub fn start(tracker: &TaskTracker, cancel: CancellationToken, work: MailWork) -> Mailer {
    let (tx, mut rx) = mpsc::channel::<Job>(QUEUE_DEPTH);
    tracker.spawn(async move {
        loop {
            let job = tokio::select! {
                _ = cancel.cancelled() => break,
                job = rx.recv() => match job { Some(job) => job, None => break },
            };
            crate::pause::at("account_email").await;
            if let Err(e) = send(&work, job).await {
                tracing::warn!(error = %e, "queued account email failed");
            }
        }
    });
    Mailer { queue: tx }
}

/// Looks the address up and, if an account holds it, mails the stored
/// address a new link. When the per-recipient cap drops the message, no
/// token and no audit row are kept for it.
async fn send(w: &MailWork, job: Job) -> Result<(), super::AccountError> {
    let Job { email, what, client, cfg } = job;
    let norm = normalize_email(&email);
    let Some(holder) = w.store.read(move |c| queries::holder_of(c, &norm)).await? else { return Ok(()) };
    let token = random_token()?;
    let (purpose, ttl, template, action) = match what {
        ByEmail::ResendVerification if holder.verified => return Ok(()),
        ByEmail::ResendVerification => (
            "verify_email",
            VERIFY_TTL_SECS,
            Template::VerifyEmail { token: token.clone() },
            "verification_resent",
        ),
        ByEmail::PasswordReset => (
            "password_reset",
            RESET_TTL_SECS,
            Template::PasswordReset { token: token.clone() },
            "password_reset_requested",
        ),
    };
    let msg = email::prepare(&cfg, &w.key, &holder.email, &template)?;
    let (hash, cap, user_id) = (token_hash(&token), cfg.email.max_per_recipient, holder.id);
    crate::pause::at("account_email_write").await;
    w.store
        .write(move |c| {
            // Deleted since the lookup: nothing to mail, nothing to keep.
            if !crate::auth::queries::user_exists(c, &user_id)? || !email::enqueue(c, cap, msg)? {
                return Ok(());
            }
            let now = crate::clock::now_unix();
            crate::auth::queries::insert_one_time(c, &hash, &user_id, purpose, now, ttl)?;
            audit::record(c, &Entry::by_user(action, &user_id, &client))
        })
        .await?;
    w.outbox.wake.notify_one();
    Ok(())
}
