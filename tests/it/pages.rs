//! The pages for people, in a real browser: Debian's chromium driven by
//! selenium (`tests/browser/pages.py`) against the real daemon. A person
//! confirms their address from the emailed link, resets their password
//! from another, signs in, revokes another session (whose refresh token the
//! API then refuses), changes the password, and turns on TOTP with the
//! second step at the next sign-in. axe-core checks every page; each is
//! saved as a screenshot in `target/pages-screenshots/`.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::flows::{PASSWORD, login, with_smtp};
use crate::harness::{Latchd, unix_request};
use crate::mail::{subject_of, text_of, token_in};
use crate::mfa::code_at;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/pages.py");

fn shots_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/target/pages-screenshots"))
}

fn axe_js() -> String {
    std::env::var("LATCH_AXE_JS").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/target/browser-tools/node_modules/axe-core/axe.min.js").into()
    })
}

fn browser(d: &Latchd, phase: &str, args: &[&str]) -> std::process::Child {
    Command::new("python3")
        .arg(SCRIPT)
        .args([phase, &d.https_url(""), &shots_dir().display().to_string()])
        .args(args)
        .env("LATCH_AXE_JS", axe_js())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3")
}

/// The phase's final JSON, after checking every page it saw.
fn finished(child: std::process::Child) -> Value {
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "browser: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let found: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    for page in found["pages"].as_array().unwrap() {
        assert_eq!(page["serious"], json!([]), "axe on {}: {} {}", page["name"], page["all"], page["source"]);
        assert_eq!(page["phone_overflow"], false, "{} is wider than a phone", page["name"]);
    }
    found
}

fn run(d: &Latchd, phase: &str, args: &[&str]) -> Value {
    finished(browser(d, phase, args))
}

/// The link of the last message, as the person clicks it: from the mail's
/// text, rebased from `public_url` onto this test daemon's address.
fn link(d: &Latchd, mail: &str, page: &str) -> String {
    let token = token_in(mail);
    let sent = format!("https://localhost:8443/{page}?token={token}");
    assert!(text_of(mail).contains(&sent), "the link is built from public_url: {mail}");
    d.https_url(&format!("/{page}?token={token}"))
}

