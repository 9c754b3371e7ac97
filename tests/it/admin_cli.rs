//! `latchctl` against a real daemon: status and reload over the admin socket
//! (with its peer check), offline commands refusing while latchd runs.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::process::{Command, Output};

use serde_json::{Value, json};

use crate::harness::{Latchd, assert_problem, base_config, write_config};

pub const LATCHCTL: &str = env!("CARGO_BIN_EXE_latchctl");

fn latchctl(d: &Latchd, args: &[&str]) -> Output {
    latchctl_on(&d.state_dir(), args)
}

/// `latchctl --state-dir STATE ARGS…`, also after the daemon stopped.
pub fn latchctl_on(state: &std::path::Path, args: &[&str]) -> Output {
    Command::new(LATCHCTL)
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .env_remove("LATCH_CONFIG")
        .output()
        .expect("run latchctl")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test]
async fn status_reports_the_running_daemon() {
    let d = Latchd::start().await;
    let out = latchctl(&d, &["--json", "status"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["pid"], d.pid());
    assert_eq!(status["database"]["ok"], true);
    // The newest migration shipped in migrations/ is the running schema.
    let schema = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations")).unwrap().count();
    assert_eq!(status["database"]["schema_version"], schema);
    assert_eq!(status["listeners"], d.ready["listeners"]);
    assert_eq!(status["admin_socket"], d.ready["admin_socket"]);
    // The served certificate's expiry and the audit chain, for an operator
    // without Prometheus: the generated one lives 364 days.
    assert_eq!(status["tls"]["generated"], true, "{status}");
    let days = status["tls"]["days_left"].as_i64().unwrap_or_else(|| panic!("{status}"));
    assert!((362..=364).contains(&days), "{status}");
    let human = stdout(&latchctl(&d, &["status"]));
    let expires = status["tls"]["expires"].as_str().unwrap();
    // A whole day left may end between the two calls (the certificate was
    // made in the same second as the first).
    let certificate =
        |days: i64| format!("certificate  expires {expires} (in {days} days); self-signed, renewed by latch");
    assert!(human.contains(&certificate(days)) || human.contains(&certificate(days - 1)), "{human}");
    assert!(human.lines().any(|l| l.starts_with("audit chain  ") && !l.contains("BROKEN")), "{human}");
    assert!(human.contains(&format!("(pid {})", d.pid())), "{human}");
    assert!(human.contains(&format!("ok (schema {schema})")), "{human}");
    // Stuck mail, where mail goes and the age of the newest backup, at a
    // glance: without [smtp], an operator must know to look in mail/.
    let mail_dir = d.state_dir().join("mail");
    assert_eq!(
        status["mail"],
        serde_json::json!({"queued": 0, "dead": 0, "failing": null, "delivery": {"via": "files", "dir": mail_dir}})
    );
    let mail_line = format!("0 queued, 0 dead; written as files to {} (no [smtp])", mail_dir.display());
    assert!(human.contains(&mail_line) && human.contains("backups      none yet in "), "{human}");
    // With no backup file yet, the WAL archive (on by default) can still
    // restore: status says from when, once the first snapshot is written.
    let archive = d.state_dir().join("archive");
    let mut status = status;
    for _ in 0..50 {
        if status["archive"]["restorable_from"].is_string() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        status = serde_json::from_slice(&latchctl(&d, &["--json", "status"]).stdout).unwrap();
    }
    assert_eq!(
        (&status["archive"]["enabled"], &status["archive"]["dir"]),
        (&Value::from(true), &json!(archive))
    );
    let from = status["archive"]["restorable_from"].as_str().unwrap_or_else(|| panic!("{status}"));
    let human = stdout(&latchctl(&d, &["status"]));
    // "to the last commit", or how many seconds it trails it on a busy machine.
    let line = human.lines().find(|l| l.starts_with("WAL archive  ")).unwrap_or_else(|| panic!("{human}"));
    let (head, tail) =
        (format!("WAL archive  restorable from {from} to "), format!(", in {}", archive.display()));
    assert!(line.starts_with(&head) && line.ends_with(&tail), "{human}");
    let said = stdout(&latchctl(&d, &["users", "add", "jo@example.test"]));
    let invited =
        format!("invitation to choose a password for jo@example.test: written to {}", mail_dir.display());
    assert!(said.contains(&invited), "{said}");
    let taken = latchctl(&d, &["backup", "now"]);
    assert!(taken.status.success(), "{}", stderr(&taken));
    let status: Value = serde_json::from_slice(&latchctl(&d, &["--json", "status"]).stdout).unwrap();
    let newest = status["backups"]["newest"].as_str().unwrap_or_else(|| panic!("{status}"));
    assert!(newest.starts_with("20") && newest.ends_with('Z'), "{newest}");
    // A folder that cannot be listed is said to be so, not "none yet".
    let backups = d.state_dir().join("backups");
    std::fs::remove_dir_all(&backups).unwrap();
    std::fs::write(&backups, "not a folder").unwrap();
    let human = stdout(&latchctl(&d, &["status"]));
    let line = human.lines().find(|l| l.starts_with("backups")).unwrap_or_else(|| panic!("{human}"));
    assert!(line.contains("cannot list:") && line.contains("Not a directory"), "{human}");
    std::fs::remove_file(&backups).unwrap();
    // No world access to the admin socket, whatever the host's groups.
    let socket = d.ready["admin_socket"].as_str().unwrap();
    let mode = std::fs::metadata(socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o007, 0, "mode {mode:o}");
}

/// `latchctl status` run as uid/gid 65534 (nobody), a user outside every group.
fn status_as_nobody(socket: &str) -> std::process::Output {
    Command::new(LATCHCTL)
        .args(["--socket", socket, "status"])
        .env_remove("LATCH_CONFIG")
        .current_dir("/")
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap()
}

/// Runs latchctl as another user, so it needs root: `scripts/test.sh`
/// leaves out the tests named `*_as_root`, and says so, when it is not root.
#[tokio::test]
async fn peers_outside_the_admin_group_are_refused_as_root() {
    assert!(nix::unistd::Uid::effective().is_root(), "needs root to act as another user");
    let d = Latchd::start().await;
    let socket = d.ready["admin_socket"].as_str().unwrap().to_string();
    // Open the file permissions so only the SO_PEERCRED check stands in the way.
    std::fs::set_permissions(d.state_dir(), std::fs::Permissions::from_mode(0o711)).unwrap();
    // First the socket's own mode refuses, and latchctl says who may use it.
    let out = status_as_nobody(&socket);
    assert_eq!(out.status.code(), Some(1));
    let gid = nix::unistd::Gid::from_raw(std::fs::metadata(&socket).unwrap().gid());
    let group = nix::unistd::Group::from_gid(gid).unwrap().unwrap().name;
    assert_eq!(
        stderr(&out).trim_end(),
        format!("latchctl: permission denied on {socket}: only root and members of group {group} may use it"),
        "names the socket's group"
    );
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = status_as_nobody(&socket);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("Only root, latchd's user and members of the admin group"),
        "{}",
        stderr(&out)
    );
    assert!(d.log().contains("admin socket: peer refused"));
}

