//! What can go wrong talking to the database, one variant per condition the user can act on.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use uuid::Uuid;

/// An error from [`Store`](super::Store).
///
/// Connection errors carry the URL through [`redact_url`](super::redact_url) and a reason scrubbed
/// of the password, so no variant can echo a credential.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "`{url}` is not a database URL vapictl understands\nhint: use `postgres://user@host:5432/db` or `sqlite://path/to/file.db`"
    )]
    UnsupportedUrl { url: String },

    #[error("the database URL `{url}` is malformed: {reason}")]
    InvalidUrl { url: String, reason: String },

    #[error(
        "cannot reach the database at `{url}`: {reason}\nhint: check that the server is running and that host and port are right"
    )]
    Unreachable { url: String, reason: String },

    #[error(
        "connecting to the database at `{url}` took longer than {}s\nhint: check host, port and firewall, or raise the connect timeout",
        after.as_secs_f64()
    )]
    ConnectTimedOut { url: String, after: Duration },

    #[error(
        "the database at `{url}` refused the credentials: {reason}\nhint: check the user and password in the URL (or `PGPASSWORD`)"
    )]
    AuthenticationFailed { url: String, reason: String },

    #[error("the database named in `{url}` does not exist: {reason}\nhint: create it first")]
    DatabaseMissing { url: String, reason: String },

    #[error(
        "cannot open the SQLite database at `{url}`: {reason}\nhint: check that the directory exists and is writable"
    )]
    CannotOpenFile { url: String, reason: String },

    #[error(
        "the database at `{url}` is read-only: {reason}\nhint: vapictl needs write access to migrate the schema and record changes"
    )]
    ReadOnly { url: String, reason: String },

    #[error("could not bring the database schema up to date: {reason}")]
    MigrationFailed { reason: String },

    #[error(
        "the database was migrated by a newer vapictl (it has migration {version}, which this one does not know)\nhint: upgrade vapictl"
    )]
    SchemaFromNewerVersion { version: i64 },

    #[error(
        "the existing `{table}` table lacks columns vapictl needs: {}\nhint: vapictl adds only `notes` and its own `vapictl_*` columns; add the others in the app's schema",
        missing.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ")
    )]
    AppSchemaMismatch {
        table: &'static str,
        missing: Vec<String>,
    },

    #[error(
        "the number `{number}` is already recorded in `phone_numbers`\nhint: another user may hold it; run `vapictl plan` again to see who"
    )]
    NumberAlreadyRecorded {
        /// Masked with [`mask_number`](crate::state::mask_number).
        number: String,
    },

    #[error(
        "no `phone_numbers` row has the id `{row_id}`\nhint: the database changed since the plan was made; run `vapictl plan` again"
    )]
    RowNotFound { row_id: Uuid },

    #[error(
        "the `phone_numbers` row `{row_id}` belongs to another user, and vapictl changes only the owner's rows"
    )]
    RowOwnedByAnotherUser { row_id: Uuid },

    #[error(
        "owner `{owner}` is locked by another vapictl run: host `{host}`, pid {pid}, run `{run_id}`, since {}\nhint: wait for that run to finish; if it crashed, its lock expires at {}",
        since.to_rfc3339_opts(SecondsFormat::Secs, true),
        expires_at.to_rfc3339_opts(SecondsFormat::Secs, true)
    )]
    LockHeld {
        owner: Uuid,
        host: String,
        pid: i64,
        run_id: String,
        since: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    },

    #[error(
        "the lock on owner `{owner}` was lost: its lease expired or another run took it over\nhint: run `vapictl plan` again before applying"
    )]
    LockLost { owner: Uuid },

    #[error(
        "interrupted while waiting for the lock on owner `{owner}`; nothing was changed\nhint: run the apply again when the other run has finished"
    )]
    LockWaitInterrupted { owner: Uuid },

    #[error("`{table}.{column}` holds a value vapictl cannot read: {reason}")]
    UnreadableValue {
        table: &'static str,
        column: &'static str,
        reason: String,
    },

    #[error("the database query failed")]
    QueryFailed(#[source] sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        StoreError::QueryFailed(err)
    }
}
