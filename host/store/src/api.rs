//! The API's writes in batches: what CRUD clients ask of the model, each write with the
//! precondition its verb carries (a create finds nothing there; a replace, a patch or a
//! delete finds the entity), many requests in one transaction with one fsync.
//!
//! One fsync per request would hold the API to the disk's sync rate (about 2 000 writes/s
//! on the machines this is tested on); one per batch costs a request a few microseconds.
//! In [`Db::api_each`] every write stands alone: each refusal is found before its write
//! changes a row, so a refused write changes nothing and the others of the batch are
//! made. A batch may be committed without an fsync, its changes announced only by the
//! next [`Db::sync`]: a writer with batches queued makes several, then one fsync for all
//! (each dirty page written once), before it answers any of them. Writes asked for together (a bulk) go through [`Db::api_all`]: all or none, in a
//! transaction of their own.

use std::fmt;

use serde_json::{Map, Value};
use synchro_model::{Entity, EntityError, Id, Operation, Version};

use crate::bookkeeping;
use crate::graph::{GraphRefusal, source};
use crate::model::{Change, Rows, Write};
use crate::sources::Sources;
use crate::{Db, DbError, dberr, edges, outbox};

/// A write the API asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiWrite {
    /// A new entity: refused if one with its kind and key is there.
    Create(Entity),
    /// The entity's new content: refused if it is not there.
    Replace(Entity),
    /// Properties merged into the entity's (JSON merge patch: a `null` removes one, an
    /// object merges into an object): refused if it is not there.
    Patch {
        id: Id,
        properties: Map<String, Value>,
    },
    /// Refused if it is not there, or if it is a vertex with edges.
    Delete(Id),
}

impl ApiWrite {
    /// The entity it writes.
    pub fn id(&self) -> &Id {
        match self {
            ApiWrite::Create(entity) | ApiWrite::Replace(entity) => entity.id(),
            ApiWrite::Patch { id, .. } | ApiWrite::Delete(id) => id,
        }
    }
}

/// Why a write of the API was not made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiRefusal {
    /// A create of an entity that is there.
    Exists(Id),
    /// A replace, patch or delete of an entity that is not there.
    Absent(Id),
    /// The graph would not be whole (an edge's missing end, a vertex with edges).
    Graph(GraphRefusal),
    /// A plugin wrote the entity, and only its writer may change it.
    Owned { id: Id, owner: String },
    /// A patch that leaves no valid entity.
    Invalid(EntityError),
}

impl fmt::Display for ApiRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiRefusal::Exists(id) => write!(f, "{id} already exists"),
            ApiRefusal::Absent(id) => write!(f, "{id} is not in the model"),
            ApiRefusal::Graph(refusal) => refusal.fmt(f),
            ApiRefusal::Owned { id, owner } => write!(
                f,
                "{id} was written by the plugin {owner}, and only its writer may change it"
            ),
            ApiRefusal::Invalid(error) => error.fmt(f),
        }
    }
}

/// What a write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The change it announced; `None` when the model already held what it wrote.
    pub operation: Option<Operation>,
    /// The entity as the model holds it now; a deleted one as it was.
    pub entity: Entity,
    /// The version the write moved the entity to (`None` when it changed nothing).
    pub version: Option<Version>,
}

/// One write's outcome in a batch.
pub type ApiResult = Result<Applied, ApiRefusal>;

impl Db {
    /// Makes each of `writes` as the source `plugin`, each on its own (a refused one
    /// changes nothing), in one transaction; `record` makes the change record of the
    /// write at an index. Unless `durable`, the transaction is committed without an fsync:
    /// it is neither durable nor announced until the next [`Db::sync`].
    pub fn api_each(
        &self,
        plugin: &str,
        writes: &[ApiWrite],
        durable: bool,
        mut record: impl FnMut(usize, Operation, &Entity) -> Vec<u8>,
    ) -> Result<Vec<ApiResult>, DbError> {
        let mut txn = self.begin_write()?;
        if !durable {
            txn.set_durability(redb::Durability::None).map_err(dberr)?;
        }
        let mut at = outbox::last_seq(&txn)? + 1;
        let sources = self.sources();
        let mut records = Vec::new();
        let mut results = Vec::with_capacity(writes.len());
        {
            let mut rows = Rows::open(&txn, self.policies())?;
            for (index, write) in writes.iter().enumerate() {
                let result = apply(&mut rows, &sources, plugin, write, at)?;
                if let Ok(Applied {
                    operation: Some(operation),
                    entity,
                    ..
                }) = &result
                {
                    records.push(record(index, *operation, entity));
                    at += 1;
                }
                results.push(result);
            }
        }
        if durable {
            self.commit_with(txn, records.iter().map(Vec::as_slice))?;
        } else {
            outbox::append(&txn, records.iter().map(Vec::as_slice))?;
            txn.commit().map_err(dberr)?;
        }
        Ok(results)
    }