#[tokio::test]
async fn reload_applies_a_valid_file_and_keeps_the_old_one_otherwise() {
    let d = Latchd::start().await;
    let dir = d.dir.path();
    write_config(dir, &base_config("\n[rate_limits]\nip = \"50/1m\"\n"));
    let out = latchctl(&d, &["config", "reload"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "reloaded");

    let broken = base_config("\n[rate_limits]\nip = \"fifty\"\n");
    write_config(dir, &broken);
    let out = latchctl(&d, &["config", "reload"]);
    assert_eq!(out.status.code(), Some(1));
    let line = broken.lines().position(|l| l.starts_with("ip = ")).unwrap() + 1;
    let err = stderr(&out);
    assert!(
        err.starts_with(&format!("latchctl: {}:{line}: rate_limits.ip: ", dir.join("latch.toml").display())),
        "{err}"
    );
    assert!(err.ends_with("\nlatchctl: reload refused: the running config stays\n"), "{err}");
    assert_eq!(err.lines().count(), 2, "{err}");
    assert_eq!(d.get("/ready").await.status(), 200, "still serving");

    let moved = base_config("").replacen("127.0.0.1:0", "127.0.0.1:1", 1);
    write_config(dir, &moved);
    let out = latchctl(&d, &["config", "reload"]);
    assert!(stdout(&out).contains("needs restart for: listener"), "{}", stdout(&out));
    assert_eq!(d.get("/health").await.status(), 200, "listener kept");

    // The file watch may add reloads of its own for the same edits, so
    // count at least what latchctl asked for.
    let metrics = d.get("/metrics").await.text().await.unwrap();
    let count = |result: &str| -> f64 {
        let series = format!("latch_config_reloads_total{{result=\"{result}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series.as_str()))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    assert!(count("success") >= 2.0, "{metrics}");
    assert!(count("error") >= 1.0, "{metrics}");
}

#[tokio::test]
async fn sighup_reloads_and_rejects_a_broken_file() {
    let d = Latchd::start().await;
    write_config(d.dir.path(), &base_config("\n[http]\nmax_body = \"lots\"\n"));
    d.signal(libc::SIGHUP);
    let log = d.log_with("config reload rejected").await;
    assert!(log.contains("http.max_body"), "the log names the key");
    assert_eq!(d.get("/ready").await.status(), 200);
}

#[tokio::test]
async fn offline_commands_refuse_while_the_daemon_runs() {
    let d = Latchd::start().await;
    let state = d.state_dir();
    let out = latchctl(&d, &["db", "check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).starts_with("latchctl: latchd is running on"), "{}", stderr(&out));
    assert_eq!(stderr(&out).lines().count(), 1);

    let key = std::fs::read_to_string(state.join("keys/master.key")).unwrap();
    assert_eq!(stdout(&latchctl(&d, &["keys", "export-master"])).trim(), key.trim());

    let dir = d.stop_keep_dir();
    let run = |args: &[&str]| latchctl_on(&state, args);
    let out = run(&["db", "check"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("integrity     ok"), "{}", stdout(&out));
    let out = run(&["db", "migrate"]);
    assert_eq!(stdout(&out).trim(), "0 migration(s) applied");
    let out = run(&["status"]);
    assert_eq!(out.status.code(), Some(3), "not running, as LSB's status says it");
    assert!(stderr(&out).contains("cannot reach latchd at"), "{}", stderr(&out));
    let said = stdout(&out); // and what a restore could reach, told without it
    assert!(
        said.starts_with("daemon       NOT RUNNING") && said.contains("WAL archive  restorable from"),
        "{said}"
    );
    drop(dir);
}

#[tokio::test]
async fn editing_the_config_file_reloads_it_without_a_signal() {
    let d = Latchd::start().await;
    write_config(d.dir.path(), &base_config("\n[rate_limits]\nip = \"60/1m\"\n"));
    let log = d.log_with("config reloaded").await;
    let named = format!("\"source\":\"{}\"", d.dir.path().join("latch.toml").display());
    assert!(log.lines().any(|l| l.contains("config reloaded") && l.contains(&named)), "{named} in {log}");
    write_config(d.dir.path(), &base_config("\n[rate_limits]\nip = \"sixty\"\n"));
    let log = d.log_with("config reload rejected").await;
    assert!(log.contains("config or certificate file changed"));
    assert_eq!(d.get("/ready").await.status(), 200, "still serving on the old config");
}

/// A register body `padding` bytes longer than its fields need; past the
/// size check it fails at the email (400), so no account is made.
fn padded(padding: usize) -> Value {
    serde_json::json!({"email": "no-at-sign", "password": "x", "padding": "p".repeat(padding)})
}

/// Status of a register call over plain HTTP whose JSON body is sent
/// chunked (no Content-Length), so only the streaming limit can stop it.
fn chunked_register_status(d: &Latchd, padding: usize) -> u16 {
    use std::io::{Read, Write};
    let body = serde_json::to_string(&padded(padding)).unwrap();
    let mut s = std::net::TcpStream::connect(d.addr("http")).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    write!(
        s,
        "POST /v1/auth/register HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    for piece in body.as_bytes().chunks(512) {
        write!(s, "{:x}\r\n", piece.len()).unwrap();
        s.write_all(piece).unwrap();
        s.write_all(b"\r\n").unwrap();
    }
    // The server may answer 413 and close before the last chunk.
    let _ = s.write_all(b"0\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

#[tokio::test]
async fn a_reload_that_raises_or_lowers_max_body_applies_to_the_next_request() {
    let small = base_config("\n[http]\nmax_body = \"1KiB\"\n");
    let d = Latchd::start_with(&small).await;
    let two_kib = || padded(2000);
    assert_eq!(d.post("/v1/auth/register", two_kib()).await.status(), 413);
    assert_eq!(chunked_register_status(&d, 2000), 413, "chunked, without Content-Length");

    write_config(d.dir.path(), &base_config("\n[http]\nmax_body = \"8KiB\"\n"));
    d.signal(libc::SIGHUP);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while d.post("/v1/auth/register", two_kib()).await.status() != 400 {
        assert!(std::time::Instant::now() < deadline, "raise not applied:\n{}", d.log());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(chunked_register_status(&d, 2000), 400);
    assert_eq!(chunked_register_status(&d, 9000), 413);

    write_config(d.dir.path(), &small);
    d.signal(libc::SIGHUP);
    while d.post("/v1/auth/register", two_kib()).await.status() != 413 {
        assert!(std::time::Instant::now() < deadline, "lowering not applied:\n{}", d.log());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// latchctl creates what it writes private (umask 0077), whatever the
/// umask of the shell it was started from.
#[tokio::test]
async fn offline_commands_write_private_files_under_any_umask() {
    let d = Latchd::start().await;
    let state = d.state_dir();
    let dir = d.stop_keep_dir();
    let conn = rusqlite::Connection::open(state.join("latch.db")).unwrap();
    // Pretend migration 3 is pending: it rebuilds a table, after a backup.
    conn.execute("DELETE FROM schema_migrations WHERE version = 3", []).unwrap();
    drop(conn);
    let mut cmd = Command::new(LATCHCTL);
    cmd.arg("--state-dir").arg(&state).args(["db", "migrate"]).env_remove("LATCH_CONFIG");
    // SAFETY: umask in the child just before exec; no allocation, no locks.
    unsafe {
        cmd.pre_exec(|| {
            libc::umask(0o022);
            Ok(())
        })
    };
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "1 migration(s) applied");
    let backups = state.join("backups");
    assert_eq!(std::fs::metadata(&backups).unwrap().permissions().mode() & 0o777, 0o700);
    for entry in std::fs::read_dir(&backups).unwrap().flatten() {
        assert_eq!(entry.metadata().unwrap().permissions().mode() & 0o777, 0o600, "{:?}", entry.path());
    }
    drop(dir);
}

/// Membership of the admin group is read at every request: adding a user
/// lets them in, removing them shuts them out at once, no restart.
#[tokio::test]
async fn group_membership_is_read_at_every_request_as_root() {
    assert!(nix::unistd::Uid::effective().is_root(), "needs root to manage groups");
    let group = format!("latchtest{}", std::process::id());
    let admin = |args: &[&str]| {
        let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    admin(&["groupadd", &group]);
    admin(&["gpasswd", "-a", "nobody", &group]);
    let d = Latchd::start_with(&base_config(&format!("\n[admin]\ngroup = \"{group}\"\n"))).await;
    std::fs::set_permissions(d.state_dir(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let socket = d.ready["admin_socket"].as_str().unwrap().to_string();
    let gid = nix::unistd::Group::from_name(&group).unwrap().unwrap().gid.as_raw();
    // nobody, with the group among its supplementary groups (as after a login).
    let as_member = || {
        let mut cmd = Command::new(LATCHCTL);
        cmd.args(["--socket", &socket, "status"]).env_remove("LATCH_CONFIG").current_dir("/");
        // SAFETY: setgroups/setgid/setuid in the child before exec.
        unsafe {
            cmd.pre_exec(move || {
                let groups = [gid];
                if libc::setgroups(1, groups.as_ptr()) != 0
                    || libc::setgid(65534) != 0
                    || libc::setuid(65534) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            })
        };
        cmd.output().unwrap()
    };
    let out = as_member();
    let result = std::panic::catch_unwind(|| {
        assert!(out.status.success(), "a member is let in: {}", stderr(&out));
        admin(&["gpasswd", "-d", "nobody", &group]);
        let out = as_member();
        assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
        assert!(
            stderr(&out).contains("Only root, latchd's user and members of the admin group"),
            "{}",
            stderr(&out)
        );
    });
    drop(d);
    admin(&["groupdel", &group]);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// With no admin group configured the socket is its owner's alone, and the
/// log says so (not that a group named "" was not found).
#[tokio::test]
async fn no_admin_group_keeps_the_socket_owner_only() {
    let d = Latchd::start_with(&base_config("\n[admin]\ngroup = \"\"\n")).await;
    let socket = d.ready["admin_socket"].as_str().unwrap();
    assert_eq!(std::fs::metadata(socket).unwrap().permissions().mode() & 0o777, 0o600);
    let log = d.log();
    assert!(log.contains("no admin group configured: admin socket is owner-only (0600)"), "{log}");
}

/// A self-chosen name or device name holding an escape sequence is refused
/// at the API; one already stored (from before, or written behind latch's
/// back) is shown escaped by latchctl, never sent raw to the terminal,
/// where it could clear the screen, retitle the window or forge a row.
#[tokio::test]
async fn names_cannot_run_escape_sequences_in_an_admins_terminal() {
    let d = Latchd::start().await;
    let (email, password) = ("mal@example.test", "correct horse battery staple");
    let sequence = "Mallory\u{1b}]0;owned\u{7}\u{1b}[2J";
    let res =
        d.post("/v1/auth/register", json!({"email": email, "password": password, "name": sequence})).await;
    assert_eq!(assert_problem(res, 400, "invalid-request").await["errors"][0]["field"], "name");
    let login = json!({"email": email, "password": password, "device_name": "Pixel\u{202e}7"});
    let res = d.post("/v1/auth/login", login).await;
    assert_eq!(assert_problem(res, 400, "invalid-request").await["errors"][0]["field"], "device_name");

    let res =
        d.post("/v1/auth/register", json!({"email": email, "password": password, "name": "Mallory"})).await;
    assert_eq!(res.status(), 202);
    let db = rusqlite::Connection::open(d.state_dir().join("latch.db")).unwrap();
    let stored = format!("{sequence}\nforged row");
    db.execute("UPDATE users SET name = ?1 WHERE email_norm = ?2", [&stored, email]).unwrap();
    let out = latchctl(&d, &["users", "show", email]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!out.stdout.contains(&0x1b), "a raw ESC reached the terminal: {}", stdout(&out));
    let shown = stdout(&out);
    assert!(shown.contains("Mallory\\u{1b}]0;owned\\u{7}\\u{1b}[2J\\u{a}forged row"), "{shown}");
}

/// An admin finds a person by the name as they spell it, accents and
/// capitals included, and reaches an account by its address even when
/// hundreds of newer addresses contain it (`m@…` inside `tom@…`).
#[tokio::test]
async fn users_are_found_by_their_own_spelling() {
    let (d, _admin) = crate::admin_api::with_admin().await;
    let add = ["users", "add", "m@example.test", "--name", "ÉMILE Zola", "--password-stdin", "--verified"];
    let out = crate::admin_api::ctl(&d, &add, crate::flows::PASSWORD);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&latchctl(&d, &["users", "list", "--query", "zola"]));
    assert!(table.lines().nth(1).is_some_and(|row| row.contains("ÉMILE Zola")), "why it matched: {table}");
    for spelling in ["Émile", "émile", "E\u{301}mile", "ＺＯＬＡ", " m@example.test "] {
        let out = latchctl(&d, &["--json", "users", "list", "--query", spelling]);
        let found: Value = serde_json::from_str(&stdout(&out)).unwrap_or_default();
        assert_eq!(found["total"], 1, "{spelling}: {} {}", stdout(&out), stderr(&out));
    }
    // 600 newer accounts whose addresses hold the one wanted, written
    // straight into the file (hashing 600 passwords would take minutes).
    let db = rusqlite::Connection::open(d.state_dir().join("latch.db")).unwrap();
    db.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
    db.execute_batch(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 600)
         INSERT INTO users (id, email, email_norm, password_hash, created_at, updated_at)
         SELECT printf('0190a000-0000-7000-8000-%012d', i), 'tom' || i || 'm@example.test',
                'tom' || i || 'm@example.test', 'unused', unixepoch() + i, unixepoch() + i FROM n",
    )
    .unwrap();
    let out = latchctl(&d, &["--json", "users", "show", "m@example.test"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let shown: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(shown["email"], "m@example.test", "{shown}");
}

/// `latchctl --socket PATH` with no config file works on the state of the
/// daemon on that socket: `backup list` said "no backups in
/// ./latch-data/backups" (the built-in default) while the daemon's folder
/// held one, and `audit verify` could not open a database.
#[tokio::test]
async fn the_socket_alone_finds_the_daemons_state() {
    let d = Latchd::start().await;
    let elsewhere = tempfile::tempdir().unwrap();
    let socket = d.ready["admin_socket"].as_str().unwrap().to_string();
    let run = |args: &[&str]| by_socket_alone(&socket, elsewhere.path(), args);
    let made = run(&["backup", "now"]);
    assert!(made.status.success(), "{}", stderr(&made));
    let archive =
        format!("WAL archive in {}/archive: restorable to any moment since 20", d.state_dir().display());
    let listed = listed_once_archived(&run, &archive);
    assert!(stdout(&listed).contains(stdout(&made).trim()), "{}", stdout(&listed));
    assert!(stdout(&listed).contains(&archive), "{}", stdout(&listed));
    assert!(run(&["audit", "verify"]).status.success());
    assert!(!elsewhere.path().join("latch-data").exists(), "nothing made where latchctl ran");
    drop(d);
    let out = run(&["backup", "list"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("give --config or --state-dir"), "{}", stderr(&out));
}

/// `backup list` once it names the WAL archive as `archive` (or after 10 s):
/// the archive's first snapshot is written beside the start, and a busy
/// machine once listed before it.
fn listed_once_archived(run: &impl Fn(&[&str]) -> Output, archive: &str) -> Output {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let listed = run(&["backup", "list"]);
        assert!(listed.status.success(), "{}", stderr(&listed));
        if stdout(&listed).contains(archive) || std::time::Instant::now() > deadline {
            return listed;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// latchctl given only `--socket`, run in `cwd`, with no config in sight.
fn by_socket_alone(socket: &str, cwd: &std::path::Path, args: &[&str]) -> Output {
    Command::new(LATCHCTL)
        .args(["--socket", socket])
        .args(args)
        .env_remove("LATCH_CONFIG")
        .current_dir(cwd)
        .output()
        .unwrap()
}

/// The same when the daemon's config file cannot be read by latchctl (here:
/// moved away after the start; for an operator, a file only latchd's user
/// may read): the daemon names its state directory and its backup and
/// archive folders itself, and latchctl works on those, not on the
/// defaults beside the state directory.
#[tokio::test]
async fn the_socket_alone_finds_folders_the_config_moved_when_the_config_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &base_config("[backup]\ndir = \"STATE-backups\"\narchive_dir = \"STATE-archive\"\n"),
    );
    let d = Latchd::start_in(dir).await;
    std::fs::rename(&config, config.with_extension("moved")).unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let socket = d.ready["admin_socket"].as_str().unwrap().to_string();
    let run = |args: &[&str]| by_socket_alone(&socket, elsewhere.path(), args);

    let made = run(&["backup", "now"]);
    assert!(made.status.success(), "{}", stderr(&made));
    assert!(stdout(&made).contains("state-backups/latch-"), "{}", stdout(&made));
    let archive = format!("WAL archive in {}-archive: restorable", d.state_dir().display());
    let listed = listed_once_archived(&run, &archive);
    let name = stdout(&made).trim().rsplit('/').next().unwrap().to_string();
    assert!(stdout(&listed).contains(&name), "the backup {name} is listed: {}", stdout(&listed));
    assert!(stdout(&listed).contains(&archive), "{}", stdout(&listed));
    assert!(run(&["audit", "verify"]).status.success());
    assert!(!d.state_dir().join("backups").exists(), "nothing in the default folder");
}
