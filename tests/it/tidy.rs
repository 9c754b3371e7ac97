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
