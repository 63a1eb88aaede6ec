//! What vapictl expects of the application's tables, what it may add to them, and how it writes
//! to them as they really are.
//!
//! Each backend reads the tables as they are ([`Found`]: columns, types, `NOT NULL`, defaults,
//! `CHECK`s, which of vapictl's migrations ran); [`decide`] (pure) turns that into the DDL still
//! needed and an [`AppSchema`] — how to spell ids and timestamps in this database — or refuses,
//! naming the table and column, before anything is changed in the database or in Vapi.

use std::collections::BTreeMap;

use sqlx::migrate::{MigrateError, Migrator};

use super::ids::IdKind;
use super::{SchemaProblem, StoreError};

/// sqlx's bookkeeping table for vapictl's own migrations. Not sqlx's default `_sqlx_migrations`:
/// the application may run its own sqlx migrations on the same database, and two migration sets
/// sharing one table refuse each other's history.
pub(crate) const MIGRATIONS_TABLE: &str = "vapictl_schema_migrations";

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
    // The Twilio API key SID of a number on the API-key form (issue 12); its secret's ciphertext
    // is in `twilio_auth_token`, where the token of the other form is.
    AddedColumn {
        name: "vapictl_twilio_api_key",
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

// ---------------------------------------------------------------------------------------------
// The tables as found
// ---------------------------------------------------------------------------------------------

/// Which SQL dialect a statement or a type name is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

/// One column as the catalog describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Column {
    /// Lowercase.
    pub name: String,
    /// Lowercase: SQLite's declared type, PostgreSQL's `format_type`.
    pub ty: String,
    pub not_null: bool,
    /// A default, an identity, a sequence, or SQLite's rowid alias: the database fills it in.
    pub has_default: bool,
    /// A generated column or `GENERATED ALWAYS` identity: nobody may write it.
    pub generated: bool,
    pub primary_key: bool,
    /// The column's default as written (SQLite), lowercase, to recognize `CURRENT_TIMESTAMP`.
    pub default: Option<String>,
}

/// A `CHECK` constraint: its name (when it has one) and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Check {
    pub name: Option<String>,
    pub definition: String,
}

/// One application table as found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Table {
    pub columns: Vec<Column>,
    pub checks: Vec<Check>,
    /// The newest value of some columns, as text (to tell epoch seconds from milliseconds, and
    /// which text form the app's timestamps take).
    pub samples: BTreeMap<String, String>,
}

impl Table {
    fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    fn names(&self) -> Vec<String> {
        self.columns.iter().map(|c| c.name.clone()).collect()
    }
}

/// What a backend found before changing anything.
#[derive(Debug, Clone, Default)]
pub(crate) struct Found {
    /// `None` when the search path (PostgreSQL) or the file (SQLite) has no such table.
    pub phone_numbers: Option<Table>,
    pub assistants: Option<Table>,
    /// PostgreSQL: `schema.table` of app tables of the same names outside the search path.
    pub elsewhere: Vec<String>,
    /// PostgreSQL: the session's `search_path`.
    pub search_path: String,
    /// `(version, checksum)` of each successful vapictl migration; `None` when the bookkeeping
    /// table does not exist.
    pub applied: Option<Vec<(i64, Vec<u8>)>>,
    /// Versions recorded as failed (sqlx's "dirty").
    pub failed: Vec<i64>,
    /// PostgreSQL: `current_user`, for the grants an owner must give it.
    pub role: Option<String>,
}

/// What [`decide`] concluded.
#[derive(Debug, Clone)]
pub(crate) struct Decision {
    /// Statements that create the missing app tables and add vapictl's missing columns.
    pub ddl: Vec<String>,
    /// Whether vapictl's own migrations still have to run.
    pub migrations_pending: bool,
    /// How to write, once `ddl` has run.
    pub app: AppSchema,
}

impl Decision {
    /// Nothing to change: a role without `CREATE` can work.
    pub(crate) fn is_up_to_date(&self) -> bool {
        self.ddl.is_empty() && !self.migrations_pending
    }
}

