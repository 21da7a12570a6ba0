//! The model's bookkeeping table: each entity's versions, statuses and flags (see
//! `synchro_model::bookkeeping`), beside its data rather than in it, so that recording a
//! sync or a policy run rewrites a few dozen bytes, not the entity.

use redb::{ReadableTable, Table, TableDefinition};

use synchro_model::bookkeeping::{Failure, Handlers, Progress, RoleStatus, State, UNATTRIBUTED};
use synchro_model::{Bookkeeping, EntityError, ErrorKind, Id, Version};

use crate::{DbError, dberr};

/// id (see [`Id::as_str`]) → encoded [`Bookkeeping`]. Every entity of the model has a
/// row; one written before bookkeeping existed reads as observed data created at version
/// 0: never synced outward until its writer says otherwise, and policed once.
pub(crate) const BOOKKEEPING: TableDefinition<&str, &[u8]> = TableDefinition::new("bookkeeping");

/// The encoding of a row; format 1, from before several handlers per kind, is read too.
const FORMAT: u8 = 2;
const DELETED: u8 = 1;
const NO_SYNC: u8 = 2;
const NO_POLICY: u8 = 4;
const WRITE_PROTECT: u8 = 8;

/// The bookkeeping of `id`: as stored, or that of an entity from before bookkeeping.
pub(crate) fn get(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    id: &Id,
) -> Result<Bookkeeping, DbError> {
    match table.get(id.as_str()).map_err(dberr)? {
        Some(row) => decode(row.value()).map_err(|why| damaged(id, why)),
        None => Ok(Bookkeeping::created(0, true)),
    }
}

pub(crate) fn put(
    table: &mut Table<&'static str, &'static [u8]>,
    id: &Id,
    bookkeeping: &Bookkeeping,
) -> Result<(), DbError> {
    let mut buf = Vec::with_capacity(64);
    encode(bookkeeping, &mut buf);
    table.insert(id.as_str(), buf.as_slice()).map_err(dberr)?;
    Ok(())
}

fn damaged(id: &Id, why: &str) -> DbError {
    DbError::Corrupt(EntityError::Corrupt(format!(
        "the bookkeeping of `{id}` is damaged: {why}"
    )))
}

/// `format (u8) · updated, changed-by-policy, changed-by-step (u64 LE, 0 for none) ·
/// flags (u8) · policies · steps`, the progress of a role's plugins being `count (u8) ·
/// (name (u8 length), done + 1 (u64 LE, 0 for none: an entity from before bookkeeping
/// is done at version 0), status)*` and a status `state (u8) ·
/// count (u8) · (kind label (u8 length), message (u32 LE length))*`.
fn encode(b: &Bookkeeping, out: &mut Vec<u8>) {
    out.push(FORMAT);
    for version in [Some(b.updated), b.changed_by_policy, b.changed_by_step] {
        out.extend_from_slice(&version.unwrap_or(0).to_le_bytes());
    }
    let flags = [
        (b.deleted, DELETED),
        (b.no_sync, NO_SYNC),
        (b.no_policy, NO_POLICY),
        (b.write_protect, WRITE_PROTECT),
    ];
    out.push(flags.iter().map(|(set, bit)| u8::from(*set) * bit).sum());
    for handlers in [&b.policies, &b.steps] {
        // Plugin names are at most 64 bytes, and a kind has a handful of handlers.
        let handlers: Vec<_> = handlers.iter().take(u8::MAX as usize).collect();
        out.push(handlers.len() as u8);
        for (plugin, progress) in handlers {
            out.push(plugin.len() as u8);
            out.extend_from_slice(plugin.as_bytes());
            let done = progress.done.map_or(0, |v| v.saturating_add(1));
            out.extend_from_slice(&done.to_le_bytes());
            encode_status(&progress.status, out);
        }
    }
}

fn encode_status(status: &RoleStatus, out: &mut Vec<u8>) {
    out.push(match status.state {
        State::Pending => 0,
        State::Done => 1,
        State::Deferred => 2,
        State::Failed => 3,
    });
    out.push(status.errors.len() as u8);
    for error in &status.errors {
        let label = error.kind.label();
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
        out.extend_from_slice(&(error.message.len() as u32).to_le_bytes());
        out.extend_from_slice(error.message.as_bytes());
    }
}

