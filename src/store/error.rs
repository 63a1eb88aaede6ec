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
        "the database at `{url}` is read-only: {reason}\nhint: vapictl needs write access to create what the schema lacks (and to record changes)"
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

    #[error("a database statement failed: {0}")]
    QueryFailed(Box<DbCause>),

    #[error("the database rejected vapictl's write to `{table}`: {cause}\nhint: {hint}")]
    RowRejected {
        table: &'static str,
        cause: Box<DbCause>,
        hint: String,
    },

    #[error("the database role may not {action}: {cause}\nhint: {hint}")]
    InsufficientPrivilege {
        /// What was attempted (`change the schema`, `write to `phone_numbers``, …).
        action: String,
        cause: Box<DbCause>,
        hint: String,
    },

    #[error(
        "the app's {} not on the search path (`{search_path}`), but another schema has {}: {}; vapictl will not create empty {} beside {}\nhint: put the app's schema on the search path in the URL, e.g. `?options=-c%20search_path%3D{}` (`options=-c search_path=…`, percent-encoded)",
        tables_phrase(missing),
        if missing.len() == 1 { "it" } else { "them" },
        found.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", "),
        if missing.len() == 1 { "one" } else { "ones" },
        if found.len() == 1 { "it" } else { "them" },
        found.first().and_then(|t| t.split_once('.')).map_or("app", |(schema, _)| schema)
    )]
    AppTablesElsewhere {
        /// The app tables the search path does not reach.
        missing: Vec<String>,
        /// `SHOW search_path`, as the session has it.
        search_path: String,
        /// `schema.table` of each table of that name outside the search path.
        found: Vec<String>,
    },

    #[error(
        "the app's schema requires what vapictl cannot write, so nothing was changed (in Vapi or the database):{}",
        problems.iter().map(|p| format!("\n  {p}")).collect::<String>()
    )]
    AppSchemaUnsupported { problems: Vec<SchemaProblem> },
}

fn tables_phrase(tables: &[String]) -> String {
    let names: Vec<String> = tables.iter().map(|t| format!("`{t}`")).collect();
    match names.len() {
        1 => format!("{} table is", names[0]),
        _ => format!("{} tables are", names.join(" and ")),
    }
}

/// One way an application table cannot take vapictl's writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaProblem {
    pub table: String,
    pub column: String,
    /// What is wrong, after the column's name (`is NOT NULL without a default, …`).
    pub problem: String,
    /// What to do about it.
    pub hint: String,
}

