//! What vapictl expects of the application's tables, and what it may add to them.

use sqlx::migrate::{MigrateError, Migrator};

use super::StoreError;

/// sqlx's bookkeeping table for vapictl's own migrations. Not sqlx's default `_sqlx_migrations`:
/// the application may run its own sqlx migrations on the same database, and two migration sets
/// sharing one table refuse each other's history.
const MIGRATIONS_TABLE: &str = "vapictl_schema_migrations";

/// Columns vapictl reads and writes in an application's `phone_numbers` table and never adds.
pub(crate) const PHONE_NUMBERS_REQUIRED: &[&str] = &[
    "id",
    "user_id",
    "phone_number",
    "friendly_name",
    "provider",
    "vapi_phone_id",
    "vapi_credential_id",
    "twilio_account_sid",
    "twilio_auth_token",
    "assigned_assistant_id",
    "created_at",
    "updated_at",
];

/// Columns vapictl reads in an application's `assistants` table.
pub(crate) const ASSISTANTS_REQUIRED: &[&str] = &["id", "user_id", "name", "vapi_assistant_id"];

/// A column vapictl adds to `phone_numbers` when it is missing. Each is nullable or has a constant
/// default, so adding it rewrites no rows (SQLite, and PostgreSQL since 11).
pub(crate) struct AddedColumn {
    pub name: &'static str,
    pub sqlite: &'static str,
    pub postgres: &'static str,
}

pub(crate) const PHONE_NUMBERS_ADDED: &[AddedColumn] = &[
    AddedColumn {
        name: "notes",
        sqlite: "TEXT",
        postgres: "text",
    },
    AddedColumn {
        name: "vapictl_token_digest",
        sqlite: "TEXT",
        postgres: "text",
    },
    AddedColumn {
        name: "vapictl_protected",
        sqlite: "INTEGER NOT NULL DEFAULT 0",
        postgres: "boolean NOT NULL DEFAULT false",
    },
    // What vapictl last applied to `server` and `smsEnabled`, which the row has no column for:
    // it tells a spec edit from an edit in Vapi (issue 9).
    AddedColumn {
        name: "vapictl_applied",
        sqlite: "TEXT",
        postgres: "text",
    },
];

/// The columns of [`PHONE_NUMBERS_ADDED`] that `present` (lowercase names) lacks.
pub(crate) fn columns_to_add(present: &[String]) -> Vec<&'static AddedColumn> {
    PHONE_NUMBERS_ADDED
        .iter()
        .filter(|c| !present.iter().any(|p| p == c.name))
        .collect()
}

/// Refuses a table that lacks a column vapictl needs but may not add.
pub(crate) fn check_required(
    table: &'static str,
    required: &[&str],
    present: &[String],
) -> Result<(), StoreError> {
    let missing: Vec<String> = required
        .iter()
        .filter(|r| !present.iter().any(|p| p == *r))
        .map(|r| r.to_string())
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(StoreError::AppSchemaMismatch { table, missing })
    }
}

/// `embedded` (a `migrate!` set) recording into [`MIGRATIONS_TABLE`]. Locking is off: the caller
/// already serializes the whole migration step.
///
/// Run it with `run_direct` rather than `run`: `run`'s `Acquire` bound makes the future fail
/// `Send` for a higher-ranked lifetime, which would make [`Store::connect`](super::Store::connect)
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

/// A failed run of vapictl's migrations. `special` recognizes driver errors that deserve their
/// own variant (a read-only database, say).
pub(crate) fn migrate_error(
    err: MigrateError,
    special: impl Fn(&sqlx::Error) -> Option<StoreError>,
) -> StoreError {
    match &err {
        MigrateError::Execute(e) | MigrateError::ExecuteMigration(e, _) => {
            special(e).unwrap_or_else(|| migration_failed(err))
        }
        MigrateError::VersionMissing(version) => {
            StoreError::SchemaFromNewerVersion { version: *version }
        }
        _ => migration_failed(err),
    }
}
