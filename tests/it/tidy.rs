//! Code-shape checks from STYLE.md, run as tests so they cannot drift:
//! file size, module headers, stubs, and an ARCHITECTURE.md that names every
//! source directory.

use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const MAX_LINES: usize = 600;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn all_rust_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in ["src", "tests", "benches"] {
        rust_files(&Path::new(ROOT).join(dir), &mut files);
    }
    files
}

#[test]
fn no_file_is_oversized() {
    let long: Vec<String> = all_rust_files()
        .into_iter()
        .filter_map(|p| {
            let n = std::fs::read_to_string(&p).ok()?.lines().count();
            (n > MAX_LINES).then(|| format!("{} ({n} lines)", p.display()))
        })
        .collect();
    assert!(long.is_empty(), "split these by feature or step: {long:#?}");
}

#[test]
fn every_file_opens_with_its_purpose_and_has_no_stubs() {
    for p in all_rust_files() {
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.starts_with("//!"), "{} must open with a //! line on its purpose", p.display());
        if p.starts_with(Path::new(ROOT).join("src")) {
            for stub in ["todo!(", "unimplemented!("] {
                assert!(!text.contains(stub), "{} contains {stub}", p.display());
            }
        }
    }
}

#[test]
fn architecture_names_every_source_directory() {
    let arch = std::fs::read_to_string(Path::new(ROOT).join("ARCHITECTURE.md")).unwrap();
    let src = Path::new(ROOT).join("src");
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(&src).unwrap().flatten() {
        if entry.path().is_dir() {
            let name = format!("src/{}/", entry.file_name().to_string_lossy());
            if !arch.contains(&name) {
                missing.push(name);
            }
        }
    }
    assert!(missing.is_empty(), "ARCHITECTURE.md does not describe {missing:?}");
}

/// Which top-level modules each `src/` module may import (`crate::x`).
/// Layers import only layers; features import layers and never each
/// other; the wiring (`daemon`, `ctl`) may use anything.
const LAYERS: &[&str] = &[
    "clock",
    "pause",
    "config",
    "state_dir",
    "store",
    "telemetry",
    "keys",
    "http",
    "audit",
    "email",
    "auth",
];
const FEATURES: &[&str] = &["accounts", "sessions", "admin", "mfa", "defense", "backup", "pages"];

fn allowed_imports(module: &str) -> Option<Vec<&'static str>> {
    let layers = |names: &[&'static str]| Some(names.to_vec());
    match module {
        "state_dir" | "pause" => layers(&[]),
        // A test sets the clock ahead (and back) through a debug knob.
        "clock" => layers(&["pause"]),
        "config" => layers(&["state_dir"]),
        "store" => layers(&["clock", "state_dir"]),
        "telemetry" => layers(&["config"]),
        "keys" => layers(&["store", "state_dir", "clock"]),
        "http" => layers(&["config", "store", "clock", "telemetry", "state_dir"]),
        "audit" => layers(&["config", "keys", "http", "store", "clock", "pause"]),
        "email" => layers(&["config", "keys", "store", "clock", "state_dir"]),
        "auth" => layers(&["config", "store", "keys", "http", "clock", "telemetry", "state_dir", "pause"]),
        m if FEATURES.contains(&m) => Some(LAYERS.to_vec()),
        "daemon" | "ctl" | "bin" | "lib" => None,
        other => panic!("src/{other}: a module tidy.rs does not know; add it to the allow-list"),
    }
}

/// The top-level modules `text` imports through `crate::`.
fn crate_imports(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices("crate::") {
        if text[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
            continue; // `latch_crate::`, not ours
        }
        let rest = &text[i + "crate::".len()..];
        let names: Vec<&str> = match rest.strip_prefix('{') {
            Some(group) => group.split('}').next().unwrap_or("").split(',').collect(),
            None => vec![rest],
        };
        for name in names {
            let first: String =
                name.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if !first.is_empty() && !first.chars().next().unwrap().is_uppercase() {
                out.push(first);
            }
        }
    }
    out
}

