//! Reload says the truth: every key of API.md's config, changed in the file
//! and reloaded, either shows in the config in force (`latchctl config
//! show`) or is reported "needs restart" and keeps its running value. And
//! the services built from files (signer, breached list, pepper) are rebuilt
//! by a reload, or the reload is refused whole.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use crate::admin_cli::LATCHCTL;
use crate::flows::{PASSWORD, login, register_verified, with_smtp};
use crate::harness::{Latchd, assert_problem, base_config, write_config};

/// Keys of API.md's config this build does not have yet, with the issue
/// that brings them.
const NOT_YET: &[(&str, &str)] = &[];

/// `latchctl --json ARGS` against `d`; the parsed output.
fn ctl_json(d: &Latchd, args: &[&str]) -> Value {
    let out = Command::new(LATCHCTL)
        .arg("--state-dir")
        .arg(d.state_dir())
        .arg("--json")
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The value at a dotted `path` of a JSON document.
fn at<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(v, |v, k| &v[k])
}

/// Every leaf key path of the TOML block in docs/API.md ("Config file").
fn api_md_keys() -> Vec<String> {
    let api = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/API.md")).unwrap();
    let start = api.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let block = &api[start..start + api[start..].find("```").unwrap()];
    fn walk(prefix: &str, v: &toml::Value, out: &mut Vec<String>) {
        match v {
            toml::Value::Table(t) => t.iter().for_each(|(k, v)| walk(&join(prefix, k), v, out)),
            toml::Value::Array(a) if a.iter().all(toml::Value::is_table) && !a.is_empty() => {
                a[0].as_table().unwrap().iter().for_each(|(k, v)| walk(&join(prefix, k), v, out))
            }
            _ => out.push(prefix.to_string()),
        }
    }
    fn join(a: &str, b: &str) -> String {
        if a.is_empty() { b.to_string() } else { format!("{a}.{b}") }
    }
    let mut keys = Vec::new();
    walk("", &toml::Value::Table(block.parse().unwrap()), &mut keys);
    keys
}