#[tokio::test]
async fn a_person_confirms_resets_signs_in_and_looks_after_their_account_in_a_browser() {
    // Pat gets more than the default five mails in the hour. On a machine
    // busy with other tests, hashing's load shedding (503 past 1 s of
    // expected wait) once answered a sign-in here: this is about the pages.
    let (d, smtp) =
        with_smtp("\n[email]\nmax_per_recipient = 20\n\n[passwords]\nmax_queue_wait = \"30s\"\n").await;
    let email = "pat@example.test";
    let res = d.post("/v1/auth/register", json!({"email": email, "password": PASSWORD})).await;
    assert_eq!(res.status(), 202);
    let verify = link(&d, &smtp.wait_for(1).await[0], "verify-email");
    let found = run(&d, "verify", &[&verify]);
    assert!(found["after_confirm"].as_str().unwrap().contains("confirmed"), "{found}");
    assert!(found["after_reopen"].as_str().unwrap().contains("already confirmed"), "{found}");
    assert_eq!(found["confirm_offered_again"], false, "{found}");

    assert_eq!(d.post("/v1/auth/password/forgot", json!({"email": email})).await.status(), 202);
    let reset = link(&d, &smtp.wait_for(2).await[1], "reset-password");
    let new_password = "a brand new passphrase";
    let found = run(&d, "reset", &[&reset, new_password]);
    assert!(found["after_mismatch"].as_str().unwrap().contains("differ"), "{found}");
    assert!(found["after_reset"].as_str().unwrap().contains("signed out"), "{found}");
    assert_eq!(found["reset_username"], email, "password managers file the new password under it");

    // Another session, made through the API, for the browser to revoke.
    let other = login(&d, email, new_password).await;
    let changed = "the third passphrase of pat";
    let found = run(&d, "account", &[email, new_password, changed]);
    assert!(found["after_wrong_password"].as_str().unwrap().contains("wrong"), "{found}");
    assert!(found["url_after_login"].as_str().unwrap().ends_with("/account"), "{found}");
    assert_eq!((found["sessions_before"].as_u64(), found["sessions_after"].as_u64()), (Some(2), Some(1)));
    assert!(found["after_change"].as_str().unwrap().contains("Password changed"), "{found}");
    assert_eq!(found["change_username"], email, "{found}");
    let session_cookie = found["cookies"].as_array().unwrap().iter().find(|c| c["name"] == "__Host-latch");
    assert_eq!(
        session_cookie.map(|c| (&c["secure"], &c["httpOnly"], &c["sameSite"])),
        Some((&json!(true), &json!(true), &json!("Strict"))),
        "{found}"
    );
    let refused = d.post("/v1/auth/refresh", json!({"refresh_token": other["refresh_token"]})).await;
    assert_eq!(refused.status(), 401, "the session revoked in the browser is over for the API too");

    // TOTP from the account page; the next sign-in asks for a code.
    let mut child = browser(&d, "totp", &[email, changed]);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stdin = child.stdin.take().unwrap();
    let mut rest = Vec::new();
    // Each code is made a moment before latch checks it (a python start, a
    // form filled): a step boundary may pass between the two. A code of
    // the current step (enrolment) or the next (sign-in, which must be
    // later than the enrolment's) still works a step later; one of the
    // step before did not (the page then had no second step).
    for steps in [0, 1] {
        let Some(Ok(line)) = lines.next() else {
            let out = child.wait_with_output().unwrap();
            panic!("the browser stopped before asking for a code: {}", String::from_utf8_lossy(&out.stderr));
        };
        let asked: Value = serde_json::from_str(&line).unwrap();
        let secret = asked["need_code_for"].as_str().unwrap();
        writeln!(stdin, "{}", code_at(secret, steps)).unwrap();
    }
    for line in lines {
        rest.push(line.unwrap());
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "browser: {rest:?}\n{}", String::from_utf8_lossy(&out.stderr));
    let found: Value = serde_json::from_str(rest.last().unwrap()).unwrap();
    for page in found["pages"].as_array().unwrap() {
        assert_eq!(page["serious"], json!([]), "axe on {}: {}", page["name"], page["all"]);
    }
    assert_eq!(found["recovery_codes"].as_array().unwrap().len(), 10, "{found}");
    assert!(found["url_after_second_step"].as_str().unwrap().ends_with("/account"), "{found}");
    assert!(found["after_turn_off"].as_str().unwrap().contains("Two-step verification is off"), "{found}");
    assert_eq!(found["set_up_offered_again"], true, "{found}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !smtp.wait_for(1).await.iter().any(|m| subject_of(m) == "Two-step verification was turned off") {
        assert!(std::time::Instant::now() < deadline, "the person is told");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn forms_without_the_csrf_token_are_refused_and_pages_can_be_turned_off() {
    let (d, _smtp) = with_smtp("").await;
    let page = d.get("/account/login").await;
    assert_eq!(page.status(), 200);
    // Only HTTPS listeners serve the pages: a password is never typed into
    // a form that travels in clear.
    let plain = d.client().get(d.http_url("/account/login")).send().await.unwrap();
    assert_eq!(plain.status(), 404, "plain HTTP");
    let socket = d.listener("unix")["path"].as_str().unwrap().to_string();
    assert_eq!(unix_request(Path::new(&socket), "GET /account/login").0, 404, "Unix socket");
    let proxied = d.client().get(d.http_url("/account/login")).header("x-forwarded-proto", "https");
    assert_eq!(proxied.send().await.unwrap().status(), 404, "from a peer that is no trusted proxy");
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains("default-src 'none'") && !csp.contains("script-src"), "{csp}");
    let cookie = page.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.starts_with("__Host-latch-csrf=")
            && cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict")
    );
    let (pair, token) = csrf_of(page).await;
    let token = token.as_str();
    let post = |form: Vec<(&'static str, String)>, with_cookie: bool| {
        let mut req = d.client().post(d.https_url("/account/login")).form(&form);
        if with_cookie {
            req = req.header("cookie", pair.clone());
        }
        req.send()
    };
    let login = |csrf: &str| {
        vec![
            ("csrf", csrf.to_string()),
            ("email", "x@example.test".into()),
            ("password", "wrong password".into()),
        ]
    };
    // Refused with a page a person can read (a browser shows JSON as text).
    for (refused, case) in [
        (post(login(""), true).await.unwrap(), "no token"),
        (post(login(token), false).await.unwrap(), "no cookie"),
        (post(login(&"0".repeat(64)), true).await.unwrap(), "another token"),
    ] {
        assert_eq!(refused.status(), 403, "{case}");
        assert!(refused.headers()["content-type"].to_str().unwrap().starts_with("text/html"), "{case}");
        let html = refused.text().await.unwrap();
        assert!(
            html.contains("This form has expired") && html.contains("href=\"/account\""),
            "{case}: {html}"
        );
    }
    assert_eq!(post(login(token), true).await.unwrap().status(), 401, "the form itself is checked");
    // A form an email's link opened offers that form again: the account
    // page would ask a person who forgot their password to sign in.
    let form = [("csrf", token), ("token", "tok en&1"), ("new_password", "x"), ("confirm_password", "x")];
    let refused = d.client().post(d.https_url("/reset-password")).form(&form).send().await.unwrap();
    assert_eq!(refused.status(), 403);
    let html = refused.text().await.unwrap();
    assert!(html.contains("href=\"/reset-password?token=tok+en%261\""), "{html}");
    let form = [("csrf", token), ("token", "abc")];
    let refused = d.client().post(d.https_url("/verify-email")).form(&form).send().await.unwrap();
    assert_eq!(refused.status(), 403);
    assert!(refused.text().await.unwrap().contains("href=\"/verify-email?token=abc\""));
    // A confirmation link that never worked says so when opened.
    let dead = d.get("/verify-email?token=never-issued").await;
    assert_eq!(dead.status(), 400);
    let html = dead.text().await.unwrap();
    assert!(html.contains("This link does not work") && !html.contains("action=\"/verify-email\""), "{html}");

    // Behind a trusted proxy that terminated HTTPS, a plain-HTTP listener
    // serves them.
    let (d, _smtp) = with_smtp("[defense]\ntrusted_proxies = [\"127.0.0.1/32\"]\n").await;
    let proxied = d.client().get(d.http_url("/account/login")).header("x-forwarded-proto", "https");
    assert_eq!(proxied.send().await.unwrap().status(), 200);
    let plain = d.client().get(d.http_url("/account/login")).header("x-forwarded-proto", "http");
    assert_eq!(plain.send().await.unwrap().status(), 404);

    let (d, _smtp) = with_smtp("[pages]\nenabled = false\n").await;
    assert_eq!(d.get("/account/login").await.status(), 404);
    assert_eq!(d.get("/verify-email?token=abc").await.status(), 404);
}

