//! Loading plugins off the registry's loop.
//!
//! Compiling a component is the slow part of a load: milliseconds for a Rust plugin, but
//! seconds and hundreds of megabytes for a Python or JavaScript one (an interpreter in
//! wasm). Done on the registry's loop, a scan that finds three such plugins kept the admin
//! API and every other plugin's start waiting for all three. So each load runs on a thread
//! of its own and its result comes back on a channel that the loop applies like any
//! other event; a few loads run at once, as many as the machine's cores and memory allow,
//! so that a small plugin does not wait behind a large one.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc};

use synchro_roles::{Plugin, PluginEngine};

use crate::Config;

/// A load that finished, well or not.
pub struct Compiled {
    pub path: PathBuf,
    /// The fingerprint of the files it read: a load of older files than the newest asked
    /// for is dropped.
    pub fingerprint: u64,
    pub result: Result<Plugin, String>,
}

/// The loads that finish, in the order they do.
pub struct Compiles(mpsc::UnboundedReceiver<Compiled>);

impl Compiles {
    pub async fn next(&mut self) -> Compiled {
        // The compiler holds a sender as long as the registry lives.
        self.0
            .recv()
            .await
            .expect("the registry keeps its compiler")
    }
}

/// Starts loads, at most `slots` at once.
pub struct Compiler {
    engine: Arc<PluginEngine>,
    config: Config,
    slots: Arc<Semaphore>,
    done: mpsc::UnboundedSender<Compiled>,
}

impl Compiler {
    pub fn new(engine: Arc<PluginEngine>, config: Config) -> (Compiler, Compiles) {
        let (done, compiles) = mpsc::unbounded_channel();
        let slots = Arc::new(Semaphore::new(slots()));
        let compiler = Compiler {
            engine,
            config,
            slots,
            done,
        };
        (compiler, Compiles(compiles))
    }

    /// Loads the plugin whose manifest is at `path` (files of `fingerprint`), without
    /// touching what runs; the result comes out of [`Compiles::next`].
    ///
    /// The load runs on a thread of its own rather than tokio's blocking pool: a stopping
    /// host does not wait for a compile nobody needs any more.
    pub fn start(&self, path: PathBuf, fingerprint: u64) {
        let (engine, config) = (self.engine.clone(), self.config.clone());
        let (slots, done) = (self.slots.clone(), self.done.clone());
        tokio::spawn(async move {
            let slot = slots.acquire_owned().await.expect("never closed");
            let (thread_path, thread_done) = (path.clone(), done.clone());
            let load = move || {
                let path = thread_path;
                let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    Plugin::load(&engine, &path, &config.load_policy())
                }));
                drop(slot);
                let result = match loaded {
                    Ok(loaded) => loaded.map_err(|e| format!("{e:#}")),
                    Err(_) => Err(format!("{}: loading panicked", path.display())),
                };
                release_freed_memory();
                let _ = thread_done.send(Compiled {
                    path,
                    fingerprint,
                    result,
                });
            };
            let started = std::thread::Builder::new()
                .name("synchro-load".to_owned())
                .spawn(load);
            if let Err(error) = started {
                // Said like any failed load, so that nothing waits for it.
                let result = Err(format!(
                    "{}: cannot start a thread to load it: {error}",
                    path.display()
                ));
                let _ = done.send(Compiled {
                    path,
                    fingerprint,
                    result,
                });
            }
        });
    }
}

/// Loads at once: one per core, and no more than the memory available holds at
/// [`MEMORY_PER_LOAD`] each, but at least one.
fn slots() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let by_memory = available_memory().map_or(1, |bytes| (bytes / MEMORY_PER_LOAD) as usize);
    cores.min(by_memory).max(1)
}

/// What compiling a large component takes at its peak (about 400 MB was measured for a
/// Python component of 17 MB), with room for the host's own work.
const MEMORY_PER_LOAD: u64 = 512 << 20;

/// `MemAvailable` of `/proc/meminfo`, where there is one.
fn available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Hands the memory a compile freed back to the system. Cranelift compiles on several
/// threads; freed, their pages stay with the allocator, and a host that compiled a large
/// component once kept hundreds of megabytes it would never use again
/// (`tests/reload.rs` measures it).
///
/// The host's Rust allocations are jemalloc's (the `synchro` binary's global allocator):
/// this thread's cache is flushed and every arena's unused pages purged. What C libraries
/// allocate (librdkafka) is glibc's, trimmed too. In a process whose allocator is not
/// jemalloc, jemalloc's arenas are empty and purging them costs nothing.
fn release_freed_memory() {
    for control in [&b"thread.tcache.flush\0"[..], ALL_ARENAS_PURGE] {
        // SAFETY: both controls take no argument and return nothing (null pointers, 0
        // length); `control` is NUL-terminated. They only move free memory.
        let failed = unsafe {
            tikv_jemalloc_sys::mallctl(
                control.as_ptr().cast(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                0,
            )
        };
        if failed != 0 {
            tracing::debug!(
                control = %String::from_utf8_lossy(control),
                error = failed,
                "jemalloc refused a control"
            );
        }
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` only returns free pages of glibc's arenas to the system; it
    // is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// jemalloc's `arena.<MALLCTL_ARENAS_ALL>.purge`: every arena's unused pages.
const ALL_ARENAS_PURGE: &[u8] = b"arena.4096.purge\0";