    /// Makes all of `writes`, in order, as the source `plugin`, or none: the first
    /// refusal (with its index) undoes the others.
    pub fn api_all(
        &self,
        plugin: &str,
        writes: &[ApiWrite],
        mut record: impl FnMut(usize, Operation, &Entity) -> Vec<u8>,
    ) -> Result<Result<Vec<Applied>, (usize, ApiRefusal)>, DbError> {
        let txn = self.begin_write()?;
        let mut at = outbox::last_seq(&txn)? + 1;
        let sources = self.sources();
        let mut records = Vec::new();
        let mut applied = Vec::with_capacity(writes.len());
        {
            let mut rows = Rows::open(&txn, self.policies())?;
            for (index, write) in writes.iter().enumerate() {
                // A refusal drops the transaction, and with it the writes before.
                let done = match apply(&mut rows, &sources, plugin, write, at)? {
                    Ok(done) => done,
                    Err(refusal) => return Ok(Err((index, refusal))),
                };
                if let Some(operation) = done.operation {
                    records.push(record(index, operation, &done.entity));
                    at += 1;
                }
                applied.push(done);
            }
        }
        self.commit_with(txn, records.iter().map(Vec::as_slice))?;
        Ok(Ok(applied))
    }
}

impl Db {
    /// The live entity `id` and, for a vertex, its live edges, in one read.
    pub fn api_get(&self, id: &Id) -> Result<Option<(Entity, Vec<Entity>)>, DbError> {
        let read = self.db.model()?;
        let live = |id: &Id| -> Result<Option<Entity>, DbError> {
            let Some(row) = read.entities.get(id.as_str()).map_err(dberr)? else {
                return Ok(None);
            };
            if bookkeeping::get(&read.books, id)?.deleted {
                return Ok(None);
            }
            Ok(Some(Entity::decode(row.value().1)?))
        };
        let Some(entity) = live(id)? else {
            return Ok(None);
        };
        let mut edges = Vec::new();
        if entity.edge().is_none() {
            for edge in edges::of(&read.edges, id)? {
                edges.extend(live(&edge)?);
            }
        }
        Ok(Some((entity, edges)))
    }

    /// Up to `limit` live entities of `kind` with keys after `after`, by key, that `take`
    /// takes.
    pub fn api_page(
        &self,
        kind: &str,
        after: Option<&str>,
        take: impl Fn(&Entity) -> bool,
        limit: usize,
    ) -> Result<Vec<Entity>, DbError> {
        let after = after.map(|key| Id::new(kind, key));
        self.model_scan(
            Some(kind),
            after.as_ref(),
            |_, books_of| !books_of.deleted,
            limit,
            |_, _, bytes, _| {
                let entity = Entity::decode(bytes)?;
                Ok(take(&entity).then_some(entity))
            },
        )
    }
}

