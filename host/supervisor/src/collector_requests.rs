//! An operator's requests to a collector — approve its held deletes, plan, collect now,
//! pause — handed to the collector's own runner (which serves them between collects)
//! and answered off the host's loop, which a collect in progress must not hold up.

use std::sync::Arc;
use std::time::Duration;

use synchro_model::{Error, ErrorKind};
use synchro_roles::Deployment;
use synchro_roles::collector::Command;
use tokio::sync::oneshot;

/// How long an answer may take beyond two of the plugin's deadlines (a collect in
/// progress, then the plan's own).
const MARGIN: Duration = Duration::from_secs(5);

/// Sends `command` to the collector of `deployment` and answers `reply` with what it
/// answers, or with why it could not.
pub fn relay<T: Send + 'static>(
    deployment: Result<Arc<Deployment>, Error>,
    command: impl FnOnce(oneshot::Sender<Result<T, Error>>) -> Command,
    reply: oneshot::Sender<Result<T, Error>>,
) {
    let deployment = match deployment {
        Ok(deployment) => deployment,
        Err(error) => {
            let _ = reply.send(Err(error));
            return;
        }
    };
    let plugin = deployment.current();
    if plugin.roles.collector.is_none() {
        let message = format!("`{}` is not a collector", plugin.name);
        let _ = reply.send(Err(Error::new(ErrorKind::InvalidInput, message)));
        return;
    }
    let wait = plugin.limits.deadline * 2 + MARGIN;
    let (tx, answer) = oneshot::channel();
    if let Err(error) = deployment.control.send(command(tx)) {
        let _ = reply.send(Err(error));
        return;
    }
    let name = plugin.name.clone();
    tokio::spawn(async move {
        let answer = match tokio::time::timeout(wait, answer).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(Error::new(
                ErrorKind::Unavailable,
                format!("`{name}` stopped before it answered"),
            )),
            Err(_) => Err(Error::new(
                ErrorKind::TimedOut,
                format!(
                    "`{name}` did not answer within {}s: it serves requests between collects, \
                     and not while quarantined",
                    wait.as_secs()
                ),
            )),
        };
        let _ = reply.send(answer);
    });
}