/// One change: the key it is about and the values to write for it.
struct Case {
    key: &'static str,
    set: Vec<(&'static str, String)>,
}

fn case(key: &'static str, value: &str) -> Case {
    Case { key, set: vec![(key, value.to_string())] }
}

fn cases(files: &Path) -> Vec<Case> {
    let f = |name: &str| format!("{:?}", files.join(name).display().to_string());
    let mut all = vec![
        case("server.state_dir", "\"/tmp/latch-elsewhere\""),
        case("server.public_url", "\"https://auth.example.test:9443\""),
        case("server.key_file", "\"/tmp/latch-other.key\""),
        case("listener", "[{ kind = \"https\", addr = \"127.0.0.1:0\" }]"),
        Case { key: "tls", set: vec![("tls.cert", f("cert.pem")), ("tls.key", f("key.pem"))] },
        case("admin.socket", "\"/tmp/latch-other-admin.sock\""),
        case("admin.group", "\"wheel\""),
        Case {
            key: "tokens.algorithm",
            set: vec![("tokens.algorithm", "\"HS256\"".into()), ("tokens.secret_file", f("hs256.key"))],
        },
        case("tokens.secret_file", &f("hs256.key")),
        case("tokens.access_ttl", "\"20m\""),
        case("tokens.refresh_ttl", "\"8d\""),
        case("tokens.session_max_age", "\"31d\""),
        case("tokens.ended_session_retention", "\"40d\""),
        case("tokens.refresh_reuse_grace", "\"5s\""),
        case("tokens.leeway", "\"10s\""),
        case("tokens.issuer", "\"https://issuer.example.test\""),
        case("tokens.audience", "\"another-app\""),
        case("passwords.min_length", "14"),
        case("passwords.max_length", "100"),
        case("passwords.argon2", "{ memory_kib = 8192, iterations = 1, parallelism = 1 }"),
        case("passwords.pepper_file", &f("pepper")),
        case("passwords.breached_list", &f("breached.txt")),
        case("accounts.registration", "\"closed\""),
        case("accounts.require_verified_email", "false"),
        case("email.from", "\"Auth <auth@example.test>\""),
        case("email.verify_url", "\"https://app.example.test/verify?t={token}\""),
        case("email.reset_url", "\"https://app.example.test/reset?t={token}\""),
        case("email.max_per_recipient", "9"),
        case("email.file_retention", "\"2d\""),
        case(
            "smtp",
            &format!(
                "{{ host = \"127.0.0.1\", port = 2525, security = \"starttls\", username = \"u\", \
                 password_file = {}, max_attempts = 3 }}",
                f("smtp-password")
            ),
        ),
        case("rate_limits.global", "\"5000/1m\""),
        case("rate_limits.ip", "\"50/1m\""),
        case("rate_limits.ip_hourly", "\"500/1h\""),
        case("rate_limits.credential", "\"10/1m\""),
        case("rate_limits.account", "\"5/1m\""),
        case("defense.trusted_proxies", "[\"10.0.0.0/8\"]"),
        case("defense.allowlist", "[\"192.0.2.0/24\"]"),
        case("defense.ipv6_prefix", "56"),
        case("defense.ip_block", "{ failures = 20, window = \"10m\", duration = \"2h\" }"),
        case(
            "defense.account_lock",
            "{ failures = 3, base_delay = \"1s\", max_delay = \"10m\", max_failures_per_hour = 50 }",
        ),
        case(
            "defense.anomaly.bot",
            "{ requests = 100, window = \"1m\", action = \"flag\", block_for = \"5m\" }",
        ),
        case(
            "defense.anomaly.scanner_user_agent",
            "{ patterns = [\"sqlmap\"], action = \"flag\", block_for = \"5m\" }",
        ),
        case("defense.anomaly.new_devices", "{ count = 5, window = \"2h\", action = \"flag\" }"),
        case("defense.anomaly.rapid_refresh", "{ count = 20, window = \"5m\", action = \"revoke\" }"),
        case("defense.anomaly.new_ip", "{ action = \"flag\" }"),
        case("http.cors_origins", "[\"https://app.example.test\"]"),
        case("http.trusted_hosts", "[\"localhost\"]"),
        case("http.request_timeout", "\"20s\""),
        case("http.header_timeout", "\"3s\""),
        case("http.max_body", "\"32KiB\""),
        case("log.format", "\"text\""),
        case("log.file", &f("other.log")),
        case("audit.retention", "\"365d\""),
        case("backup.interval", "\"30m\""),
        case("backup.keep", "10"),
        case("backup.dir", &f("backups")),
        case("backup.wal_archive", "false"),
        case("backup.archive_dir", &f("archive")),
        case("pages.enabled", "false"),
        case("pages.product_name", "\"Acme Login\""),
    ];
    all.sort_by_key(|c| c.key);
    all
}

/// `table` with `value` (TOML) at the dotted `path`, sections created.
fn set(table: &mut toml::Table, path: &str, value: &str) {
    let parsed: toml::Table = format!("v = {value}").parse().unwrap();
    let (parents, leaf) = path.rsplit_once('.').map_or(("", path), |(p, l)| (p, l));
    let mut t = table;
    for part in parents.split('.').filter(|p| !p.is_empty()) {
        t = t.entry(part).or_insert_with(|| toml::Value::Table(toml::Table::new())).as_table_mut().unwrap();
    }
    t.insert(leaf.to_string(), parsed["v"].clone());
}

#[tokio::test]
async fn every_config_key_applies_live_or_is_reported_as_needing_a_restart() {
    let d = Latchd::start().await;
    let files = d.dir.path().join("files");
    std::fs::create_dir(&files).unwrap();
    std::fs::copy(d.cert_path(), files.join("cert.pem")).unwrap();
    std::fs::copy(d.state_dir().join("tls/key.pem"), files.join("key.pem")).unwrap();
    std::fs::write(files.join("hs256.key"), "0123456789abcdef0123456789abcdef-table").unwrap();
    std::fs::write(files.join("pepper"), "a pepper of more than sixteen bytes").unwrap();
    std::fs::write(files.join("breached.txt"), "password1234\n").unwrap();
    std::fs::write(files.join("smtp-password"), "secret\n").unwrap();
    let cases = cases(&files);
    for key in api_md_keys() {
        let covered = cases.iter().any(|c| key == c.key || key.starts_with(&format!("{}.", c.key)));
        let later = NOT_YET.iter().any(|(k, _)| key.starts_with(&format!("{k}.")));
        assert!(covered || later, "API.md key {key} has no case here");
    }

    let state = d.state_dir().display().to_string();
    let base: toml::Table = base_config("").replace("STATE", &state).parse().unwrap();
    let before = ctl_json(&d, &["config", "show"]);
    for case in &cases {
        let mut table = base.clone();
        for (path, value) in &case.set {
            set(&mut table, path, value);
        }
        std::fs::write(d.dir.path().join("latch.toml"), toml::to_string(&table).unwrap()).unwrap();
        let outcome = ctl_json(&d, &["config", "reload"]);
        let after = ctl_json(&d, &["config", "show"]);
        let restart = outcome["needs_restart"].as_array().unwrap().iter().any(|k| k == case.key);
        let (old, new) = (at(&before, case.key), at(&after, case.key));
        if restart {
            assert_eq!(old, new, "{}: reported as needing a restart, so the running value stays", case.key);
        } else {
            assert_ne!(old, new, "{}: neither applied nor reported ({outcome})", case.key);
        }
    }
    // Each case was the base plus one change, so the base undoes them all.
    std::fs::write(d.dir.path().join("latch.toml"), toml::to_string(&base).unwrap()).unwrap();
    ctl_json(&d, &["config", "reload"]);
    assert_eq!(ctl_json(&d, &["config", "show"]), before, "back to the base config");
    assert_eq!(d.get("/ready").await.status(), 200);
}

#[tokio::test]
async fn a_rotated_hs256_secret_and_a_new_breached_list_apply_on_reload() {
    let files = tempfile::tempdir().unwrap();
    let secret = files.path().join("hs256.key");
    let list = files.path().join("breached.txt");
    std::fs::write(&secret, "first secret of at least thirty-two bytes").unwrap();
    std::fs::write(&list, "").unwrap();
    let extra = format!(
        "\n[tokens]\nalgorithm = \"HS256\"\nsecret_file = {:?}\n[passwords]\nbreached_list = {:?}\n",
        secret.display().to_string(),
        list.display().to_string()
    );
    let (d, smtp) = with_smtp(&extra).await;
    register_verified(&d, &smtp, "rotate@example.test", 0).await;
    let old = login(&d, "rotate@example.test", PASSWORD).await["access_token"].as_str().unwrap().to_string();
    assert_eq!(d.get_auth("/v1/auth/me", &old).await.status(), 200);

    // The leaked secret is replaced in place: same path, new bytes.
    std::fs::write(&secret, "second secret, also thirty-two bytes or more").unwrap();
    std::fs::write(&list, "another long password\n").unwrap();
    let out = ctl_json(&d, &["config", "reload"]);
    assert_eq!(out["status"], "reloaded");
    assert_problem(d.get_auth("/v1/auth/me", &old).await, 401, "unauthorized").await;
    let new = login(&d, "rotate@example.test", PASSWORD).await["access_token"].as_str().unwrap().to_string();
    assert_eq!(d.get_auth("/v1/auth/me", &new).await.status(), 200, "tokens of the new secret work");
    let res = d
        .post("/v1/auth/register", json!({"email": "x@example.test", "password": "another long password"}))
        .await;
    assert_problem(res, 422, "weak-password").await;
}

#[tokio::test]
async fn a_reload_whose_files_cannot_be_read_is_refused_whole() {
    let d = Latchd::start().await;
    let before = ctl_json(&d, &["config", "show"]);
    let missing = d.dir.path().join("no-such-file").display().to_string();
    let smtp = "[smtp]\nhost = \"127.0.0.1\"\nport = 2525\nusername = \"latch\"\npassword_file";
    let ca = "[smtp]\nhost = \"127.0.0.1\"\nport = 2525\nsecurity = \"starttls\"\nca_file";
    for (key, section) in [
        ("passwords.pepper_file", "[passwords]\npepper_file"),
        ("smtp.password_file", smtp),
        ("smtp.ca_file", ca),
    ] {
        let extra = format!("\n{section} = {missing:?}\n[tokens]\naccess_ttl = \"20m\"\n");
        write_config(d.dir.path(), &base_config(&extra));
        let out = Command::new(LATCHCTL)
            .arg("--state-dir")
            .arg(d.state_dir())
            .args(["config", "reload"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{key}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(key) && err.contains("the running config stays"), "{err}");
        assert_eq!(ctl_json(&d, &["config", "show"]), before, "nothing of the file was applied ({key})");
    }
}

/// A config file rewritten in place is empty for a moment (truncated, not
/// yet written): a reload then (the file watch, a SIGHUP) must not put
/// every setting back to its default. It is refused, and the file once
/// written whole applies.
#[tokio::test]
async fn an_empty_config_file_is_refused_at_reload_and_the_settings_stay() {
    let d = Latchd::start_with(&base_config("\n[tokens]\naccess_ttl = \"20m\"\n")).await;
    let before = ctl_json(&d, &["config", "show"]);
    let path = d.dir.path().join("latch.toml");
    let whole = std::fs::read_to_string(&path).unwrap();
    let reload =
        || Command::new(LATCHCTL).arg("--state-dir").arg(d.state_dir()).args(["config", "reload"]).output();
    std::fs::write(&path, "\n  \n").unwrap();
    let out = reload().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("latch.toml: the file is empty") && err.contains("the running config stays"),
        "{err}"
    );
    assert_eq!(ctl_json(&d, &["config", "show"]), before, "no default came back");

    std::fs::write(&path, whole.replace("20m", "25m")).unwrap();
    assert!(reload().unwrap().status.success());
    assert_eq!(at(&ctl_json(&d, &["config", "show"]), "tokens.access_ttl"), "25m");
}

/// A reload asking argon2 for more memory than the daemon may use (here
/// its address-space limit, set on the running process as `LimitAS=`
/// would) is refused: applied, it would abort latchd at a login burst.
#[tokio::test]
async fn a_reload_asking_argon2_for_more_memory_than_latchd_may_use_is_refused() {
    let d = Latchd::start().await;
    let limit = libc::rlimit { rlim_cur: 1 << 30, rlim_max: 1 << 30 };
    // SAFETY: prlimit on the child's pid with a valid struct; no memory is shared.
    let set = unsafe { libc::prlimit(d.pid(), libc::RLIMIT_AS, &limit, std::ptr::null_mut()) };
    assert_eq!(set, 0, "{}", std::io::Error::last_os_error());
    let before = ctl_json(&d, &["config", "show"]);
    write_config(d.dir.path(), &base_config("\n[passwords.argon2]\nmemory_kib = 2097152\n"));
    let out =
        Command::new(LATCHCTL).arg("--state-dir").arg(d.state_dir()).args(["config", "reload"]).output();
    let out = out.unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("passwords.argon2.memory_kib") && err.contains("the address-space limit"), "{err}");
    assert_eq!(ctl_json(&d, &["config", "show"]), before, "the running config stays");
}