// ---------------------------------------------------------------------------------------------
// How to write
// ---------------------------------------------------------------------------------------------

/// How a timestamp column spells time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimeRepr {
    /// `timestamptz`, `timestamp`, `date`: bound as a timestamp.
    Native,
    /// RFC 3339 UTC with microseconds, fixed width (vapictl's own SQLite form).
    Rfc3339,
    /// `YYYY-MM-DD HH:MM:SS` UTC, as SQLite's `CURRENT_TIMESTAMP` writes it.
    SqlText,
    EpochSeconds,
    EpochMillis,
}

/// The application's `phone_numbers` and `assistants` as vapictl writes to them.
#[derive(Debug, Clone)]
pub(crate) struct AppSchema {
    /// `phone_numbers.id`; [`IdKind::Integer`] means the database assigns it.
    pub phone_id: IdKind,
    pub phone_user: IdKind,
    pub phone_assistant: IdKind,
    pub assistant_user: IdKind,
    pub created_at: TimeRepr,
    pub updated_at: TimeRepr,
    /// The `CHECK` constraints of `phone_numbers`, to explain a rejected write.
    pub checks: Vec<Check>,
}

impl AppSchema {
    /// The definition of the `CHECK` constraint named `name`, when known.
    pub(crate) fn check_definition(&self, name: &str) -> Option<&str> {
        self.checks
            .iter()
            .find(|c| c.name.as_deref() == Some(name))
            .map(|c| c.definition.as_str())
    }
}

/// Columns of `phone_numbers` vapictl writes on insert (besides `id`).
const WRITTEN: &[&str] = &[
    "user_id",
    "phone_number",
    "friendly_name",
    "provider",
    "vapi_phone_id",
    "vapi_credential_id",
    "twilio_account_sid",
    "twilio_auth_token",
    "vapictl_token_digest",
    "assigned_assistant_id",
    "notes",
    "vapictl_protected",
    "vapictl_applied",
    "created_at",
    "updated_at",
];

/// Written columns that vapictl may set to NULL, and when.
const WRITTEN_NULL: &[(&str, &str)] = &[
    ("vapi_credential_id", "Vapi reports no credential"),
    (
        "vapictl_token_digest",
        "the token's digest is not known yet",
    ),
    ("assigned_assistant_id", "a number has no assistant"),
    ("notes", "an entry has no `notes`"),
];

/// The tables as vapictl creates them, for deciding before they exist.
fn own_table(dialect: Dialect, table: &str) -> Table {
    let (id, text, time) = match dialect {
        Dialect::Sqlite => ("text", "text", "text"),
        Dialect::Postgres => ("uuid", "text", "timestamp with time zone"),
    };
    let col = |name: &str, ty: &str, not_null: bool, has_default: bool| Column {
        name: name.to_owned(),
        ty: ty.to_owned(),
        not_null,
        has_default,
        generated: false,
        primary_key: name == "id",
        default: None,
    };
    let columns = if table == "assistants" {
        vec![
            col("id", id, true, false),
            col("user_id", id, true, false),
            col("name", text, false, false),
            col("vapi_assistant_id", text, false, false),
        ]
    } else {
        let mut columns = vec![col("id", id, true, false), col("user_id", id, true, false)];
        for name in &PHONE_NUMBERS_REQUIRED[2..] {
            let ty = match *name {
                "assigned_assistant_id" => id,
                "created_at" | "updated_at" => time,
                _ => text,
            };
            let required = matches!(*name, "phone_number" | "created_at" | "updated_at");
            columns.push(col(name, ty, required, required));
        }
        columns.push(col("notes", text, false, false));
        columns
    };
    Table {
        columns,
        ..Table::default()
    }
}

