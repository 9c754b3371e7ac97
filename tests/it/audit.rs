//! The audit log as an admin and an intruder see it: every row a link of an
//! HMAC chain, a row edited with the `sqlite3` CLI named by `latchctl audit
//! verify` and flagged by the daemon's periodic check, retention that
//! shortens the chain without breaking it, rows from before the chain linked
//! on upgrade, filtered pages, exports streamed without buffering, and no
//! row for a change that changed nothing.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::admin_api::{admin_daemon, create_user, ctl, send};
use crate::flows::metric;
use crate::harness::{Latchd, assert_problem, fields_of, rss_kib};

/// The daemon checks its chain every 300 ms instead of every 10 minutes.
const FAST_CHECK: (&str, &str) = ("LATCH_TEST_PAUSE", "audit_check_every:300");

/// A daemon with closed registration and a first admin: (daemon, token).
async fn with_admin(extra: &str) -> (Latchd, String) {
    admin_daemon(extra, &[FAST_CHECK]).await
}

fn sqlite3(d: &Latchd, sql: &str) {
    let out = Command::new("sqlite3").arg(d.state_dir().join("latch.db")).arg(sql).output().unwrap();
    assert!(out.status.success(), "sqlite3: {}", String::from_utf8_lossy(&out.stderr));
}

fn verify(d: &Latchd) -> (bool, Value) {
    let out = ctl(d, &["--json", "audit", "verify"], "");
    (out.status.success(), serde_json::from_slice(&out.stdout).unwrap_or(Value::Null))
}

async fn logs(d: &Latchd, token: &str, query: &str) -> Value {
    let res = d.get_auth(&format!("/v1/admin/audit-logs{query}"), token).await;
    assert_eq!(res.status(), 200, "{query}");
    res.json().await.unwrap()
}

