//! Config files: errors name file, line and key; the shipped default file is
//! valid and matches the built-in defaults.

use crate::harness::{base_config, run_latchd, write_config};

/// `latchd check-config` and `latchd serve` both reject `text` with exit 1
/// and an error starting `PATH:LINE: key:`.
fn assert_rejected(text: &str, line: usize, key: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), text);
    let shown = path.display().to_string();
    for args in [vec!["check-config", &shown], vec!["serve", "--config", &shown]] {
        let out = run_latchd(&args, dir.path());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        let prefix = format!("{shown}:{line}: {key}: ");
        assert!(stderr.starts_with(&prefix), "{args:?}: expected {prefix:?}, got {stderr:?}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    }
    assert!(!dir.path().join("state").exists(), "a rejected config creates nothing");
    String::from_utf8_lossy(&run_latchd(&["check-config", &shown], dir.path()).stderr).into_owned()
}

#[test]
fn bad_values_name_their_line_and_key() {
    let text = base_config("\n[rate_limits]\nglobal = \"10/1s\"\nip = \"100 per minute\"\n");
    let line = text.lines().position(|l| l.starts_with("ip = ")).unwrap() + 1;
    let err = assert_rejected(&text, line, "rate_limits.ip");
    assert!(err.contains("expected \"N/period\" like \"100/1m\""), "{err}");
}

#[test]
fn unknown_keys_are_errors() {
    let text = base_config("\n[http]\nrequest_timeout = \"10s\"\nmax_bodyy = \"1KiB\"\n");
    let line = text.lines().position(|l| l.starts_with("max_bodyy")).unwrap() + 1;
    let err = assert_rejected(&text, line, "http.max_bodyy");
    assert!(err.contains("unknown field"), "{err}");
}

#[test]
fn cross_field_rules_point_at_the_key() {
    let text = base_config("\n[tokens]\nalgorithm = \"HS256\"\n");
    let line = text.lines().position(|l| l.starts_with("algorithm")).unwrap() + 1;
    let err = assert_rejected(&text, line, "tokens.algorithm");
    assert!(err.contains("secret_file"), "{err}");
    // A user name with no password would fail every delivery at run time.
    let text = base_config("\n[smtp]\nhost = \"127.0.0.1\"\nport = 2525\nusername = \"latch\"\n");
    let line = text.lines().position(|l| l == "[smtp]").unwrap() + 1;
    let err = assert_rejected(&text, line, "smtp.password_file");
    assert!(err.contains("must be set when smtp.username is"), "{err}");
    // The links' base and the tokens' issuer: nothing a link cannot follow.
    for (url, part) in [("https://a:b@auth.example", "user info"), ("https://auth.example/?x=1", "a query")] {
        let text = base_config("").replace("https://localhost:8443", url);
        let line = text.lines().position(|l| l.starts_with("public_url")).unwrap() + 1;
        assert!(assert_rejected(&text, line, "server.public_url").contains(part), "{url}");
    }
    let bad = base_config("").replacen("addr = \"127.0.0.1:0\"", "addr = \"localhost\"", 1);
    let line = bad.lines().position(|l| l.contains("\"localhost\"")).unwrap() + 1;
    assert_rejected(&bad, line, "listener[0].addr");
}

#[test]
fn syntax_errors_name_the_line() {
    let text = base_config("\n[http\nmax_body = 1\n");
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &text);
    let out = run_latchd(&["check-config", &path.display().to_string()], dir.path());
    let line = text.lines().position(|l| l == "[http").unwrap() + 1;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.starts_with(&format!("{}:{line}: ", path.display())), "{stderr}");
}

