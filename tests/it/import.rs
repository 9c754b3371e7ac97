//! `latchctl users import`: accounts brought over from another system keep
//! their passwords. The hashes come from other implementations than
//! latch's: Python's hashlib (PBKDF2 and scrypt, as Django and Werkzeug
//! store them) and
//! libxcrypt (bcrypt `$2y$`, as PHP writes it).

use std::process::Command;

use serde_json::{Value, json};

use crate::admin_api::{admin_daemon, ctl};
use crate::flows::metric;
use crate::harness::secret_file;

/// PBKDF2-HMAC-SHA256 of `password` by Python's hashlib: the derived key
/// as base64 (Django) or hex (Werkzeug).
fn pbkdf2(password: &str, salt: &str, iterations: u32, as_hex: bool) -> String {
    let script = format!(
        "import hashlib, base64, sys; k = hashlib.pbkdf2_hmac('sha256', sys.argv[1].encode(), \
         sys.argv[2].encode(), {iterations}); print(k.hex() if {} else base64.b64encode(k).decode())",
        if as_hex { "True" } else { "False" }
    );
    let out = Command::new("python3").args(["-c", &script, password, salt]).output().expect("python3");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Werkzeug 3's default: scrypt N=2^15, r=8, p=1, a 64-byte key, by
/// Python's hashlib.
fn werkzeug_scrypt(password: &str, salt: &str) -> String {
    let script = "import hashlib, sys; print(hashlib.scrypt(sys.argv[1].encode(), salt=sys.argv[2].encode(), \
                  n=32768, r=8, p=1, maxmem=132*32768*8, dklen=64).hex())";
    let out = Command::new("python3").args(["-c", script, password, salt]).output().expect("python3");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    format!("scrypt:32768:8:1${salt}${}", String::from_utf8(out.stdout).unwrap().trim())
}

/// "Imported-pass-42" under bcrypt cost 10, made by libxcrypt's crypt(3)
/// (through Python's `crypt` module) with PHP's `$2y$` prefix.
const BCRYPT_2Y: &str = "$2y$10$abcdefghijklmnopqrstuuFyvnHWYrHcY.BXCc5qIL7ZTpBbbq6ci";

const ROLES_OF_PHP: &str = "SELECT group_concat(role) FROM user_roles r JOIN users u ON u.id = r.user_id \
                            WHERE u.email = 'php@example.test'";
const IMPORTED_ROWS: &str = "SELECT count(*) FROM audit_log WHERE action = 'user_created' AND json_extract(details, '$.imported_hash')";

async fn login_status(d: &crate::harness::Latchd, email: &str, password: &str) -> u16 {
    let res = d.post("/v1/auth/login", json!({ "email": email, "password": password })).await;
    res.status().as_u16()
}

fn stored_hash(d: &crate::harness::Latchd, email: &str) -> String {
    d.db().query_row("SELECT password_hash FROM users WHERE email = ?1", [email], |r| r.get(0)).unwrap()
}

#[tokio::test]
async fn imported_accounts_sign_in_with_their_old_passwords_and_are_rehashed() {
    let (d, _) = admin_daemon("", &[]).await;
    let django =
        format!("pbkdf2_sha256$600000$seasalt12${}", pbkdf2("Django-pass-123", "seasalt12", 600_000, false));
    let werkzeug =
        format!("pbkdf2:sha256:260000$saltsalt${}", pbkdf2("Flask-pass-1234", "saltsalt", 260_000, true));
    let lines: Vec<Value> = vec![
        json!({ "email": "dj@example.test", "password_hash": django, "email_verified": true }),
        json!({ "email": "php@example.test", "password_hash": BCRYPT_2Y, "email_verified": true, "roles": ["admin"] }),
        json!({ "email": "flask@example.test", "password_hash": werkzeug, "email_verified": true, "name": "Flo" }),
        json!({ "email": "md5@example.test", "password_hash": "md5$salt$0123456789abcdef" }),
        json!({
            "email": "flask3@example.test",
            "password_hash": werkzeug_scrypt("Scrypt-pass-321", "Zq3salt9"),
            "email_verified": true,
        }),
        json!({ "email": "root@example.test", "password_hash": BCRYPT_2Y }),
    ];
    let file = d.dir.path().join("accounts.jsonl");
    let text: Vec<String> = lines.iter().map(Value::to_string).collect();
    std::fs::write(&file, text.join("\n") + "\n\n").unwrap();

    let out = ctl(&d, &["users", "import", file.to_str().unwrap()], "");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "one line was refused: {stdout} {stderr}");
    assert_eq!(stdout.trim(), "imported 4 account(s); 1 already there; 1 refused");
    assert!(
        stderr.contains("accounts.jsonl:4: password_hash: not a hash latch takes in"),
        "the refused line is named with its reason: {stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    for (email, password) in [
        ("dj@example.test", "Django-pass-123"),
        ("php@example.test", "Imported-pass-42"),
        ("flask@example.test", "Flask-pass-1234"),
        ("flask3@example.test", "Scrypt-pass-321"),
    ] {
        assert!(!stored_hash(&d, email).starts_with("$argon2"), "kept as imported until a sign-in");
        assert_eq!(login_status(&d, email, "Wrong-pass-9999").await, 401, "{email}");
        assert_eq!(login_status(&d, email, password).await, 200, "{email} signs in with the old password");
        assert!(stored_hash(&d, email).starts_with("$argon2id$"), "{email}: replaced by latch's own hash");
        assert_eq!(login_status(&d, email, password).await, 200, "{email} again, against the new hash");
    }
    assert_eq!(
        login_status(&d, "md5@example.test", "anything-at-all").await,
        401,
        "the refused line made no account"
    );
    assert_eq!(
        login_status(&d, "root@example.test", "Imported-pass-42").await,
        401,
        "an existing account is left as it was"
    );

    let roles: String = d.db().query_row(ROLES_OF_PHP, [], |r| r.get(0)).unwrap();
    assert_eq!(roles, "admin", "the rest of a line is taken as `users add` takes it");
    let imported: i64 = d.db().query_row(IMPORTED_ROWS, [], |r| r.get(0)).unwrap();
    assert_eq!(imported, 4, "the audit log tells imported hashes apart");

    // Run again: nothing new, nothing refused but the bad line.
    let again = ctl(&d, &["--json", "users", "import", file.to_str().unwrap()], "");
    let tally: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(tally, json!({ "imported": 0, "already_there": 5, "refused": 1 }));
}

