//! How change notifications travel on the bus, and how they wait in the outbox.

use synchro_model::{Change, Id, Operation};

use crate::Message;

/// The bus topic that carries change notifications.
pub const CHANGES: &str = "changes";

/// Whether the host alone writes `topic`: a plugin publishing there could forge changes
/// attributed to another plugin, whatever its grants say.
pub fn is_host_topic(topic: &str) -> bool {
    topic == CHANGES
}

/// The bus message of a change: its Gizmo-shaped JSON, keyed by entity, with headers
/// that let consumers filter by kind or plugin without parsing the payload.
pub fn change_message(change: &Change) -> Message {
    message(
        change.entity.key(),
        change.operation,
        change.entity.kind(),
        &change.source,
        change.to_json(),
        change.timestamp,
    )
}

fn message(
    key: &str,
    operation: Operation,
    kind: &str,
    source: &str,
    payload: Vec<u8>,
    timestamp: u64,
) -> Message {
    let mut message = Message::new(CHANGES, payload)
        .with_key(key)
        .with_header("operation", operation.as_str())
        .with_header("kind", kind)
        .with_header("source", source);
    message.timestamp = timestamp;
    message
}

/// Which changes a reader wants — by kind, operation and the plugin that made them — as
/// `synchro run`'s printer and the admin API's change feed take them. An empty list
/// takes every value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeFilter {
    pub kinds: Vec<String>,
    pub operations: Vec<Operation>,
    pub sources: Vec<String>,
}

impl ChangeFilter {
    /// Whether the change `message` (as [`change_message`] makes it) passes.
    pub fn matches(&self, message: &Message) -> bool {
        let header = |name| message.header(name).unwrap_or_default();
        Self::operation(header("operation"))
            .is_ok_and(|operation| self.takes(header("kind"), operation, header("source")))
    }

    /// Whether a change of `kind`, by `source`, passes.
    pub fn takes(&self, kind: &str, operation: Operation, source: &str) -> bool {
        let takes =
            |values: &[String], value: &str| values.is_empty() || values.iter().any(|v| v == value);
        takes(&self.kinds, kind)
            && takes(&self.sources, source)
            && (self.operations.is_empty() || self.operations.contains(&operation))
    }

    /// `CREATE`, `UPDATE` or `DELETE` (any case), or why not.
    pub fn operation(text: &str) -> Result<Operation, String> {
        match text.to_ascii_uppercase().as_str() {
            "CREATE" => Ok(Operation::Create),
            "UPDATE" => Ok(Operation::Update),
            "DELETE" => Ok(Operation::Delete),
            _ => Err(format!(
                "`{text}` is not an operation: CREATE, UPDATE or DELETE"
            )),
        }
    }
}

/// A change as the outbox keeps it: what [`record_message`] makes its bus message of.
/// The JSON is built once, by the writer; the headers are rebuilt from three short fields.
///
/// `timestamp (u64 LE) · operation (u8) · key, kind, source (u32 LE length, bytes) · JSON`
pub fn change_record(change: &Change) -> Vec<u8> {
    let (key, kind, source) = (change.entity.key(), change.entity.kind(), &change.source);
    let mut record =
        Vec::with_capacity(21 + key.len() + kind.len() + source.len() + change.json_size_hint());
    record.extend_from_slice(&change.timestamp.to_le_bytes());
    record.push(match change.operation {
        Operation::Create => 0,
        Operation::Update => 1,
        Operation::Delete => 2,
    });
    for text in [key, kind, source.as_str()] {
        record.extend_from_slice(&(text.len() as u32).to_le_bytes());
        record.extend_from_slice(text.as_bytes());
    }
    change.write_json(&mut record);
    record
}

/// A change record that is not one [`change_record`] wrote: the database is damaged.
#[derive(Debug, thiserror::Error)]
#[error("a change record in the outbox is damaged")]
pub struct DamagedRecord;

/// The bus message of a record [`change_record`] wrote.
pub fn record_message(record: &[u8]) -> Result<Message, DamagedRecord> {
    let head = RecordHead::parse(record)?;
    Ok(message(
        head.key,
        head.operation,
        head.kind,
        head.source,
        head.json.to_vec(),
        head.timestamp,
    ))
}

/// The entity a record [`change_record`] wrote is about: what a reader that only routes
/// changes needs, without copying the change's JSON.
pub fn record_id(record: &[u8]) -> Result<Id, DamagedRecord> {
    let head = RecordHead::parse(record)?;
    Ok(Id::new(head.kind, head.key))
}