/// TOML is UTF-8; a file saved as Latin-1 (an "é" in a comment) was told
/// as "stream did not contain valid UTF-8", with no line to look at.
#[test]
fn a_file_that_is_not_utf8_is_told_at_its_line() {
    let text = base_config("\n# caf\u{e9}\n");
    let latin1: Vec<u8> = text.chars().map(|c| u8::try_from(u32::from(c)).unwrap()).collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latch.toml");
    std::fs::write(&path, latin1).unwrap();
    let out = run_latchd(&["check-config", &path.display().to_string()], dir.path());
    let line = text.lines().position(|l| l.starts_with("# caf")).unwrap() + 1;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr.trim_end(),
        format!("{}:{line}: not UTF-8 text (byte 0xE9); save the file as UTF-8", path.display())
    );
}

#[test]
fn shipped_default_file_is_valid_and_matches_built_in_defaults() {
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/etc/latch.toml");
    let dir = tempfile::tempdir().unwrap();
    let out = run_latchd(&["check-config", shipped], dir.path());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let file = latch::config::Config::load(Some(std::path::Path::new(shipped))).unwrap();
    let builtin = latch::config::Config::load(None).unwrap();
    // Paths differ on purpose (FHS vs ./latch-data); every behaviour setting must not.
    let behaviour = |c: &latch::config::Config| {
        format!(
            "{:?}{:?}{:?}{:?}{:?}{:?}{:?}{:?}{:?}{:?}{:?}{:?}{:?}{:?}{:?}",
            c.public_url,
            c.listeners,
            c.tls,
            c.admin_group,
            c.tokens,
            c.passwords,
            c.accounts,
            c.email,
            c.smtp,
            c.rate_limits,
            c.defense,
            c.http,
            c.log,
            c.audit,
            c.backup
        )
    };
    assert_eq!(behaviour(&file), behaviour(&builtin));
    assert_eq!(file.state.root(), std::path::Path::new("/var/lib/latch"));
    assert_eq!(file.admin_socket, std::path::Path::new("/run/latch/admin.sock"));
}

#[test]
fn cors_origins_and_trusted_hosts_are_checked_entry_by_entry() {
    let text = base_config(
        "\n[http]\ncors_origins = [\n  \"https://app.example.test\",\n  \"https://app.example.test/login\",\n]\n",
    );
    let line = text.lines().position(|l| l.contains("/login")).unwrap() + 1;
    let err = assert_rejected(&text, line, "http.cors_origins[1]");
    assert!(err.contains("no path"), "{err}");
    let text = base_config("\n[http]\ntrusted_hosts = [\"auth.example.test:8443\"]\n");
    let line = text.lines().position(|l| l.starts_with("trusted_hosts")).unwrap() + 1;
    let err = assert_rejected(&text, line, "http.trusted_hosts[0]");
    assert!(err.contains("no port"), "{err}");
}

/// `10.1.2.3/8` is a typo or a misunderstanding; taking it as 10.0.0.0/8
/// would silently trust (or allow) far more than the person wrote.
#[test]
fn networks_with_bits_past_their_prefix_are_refused() {
    for (key, value, network) in
        [("trusted_proxies", "10.1.2.3/8", "10.0.0.0/8"), ("allowlist", "2001:db8::1/32", "2001:db8::/32")]
    {
        let text = base_config(&format!("\n[defense]\n{key} = [\"127.0.0.1\", \"{value}\"]\n"));
        let line = text.lines().position(|l| l.starts_with(key)).unwrap() + 1;
        let err = assert_rejected(&text, line, &format!("defense.{key}"));
        assert!(err.contains(&format!("the network is {network}")), "{err}");
    }
}

#[test]
fn durations_have_an_upper_bound() {
    let text = base_config("\n[tokens]\naccess_ttl = \"15m\"\nrefresh_ttl = \"4000d\"\n");
    let line = text.lines().position(|l| l.starts_with("refresh_ttl")).unwrap() + 1;
    let err = assert_rejected(&text, line, "tokens.refresh_ttl");
    assert!(err.contains("10 years"), "{err}");
}

