//! `synchro run`'s printer: the change stream on stdout, resumed where it stopped.
//!
//! The printer reads the outbox with its own cursor and moves the cursor only after the
//! lines are written and flushed: stopped at any moment (kill -9, a reader that stops
//! reading), it prints again from the first line not known to be out, so no change is
//! missed; a change can be printed twice, never skipped. It runs on its own thread: a
//! slow reader of stdout blocks it, not the host.

use std::io::Write;
use std::time::Duration;

use synchro_bus::{ChangeFilter, Message};
use synchro_model::OneLine;
use synchro_store::Cursor;
use tokio::sync::watch;

/// The cursor's name in the database.
pub const READER: &str = "printer";
/// Changes printed between two saves of the cursor: what a kill can print twice (tried
/// at 1 024: `tests/durable.rs`' kills with a slow reader then repeated 36 % of what was
/// printed, against 7–10 % at 64).
const BATCH: usize = 64;

/// How each change prints.
pub struct Format {
    pub json: bool,
    /// The changes printed.
    pub only: ChangeFilter,
}

impl Format {
    fn line(&self, message: &Message) -> Option<String> {
        if !self.only.matches(message) {
            return None;
        }
        Some(if self.json {
            String::from_utf8_lossy(&message.payload).into_owned()
        } else {
            readable(message)
        })
    }
}

/// The printing thread: the last sequence number printed and flushed.
pub struct Printer {
    printed: watch::Receiver<u64>,
}

impl Printer {
    /// Starts printing what `cursor` reads, on a thread of its own (with a runtime of its
    /// own, so that it reads on while the host's stops).
    pub fn start(mut cursor: Cursor, format: Format) -> std::io::Result<Printer> {
        let (tx, printed) = watch::channel(cursor.position());
        let runtime = tokio::runtime::Builder::new_current_thread().build()?;
        std::thread::Builder::new()
            .name("synchro-printer".into())
            .spawn(move || {
                // Written a batch at a time: stdout's own buffer writes every line
                // with a call of its own.
                let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
                loop {
                    let batch = match runtime.block_on(cursor.next_batch(BATCH)) {
                        Ok(batch) => batch,
                        Err(error) => {
                            tracing::error!("reading the change stream: {error}");
                            std::thread::sleep(Duration::from_secs(1));
                            continue;
                        }
                    };
                    let Some((last, _)) = batch.last() else {
                        continue;
                    };
                    let lines =
                        batch
                            .iter()
                            .filter_map(|(seq, record)| {
                                match synchro_bus::record_message(record) {
                                    Ok(message) => format.line(&message),
                                    Err(error) => {
                                        tracing::error!(seq, "{error}; it is not printed");
                                        None
                                    }
                                }
                            });
                    let mut written = Ok(());
                    for line in lines {
                        written = writeln!(out, "{line}");
                        if written.is_err() {
                            break;
                        }
                    }
                    // stdout going away (a closed pipe) ends printing, not the host; what
                    // was not printed is printed by the next `synchro run`.
                    if let Err(error) = written.and_then(|()| out.flush()) {
                        tracing::warn!("stdout closed ({error}); changes are no longer printed");
                        return;
                    }
                    if let Err(error) = runtime.block_on(cursor.handled(*last)) {
                        tracing::warn!("saving the printer's position: {error}");
                    }
                    tx.send_replace(*last);
                }
            })?;
        Ok(Printer { printed })
    }

    /// Waits up to `limit` for everything up to `last` to be printed.
    pub async fn drain(mut self, last: u64, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        let left = synchro_store::wait_handled(&mut self.printed, last, deadline).await;
        if left > 0 {
            tracing::warn!(
                "stopping with {left} changes not yet printed; the next `synchro run` prints them"
            );
        }
    }
}

/// `12:00:01.123Z UPDATE pserver srv-1 (http-inventory) {"hostname":"b"}`
fn readable(message: &Message) -> String {
    let event: serde_json::Value = serde_json::from_slice(&message.payload).unwrap_or_default();
    let element = event
        .get("vertex")
        .or_else(|| event.get("edge"))
        .cloned()
        .unwrap_or_default();
    let time = humantime::format_rfc3339_millis(
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(message.timestamp),
    );
    let time = time.to_string();
    // Keys and kinds are the plugins' text: escaped, so that none prints a line of its own.
    let text = |value: &serde_json::Value| OneLine(value.as_str().unwrap_or("?")).to_string();
    let mut line = format!(
        "{} {:<6} {} {} ({})",
        time.get(11..).unwrap_or(&time),
        text(&event["operation"]),
        text(&element["type"]),
        text(&element["key"]),
        text(&event["source"]),
    );
    if let (Some(source), Some(target)) = (element.get("source"), element.get("target")) {
        line += &format!(" {} -> {}", text(&source["key"]), text(&target["key"]));
    }
    if let Some(properties) = element
        .get("properties")
        .filter(|p| p.as_object().is_some_and(|o| !o.is_empty()))
    {
        line += &format!(" {properties}");
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use synchro_model::{Change, Entity, Operation};

    fn message(kind: &str, key: &str) -> Message {
        let entity = Entity::new(key.into(), kind.into(), r#"{"a":1}"#.into(), None, None).unwrap();
        synchro_bus::change_message(&Change {
            operation: Operation::Update,
            entity,
            timestamp: 1_764_102_154_190,
            transaction_id: "t".into(),
            database_transaction_id: None,
            source: "inv".into(),
        })
    }

    #[test]
    fn kinds_filter_and_both_forms_print() {
        let servers = Format {
            json: false,
            only: ChangeFilter {
                kinds: vec!["pserver".to_owned()],
                ..ChangeFilter::default()
            },
        };
        assert_eq!(servers.line(&message("vserver", "vm-1")), None);
        assert_eq!(
            servers.line(&message("pserver", "srv-1")).unwrap(),
            r#"20:22:34.190Z UPDATE pserver srv-1 (inv) {"a":1}"#
        );
        let json = Format {
            json: true,
            only: ChangeFilter::default(),
        };
        let line = json.line(&message("vserver", "vm-1\nDELETE x")).unwrap();
        assert!(!line.contains('\n'), "one line: {line}");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&line).unwrap()["vertex"]["key"],
            "vm-1\nDELETE x"
        );
        let readable = Format {
            json: false,
            only: ChangeFilter::default(),
        };
        assert!(
            !readable
                .line(&message("vserver", "vm-1\nDELETE x"))
                .unwrap()
                .contains('\n')
        );
    }
}
