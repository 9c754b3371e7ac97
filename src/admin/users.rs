//! `/v1/admin/users`: list (search, status, pages), create, show, change
//! (status, roles, unlock, email_verified, and beyond API.md the address
//! and turning off a lost second factor) and delete accounts. Disabling
//! revokes every session at once; no change may remove the last active
//! admin.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::address::{AddressMails, NewAddress};
use super::errors::{paging, refusal, refuse};
use super::queries::{self, AdminUser, UserFilter};
use super::{AdminError, Deps};
use crate::audit::{self, Entry};
use crate::auth::queries::{
    NewUser, active_admins, insert_one_time, insert_user, revoke_user_sessions, set_name, void_email_change,
};
use crate::auth::second_factor::{self, Enrolment};
use crate::auth::{Principal, check_password, display_text, imported, normalize_email, validate_email};
use crate::config::Config;
use crate::email::{self, Prepared, Template};
use crate::http::{ApiError, ApiJson, ApiQuery, ClientInfo, LiveConfig, Page};
use crate::keys::{random_token, token_hash};
use crate::store::StoreError;

type D = web::Data<Deps>;

/// An invitation's link (a reset link) lives a day, not a reset link's
/// 30 minutes: the person may not read their mail at once. The reset that
/// spends it sends no "password changed" notice (accounts tells the two
/// apart by this longer life).
const INVITE_TTL_SECS: i64 = 24 * 3600;

fn with_lock(d: &Deps, mut user: AdminUser) -> AdminUser {
    user.locked_until = d.defense.locked_until(&user.email_norm).map(crate::clock::rfc3339);
    user
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// A substring of the email or name.
    query: Option<String>,
    #[param(pattern = "^(active|disabled)$")]
    status: Option<String>,
    #[param(minimum = 1)]
    page: Option<i64>,
    #[param(minimum = 1, maximum = 500)]
    page_size: Option<i64>,
}

#[utoipa::path(get, path = "/v1/admin/users", tag = "admin", security(("bearer" = [])), params(ListQuery),
    responses((status = 200, description = "One page of users, newest first", body = Page<AdminUser>)))]
pub async fn list(d: D, who: Principal, q: ApiQuery<ListQuery>) -> Result<HttpResponse, ApiError> {
    who.require_admin()?;
    let ((page, size), [bad_page, bad_size]) = paging(q.page, q.page_size);
    let bad_status = (q.status.as_deref().is_some_and(|s| s != "active" && s != "disabled"))
        .then(|| AdminError::invalid("status", "must be active or disabled"));
    if bad_page.is_some() || bad_size.is_some() || bad_status.is_some() {
        return Err(AdminError::of_fields([bad_page, bad_size, bad_status]).into());
    }
    let filter = UserFilter {
        // A pasted address often carries a space at either end.
        query: q.query.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(searched_for),
        status: q.status.clone(),
        offset: (page - 1).saturating_mul(size),
        limit: size,
    };
    let (items, total) = d.store.read(move |c| queries::users(c, &filter)).await?;
    let items: Vec<AdminUser> = items.into_iter().map(|u| with_lock(&d, u)).collect();
    Ok(HttpResponse::Ok().json(Page { items, page, page_size: size, total }))
}

/// What a search looks for: an address at an internationalized domain in
/// the ASCII form it is stored in (`ana@bücher.example` finds
/// `ana@xn--bcher-kva.example`); anything else as typed.
fn searched_for(query: &str) -> String {
    match query.contains('@') && !query.is_ascii() {
        true => Some(normalize_email(query)).filter(|ascii| ascii.is_ascii()).unwrap_or(query.to_string()),
        false => query.to_string(),
    }
}

async fn load(d: &Deps, id: String) -> Result<AdminUser, AdminError> {
    let user = d.store.read(move |c| queries::user(c, &id)).await?.ok_or(AdminError::NotFound("user"))?;
    Ok(with_lock(d, user))
}

