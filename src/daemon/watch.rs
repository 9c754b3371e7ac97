//! Watches the config file (and configured certificate files) so an edit
//! reloads without SIGHUP. Directories are watched rather than files:
//! editors and certbot replace files by rename, which a file watch misses.

use std::collections::HashSet;
use std::path::PathBuf;

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::config::Config;

/// A running watch; dropping it stops the watch.
pub struct FileWatch {
    _watcher: RecommendedWatcher,
    pub changes: mpsc::Receiver<()>,
}

/// Starts watching the files a reload reads. `None` when there is nothing
/// to watch (built-in defaults) or the platform refuses the watch (the
/// reason is logged; SIGHUP still works).
pub fn start(cfg: &Config) -> Option<FileWatch> {
    let mut files: Vec<PathBuf> = cfg.source.iter().cloned().collect();
    if let Some(tls) = &cfg.tls {
        files.extend([tls.cert.clone(), tls.key.clone()]);
    }
    if files.is_empty() {
        return None;
    }
    let watched: HashSet<PathBuf> = files.iter().cloned().collect();
    let (tx, rx) = mpsc::channel(16);
    let handler = move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        let relevant = matches!(event.kind, EventKind::Create(_) | EventKind::Modify(_));
        if relevant && event.paths.iter().any(|p| watched.contains(p)) {
            // A full channel already holds a pending reload; that is enough.
            let _ = tx.try_send(());
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the config file; reload with SIGHUP");
            return None;
        }
    };
    let dirs: HashSet<PathBuf> = files.iter().filter_map(|f| f.parent().map(PathBuf::from)).collect();
    for dir in dirs {
        if let Err(e) = watcher.watch(&dir, RecursiveMode::NonRecursive) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot watch; reload with SIGHUP");
        }
    }
    Some(FileWatch { _watcher: watcher, changes: rx })
}