/// Makes `write` at version `at`, or finds why not before changing anything.
fn apply(
    rows: &mut Rows<'_>,
    sources: &Sources,
    plugin: &str,
    write: &ApiWrite,
    at: Version,
) -> Result<ApiResult, DbError> {
    let id = write.id();
    let live = rows.live(id)?;
    let (entity, live) = match (write, live) {
        (ApiWrite::Create(_), Some(_)) => return Ok(Err(ApiRefusal::Exists(id.clone()))),
        (ApiWrite::Replace(_) | ApiWrite::Patch { .. } | ApiWrite::Delete(_), None) => {
            return Ok(Err(ApiRefusal::Absent(id.clone())));
        }
        (ApiWrite::Create(entity) | ApiWrite::Replace(entity), live) => {
            (Some(entity.clone()), live)
        }
        (ApiWrite::Patch { properties, .. }, Some(live)) => match patched(&live.1, properties) {
            Ok(entity) => (Some(entity), Some(live)),
            Err(error) => return Ok(Err(ApiRefusal::Invalid(error))),
        },
        (ApiWrite::Delete(_), Some(live)) => (None, Some(live)),
    };
    if let Some((owner, _)) = &live
        && !owner.is_empty()
        && owner != plugin
        && sources.rank(id.kind(), plugin).is_none()
    {
        return Ok(Err(ApiRefusal::Owned {
            id: id.clone(),
            owner: owner.clone(),
        }));
    }
    match &entity {
        Some(entity) => {
            if let Some(ends) = entity.edge() {
                for (role, end) in [("source", &ends.source), ("target", &ends.target)] {
                    let end = Id::new(&end.kind, &end.key);
                    if rows.live_owner(&end)?.is_none() {
                        return Ok(Err(ApiRefusal::Graph(GraphRefusal::MissingEnd {
                            role,
                            end,
                        })));
                    }
                }
            }
        }
        None => {
            let edges = rows.live_edges_of(id)?;
            if !edges.is_empty() {
                return Ok(Err(ApiRefusal::Graph(GraphRefusal::HasEdges(edges))));
            }
        }
    }
    let owned = |owner: String| ApiRefusal::Owned {
        id: id.clone(),
        owner,
    };
    let (operation, entity) = match rows.apply(sources, source(plugin), id, entity.as_ref(), at)? {
        Ok(Change::Changed(operation, entity)) => (Some(operation), entity),
        Ok(Change::Unchanged) => match rows.live(id)? {
            Some((_, entity)) => (None, entity),
            // A delete of what a ranked source's withdrawal leaves to the others' merge.
            None => (None, live.expect("a delete finds its entity").1),
        },
        Ok(Change::Refused(owner)) => return Ok(Err(owned(owner))),
        // Checked above; another writer's refusal here would be a new rule of the model.
        Err(Write::Refused | Write::Stale | Write::Protected) => {
            let owner = rows.live_owner(id)?.unwrap_or_default();
            return Ok(Err(owned(owner)));
        }
        Err(Write::Done { .. }) => unreachable!("a write that was made is not an error"),
    };
    let ranked = sources.rank(id.kind(), plugin).is_some();
    let entity = match operation {
        // A ranked source's write: the model holds the merge.
        Some(Operation::Create | Operation::Update) if ranked => {
            rows.live(id)?.map_or(entity, |(_, merged)| merged)
        }
        _ => entity,
    };
    Ok(Ok(Applied {
        operation,
        entity,
        version: operation.map(|_| at),
    }))
}

/// `entity` with `patch` merged into its properties (RFC 7386).
fn patched(entity: &Entity, patch: &Map<String, Value>) -> Result<Entity, EntityError> {
    let mut properties: Value = serde_json::from_str(entity.properties())
        .map_err(|e| EntityError::Corrupt(e.to_string()))?;
    merge_patch(&mut properties, &Value::Object(patch.clone()));
    Entity::new(
        entity.key().to_owned(),
        entity.kind().to_owned(),
        properties.to_string(),
        entity.schema_version().map(str::to_owned),
        entity.edge().cloned(),
    )
}