#[utoipa::path(get, path = "/v1/admin/users/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, description = "The user", body = AdminUser)))]
pub async fn show(d: D, who: Principal, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    who.require_admin()?;
    Ok(HttpResponse::Ok().json(load(&d, id.into_inner()).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    email: String,
    /// Absent (and no `password_hash`): the user is mailed a link to
    /// choose one.
    password: Option<String>,
    /// Beyond API.md: a hash made by another system (bcrypt, PBKDF2-SHA256
    /// or scrypt as Django or Werkzeug write them, argon2), kept until the
    /// person's first sign-in replaces it with latch's own; instead of
    /// `password`.
    password_hash: Option<String>,
    name: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    email_verified: bool,
}

/// A created account, and what became of its invitation.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedUser {
    #[serde(flatten)]
    user: AdminUser,
    /// Without a password: `queued`, or `not_sent` when the address already
    /// had `[email].max_per_recipient` messages this hour (its owner can
    /// ask for a reset link once the hour has passed).
    #[serde(skip_serializing_if = "Option::is_none")]
    invitation: Option<&'static str>,
}

/// What the new account's password hash is made from: the password
/// given, a hash taken in from another system as it is, or (an invitation)
/// a random password nobody knows, which the emailed link replaces.
enum FirstSecret {
    Password(String),
    Imported(String),
    Invitation,
}

/// Checks the password or the imported hash, before anything is hashed.
fn first_secret(
    d: &Deps,
    cfg: &Config,
    password: Option<String>,
    imported: Option<String>,
) -> Result<FirstSecret, AdminError> {
    match (password, imported) {
        (Some(_), Some(_)) => {
            Err(AdminError::invalid("password_hash", "give password or password_hash, not both"))
        }
        (None, Some(hash)) => imported::check(&hash, cfg.passwords.pepper_file.is_some())
            .map(FirstSecret::Imported)
            .map_err(|why| AdminError::invalid("password_hash", why)),
        (Some(p), None) => {
            check_password(cfg, &d.breached, "password", &p)?;
            Ok(FirstSecret::Password(p))
        }
        (None, None) => Ok(FirstSecret::Invitation),
    }
}

/// A create's address, display name and first secret, checked with its
/// roles: every field at fault is told in one refusal.
async fn checked_fields(
    d: &Deps,
    cfg: &Config,
    req: &mut CreateUser,
) -> Result<(String, Option<String>, FirstSecret), ApiError> {
    let missing = roles_at_fault(d, &req.roles).await?;
    let fields = (
        validate_email(&req.email),
        display_text("name", req.name.take()),
        first_secret(d, cfg, req.password.take(), req.password_hash.take()),
    );
    match (fields, missing) {
        ((Ok(email), Ok(name), Ok(secret)), None) => Ok((email, name, secret)),
        ((email, name, secret), missing) => {
            let (email, name) = (email.err().map(AdminError::from), name.err().map(AdminError::from));
            Err(AdminError::of_fields([email, name, secret.err(), missing]).into())
        }
    }
}

/// The new account's password hash (see `FirstSecret`).
async fn first_hash(d: &Deps, cfg: &Config, secret: FirstSecret) -> Result<String, ApiError> {
    let password = match secret {
        FirstSecret::Imported(stored) => return Ok(stored),
        FirstSecret::Password(p) => p,
        FirstSecret::Invitation => random_token().map_err(AdminError::from)?,
    };
    Ok(d.hasher.hash(cfg.passwords.argon2, password).await?)
}

/// Creates an account, with a password or an emailed invitation.
#[utoipa::path(post, path = "/v1/admin/users", tag = "admin", security(("bearer" = [])), request_body = CreateUser,
    responses((status = 201, description = "Created", body = CreatedUser)))]
pub async fn create(
    d: D,
    cfg: LiveConfig,
    who: Principal,
    client: ClientInfo,
    body: ApiJson<CreateUser>,
) -> Result<HttpResponse, ApiError> {
    who.require_admin()?;
    let mut req = body.0;
    let (email, name, secret) = checked_fields(&d, &cfg, &mut req).await?;
    let invite = matches!(secret, FirstSecret::Invitation);
    let hash_taken_in = matches!(secret, FirstSecret::Imported(_));
    let phc = first_hash(&d, &cfg, secret).await?;
    let token = random_token().map_err(AdminError::from)?;
    let mail = if invite { Some(invitation_mail(&d, &cfg, &email, &token)?) } else { None };
    let (id, actor, cap) = (uuid::Uuid::now_v7().to_string(), who.actor(), cfg.email.max_per_recipient);
    let (uid, hash) = (id.clone(), token_hash(&token));
    let queued = d
        .store
        .write(move |c| {
            let now = crate::clock::now_unix();
            if queries::user_id_by_email(c, &normalize_email(&email))?.is_some() {
                return Err(refuse(AdminError::Conflict("a user with that email exists".into())));
            }
            check_roles(c, &req.roles)?;
            let name = name.as_deref();
            insert_user(c, &NewUser { id: &uid, email: &email, name, password_hash: &phc, now })?;
            queries::set_roles(c, &uid, &req.roles)?;
            queries::set_verified(c, &uid, req.email_verified, now)?;
            let queued = match mail {
                Some(mail) => email::enqueue(c, cap, mail)?,
                None => false,
            };
            if queued {
                insert_one_time(c, &hash, &uid, "password_reset", now, INVITE_TTL_SECS)?;
            }
            let details = json!({ "roles": req.roles, "invited": invite, "imported_hash": hash_taken_in });
            let entry = Entry {
                action: "user_created",
                actor_id: Some(&actor),
                subject_id: Some(&uid),
                client: Some(&client),
                details,
            };
            audit::record(c, &entry)?;
            Ok(queued)
        })
        .await
        .map_err(refusal)?;
    d.outbox.wake.notify_one();
    let invitation = invite.then_some(if queued { "queued" } else { "not_sent" });
    Ok(HttpResponse::Created().json(CreatedUser { user: load(&d, id).await?, invitation }))
}

