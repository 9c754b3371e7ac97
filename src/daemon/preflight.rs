//! What `latchd check-config` and `latchctl config check` look at beyond
//! the file's syntax and rules, and what `latchd serve` checks before
//! anything else: the files the config names — certificate and key, HS256
//! secret, pepper, breached list, SMTP password and CAs, master key — are
//! opened and checked as a start would, argon2's workspaces must fit in the
//! memory latchd may use, and each problem is put on its key's line. Run
//! as root, the check commands read them as the state directory's
//! owner (the user latchd runs as, with that user's groups): a key that
//! only root can read passes for root and then stops the daemon.

use std::path::{Path, PathBuf};

use anyhow::Context;
use nix::unistd::{Uid, User, getgrouplist, setgid, setgroups, setuid};

use crate::auth::{check_secret_file, read_pepper, workspaces_fit};
use crate::config::{Config, ConfigError, Faulted};
use crate::email::SmtpSettings;
use crate::http::tls::{TlsError, load_certified_key};

/// Loads the config at `path` and checks every file it names; each
/// problem is one `PATH:LINE: key: reason`, in the file's order. Run as
/// root, the files are read as the state directory's owner.
pub fn check(path: Option<&Path>) -> Result<Config, Vec<ConfigError>> {
    let (cfg, mut faults, stood_in) = loaded(path)?;
    let reader = match read_as_state_owner(&cfg) {
        Ok(name) => name,
        Err(e) => {
            faults.push(cfg.problem_at("server.state_dir", crate::one_line(&e)));
            return Err(faults);
        }
    };
    // Read as root, the file itself may be closed to the user latchd is.
    if let Some(file) = &cfg.source
        && let Err(e) = std::fs::File::open(file)
    {
        let source = std::io::Error::new(e.kind(), format!("{e} (checked as {reader})"));
        faults.insert(0, ConfigError::Read { path: file.display().to_string(), source });
        return Err(faults);
    }
    with_files(cfg, faults, &stood_in, &reader)
}

/// `latchd serve`'s first step: the config, and every file it names opened
/// and checked as this process, so a start that cannot read its
/// certificate stops before it touches the database, saying which key and
/// line.
pub fn load_checked(path: Option<&Path>) -> Result<Config, Vec<ConfigError>> {
    let (cfg, faults, stood_in) = loaded(path)?;
    with_files(cfg, faults, &stood_in, &current_user())
}

/// The config, or what the rest of a file with faults makes (its faults
/// beside it, and the keys whose defaults stand in), so the files its
/// other keys name are checked in the same run and both kinds are told at
/// once — unless a `[server]` key is at fault: then whose state directory
/// (and so as whom to read) is not known.
fn loaded(path: Option<&Path>) -> Result<(Config, Vec<ConfigError>, Vec<String>), Vec<ConfigError>> {
    match Config::load_all(path) {
        Ok(cfg) => Ok((cfg, Vec::new(), Vec::new())),
        Err(Faulted { faults, stand_in: Some(cfg), stood_in })
            if !stood_in.iter().any(|k| k.starts_with("server")) =>
        {
            Ok((*cfg, faults, stood_in))
        }
        Err(faulted) => Err(faulted.faults),
    }
}

/// `faults` and each problem of a file `cfg` names, in the file's order.
/// A default standing in for a key at fault names no file of the file's.
fn with_files(
    cfg: Config,
    mut faults: Vec<ConfigError>,
    stood_in: &[String],
    reader: &str,
) -> Result<Config, Vec<ConfigError>> {
    let judged = |key: &str| !stood_in.iter().any(|out| key == out || key.starts_with(&format!("{out}.")));
    let problems = file_problems(&cfg, reader).into_iter().filter(|(key, _)| judged(key));
    faults.extend(problems.map(|(key, reason)| cfg.problem_at(key, reason)));
    faults.sort_by_key(ConfigError::line);
    if faults.is_empty() { Ok(cfg) } else { Err(faults) }
}

fn current_user() -> String {
    let name = User::from_uid(Uid::effective()).ok().flatten().map_or_else(|| "this user".into(), |u| u.name);
    format!("user {name}")
}