/// logrotate moves `[log].file` away and sends SIGHUP: the lines after it
/// go to a new file at the same path (0600), none to the moved one.
#[tokio::test]
async fn a_reload_starts_a_new_log_file_after_logrotate_moved_the_old_one() {
    // The first line of `extra` lands in base_config's [log] table.
    let d = Latchd::start_with(&base_config("file = \"daemon.log\"\n")).await;
    let (path, moved) = (d.dir.path().join("daemon.log"), d.dir.path().join("daemon.log.1"));
    std::fs::rename(&path, &moved).unwrap();
    d.signal(libc::SIGHUP);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !std::fs::read_to_string(&path).is_ok_and(|log| log.contains("config reloaded")) {
        assert!(std::time::Instant::now() < deadline, "no new log file with the reload in it");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let res = d.client().get(d.https_url("/health")).header("x-request-id", "after-rotation").send().await;
    assert_eq!(res.unwrap().status(), 200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !std::fs::read_to_string(&path).unwrap().contains("after-rotation") {
        assert!(std::time::Instant::now() < deadline, "the request is not in the new file");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let old = std::fs::read_to_string(&moved).unwrap();
    assert!(old.contains("listening") || old.contains("ready"), "the old file kept the start: {old}");
    assert!(!old.contains("after-rotation"), "nothing after the rotation in the moved file");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
}