fn decode(mut bytes: &[u8]) -> Result<Bookkeeping, &'static str> {
    fn take<'b>(rest: &mut &'b [u8], n: usize) -> Result<&'b [u8], &'static str> {
        let (head, tail) = rest.split_at_checked(n).ok_or("truncated")?;
        *rest = tail;
        Ok(head)
    }
    fn byte(rest: &mut &[u8]) -> Result<u8, &'static str> {
        Ok(take(rest, 1)?[0])
    }
    fn version(rest: &mut &[u8]) -> Result<Option<Version>, &'static str> {
        let v = u64::from_le_bytes(take(rest, 8)?.try_into().expect("8 bytes"));
        Ok((v != 0).then_some(v))
    }
    fn status(rest: &mut &[u8]) -> Result<RoleStatus, &'static str> {
        let state = match byte(rest)? {
            0 => State::Pending,
            1 => State::Done,
            2 => State::Deferred,
            3 => State::Failed,
            _ => return Err("unknown state"),
        };
        let mut errors = Vec::new();
        for _ in 0..byte(rest)? {
            let n = byte(rest)? as usize;
            let label = std::str::from_utf8(take(rest, n)?).map_err(|_| "bad error kind")?;
            let kind = ErrorKind::from_label(label).ok_or("unknown error kind")?;
            let n = u32::from_le_bytes(take(rest, 4)?.try_into().expect("4 bytes")) as usize;
            let message = String::from_utf8(take(rest, n)?.to_vec()).map_err(|_| "bad message")?;
            errors.push(Failure { kind, message });
        }
        Ok(RoleStatus { state, errors })
    }
    fn handlers(rest: &mut &[u8]) -> Result<Handlers, &'static str> {
        let count = byte(rest)?;
        let mut recorded = Vec::with_capacity(count.into());
        for _ in 0..count {
            let n = byte(rest)? as usize;
            let plugin = std::str::from_utf8(take(rest, n)?).map_err(|_| "bad plugin name")?;
            let done = version(rest)?.map(|v| v - 1);
            let status = status(rest)?;
            recorded.push((plugin.to_owned(), Progress { done, status }));
        }
        Ok(Handlers::from_recorded(recorded))
    }
    /// Format 1's one policy's or step's progress, kept for the kind's handler (see
    /// [`UNATTRIBUTED`]).
    fn unattributed(done: Option<Version>, status: RoleStatus) -> Handlers {
        let progress = Progress { done, status };
        let recorded =
            (progress != Progress::default()).then(|| (UNATTRIBUTED.to_owned(), progress));
        Handlers::from_recorded(recorded.into_iter().collect())
    }
    let format = byte(&mut bytes)?;
    if format != FORMAT && format != 1 {
        return Err("unknown format");
    }
    let updated = version(&mut bytes)?.unwrap_or(0);
    let (changed_by_policy, changed_by_step) = (version(&mut bytes)?, version(&mut bytes)?);
    let (policies, steps, flags) = if format == 1 {
        let (policed, enacted) = (version(&mut bytes)?, version(&mut bytes)?);
        let flags = byte(&mut bytes)?;
        let policy = status(&mut bytes)?;
        let backend = status(&mut bytes)?;
        let policies = unattributed(policed, policy);
        (policies, unattributed(enacted, backend), flags)
    } else {
        let flags = byte(&mut bytes)?;
        (handlers(&mut bytes)?, handlers(&mut bytes)?, flags)
    };
    if !bytes.is_empty() {
        return Err("trailing bytes");
    }
    Ok(Bookkeeping {
        updated,
        changed_by_policy,
        changed_by_step,
        policies,
        steps,
        deleted: flags & DELETED != 0,
        no_sync: flags & NO_SYNC != 0,
        no_policy: flags & NO_POLICY != 0,
        write_protect: flags & WRITE_PROTECT != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bookkeeping_round_trips_and_damage_is_named() {
        let mut b = Bookkeeping::created(7, true);
        b.changed_by_step = Some(9);
        b.enacted("push", 8);
        b.deleted = true;
        b.write_protect = true;
        b.steps.entry("mirror").status.failed(Failure {
            kind: ErrorKind::Unavailable,
            message: "the API answered 503 ✓".into(),
        });
        b.policed("stamp", 7);
        b.policed("old", 0);
        let mut bytes = Vec::new();
        encode(&b, &mut bytes);
        assert_eq!(decode(&bytes), Ok(b));
        assert_eq!(decode(&bytes[..bytes.len() - 1]), Err("truncated"));
        assert_eq!(decode(&[9]), Err("unknown format"));
        let error = damaged(&Id::new("pserver", "a"), "truncated").to_string();
        assert!(error.contains("pserver `a`"), "{error}");
    }

    #[test]
    fn format_1_progress_is_kept_unattributed() {
        // updated 7, changed-by-policy none, changed-by-step 9, policed none, enacted 8,
        // flags deleted, policy pending, backend done.
        let mut bytes = vec![1];
        for v in [7u64, 0, 9, 0, 8] {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        bytes.extend_from_slice(&[DELETED, 0, 0, 1, 0]);
        let mut b = decode(&bytes).unwrap();
        assert!(b.deleted && b.policies.iter().next().is_none());
        assert!(b.is_outside() && b.steps.of(UNATTRIBUTED).is_some());
        assert!(b.steps.attribute("push"));
        assert!(b.is_outside_for("push") && b.needs_sync("push"));
        b.removed("push");
        assert!(!b.is_outside());
    }
}
