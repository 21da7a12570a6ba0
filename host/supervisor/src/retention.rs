//! How long the outbox keeps a change: until every reader has passed it — each attached
//! reader (the printer, the Kafka relay, an event step reading `changes` on the embedded
//! bus) and each event step of the running plugins by its saved cursor, even before it has
//! joined (at start, or while it re-joins). An event step holds back at most
//! `max-step-lag` changes (the host config), and so does a subscriber of the admin API's
//! change feed; one further behind loses the oldest. A reader
//! of a plugin that is gone no longer holds changes back; either is told how many it
//! missed when it reads on. The last `feed-window` changes stay whatever the readers
//! passed, so that a feed subscriber whose connection dropped resumes where it was.

use std::sync::Arc;
use std::time::Duration;

use synchro_store::{Db, Retention};

/// How often the outbox drops what every reader has passed.
pub const TRIM_EVERY: Duration = Duration::from_secs(1);

/// Drops what every reader has passed but the window `keep` says; `steps` are the
/// cursors of the running plugins.
pub async fn trim(db: &Arc<Db>, steps: Vec<String>, keep: Retention) {
    let db = db.clone();
    let trimmed = tokio::task::spawn_blocking(move || {
        let bounded = |name: &str| crate::feed::is_feed(name) || steps.iter().any(|s| s == name);
        db.trim_changes(bounded, keep)
    })
    .await;
    match trimmed {
        Ok(Ok(dropped)) => tracing::debug!(dropped, "outbox trimmed"),
        Ok(Err(error)) => tracing::warn!("trimming the outbox: {error}"),
        Err(error) => tracing::warn!("trimming the outbox: {error}"),
    }
}