/// A page's CSRF cookie (as `name=value`) and the token in its form.
pub async fn csrf_of(page: reqwest::Response) -> (String, String) {
    let cookie = page.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let body = page.text().await.unwrap();
    let at = body.find("name=\"csrf\" value=\"").unwrap() + "name=\"csrf\" value=\"".len();
    (cookie, body[at..at + 64].to_string())
}

/// A browser signed in to /account as `email`: a client that does not
/// follow redirects, the cookies to send (CSRF and session) and the CSRF
/// token for forms.
pub struct Browser {
    pub client: reqwest::Client,
    pub cookies: String,
    pub csrf: String,
}

pub async fn signed_in(d: &Latchd, email: &str) -> Browser {
    let tls = crate::harness::client_tls(&d.cert_path(), &[&rustls::version::TLS13]);
    let client = reqwest::Client::builder().use_preconfigured_tls((*tls).clone());
    let client = client.redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let (csrf_cookie, csrf) = csrf_of(d.get("/account/login").await).await;
    let login = [("csrf", csrf.as_str()), ("email", email), ("password", PASSWORD)];
    let res = client.post(d.https_url("/account/login")).header("cookie", &csrf_cookie).form(&login);
    let res = res.send().await.unwrap();
    assert_eq!(res.status(), 303, "signed in");
    let session = res.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    Browser { client, cookies: format!("{csrf_cookie}; {session}"), csrf }
}

