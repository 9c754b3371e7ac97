//! `GET /v1/admin/audit-logs`: filtered pages of the audit log as JSON
//! (newest first), or the whole filtered log streamed in chain order as
//! JSON lines or CSV. A stream reads the database a bounded step at a time
//! and is only polled as fast as the client takes it, so exporting a
//! million rows holds a few thousand in memory, never the table.

use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::stream::{self, Stream};
use rusqlite::{Connection, params};
use serde::Deserialize;

use super::errors::{paging, refusal, refuse};
use super::{AdminError, Deps};
use crate::audit::{self, AuditEntry, AuditRow, Filter};
use crate::auth::{Principal, normalize_email};
use crate::http::{ApiError, ApiQuery, Page, head_only};
use crate::store::{Store, StoreError};

/// Rows per database read while streaming.
const EXPORT_STEP: i64 = 2_000;
const CSV_COLUMNS: [&str; 11] = [
    "id",
    "at",
    "action",
    "actor_id",
    "subject_id",
    "ip",
    "user_agent",
    "request_id",
    "details",
    "prev_hash",
    "hash",
];

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    action: Option<String>,
    /// A user id, or an email address: the ids of every account that had
    /// it, live, deleted or moved since (404 when none did).
    actor_id: Option<String>,
    /// As `actor_id`.
    subject_id: Option<String>,
    ip: Option<String>,
    /// From this time on: RFC 3339, a date (from its 00:00 UTC) or Unix
    /// seconds.
    since: Option<String>,
    /// Up to this time, as `since`.
    until: Option<String>,
    #[param(minimum = 1)]
    page: Option<i64>,
    /// 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    page_size: Option<i64>,
    /// json (pages, newest first), or jsonl or csv (every matching row,
    /// oldest first, streamed).
    #[param(pattern = "^(json|jsonl|csv)$")]
    format: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Jsonl,
    Csv,
}

/// `since`/`until`: RFC 3339, a date alone (its 00:00 UTC, as latchctl
/// reads one) or Unix seconds.
fn instant(field: &'static str, value: &Option<String>) -> Result<Option<i64>, AdminError> {
    let Some(v) = value.as_deref().map(str::trim).filter(|v| !v.is_empty()) else { return Ok(None) };
    if let Ok(secs) = v.parse::<i64>() {
        return Ok(Some(secs));
    }
    if let Ok(at) = time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339) {
        return Ok(Some(at.unix_timestamp()));
    }
    time::Date::parse(v, time::macros::format_description!("[year]-[month]-[day]"))
        .map(|day| Some(day.midnight().assume_utc().unix_timestamp()))
        .map_err(|_| {
            AdminError::invalid(field, "expected an RFC 3339 time, a date like 2026-12-02, or Unix seconds")
        })
}

/// An address in the form rows keep it (`2001:db8::1`, an IPv4-mapped one
/// as IPv4), so one copied from another tool's log in another spelling
/// (`2001:DB8:0::1`, `::ffff:10.0.0.1`) still finds its rows. Anything else
/// (`unix`) is matched as given.
fn address_as_stored(ip: &str) -> String {
    ip.trim().parse::<std::net::IpAddr>().map_or_else(|_| ip.to_string(), |a| a.to_canonical().to_string())
}

/// What a list call asks for, every value checked.
struct Asked {
    filter: Filter,
    page: i64,
    size: i64,
    /// `None`: pages of JSON.
    export: Option<Format>,
}

/// Every refusal among a list call's values is told at once.
fn asked(q: &ListQuery) -> Result<Asked, AdminError> {
    let given = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
    let (since, until) = (instant("since", &q.since), instant("until", &q.until));
    // Checked for every format: an export ignores them, but a bad value is
    // still a bad request.
    let ((page, size), [bad_page, bad_size]) = paging(q.page, q.page_size);
    let format = match q.format.as_deref().unwrap_or("json") {
        "json" => Ok(None),
        "jsonl" => Ok(Some(Format::Jsonl)),
        "csv" => Ok(Some(Format::Csv)),
        _ => Err(AdminError::invalid("format", "must be json, jsonl or csv")),
    };
    match (since, until, bad_page, bad_size, format) {
        (Ok(since), Ok(until), None, None, Ok(export)) => {
            let filter = Filter {
                action: given(&q.action),
                actor_id: given(&q.actor_id).map(|id| vec![id]),
                subject_id: given(&q.subject_id).map(|id| vec![id]),
                ip: given(&q.ip).map(|ip| address_as_stored(&ip)),
                since,
                until,
            };
            Ok(Asked { filter, page, size, export })
        }
        (since, until, bad_page, bad_size, format) => {
            Err(AdminError::of_fields([since.err(), until.err(), bad_page, bad_size, format.err()]))
        }
    }
}

#[utoipa::path(get, path = "/v1/admin/audit-logs", tag = "admin", security(("bearer" = [])), params(ListQuery),
    responses((status = 200, description = "A page of entries, or the export",
        content((Page<AuditEntry> = "application/json"), (String = "application/x-ndjson"), (String = "text/csv")))))]
pub async fn list(
    d: web::Data<Deps>,
    who: Principal,
    q: ApiQuery<ListQuery>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    who.require_admin()?;
    let Asked { mut filter, page, size, export } = asked(&q)?;
    if [&filter.actor_id, &filter.subject_id].iter().any(|f| f.iter().flatten().any(|v| v.contains('@'))) {
        filter = d.store.read(move |c| by_address(c, filter)).await.map_err(refusal)?;
    }
    if let Some(format) = export {
        // HEAD gets the export's head without reading the log for a body
        // actix would drop.
        let store = (!head_only(&req)).then(|| d.store.clone());
        return Ok(streamed(store, filter, format));
    }
    let offset = (page - 1).saturating_mul(size);
    let (rows, total) = d.store.read(move |c| audit::read::page(c, &filter, offset, size)).await?;
    let items: Vec<AuditEntry> = rows.into_iter().map(AuditEntry::from).collect();
    Ok(HttpResponse::Ok().json(Page { items, page, page_size: size, total }))
}