/// A rule across two keys names the one the file sets, on its line — not
/// a key the person never wrote, on the line of the table header.
#[test]
fn checks_name_the_key_the_file_sets_on_its_line() {
    for (extra, key, said) in [
        ("\n[passwords]\nmin_length = 200\n", "passwords.min_length", "must not exceed max_length (128)"),
        ("\n[passwords]\nmax_length = 10\n", "passwords.max_length", "min_length (12) must not exceed"),
        ("\n[tokens]\naccess_ttl = \"30d\"\n", "tokens.access_ttl", "shorter than access_ttl"),
        ("\n[backup]\ninterval = \"0s\"\n", "backup.interval", "must be above zero"),
        // Not a rule across keys, but one that failed every register with
        // a 500 instead of the start.
        ("\n[email]\nfrom = \"not an address\"\n", "email.from", "expected an address like"),
    ] {
        let text = base_config(extra);
        let written = key.rsplit('.').next().unwrap();
        let line = text.lines().position(|l| l.starts_with(written)).unwrap() + 1;
        let err = assert_rejected(&text, line, key);
        assert!(err.contains(said), "{err}");
    }
}

/// A zero threshold fired on the first event (one mistyped password
/// blocked its address for an hour; `bot.requests = 0` blocked every
/// client at its second request) and a zero time turned a rule off: both
/// are refused on the line that sets them, as are a cap of no mail, an
/// audit kept for no time, a proxy list that believes everyone and a reuse
/// grace long enough to let a stolen spent refresh token through.
#[test]
fn thresholds_of_zero_are_refused_on_their_line() {
    for (extra, written, key, said) in [
        (
            "\n[defense]\nip_block = { failures = 0, window = \"5m\", duration = \"1h\" }\n",
            "ip_block",
            "defense.ip_block.failures",
            "must be at least 1",
        ),
        (
            "\n[defense.anomaly]\nbot = { requests = 0, window = \"1m\", action = \"block\", block_for = \"30m\" }\n",
            "bot",
            "defense.anomaly.bot.requests",
            "set its action to \"flag\"",
        ),
        (
            "\n[defense.account_lock]\nfailures = 5\nbase_delay = \"0s\"\n",
            "base_delay",
            "defense.account_lock.base_delay",
            "must be above zero",
        ),
        (
            "\n[defense]\naccount_lock = { base_delay = \"1m\", max_delay = \"10s\" }\n",
            "account_lock",
            "defense.account_lock.max_delay",
            "must not be shorter than base_delay (1m)",
        ),
        ("\n[email]\nmax_per_recipient = 0\n", "max_per_recipient", "email.max_per_recipient", "above zero"),
        (
            "\n[tokens]\nrefresh_reuse_grace = \"30d\"\n",
            "refresh_reuse_grace",
            "tokens.refresh_reuse_grace",
            "must be at most 1m",
        ),
        // Not a threshold: "0s" deleted every audit row at the next upkeep.
        ("\n[audit]\nretention = \"0s\"\n", "retention", "audit.retention", "above zero"),
        (
            "\n[defense]\ntrusted_proxies = [\"10.0.0.0/8\", \"::/0\"]\n",
            "trusted_proxies",
            "defense.trusted_proxies",
            "choose its own address",
        ),
    ] {
        let text = base_config(extra);
        let line = text.lines().position(|l| l.starts_with(written)).unwrap() + 1;
        let err = assert_rejected(&text, line, key);
        assert!(err.contains(said), "{err}");
    }
}

/// Two listeners on one address would fail the start with "address in
/// use"; the file check says which two.
#[test]
fn two_listeners_on_one_address_are_refused() {
    let twice = "\n[[listener]]\nkind = \"http\"\naddr = \"127.0.0.1:9\"\n\n[[listener]]\nkind = \"https\"\naddr = \"127.0.0.1:9\"\n";
    let text = base_config(twice);
    let lines: Vec<&str> = text.lines().collect();
    let line = lines.iter().rposition(|l| *l == "addr = \"127.0.0.1:9\"").unwrap() + 1;
    let err = assert_rejected(&text, line, "listener[4].addr");
    assert!(err.contains("listener[3] is there already"), "{err}");
}

