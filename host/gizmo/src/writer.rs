//! The API's writes, committed in groups: one thread makes every write queued while the
//! last batch was written in one transaction ([`Db::api_each`]), without an fsync while
//! more batches wait, then makes them all durable with one (the last batch's own commit,
//! or [`Db::sync`]) and only then answers them. A request waits for one fsync however
//! many others share it, and a page several batches dirty is written once. A bulk goes
//! alone ([`Db::api_all`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use synchro_manifest::API_WRITER;
use synchro_model::{Change, Entity, Error, ErrorKind, Operation};
use synchro_store::{ApiRefusal, ApiResult, ApiWrite, Applied, Db, DbError};
use tokio::sync::{mpsc, oneshot};

/// Writes waiting for the thread; past it, requests wait to queue (back-pressure).
const QUEUED: usize = 8192;
/// The most single writes in one transaction.
const MAX_BATCH: usize = 4096;
/// The longest a written batch waits for its fsync while more batches are made.
const MAX_UNSYNCED: Duration = Duration::from_millis(2);

/// What a bulk did: every write made, or the first refusal (with its index) and none.
pub type BulkResult = Result<Vec<Applied>, (usize, ApiRefusal)>;

/// The queue of the writing thread. Cloned by every request handler; the thread ends
/// when the last clone goes.
#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
}

type Reply<T> = oneshot::Sender<Result<T, Error>>;

enum Job {
    One {
        write: ApiWrite,
        transaction: String,
        reply: Reply<ApiResult>,
    },
    All {
        writes: Vec<ApiWrite>,
        transaction: String,
        reply: Reply<BulkResult>,
    },
}

impl Writer {
    /// Starts the thread that writes to `db`.
    pub fn start(db: Arc<Db>) -> Writer {
        let (jobs, queue) = mpsc::channel(QUEUED);
        std::thread::Builder::new()
            .name("synchro-api-writes".into())
            .spawn(move || Thread::new(db).run(queue))
            .expect("a thread for the API's writes");
        Writer { jobs }
    }

    /// Makes `write`, announced under the transaction id `transaction`; answers once it is
    /// durable.
    pub async fn one(&self, write: ApiWrite, transaction: String) -> Result<ApiResult, Error> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::One {
            write,
            transaction,
            reply,
        })
        .await?;
        answer.await.map_err(|_| stopping())?
    }

    /// Makes all of `writes` or none, their changes sharing the database transaction id
    /// `transaction`.
    pub async fn all(
        &self,
        writes: Vec<ApiWrite>,
        transaction: String,
    ) -> Result<BulkResult, Error> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::All {
            writes,
            transaction,
            reply,
        })
        .await?;
        answer.await.map_err(|_| stopping())?
    }

    async fn send(&self, job: Job) -> Result<(), Error> {
        self.jobs.send(job).await.map_err(|_| stopping())
    }
}

fn stopping() -> Error {
    Error::new(ErrorKind::Unavailable, "the host is stopping")
}

fn failed(error: &DbError) -> Error {
    Error::new(error.kind(), error.to_string())
}

/// The writing thread's state: the answers of batches written but not yet durable.
struct Thread {
    db: Arc<Db>,
    unsynced: Vec<(ApiResult, Reply<ApiResult>)>,
    /// When the oldest of them was written.
    since: Option<Instant>,
}

impl Thread {
    fn new(db: Arc<Db>) -> Thread {
        Thread {
            db,
            unsynced: Vec::new(),
            since: None,
        }
    }

