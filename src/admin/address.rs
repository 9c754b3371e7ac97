//! An admin gives an account another address (`PATCH /v1/admin/users/{id}`
//! with `email`, beyond API.md): the new address must be free; it is
//! unverified unless the same PATCH says otherwise, and then gets a link to
//! confirm it; every link mailed to the old address (verification, reset,
//! invitation) stops working, so none can confirm or reach the account any
//! more; and the old address is told where the account's mail goes now.

use rusqlite::Connection;

use super::errors::refuse;
use super::{AdminError, queries};
use crate::auth::queries::{insert_one_time, set_email};
use crate::auth::{normalize_email, validate_email};
use crate::config::Config;
use crate::email::{self, Prepared, Template};
use crate::keys::{MasterKey, random_token, token_hash};
use crate::store::StoreError;

/// A confirmation link lives as long as a registration's (API.md: 24 h).
const CONFIRM_TTL_SECS: i64 = 24 * 60 * 60;

/// A checked new address, as given and normalized.
pub struct NewAddress {
    email: String,
    norm: String,
}

impl NewAddress {
    pub fn parse(raw: &str) -> Result<NewAddress, AdminError> {
        let email = validate_email(raw)?;
        Ok(NewAddress { norm: normalize_email(&email), email })
    }

    pub fn email(&self) -> &str {
        &self.email
    }
}

/// Inside the PATCH's write: gives the account the new address, or
/// nothing when it is the one it has (ignoring case). The old address when
/// it changed.
pub fn change(
    c: &Connection,
    id: &str,
    new: &NewAddress,
    verified: bool,
    now: i64,
) -> Result<Option<String>, StoreError> {
    let Some(current) = queries::user(c, id)? else { return Err(refuse(AdminError::NotFound("user"))) };
    if current.email_norm == new.norm {
        return Ok(None);
    }
    if queries::user_id_by_email(c, &new.norm)?.is_some() {
        return Err(refuse(AdminError::Conflict("a user with that email exists".into())));
    }
    set_email(c, id, &new.email, verified, now)?;
    Ok(Some(current.email))
}

/// The mails of an address change, built before the write that queues
/// them with it: the old address's notice and, for an unverified new
/// address, its confirmation link.
pub struct AddressMails {
    notice: Prepared,
    confirm: Option<(Prepared, Vec<u8>)>,
}

impl AddressMails {
    pub fn build(
        cfg: &Config,
        key: &MasterKey,
        old: &str,
        new: &NewAddress,
        verified: bool,
    ) -> Result<AddressMails, AdminError> {
        let moved = Template::AddressChanged { new_address: new.email.clone() };
        let notice = email::prepare(cfg, key, old, &moved)?;
        let confirm = match verified {
            true => None,
            false => {
                let token = random_token()?;
                let mail = email::prepare(
                    cfg,
                    key,
                    &new.email,
                    &Template::ConfirmNewAddress { token: token.clone() },
                )?;
                Some((mail, token_hash(&token)))
            }
        };
        Ok(AddressMails { notice, confirm })
    }

    /// Queues both; the link's token is stored only if its mail was queued.
    pub fn enqueue(self, c: &Connection, cap: u32, user_id: &str, now: i64) -> Result<(), StoreError> {
        email::enqueue(c, cap, self.notice)?;
        if let Some((mail, hash)) = self.confirm
            && email::enqueue(c, cap, mail)?
        {
            insert_one_time(c, &hash, user_id, "verify_email", now, CONFIRM_TTL_SECS)?;
        }
        Ok(())
    }
}
