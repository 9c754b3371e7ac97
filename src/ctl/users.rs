//! `latchctl users|roles|sessions …`: accounts, roles and sessions through
//! the admin API on the admin socket. Human tables by default, `--json`
//! for scripts.

use std::io::Read;

use anyhow::{Context, anyhow, bail};
use clap::Subcommand;
use serde_json::{Value, json};

use super::client::encode;
use super::{AdminClient, cell, fields, mail_destination, print, table, with_total};

#[derive(Subcommand)]
pub enum UsersCmd {
    /// Create an account (the first admin: `users add EMAIL --role admin --password-stdin --verified`).
    Add {
        /// The address the person signs in with.
        #[arg(value_parser = super::named)]
        email: String,
        /// A role to give (repeatable).
        #[arg(long = "role", value_name = "ROLE")]
        roles: Vec<String>,
        /// Read the password from standard input; without it the user is
        /// mailed a link to choose one.
        #[arg(long)]
        password_stdin: bool,
        /// Mark the address as verified.
        #[arg(long)]
        verified: bool,
        /// The person's name, as `me` shows it.
        #[arg(long)]
        name: Option<String>,
    },
    /// Bring accounts over from another system: one JSON object a line
    /// (`-`: standard input), as `{"email", "password_hash"?, "name"?,
    /// "roles"?, "email_verified"?}`. A `password_hash` (bcrypt, Django or
    /// Werkzeug PBKDF2-SHA256, Werkzeug scrypt, argon2) is kept until the
    /// person's first sign-in; a line without one mails an invitation.
    /// Addresses already registered are counted and left as they are.
    Import {
        /// The file of accounts (JSON Lines).
        file: std::path::PathBuf,
    },
    /// List accounts (newest first).
    List {
        /// A part of the email or name.
        #[arg(long)]
        query: Option<String>,
        /// active or disabled.
        #[arg(long)]
        status: Option<String>,
        /// Which page of the list, from 1.
        #[arg(long, default_value_t = 1)]
        page: u32,
        /// Accounts per page.
        #[arg(long, default_value_t = 50)]
        page_size: u32,
    },
    /// Show one account (by id or email).
    Show {
        /// The account's id or email.
        #[arg(value_parser = super::named)]
        user: String,
    },
    /// Disable an account: it cannot log in, its sessions end at once.
    Disable {
        /// The account's id or email.
        #[arg(value_parser = super::named)]
        user: String,
    },
    /// Enable a disabled account.
    Enable {
        /// The account's id or email.
        #[arg(value_parser = super::named)]
        user: String,
    },
    /// Lift the login lock and throttling of an account's email.
    Unlock {
        /// The account's id or email.
        #[arg(value_parser = super::named)]
        user: String,
    },
    /// Turn off an account's two-step verification (its person lost the
    /// authenticator and the recovery codes): signs it out everywhere and
    /// mails the person; they enroll again themselves.
    ResetMfa {
        /// The account's id or email.
        #[arg(value_parser = super::named)]
        user: String,
    },
    /// Give an account another address to sign in with: the new one is
    /// mailed a link to confirm it (unless --verified), the old one is told,
    /// and links mailed to the old one stop working.
    SetEmail {
        /// The account's id or its current email.
        #[arg(value_parser = super::named)]
        user: String,
        /// The new address.
        #[arg(value_parser = super::named)]
        email: String,
        /// The new address is known to be the person's: no confirmation.
        #[arg(long)]
        verified: bool,
    },
    /// Give an account another display name, or none (without NAME), as
    /// the person can on their account page.
    SetName {
        /// The account's id or email.
        #[arg(value_parser = super::named)]
        user: String,
        /// The new name; leave it out to remove the name.
        name: Option<String>,
    },
    /// Give an account a role (see `roles list`). latch's own endpoints
    /// see it at the account's next request; access tokens already issued
    /// carry their old `roles` claim to apps until they expire.
    AddRole {
        /// The account's id or email.
        #[arg(value_parser = super::named)]
        user: String,
        /// The role's name.
        #[arg(value_parser = super::named)]
        role: String,
    },
    /// Take a role from an account (as add-role, the other way).
    RemoveRole {
        /// The account's id or email.
        #[arg(value_parser = super::named)]
        user: String,
        /// The role's name.
        #[arg(value_parser = super::named)]
        role: String,
    },
    /// Delete an account with its sessions (audit rows stay).
    Delete {
        /// The account's id or email.
        #[arg(value_parser = super::named)]
        user: String,
    },
}