/// Waits until `series` reads `want` (the periodic check runs every 300 ms).
async fn metric_becomes(d: &Latchd, series: &str, want: f64) -> bool {
    for _ in 0..50 {
        if metric(d, series).await == want {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

async fn make_role(d: &Latchd, token: &str, name: &str) {
    let res = d.post_auth("/v1/admin/roles", token, json!({ "name": name })).await;
    assert_eq!(res.status(), 201);
}

#[tokio::test]
async fn every_row_is_a_link_and_a_row_edited_with_sqlite3_is_named() {
    let (d, admin) = with_admin("").await;
    for role in ["ops", "billing", "support"] {
        make_role(&d, &admin, role).await;
    }
    let items = logs(&d, &admin, "").await["items"].as_array().unwrap().clone();
    assert!(items.len() >= 4, "{items:?}");
    for pair in items.windows(2) {
        assert_eq!(pair[0]["prev_hash"], pair[1]["hash"], "newest first, each follows the one before");
        assert_eq!(pair[0]["hash"].as_str().unwrap().len(), 64);
    }
    assert_eq!(items.last().unwrap()["prev_hash"], "", "the first row follows nothing");
    assert!(metric_becomes(&d, "latch_audit_chain_ok", 1.0).await);
    let (ok, report) = verify(&d);
    assert!(ok && report["checked"].as_u64() >= Some(4), "{report}");

    let target = items[items.len() - 2]["id"].as_i64().unwrap();
    sqlite3(&d, &format!("UPDATE audit_log SET ip = '198.51.100.7' WHERE id = {target}"));
    let (ok, report) = verify(&d);
    assert!(!ok, "exit 1");
    assert_eq!(report["broken"]["id"], target, "{report}");
    let human = ctl(&d, &["audit", "verify"], "");
    let said = String::from_utf8_lossy(&human.stdout);
    assert!(said.contains(&format!("broken at row {target}")), "{said}");
    assert!(metric_becomes(&d, "latch_audit_chain_ok", 0.0).await, "the periodic check noticed");
    assert!(d.log().contains("audit chain broken"), "and said so in the log");
}

#[tokio::test]
async fn pages_filter_and_exports_stream_in_chain_order() {
    let (d, admin) = with_admin("").await;
    for role in ["ops", "billing"] {
        make_role(&d, &admin, role).await;
    }
    let res = d
        .client()
        .post(d.https_url("/v1/auth/login"))
        .header("user-agent", "=HYPERLINK(\"http://evil.example\")")
        .json(&json!({"email": "root@example.test", "password": "wrong password here"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);

    let roles = logs(&d, &admin, "?action=role_created").await;
    assert_eq!(roles["total"], 2);
    assert!(roles["items"].as_array().unwrap().iter().all(|i| i["action"] == "role_created"));
    let actor = roles["items"][0]["actor_id"].as_str().unwrap().to_string();
    assert_eq!(logs(&d, &admin, &format!("?actor_id={actor}&action=role_created")).await["total"], 2);
    assert_eq!(logs(&d, &admin, "?since=2999-01-01T00:00:00Z").await["total"], 0);
    assert_eq!(logs(&d, &admin, "?until=1000").await["total"], 0);
    // A date alone is its 00:00 UTC, as latchctl reads one.
    assert_eq!(logs(&d, &admin, "?until=2000-01-01").await["total"], 0);
    assert_eq!(logs(&d, &admin, "?since=2000-01-01").await["total"], logs(&d, &admin, "").await["total"]);
    // An address copied in another spelling finds the same rows.
    let here = logs(&d, &admin, "?ip=127.0.0.1").await["total"].clone();
    assert!(here.as_i64() > Some(0), "{here}");
    for spelling in ["%3A%3Affff%3A127.0.0.1", "0%3A0%3A0%3A0%3A0%3AFFFF%3A7F00%3A1"] {
        assert_eq!(logs(&d, &admin, &format!("?ip={spelling}")).await["total"], here, "{spelling}");
    }
    let all = logs(&d, &admin, "").await;
    let total = all["total"].as_i64().unwrap();
    let second = logs(&d, &admin, "?page=2&page_size=1").await;
    assert_eq!(
        (second["total"].as_i64(), second["items"][0]["id"].clone()),
        (Some(total), all["items"][1]["id"].clone())
    );
    let bad = d.get_auth("/v1/admin/audit-logs?since=yesterday", &admin).await;
    assert_eq!(assert_problem(bad, 400, "invalid-request").await["errors"][0]["field"], "since");
    let several = d.get_auth("/v1/admin/audit-logs?until=soon&page_size=0&format=xml", &admin).await;
    let said = assert_problem(several, 400, "invalid-request").await;
    let fields = fields_of(&said);
    assert_eq!(fields, ["until", "page_size", "format"], "every one at fault, at once: {said}");
    // A misspelt filter is refused, not ignored into an answer of every row.
    for path in ["/v1/admin/audit-logs?acton=role_created", "/v1/admin/users?stauts=disabled&page=1"] {
        let said = assert_problem(d.get_auth(path, &admin).await, 400, "invalid-request").await;
        let (field, told) = (&said["errors"][0]["field"], said["errors"][0]["message"].as_str().unwrap());
        assert!(["acton", "stauts"].contains(&field.as_str().unwrap()), "{said}");
        assert!(
            told.starts_with("is not a parameter here (the parameters are ") && told.contains("page_size")
        );
    }
    assert_problem(d.get("/v1/admin/audit-logs").await, 401, "unauthorized").await;

    let jsonl = ok_text(ctl(&d, &["audit", "export"], ""));
    let ids: Vec<i64> =
        jsonl.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["id"].as_i64().unwrap()).collect();
    assert_eq!(ids.len() as i64, total);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "oldest first: {ids:?}");
    let by_address = ["audit", "export", "--actor-id", "root@example.test", "--action", "role_created"];
    assert_eq!(ok_text(ctl(&d, &by_address, "")).lines().count(), 2, "users are named by id or email");
    // A while ago: every row was written within the last hour, none before.
    let last_hour = ok_text(ctl(&d, &["audit", "export", "--since", "1h"], ""));
    assert_eq!(last_hour.lines().count() as i64, total);
    assert_eq!(ok_text(ctl(&d, &["audit", "export", "--until", "1h"], "")).lines().count(), 0);
    // A date alone is its 00:00 UTC: every row is before tomorrow's.
    let tomorrow = (time::OffsetDateTime::now_utc().date() + time::Duration::DAY).to_string();
    let until_tomorrow = ok_text(ctl(&d, &["audit", "export", "--until", &tomorrow], ""));
    assert_eq!(until_tomorrow.lines().count() as i64, total);
    assert_eq!(ok_text(ctl(&d, &["audit", "export", "--since", &tomorrow], "")).lines().count(), 0);
    // A mistake is told for what it was meant as, before anything is asked.
    for (since, told) in
        [("3651d", "longer than the longest duration"), ("yesterday", "a date like 2026-12-02")]
    {
        let out = ctl(&d, &["audit", "export", "--since", since], "");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.starts_with("latchctl: ") && err.contains(told) && err.lines().count() == 1, "{err}");
    }
    let csv = ok_text(ctl(&d, &["audit", "export", "--format", "csv", "--action", "login_failed"], ""));
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "id,at,action,actor_id,subject_id,ip,user_agent,request_id,details,prev_hash,hash");
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(
        lines[1].contains(",\"'=HYPERLINK(\"\"http://evil.example\"\")\","),
        "a formula is defused: {csv}"
    );
}

fn ok_text(out: std::process::Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn a_hundred_thousand_rows_export_without_the_daemon_growing() {
    // The rows go in behind latchd's back, as one 100 MiB transaction no
    // latch write ever makes; the WAL archive would read it whole, and this
    // test is about the export, so the archive is off.
    // Without the fast chain check: its reads would blur the count below.
    let (d, admin) = admin_daemon("\n[backup]\nwal_archive = false\n", &[]).await;
    let mut db = rusqlite::Connection::open(d.state_dir().join("latch.db")).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    let tx = db.transaction().unwrap();
    let details = json!({ "note": "x".repeat(1000) }).to_string();
    {
        let mut insert = tx
            .prepare("INSERT INTO audit_log (at, action, ip, details) VALUES (1700000000, 'bulk', '192.0.2.1', ?1)")
            .unwrap();
        for _ in 0..100_000 {
            insert.execute([&details]).unwrap();
        }
    }
    tx.commit().unwrap();
    drop(db);

    // HEAD (a monitor's `curl -I`) gets the export's head without a read
    // of the log; the export itself takes one read per 2,000 rows.
    let reads = "latch_db_query_duration_seconds_count{op=\"read\"}";
    let before_head = metric(&d, reads).await;
    let url = d.https_url("/v1/admin/audit-logs?format=csv&action=bulk");
    let head = d.client().head(url).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert!(head.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    assert!(head.bytes().await.unwrap().is_empty());
    // Reads for a body would go on after the answer: give them time to show.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let head_reads = metric(&d, reads).await - before_head;

    let (pid, before) = (d.pid(), rss_kib(d.pid()));
    let stop = Arc::new(AtomicBool::new(false));
    let watching = Arc::clone(&stop);
    let sampler = std::thread::spawn(move || {
        let mut peak = 0;
        while !watching.load(Ordering::SeqCst) {
            peak = peak.max(rss_kib(pid));
            std::thread::sleep(Duration::from_millis(10));
        }
        peak
    });
    let before_export = metric(&d, reads).await;
    let out = ctl(&d, &["audit", "export", "--action", "bulk"], "");
    stop.store(true, Ordering::SeqCst);
    let export_reads = metric(&d, reads).await - before_export;
    eprintln!("reads: HEAD {head_reads}, the export {export_reads}");
    // A few reads are the scrapes' own, not the export's.
    assert!(
        export_reads >= 50.0 && head_reads < export_reads / 5.0,
        "HEAD {head_reads}, export {export_reads}"
    );
    let peak = sampler.join().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout.iter().filter(|b| **b == b'\n').count(), 100_000);
    let exported_mib = out.stdout.len() / (1 << 20);
    let grew_mib = peak.saturating_sub(before) / 1024;
    eprintln!("latchd grew {grew_mib} MiB (from {} MiB) exporting {exported_mib} MiB", before / 1024);
    assert!(exported_mib > 100, "{exported_mib} MiB");
    assert!(grew_mib < 40, "latchd grew {grew_mib} MiB while exporting {exported_mib} MiB");
}

#[tokio::test]
async fn retention_shortens_the_chain_from_the_old_end_and_says_so() {
    let (d, admin) = with_admin("\n[audit]\nretention = \"2s\"\n").await;
    make_role(&d, &admin, "ops").await;
    // `at` is whole seconds: a row is past "2s" within 3 s at the latest,
    // and the upkeep runs every 300 ms (later on a loaded machine).
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let mut left = logs(&d, &admin, "?action=user_created").await;
    for _ in 0..50 {
        if left["total"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        left = logs(&d, &admin, "?action=user_created").await;
    }
    assert_eq!(left["total"], 0, "the first admin's row is past retention");
    let checkpoints = logs(&d, &admin, "?action=audit_checkpoint").await;
    assert!(checkpoints["total"].as_i64() >= Some(1), "{checkpoints}");
    assert!(metric_becomes(&d, "latch_audit_chain_ok", 1.0).await, "still intact");
    let dir = d.stop_keep_dir();
    // From here the chain is checked as it stands: an upkeep cutting rows
    // past a 2 s retention under the tampering below (a slow machine takes
    // that long to restart and add two roles) would mend what it broke.
    let config = dir.path().join("latch.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("retention = \"2s\"", "retention = \"1h\"")).unwrap();
    let d = Latchd::start_in(dir).await;
    for role in ["billing", "support"] {
        make_role(&d, &admin, role).await;
    }
    let (ok, report) = verify(&d);
    assert!(ok, "{report}");
    // Cutting more off the old end is not retention: the checkpoint says
    // where the chain must begin.
    let rows: Vec<i64> = {
        let db = d.db();
        let mut stmt = db.prepare("SELECT id FROM audit_log ORDER BY id").unwrap();
        stmt.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    };
    sqlite3(&d, &format!("DELETE FROM audit_log WHERE id = {}", rows[0]));
    let (ok, report) = verify(&d);
    assert!(!ok);
    assert_eq!(report["broken"]["id"], rows[1], "{report}");
}

#[tokio::test]
async fn rows_from_before_the_chain_are_linked_on_upgrade() {
    let (d, admin) = with_admin("").await;
    make_role(&d, &admin, "ops").await;
    let dir = d.stop_keep_dir();
    let db = rusqlite::Connection::open(dir.path().join("state/latch.db")).unwrap();
    db.execute_batch(
        "UPDATE audit_log SET prev_hash = NULL, hash = NULL;
         DELETE FROM schema_migrations WHERE version = 6;",
    )
    .unwrap();
    drop(db);
    let d = Latchd::start_in(dir).await;
    let (ok, report) = verify(&d);
    assert!(ok && report["checked"].as_u64() >= Some(3), "{report}");
    d.log_with("linked into it").await;
}

/// A deleted account's rows are still found by its address: its deletion
/// row keeps a keyed tag of the address (never the address itself), and an
/// export by email covers every account that had it, live or deleted.
#[tokio::test]
async fn a_deleted_accounts_rows_are_found_by_its_address() {
    let (d, admin) = with_admin("").await;
    let add = |email: &str| {
        let args = ["--json", "users", "add", email, "--password-stdin", "--verified"];
        crate::admin_api::ok_json(ctl(&d, &args, crate::flows::PASSWORD))["id"].as_str().unwrap().to_string()
    };
    // Ann deletes her account herself and registers again; the admin
    // deletes Bob's.
    let first_ann = add("ann@example.test");
    let ann = crate::flows::login(&d, "ann@example.test", crate::flows::PASSWORD).await;
    let token = ann["access_token"].as_str().unwrap();
    let gone = d.client().delete(d.https_url("/v1/auth/me")).bearer_auth(token);
    let gone = gone.json(&json!({ "password": crate::flows::PASSWORD })).send().await.unwrap();
    assert_eq!(gone.status(), 204);
    let second_ann = add("ann@example.test");
    let bob = add("bob@example.test");
    let url = d.https_url(&format!("/v1/admin/users/{bob}"));
    let moved = json!({ "email": "robert@example.test", "email_verified": true });
    let moved = d.client().patch(&url).bearer_auth(&admin).json(&moved).send().await.unwrap();
    assert_eq!(moved.status(), 200, "the admin moves Bob to robert@ first");
    assert_eq!(d.client().delete(url).bearer_auth(&admin).send().await.unwrap().status(), 204);

    let rows_about = |email: &str| -> Vec<Value> {
        let export = ok_text(ctl(&d, &["audit", "export", "--subject-id", email], ""));
        export.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    let anns = rows_about("ann@example.test");
    let subjects: std::collections::BTreeSet<&str> =
        anns.iter().map(|r| r["subject_id"].as_str().unwrap()).collect();
    assert_eq!(subjects, [first_ann.as_str(), second_ann.as_str()].into(), "both of Ann's accounts");
    assert!(anns.iter().any(|r| r["action"] == "account_deleted"), "{anns:?}");
    // By the address Bob had when deleted, and by the one he moved from.
    let before_the_move = rows_about(" Bob@Example.TEST");
    assert!(before_the_move.iter().any(|r| r["action"] == "user_deleted"), "{before_the_move:?}");
    let bobs = rows_about("robert@example.test");
    assert!(
        bobs.iter().any(|r| r["action"] == "user_deleted" && r["subject_id"] == bob.as_str()),
        "{bobs:?}"
    );

    for row in anns.iter().chain(&bobs).filter(|r| r["action"].as_str().unwrap().ends_with("_deleted")) {
        let tag = row["details"]["email_tag"].as_str().unwrap_or_default();
        assert!(tag.len() == 64 && tag.bytes().all(|b| b.is_ascii_hexdigit()), "a tag: {row}");
        assert!(!row.to_string().contains("@example.test"), "no address in clear: {row}");
    }
    let none = ctl(&d, &["audit", "export", "--subject-id", "nobody@example.test"], "");
    assert_eq!(none.status.code(), Some(1));
    let said = String::from_utf8_lossy(&none.stderr);
    assert!(said.contains("no such account, live or deleted, with this address"), "{said}");
}

/// A change that changes nothing (an empty PATCH, the address the account
/// has, in any case) is answered as usual and leaves no `user_updated` row
/// with nothing in it; a change beside it is audited as ever.
#[tokio::test]
async fn a_change_that_changes_nothing_leaves_no_audit_row() {
    let (d, admin) = with_admin("").await;
    let user = create_user(&d, &admin, "lee@example.test", &[]).await;
    let path = format!("/v1/admin/users/{}", user["id"].as_str().unwrap());
    let updates = || -> i64 {
        let sql = "SELECT count(*) FROM audit_log WHERE action = 'user_updated'";
        d.db().query_row(sql, [], |r| r.get(0)).unwrap()
    };
    for body in [json!({}), json!({"email": "lee@example.test"}), json!({"email": "LEE@Example.test"})] {
        let res = send(&d, "PATCH", &path, &admin, Some(body.clone())).await;
        assert_eq!(res.status(), 200, "{body}");
        assert_eq!(res.json::<Value>().await.unwrap()["email"], "lee@example.test", "{body}");
    }
    let out = ctl(&d, &["users", "set-email", "lee@example.test", "lee@example.test"], "");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(updates(), 0, "nothing changed, nothing audited");
    let res =
        send(&d, "PATCH", &path, &admin, Some(json!({"email": "lee@example.test", "name": "Lee"}))).await;
    assert_eq!(res.status(), 200);
    assert_eq!(updates(), 1, "the name changed");

    // The person's own PATCH of the name they already have, spaces and all.
    let access = crate::flows::login(&d, "lee@example.test", crate::flows::PASSWORD).await;
    let rename = |name: &str| {
        let url = d.https_url("/v1/auth/me");
        d.client()
            .patch(url)
            .bearer_auth(access["access_token"].as_str().unwrap())
            .json(&json!({"name": name}))
    };
    let renames = || -> i64 {
        let sql = "SELECT count(*) FROM audit_log WHERE action = 'name_changed'";
        d.db().query_row(sql, [], |r| r.get(0)).unwrap()
    };
    for (name, audited) in [(" Lee ", 0), ("Lee Park", 1), ("Lee Park", 1)] {
        let res = rename(name).send().await.unwrap();
        assert_eq!(res.status(), 200, "{name}");
        assert_eq!(renames(), audited, "after renaming to {name:?}");
    }
}