/// What to do with the database as `found`: the DDL still needed and how to write, or a refusal
/// naming every problem. Pure: the backends run the statements.
pub(crate) fn decide(
    dialect: Dialect,
    found: &Found,
    migrations: &Migrator,
    create_phone_numbers: &str,
    create_assistants: &str,
) -> Result<Decision, StoreError> {
    // PostgreSQL: never create an app table while one of that name lives in another schema.
    let missing: Vec<String> = [
        ("phone_numbers", found.phone_numbers.is_none()),
        ("assistants", found.assistants.is_none()),
    ]
    .into_iter()
    .filter(|(name, absent)| {
        *absent
            && found
                .elsewhere
                .iter()
                .any(|t| t.rsplit_once('.').is_some_and(|(_, n)| n == *name))
    })
    .map(|(name, _)| name.to_owned())
    .collect();
    if !missing.is_empty() {
        let elsewhere = found
            .elsewhere
            .iter()
            .filter(|t| {
                t.rsplit_once('.')
                    .is_some_and(|(_, n)| missing.iter().any(|m| m == n))
            })
            .cloned()
            .collect();
        return Err(StoreError::AppTablesElsewhere {
            missing,
            search_path: found.search_path.clone(),
            found: elsewhere,
        });
    }

    let mut ddl = Vec::new();
    let mut phone = match &found.phone_numbers {
        Some(t) => t.clone(),
        None => {
            ddl.push(create_phone_numbers.to_owned());
            own_table(dialect, "phone_numbers")
        }
    };
    let assistants = match &found.assistants {
        Some(t) => t.clone(),
        None => {
            ddl.push(create_assistants.to_owned());
            own_table(dialect, "assistants")
        }
    };
    for column in columns_to_add(&phone.names()) {
        ddl.push(match dialect {
            Dialect::Sqlite => format!(
                "ALTER TABLE phone_numbers ADD COLUMN {} {}",
                column.name, column.sqlite
            ),
            Dialect::Postgres => format!(
                "ALTER TABLE phone_numbers ADD COLUMN IF NOT EXISTS {} {}",
                column.name, column.postgres
            ),
        });
        phone.columns.push(Column {
            name: column.name.to_owned(),
            ty: String::new(),
            not_null: column.name == "vapictl_protected",
            has_default: column.name == "vapictl_protected",
            generated: false,
            primary_key: false,
            default: None,
        });
    }
    check_required("phone_numbers", PHONE_NUMBERS_REQUIRED, &phone.names())?;
    check_required("assistants", ASSISTANTS_REQUIRED, &assistants.names())?;

    let app = app_schema(dialect, &phone, &assistants)?;
    let migrations_pending = migrations_pending(migrations, found)?;
    Ok(Decision {
        ddl,
        migrations_pending,
        app,
    })
}

/// Whether vapictl's own migrations still have to run. A version this build does not know means
/// a newer vapictl migrated the database.
fn migrations_pending(migrations: &Migrator, found: &Found) -> Result<bool, StoreError> {
    let Some(applied) = &found.applied else {
        return Ok(migrations.iter().next().is_some());
    };
    if let Some((version, _)) = applied
        .iter()
        .find(|(v, _)| !migrations.iter().any(|m| m.version == *v))
    {
        return Err(StoreError::SchemaFromNewerVersion { version: *version });
    }
    let complete = migrations.iter().all(|m| {
        applied
            .iter()
            .any(|(v, checksum)| *v == m.version && checksum[..] == m.checksum[..])
    });
    Ok(!complete || !found.failed.is_empty())
}

/// How an id column spells ids, or `None` for a type vapictl cannot use.
fn id_kind(dialect: Dialect, ty: &str) -> Option<IdKind> {
    match dialect {
        // SQLite stores what it is given: only INTEGER affinity turns a UUID's text into
        // something else (it does not, but such a column holds the app's integers).
        Dialect::Sqlite if ty.contains("int") => Some(IdKind::Integer),
        Dialect::Sqlite => Some(IdKind::Text),
        Dialect::Postgres => match ty {
            "uuid" => Some(IdKind::Uuid),
            "smallint" | "integer" | "bigint" => Some(IdKind::Integer),
            t if t == "text"
                || t == "citext"
                || t.starts_with("character varying")
                || t.starts_with("character(")
                || t == "character" =>
            {
                Some(IdKind::Text)
            }
            _ => None,
        },
    }
}