/// The mail inviting `email` to choose a password with `token`.
fn invitation_mail(d: &Deps, cfg: &Config, email: &str, token: &str) -> Result<Prepared, AdminError> {
    let template = Template::Invitation { token: token.to_string(), hours: INVITE_TTL_SECS / 3600 };
    Ok(email::prepare(cfg, &d.key, email, &template)?)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchUser {
    /// active or disabled (disabling revokes every session at once).
    status: Option<String>,
    roles: Option<Vec<String>>,
    unlock: Option<bool>,
    email_verified: Option<bool>,
    /// A new address to sign in with: unverified (and sent a link to
    /// confirm it) unless `email_verified` is true; the old address is told.
    /// Beyond API.md.
    email: Option<String>,
    /// A new display name; `null` or blank removes it (absent: unchanged).
    /// Beyond API.md.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    name: Option<Option<String>>,
    /// `{"totp": false}` turns off the account's TOTP and recovery codes
    /// (a person who lost both) and signs it out everywhere; the person
    /// then enrolls again. Beyond API.md.
    mfa: Option<PatchMfa>,
}

/// A field that is there, `null` or not: `Some(None)` removes, absence
/// (`None`, by `default`) leaves the value alone.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::deserialize(d).map(Some)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchMfa {
    /// Only `false`: nobody but the person can enroll a second factor.
    totp: bool,
}

/// The refusal naming every one of `roles` that does not exist, if any.
fn missing_roles(c: &rusqlite::Connection, roles: &[String]) -> Result<Option<AdminError>, StoreError> {
    let mut missing = Vec::new();
    for role in roles {
        if !queries::role_exists(c, role)? {
            missing.push(format!("{role:?}"));
        }
    }
    Ok(match missing.len() {
        0 => None,
        1 => Some(AdminError::invalid("roles", format!("no role named {}", missing[0]))),
        _ => Some(AdminError::invalid("roles", format!("no roles named {}", missing.join(", ")))),
    })
}

/// Looked up before a body's other fields are judged, so that a missing
/// role is told with them; the write checks again (`check_roles`).
async fn roles_at_fault(d: &Deps, roles: &[String]) -> Result<Option<AdminError>, AdminError> {
    if roles.is_empty() {
        return Ok(None);
    }
    let roles = roles.to_vec();
    Ok(d.store.read(move |c| missing_roles(c, &roles)).await?)
}

/// Refuses the roles that do not exist (one may go between the look
/// before and the write).
fn check_roles(c: &rusqlite::Connection, roles: &[String]) -> Result<(), StoreError> {
    match missing_roles(c, roles)? {
        None => Ok(()),
        Some(missing) => Err(refuse(missing)),
    }
}

/// Removing the last active admin is refused (API.md), checked after the
/// change against `had`, the count before it. An install run only through
/// the admin socket has no admin account, and may still change the others.
fn keep_an_admin(c: &rusqlite::Connection, had: i64) -> Result<(), StoreError> {
    if had > 0 && active_admins(c)? == 0 {
        return Err(refuse(AdminError::Conflict("that would leave no active admin".into())));
    }
    Ok(())
}