impl Browser {
    /// POSTs `form` (the CSRF token added) to `path`.
    pub async fn post(&self, d: &Latchd, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        let mut form = form.to_vec();
        form.push(("csrf", &self.csrf));
        let req = self.client.post(d.https_url(path)).header("cookie", &self.cookies).form(&form);
        req.send().await.unwrap()
    }

    pub async fn get(&self, d: &Latchd, path: &str) -> reqwest::Response {
        self.client.get(d.https_url(path)).header("cookie", &self.cookies).send().await.unwrap()
    }
}

/// Confirm pressed twice (a double click sends the form twice): the page
/// the person is left on says the address is confirmed, not that the link
/// is dead.
#[tokio::test]
async fn confirm_pressed_twice_still_says_the_address_is_confirmed() {
    let (d, smtp) = with_smtp("").await;
    let res = d.post("/v1/auth/register", json!({"email": "dee@example.test", "password": PASSWORD})).await;
    assert_eq!(res.status(), 202);
    let token = token_in(&smtp.wait_for(1).await[0]);
    let (cookie, csrf) = csrf_of(d.get(&format!("/verify-email?token={token}")).await).await;
    let confirm = || {
        let form = [("csrf", csrf.clone()), ("token", token.clone())];
        d.client().post(d.https_url("/verify-email")).header("cookie", cookie.clone()).form(&form).send()
    };
    let first = confirm().await.unwrap().text().await.unwrap();
    assert!(first.contains("Your email address is confirmed"), "{first}");
    let second = confirm().await.unwrap();
    assert_eq!(second.status(), 200);
    let second = second.text().await.unwrap();
    assert!(second.contains("already confirmed") && !second.contains("does not work"), "{second}");
}

/// Confirm pressed twice on the TOTP set-up: the first press turned it on
/// (and showed the recovery codes); the page left on screen says it is on
/// and where to make new codes, not "that code did not match". The account
/// page then counts the recovery codes left as they are used; turning it
/// off with the form sent twice says it is off both times.
#[tokio::test]
async fn totp_confirm_pressed_twice_says_it_is_on_and_codes_are_counted() {
    let (d, smtp) = with_smtp("").await;
    crate::flows::register_verified(&d, &smtp, "tia@example.test", 0).await;
    let tls = crate::harness::client_tls(&d.cert_path(), &[&rustls::version::TLS13]);
    let client = reqwest::Client::builder()
        .use_preconfigured_tls((*tls).clone())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let (csrf_cookie, csrf) = csrf_of(d.get("/account/login").await).await;
    let login = [("csrf", csrf.as_str()), ("email", "tia@example.test"), ("password", PASSWORD)];
    let res = client.post(d.https_url("/account/login")).header("cookie", &csrf_cookie).form(&login).send();
    let res = res.await.unwrap();
    assert_eq!(res.status(), 303);
    let session = res.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let cookies = format!("{csrf_cookie}; {session}");
    let post = |path: &str, form: Vec<(&'static str, String)>| {
        client.post(d.https_url(path)).header("cookie", &cookies).form(&form).send()
    };
    let enrol = post("/account/totp", vec![("csrf", csrf.clone())]).await.unwrap().text().await.unwrap();
    let at = enrol.find("<code>").unwrap_or_else(|| panic!("{enrol}")) + "<code>".len();
    let shown: String = enrol[at..].chars().take_while(|c| *c != '<').collect();
    // In groups of four, as an authenticator app takes it.
    let groups: Vec<&str> = shown.split(' ').collect();
    assert!(groups.len() > 4 && groups.iter().all(|g| g.len() == 4), "{shown}");
    let secret = shown.replace(' ', "");
    let confirm = vec![("csrf", csrf.clone()), ("code", code_at(&secret, 0))];
    let first = post("/account/totp/confirm", confirm.clone()).await.unwrap().text().await.unwrap();
    assert!(first.contains("Your recovery codes"), "{first}");
    let second = post("/account/totp/confirm", confirm).await.unwrap();
    assert_eq!(second.status(), 200);
    let second = second.text().await.unwrap();
    assert!(second.contains("Two-step verification is on") && !second.contains("did not match"), "{second}");

    let account = || client.get(d.https_url("/account")).header("cookie", &cookies).send();
    let page = account().await.unwrap().text().await.unwrap();
    assert!(page.contains("You have 10 unused recovery codes."), "{page}");
    let codes: Vec<&str> =
        first.split("<li><code>").skip(1).filter_map(|s| s.split("</code>").next()).collect();
    assert_eq!(codes.len(), 10, "{first}");
    for (i, code) in codes.iter().take(8).enumerate() {
        let body = json!({"email": "tia@example.test", "password": PASSWORD});
        let step: Value = d.post("/v1/auth/login", body).await.json().await.unwrap();
        let proof = json!({"mfa_token": step["mfa_token"], "recovery_code": code});
        assert_eq!(d.post("/v1/auth/login/mfa", proof).await.status(), 200, "code {i}");
    }
    let page = account().await.unwrap().text().await.unwrap();
    assert!(page.contains("You have 2 unused recovery codes.") && page.contains("Make new ones"), "{page}");

    // Turned off with the form sent twice: both answers say it is off.
    let off =
        vec![("csrf", csrf.clone()), ("password", PASSWORD.to_string()), ("code", codes[8].to_string())];
    for press in ["first", "second"] {
        let res = post("/account/totp/off", off.clone()).await.unwrap();
        assert_eq!(res.status(), 200, "{press}");
        let said = res.text().await.unwrap();
        assert!(
            said.contains("Two-step verification is off") && !said.contains("not enabled"),
            "{press}: {said}"
        );
    }
}

