//! Malformed input: a seeded run of requests to every route the daemon's
//! OpenAPI document names — bodies of the wrong shape, type, encoding or
//! size, odd path and query values, query parameters no route takes, wrong
//! content types, with and without credentials, over HTTP/1.1 and HTTP/2 —
//! gets no 5xx and no stalled answer, every API error is an RFC 9457
//! problem whose `status` is the answer's, the log holds no ERROR line,
//! and nothing stored is harmed: the database's integrity check and the
//! audit chain pass, and a bystander's account row is unchanged and
//! their password and refresh token still work. Prints (and writes to
//! `target/reliability/malformed.md`) the requests, their statuses and the
//! seed; `LATCH_FUZZ_SEED` sends a run's requests again (four callers at
//! once, so not in the same order), `LATCH_FUZZ_REQUESTS` sizes it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::admin_api::ctl;
use crate::flows::{PASSWORD, login};
use crate::harness::{Latchd, base_config, write_config};
use crate::reliability::{Dice, Table};

/// Cheap hashes (the run is about parsing, not argon2); loopback
/// allowlisted, so a fuzzed IP block cannot shut the run out.
const CONFIG: &str = "\n[accounts]\nrequire_verified_email = false\n\
    [passwords]\nargon2 = { memory_kib = 1024, iterations = 1, parallelism = 1 }\n\
    [defense]\nallowlist = [\"127.0.0.0/8\", \"::1/128\"]\n\
    ip_block = { failures = 100000, window = \"5m\", duration = \"1h\" }\n\
    account_lock = { failures = 100000, base_delay = \"2s\", max_delay = \"15m\", max_failures_per_hour = 100000 }\n\
    [defense.anomaly]\nbot = { requests = 1000000, window = \"1m\", action = \"flag\" }\n";
const BYSTANDER: &str = "bystander@example.test";
const FUZZER: &str = "fuzzer@example.test";

/// Strings that have broken parsers, validators, SQL or terminals before.
const NASTY: &[&str] = &[
    "",
    " ",
    "\u{0}",
    "\u{1b}[31m",
    "\u{202e}evil",
    "é",
    "e\u{301}",
    "😀",
    "<script>",
    "' OR 1=1--",
    "%00",
    "../../etc/passwd",
    "a@b",
    "@",
    "x@",
    "-1",
    "0",
    "99999999999999999999999",
    "1e309",
    "NaN",
    "2026-13-45T00:00:00Z",
    "1970-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "0001-01-01T00:00:00+25:00",
    "null",
    "\\",
    "\n",
    "1h",
    "0s",
    "-5m",
    "999999999999d",
    "0.0.0.0/0",
    "127.0.0.1",
    "::/0",
    "10.0.0.0/33",
    "admin",
    "introspect",
    "active",
    "disabled",
    "totp",
    FUZZER,
    PASSWORD,
    "123456",
    "AAAA-BBBB-CCCC",
];

/// Path segments for `{id}`, `{name}`, `{kid}`: junk (`Callers` adds the
/// admin's and the fuzzing account's ids, so some calls reach real rows).
const SEGMENTS: &[&str] =
    &["x", "0", "%2e%2e", "%ff", "%00", "admin", "01a2450a-18df-759d-b617-9ac6aaab19e1"];

/// Bodies that are not the JSON they claim to be.
fn raw_body(dice: &mut Dice) -> Vec<u8> {
    match dice.below(9) {
        0 => b"{".to_vec(),
        1 => b"\xff\xfe{}".to_vec(),
        2 => "[".repeat(5000).into_bytes(),
        3 => b"{\"email\":\"a@b.c\",\"email\":\"d@e.f\"}".to_vec(),
        4 => b"1e99999".to_vec(),
        5 => format!("{{\"password\":\"{}\"}}", "a".repeat(70 * 1024)).into_bytes(),
        6 => b"{\"email\": \"\\ud800\"}".to_vec(),
        7 => Vec::new(),
        _ => b"email=a%40b.c&password=x".to_vec(),
    }
}

fn text(dice: &mut Dice) -> String {
    match dice.below(10) {
        0 => "A".repeat(1 + dice.below(3000) as usize),
        1 => (0..dice.below(40)).filter_map(|_| char::from_u32(1 + dice.below(0x2FFFF) as u32)).collect(),
        _ => dice.pick(NASTY).to_string(),
    }
}