/// How a timestamp column spells time, or `None` for a type vapictl cannot write time into.
fn time_repr(dialect: Dialect, column: &Column, sample: Option<&str>) -> Option<TimeRepr> {
    let ty = column.ty.as_str();
    let epoch = || match sample.and_then(|s| s.trim().parse::<f64>().ok()) {
        // Past 5138-11-16 in seconds, or after 1973-03-03 in milliseconds.
        Some(n) if n.abs() >= 1e11 => TimeRepr::EpochMillis,
        _ => TimeRepr::EpochSeconds,
    };
    let text = || {
        let sql_form = sample.is_some_and(|s| s.len() == 19 && s.as_bytes().get(10) == Some(&b' '))
            || column
                .default
                .as_deref()
                .is_some_and(|d| d.contains("current_timestamp"));
        if sample.is_some_and(|s| !s.is_empty() && s.trim().chars().all(|c| c.is_ascii_digit())) {
            epoch()
        } else if sql_form {
            TimeRepr::SqlText
        } else {
            TimeRepr::Rfc3339
        }
    };
    match dialect {
        Dialect::Sqlite if ty.contains("int") => Some(epoch()),
        Dialect::Sqlite if ty.contains("real") || ty.contains("floa") || ty.contains("doub") => {
            Some(TimeRepr::EpochSeconds)
        }
        Dialect::Sqlite => Some(text()),
        Dialect::Postgres => match ty {
            t if t.starts_with("timestamp") || t == "date" => Some(TimeRepr::Native),
            "smallint" | "integer" | "bigint" | "real" | "double precision" => Some(epoch()),
            t if t.starts_with("numeric") => Some(epoch()),
            t if id_kind(dialect, t) == Some(IdKind::Text) => Some(text()),
            _ => None,
        },
    }
}

