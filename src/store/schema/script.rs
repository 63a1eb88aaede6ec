//! The statements a database owner runs so that a role without `CREATE` can use vapictl, and
//! the runner of vapictl's own migrations with its errors.

use sqlx::migrate::{MigrateError, Migrator};

use super::{Decision, Dialect, Found, MIGRATIONS_TABLE};
use crate::store::StoreError;

/// The statements a database owner runs so that a role without `CREATE` can use vapictl: the app
/// DDL still needed, vapictl's pending migrations with their bookkeeping rows (exactly as vapictl
/// would have written them), and the grants `role` needs afterwards.
pub(crate) fn owner_script(
    dialect: Dialect,
    decision: &Decision,
    migrations: &Migrator,
    found: &Found,
    role: Option<&str>,
) -> String {
    let mut out: Vec<String> = decision
        .ddl
        .iter()
        .map(|s| format!("{};", s.trim_end().trim_end_matches(';')))
        .collect();
    if decision.migrations_pending {
        let (checksum_of, time_type, bytes_type) = match dialect {
            Dialect::Postgres => (
                (|c: &[u8]| format!("'\\x{}'", hex::encode(c))) as fn(&[u8]) -> String,
                "TIMESTAMPTZ NOT NULL DEFAULT now()",
                "BYTEA",
            ),
            Dialect::Sqlite => (
                (|c: &[u8]| format!("X'{}'", hex::encode(c))) as fn(&[u8]) -> String,
                "TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP",
                "BLOB",
            ),
        };
        out.push(format!(
            "CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (version BIGINT PRIMARY KEY, \
             description TEXT NOT NULL, installed_on {time_type}, success BOOLEAN NOT NULL, \
             checksum {bytes_type} NOT NULL, execution_time BIGINT NOT NULL);"
        ));
        let applied = found.applied.clone().unwrap_or_default();
        for m in migrations.iter() {
            if applied.iter().any(|(v, _)| *v == m.version) {
                continue;
            }
            out.push(m.sql.as_str().trim().to_owned());
            out.push(format!(
                "INSERT INTO {MIGRATIONS_TABLE} (version, description, success, checksum, \
                 execution_time) VALUES ({}, '{}', TRUE, {}, 0);",
                m.version,
                m.description.replace('\'', "''"),
                checksum_of(&m.checksum)
            ));
        }
    }
    if let (Dialect::Postgres, Some(role)) = (dialect, role) {
        out.push(format!(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON phone_numbers, assistants, vapictl_locks, \
             vapictl_changes, vapictl_applied_plans, vapictl_twilio_urls TO \"{role}\";\n\
             GRANT SELECT ON squads, {MIGRATIONS_TABLE} TO \"{role}\";"
        ));
    }
    out.join("\n")
}

/// `embedded` (a `migrate!` set) recording into [`MIGRATIONS_TABLE`]. Locking is off: the caller
/// already serializes the whole migration step.
///
/// Run it with `run_direct` rather than `run`: `run`'s `Acquire` bound makes the future fail
/// `Send` for a higher-ranked lifetime, which would make [`Store::connect`](crate::store::Store::connect)
/// unusable in `tokio::spawn`. sqlx exposes `run_direct` (hidden from its docs) for exactly that.
pub(crate) fn migrator(embedded: &Migrator) -> Migrator {
    let mut migrator = Migrator::with_migrations(embedded.iter().cloned().collect());
    migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
    migrator.set_locking(false);
    migrator
}

/// A migration error as the user sees it.
pub(crate) fn migration_failed(err: impl std::fmt::Display) -> StoreError {
    StoreError::MigrationFailed {
        reason: err.to_string(),
    }
}

/// A failed schema statement: its cause (never PostgreSQL's source line), or its own variant.
pub(crate) fn ddl_failed(err: &sqlx::Error) -> StoreError {
    migration_failed(crate::store::DbCause::of(err))
}

/// A failed run of vapictl's migrations. `special` recognizes driver errors that deserve their
/// own variant (a read-only database, say).
pub(crate) fn migrate_error(
    err: MigrateError,
    special: impl Fn(&sqlx::Error) -> Option<StoreError>,
) -> StoreError {
    match &err {
        MigrateError::Execute(e) | MigrateError::ExecuteMigration(e, _) => {
            special(e).unwrap_or_else(|| ddl_failed(e))
        }
        MigrateError::VersionMissing(version) => {
            StoreError::SchemaFromNewerVersion { version: *version }
        }
        _ => migration_failed(err),
    }
}
