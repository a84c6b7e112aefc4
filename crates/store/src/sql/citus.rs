//! Citus (distributed PostgreSQL): the same migrations as plain PostgreSQL, and after each one,
//! in its transaction, every table it created is put in its place: a table holding one
//! practice's data (it has `practice_id`) is distributed by `practice_id` in the one colocation
//! group, so that a practice's rows of every table sit on the same node and every query scoped
//! by practice routes to it; a table the service shares (the practices themselves, registered
//! apps and pharmacies, which their credentials find before the practice is known, delivery
//! callbacks, when each practice's outbox next has work) is a reference table, copied to every
//! node.
//!
//! Citus distributes a table only when no foreign key joins it to a table that is still local,
//! and every table here is in one graph of keys rooted at `practice`; so the keys that touch the
//! new tables are taken off, the tables placed, and the same keys put back (Citus then enforces
//! them on every node). The audit log's append-only triggers are allowed on shards
//! (`citus.enable_unsafe_triggers`: they are row and statement triggers on the table itself,
//! with no access to other tables). DDL runs sequentially, so a migration stays one transaction.

use crate::db::Tx;
use crate::rows::Cols;
use crate::{StoreError, StoreResult};

/// Tables the service shares: reference tables (on every node). `practice` is the root of every
/// key; `patient_app` and `update_record_sender` are found by their client id (unique across the
/// service) before the practice is known; `outbox_callback` by the messaging provider's id;
/// `outbox_wake` (when each practice's outbox next has work) is read by the outbox worker across
/// practices, on one node.
pub const REFERENCE_TABLES: &[&str] =
    &["practice", "patient_app", "update_record_sender", "outbox_callback", "outbox_wake"];

/// Tables left on the coordinator only: the migrations' own record.
const LOCAL_TABLES: &[&str] = &["schema_migration"];

/// The settings each migration's transaction needs on Citus.
pub const SESSION: &str = "SET LOCAL citus.multi_shard_modify_mode TO 'sequential'; \
                           SET LOCAL citus.enable_unsafe_triggers TO on";

/// Whether the database is a Citus coordinator (the extension is installed).
pub async fn present(tx: &mut Tx) -> StoreResult<bool> {
    let rows =
        crate::db::query("SELECT COUNT(*) AS n FROM pg_extension WHERE extname = 'citus'").fetch_all(&mut *tx).await?;
    Ok(rows.first().map(|r| r.int("n")).transpose()?.unwrap_or(0) > 0)
}

/// The tables of the current schema that Citus does not yet manage, and whether each has a
/// `practice_id` column. A table that a migration made with a foreign key to a reference table
/// is one Citus took in by itself as a local table of the coordinator (partition method `n`,
/// no colocation group): it counts as not yet placed.
const UNPLACED: &str = "SELECT c.relname AS name, EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid \
     AND a.attname = 'practice_id' AND NOT a.attisdropped) AS per_practice \
     FROM pg_class c WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p') \
     AND NOT EXISTS (SELECT 1 FROM pg_dist_partition d WHERE d.logicalrelid = c.oid \
     AND NOT (d.partmethod = 'n' AND d.colocationid = 0)) ORDER BY c.relname";

/// A table name from the catalogue, checked to be a plain identifier before it is put in SQL.
fn ident(name: &str) -> StoreResult<&str> {
    if !name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
        Ok(name)
    } else {
        Err(StoreError::Migration(format!("table name {name:?} is not a plain identifier")))
    }
}