impl UsersCmd {
    /// The account the command names, as typed (an id or an address).
    fn account(&self) -> Option<&str> {
        match self {
            Self::Show { user }
            | Self::Disable { user }
            | Self::Enable { user }
            | Self::Unlock { user }
            | Self::ResetMfa { user }
            | Self::Delete { user }
            | Self::SetEmail { user, .. }
            | Self::SetName { user, .. }
            | Self::AddRole { user, .. }
            | Self::RemoveRole { user, .. } => Some(user),
            Self::Add { .. } | Self::Import { .. } | Self::List { .. } => None,
        }
    }
}

/// The API's "no such user" for an id the operator typed, said with that
/// id (as an address that names nobody is).
fn naming_the_id(user: &str, e: anyhow::Error) -> anyhow::Error {
    let no_such = matches!(e.downcast_ref::<super::client::ClientError>(),
        Some(super::client::ClientError::Problem { status: 404, detail, .. }) if detail == "no such user");
    match no_such && !user.contains('@') {
        true => anyhow!("no user with id {}", super::printable(user, false)),
        false => e,
    }
}

#[derive(Subcommand)]
pub enum RolesCmd {
    /// The roles, with how many accounts hold each.
    List,
    /// Define a role that admins can then give to accounts.
    Add {
        /// The role's name, as access tokens carry it in `roles`.
        #[arg(value_parser = super::named)]
        name: String,
        /// What the role is for.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Delete a role: every account holding it loses it (`admin` stays).
    Remove {
        /// The role's name.
        #[arg(value_parser = super::named)]
        name: String,
    },
}

#[derive(Subcommand)]
pub enum SessionsCmd {
    /// Live sessions, of one user or of all.
    List {
        /// The user's id or email (as `users show` takes it).
        #[arg(value_parser = super::named, value_name = "USER", conflicts_with = "user")]
        person: Option<String>,
        /// The same, as an option.
        #[arg(long, value_parser = super::named)]
        user: Option<String>,
    },
    /// End a session at once.
    Revoke {
        /// The session's id (see `list`).
        #[arg(value_parser = super::named)]
        id: String,
    },
}

/// The admin API's path of the account `id` (as typed: encoded, so that
/// no id can name another path or smuggle a second request).
fn user_path(id: &str) -> String {
    format!("/v1/admin/users/{}", encode(id))
}

/// The id of `user` (an id, or an email looked up).
///
/// The search matches parts of addresses, so on a large install a short
/// address (`m@gmail.com`) is inside hundreds of others (`tom@gmail.com`):
/// every page is read until the exact one turns up.
pub(super) fn user_id(client: &AdminClient, user: &str) -> anyhow::Result<String> {
    if !user.contains('@') {
        return Ok(user.to_string());
    }
    // Stored addresses are ASCII: `ana@Bücher.example` is searched for as
    // `ana@xn--bcher-kva.example`.
    let wanted = crate::auth::normalize_email(user);
    for page in 1.. {
        let path = format!("/v1/admin/users?query={}&page={page}&page_size=500", encode(&wanted));
        let found = client.get(&path)?;
        let items = found["items"].as_array().cloned().unwrap_or_default();
        let exact = items
            .iter()
            .find(|u| u["email"].as_str().is_some_and(|e| crate::auth::normalize_email(e) == wanted));
        if let Some(u) = exact {
            return Ok(u["id"].as_str().unwrap_or_default().to_string());
        }
        if items.len() < 500 {
            break;
        }
    }
    bail!("no user with email {user}")
}

/// id, email, name, status, verified, roles (and a lock, if any). The
/// name is there because a search matches names too: a row found by one
/// must show why.
fn user_cells(u: &Value) -> Vec<String> {
    let roles: Vec<&str> = u["roles"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    let verified = if u["email_verified"] == true { "yes" } else { "no" };
    let locked = u["locked_until"].as_str().map(|t| format!(" (locked until {t})")).unwrap_or_default();
    let roles = if roles.is_empty() { "-".to_string() } else { roles.join(",") };
    let name = cell(u, "name", "-");
    let name = match name.chars().count() > NAME_WIDTH {
        true => name.chars().take(NAME_WIDTH - 1).chain(['…']).collect(),
        false => name,
    };
    let (id, email, status) = (cell(u, "id", "?"), cell(u, "email", "?"), cell(u, "status", "?"));
    vec![id, email, name, status, verified.into(), roles + &locked]
}

/// Names longer than this are cut in tables (`show` prints them whole).
const NAME_WIDTH: usize = 24;
const USER_HEAD: [&str; 6] = ["ID", "EMAIL", "NAME", "STATUS", "VERIFIED", "ROLES"];

/// One account, a field a line: what an operator asks about a person.
fn user_detail(u: &Value) -> String {
    let roles: Vec<&str> = u["roles"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    let yes_no = |v: &Value| if v == &Value::Bool(true) { "yes" } else { "no" };
    let mut rows = vec![
        ("id", cell(u, "id", "?")),
        ("email", cell(u, "email", "?")),
        ("verified", yes_no(&u["email_verified"]).to_string()),
        ("name", cell(u, "name", "-")),
        ("status", cell(u, "status", "?")),
        ("roles", if roles.is_empty() { "-".to_string() } else { roles.join(", ") }),
        ("two-step", if u["mfa"]["totp"] == true { "TOTP".to_string() } else { "off".to_string() }),
        ("locked until", cell(u, "locked_until", "-")),
        ("created", cell(u, "created_at", "?")),
        ("last sign-in", cell(u, "last_login_at", "never")),
    ];
    let change = &u["email_change"];
    if change.is_object() {
        let (to, until) = (cell(change, "to", "?"), cell(change, "expires_at", "?"));
        rows.push((
            "moving to",
            match change["link_sent"] == false {
                true => {
                    format!("nowhere: they asked for {to}, which another account holds, so no link was sent")
                }
                false => format!("{to}, once its link is opened (it works until {until})"),
            },
        ));
    }
    fields(&rows)
}

const UNLOCKED: &str = "unlocked: failed sign-ins on this address are forgotten; they can sign in at once";
const MFA_TURNED_OFF: &str = "two-step verification turned off: its secret and recovery codes are gone and \
     every session ended; they sign in with their password and can set it up again";
const MFA_WAS_OFF: &str = "two-step verification was not on; nothing changed";

fn user_line(u: &Value) -> String {
    table(&USER_HEAD, &[user_cells(u)], "")
}

/// Adds `role` to the user's set or takes it out, through the PATCH that
/// replaces the set (API.md); the answer is the user after the change.
fn change_role(client: &AdminClient, user: &str, role: &str, add: bool) -> anyhow::Result<Value> {
    let id = user_id(client, user)?;
    let path = user_path(&id);
    let current = client.get(&path)?;
    let mut roles: Vec<String> = current["roles"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect();
    let has = roles.iter().any(|r| r == role);
    match (add, has) {
        (true, true) | (false, false) => return Ok(current),
        (true, false) => roles.push(role.to_string()),
        (false, true) => roles.retain(|r| r != role),
    }
    Ok(client.request("PATCH", &path, Some(&json!({ "roles": roles })))?)
}

fn read_password() -> anyhow::Result<String> {
    let mut password = String::new();
    std::io::stdin().read_to_string(&mut password).context("reading the password from standard input")?;
    let password = password.trim_end_matches(['\n', '\r']).to_string();
    if password.is_empty() {
        bail!("no password on standard input");
    }
    Ok(password)
}

pub fn users(client: &AdminClient, cmd: &UsersCmd, json: bool) -> anyhow::Result<bool> {
    run_users(client, cmd, json).map_err(|e| match cmd.account() {
        Some(user) => naming_the_id(user, e),
        None => e,
    })
}

fn run_users(client: &AdminClient, cmd: &UsersCmd, json: bool) -> anyhow::Result<bool> {
    let patch = |user: &str, body: Value| -> anyhow::Result<Value> {
        let id = user_id(client, user)?;
        Ok(client.request("PATCH", &user_path(&id), Some(&body))?)
    };
    // The user after the command, and what the table alone would not say.
    let (answer, said): (Value, Option<String>) = match cmd {
        UsersCmd::Add { email, roles, password_stdin, verified, name } => {
            let password = if *password_stdin { Some(read_password()?) } else { None };
            let body = json!({ "email": email, "password": password, "roles": roles, "email_verified": verified, "name": name });
            let named = [("roles", "--role"), ("name", "--name")];
            let user = client.post("/v1/admin/users", Some(&body)).map_err(|e| e.as_typed(&named))?;
            let said = if json { None } else { invitation_said(client, &user, email) };
            (user, said)
        }
        UsersCmd::Import { file } => return super::import::run(client, file, json),
        UsersCmd::List { query, status, page, page_size } => {
            return list(client, json, query.as_deref(), status.as_deref(), *page, *page_size);
        }
        UsersCmd::Show { user } => {
            let shown = client.get(&user_path(&user_id(client, user)?))?;
            print(json, &shown, user_detail);
            return Ok(true);
        }
        UsersCmd::Disable { user } => (patch(user, json!({ "status": "disabled" }))?, None),
        UsersCmd::Enable { user } => (patch(user, json!({ "status": "active" }))?, None),
        UsersCmd::Unlock { user } => (patch(user, json!({ "unlock": true }))?, Some(UNLOCKED.into())),
        UsersCmd::ResetMfa { user } => {
            // The table has no two-step column: say what the reset did.
            let id = user_id(client, user)?;
            let before = client.get(&user_path(&id))?;
            let said = if before["mfa"]["totp"] == json!(true) { MFA_TURNED_OFF } else { MFA_WAS_OFF };
            (patch(&id, json!({ "mfa": { "totp": false } }))?, Some(said.into()))
        }
        UsersCmd::SetEmail { user, email, verified } => {
            let verified = verified.then_some(true);
            (patch(user, json!({ "email": email, "email_verified": verified }))?, None)
        }
        UsersCmd::SetName { user, name } => {
            // Shown as stored: trimmed, cut to 128 characters.
            let changed = patch(user, json!({ "name": name }))?;
            let said = format!("name: {}", cell(&changed, "name", "none"));
            (changed, Some(said))
        }
        UsersCmd::AddRole { user, role } => (change_role(client, user, role, true)?, None),
        UsersCmd::RemoveRole { user, role } => (change_role(client, user, role, false)?, None),
        UsersCmd::Delete { user } => {
            let id = user_id(client, user)?;
            client.delete(&user_path(&id))?;
            print(json, &json!({ "deleted": id }), |_| format!("deleted {id}"));
            return Ok(true);
        }
    };
    print(json, &answer, |u| match &said {
        Some(said) => format!("{}\n{said}", user_line(u)),
        None => user_line(u),
    });
    Ok(true)
}

/// Without a password the admin should know what happens next.
fn invitation_said(client: &AdminClient, user: &Value, email: &str) -> Option<String> {
    match user["invitation"].as_str()? {
        "queued" => {
            Some(format!("invitation to choose a password for {email}: {}", mail_destination(client)))
        }
        _ => Some(format!(
            "invitation NOT sent: {email} already had [email].max_per_recipient messages this hour; \
             once the hour has passed they can use \"forgot password\" to choose one"
        )),
    }
}

fn list(
    client: &AdminClient,
    json: bool,
    query: Option<&str>,
    status: Option<&str>,
    page: u32,
    page_size: u32,
) -> anyhow::Result<bool> {
    let mut path = format!("/v1/admin/users?page={page}&page_size={page_size}");
    if let Some(q) = query {
        path.push_str(&format!("&query={}", encode(q)));
    }
    if let Some(s) = status {
        path.push_str(&format!("&status={}", encode(s)));
    }
    let named =
        [("page", "--page"), ("page_size", "--page-size"), ("status", "--status"), ("query", "--query")];
    let list = client.get(&path).map_err(|e| e.as_typed(&named))?;
    print(json, &list, |l| {
        let items = l["items"].as_array().cloned().unwrap_or_default();
        let rows: Vec<Vec<String>> = items.iter().map(user_cells).collect();
        // Nothing to count when nothing matched; a page past the end says
        // how many there are.
        if l["total"].as_u64() == Some(0) {
            return if query.is_some() || status.is_some() { "no users match" } else { "no users" }.into();
        }
        let count = format!("({} of {} users, page {})", items.len(), l["total"], l["page"]);
        format!("{}\n{count}", table(&USER_HEAD, &rows, "no users on this page"))
    });
    Ok(true)
}

pub fn roles(client: &AdminClient, cmd: &RolesCmd, json: bool) -> anyhow::Result<bool> {
    match cmd {
        RolesCmd::List => {
            let list = client.get("/v1/admin/roles")?;
            print(json, &list, |l| {
                let items = l["items"].as_array().cloned().unwrap_or_default();
                let rows: Vec<Vec<String>> = items
                    .iter()
                    .map(|r| vec![cell(r, "name", "?"), r["users"].to_string(), cell(r, "description", "")])
                    .collect();
                table(&["ROLE", "USERS", "DESCRIPTION"], &rows, "no roles")
            });
        }
        RolesCmd::Add { name, description } => {
            let body = json!({ "name": name, "description": description });
            let named = [("description", "--description")];
            let role = client.post("/v1/admin/roles", Some(&body)).map_err(|e| e.as_typed(&named))?;
            print(json, &role, |r| format!("added role {}", r["name"].as_str().unwrap_or("?")));
        }
        RolesCmd::Remove { name } => {
            client.delete(&format!("/v1/admin/roles/{}", encode(name)))?;
            print(json, &json!({ "removed": name }), |_| format!("removed role {name}"));
        }
    }
    Ok(true)
}

/// A session as its owner would recognise it: the app's device name, else
/// its browser and system ("Firefox on Windows"), as the account page says.
fn session_cells(s: &Value) -> Vec<String> {
    let device = s["device_name"].as_str().map(str::to_string);
    let device = device.or_else(|| s["user_agent"].as_str().map(crate::http::device::describe));
    let (id, user, ip) = (cell(s, "id", "?"), cell(s, "email", "?"), cell(s, "ip", "-"));
    let (since, seen) = (cell(s, "created_at", "?"), cell(s, "last_seen_at", "?"));
    vec![id, user, device.unwrap_or_else(|| "-".into()), ip, since, seen]
}

pub fn sessions(client: &AdminClient, cmd: &SessionsCmd, json: bool) -> anyhow::Result<bool> {
    match cmd {
        SessionsCmd::List { person, user } => {
            let path = match person.as_ref().or(user.as_ref()) {
                Some(u) => {
                    let id = user_id(client, u)?;
                    // An id that names no account is a mistake to say, not
                    // an account without sessions (an address was looked
                    // up already).
                    if !u.contains('@') {
                        client.get(&user_path(&id)).map_err(|e| naming_the_id(u, e.into()))?;
                    }
                    format!("/v1/admin/sessions?user_id={}", encode(&id))
                }
                None => "/v1/admin/sessions".to_string(),
            };
            let list = client.get(&path)?;
            print(json, &list, |l| {
                let items = l["items"].as_array().cloned().unwrap_or_default();
                let rows: Vec<Vec<String>> = items.iter().map(session_cells).collect();
                let head = ["SESSION", "USER", "DEVICE", "IP", "SINCE", "LAST SEEN"];
                let shown = table(&head, &rows, "no live sessions");
                with_total(shown, rows.len(), &l["total"], "live sessions")
            });
        }
        SessionsCmd::Revoke { id } => {
            client.delete(&format!("/v1/admin/sessions/{}", encode(id)))?;
            print(json, &json!({ "revoked": id }), |_| format!("revoked {id}"));
        }
    }
    Ok(true)
}