/// As root, becomes the owner of an existing state directory that root
/// does not own, with that user's groups. Says who reads the files.
fn read_as_state_owner(cfg: &Config) -> anyhow::Result<String> {
    let root = cfg.state.root();
    if !Uid::effective().is_root() {
        return Ok(current_user());
    }
    let Ok(meta) = std::fs::metadata(root) else { return Ok(current_user()) };
    let uid = Uid::from_raw(std::os::unix::fs::MetadataExt::uid(&meta));
    if uid.is_root() {
        return Ok(current_user());
    }
    let user = User::from_uid(uid)?
        .with_context(|| format!("{} is owned by uid {uid}, unknown here", root.display()))?;
    let name = std::ffi::CString::new(user.name.clone())?;
    let groups = getgrouplist(&name, user.gid).unwrap_or_else(|_| vec![user.gid]);
    setgroups(&groups).context("dropping root's groups")?;
    setgid(user.gid).context("switching group")?;
    setuid(uid).context("switching user")?;
    Ok(format!("user {}, the owner of {}", user.name, root.display()))
}

/// The files the config names, by key; a master key file only once it
/// exists (latchd makes it at first start).
fn named_files(cfg: &Config) -> Vec<(&'static str, PathBuf)> {
    let mut files = Vec::new();
    if let Some(tls) = &cfg.tls {
        files.push(("tls.cert", tls.cert.clone()));
        files.push(("tls.key", tls.key.clone()));
    }
    let optional = [
        ("tokens.secret_file", cfg.tokens.secret_file.clone()),
        ("passwords.pepper_file", cfg.passwords.pepper_file.clone()),
        ("passwords.breached_list", cfg.passwords.breached_list.clone()),
        ("smtp.password_file", cfg.smtp.as_ref().and_then(|s| s.password_file.clone())),
        ("smtp.ca_file", cfg.smtp.as_ref().and_then(|s| s.ca_file.clone())),
    ];
    files.extend(optional.into_iter().filter_map(|(key, path)| Some((key, path?))));
    let master = cfg.state.key_file();
    if master.exists() {
        files.push(("server.key_file", master.to_path_buf()));
    }
    files
}

/// (key, reason) for each file that cannot be opened, then for each
/// readable one that would not do. The breached list is only opened: it
/// may be large, and a start reads it anyway.
fn file_problems(cfg: &Config, reader: &str) -> Vec<(&'static str, String)> {
    let mut problems = Vec::new();
    for (key, path) in named_files(cfg) {
        let opened = std::fs::File::open(&path).and_then(|f| f.metadata());
        let reason = match opened {
            Ok(meta) if meta.is_dir() => "is a directory, not a file".to_string(),
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                format!("{e} (checked as {reader})")
            }
            Err(e) => e.to_string(),
        };
        problems.push((key, format!("{}: {reason}", path.display())));
    }
    let unreadable: Vec<&str> = problems.iter().map(|(key, _)| *key).collect();
    if let Some(files) = &cfg.tls
        && !unreadable.iter().any(|k| k.starts_with("tls."))
        && let Err(e) = load_certified_key(files)
    {
        let key = match &e {
            TlsError::Io { path, .. } | TlsError::Pem { path, .. } if *path == files.key => "tls.key",
            TlsError::Key(_) => "tls.key",
            _ => "tls.cert",
        };
        problems.push((key, e.to_string()));
    }
    let smtp = SmtpSettings::check(cfg).map_err(|reason| {
        let keys = ["smtp.password_file", "smtp.ca_file", "smtp.username"];
        let key = keys.into_iter().find(|k| reason.starts_with(k));
        (key.unwrap_or("smtp.host"), reason)
    });
    let checks = [
        check_secret_file(cfg).map_err(|e| ("tokens.secret_file", e.to_string())),
        read_pepper(cfg.passwords.pepper_file.as_deref()).map(drop).map_err(|e| ("passwords.pepper_file", e)),
        workspaces_fit(cfg.passwords.argon2).map_err(|e| ("passwords.argon2.memory_kib", e)),
        smtp,
    ];
    for (key, reason) in checks.into_iter().filter_map(Result::err) {
        if !unreadable.contains(&key) {
            // The readers name their key first; the line already does.
            problems
                .push((key, reason.strip_prefix(key).map_or(reason.as_str(), str::trim_start).to_string()));
        }
    }
    problems
}
