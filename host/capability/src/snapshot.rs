//! `snapshot.add`: where a collector delivers its snapshot, in batches, while `collect`
//! runs. Granted by the collector role itself: it is only there during a collect.
//!
//! The sink diffs each batch against the baseline as it arrives, so the host holds one
//! hash per entity plus the entities that changed, never the snapshot.

use synchro_manifest::{Limits, ManifestError};
use synchro_model::{Diff, DiffError, ErrorKind, Hashes};
use synchro_wit::WitError;
pub(super) use synchro_wit::imports::snapshot as wit;

use crate::{Asks, CallContext, fail};

pub struct Grant;

impl crate::Grant for Grant {
    fn parse(asks: &Asks<'_>, entry: Option<&toml::Value>) -> Result<Self, ManifestError> {
        match entry {
            Some(_) => Err(asks.manifest.error(
                "field `capabilities.snapshot`: the snapshot is the collector role's own and needs no grant",
            )),
            None => Ok(Grant),
        }
    }

    fn describe(&self) -> Option<String> {
        None
    }
}

/// The host side of `snapshot.add`: feeds a [`Diff`] and remembers the first error, so
/// a guest that ignores a refused batch still fails its collect.
pub struct SnapshotSink {
    diff: Diff,
    /// The first reason the snapshot is invalid; it fails the collect.
    error: Option<String>,
    /// Bytes of the entities so far (every string of each), against
    /// `limits.max-snapshot-kb`.
    bytes: u64,
    max_entities: u64,
    max_bytes: u64,
}

impl SnapshotSink {
    /// A sink diffing against `baseline` under the snapshot limits of `limits`.
    pub fn new(baseline: Hashes, limits: &Limits) -> SnapshotSink {
        SnapshotSink {
            diff: Diff::new(baseline),
            error: None,
            bytes: 0,
            max_entities: limits.max_entities,
            max_bytes: limits.max_snapshot_bytes(),
        }
    }

    /// The diff so far, and why the snapshot is invalid, if it is.
    pub fn into_parts(self) -> (Diff, Option<String>) {
        (self.diff, self.error)
    }

    fn add(&mut self, batch: Vec<synchro_wit::imports::types::Entity>) -> Result<(), WitError> {
        if let Some(error) = &self.error {
            return Err(fail(
                ErrorKind::InvalidInput,
                format!("the snapshot already failed: {error}"),
            ));
        }
        for entity in batch {
            self.bytes += synchro_wit::entity_size(&entity) as u64;
            let added = if self.diff.len() as u64 >= self.max_entities {
                Err(format!(
                    "the snapshot has more than {} entities (limits.max-entities)",
                    self.max_entities
                ))
            } else if self.bytes > self.max_bytes {
                Err(format!(
                    "the snapshot is larger than {} KiB (limits.max-snapshot-kb)",
                    self.max_bytes >> 10
                ))
            } else {
                synchro_wit::entity_from_wit(entity)
                    .map_err(DiffError::from)
                    .and_then(|e| self.diff.add(e))
                    .map_err(|e| e.to_string())
            };
            if let Err(message) = added {
                self.error = Some(message.clone());
                return Err(fail(ErrorKind::InvalidInput, message));
            }
        }
        Ok(())
    }
}

/// The per-call state: a sink while a collect runs, nothing otherwise.
pub struct Capability {
    sink: Option<SnapshotSink>,
}

impl Capability {
    pub fn new(_call: &CallContext) -> Capability {
        Capability { sink: None }
    }

    /// Opens the snapshot of a collect.
    pub fn begin(&mut self, sink: SnapshotSink) {
        self.sink = Some(sink);
    }

    /// Closes the snapshot of a collect, handing back its sink.
    pub fn finish(&mut self) -> Option<SnapshotSink> {
        self.sink.take()
    }
}

/// Outside a collect a plugin that calls `snapshot.add` gets an error.
impl wit::Host for Capability {
    async fn add(
        &mut self,
        batch: Vec<synchro_wit::imports::types::Entity>,
    ) -> Result<(), WitError> {
        let Some(sink) = &mut self.sink else {
            return Err(fail(
                ErrorKind::Denied,
                "snapshot.add is only available while `collect` runs",
            ));
        };
        sink.add(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use synchro_wit::imports::types::{EdgeEnds, Entity, EntityRef};

    fn entity(key: &str, schema_version: Option<String>, edge: Option<EdgeEnds>) -> Entity {
        Entity {
            key: key.into(),
            kind: "k".into(),
            properties: "{}".into(),
            schema_version,
            edge,
        }
    }

    #[test]
    fn every_string_of_an_entity_counts_towards_the_snapshot_limit() {
        let limits = Limits {
            max_snapshot_kb: 1,
            ..Limits::default()
        };
        let big = "x".repeat(1024);
        let end = |key: &str| EntityRef {
            key: key.into(),
            kind: "k".into(),
        };
        let cases = [
            entity("a", Some(big.clone()), None),
            entity(
                "a",
                None,
                Some(EdgeEnds {
                    source: end(&big),
                    target: end("b"),
                }),
            ),
        ];
        for case in cases {
            let mut sink = SnapshotSink::new(Hashes::default(), &limits);
            let error = sink.add(vec![case]).unwrap_err();
            assert!(
                error
                    .message
                    .contains("the snapshot is larger than 1 KiB (limits.max-snapshot-kb)"),
                "{error:?}"
            );
        }
        let mut sink = SnapshotSink::new(Hashes::default(), &limits);
        assert!(sink.add(vec![entity("a", Some("1".into()), None)]).is_ok());
    }
}