/// A new password's form sent twice at once (a double click): the page the
/// person is left on says the link set their password, not that it does
/// not work; so does the link opened again. A link that a later reset
/// voided still does not work.
#[tokio::test]
async fn a_reset_form_sent_twice_says_the_link_set_the_password() {
    let (d, smtp) = with_smtp("").await;
    crate::flows::register_verified(&d, &smtp, "rue@example.test", 0).await;
    for _ in 0..2 {
        assert_eq!(
            d.post("/v1/auth/password/forgot", json!({"email": "rue@example.test"})).await.status(),
            202
        );
    }
    let mails = smtp.wait_for(3).await;
    let (older, token) = (token_in(&mails[1]), token_in(&mails[2]));
    let (cookie, csrf) = csrf_of(d.get(&format!("/reset-password?token={token}")).await).await;
    let new_password = "rue's brand new passphrase";
    let send = || {
        let form = [
            ("csrf", csrf.as_str()),
            ("token", token.as_str()),
            ("new_password", new_password),
            ("confirm_password", new_password),
        ];
        let req =
            d.client().post(d.https_url("/reset-password")).header("cookie", cookie.clone()).form(&form);
        async move {
            let res = req.send().await.unwrap();
            (res.status().as_u16(), res.text().await.unwrap())
        }
    };
    let (first, second) = tokio::join!(send(), send());
    let (set, again) =
        if first.1.contains("Your new password is set") { (first, second) } else { (second, first) };
    assert_eq!(set.0, 200, "{}", set.1);
    assert_eq!(again.0, 200, "{}", again.1);
    assert!(
        again.1.contains("already set a new password") && !again.1.contains("does not work"),
        "{}",
        again.1
    );
    let third = send().await;
    assert!(third.1.contains("This link was already used"), "{}", third.1);
    let opened = d.get(&format!("/reset-password?token={token}")).await;
    assert_eq!(opened.status(), 200);
    assert!(opened.text().await.unwrap().contains("already set a new password"));
    let voided = d.get(&format!("/reset-password?token={older}")).await;
    assert_eq!(voided.status(), 400);
    assert!(voided.text().await.unwrap().contains("This link does not work"));
    login(&d, "rue@example.test", new_password).await;
}

