//! Test-only pauses at named points, so an integration test can hold a
//! request between two steps (say, between a login's password check and its
//! write) and race another request against it. Debug builds only: in a
//! release build `at` does nothing and reads no environment.
//!
//! `LATCH_TEST_PAUSE="login_commit:1500,account_email:800"` pauses each
//! named point that many milliseconds.

/// Waits at point `name` as long as `LATCH_TEST_PAUSE` asks (debug builds).
pub async fn at(name: &str) {
    #[cfg(debug_assertions)]
    if let Some(ms) = configured(name) {
        announce(name, ms);
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}

/// As `at`, for a thread that is not async (`latchctl`, the archive thread).
pub fn blocking(name: &str) {
    #[cfg(debug_assertions)]
    if let Some(ms) = configured(name) {
        announce(name, ms);
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}

/// A period a test sets in place of a worker's default through the same
/// variable (`LATCH_TEST_PAUSE="audit_check_every:300"`); debug builds only.
pub fn duration(name: &str) -> Option<std::time::Duration> {
    #[cfg(debug_assertions)]
    return configured(name).map(std::time::Duration::from_millis);
    #[cfg(not(debug_assertions))]
    {
        let _ = name;
        None
    }
}

/// Says that a request reached a pause, so a test can race it from then
/// on rather than after a guessed delay (a loaded machine took longer).
#[cfg(debug_assertions)]
fn announce(name: &str, ms: u64) {
    tracing::info!("test pause at {name} for {ms} ms");
}

#[cfg(debug_assertions)]
fn configured(name: &str) -> Option<u64> {
    static POINTS: std::sync::OnceLock<Vec<(String, u64)>> = std::sync::OnceLock::new();
    let points = POINTS.get_or_init(|| {
        let spec = std::env::var("LATCH_TEST_PAUSE").unwrap_or_default();
        spec.split(',')
            .filter_map(|p| p.split_once(':'))
            .filter_map(|(n, ms)| Some((n.trim().to_string(), ms.trim().parse().ok()?)))
            .collect()
    });
    points.iter().find(|(n, _)| n == name).map(|(_, ms)| *ms)
}