#[test]
fn smtp_auth_over_plaintext_to_another_host_is_refused() {
    // The password file is there: a missing one would be told beside.
    let (_kept, pw) = crate::harness::secret_file("pw", "an smtp password\n");
    let smtp = format!(
        "\n[smtp]\nhost = \"mail.example.test\"\nport = 25\nsecurity = \"none\"\nusername = \"latch\"\n\
         password_file = {pw:?}\n"
    );
    let text = base_config(&smtp);
    let line = text.lines().position(|l| l.starts_with("username")).unwrap() + 1;
    let err = assert_rejected(&text, line, "smtp.username");
    assert!(err.contains("starttls"), "{err}");
    // Loopback, or a protected connection, is fine.
    for ok in [smtp.replace("mail.example.test", "127.0.0.1"), smtp.replace("\"none\"", "\"starttls\"")] {
        let dir = tempfile::tempdir().unwrap();
        let path = write_config(dir.path(), &base_config(&ok));
        let out = run_latchd(&["check-config", &path.display().to_string()], dir.path());
        assert!(out.status.success(), "{ok}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// `[smtp].ca_file` checks the relay's certificate, so it needs TLS, and a
/// file without a certificate would let no relay pass: both get its line.
#[test]
fn an_smtp_ca_file_needs_tls_and_a_certificate() {
    let smtp = "\n[smtp]\nhost = \"127.0.0.1\"\nport = 2525\nsecurity = \"none\"\nca_file = \"ca.pem\"\n";
    let text = base_config(smtp);
    let line = text.lines().position(|l| l.starts_with("ca_file")).unwrap() + 1;
    assert!(assert_rejected(&text, line, "smtp.ca_file").contains("starttls"));
    let text = base_config(&smtp.replace("\"none\"", "\"starttls\""));
    assert!(assert_rejected(&text, line, "smtp.ca_file").contains("No such file"));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ca.pem"),
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let path = write_config(dir.path(), &text).display().to_string();
    let out = run_latchd(&["check-config", &path], dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with(&format!("{path}:{line}: smtp.ca_file: ")), "{stderr}");
    assert!(stderr.contains("holds no PEM certificate"), "{stderr}");
}

/// check-config opens the files the config names, as latchd would: a key
/// only root can read (when run as root, it reads as the state directory's
/// owner, the user latchd runs as), a missing breached list and a pepper
/// too short each get their line, where the file alone passed before and
/// the daemon then stopped at start-up.
#[test]
fn files_the_config_names_are_opened_as_latchd_would() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let key = dir.path().join("key.pem");
    std::fs::write(&key, "not read").unwrap();
    let as_root = nix::unistd::Uid::effective().is_root();
    if as_root {
        std::os::unix::fs::chown(&state, Some(65534), Some(65534)).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    } else {
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o000)).unwrap();
    }
    std::fs::write(dir.path().join("cert.pem"), "not a certificate").unwrap();
    std::fs::write(dir.path().join("pepper"), "short\n").unwrap();
    let files = "\n[tls]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n\
        [passwords]\npepper_file = \"pepper\"\nbreached_list = \"breached.txt\"\n";
    let text = base_config(files);
    let path = write_config(dir.path(), &text);
    let line = |start: &str| text.lines().position(|l| l.starts_with(start)).unwrap() + 1;
    let shown = path.display().to_string();
    let out = run_latchd(&["check-config", &shown], dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    let denied = format!("{shown}:{}: tls.key: {}: Permission denied", line("key = "), key.display());
    assert!(lines.iter().any(|l| l.starts_with(&denied)), "{denied}\n{stderr}");
    if as_root {
        assert!(stderr.contains("(checked as user nobody, the owner of "), "{stderr}");
    }
    let pepper = format!("{shown}:{}: passwords.pepper_file: ", line("pepper_file"));
    assert!(
        lines.iter().any(|l| l.starts_with(&pepper) && l.ends_with("needs at least 16 bytes")),
        "{stderr}"
    );
    let breached = format!("{shown}:{}: passwords.breached_list: ", line("breached_list"));
    assert!(lines.iter().any(|l| l.starts_with(&breached) && l.contains("No such file")), "{stderr}");
    assert_eq!(lines.len(), 3, "the certificate is not parsed while its key cannot be read: {stderr}");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = run_latchd(&["check-config", &shown], dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let cert = format!("{shown}:{}: tls.cert: ", line("cert = "));
    assert!(
        stderr.lines().any(|l| l.starts_with(&cert) && l.contains("no usable PEM certificate")),
        "{stderr}"
    );
    // The config file itself, closed to the user latchd runs as.
    let closed = std::fs::Permissions::from_mode(if as_root { 0o600 } else { 0o000 });
    std::fs::set_permissions(&path, closed).unwrap();
    let out = run_latchd(&["check-config", &shown], dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.starts_with(&format!("{shown}: cannot read config: Permission denied")), "{stderr}");
}

/// argon2 parameters whose workspaces (one per hashing thread, all busy
/// under a burst of logins) do not fit in the memory latchd may use are
/// refused before the start, not found by the first busy minute.
#[test]
fn argon2_memory_beyond_what_latchd_may_use_is_refused() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let run_limited = |memory_kib: u32, args: &[&str]| {
        let text = base_config(&format!("\n[passwords.argon2]\nmemory_kib = {memory_kib}\n"));
        let path = write_config(dir.path(), &text);
        let line = text.lines().position(|l| l.starts_with("memory_kib")).unwrap() + 1;
        let mut cmd = std::process::Command::new(crate::harness::LATCHD);
        cmd.args(args).arg(&path).env_remove("LATCH_CONFIG").current_dir(dir.path());
        // SAFETY: setrlimit in the child just before exec (`ulimit -v 1G`).
        unsafe {
            cmd.pre_exec(|| {
                let limit = libc::rlimit { rlim_cur: 1 << 30, rlim_max: 1 << 30 };
                if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            })
        };
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            format!("{}:{line}: ", path.display()),
        )
    };
    for args in [&["check-config"][..], &["serve", "--config"]] {
        let (code, stderr, at) = run_limited(2 * 1024 * 1024, args);
        assert_eq!(code, Some(1), "{args:?}: {stderr}");
        let said = format!("{at}passwords.argon2.memory_kib: ");
        assert!(stderr.starts_with(&said), "{args:?}: {stderr}");
        assert!(
            stderr.contains("× 2048 MiB = ")
                && stderr.contains("but the address-space limit (ulimit -v, LimitAS=) is 1024 MiB"),
            "{stderr}"
        );
    }
    assert!(!dir.path().join("state").exists(), "a refused start creates nothing");
    let (code, stderr, _) = run_limited(19_456, &["check-config"]);
    assert_eq!(code, Some(0), "the default fits in the same limit: {stderr}");
}

