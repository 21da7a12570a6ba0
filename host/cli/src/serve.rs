//! `synchro run`: the host, plus a printer of change notifications on stdout.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use synchro_bus::{Bus, Filter, Message};
use synchro_model::OneLine;
use synchro_supervisor::{Config, Supervisor};

/// How long after the shutdown grace the process waits for its last tasks (a bus client
/// closing its connections to a broker that does not answer) before it exits anyway.
/// With the grace, this bounds every stop: `shutdown-grace` + 2 × `EXIT_WAIT`.
const EXIT_WAIT: Duration = Duration::from_secs(2);

pub fn run(config: Config, json: bool, kinds: Vec<String>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("starting tokio")?;
    let result = runtime.block_on(serve(config, json, kinds));
    // Tasks still running now (a Kafka client reconnecting) must not hold the exit.
    runtime.shutdown_timeout(EXIT_WAIT);
    result
}

/// `synchro run`: the host, plus a printer of change notifications on stdout.
async fn serve(config: Config, json: bool, kinds: Vec<String>) -> anyhow::Result<()> {
    let bus = Bus::from_settings(&config.bus)?;
    let filter = if kinds.is_empty() {
        Filter::All
    } else {
        Filter::Kinds(kinds.into_iter().collect())
    };
    // Subscribed before any plugin starts, so that the first collect is printed; a broker
    // that does not answer now must not stop the host: the printer then subscribes once it
    // does (what was published meanwhile is not printed; it is on the bus).
    let subscribed = bus
        .subscribe(synchro_bus::CHANGES, filter.clone())
        .await
        .inspect_err(|e| tracing::warn!("changes are printed once the bus answers: {e}"));
    let tail = bus.clone();
    let printer = tokio::spawn(async move {
        let mut changes = match subscribed {
            Ok(changes) => changes,
            Err(_) => subscribe_when_possible(&tail, filter).await,
        };
        let mut out = std::io::stdout();
        while let Some(message) = changes.recv().await {
            let line = if json {
                String::from_utf8_lossy(&message.payload).into_owned()
            } else {
                readable(&message)
            };
            // stdout going away (a closed pipe) ends printing, not the host.
            if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                break;
            }
        }
    });
    let grace = config.shutdown_grace;
    let host = Supervisor::new(config, bus)?;
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("stopping: waiting up to {grace:?} for calls in flight");
        let _ = stop.send(true);
        watchdog(grace + 2 * EXIT_WAIT);
    });
    host.run(shutdown).await?;
    printer.abort();
    Ok(())
}

/// Subscribes to the change stream, retrying with a growing pause until the bus answers.
async fn subscribe_when_possible(bus: &Bus, filter: Filter) -> synchro_bus::Subscription {
    let mut pause = Duration::from_millis(500);
    loop {
        tokio::time::sleep(pause).await;
        match bus.subscribe(synchro_bus::CHANGES, filter.clone()).await {
            Ok(changes) => {
                tracing::info!("printing changes from now on");
                return changes;
            }
            Err(error) => {
                tracing::debug!("subscribing to the change stream: {error}");
                pause = (pause * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// Ends the process after `limit`, whatever is still closing: a stop is bounded even
/// when a bus client blocks in its destructor. Nothing is lost by it: what was not
/// committed is redone at the next start.
fn watchdog(limit: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        tracing::warn!(
            "still stopping after {limit:?} (a bus client is still closing); exiting now"
        );
        std::process::exit(0);
    });
}

async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
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
