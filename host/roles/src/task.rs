//! Where a plugin's runners run: each on a thread of its own.
//!
//! tokio never preempts a task, and a guest's CPU is the task's: a plugin spinning for
//! 9.9 s of a 10 s deadline held a runtime worker for all of it, and everything queued
//! behind it waited — neighbours' schedules, the admin API. On a thread of its own, a
//! runner is preempted by the operating system like any busy thread, so a plugin that
//! burns CPU costs its neighbours a share of the machine, not their turn. The thread
//! drives the runner through the runtime's handle: timers, sockets and tasks it spawns
//! stay the runtime's.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::oneshot;

/// A runner on its own thread.
pub struct PluginTask {
    /// Dropping the runner at its next await point: the cut of a task that outlives the
    /// shutdown grace.
    cut: oneshot::Sender<()>,
    done: oneshot::Receiver<()>,
    finished: Arc<AtomicBool>,
}

/// How a task ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// Its runner returned.
    Finished,
    /// It was still busy at the deadline and was cut.
    Cut,
}

impl PluginTask {
    /// Runs `runner` on a new thread named after `plugin`, within the current runtime. A
    /// runner that panics stops (the rest of the host goes on): `stopped` is told at once,
    /// with the panic's message.
    pub fn spawn(
        plugin: &str,
        runner: impl Future<Output = ()> + Send + 'static,
        stopped: impl FnOnce(String) + Send + 'static,
    ) -> PluginTask {
        let runtime = tokio::runtime::Handle::current();
        let (cut, cut_signal) = oneshot::channel::<()>();
        let (done_signal, done) = oneshot::channel();
        let finished = Arc::new(AtomicBool::new(false));
        let finished_flag = finished.clone();
        std::thread::Builder::new()
            .name(format!("plugin:{plugin}"))
            .spawn(move || {
                let run = AssertUnwindSafe(|| {
                    runtime.block_on(async {
                        tokio::select! {
                            () = runner => {}
                            Ok(()) = cut_signal => {}
                        }
                    })
                });
                if let Err(panic) = std::panic::catch_unwind(run) {
                    let message = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    stopped(message);
                }
                finished_flag.store(true, Ordering::Release);
                let _ = done_signal.send(());
            })
            .expect("spawning a plugin thread");
        PluginTask {
            cut,
            done,
            finished,
        }
    }

    pub fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }

    /// Waits for the runner to return until `deadline`, then cuts it.
    pub async fn finish(mut self, deadline: tokio::time::Instant) -> Ended {
        if tokio::time::timeout_at(deadline, &mut self.done)
            .await
            .is_ok()
        {
            return Ended::Finished;
        }
        let _ = self.cut.send(());
        // The runner is dropped at its next await; a guest call in flight ends at its own
        // deadline at the latest.
        let _ = self.done.await;
        Ended::Cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_busy_runner_does_not_hold_the_runtime_and_is_cut_at_the_deadline() {
        // A runner that burns its thread for a while between awaits, forever.
        let busy = PluginTask::spawn(
            "busy",
            async {
                loop {
                    let started = Instant::now();
                    while started.elapsed() < Duration::from_millis(300) {
                        std::hint::spin_loop();
                    }
                    tokio::task::yield_now().await;
                }
            },
            |_| {},
        );
        // The one runtime worker still serves timers promptly.
        for _ in 0..5 {
            let started = Instant::now();
            tokio::time::sleep(Duration::from_millis(10)).await;
            assert!(
                started.elapsed() < Duration::from_millis(250),
                "a timer took {:?}",
                started.elapsed()
            );
        }
        assert!(!busy.is_finished());
        let deadline = tokio::time::Instant::now() + Duration::from_millis(50);
        assert_eq!(busy.finish(deadline).await, Ended::Cut);

        let quick = PluginTask::spawn("quick", async {}, |_| {});
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        assert_eq!(quick.finish(deadline).await, Ended::Finished);

        let (tell, told) = std::sync::mpsc::channel();
        let panics = PluginTask::spawn("panics", async { panic!("on purpose") }, move |why| {
            tell.send(why).unwrap()
        });
        assert_eq!(panics.finish(deadline).await, Ended::Finished);
        assert_eq!(told.recv().unwrap(), "on purpose");
    }
}