/// Places every table of the current schema that Citus does not yet manage, in `tx` (which has
/// run [`SESSION`]). Says how many it placed.
pub async fn place_new_tables(tx: &mut Tx) -> StoreResult<usize> {
    let rows = crate::db::query(UNPLACED).fetch_all(&mut *tx).await?;
    let mut tables = Vec::new();
    for r in &rows {
        let name = r.text("name")?;
        if !LOCAL_TABLES.contains(&name.as_str()) {
            tables.push((name, r.flag("per_practice")?));
        }
    }
    if tables.is_empty() {
        return Ok(0);
    }
    let names: Vec<String> =
        tables.iter().map(|(n, _)| ident(n).map(|n| format!("'{n}'"))).collect::<StoreResult<_>>()?;
    let listed = names.join(", ");
    // Every foreign key that touches a table about to be placed, as PostgreSQL would write it.
    let keys = crate::db::query(&format!(
        "SELECT k.conrelid::regclass::text AS owner, k.conname AS name, pg_get_constraintdef(k.oid) AS def \
         FROM pg_constraint k WHERE k.contype = 'f' AND k.connamespace = current_schema()::regnamespace \
         AND (k.conrelid::regclass::text IN ({listed}) OR k.confrelid::regclass::text IN ({listed})) ORDER BY 1, 2"
    ))
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(|r| Ok((r.text("owner")?, r.text("name")?, r.text("def")?)))
    .collect::<StoreResult<Vec<_>>>()?;
    for (owner, name, _) in &keys {
        run(tx, &format!("ALTER TABLE {} DROP CONSTRAINT \"{}\"", ident(owner)?, ident(name)?)).await?;
    }
    // A table Citus took in by itself goes back to being a plain table before it is placed.
    let taken_in = crate::db::query(&format!(
        "SELECT c.relname AS name FROM pg_dist_partition d JOIN pg_class c ON c.oid = d.logicalrelid \
         WHERE c.relnamespace = current_schema()::regnamespace AND d.partmethod = 'n' AND d.colocationid = 0 \
         AND c.relname IN ({listed})"
    ))
    .fetch_all(&mut *tx)
    .await?;
    for r in &taken_in {
        run(tx, &format!("SELECT undistribute_table('{}')", ident(&r.text("name")?)?)).await?;
    }
    // The colocation group: the practice tables already distributed here, or the first placed now.
    let anchor = crate::db::query(
        "SELECT c.relname AS name FROM pg_dist_partition d JOIN pg_class c ON c.oid = d.logicalrelid \
         WHERE c.relnamespace = current_schema()::regnamespace AND d.partmethod = 'h' ORDER BY c.relname LIMIT 1",
    )
    .fetch_all(&mut *tx)
    .await?
    .first()
    .map(|r| r.text("name"))
    .transpose()?;
    let mut anchor = anchor;
    for (name, per_practice) in &tables {
        let name = ident(name)?;
        if REFERENCE_TABLES.contains(&name) || !per_practice {
            run(tx, &format!("SELECT create_reference_table('{name}')")).await?;
        }
    }
    for (name, per_practice) in &tables {
        let name = ident(name)?;
        if REFERENCE_TABLES.contains(&name) || !per_practice {
            continue;
        }
        match &anchor {
            Some(a) => {
                run(tx, &format!("SELECT create_distributed_table('{name}', 'practice_id', colocate_with => '{a}')"))
                    .await?
            }
            None => {
                run(tx, &format!("SELECT create_distributed_table('{name}', 'practice_id')")).await?;
                anchor = Some(name.to_owned());
            }
        }
    }
    for (owner, name, def) in &keys {
        run(tx, &format!("ALTER TABLE {} ADD CONSTRAINT \"{}\" {def}", ident(owner)?, ident(name)?)).await?;
    }
    tracing::info!(tables = tables.len(), foreign_keys = keys.len(), "placed tables on the Citus cluster");
    Ok(tables.len())
}

/// A migration's statements one by one: Citus sends a schema change on to the workers in the
/// words it was written, which must then be one statement. Splits at `;` outside quoted text
/// (`'…'`, `"…"`, dollar-quoted bodies) and comments.
pub fn statements(sql: &str) -> Vec<&str> {
    let bytes = sql.as_bytes();
    let (mut out, mut start, mut i) = (Vec::new(), 0, 0);
    while i < bytes.len() {
        match bytes[i] {
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            q @ (b'\'' | b'"') => {
                i += 1;
                while i < bytes.len() && bytes[i] != q {
                    i += 1;
                }
            }
            b'$' => {
                // A dollar quote: $$ or $tag$, to the same tag again.
                let tag_end = sql[i + 1..].find('$').map(|e| i + 1 + e);
                if let Some(e) = tag_end.filter(|e| sql[i + 1..*e].chars().all(|c| c.is_alphanumeric() || c == '_')) {
                    let tag = &sql[i..=e];
                    i = sql[e + 1..].find(tag).map_or(bytes.len(), |f| e + 1 + f + tag.len() - 1);
                }
            }
            b';' => {
                out.push(&sql[start..=i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    out.push(&sql[start.min(sql.len())..]);
    out.into_iter().filter(|s| s.lines().any(|l| !l.trim().is_empty() && !l.trim_start().starts_with("--"))).collect()
}

async fn run(tx: &mut Tx, sql: &str) -> StoreResult<()> {
    tx.run_script(sql).await.map_err(|e| StoreError::Migration(format!("Citus: {sql}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_migration_splits_into_its_statements_and_no_further() {
        let sql = "-- a comment; not a statement\nCREATE TABLE a (x TEXT DEFAULT 'a;b');\n\
                   CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE 'no; never'; END $$;\n\
                   CREATE TRIGGER t BEFORE UPDATE ON a FOR EACH ROW EXECUTE FUNCTION f();\n-- done\n";
        let parts = statements(sql);
        assert_eq!(parts.len(), 3, "{parts:?}");
        assert!(parts[0].contains("'a;b'") && parts[1].contains("RAISE 'no; never'; END $$;"));
        assert_eq!(statements("SELECT 1"), ["SELECT 1"]);
        assert_eq!(statements("SELECT $tag$ ; $tag$; SELECT 2;").len(), 2);
    }
}