#[test]
fn layers_and_features_import_only_what_they_may() {
    let src = Path::new(ROOT).join("src");
    let mut wrong = Vec::new();
    for file in {
        let mut f = Vec::new();
        rust_files(&src, &mut f);
        f
    } {
        let rel = file.strip_prefix(&src).unwrap();
        let module = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        let Some(allowed) = allowed_imports(&module) else { continue };
        let text = std::fs::read_to_string(&file).unwrap();
        for import in crate_imports(&text) {
            if import != module && !allowed.contains(&import.as_str()) {
                wrong.push(format!("{} imports crate::{import}", rel.display()));
            }
        }
    }
    wrong.sort();
    wrong.dedup();
    assert!(wrong.is_empty(), "imports across the layering (ARCHITECTURE.md): {wrong:#?}");
}

#[test]
fn the_import_scanner_sees_groups_and_paths() {
    let text = "use crate::{auth::X, http::{A, B}};\nuse crate::store::Store;\nlet x = crate::clock::now();";
    assert_eq!(crate_imports(text), ["auth", "http", "store", "clock"]);
}

#[test]
fn only_http_names_status_codes() {
    let mut found = Vec::new();
    let mut files = Vec::new();
    rust_files(&Path::new(ROOT).join("src"), &mut files);
    for file in files {
        if file.starts_with(Path::new(ROOT).join("src/http")) {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        if text.contains("StatusCode::") || text.contains("StatusCode::from_u16") {
            found.push(file.display().to_string());
        }
    }
    assert!(found.is_empty(), "map the error to a problem Kind instead: {found:?}");
}

/// latchctl prints through `ctl::stdout` (`say!`): `println!` panics with a
/// backtrace when the reader has gone (`latchctl users list | head`).
#[test]
fn latchctl_prints_only_through_its_stdout_module() {
    let mut files = Vec::new();
    rust_files(&Path::new(ROOT).join("src/ctl"), &mut files);
    let found: Vec<String> = files
        .iter()
        .filter(|f| !f.ends_with("stdout.rs"))
        .filter(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            text.lines().filter(|l| !l.trim_start().starts_with("//")).any(|l| {
                l.contains("io::stdout()")
                    || l.match_indices("println!").any(|(at, _)| !l[..at].ends_with('e'))
            })
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(found.is_empty(), "print with say! or stdout::Stream: {found:?}");
}

/// The live view (src/auth/live.rs) tracks rows by rowid, and a plain
/// VACUUM may renumber the rowids of tables without an INTEGER PRIMARY KEY
/// (sessions, users): the running daemon must never VACUUM its own
/// database. `VACUUM INTO` writes a copy and is fine.
#[test]
fn the_daemon_never_vacuums_in_place() {
    let mut files = Vec::new();
    rust_files(&Path::new(ROOT).join("src"), &mut files);
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap().to_ascii_uppercase();
        let code = text.lines().filter(|l| !l.trim_start().starts_with("//"));
        let in_place = code
            .into_iter()
            .any(|l| l.match_indices("VACUUM").any(|(at, _)| !l[at..].starts_with("VACUUM INTO")));
        if in_place {
            found.push(file.display().to_string());
        }
    }
    assert!(found.is_empty(), "VACUUM in place renumbers the rowids the live view keys on: {found:?}");
}

/// The slugs API.md gives an HTTP status: "`401 `invalid-credentials``",
/// chains like "403 `email-not-verified` / `account-disabled`".
fn api_md_slugs(text: &str) -> std::collections::BTreeSet<String> {
    let mut slugs = std::collections::BTreeSet::new();
    let bytes = text.as_bytes();
    let (mut pos, mut chained) = (0, false);
    // Each turn: `gap` is the text since the previous token, then `token`.
    while let Some(open) = bytes[pos..].iter().position(|b| *b == b'`').map(|o| pos + o) {
        let Some(close) = bytes[open + 1..].iter().position(|b| *b == b'`').map(|c| open + 1 + c) else {
            break;
        };
        let (gap, token) = (&bytes[pos..open], &bytes[open + 1..close]);
        let is_slug = !token.is_empty() && token.iter().all(|b| b.is_ascii_lowercase() || *b == b'-');
        let after_status = gap.len() >= 4 && {
            let tail = &gap[gap.len() - 4..];
            tail[..3].iter().all(u8::is_ascii_digit) && tail[3] == b' '
        };
        let continues = chained && [&b" / "[..], b", ", b" or "].contains(&gap);
        chained = is_slug && (after_status || continues);
        if chained {
            slugs.insert(String::from_utf8_lossy(token).into_owned());
        }
        pos = close + 1;
    }
    slugs
}

#[test]
fn problem_slugs_are_api_md_s() {
    let docs = Path::new(ROOT).join("docs/API.md");
    let api = std::fs::read_to_string(&docs).unwrap();
    // docs/API.md is the shared contract, kept in the repository so this
    // check runs everywhere; next to the shared folder it must be identical.
    let shared = Path::new(ROOT).join("../shared/API.md");
    if let Ok(current) = std::fs::read_to_string(&shared) {
        assert!(current == api, "docs/API.md differs from {}: copy it over", shared.display());
    }
    let contract = api_md_slugs(&api);
    assert!(contract.len() >= 20 && contract.contains("invalid-credentials"), "{contract:?}");
    // Slugs latch adds (API.md: "add new ones, never rename"), each with why.
    let added = [
        "config-invalid",    // latchctl config reload: the file was rejected (422)
        "headers-too-large", // 431 for a request head over the limit
    ];
    let code: std::collections::BTreeSet<String> =
        latch::http::Kind::ALL.iter().map(|k| k.slug().to_string()).collect();
    let missing: Vec<&String> = contract.iter().filter(|s| !code.contains(*s)).collect();
    let unknown: Vec<&String> =
        code.iter().filter(|s| !contract.contains(*s) && !added.contains(&s.as_str())).collect();
    assert!(missing.is_empty(), "API.md slugs without a problem Kind: {missing:?}");
    assert!(
        unknown.is_empty(),
        "problem slugs API.md does not name (add them to `added`, with why): {unknown:?}"
    );
}

#[test]
fn every_migration_file_is_embedded() {
    let listed = std::fs::read_to_string(Path::new(ROOT).join("src/store/migrations.rs")).unwrap();
    for entry in std::fs::read_dir(Path::new(ROOT).join("migrations")).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(name.ends_with(".sql"), "migrations/ holds only numbered .sql files: {name}");
        let include = format!("include_str!(\"../../migrations/{name}\")");
        assert!(listed.contains(&include), "migrations/{name} is not in MIGRATIONS");
        let version: i64 = name.split('_').next().unwrap().parse().expect("NNNN_ prefix");
        assert!(listed.contains(&format!("version: {version},")), "{name}: version {version} not listed");
    }
}

/// Routes are added only through `http::Routes`, which takes method and
/// path from the handler's `#[utoipa::path]`: so the OpenAPI document
/// lists exactly what is served. The one exception is a debug-build-only
/// test route.
#[test]
fn routes_are_registered_only_through_the_documented_table() {
    let allowed = |rel: &str, line: &str| {
        rel == "src/http/routes.rs" || (rel == "src/http/server.rs" && line.contains("/debug/tcp"))
    };
    let mut offenders = Vec::new();
    let mut files = Vec::new();
    rust_files(&Path::new(ROOT).join("src"), &mut files);
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let rel = path.strip_prefix(ROOT).unwrap().display().to_string();
        for (n, line) in text.lines().enumerate() {
            let registers = ["web::resource(", "web::get()", "web::post()", ".route(\"", "web::scope("]
                .iter()
                .any(|p| line.contains(p));
            if registers && !allowed(&rel, line) {
                offenders.push(format!("{rel}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(offenders.is_empty(), "add routes with http::Routes::add: {offenders:#?}");
}
