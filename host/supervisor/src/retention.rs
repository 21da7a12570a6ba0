//! How long the outbox keeps a change: until every reader has passed it — each attached
//! reader (the printer, the Kafka relay, an event step reading `changes` on the embedded
//! bus) and each event step of the running plugins by its saved cursor, even before it has
//! joined (at start, or while it re-joins). A reader of a plugin that is gone no longer
//! holds changes back; if it comes back later, it is told how many it missed.

use std::sync::Arc;
use std::time::Duration;

use synchro_store::Db;

/// How often the outbox drops what every reader has passed.
pub const TRIM_EVERY: Duration = Duration::from_secs(1);

/// Drops what every reader has passed; `returning` are the cursors of the running plugins.
pub async fn trim(db: &Arc<Db>, returning: Vec<String>) {
    let db = db.clone();
    let trimmed = tokio::task::spawn_blocking(move || {
        db.trim_changes(|name| returning.iter().any(|r| r == name))
    })
    .await;
    match trimmed {
        Ok(Ok(dropped)) => tracing::debug!(dropped, "outbox trimmed"),
        Ok(Err(error)) => tracing::warn!("trimming the outbox: {error}"),
        Err(error) => tracing::warn!("trimming the outbox: {error}"),
    }
}
