//! The API's writes, committed in groups: one thread makes every write queued while the
//! last commit reached the disk in one transaction ([`Db::api_each`]), so a request waits
//! for one fsync however many others share it; a bulk goes alone ([`Db::api_all`]).

use std::sync::Arc;

use synchro_manifest::API_WRITER;
use synchro_model::{Change, Entity, Error, ErrorKind, Operation};
use synchro_store::{ApiRefusal, ApiResult, ApiWrite, Applied, Db};
use tokio::sync::{mpsc, oneshot};

/// Writes waiting for the thread; past it, requests wait to queue (back-pressure).
const QUEUED: usize = 8192;
/// The most single writes in one transaction.
const MAX_BATCH: usize = 4096;

/// What a bulk did: every write made, or the first refusal (with its index) and none.
pub type BulkResult = Result<Vec<Applied>, (usize, ApiRefusal)>;

/// The queue of the writing thread. Cloned by every request handler; the thread ends
/// when the last clone goes.
#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
}

enum Job {
    One {
        write: ApiWrite,
        transaction: String,
        reply: oneshot::Sender<Result<ApiResult, Error>>,
    },
    All {
        writes: Vec<ApiWrite>,
        transaction: String,
        reply: oneshot::Sender<Result<BulkResult, Error>>,
    },
}

impl Writer {
    /// Starts the thread that writes to `db`.
    pub fn start(db: Arc<Db>) -> Writer {
        let (jobs, queue) = mpsc::channel(QUEUED);
        std::thread::Builder::new()
            .name("synchro-api-writes".into())
            .spawn(move || write_until_closed(&db, queue))
            .expect("a thread for the API's writes");
        Writer { jobs }
    }

    /// Makes `write`, announced under the transaction id `transaction`.
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

fn failed(error: synchro_store::DbError) -> Error {
    Error::new(error.kind(), error.to_string())
}

fn write_until_closed(db: &Db, mut queue: mpsc::Receiver<Job>) {
    let mut next = None;
    loop {
        let Some(first) = next.take().or_else(|| queue.blocking_recv()) else {
            return;
        };
        let mut singles = Vec::new();
        let mut bulk = None;
        match first {
            Job::One {
                write,
                transaction,
                reply,
            } => singles.push((write, transaction, reply)),
            job @ Job::All { .. } => bulk = Some(job),
        }
        // Everything queued meanwhile joins the batch, up to a bulk (which goes alone,
        // after it, to keep the order requests came in).
        while bulk.is_none() && singles.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(Job::One {
                    write,
                    transaction,
                    reply,
                }) => singles.push((write, transaction, reply)),
                Ok(job @ Job::All { .. }) => next = Some(job),
                Err(_) => break,
            }
            if next.is_some() {
                break;
            }
        }
        if !singles.is_empty() {
            write_each(db, singles);
        }
        if let Some(Job::All {
            writes,
            transaction,
            reply,
        }) = bulk
        {
            let done = db
                .api_all(API_WRITER, &writes, |_, operation, entity| {
                    record(operation, entity, new_id(), Some(&transaction))
                })
                .map_err(failed);
            let _ = reply.send(done);
        }
    }
}

type Single = (ApiWrite, String, oneshot::Sender<Result<ApiResult, Error>>);

fn write_each(db: &Db, singles: Vec<Single>) {
    let (writes, rest): (Vec<_>, Vec<_>) = singles
        .into_iter()
        .map(|(write, transaction, reply)| (write, (transaction, reply)))
        .unzip();
    let results = db.api_each(API_WRITER, &writes, |index, operation, entity| {
        record(operation, entity, rest[index].0.clone(), None)
    });
    match results {
        Ok(results) => {
            for (result, (_, reply)) in results.into_iter().zip(rest) {
                let _ = reply.send(Ok(result));
            }
        }
        Err(error) => {
            tracing::error!(writes = rest.len(), "the API's writes failed: {error}");
            let error = failed(error);
            for (_, reply) in rest {
                let _ = reply.send(Err(error.clone()));
            }
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