/// Turns off the user's second factor when it was on (true then): its
/// secret, recovery codes and pending second steps go, and every session
/// ends, since a lost phone may hold one.
fn turn_off_second_factor(c: &rusqlite::Connection, id: &str, now: i64) -> Result<bool, StoreError> {
    if second_factor::enrolment(c, id)? != Some(Enrolment::Active) {
        return Ok(false);
    }
    second_factor::remove(c, id)?;
    revoke_user_sessions(c, id, None, "mfa_reset_by_admin", now)?;
    Ok(true)
}

/// What a PATCH did beyond setting fields: the mails depend on it.
struct Applied {
    second_factor_off: bool,
    /// The address the account had, when the PATCH gave it another.
    old_address: Option<String>,
}

/// The mails a PATCH may send, built before its write and queued by it
/// only for what it did: the person's notice that their second factor was
/// turned off, and an address change's mails.
#[derive(Default)]
struct PatchMails {
    second_factor: Option<Prepared>,
    address: Option<AddressMails>,
}

impl PatchMails {
    async fn build(
        d: &Deps,
        cfg: &Config,
        id: &str,
        p: &PatchUser,
        address: Option<&NewAddress>,
    ) -> Result<PatchMails, AdminError> {
        // The person hears that their second factor was turned off: if they
        // did not ask for it, an admin account is being misused.
        let turns_off = matches!(p.mfa, Some(PatchMfa { totp: false }));
        if !turns_off && address.is_none() {
            return Ok(PatchMails::default());
        }
        let current = load(d, id.to_string()).await?.email;
        let removed =
            turns_off.then(|| email::prepare(cfg, &d.key, &current, &Template::SecondFactorRemoved));
        let verified = p.email_verified == Some(true);
        let address = address.map(|new| AddressMails::build(cfg, &d.key, &current, new, verified));
        Ok(PatchMails { second_factor: removed.transpose()?, address: address.transpose()? })
    }

    fn enqueue(
        self,
        c: &rusqlite::Connection,
        cap: u32,
        id: &str,
        applied: &Applied,
        now: i64,
    ) -> Result<(), StoreError> {
        if let Some(notice) = self.second_factor.filter(|_| applied.second_factor_off) {
            email::enqueue(c, cap, notice)?;
        }
        match self.address.filter(|_| applied.old_address.is_some()) {
            Some(mails) => mails.enqueue(c, cap, id, now),
            None => Ok(()),
        }
    }
}

/// A PATCH's values, each checked and every refusal told at once (with
/// `missing`, its roles that do not exist); its name cleaned, and its new
/// address if it asks for one.
fn checked_patch(p: &mut PatchUser, missing: Option<AdminError>) -> Result<Option<NewAddress>, AdminError> {
    let name = p.name.take().map(|name| display_text("name", name)).transpose();
    let address = p.email.as_deref().map(NewAddress::parse).transpose();
    let status = p.status.as_deref().is_some_and(|s| s != "active" && s != "disabled");
    let status = status.then(|| AdminError::invalid("status", "must be active or disabled"));
    let mfa = matches!(p.mfa, Some(PatchMfa { totp: true })).then(|| {
        AdminError::invalid("mfa.totp", "can only be false: the person enrolls a second factor themselves")
    });
    match (name, address, status, missing, mfa) {
        (Ok(name), Ok(address), None, None, None) => {
            p.name = name;
            Ok(address)
        }
        (name, address, status, missing, mfa) => {
            let name = name.err().map(AdminError::from);
            Err(AdminError::of_fields([status, missing, address.err(), name, mfa]))
        }
    }
}

/// Applies a PATCH inside one write; refused whole if it would leave no
/// active admin or the new address is taken.
fn apply_patch(
    c: &rusqlite::Connection,
    id: &str,
    p: &PatchUser,
    address: Option<&NewAddress>,
    now: i64,
) -> Result<Applied, StoreError> {
    if queries::user(c, id)?.is_none() {
        return Err(refuse(AdminError::NotFound("user")));
    }
    let admins = active_admins(c)?;
    if let Some(roles) = &p.roles {
        check_roles(c, roles)?;
        queries::set_roles(c, id, roles)?;
    }
    // `status` and `mfa` hold only what `checked_patch` let through.
    if let Some(status) = p.status.as_deref() {
        queries::set_status(c, id, status, now)?;
        if status == "disabled" {
            revoke_user_sessions(c, id, None, "disabled_by_admin", now)?;
            // An account is disabled when it was taken over, say: a
            // change of address its holder asked for must not move it
            // (there, or once enabled again) out of its owner's reach.
            void_email_change(c, id, now)?;
        }
    }
    let old_address = match address {
        Some(new) => super::address::change(c, id, new, p.email_verified == Some(true), now)?,
        None => None,
    };
    if let Some(verified) = p.email_verified {
        queries::set_verified(c, id, verified, now)?;
    }
    if let Some(name) = &p.name {
        set_name(c, id, name.as_deref(), now)?;
    }
    let second_factor_off = match &p.mfa {
        Some(PatchMfa { totp: false }) => turn_off_second_factor(c, id, now)?,
        _ => false,
    };
    keep_an_admin(c, admins)?;
    Ok(Applied { second_factor_off, old_address })
}

