//! What an operator asks of a running collector, between its collects: each request is
//! served by the collector's own runner, so it never races a collect's commit.

use synchro_model::Error;
use synchro_status::{CollectPlan, CollectReport};
use tokio::sync::{mpsc, oneshot};

/// Requests a collector has not served yet; more are refused as busy.
const QUEUED: usize = 16;

/// A request to a collector's runner.
#[derive(Debug)]
pub enum Command {
    /// Deletes the held set named `held` (the one held now when `None`); answers how
    /// many entities were deleted.
    ApproveDeletes {
        held: Option<String>,
        reply: oneshot::Sender<Result<u64, Error>>,
    },
    /// Collects once without committing: what a collect would do now.
    Plan(oneshot::Sender<Result<CollectPlan, Error>>),
    /// Collects now instead of at the next tick (even when paused); answers what the
    /// collect did.
    CollectNow(oneshot::Sender<Result<CollectReport, Error>>),
    /// Stops (`true`) or restarts collecting on the schedule; the baseline stays.
    Pause(bool, oneshot::Sender<Result<(), Error>>),
    /// Forgets the baseline (and what the rails held or counted of it), so that the
    /// next collect announces everything as CREATE; answers how many entries it had.
    ResetBaseline(oneshot::Sender<Result<u64, Error>>),
}

/// The sending side, which a plugin's [`crate::Deployment`] keeps across reloads.
#[derive(Debug)]
pub struct Control {
    sender: mpsc::Sender<Command>,
    receiver: std::sync::Mutex<Option<mpsc::Receiver<Command>>>,
}

impl Default for Control {
    fn default() -> Self {
        let (sender, receiver) = mpsc::channel(QUEUED);
        Control {
            sender,
            receiver: std::sync::Mutex::new(Some(receiver)),
        }
    }
}

impl Control {
    /// The receiving side, for the collector's runner (the first to ask).
    pub fn take(&self) -> Option<mpsc::Receiver<Command>> {
        self.receiver.lock().expect("control lock").take()
    }

    /// Queues `command`; refused when the runner is gone or has too many waiting.
    pub fn send(&self, command: Command) -> Result<(), Error> {
        self.sender.try_send(command).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => Error::new(
                synchro_model::ErrorKind::Unavailable,
                "the collector has too many requests waiting; try again",
            ),
            mpsc::error::TrySendError::Closed(_) => Error::new(
                synchro_model::ErrorKind::Unavailable,
                "the collector is not running",
            ),
        })
    }
}
