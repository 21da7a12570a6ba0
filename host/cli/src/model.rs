//! `synchro model get | list | flag | put | delete`: the model of a running host, through
//! its admin API.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use synchro_admin::{MAX_PAGE, PageRequest};
use synchro_model::OneLine;
use synchro_status::{
    ModelBookkeeping, ModelEdge, ModelEntity, ModelFilter, ModelFlags, ModelRef, ModelWrite,
    RoleOutcome,
};

use crate::status::admin;

/// Prints the entity `kind` `key` with its owner.
pub fn get(config: Option<&Path>, kind: &str, key: &str, json: bool) -> anyhow::Result<()> {
    let entity = admin(config, |c| async move { c.entity(kind, key).await })?;
    let mut out = std::io::stdout().lock();
    print(&mut out, &entity, json)?;
    Ok(())
}

/// Sets the operator's `flags` on the entity `kind` `key`, and prints it as it is then.
pub fn flag(
    config: Option<&Path>,
    kind: &str,
    key: &str,
    flags: ModelFlags,
    json: bool,
) -> anyhow::Result<()> {
    let entity = admin(config, |c| async move { c.flag(kind, key, &flags).await })?;
    let mut out = std::io::stdout().lock();
    print(&mut out, &entity, json)?;
    Ok(())
}

/// Writes the entity `kind` `key` with `properties` (an edge between `ends`, each `[KIND,
/// KEY]`), and prints it as it is then.
pub fn put(
    config: Option<&Path>,
    (kind, key): (&str, &str),
    properties: &str,
    ends: Option<[Vec<String>; 2]>,
    schema_version: Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    let properties = serde_json::value::RawValue::from_string(properties.to_owned())
        .context("the properties are not JSON")?;
    let end = |mut pair: Vec<String>| {
        let key = pair.pop().expect("clap takes two values");
        let kind = pair.pop().expect("clap takes two values");
        ModelRef { kind, key }
    };
    let write = ModelWrite {
        properties,
        schema_version,
        edge: ends.map(|[from, to]| ModelEdge {
            source: end(from),
            target: end(to),
        }),
    };
    let entity = admin(config, |c| async move { c.put(kind, key, &write).await })?;
    let mut out = std::io::stdout().lock();
    print(&mut out, &entity, json)?;
    Ok(())
}

/// Deletes the entity `kind` `key` (with its edges if `cascade`), and prints what went.
pub fn delete(config: Option<&Path>, kind: &str, key: &str, cascade: bool) -> anyhow::Result<()> {
    let deleted = admin(
        config,
        |c| async move { c.delete(kind, key, cascade).await },
    )?;
    let mut out = std::io::stdout().lock();
    for gone in &deleted.deleted {
        writeln!(
            out,
            "deleted {} {}",
            OneLine(&gone.kind),
            OneLine(&gone.key)
        )?;
    }
    Ok(())
}

/// Prints the model's entities (of `kind`, of `owner`, that `only` takes), by kind then
/// key, page by page as they come: every one, or the first `limit`.
pub fn list(
    config: Option<&Path>,
    kind: Option<String>,
    owner: Option<String>,
    only: Option<ModelFilter>,
    limit: Option<usize>,
    json: bool,
) -> anyhow::Result<()> {
    admin(config, |client| async move {
        let mut out = std::io::stdout().lock();
        let mut left = limit.unwrap_or(usize::MAX);
        let mut after: Option<ModelRef> = None;
        while left > 0 {
            let page = PageRequest {
                kind: kind.clone(),
                owner: owner.clone(),
                only,
                after: after.take(),
                limit: left.min(MAX_PAGE),
            };
            let page = client.entities(&page).await?;
            for entity in &page.entities {
                print(&mut out, entity, json)?;
            }
            left -= page.entities.len();
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        Ok(())
    })
}

/// One line: `KIND KEY (OWNER) [BOOKKEEPING] SOURCE -> TARGET PROPERTIES`, every text of
/// the plugins escaped so that none prints a line of its own; or the entity's JSON.
fn print(out: &mut impl Write, e: &ModelEntity, json: bool) -> std::io::Result<()> {
    if json {
        return writeln!(
            out,
            "{}",
            serde_json::to_string(e).map_err(std::io::Error::other)?
        );
    }
    let owner = e.owner.as_deref().unwrap_or("unclaimed");
    write!(
        out,
        "{} {} ({})",
        OneLine(&e.kind),
        OneLine(&e.key),
        OneLine(owner)
    )?;
    write!(out, " [{}]", Summary(&e.bookkeeping))?;
    if let Some(edge) = &e.edge {
        let end = |r: &ModelRef| format!("{} {}", OneLine(&r.kind), OneLine(&r.key));
        write!(out, " {} -> {}", end(&edge.source), end(&edge.target))?;
        for role in &e.dangling {
            write!(out, " (dangling {role})")?;
        }
    }
    if let Some(version) = &e.schema_version {
        write!(out, " schema-version {}", OneLine(version))?;
    }
    writeln!(out, " {}", OneLine(e.properties.get()))
}

/// The bookkeeping in a few words: `updated 5 enacted 4 needs-sync sync-failed: …`.
struct Summary<'b>(&'b ModelBookkeeping);

