//! An API key with scope `introspect`, made through `latchctl` as an
//! operator makes one for an app. Included with `#[path]` next to
//! `harness.rs` (which this uses as `super::harness`).

use serde_json::Value;

pub fn introspect_key(latchd: &super::harness::Latchd) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_latchctl"))
        .arg("--state-dir")
        .arg(latchd.state_dir())
        .args(["--json", "api-keys", "create", "--name", "bench", "--scope", "introspect"])
        .output()
        .expect("run latchctl");
    assert!(out.status.success(), "latchctl: {}", String::from_utf8_lossy(&out.stderr));
    let made: Value = serde_json::from_slice(&out.stdout).expect("latchctl --json");
    made["key"].as_str().expect("key").to_string()
}