impl std::fmt::Display for SchemaProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}.{}` {}\n  hint: {}",
            self.table, self.column, self.problem, self.hint
        )
    }
}

/// What the database said when it refused a statement: its message, SQLSTATE (or SQLite's
/// extended code) and, when it names them, the constraint, table and column.
///
/// Never the row: PostgreSQL's `DETAIL` ("Failing row contains (…)", "Key (…)=(…)") would show
/// values (a ciphertext, another user's number) and is dropped; runs of seven or more digits in
/// the message are masked to their last four. PostgreSQL's own source line, which sqlx appends
/// as " at line N", is not kept: it is a line of PostgreSQL's C code, not of the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbCause {
    pub message: String,
    pub code: Option<String>,
    pub constraint: Option<String>,
    pub table: Option<String>,
    pub column: Option<String>,
}

impl std::fmt::Display for DbCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)?;
        let mut names = Vec::new();
        if let Some(c) = &self.constraint
            && !self.message.contains(c.as_str())
        {
            names.push(format!("constraint `{c}`"));
        }
        match (&self.table, &self.column) {
            (Some(t), Some(c)) => names.push(format!("column `{t}.{c}`")),
            (None, Some(c)) => names.push(format!("column `{c}`")),
            (Some(t), None) if !self.message.contains(t.as_str()) => {
                names.push(format!("table `{t}`"))
            }
            _ => {}
        }
        if let Some(code) = &self.code {
            names.push(format!("code {code}"));
        }
        if !names.is_empty() {
            write!(f, " ({})", names.join(", "))?;
        }
        Ok(())
    }
}

impl DbCause {
    /// The cause of `err`, free of row values and of PostgreSQL's source line.
    pub fn of(err: &sqlx::Error) -> DbCause {
        let Some(db) = err.as_database_error() else {
            return DbCause {
                message: mask_digit_runs(&strip_source_line(&err.to_string())),
                code: None,
                constraint: None,
                table: None,
                column: None,
            };
        };
        let mut cause = DbCause {
            message: mask_digit_runs(db.message()),
            code: db.code().map(|c| c.into_owned()),
            constraint: db.constraint().map(str::to_owned),
            table: db.table().map(str::to_owned),
            column: None,
        };
        if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
            cause.column = pg.column().map(str::to_owned).or_else(|| {
                // A unique violation names its columns only in DETAIL: `Key (a, b)=(…) …`.
                pg.detail()
                    .and_then(|d| d.strip_prefix("Key ("))
                    .and_then(|d| d.split_once(")="))
                    .map(|(columns, _)| columns.to_owned())
            });
        }
        cause
    }

    /// PostgreSQL's SQLSTATE or SQLite's extended result code.
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }
}

/// Removes a trailing ` at line N` (sqlx's rendering of PostgreSQL's source line).
fn strip_source_line(message: &str) -> String {
    if let Some(at) = message.rfind(" at line ")
        && message[at + 9..].chars().all(|c| c.is_ascii_digit())
        && at + 9 < message.len()
    {
        return message[..at].to_owned();
    }
    message.to_owned()
}

/// Masks every run of seven or more digits (a phone number, say) to its last four.
pub(crate) fn mask_digit_runs(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.len() >= 7 {
            out.push('…');
            out.push_str(&run[run.len() - 4..]);
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in message.chars() {
        if c.is_ascii_digit() {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

impl From<sqlx::Error> for StoreError {
    /// A failed statement, by its cause. A refused privilege gets its own variant (SQLSTATE
    /// 42501; SQLite's read-only file).
    fn from(err: sqlx::Error) -> Self {
        let cause = DbCause::of(&err);
        let code = cause.code().unwrap_or_default().to_owned();
        let sqlite_read_only = code.parse::<i32>().is_ok_and(|c| c & 0xff == 8)
            && err
                .as_database_error()
                .is_some_and(|d| d.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some());
        let cause = Box::new(cause);
        if code == "42501" {
            StoreError::InsufficientPrivilege {
                action: "run this statement".to_owned(),
                hint: "grant the role SELECT, INSERT, UPDATE and DELETE on `phone_numbers`, \
                       `assistants` and vapictl's tables (`vapictl_locks`, `vapictl_changes`, \
                       `vapictl_applied_plans`, `vapictl_twilio_urls`, `vapictl_schema_migrations`)"
                    .to_owned(),
                cause,
            }
        } else if sqlite_read_only {
            StoreError::InsufficientPrivilege {
                action: "write to the SQLite file".to_owned(),
                hint: "vapictl needs write access to the database file and its directory"
                    .to_owned(),
                cause,
            }
        } else {
            StoreError::QueryFailed(cause)
        }
    }
}

/// A failed write of the row for `number`, by what the database objected to: a unique violation
/// on `phone_number` means another row already holds the number; any other constraint or type
/// error is [`StoreError::RowRejected`], naming the constraint (with its definition when known),
/// the column and what to do.
pub(crate) fn write_error(
    err: sqlx::Error,
    number: &str,
    app: &super::schema::AppSchema,
) -> StoreError {
    use sqlx::error::ErrorKind;
    let Some(db) = err.as_database_error() else {
        return err.into();
    };
    let cause = DbCause::of(&err);
    let column = cause.column.clone();
    let hint = match db.kind() {
        ErrorKind::UniqueViolation
            if column
                .as_deref()
                .unwrap_or(&cause.message)
                .contains("phone_number") =>
        {
            return StoreError::NumberAlreadyRecorded {
                number: crate::state::mask_number(number),
            };
        }
        ErrorKind::UniqueViolation => {
            "another row already has this value in a column the app made unique".to_owned()
        }
        ErrorKind::CheckViolation => {
            // PostgreSQL names the constraint; SQLite says `CHECK constraint failed: NAME`.
            let name = cause.constraint.clone().or_else(|| {
                cause
                    .message
                    .split_once("CHECK constraint failed: ")
                    .map(|(_, n)| n.trim().to_owned())
            });
            let definition = name
                .as_deref()
                .and_then(|n| app.check_definition(n))
                .map(|d| format!(" (`{d}`)"))
                .unwrap_or_default();
            format!(
                "the app's CHECK constraint{}{definition} refused the values vapictl wrote; \
                 vapictl cannot verify a CHECK before writing, so change the spec (or the \
                 constraint) so that the row satisfies it, then run `vapictl apply` again",
                name.map(|n| format!(" `{n}`")).unwrap_or_default()
            )
        }
        ErrorKind::NotNullViolation => format!(
            "give {} a default or allow NULL in it",
            column
                .as_deref()
                .map_or("the column".to_owned(), |c| format!("`{c}`"))
        ),
        ErrorKind::ForeignKeyViolation => "the row points at a row that no longer exists (an \
             `assistants` row deleted since the plan?); run `vapictl plan` again"
            .to_owned(),
        _ if cause.code().is_some_and(|c| c.starts_with("22")) => {
            "a value does not fit the column's type (too long, or of another type); widen the \
             column"
                .to_owned()
        }
        _ => return err.into(),
    };
    StoreError::RowRejected {
        table: "phone_numbers",
        cause: Box::new(cause),
        hint,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_source_lines_are_not_kept() {
        assert_eq!(
            strip_source_line("relation \"x\" does not exist at line 1367"),
            "relation \"x\" does not exist"
        );
        assert_eq!(
            strip_source_line("at line 3 of the spec"),
            "at line 3 of the spec"
        );
    }

    #[test]
    fn long_digit_runs_are_masked() {
        assert_eq!(
            mask_digit_runs("Key (phone_number)=(+15551231234) exists; varchar(32)"),
            "Key (phone_number)=(+…1234) exists; varchar(32)"
        );
    }
}