#[utoipa::path(patch, path = "/v1/admin/users/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = PatchUser,
    responses((status = 200, description = "The changed user", body = AdminUser)))]
pub async fn patch(
    d: D,
    cfg: LiveConfig,
    who: Principal,
    client: ClientInfo,
    id: web::Path<String>,
    body: ApiJson<PatchUser>,
) -> Result<HttpResponse, ApiError> {
    who.require_admin()?;
    let (id, actor) = (id.into_inner(), who.actor());
    let (uid, mut p) = (id.clone(), body.0);
    let missing = roles_at_fault(&d, p.roles.as_deref().unwrap_or_default()).await?;
    let address = checked_patch(&mut p, missing)?;
    let unlock = p.unlock == Some(true);
    let new_status = p.status.clone();
    let mails = PatchMails::build(&d, &cfg, &id, &p, address.as_ref()).await?;
    let cap = cfg.email.max_per_recipient;
    d.store
        .write(move |c| {
            let now = crate::clock::now_unix();
            let applied = apply_patch(c, &uid, &p, address.as_ref(), now)?;
            let moved = applied.old_address.as_ref().zip(address.as_ref());
            let email = moved.map(|(from, to)| json!({ "from": from, "to": to.email() }));
            let mfa = p.mfa.as_ref().map(|m| json!({ "totp": m.totp, "turned_off": applied.second_factor_off }));
            mails.enqueue(c, cap, &uid, &applied, now)?;
            let details = json!({ "status": p.status, "roles": p.roles, "unlock": p.unlock, "email_verified": p.email_verified, "email": email, "mfa": mfa, "name": p.name.is_some().then_some("changed") });
            // A PATCH that asked for nothing, or only for the address the
            // account has, changed nothing: a row saying so would be noise.
            if details.as_object().is_some_and(|fields| fields.values().all(serde_json::Value::is_null)) {
                return Ok(());
            }
            let entry = Entry { action: "user_updated", actor_id: Some(&actor), subject_id: Some(&uid), client: Some(&client), details };
            audit::record(c, &entry)
        })
        .await
        .map_err(refusal)?;
    // Their keys follow at once: not after the read below, nor never if it fails.
    if let Some(status) = new_status {
        d.api_keys.suspend_owner(&id, status == "disabled");
    }
    d.outbox.wake.notify_one();
    let user = load(&d, id).await?;
    if unlock {
        d.defense.clear_login_failures(&user.email_norm).await.map_err(AdminError::from)?;
    }
    Ok(HttpResponse::Ok().json(load(&d, user.id).await?))
}

#[utoipa::path(delete, path = "/v1/admin/users/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 204, description = "Deleted (audit rows stay)")))]
pub async fn delete(
    d: D,
    who: Principal,
    client: ClientInfo,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    who.require_admin()?;
    let (id, actor) = (id.into_inner(), who.actor());
    let uid = id.clone();
    d.store
        .write(move |c| {
            let admins = active_admins(c)?;
            let Some(email) = queries::delete_user(c, &uid)? else {
                return Err(refuse(AdminError::NotFound("user")));
            };
            keep_an_admin(c, admins)?;
            let entry = Entry {
                action: "user_deleted",
                actor_id: Some(&actor),
                subject_id: Some(&uid),
                client: Some(&client),
                details: json!({ "email_tag": audit::email_tag(&email)? }),
            };
            audit::record(c, &entry)
        })
        .await
        .map_err(refusal)?;
    d.api_keys.drop_owner(&id);
    Ok(HttpResponse::NoContent().finish())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_search_for_an_internationalized_address_looks_for_its_stored_form() {
        assert_eq!(super::searched_for("Ana@Bücher.example"), "ana@xn--bcher-kva.example");
        assert_eq!(super::searched_for("Bücher"), "Bücher", "a name or part of one: as typed");
        assert_eq!(super::searched_for("ANA@example"), "ANA@example");
    }
}