/// How to write to `phone` and `assistants` (as they will be once the DDL has run), or every
/// reason vapictl cannot.
fn app_schema(
    dialect: Dialect,
    phone: &Table,
    assistants: &Table,
) -> Result<AppSchema, StoreError> {
    let mut problems = Vec::new();
    let mut problem = |table: &str, column: &str, problem: String, hint: String| {
        problems.push(SchemaProblem {
            table: table.to_owned(),
            column: column.to_owned(),
            problem,
            hint,
        })
    };
    let col = |t: &Table, name: &str| t.column(name).cloned().expect("checked as required");
    let uuid_or_text = match dialect {
        Dialect::Postgres => "`uuid` or a text type holding UUIDs",
        Dialect::Sqlite => "TEXT holding UUIDs",
    };

    // phone_numbers.id: a UUID vapictl chooses, or an integer the database assigns.
    let id = col(phone, "id");
    let phone_id = match id_kind(dialect, &id.ty) {
        Some(IdKind::Integer) if !id.has_default => {
            let hint = match dialect {
                Dialect::Sqlite => "declare it `INTEGER PRIMARY KEY`, which SQLite fills in",
                Dialect::Postgres => {
                    "make the database assign it: `ALTER TABLE phone_numbers ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY` (or a sequence default)"
                }
            };
            problem(
                "phone_numbers",
                "id",
                format!(
                    "is `{}` without a default, so vapictl cannot choose a new row's id",
                    id.ty
                ),
                hint.to_owned(),
            );
            IdKind::Integer
        }
        Some(kind) => kind,
        None => {
            problem(
                "phone_numbers",
                "id",
                format!("is `{}`, a type vapictl cannot use as an id", id.ty),
                format!("vapictl needs {uuid_or_text}, or an integer the database assigns"),
            );
            IdKind::Uuid
        }
    };

    // user_id: the spec's owner is a UUID.
    let mut user_kind = |table: &str, t: &Table| {
        let c = col(t, "user_id");
        match id_kind(dialect, &c.ty) {
            Some(kind @ (IdKind::Uuid | IdKind::Text)) => kind,
            _ => {
                problem(
                    table,
                    "user_id",
                    format!(
                        "is `{}`, but vapictl's owners are UUIDs (the spec's `owner`)",
                        c.ty
                    ),
                    format!("vapictl supports `user_id` as {uuid_or_text}"),
                );
                IdKind::Text
            }
        }
    };
    let phone_user = user_kind("phone_numbers", phone);
    let assistant_user = user_kind("assistants", assistants);

    // assigned_assistant_id holds an `assistants.id`: both integers, or neither.
    let assistant_id = col(assistants, "id");
    let assigned = col(phone, "assigned_assistant_id");
    let assistant_id_kind = id_kind(dialect, &assistant_id.ty);
    let phone_assistant = match (assistant_id_kind, id_kind(dialect, &assigned.ty)) {
        (None, _) => {
            problem(
                "assistants",
                "id",
                format!(
                    "is `{}`, a type vapictl cannot read as an id",
                    assistant_id.ty
                ),
                format!("vapictl supports {uuid_or_text}, or integers"),
            );
            IdKind::Text
        }
        (Some(a), Some(p)) if (a == IdKind::Integer) == (p == IdKind::Integer) => p,
        (_, p) => {
            problem(
                "phone_numbers",
                "assigned_assistant_id",
                format!(
                    "is `{}`, which cannot hold `assistants.id` (`{}`)",
                    assigned.ty, assistant_id.ty
                ),
                "give it the type of `assistants.id`".to_owned(),
            );
            p.unwrap_or(IdKind::Text)
        }
    };

    // Timestamps in the app's own representation.
    let mut time = |name: &str| {
        let c = col(phone, name);
        time_repr(dialect, &c, phone.samples.get(name).map(String::as_str)).unwrap_or_else(|| {
            problem(
                "phone_numbers",
                name,
                format!("is `{}`, which vapictl cannot write a time into", c.ty),
                "vapictl writes timestamps, text, or epoch seconds or milliseconds".to_owned(),
            );
            TimeRepr::Rfc3339
        })
    };
    let created_at = time("created_at");
    let updated_at = time("updated_at");

    // Columns vapictl does not write must fill themselves in.
    let fix = |column: &str, default_too: bool| match (dialect, default_too) {
        (Dialect::Postgres, true) => format!(
            "give it a default (`ALTER TABLE phone_numbers ALTER COLUMN {column} SET DEFAULT …`) \
             or allow NULL (`ALTER TABLE phone_numbers ALTER COLUMN {column} DROP NOT NULL`)"
        ),
        (Dialect::Postgres, false) => {
            format!("allow NULL (`ALTER TABLE phone_numbers ALTER COLUMN {column} DROP NOT NULL`)")
        }
        (Dialect::Sqlite, true) => "give it a DEFAULT or allow NULL (SQLite cannot alter a \
             column: recreate the table with that change)"
            .to_owned(),
        (Dialect::Sqlite, false) => {
            "allow NULL (SQLite cannot alter a column: recreate the table with that change)"
                .to_owned()
        }
    };
    for c in &phone.columns {
        let written =
            WRITTEN.contains(&c.name.as_str()) || (c.name == "id" && phone_id != IdKind::Integer);
        if c.name == "id" && phone_id == IdKind::Integer {
            continue;
        }
        if written && c.generated {
            problem(
                "phone_numbers",
                &c.name,
                "is generated by the database, but vapictl writes it".to_owned(),
                "make it an ordinary column".to_owned(),
            );
        } else if !written && c.not_null && !c.has_default && !c.generated {
            problem(
                "phone_numbers",
                &c.name,
                format!(
                    "is `{} NOT NULL` without a default, and vapictl does not write it",
                    c.ty
                ),
                fix(&c.name, true),
            );
        } else if let Some((_, when)) = WRITTEN_NULL.iter().find(|(n, _)| *n == c.name)
            && c.not_null
        {
            problem(
                "phone_numbers",
                &c.name,
                format!("is NOT NULL, but vapictl leaves it NULL when {when}"),
                fix(&c.name, false),
            );
        }
    }

    if problems.is_empty() {
        Ok(AppSchema {
            phone_id,
            phone_user,
            phone_assistant,
            assistant_user,
            created_at,
            updated_at,
            checks: phone.checks.clone(),
        })
    } else {
        Err(StoreError::AppSchemaUnsupported { problems })
    }
}

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
             vapictl_changes, vapictl_applied_plans TO \"{role}\";\n\
             GRANT SELECT ON {MIGRATIONS_TABLE} TO \"{role}\";"
        ));
    }
    out.join("\n")
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