/// Signing in with the right password before confirming the address says
/// so and offers a new confirmation link right there (the first may be lost
/// or a day old), which confirms the address; a wrong password is offered
/// nothing.
#[tokio::test]
async fn signing_in_before_confirming_offers_a_new_confirmation_link() {
    let (d, smtp) = with_smtp("").await;
    let email = "una@example.test";
    assert_eq!(
        d.post("/v1/auth/register", json!({"email": email, "password": PASSWORD})).await.status(),
        202
    );
    smtp.wait_for(1).await;
    let (cookie, csrf) = csrf_of(d.get("/account/login").await).await;
    let tls = crate::harness::client_tls(&d.cert_path(), &[&rustls::version::TLS13]);
    let client = reqwest::Client::builder().use_preconfigured_tls((*tls).clone());
    let client = client.redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let post = |path: &str, form: Vec<(&str, &str)>| {
        client.post(d.https_url(path)).header("cookie", cookie.clone()).form(&form).send()
    };
    let sign_in =
        |password| post("/account/login", vec![("csrf", &csrf), ("email", email), ("password", password)]);
    let wrong = sign_in("not the password at all").await.unwrap().text().await.unwrap();
    assert!(!wrong.contains("/verify-email/resend"), "{wrong}");
    let page = sign_in(PASSWORD).await.unwrap();
    assert_eq!(page.status(), 403);
    let page = page.text().await.unwrap();
    assert!(page.contains("Confirm your email address first."), "{page}");
    let offer = "action=\"/verify-email/resend\">\n<input type=\"hidden\" name=\"csrf\"";
    assert!(page.contains(offer) && page.contains("name=\"email\" value=\"una@example.test\""), "{page}");

    let sent = post("/verify-email/resend", vec![("csrf", &csrf), ("email", email)]).await.unwrap();
    assert_eq!(sent.status(), 200);
    let token = token_in(&smtp.wait_for(2).await[1]);
    assert_eq!(d.post("/v1/auth/verify-email", json!({"token": token})).await.status(), 200);
    assert_eq!(sign_in(PASSWORD).await.unwrap().status(), 303, "confirmed: signed in");
}

/// Deleting the account from its page: without the box ticked, or with a
/// wrong password, nothing happens and the page says why; with both, the
/// account is gone, the browser's session ends with it, and the address
/// is told (a stolen session and password could do this).
#[tokio::test]
async fn deleting_the_account_from_its_page_ends_it_and_tells_the_address() {
    let (d, smtp) = with_smtp("").await;
    let email = "vic@example.test";
    let seen = crate::flows::register_verified(&d, &smtp, email, 0).await;
    let browser = signed_in(&d, email).await;
    let unticked = browser.post(&d, "/account/delete", &[("password", PASSWORD)]).await;
    assert_eq!(unticked.status(), 400);
    assert!(unticked.text().await.unwrap().contains("Tick the box"));
    let wrong = [("password", "not the password"), ("confirm", "yes")];
    assert_eq!(browser.post(&d, "/account/delete", &wrong).await.status(), 401);
    login_api(&d, email).await;

    let done = browser.post(&d, "/account/delete", &[("password", PASSWORD), ("confirm", "yes")]).await;
    assert_eq!(done.status(), 200);
    let ended = done.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(ended.starts_with("__Host-latch=;") || ended.contains("Max-Age=0"), "{ended}");
    assert!(done.text().await.unwrap().contains("Your account was deleted"));
    let account = browser.get(&d, "/account").await;
    assert_eq!(account.status(), 303, "the browser's session ended with the account");
    let res = d.post("/v1/auth/login", json!({"email": email, "password": PASSWORD})).await;
    assert_eq!(res.status(), 401);
    let notice = smtp.wait_for(seen + 1).await.pop().unwrap();
    assert_eq!(subject_of(&notice), "Your account was deleted");
    assert!(text_of(&notice).contains("address: 127.0.0.1"), "{notice}");
}

