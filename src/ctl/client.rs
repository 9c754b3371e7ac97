//! A minimal blocking HTTP/1.1 client for the admin socket: one request per
//! connection (`Connection: close`), JSON in and out.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach latchd at {path}: {source} (is it running? use --socket or --config)")]
    Connect { path: PathBuf, source: std::io::Error },
    #[error("permission denied on {path}: only root and {who} may use it")]
    Denied { path: PathBuf, who: String },
    #[error("talking to latchd: {0}")]
    Io(#[from] std::io::Error),
    #[error("latchd sent a malformed answer: {0}")]
    Malformed(String),
    /// A path with a byte a request line cannot hold (a latchctl bug: what
    /// users type is encoded).
    #[error("not a request path latchctl may send: {0:?}")]
    BadPath(String),
    /// An RFC 9457 problem answer; `detail` is shown to the user.
    /// `errors`: the fields it names, with what is wrong with each.
    #[error("{detail}")]
    Problem { status: u16, slug: String, detail: String, errors: Vec<(String, String)> },
}

impl ClientError {
    /// A refusal that names fields, each told by the name the operator
    /// typed (`--page-size` where the API says `page_size`): `typed` pairs
    /// an API field with its command-line name. Other errors, and fields
    /// not in `typed`, are left as they are.
    pub fn as_typed(self, typed: &[(&str, &str)]) -> ClientError {
        let ClientError::Problem { status, slug, mut detail, errors } = self else { return self };
        for (field, message) in &errors {
            if let Some((_, name)) = typed.iter().find(|(api, _)| api == field) {
                detail = detail.replacen(&format!("{field}: {message}"), &format!("{name}: {message}"), 1);
            }
        }
        ClientError::Problem { status, slug, detail, errors }
    }
}

pub struct AdminClient {
    pub socket: PathBuf,
}

impl AdminClient {
    pub fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.request("GET", path, None)
    }

    pub fn post(&self, path: &str, body: Option<&Value>) -> Result<Value, ClientError> {
        self.request("POST", path, body)
    }

    pub fn delete(&self, path: &str) -> Result<Value, ClientError> {
        self.request("DELETE", path, None)
    }

    pub fn request(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, ClientError> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let sock = self.send(method, path, &body)?;
        Self::answer(sock, &self.socket)
    }

    /// POSTs `path` and waits for the answer however long the daemon works
    /// on it (taking a backup of a large database takes minutes).
    pub fn post_and_wait(&self, path: &str) -> Result<Value, ClientError> {
        let sock = self.send("POST", path, "")?;
        sock.set_read_timeout(None)?;
        Self::answer(sock, &self.socket)
    }

    fn answer(mut sock: UnixStream, socket: &Path) -> Result<Value, ClientError> {
        let mut raw = Vec::new();
        sock.read_to_end(&mut raw)?;
        parse_response(&raw, socket)
    }

    /// GETs `path` and copies a successful body to `out` as it arrives
    /// (exports can be larger than memory); an error answer is a `Problem`,
    /// a body cut short an `Io` error.
    pub fn download(&self, path: &str, out: &mut dyn Write) -> Result<(), ClientError> {
        let mut sock = BufReader::new(self.send("GET", path, "")?);
        let mut head = String::new();
        loop {
            let before = head.len();
            if sock.read_line(&mut head)? == 0 || head[before..].trim_end().is_empty() {
                break;
            }
        }
        let status = head.split(' ').nth(1).and_then(|s| s.parse::<u16>().ok()).unwrap_or(0);
        if status != 200 {
            let mut raw = head.into_bytes();
            sock.read_to_end(&mut raw)?;
            parse_response(&raw, &self.socket)?;
            return Err(ClientError::Malformed(format!("status {status}")));
        }
        if head.lines().any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding: chunked")) {
            copy_chunks(&mut sock, out)
        } else {
            std::io::copy(&mut sock, out)?;
            Ok(())
        }
    }

    fn send(&self, method: &str, path: &str, body: &str) -> Result<UnixStream, ClientError> {
        // What a user typed goes into paths `encode`d; this is the backstop:
        // a space or line break would end the request line early.
        if !path.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ClientError::BadPath(path.to_string()));
        }
        let mut sock = UnixStream::connect(&self.socket).map_err(|source| {
            let path = self.socket.clone();
            match source.kind() {
                std::io::ErrorKind::PermissionDenied => {
                    ClientError::Denied { who: group_members(&path), path }
                }
                _ => ClientError::Connect { path, source },
            }
        })?;
        sock.set_read_timeout(Some(Duration::from_secs(60)))?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: latch-admin\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        sock.write_all(head.as_bytes())?;
        sock.write_all(body.as_bytes())?;
        Ok(sock)
    }
}