/// Mail leaving this machine with links only this machine can open, from a
/// sender relays refuse, plain HTTP open beyond loopback, or mail links to
/// pages turned off, is said on the key's line — by check-config (which
/// still passes it) and in the log of a start — and not refused: a sandbox
/// relay, a browser on the same host or a proxy on a private network may be
/// what is meant.
#[tokio::test]
async fn likely_mistakes_are_cautioned_not_refused() {
    let text = base_config("\n[smtp]\nhost = \"smtp.example.test\"\nport = 2525\n").replacen(
        "kind = \"http\"\naddr = \"127.0.0.1:0\"",
        "kind = \"http\"\naddr = \"0.0.0.0:0\"",
        1,
    );
    let dir = tempfile::tempdir().unwrap();
    let shown = write_config(dir.path(), &text).display().to_string();
    let out = run_latchd(&["check-config", &shown], dir.path());
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{said}");
    let line = text.lines().position(|l| l.starts_with("public_url")).unwrap() + 1;
    let links = format!(
        "warning: {shown}:{line}: server.public_url: mail goes out through smtp.example.test but its \
         links point at localhost"
    );
    assert!(said.contains(&links), "{said}");
    assert!(
        said.contains("email.from: mail goes out through smtp.example.test from an address at \"localhost\"")
    );
    let line = text.lines().position(|l| l == "[smtp]").unwrap() + 1;
    let clear = format!(
        "warning: {shown}:{line}: smtp.security: mail to smtp.example.test crosses the network in clear"
    );
    assert!(said.contains(&clear), "{said}");
    let line = text.lines().position(|l| l == "addr = \"0.0.0.0:0\"").unwrap() + 1;
    let open =
        format!("warning: {shown}:{line}: listener[1].addr: plain http on 0.0.0.0:0 carries passwords");
    assert!(said.contains(&open), "{said}");
    let d = crate::harness::Latchd::start_in(dir).await;
    assert!(d.log().contains("server.public_url: mail goes out through"), "the start says it too");
    // Named for the world, nothing is said.
    let fixed = text
        .replace("https://localhost:8443", "https://auth.example.test")
        .replace("0.0.0.0:0", "127.0.0.1:0")
        .replace("port = 2525\n", "port = 2525\nsecurity = \"starttls\"\n")
        + "\n[email]\nfrom = \"latch <noreply@example.test>\"\n";
    let dir = tempfile::tempdir().unwrap();
    let shown = write_config(dir.path(), &fixed).display().to_string();
    let out = run_latchd(&["check-config", &shown], dir.path());
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "nothing to say");
    // Pages turned off: the reset link moved to the app, the verify link
    // still opens latch's own page.
    let off = format!(
        "{fixed}\nreset_url = \"https://app.example.test/reset?t={{token}}\"\n[pages]\nenabled = false\n"
    )
    .replace("[email]\n", "[email]\nverify_url = \"https://auth.example.test/verify-email?token={token}\"\n");
    let shown = write_config(dir.path(), &off).display().to_string();
    let said =
        String::from_utf8_lossy(&run_latchd(&["check-config", &shown], dir.path()).stderr).into_owned();
    let line = off.lines().position(|l| l == "enabled = false").unwrap() + 1;
    let pages = format!(
        "{shown}:{line}: pages.enabled: the pages are off, but email.verify_url still points at them"
    );
    assert!(said.contains(&pages) && said.lines().count() == 1, "{said}");
}