/// A name is changed on the page (and over the API, `PATCH /v1/auth/me`);
/// one that would carry escape sequences to an admin's terminal is refused.
#[tokio::test]
async fn a_person_changes_their_name() {
    let (d, smtp) = with_smtp("").await;
    let email = "wren@example.test";
    crate::flows::register_verified(&d, &smtp, email, 0).await;
    let browser = signed_in(&d, email).await;
    let saved = browser.post(&d, "/account/name", &[("name", "  Wren Ash ")]).await.text().await.unwrap();
    assert!(saved.contains("Your name is saved.") && saved.contains("value=\"Wren Ash\""), "{saved}");
    let access = login(&d, email, PASSWORD).await["access_token"].as_str().unwrap().to_string();
    let me: Value = d.get_auth("/v1/auth/me", &access).await.json().await.unwrap();
    assert_eq!(me["name"], "Wren Ash");

    let patch =
        |body: Value| d.client().patch(d.https_url("/v1/auth/me")).bearer_auth(&access).json(&body).send();
    let bad = patch(json!({"name": "Wren\u{1b}[2J"})).await.unwrap();
    let bad = crate::harness::assert_problem(bad, 400, "invalid-request").await;
    assert_eq!(bad["errors"][0]["field"], "name", "{bad}");
    // A name longer than 128 characters is refused, not cut to one its
    // owner never typed; 128 (counted as characters, not bytes) is kept.
    let long = patch(json!({"name": "é".repeat(129)})).await.unwrap();
    let long = crate::harness::assert_problem(long, 400, "invalid-request").await;
    assert_eq!(long["errors"][0], json!({"field": "name", "message": "longer than 128 characters"}));
    let on_page =
        browser.post(&d, "/account/name", &[("name", &"w".repeat(200))]).await.text().await.unwrap();
    assert!(
        on_page.contains("Your name: longer than 128 characters") && on_page.contains("value=\"Wren Ash\""),
        "{on_page}"
    );
    let kept: Value = patch(json!({"name": "é".repeat(128)})).await.unwrap().json().await.unwrap();
    assert_eq!(kept["name"], "é".repeat(128));
    let renamed: Value = patch(json!({"name": "W. Ash"})).await.unwrap().json().await.unwrap();
    assert_eq!((&renamed["name"], &renamed["email"]), (&json!("W. Ash"), &json!(email)));
    // Only `null` removes the name: a body without `name`, or with a
    // misspelt key, is refused and the name stays.
    for (body, field) in [(json!({}), "name"), (json!({"nmae": "Wren"}), "nmae")] {
        let refused =
            crate::harness::assert_problem(patch(body).await.unwrap(), 400, "invalid-request").await;
        assert_eq!(refused["errors"][0]["field"], field, "{refused}");
    }
    let me: Value = d.get_auth("/v1/auth/me", &access).await.json().await.unwrap();
    assert_eq!(me["name"], "W. Ash", "a refused PATCH changes nothing");
    let cleared: Value = patch(json!({"name": null})).await.unwrap().json().await.unwrap();
    assert_eq!(cleared["name"], Value::Null);
    let me: Value = d.get_auth("/v1/auth/me", &access).await.json().await.unwrap();
    assert_eq!(me["name"], Value::Null, "the next call sees it");
}

async fn login_api(d: &Latchd, email: &str) {
    let res = d.post("/v1/auth/login", json!({"email": email, "password": PASSWORD})).await;
    assert_eq!(res.status(), 200, "the account is still there");
}

/// The account page names each signed-in device as a person does ("Safari
/// on iPhone"), not by its hundred-character User-Agent, so the row of a
/// stranger's session can be told from their own phone; an app's own
/// `device_name` is shown as the app gave it.
#[tokio::test]
async fn signed_in_devices_are_named_as_people_name_them() {
    let (d, smtp) = with_smtp("").await;
    let email = "ines@example.test";
    crate::flows::register_verified(&d, &smtp, email, 0).await;
    let phone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like \
                 Gecko) Version/17.4 Mobile/15E148 Safari/604.1";
    let body = json!({"email": email, "password": PASSWORD});
    let res = d.client().post(d.https_url("/v1/auth/login")).header("user-agent", phone).json(&body);
    assert_eq!(res.send().await.unwrap().status(), 200);
    let body = json!({"email": email, "password": PASSWORD, "device_name": "Kitchen tablet"});
    assert_eq!(d.post("/v1/auth/login", body).await.status(), 200);
    let page = signed_in(&d, email).await.get(&d, "/account").await.text().await.unwrap();
    assert!(page.contains("<td>Safari on iPhone</td>"), "{page}");
    assert!(page.contains("<td>Kitchen tablet</td>"), "{page}");
    assert!(!page.contains("Mozilla/5.0"), "{page}");
}
