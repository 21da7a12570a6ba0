//! synchro's model, with no I/O: entities (graph vertices and edges), their canonical
//! form and xxh3 hash, the diff of a snapshot against a baseline, the change events it
//! produces (A&AI Gizmo's shape), and the kinds of error every boundary of the host
//! reports.
//!
//! Everything else in the host — the store, the bus, the engine — moves these values
//! around; nothing here knows how.

pub mod bookkeeping;
mod canonical;
mod change;
mod diff;
mod entity;
mod error;
pub mod gizmo;
mod one_line;

pub use bookkeeping::{Acting, Bookkeeping, Handling, Version};
pub use change::{Change, new_transaction_id, now_millis};
pub use diff::{Completeness, Diff, DiffError, Hashes, Operation, Outcome, Upsert};
pub use entity::{EdgeEnds, Entity, EntityError, EntityRef, Id};
pub use error::{Error, ErrorKind};
pub use one_line::{OneLine, needs_escape, write_escaped};