/// Copies a chunked body to `out`; a body that ends before its last
/// (empty) chunk was cut short by the server.
fn copy_chunks(sock: &mut impl BufRead, out: &mut dyn Write) -> Result<(), ClientError> {
    let cut = || {
        ClientError::Io(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the answer was cut short"))
    };
    loop {
        let mut size = String::new();
        if sock.read_line(&mut size)? == 0 {
            return Err(cut());
        }
        let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
            .map_err(|_| ClientError::Malformed(format!("bad chunk size {size:?}")))?;
        let copied = std::io::copy(&mut sock.by_ref().take(n as u64), out)?;
        let mut crlf = String::new();
        if copied < n as u64 || sock.read_line(&mut crlf)? == 0 {
            return Err(cut());
        }
        if n == 0 {
            return Ok(());
        }
    }
}

/// Percent-encodes a query value.
pub fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn parse_response(raw: &[u8], socket: &Path) -> Result<Value, ClientError> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| ClientError::Malformed(format!("no header end from {}", socket.display())))?;
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ClientError::Malformed("no status line".into()))?;
    let chunked = head.lines().any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding: chunked"));
    let body = if chunked { dechunk(body) } else { body.to_string() };
    let value: Value = if body.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&body).map_err(|e| ClientError::Malformed(e.to_string()))?
    };
    if status >= 400 {
        return Err(ClientError::Problem {
            status,
            slug: value["type"].as_str().unwrap_or("").rsplit(':').next().unwrap_or("").to_string(),
            // actix-http answers a head too big to read with a bare 400.
            detail: value["detail"].as_str().map_or_else(|| refused_without_reason(status), str::to_string),
            errors: field_errors(&value),
        });
    }
    Ok(value)
}

/// A problem's `errors`, as (field, message).
fn field_errors(problem: &Value) -> Vec<(String, String)> {
    let each = problem["errors"].as_array().into_iter().flatten();
    let told = |e: &Value| Some((e["field"].as_str()?.to_string(), e["message"].as_str()?.to_string()));
    each.filter_map(told).collect()
}

fn refused_without_reason(status: u16) -> String {
    match status {
        400 => "latchd refused the request as malformed (400; an argument far too long?)".to_string(),
        _ => format!("latchd answered {status} without saying why"),
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Who may use the socket besides root: the members of the group owning
/// it (the `[admin].group` latchd gave it), named when it can be read.
fn group_members(path: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(path) else { return "members of the group that owns it".into() };
    let gid = nix::unistd::Gid::from_raw(meta.gid());
    match nix::unistd::Group::from_gid(gid) {
        Ok(Some(g)) => format!("members of group {}", g.name),
        _ => format!("members of group {gid}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_become_errors_with_their_detail() {
        let raw = b"HTTP/1.1 422 Unprocessable Entity\r\ncontent-type: application/problem+json\r\n\r\n{\"type\":\"urn:latch:problem:config-invalid\",\"detail\":\"bad\"}";
        match parse_response(raw, Path::new("s")) {
            Err(ClientError::Problem { status: 422, slug, detail, .. }) => {
                assert_eq!((slug.as_str(), detail.as_str()), ("config-invalid", "bad"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_refusal_names_fields_as_they_were_typed() {
        let raw = "HTTP/1.1 400 Bad Request\r\n\r\n{\"type\":\"urn:latch:problem:invalid-request\",\
            \"detail\":\"page: must be 1 or more; page_size: must be between 1 and 500\",\"errors\":[\
            {\"field\":\"page\",\"message\":\"must be 1 or more\"},\
            {\"field\":\"page_size\",\"message\":\"must be between 1 and 500\"}]}";
        let refused = parse_response(raw.as_bytes(), Path::new("s")).unwrap_err();
        let told = refused.as_typed(&[("page_size", "--page-size")]).to_string();
        assert_eq!(told, "page: must be 1 or more; --page-size: must be between 1 and 500");
        let other = ClientError::Malformed("x".into()).as_typed(&[("x", "--x")]).to_string();
        assert_eq!(other, "latchd sent a malformed answer: x");
    }

    #[test]
    fn chunked_bodies_are_joined() {
        let raw =
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\n{\"a\":\r\n2\r\n1}\r\n0\r\n\r\n";
        assert_eq!(parse_response(raw, Path::new("s")).unwrap(), serde_json::json!({"a": 1}));
    }
}