/// The filter with each actor or subject given as an email address in
/// place of the ids of the accounts that had it: the live one, every
/// deleted one (found by the address's tag in its deletion row) and every
/// one that moved away from it (the rows of an address change name both
/// addresses). An address no account ever had is refused, so a mistyped
/// one says so instead of exporting nothing.
fn by_address(c: &Connection, mut filter: Filter) -> Result<Filter, StoreError> {
    for ids in [&mut filter.actor_id, &mut filter.subject_id].into_iter().flatten() {
        let Some(email) = ids.first().filter(|v| v.contains('@')).map(|v| normalize_email(v)) else {
            continue;
        };
        let mut stmt = c.prepare_cached(
            "SELECT id FROM users WHERE email_norm = ?1
             UNION SELECT subject_id FROM audit_log
              WHERE action IN (SELECT value FROM json_each(?2)) AND json_extract(details, '$.email_tag') = ?3
                AND subject_id IS NOT NULL
             UNION SELECT subject_id FROM audit_log
              WHERE action = 'email_changed' AND lower(trim(json_extract(details, '$.from'))) = ?1
                AND subject_id IS NOT NULL
             UNION SELECT subject_id FROM audit_log
              WHERE action = 'user_updated' AND lower(trim(json_extract(details, '$.email.from'))) = ?1
                AND subject_id IS NOT NULL",
        )?;
        let deletions = serde_json::Value::from(audit::DELETIONS.to_vec()).to_string();
        let found = stmt.query_map(params![email, deletions, audit::email_tag(&email)?], |r| r.get(0))?;
        *ids = found.collect::<Result<Vec<String>, _>>()?;
        if ids.is_empty() {
            return Err(refuse(AdminError::NotFound("account, live or deleted, with this address")));
        }
    }
    Ok(filter)
}

/// The export as a stream of chunks; without a store (HEAD), an empty one.
fn streamed(store: Option<Store>, filter: Filter, format: Format) -> HttpResponse {
    let mut res = HttpResponse::Ok();
    match format {
        Format::Jsonl => res.content_type("application/x-ndjson"),
        Format::Csv => res
            .content_type("text/csv; charset=utf-8; header=present")
            .insert_header(("content-disposition", "attachment; filename=\"audit-log.csv\"")),
    };
    match store {
        Some(store) => res.streaming(export(store, filter, format)),
        None => res.streaming(stream::empty::<Result<Bytes, std::io::Error>>()),
    }
}

struct Export {
    store: Store,
    filter: Filter,
    format: Format,
    after: i64,
    started: bool,
    done: bool,
}

fn export(store: Store, filter: Filter, format: Format) -> impl Stream<Item = Result<Bytes, std::io::Error>> {
    let state = Export { store, filter, format, after: 0, started: false, done: false };
    stream::unfold(state, |mut s| async move {
        if s.done {
            return None;
        }
        let (filter, after) = (s.filter.clone(), s.after);
        let rows = match s.store.read(move |c| audit::read::after(c, &filter, after, EXPORT_STEP)).await {
            Ok(rows) => rows,
            Err(e) => {
                // The status line is long gone: ending the stream without
                // its last chunk is how the client learns it is cut short.
                tracing::warn!(error = %e, "audit export stopped");
                s.done = true;
                return Some((Err(std::io::Error::other(e)), s));
            }
        };
        s.done = (rows.len() as i64) < EXPORT_STEP;
        s.after = rows.last().map_or(s.after, |r| r.id);
        let header = !s.started && s.format == Format::Csv;
        s.started = true;
        let chunk = match s.format {
            Format::Jsonl => jsonl(rows),
            Format::Csv => csv(rows, header),
        };
        Some((Ok(Bytes::from(chunk)), s))
    })
}

fn jsonl(rows: Vec<AuditRow>) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows.len() * 400);
    for row in rows {
        if serde_json::to_writer(&mut out, &AuditEntry::from(row)).is_ok() {
            out.push(b'\n');
        }
    }
    out
}

/// Security: a cell a spreadsheet would run as a formula (a user agent
/// like `=HYPERLINK(…)`) is prefixed with `'`, as OWASP advises for CSV.
fn cell(value: &str) -> std::borrow::Cow<'_, str> {
    if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}").into()
    } else {
        value.into()
    }
}

fn csv(rows: Vec<AuditRow>, header: bool) -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::with_capacity(rows.len() * 400));
    if header {
        let _ = w.write_record(CSV_COLUMNS);
    }
    for r in rows {
        let (id, at) = (r.id.to_string(), crate::clock::rfc3339(r.at));
        let opt = |v: &Option<String>| v.clone().unwrap_or_default();
        let record = [
            id,
            at,
            r.action,
            opt(&r.actor_id),
            opt(&r.subject_id),
            opt(&r.ip),
            opt(&r.user_agent),
            opt(&r.request_id),
            r.details,
            opt(&r.prev_hash),
            opt(&r.hash),
        ];
        let _ = w.write_record(record.iter().map(|v| cell(v).into_owned()));
    }
    w.into_inner().unwrap_or_default()
}