/// RFC 7386's merge of `patch` into `target`: what [`ApiWrite::Patch`] does to
/// properties.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let target = target.as_object_mut().expect("made an object above");
    for (name, value) in patch {
        if value.is_null() {
            target.remove(name);
        } else {
            merge_patch(target.entry(name.clone()).or_insert(Value::Null), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::tests::edge;

    fn vertex(key: &str, properties: &str) -> Entity {
        Entity::new(key.into(), "pserver".into(), properties.into(), None, None).unwrap()
    }

    fn line(_: usize, operation: Operation, entity: &Entity) -> Vec<u8> {
        format!("{} {}", operation.as_str(), entity.key()).into_bytes()
    }

    fn changes(db: &Db) -> Vec<String> {
        db.changes_after(0, u64::MAX, 100)
            .unwrap()
            .into_iter()
            .map(|(_, record)| String::from_utf8(record).unwrap())
            .collect()
    }

    fn refusal(result: &ApiResult) -> &ApiRefusal {
        result.as_ref().expect_err("refused")
    }

    #[test]
    fn each_write_of_a_batch_stands_alone() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let a = vertex("a", r#"{"n":1}"#);
        let results = db
            .api_each(
                "api",
                &[
                    ApiWrite::Create(a.clone()),
                    ApiWrite::Create(a.clone()),
                    ApiWrite::Replace(vertex("b", "{}")),
                    ApiWrite::Create(edge("e", "a", "c")),
                    ApiWrite::Patch {
                        id: a.id().clone(),
                        properties: serde_json::from_str(r#"{"m":2,"n":null}"#).unwrap(),
                    },
                    ApiWrite::Create(vertex("c", "{}")),
                    ApiWrite::Create(edge("e", "a", "c")),
                    ApiWrite::Delete(a.id().clone()),
                ],
                true,
                line,
            )
            .unwrap();
        assert_eq!(
            results[0].as_ref().unwrap().operation,
            Some(Operation::Create)
        );
        assert_eq!(refusal(&results[1]), &ApiRefusal::Exists(a.id().clone()));
        assert_eq!(
            refusal(&results[2]),
            &ApiRefusal::Absent(Id::new("pserver", "b"))
        );
        assert!(matches!(
            refusal(&results[3]),
            ApiRefusal::Graph(GraphRefusal::MissingEnd { role: "target", .. })
        ));
        let patched = results[4].as_ref().unwrap();
        assert_eq!(patched.entity.properties(), r#"{"m":2}"#);
        assert_eq!(patched.operation, Some(Operation::Update));
        assert!(matches!(
            refusal(&results[7]),
            ApiRefusal::Graph(GraphRefusal::HasEdges(_))
        ));
        assert_eq!(
            changes(&db),
            ["CREATE a", "UPDATE a", "CREATE c", "CREATE e"],
            "what was made is announced, in order, and nothing else"
        );
        let stored = db.model_get(a.id()).unwrap().unwrap();
        assert_eq!(stored.entity.properties(), r#"{"m":2}"#);
        assert_eq!(stored.owner.as_deref(), Some("api"));
    }

    #[test]
    fn a_batch_committed_without_an_fsync_is_announced_by_the_next_sync() {
        let dir = tempfile::tempdir().unwrap();
        let db = std::sync::Arc::new(Db::open(dir.path()).unwrap());
        let writes = [ApiWrite::Create(vertex("a", "{}"))];
        db.api_each("api", &writes, false, line).unwrap();
        assert_eq!(db.last_change(), 0, "not announced before it is durable");
        let cursor = db.cursor("reader", crate::Start::SavedElseOldest).unwrap();
        assert!(!cursor.has_more());
        db.sync().unwrap();
        assert_eq!(db.last_change(), 1);
        assert!(cursor.has_more());
        assert!(db.model_get(writes[0].id()).unwrap().is_some());
    }

    #[test]
    fn a_bulk_goes_all_or_none() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let writes = [
            ApiWrite::Create(vertex("a", "{}")),
            ApiWrite::Create(vertex("b", "{}")),
            ApiWrite::Create(edge("e", "a", "x")),
        ];
        let refused = db.api_all("api", &writes, line).unwrap().unwrap_err();
        assert_eq!(refused.0, 2);
        assert!(db.model_get(&Id::new("pserver", "a")).unwrap().is_none());
        assert!(changes(&db).is_empty(), "nothing announced");
        let writes = [
            ApiWrite::Create(vertex("a", "{}")),
            ApiWrite::Create(vertex("x", "{}")),
            ApiWrite::Create(edge("e", "a", "x")),
        ];
        let done = db.api_all("api", &writes, line).unwrap().unwrap();
        assert_eq!(done.len(), 3);
        assert_eq!(changes(&db), ["CREATE a", "CREATE x", "CREATE e"]);
        let versions: Vec<_> = done.iter().map(|d| d.version.unwrap()).collect();
        assert_eq!(
            versions,
            [1, 2, 3],
            "each change's version is its sequence number"
        );
    }

    #[test]
    fn a_plugins_entity_is_not_the_apis() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let mine = vertex("a", "{}");
        db.api_each("collector", &[ApiWrite::Create(mine.clone())], true, line)
            .unwrap();
        let results = db
            .api_each(
                "api",
                &[
                    ApiWrite::Replace(vertex("a", r#"{"x":1}"#)),
                    ApiWrite::Delete(mine.id().clone()),
                ],
                true,
                line,
            )
            .unwrap();
        for result in &results {
            assert_eq!(
                refusal(result),
                &ApiRefusal::Owned {
                    id: mine.id().clone(),
                    owner: "collector".into()
                }
            );
        }
        assert_eq!(db.model_get(mine.id()).unwrap().unwrap().entity, mine);
    }

    #[test]
    fn a_merge_patch_merges_objects_and_removes_nulls() {
        let mut target: Value = serde_json::from_str(r#"{"a":{"b":1,"c":2},"d":3}"#).unwrap();
        let patch: Value =
            serde_json::from_str(r#"{"a":{"b":null,"e":4},"d":[1],"f":"g"}"#).unwrap();
        merge_patch(&mut target, &patch);
        assert_eq!(
            target,
            serde_json::json!({"a":{"c":2,"e":4},"d":[1],"f":"g"})
        );
    }
}