/// A value of the type the schema asks (mostly) or of any other.
fn value(dice: &mut Dice, schema: &Value, depth: u32) -> Value {
    let kind = schema["type"].as_str().or_else(|| schema["type"][0].as_str()).unwrap_or("");
    let kind = if dice.chance(60) {
        kind
    } else {
        *dice.pick(&["string", "number", "bool", "null", "array", "object"])
    };
    match kind {
        "string" => Value::String(text(dice)),
        "integer" | "number" => dice
            .pick(&[
                json!(0),
                json!(-1),
                json!(1),
                json!(2_147_483_648_i64),
                json!(u64::MAX),
                json!(1e308),
                json!(0.5),
            ])
            .clone(),
        "boolean" | "bool" => Value::Bool(dice.chance(50)),
        "array" if depth < 3 => {
            Value::Array((0..dice.below(4)).map(|_| value(dice, &schema["items"], depth + 1)).collect())
        }
        "object" if depth < 3 => json!({ text(dice): value(dice, &Value::Null, depth + 1) }),
        _ => Value::Null,
    }
}

/// One route as the OpenAPI document describes it.
struct Route {
    method: String,
    path: String,
    query: Vec<String>,
    /// The request body's media type and its schema's properties.
    body: Option<(String, Map<String, Value>)>,
}

fn routes(doc: &Value) -> Vec<Route> {
    let mut routes = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let query = op["parameters"].as_array().into_iter().flatten();
            let query = query.filter(|p| p["in"] == "query").map(|p| p["name"].as_str().unwrap().to_string());
            let body =
                op["requestBody"]["content"].as_object().and_then(|c| c.iter().next()).map(|(media, c)| {
                    let name = c["schema"]["$ref"].as_str().unwrap_or("").rsplit('/').next().unwrap_or("");
                    let props = doc["components"]["schemas"][name]["properties"].as_object().cloned();
                    (media.clone(), props.unwrap_or_default())
                });
            routes.push(Route {
                method: method.to_uppercase(),
                path: path.clone(),
                query: query.collect(),
                body,
            });
        }
    }
    routes
}

/// Every part of one request but the daemon's address.
struct Fuzzed {
    method: reqwest::Method,
    path: String,
    query: Vec<(String, String)>,
    content_type: Option<String>,
    body: Vec<u8>,
    bearer: Option<String>,
}