/// With a pepper, latch's own hashes carry it: an argon2 hash from
/// elsewhere (RustCrypto's argon2 here) would never match, so it is
/// refused with the reason, while a bcrypt one is taken and rehashed with
/// the pepper. Lines come from standard input (`-`).
#[tokio::test]
async fn a_peppered_daemon_takes_bcrypt_from_standard_input_and_refuses_argon2() {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let (_secrets, pepper) = secret_file("pepper", "a pepper of at least sixteen bytes\n");
    let extra = format!("[passwords]\npepper_file = \"{}\"\n", pepper.display());
    let (d, _) = admin_daemon(&extra, &[]).await;
    let salt = SaltString::encode_b64(&[9u8; 16]).unwrap();
    let argon2 = argon2::Argon2::default().hash_password(b"Argon2-pass-1234", &salt).unwrap().to_string();
    let lines = [
        json!({ "email": "argon@example.test", "password_hash": argon2, "email_verified": true }),
        json!({ "email": "php@example.test", "password_hash": BCRYPT_2Y, "email_verified": true }),
    ];
    let text: Vec<String> = lines.iter().map(Value::to_string).collect();
    let out = ctl(&d, &["users", "import", "-"], &text.join("\n"));
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout} {stderr}");
    assert_eq!(stdout.trim(), "imported 1 account(s); 0 already there; 1 refused");
    assert!(stderr.contains("-:1: password_hash: [passwords].pepper_file is set"), "{stderr}");
    assert_eq!(login_status(&d, "php@example.test", "Imported-pass-42").await, 200);
    assert!(stored_hash(&d, "php@example.test").starts_with("$argon2id$"));
    assert_eq!(
        login_status(&d, "php@example.test", "Imported-pass-42").await,
        200,
        "the new hash has the pepper"
    );
}

/// Several lines go at once, so the daemon commits their accounts together
/// (not one at a time, each waiting for its own fsync), and refused lines are
/// still told in the file's order.
#[tokio::test]
async fn a_large_import_commits_lines_together_and_tells_refusals_in_order() {
    let (d, _) = admin_daemon("", &[]).await;
    let bad = [3, 150, 399];
    let lines: Vec<String> = (1..=400)
        .map(|n| match bad.contains(&n) {
            true => json!({ "email": format!("bad{n}@example.test"), "password_hash": "md5$x$y" }),
            false => json!({ "email": format!("p{n}@example.test"), "password_hash": BCRYPT_2Y }),
        })
        .map(|line| line.to_string())
        .collect();
    let file = d.dir.path().join("many.jsonl");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let commits = "latch_db_commit_batch_size_count";
    let (jobs_before, commits_before) =
        (metric(&d, "latch_db_commit_batch_size_sum").await, metric(&d, commits).await);
    let started = std::time::Instant::now();
    let out = ctl(&d, &["users", "import", file.to_str().unwrap()], "");
    let took = started.elapsed();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.trim(), "imported 397 account(s); 0 already there; 3 refused", "{stderr}");
    // `latchctl: …/many.jsonl:150: password_hash: not a hash …`
    let told = stderr.lines().filter_map(|l| l.split(": password_hash:").next()?.rsplit(':').next());
    assert_eq!(told.collect::<Vec<_>>(), ["3", "150", "399"], "{stderr}");
    let users: i64 =
        d.db().query_row("SELECT count(*) FROM users WHERE email LIKE 'p%'", [], |r| r.get(0)).unwrap();
    assert_eq!(users, 397);
    let jobs = metric(&d, "latch_db_commit_batch_size_sum").await - jobs_before;
    let commits = metric(&d, commits).await - commits_before;
    println!("400 lines in {took:?}: {jobs} write jobs in {commits} commits");
    assert!(commits < jobs, "lines in flight together share commits: {jobs} jobs, {commits} commits");
}