/// The fields of a record [`change_record`] wrote, borrowed from it: what a reader that
/// filters or forwards changes needs without building their bus messages.
#[derive(Debug, Clone, Copy)]
pub struct RecordHead<'r> {
    pub timestamp: u64,
    pub operation: Operation,
    pub key: &'r str,
    pub kind: &'r str,
    pub source: &'r str,
    /// The change's notification, as its bus message's payload.
    pub json: &'r [u8],
}

impl<'r> RecordHead<'r> {
    pub fn parse(record: &'r [u8]) -> Result<RecordHead<'r>, DamagedRecord> {
        fn take<'r>(rest: &mut &'r [u8], n: usize) -> Result<&'r [u8], DamagedRecord> {
            let (head, tail) = rest.split_at_checked(n).ok_or(DamagedRecord)?;
            *rest = tail;
            Ok(head)
        }
        fn text<'r>(rest: &mut &'r [u8]) -> Result<&'r str, DamagedRecord> {
            let len = u32::from_le_bytes(take(rest, 4)?.try_into().expect("4 bytes"));
            std::str::from_utf8(take(rest, len as usize)?).map_err(|_| DamagedRecord)
        }
        let mut rest = record;
        let timestamp = u64::from_le_bytes(take(&mut rest, 8)?.try_into().expect("8 bytes"));
        let operation = match take(&mut rest, 1)?[0] {
            0 => Operation::Create,
            1 => Operation::Update,
            2 => Operation::Delete,
            _ => return Err(DamagedRecord),
        };
        let (key, kind, source) = (text(&mut rest)?, text(&mut rest)?, text(&mut rest)?);
        Ok(RecordHead {
            timestamp,
            operation,
            key,
            kind,
            source,
            json: rest,
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_filter_takes_what_each_of_its_lists_names() {
        let change = |kind: &str, operation, source: &str| {
            let entity =
                synchro_model::Entity::new("k".into(), kind.into(), "{}".into(), None, None);
            change_message(&Change {
                operation,
                entity: entity.unwrap(),
                timestamp: 1,
                transaction_id: "t".into(),
                database_transaction_id: None,
                source: source.into(),
            })
        };
        let filter = ChangeFilter {
            kinds: vec!["pserver".into(), "vserver".into()],
            operations: vec![ChangeFilter::operation("delete").unwrap()],
            sources: vec![],
        };
        assert!(filter.matches(&change("vserver", Operation::Delete, "inv")));
        assert!(!filter.matches(&change("vserver", Operation::Create, "inv")));
        assert!(!filter.matches(&change("rack", Operation::Delete, "inv")));
        assert!(ChangeFilter::default().matches(&change("rack", Operation::Create, "x")));
        let by_source = ChangeFilter {
            sources: vec!["api".into()],
            ..ChangeFilter::default()
        };
        assert!(!by_source.matches(&change("rack", Operation::Create, "inv")));
        assert!(
            ChangeFilter::operation("MERGE")
                .unwrap_err()
                .contains("`MERGE`")
        );
    }

    use super::*;
    use synchro_model::{Entity, Operation};

    #[test]
    fn a_change_is_keyed_by_entity_with_filterable_headers() {
        let entity = Entity::new("vm-1".into(), "vserver".into(), "{}".into(), None, None).unwrap();
        let change = Change {
            operation: Operation::Delete,
            entity,
            timestamp: 1,
            transaction_id: "t".into(),
            database_transaction_id: None,
            source: "inv".into(),
        };
        let message = change_message(&change);
        assert_eq!(message.topic, CHANGES);
        assert_eq!(message.header("kind"), Some("vserver"));
        assert_eq!(message.header("operation"), Some("DELETE"));
        assert_eq!(message.header("source"), Some("inv"));
        assert_eq!(message.key.as_deref(), Some(b"vm-1".as_slice()));
        assert_eq!(message.timestamp, 1);
    }

    #[test]
    fn a_record_gives_back_the_change_message() {
        let entity = Entity::new(
            "k".into(),
            "pserver".into(),
            r#"{"a":1}"#.into(),
            None,
            None,
        )
        .unwrap();
        let change = Change {
            operation: Operation::Update,
            entity,
            timestamp: 1_700_000_000_000,
            transaction_id: "t".into(),
            database_transaction_id: Some("d".into()),
            source: "inv".into(),
        };
        let record = change_record(&change);
        assert_eq!(record_message(&record).unwrap(), change_message(&change));
        assert_eq!(record_id(&record).unwrap(), Id::new("pserver", "k"));
        for cut in 0..record.len() - change.to_json().len() {
            assert!(record_message(&record[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = record.clone();
        bad[8] = 7;
        assert!(record_message(&bad).is_err());
    }
}