fn fuzz(dice: &mut Dice, route: &Route, callers: &Callers) -> Fuzzed {
    let mut path = Vec::new();
    for part in route.path.split('/') {
        path.push(if part.starts_with('{') {
            dice.pick(&callers.segments).clone()
        } else {
            part.to_string()
        });
    }
    let mut query = Vec::new();
    for name in &route.query {
        if dice.chance(50) {
            query.push((name.clone(), text(dice)));
        }
    }
    // Now and then a parameter no route takes (admin lists refuse one).
    if dice.chance(5) {
        query.push((dice.pick(&["stauts", "utm_source", "page[size]", "\u{1b}[2J"]).to_string(), text(dice)));
    }
    let (mut content_type, mut body) = (None, Vec::new());
    if let Some((media, props)) = &route.body {
        content_type = Some(media.clone());
        let mut fields = Map::new();
        for (name, schema) in props {
            if dice.chance(80) {
                fields.insert(name.clone(), value(dice, schema, 0));
            }
        }
        body = match dice.below(10) {
            0 => raw_body(dice),
            1 => serde_json::to_vec(&value(dice, &Value::Null, 0)).unwrap(),
            _ if media.contains("form") => {
                let pairs = fields.iter().map(|(k, v)| format!("{k}={}", urlencode(&v.to_string())));
                pairs.collect::<Vec<_>>().join("&").into_bytes()
            }
            _ => serde_json::to_vec(&fields).unwrap(),
        };
        if dice.chance(10) {
            content_type = dice
                .pick(&[None, Some("text/plain"), Some("application/json; charset=utf-16")])
                .map(String::from);
        }
    }
    let bearer = dice.pick(&callers.bearers).clone();
    // Now and then a method the route does not take.
    let method = if dice.chance(5) {
        *dice.pick(&["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
    } else {
        &route.method
    };
    Fuzzed { method: method.parse().unwrap(), path: path.join("/"), query, content_type, body, bearer }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// What is wrong with an answer, if anything.
async fn fault(res: reqwest::Response, api: bool) -> Option<String> {
    let status = res.status().as_u16();
    let media = res.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let body = res.bytes().await.unwrap_or_default();
    let shown = || String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
    if status >= 500 {
        return Some(format!("{status}: {}", shown()));
    }
    if !api || status < 400 {
        return None;
    }
    let problem: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let typed = problem["type"].as_str().is_some_and(|t| t.starts_with("urn:latch:problem:"));
    let matches = problem["status"] == status;
    let ok = media.starts_with("application/problem+json") && typed && matches;
    (!ok).then(|| format!("{status} not a problem document ({media}): {}", shown()))
}

/// Who the requests come as, and the path segments they name.
struct Callers {
    bearers: Vec<Option<String>>,
    segments: Vec<String>,
}

impl Callers {
    /// Signs the admin and the fuzzing account in again (the run may have
    /// signed them out, changed the fuzzer's password or deleted it).
    async fn signed_in(d: &Latchd, api_key: &str) -> Callers {
        let mut segments: Vec<String> = SEGMENTS.iter().map(|s| s.to_string()).collect();
        let mut bearers = vec![None, Some(api_key.to_string()), Some("garbage".into())];
        for email in ["root@example.test", FUZZER] {
            let res = d.post("/v1/auth/login", json!({"email": email, "password": PASSWORD})).await;
            let Ok(tokens) = res.json::<Value>().await else { continue };
            let text = |field: &str| tokens[field].as_str().map(String::from);
            bearers.extend([text("access_token"), text("refresh_token")].into_iter().flatten().map(Some));
            segments.extend(
                [text("session_id"), tokens["user"]["id"].as_str().map(String::from)].into_iter().flatten(),
            );
        }
        Callers { bearers, segments }
    }
}

/// Adds a verified account and signs it in: its login answer.
async fn account(d: &Latchd, email: &str, roles: &[&str]) -> Value {
    let mut args = vec!["users", "add", email, "--password-stdin", "--verified"];
    roles.iter().for_each(|r| args.extend(["--role", r]));
    let out = ctl(d, &args, PASSWORD);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    login(d, email, PASSWORD).await
}

/// The bystander's row as text, every column.
fn bystander_row(d: &Latchd) -> String {
    let db = d.db();
    let mut stmt = db.prepare("SELECT * FROM users WHERE email = ?1").unwrap();
    let columns = stmt.column_count();
    stmt.query_row([BYSTANDER], |r| {
        Ok((0..columns).map(|i| format!("{:?}", r.get_ref(i).unwrap())).collect::<Vec<_>>().join("|"))
    })
    .unwrap()
}

/// Checks that nothing the run did harmed what was stored before it.
async fn harm_done(d: &Latchd, row_before: &str, bystander: &Value) -> Vec<String> {
    let mut harm = Vec::new();
    if d.get("/health").await.status() != 200 {
        harm.push("the daemon is not healthy".into());
    }
    let log = d.log();
    let errors = log.lines().filter(|l| l.contains("\"level\":\"ERROR\"")).take(5);
    harm.extend(errors.map(|l| format!("logged: {}", l.chars().take(400).collect::<String>())));
    let integrity: String = d.db().query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    if integrity != "ok" {
        harm.push(format!("integrity_check: {integrity}"));
    }
    let verify = ctl(d, &["audit", "verify"], "");
    if !verify.status.success() {
        harm.push(format!("audit verify: {}", String::from_utf8_lossy(&verify.stdout)));
    }
    if bystander_row(d) != row_before {
        harm.push(format!("the bystander's row changed: {row_before} → {}", bystander_row(d)));
    }
    let refresh = d.post("/v1/auth/refresh", json!({"refresh_token": bystander["refresh_token"]})).await;
    if refresh.status() != 200 {
        harm.push(format!("the bystander's refresh token: {}", refresh.status()));
    }
    let again = d.post("/v1/auth/login", json!({"email": BYSTANDER, "password": PASSWORD})).await;
    if again.status() != 200 {
        harm.push(format!("the bystander's login: {}", again.status()));
    }
    harm
}

/// What the answers were: counts by status, and each one not as promised.
#[derive(Default)]
struct Tally {
    statuses: BTreeMap<u16, u64>,
    /// Answers by HTTP version.
    versions: BTreeMap<String, u64>,
    faults: Vec<String>,
}

impl Fuzzed {
    fn request(&self, client: &reqwest::Client, d: &Latchd) -> reqwest::RequestBuilder {
        let url = d.https_url(&self.path);
        let mut req = client.request(self.method.clone(), url).query(&self.query).body(self.body.clone());
        if let Some(media) = &self.content_type {
            req = req.header("content-type", media);
        }
        if let Some(b) = &self.bearer {
            req = req.bearer_auth(b);
        }
        req
    }

    fn describe(&self) -> String {
        let body = String::from_utf8_lossy(&self.body[..self.body.len().min(200)]);
        format!("{} {} {:?} body {body:?}", self.method, self.path, self.query)
    }
}

/// Callers sending at once, so the requests also race each other (a user
/// deleted while their session is used, a role removed while granted).
const WORKERS: u64 = 4;

/// Sends `requests` fuzzed requests from `WORKERS` callers at once, each
/// with its own dice from `seed`, half of them over HTTP/2 (its framing
/// and its early refusals take other paths through actix).
async fn run(d: &Latchd, seed: u64, routes: &[Route], api_key: &str, requests: u64) -> Tally {
    let workers = (0..WORKERS).map(|i| {
        let dice = Dice::seeded(Some(seed.wrapping_add(2 * i)));
        worker(d, client(d, i % 2 == 1), dice, routes, api_key, requests / WORKERS)
    });
    let mut all = Tally::default();
    for tally in futures_util::future::join_all(workers).await {
        tally.statuses.into_iter().for_each(|(s, n)| *all.statuses.entry(s).or_default() += n);
        tally.versions.into_iter().for_each(|(v, n)| *all.versions.entry(v).or_default() += n);
        all.faults.extend(tally.faults);
    }
    all
}

/// An HTTPS client of `d`, speaking HTTP/2 (by ALPN) or HTTP/1.1.
fn client(d: &Latchd, http2: bool) -> reqwest::Client {
    let tls = crate::harness::client_tls(&d.cert_path(), &[&rustls::version::TLS13, &rustls::version::TLS12]);
    let mut tls = (*tls).clone();
    let builder = reqwest::Client::builder().timeout(Duration::from_secs(10));
    let builder = if http2 {
        tls.alpn_protocols = vec![b"h2".to_vec()];
        builder.http2_prior_knowledge()
    } else {
        builder
    };
    builder.use_preconfigured_tls(tls).build().unwrap()
}

/// Sends `requests` fuzzed requests one after another, signing the
/// callers in again every 250.
async fn worker(
    d: &Latchd,
    client: reqwest::Client,
    mut dice: Dice,
    routes: &[Route],
    api_key: &str,
    requests: u64,
) -> Tally {
    let (mut tally, mut callers) = (Tally::default(), Callers::signed_in(d, api_key).await);
    for n in 1..=requests {
        if n % 250 == 0 {
            callers = Callers::signed_in(d, api_key).await;
        }
        let route = dice.pick(routes);
        let f = fuzz(&mut dice, route, &callers);
        let api = f.path.starts_with("/v1/") || f.path.starts_with("/.well-known/");
        match f.request(&client, d).send().await {
            Ok(res) => {
                *tally.versions.entry(format!("{:?}", res.version())).or_default() += 1;
                *tally.statuses.entry(res.status().as_u16()).or_default() += 1;
                if let Some(wrong) = fault(res, api).await {
                    tally.faults.push(format!("{}: {wrong}", f.describe()));
                }
            }
            Err(e) => tally.faults.push(format!("{}: no answer: {e}", f.describe())),
        }
    }
    tally
}

fn publish(tally: &Tally, routes: usize, requests: u64, harm: usize, seed: u64) {
    let class = |lo: u16, hi: u16| tally.statuses.range(lo..hi).map(|(_, n)| n).sum::<u64>().to_string();
    let mut table =
        Table::new("Malformed input (every route of the OpenAPI document)", &["measure", "value"]);
    table.row(&["routes", &routes.to_string()]);
    table.row(&["requests", &requests.to_string()]);
    let classes = [class(200, 300), class(300, 400), class(400, 500), class(500, 600)];
    table.row(&["2xx / 3xx / 4xx / 5xx", &classes.join(" / ")]);
    let each: Vec<String> = tally.statuses.iter().map(|(s, n)| format!("{s}×{n}")).collect();
    table.row(&["statuses", &each.join(" ")]);
    let versions: Vec<String> = tally.versions.iter().map(|(v, n)| format!("{v}×{n}")).collect();
    table.row(&["answered over", &versions.join(" ")]);
    table.row(&["answers not as promised", &tally.faults.len().to_string()]);
    table.row(&["harm to what was stored", &harm.to_string()]);
    table.row(&["seed", &seed.to_string()]);
    table.publish("malformed");
}

#[tokio::test]
async fn malformed_requests_to_every_route_get_problems_and_harm_nothing() {
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let seed = Dice::seeded(env("LATCH_FUZZ_SEED")).seed();
    let requests = env("LATCH_FUZZ_REQUESTS").unwrap_or(8000);
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &base_config(CONFIG));
    let d = Latchd::start_in(dir).await;
    account(&d, "root@example.test", &["admin"]).await;
    account(&d, FUZZER, &[]).await;
    let bystander = account(&d, BYSTANDER, &[]).await;
    let row_before = bystander_row(&d);
    let key = ctl(&d, &["--json", "api-keys", "create", "--name", "fuzz", "--scope", "admin"], "");
    let key = serde_json::from_slice::<Value>(&key.stdout).unwrap()["key"].as_str().unwrap().to_string();
    let doc: Value = d.get("/v1/openapi.json").await.json().await.unwrap();
    let routes = routes(&doc);

    let tally = run(&d, seed, &routes, &key, requests).await;
    let harm = harm_done(&d, &row_before, &bystander).await;
    publish(&tally, routes.len(), requests, harm.len(), seed);
    let faults = &tally.faults;
    let shown = &faults[..faults.len().min(15)];
    assert!(faults.is_empty(), "seed {seed}: {} answers not as promised: {shown:#?}", faults.len());
    assert!(harm.is_empty(), "seed {seed}: {harm:#?}");
}
