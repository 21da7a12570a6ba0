//! `synchro run`: the host, plus a printer of change notifications on stdout.

use std::time::Duration;

use anyhow::Context;
use synchro_bus::kafka::Member;
use synchro_bus::{Bus, ChangeFilter};
use synchro_supervisor::{Config, Supervisor};

use crate::printer::{self, Format, Printer};

/// How long after the shutdown grace the process waits for its last tasks (a bus client
/// closing its connections to a broker that does not answer) before it exits anyway.
/// With the grace, this bounds every stop: 3 × `shutdown-grace` (calls in flight, then
/// their changes to the disk and the bus, then to stdout) + 2 × `EXIT_WAIT`.
const EXIT_WAIT: Duration = Duration::from_secs(2);

pub fn run(config: Config, json: bool, only: ChangeFilter) -> anyhow::Result<()> {
    return_freed_memory();
    let runtime = tokio::runtime::Runtime::new().context("starting tokio")?;
    let result = runtime.block_on(serve(config, json, only));
    // Tasks still running now (a Kafka client reconnecting) must not hold the exit.
    runtime.shutdown_timeout(EXIT_WAIT);
    result
}

/// Makes the allocator hand memory back to the system when it is freed, not keep it for
/// later. glibc raises its trim threshold each time a large block is freed, up to 64 MB
/// per arena; compiling a Python plugin frees blocks of tens of megabytes on several
/// threads, and a host that compiled three such plugins kept 60 MB more than one that
/// loaded them from the cache (BENCHMARKS.md). A fixed threshold also fixes the size from
/// which blocks are mapped on their own (128 KiB), which is what releases them.
fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only changes the allocator's tuning; called before any thread
    // of the host starts.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, 128 << 10);
    }
}

/// `synchro run`: the host, plus a printer of change notifications on stdout.
async fn serve(config: Config, json: bool, only: ChangeFilter) -> anyhow::Result<()> {
    // First: a stop asked for while the host starts is a clean stop too.
    let stop_signal = StopSignal::new()?;
    let member = Member::Stable(synchro_supervisor::host_id(&config.data_dir)?);
    let bus = Bus::from_settings(&config.bus, member)?;
    let grace = config.shutdown_grace;
    let host = Supervisor::new(config, bus)?;
    // Attached before any plugin starts: the printer misses nothing, and resumes after
    // what an earlier run printed.
    let changes = host.changes(printer::READER)?;
    let printer = Printer::start(changes, Format { json, only }).context("starting the printer")?;
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        stop_signal.wait().await;
        tracing::info!("stopping: waiting up to {grace:?} for calls in flight");
        let _ = stop.send(true);
        watchdog(3 * grace + 2 * EXIT_WAIT);
    });
    let db = host.db();
    host.run(shutdown).await?;
    printer.drain(db.last_change(), grace).await;
    // The printer's position is saved without an fsync of its own: one now, so that a
    // clean stop prints nothing twice at the next start.
    tokio::task::spawn_blocking(move || db.sync()).await??;
    Ok(())
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

/// SIGTERM or Ctrl-C, listened for from when it is made.
struct StopSignal {
    term: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl StopSignal {
    fn new() -> anyhow::Result<StopSignal> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(StopSignal {
            term: signal(SignalKind::terminate()).context("listening for SIGTERM")?,
            interrupt: signal(SignalKind::interrupt()).context("listening for SIGINT")?,
        })
    }

    async fn wait(mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.interrupt.recv() => {}
        }
    }
}