/// A config named by a relative path with a folder in it
/// (`latchd serve --config conf/latch.toml`) is the file checked, watched
/// and read again at a reload. It was resolved against its own folder a
/// second time (`conf/conf/latch.toml`): check-config refused the file it
/// had just read, and no reload of that daemon could ever succeed.
#[tokio::test]
async fn a_relative_config_path_is_the_file_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("conf");
    std::fs::create_dir(&conf).unwrap();
    write_config(&conf, &base_config(""));
    let out = run_latchd(&["check-config", "conf/latch.toml"], dir.path());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut latchd = std::process::Command::new(crate::harness::LATCHD)
        .args(["serve", "--config", "conf/latch.toml"])
        .env_remove("LATCH_CONFIG")
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while crate::harness::read_ready(&conf).is_none() && started.elapsed().as_secs() < 20 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let reload = crate::admin_cli::latchctl_on(&conf.join("state"), &["config", "reload"]);
    latchd.kill().unwrap();
    latchd.wait().unwrap();
    assert!(reload.status.success(), "{}", String::from_utf8_lossy(&reload.stderr));
}

/// serde stops at the first key it refuses and the rules stopped at the
/// first they found broken, so a file with five mistakes took five tries
/// of check-config. All five are told at once, one line each in the
/// file's order, by check-config (the file named as `serve` takes it
/// too), latchctl and serve (which creates nothing); a reload refuses
/// them all as one line each too, and keeps what runs.
#[tokio::test]
async fn every_key_at_fault_is_named_at_once() {
    let extra = "\n[http]\nmax_bodyy = \"1KiB\"\nheader_timeout = \"0s\"\n\n[tokens]\naccess_ttl = 900\nrefresh_ttl = \"1s\"\nleeway = \"10m\"\n\n[passwords]\nmin_length = 4\npepper_file = \"absent-pepper\"\n\n[defense]\nallowlist = [\n  \"10.0.0.0/8\",\n  \"nope\",\n  \"::1/200\",\n]\n";
    // Two listeners at fault beside the three good ones: one refused whole
    // (its kind) leaves the next still judged.
    let listeners = "\n[[listener]]\nkind = \"htps\"\naddr = \"127.0.0.1:0\"\n\n[[listener]]\nkind = \"http\"\naddr = \"nowhere\"\n";
    let text = base_config(&format!("{extra}{listeners}"));
    let line = |start: &str| text.lines().position(|l| l.starts_with(start)).unwrap() + 1;
    // refresh_ttl breaks no rule of its own: its rule compares it with
    // the refused access_ttl, whose default stood in, so it is not told.
    let told = [
        (line("max_bodyy"), "http.max_bodyy", "unknown field"),
        (line("header_timeout"), "http.header_timeout", "must be above zero"),
        (line("access_ttl"), "tokens.access_ttl", "invalid type: integer `900`"),
        (line("leeway"), "tokens.leeway", "must be at most 5m"),
        (line("min_length"), "passwords.min_length", "must be at least 8"),
        // A file it names is opened beside the rules, not on the next try.
        (line("pepper_file"), "passwords.pepper_file", "absent-pepper: No such file"),
        // Each bad element of a list, at its own line.
        (line("  \"nope\""), "defense.allowlist", "got \"nope\""),
        (line("  \"::1/200\""), "defense.allowlist", "got \"::1/200\""),
        (line("kind = \"htps\""), "listener[3].kind", "unknown variant `htps`"),
        (line("addr = \"nowhere\""), "listener[4].addr", "expected IP:PORT"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &text);
    let shown = path.display().to_string();
    let ctl = std::process::Command::new(crate::admin_cli::LATCHCTL)
        .args(["config", "check", &shown])
        .env_remove("LATCH_CONFIG")
        .output()
        .unwrap();
    for (out, prefix) in [
        (run_latchd(&["check-config", &shown], dir.path()), ""),
        (run_latchd(&["check-config", "--config", &shown], dir.path()), ""),
        (run_latchd(&["serve", "--config", &shown], dir.path()), ""),
        (ctl, "latchctl: "),
    ] {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), told.len(), "one line a fault: {stderr}");
        for (got, (n, key, said)) in lines.iter().zip(told) {
            assert!(got.starts_with(&format!("{prefix}{shown}:{n}: {key}: ")) && got.contains(said), "{got}");
        }
    }
    assert!(!dir.path().join("state").exists(), "a refused config creates nothing");

    let d = crate::harness::Latchd::start().await;
    write_config(d.dir.path(), &text);
    let out = crate::admin_cli::latchctl_on(&d.state_dir(), &["config", "reload"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    // One line a fault as check-config tells them, the files a config
    // names opened beside its rules, then that nothing changed.
    let shown = d.dir.path().join("latch.toml").display().to_string();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), told.len() + 1, "{stderr}");
    for (got, (n, key, said)) in lines.iter().zip(told) {
        assert!(got.starts_with(&format!("latchctl: {shown}:{n}: {key}: ")) && got.contains(said), "{got}");
    }
    assert_eq!(lines[told.len()], "latchctl: reload refused: the running config stays");
    let log = d.log_with("config reload rejected").await;
    assert!(log.contains("listener[3].kind: ") && log.contains("; "), "the log tells all on one line");
}

/// With a `[server]` key at fault whose files the others name (read as
/// the state directory's owner) is unknown: only the faults are told.
#[test]
fn a_server_key_at_fault_leaves_the_files_unopened() {
    let extra = "\n[passwords]\npepper_file = \"absent-pepper\"\n";
    let text = base_config(extra).replacen("state_dir = ", "state_dirr = ", 1);
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &text);
    let out = run_latchd(&["check-config", &path.display().to_string()], dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("server.state_dirr: unknown field"), "{stderr}");
    assert!(!stderr.contains("pepper"), "{stderr}");
}