/// A failed schema statement: its cause (never PostgreSQL's source line), or its own variant.
pub(crate) fn ddl_failed(err: &sqlx::Error) -> StoreError {
    migration_failed(super::DbCause::of(err))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// An app's PostgreSQL tables, every column `ty` unless `types` says otherwise.
    fn found(types: &[(&str, &str)], samples: &[(&str, &str)]) -> Found {
        let ty = |name: &str, default: &str| {
            types
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(default.to_owned(), |(_, t)| t.to_string())
        };
        let mut phone = own_table(Dialect::Postgres, "phone_numbers");
        for c in &mut phone.columns {
            c.ty = ty(&c.name, &c.ty);
        }
        phone.samples = samples
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Found {
            phone_numbers: Some(phone),
            assistants: Some(own_table(Dialect::Postgres, "assistants")),
            ..Found::default()
        }
    }

    fn decide_pg(found: &Found) -> Result<Decision, StoreError> {
        static NONE: Migrator = Migrator::DEFAULT;
        decide(Dialect::Postgres, found, &NONE, "CREATE p", "CREATE a")
    }

    #[test]
    fn epoch_columns_are_seconds_unless_the_rows_say_milliseconds() {
        let seconds = decide_pg(&found(
            &[("created_at", "bigint"), ("updated_at", "bigint")],
            &[("created_at", "1700000000")],
        ))
        .unwrap();
        assert_eq!(seconds.app.created_at, TimeRepr::EpochSeconds);
        let millis = decide_pg(&found(
            &[("created_at", "bigint")],
            &[("created_at", "1700000000000")],
        ))
        .unwrap();
        assert_eq!(millis.app.created_at, TimeRepr::EpochMillis);
        assert_eq!(millis.app.updated_at, TimeRepr::Native);
        let text = decide_pg(&found(
            &[("created_at", "text")],
            &[("created_at", "2024-01-01 10:00:00")],
        ))
        .unwrap();
        assert_eq!(text.app.created_at, TimeRepr::SqlText);
    }

    #[test]
    fn an_integer_id_without_a_default_is_refused_and_one_with_is_assigned() {
        let err = decide_pg(&found(&[("id", "integer")], &[])).unwrap_err();
        assert!(err.to_string().contains("`phone_numbers.id`"), "{err}");
        let mut f = found(&[("id", "bigint")], &[]);
        f.phone_numbers.as_mut().unwrap().columns[0].has_default = true;
        assert_eq!(decide_pg(&f).unwrap().app.phone_id, IdKind::Integer);
    }

    #[test]
    fn tables_only_in_another_schema_are_never_shadowed() {
        let f = Found {
            elsewhere: vec!["app.assistants".into(), "app.phone_numbers".into()],
            search_path: "\"$user\", public".into(),
            ..Found::default()
        };
        let err = decide_pg(&f).unwrap_err();
        assert!(
            matches!(err, StoreError::AppTablesElsewhere { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("search_path%3Dapp"), "{err}");
    }

    #[test]
    fn missing_tables_are_created_with_vapictl_columns() {
        let d = decide_pg(&Found::default()).unwrap();
        assert_eq!(d.ddl[..2], ["CREATE p", "CREATE a"]);
        assert!(
            d.ddl[2..]
                .iter()
                .all(|s| s.starts_with("ALTER TABLE phone_numbers"))
        );
        assert!(!d.migrations_pending, "no migrations in this set");
        assert_eq!(d.app.phone_id, IdKind::Uuid);
    }
}
