//! Watches the plugin directory (and the directories of components kept elsewhere) so
//! that a changed, added or removed plugin is noticed within milliseconds.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use notify::event::{AccessKind, AccessMode, EventKind};
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// Writes that arrive this close together are one change: a copy of a component is
/// several writes, and loading it halfway through would only log a spurious error.
const SETTLE: Duration = Duration::from_millis(20);

pub struct DirWatcher {
    watcher: notify::RecommendedWatcher,
    changes: mpsc::Receiver<()>,
    /// When the change received but not yet reported settles: kept across a cancelled
    /// `changed`, so that frequent admin requests cannot postpone a reload forever.
    settles: Option<tokio::time::Instant>,
    watched: HashSet<PathBuf>,
}

impl DirWatcher {
    pub fn new() -> anyhow::Result<DirWatcher> {
        // One pending signal is enough: a scan looks at every file anyway.
        let (tx, changes) = mpsc::channel(1);
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let relevant = match event {
                // Reading files (which every scan does) must not trigger another scan.
                Ok(event) => match event.kind {
                    EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
                    EventKind::Access(_) => false,
                    _ => true,
                },
                // An overflowed queue lost events: scan to be safe.
                Err(_) => true,
            };
            if relevant {
                let _ = tx.try_send(());
            }
        })
        .context("cannot watch the plugin directory")?;
        Ok(DirWatcher {
            watcher,
            changes,
            settles: None,
            watched: HashSet::new(),
        })
    }

    /// Watches the files directly in `dir` (idempotent).
    pub fn watch(&mut self, dir: &Path) -> anyhow::Result<()> {
        let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
        if self.watched.contains(&dir) {
            return Ok(());
        }
        self.watcher
            .watch(&dir, RecursiveMode::NonRecursive)
            .with_context(|| format!("cannot watch {}", dir.display()))?;
        self.watched.insert(dir);
        Ok(())
    }

    /// Waits for a change, then for the writes around it to settle. Cancel-safe: a
    /// change received before the future is dropped is reported by the next call.
    pub async fn changed(&mut self) {
        if self.settles.is_none() {
            if self.changes.recv().await.is_none() {
                return std::future::pending().await;
            }
            self.settles = Some(tokio::time::Instant::now() + SETTLE);
        }
        while let Some(settles) = self.settles {
            tokio::time::sleep_until(settles).await;
            self.settles = match self.changes.try_recv() {
                Ok(()) => Some(tokio::time::Instant::now() + SETTLE),
                Err(_) => None,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_change_is_reported_even_when_every_wait_is_cancelled_early() {
        let dir = tempfile::tempdir().unwrap();
        let mut watcher = DirWatcher::new().unwrap();
        watcher.watch(dir.path()).unwrap();
        std::fs::write(dir.path().join("plugin.toml"), "x").unwrap();
        // As the host's loop does when admin requests keep arriving: each wait is cut
        // short well before the change settles.
        let reported = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                tokio::select! {
                    _ = watcher.changed() => return,
                    _ = tokio::time::sleep(Duration::from_millis(1)) => {}
                }
            }
        })
        .await;
        assert!(reported.is_ok(), "the change was never reported");
    }
}