impl std::fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = self.0;
        write!(f, "updated {}", b.updated)?;
        let versions = [
            ("changed-by-policy", b.changed_by_policy),
            ("changed-by-step", b.changed_by_step),
            ("policed", b.policed),
            ("enacted", b.enacted),
        ];
        for (name, version) in versions {
            if let Some(v) = version {
                write!(f, " {name} {v}")?;
            }
        }
        let flags = [
            ("needs-policy", b.needs_policy),
            ("needs-sync", b.needs_sync),
            ("deleted", b.deleted),
            ("no-sync", b.no_sync),
            ("no-policy", b.no_policy),
            ("write-protect", b.write_protect),
        ];
        for (flag, set) in flags {
            if set {
                write!(f, " {flag}")?;
            }
        }
        // Which plugin failed, when several handle the kind.
        let roles = [
            ("sync", &b.sync, &b.steps),
            ("policy", &b.policy, &b.policies),
        ];
        for (role, summed, each) in roles {
            let named: Vec<(Option<&str>, &RoleOutcome)> = match each.len() {
                0 | 1 => vec![(None, summed)],
                _ => each
                    .iter()
                    .map(|p| (Some(p.plugin.as_str()), &p.outcome))
                    .collect(),
            };
            for (plugin, RoleOutcome { state, errors }) in named {
                if state != "failed" && state != "deferred" {
                    continue;
                }
                write!(f, " {role}-{state}")?;
                if let Some(plugin) = plugin {
                    write!(f, " ({})", OneLine(plugin))?;
                }
                if let Some(last) = errors.first() {
                    write!(f, ": {} {}", last.kind, OneLine(&last.message))?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The line of an entity whose JSON is `json` plus the bookkeeping `books`.
    fn line_with(json: &str, books: &str) -> String {
        // Spliced as text: a `Value` would round the long number.
        let json = format!(
            "{},\"bookkeeping\":{books}}}",
            json.strip_suffix('}').unwrap()
        );
        let entity: ModelEntity = serde_json::from_str(&json).unwrap();
        let mut out = Vec::new();
        print(&mut out, &entity, false).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn line(json: &str) -> String {
        line_with(
            json,
            r#"{"updated":3,"needs-sync":false,"sync":{"state":"pending"},"policy":{"state":"pending"},"deleted":false,"no-sync":true}"#,
        )
    }

    #[test]
    fn an_entity_prints_on_one_line_whatever_its_texts_hold() {
        assert_eq!(
            line(
                r#"{"kind":"pserver","key":"srv-1","owner":"inv","properties":{"n":12345678901234567890123}}"#
            ),
            "pserver srv-1 (inv) [updated 3 no-sync] {\"n\":12345678901234567890123}\n",
            "every digit of a number is kept"
        );
        assert_eq!(
            line(
                r#"{"kind":"e","key":"a/b","properties":{},"edge":{"source":{"kind":"vserver","key":"vm\n1"},"target":{"kind":"pserver","key":"s"}}}"#
            ),
            "e a/b (unclaimed) [updated 3 no-sync] vserver vm\\n1 -> pserver s {}\n"
        );
        // In the properties, a raw U+2028 (which serde_json does not escape).
        assert_eq!(
            line(
                "{\"kind\":\"k\",\"key\":\"x\\u202ey\",\"owner\":\"o\\r\",\"properties\":{\"t\":\"\u{2028}\"}}"
            ),
            "k x\\u{202e}y (o\\r) [updated 3 no-sync] {\"t\":\"\\u{2028}\"}\n"
        );
    }

    #[test]
    fn the_bookkeeping_says_what_is_pending_and_why_the_last_sync_failed() {
        let books = r#"{"updated":9,"changed-by-step":7,"enacted":5,"needs-sync":true,
            "sync":{"state":"failed","errors":[{"kind":"failed","message":"HTTP 500\nboom"},{"kind":"unavailable","message":"later"}]},
            "policy":{"state":"pending"},"deleted":true,"no-sync":false}"#;
        assert_eq!(
            line_with(
                r#"{"kind":"k","key":"a","owner":"o","properties":{}}"#,
                books
            ),
            "k a (o) [updated 9 changed-by-step 7 enacted 5 needs-sync deleted sync-failed: failed HTTP 500\\nboom] {}\n"
        );
        let two_steps = r#"{"updated":9,"needs-sync":true,"sync":{"state":"failed"},"policy":{"state":"done"},
            "steps":[{"plugin":"cmdb","version":9,"needs":false,"state":"done"},
                     {"plugin":"mon","needs":true,"state":"failed","errors":[{"kind":"failed","message":"down"}]}],
            "deleted":false,"no-sync":false,"write-protect":true}"#;
        assert_eq!(
            line_with(
                r#"{"kind":"k","key":"a","owner":"o","properties":{}}"#,
                two_steps
            ),
            "k a (o) [updated 9 needs-sync write-protect sync-failed (mon): failed down] {}\n"
        );
    }
}