    fn run(mut self, mut queue: mpsc::Receiver<Job>) {
        let mut next = None;
        loop {
            let first = match next.take() {
                Some(job) => job,
                None => match queue.try_recv() {
                    Ok(job) => job,
                    Err(mpsc::error::TryRecvError::Disconnected) => break,
                    Err(mpsc::error::TryRecvError::Empty) => {
                        // Nothing waits: make what was written durable, then sleep.
                        self.sync();
                        match queue.blocking_recv() {
                            Some(job) => job,
                            None => break,
                        }
                    }
                },
            };
            let mut singles = Vec::new();
            match first {
                Job::One {
                    write,
                    transaction,
                    reply,
                } => singles.push((write, transaction, reply)),
                bulk @ Job::All { .. } => next = Some(bulk),
            }
            // Everything queued joins the batch, up to a bulk (which goes alone, after
            // it, to keep the order requests came in).
            let mut drained = false;
            while next.is_none() && !singles.is_empty() && singles.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(Job::One {
                        write,
                        transaction,
                        reply,
                    }) => singles.push((write, transaction, reply)),
                    Ok(bulk @ Job::All { .. }) => next = Some(bulk),
                    Err(_) => {
                        drained = true;
                        break;
                    }
                }
            }
            if !singles.is_empty() {
                // Nothing else waits: this batch's commit is the fsync, rather than a
                // commit of its own and then another to sync (half the commits under a
                // steady load, where each batch is what the clients have in flight).
                self.write_each(singles, drained);
                if self
                    .since
                    .is_some_and(|since| since.elapsed() >= MAX_UNSYNCED)
                {
                    self.sync();
                }
                continue;
            }
            if let Some(Job::All {
                writes,
                transaction,
                reply,
            }) = next.take()
            {
                self.sync();
                let done = self
                    .db
                    .api_all(API_WRITER, &writes, |_, operation, entity| {
                        record(operation, entity, new_id(), Some(&transaction))
                    })
                    .map_err(|e| failed(&e));
                let _ = reply.send(done);
            }
        }
        self.sync();
    }

    /// Writes `singles` in one transaction. A `durable` one is answered at once, with
    /// the batches written before it (its fsync made them durable too); otherwise they
    /// are answered at the next [`Thread::sync`].
    fn write_each(&mut self, singles: Vec<(ApiWrite, String, Reply<ApiResult>)>, durable: bool) {
        let (writes, rest): (Vec<_>, Vec<_>) = singles
            .into_iter()
            .map(|(write, transaction, reply)| (write, (transaction, reply)))
            .unzip();
        let results = self
            .db
            .api_each(API_WRITER, &writes, durable, |index, operation, entity| {
                record(operation, entity, rest[index].0.clone(), None)
            });
        match results {
            Ok(results) => {
                self.since.get_or_insert_with(Instant::now);
                let replies = rest.into_iter().map(|(_, reply)| reply);
                self.unsynced.extend(results.into_iter().zip(replies));
                if durable {
                    self.answer(Ok(()));
                }
            }
            Err(error) => {
                tracing::error!(writes = rest.len(), "the API's writes failed: {error}");
                for (_, reply) in rest {
                    let _ = reply.send(Err(failed(&error)));
                }
            }
        }
    }

    /// Makes the writes so far durable, and answers them.
    fn sync(&mut self) {
        if self.unsynced.is_empty() {
            return;
        }
        let synced = self.db.sync();
        self.answer(synced);
    }

    /// Answers the writes so far, `synced` or not.
    fn answer(&mut self, synced: Result<(), DbError>) {
        self.since = None;
        if let Err(error) = &synced {
            tracing::error!(
                writes = self.unsynced.len(),
                "the API's writes may not be durable: {error}"
            );
        }
        for (result, reply) in self.unsynced.drain(..) {
            let answer = match &synced {
                Ok(()) => Ok(result),
                Err(error) => Err(failed(error)),
            };
            let _ = reply.send(answer);
        }
    }
}

fn new_id() -> String {
    synchro_model::new_transaction_id()
}

/// The change record of one of the API's writes.
fn record(
    operation: Operation,
    entity: &Entity,
    transaction_id: String,
    database_transaction_id: Option<&str>,
) -> Vec<u8> {
    synchro_bus::change_record(&Change {
        operation,
        entity: entity.clone(),
        timestamp: synchro_model::now_millis(),
        transaction_id,
        database_transaction_id: database_transaction_id.map(str::to_owned),
        source: API_WRITER.to_owned(),
    })
}
