//! What the app's columns say about writing to them: how each id and timestamp column spells
//! its values ([`AppSchema`]), or every reason vapictl cannot write to them.

use super::{Check, Column, Dialect, PHONE_COLUMNS, Table};
use crate::store::ids::IdKind;
use crate::store::{SchemaProblem, StoreError};

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

/// The application's `phone_numbers`, `assistants` and `squads` as vapictl writes to and reads
/// them.
#[derive(Debug, Clone)]
pub(crate) struct AppSchema {
    /// `phone_numbers.id`; [`IdKind::Integer`] means the database assigns it.
    pub phone_id: IdKind,
    pub phone_user: IdKind,
    pub phone_assistant: IdKind,
    pub assistant_user: IdKind,
    /// `squads.id`: what `vapictl_squad_id` refers to (written as its text).
    pub squad_id: IdKind,
    pub squad_user: IdKind,
    /// Why the app's `squads` table cannot be read, when it cannot (an app table of another
    /// shape): no squad is read, and an entry that names one is refused with this reason.
    pub squads_unusable: Option<String>,
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

/// How to write to `phone` and read `assistants` and `squads` (as they will be once the DDL has
/// run), or every reason vapictl cannot.
pub(super) fn app_schema(
    dialect: Dialect,
    phone: &Table,
    assistants: &Table,
    squads: Result<&Table, &String>,
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
    // squads: `user_id` holds UUIDs and `id` is read in its own type (and written into
    // `vapictl_squad_id` as text); otherwise the table is unusable, which is not fatal.
    let (squad_id, squad_user, squads_unusable) = match squads {
        Err(reason) => (IdKind::Text, IdKind::Text, Some(reason.clone())),
        Ok(squads) => {
            let user = col(squads, "user_id");
            let id = col(squads, "id");
            match (id_kind(dialect, &id.ty), id_kind(dialect, &user.ty)) {
                (Some(id), Some(user @ (IdKind::Uuid | IdKind::Text))) => (id, user, None),
                (None, _) => (
                    IdKind::Text,
                    IdKind::Text,
                    Some(format!(
                        "`squads.id` is `{}`, a type vapictl cannot read as an id (it supports {uuid_or_text}, or integers)",
                        id.ty
                    )),
                ),
                (Some(_), _) => (
                    IdKind::Text,
                    IdKind::Text,
                    Some(format!(
                        "`squads.user_id` is `{}`, but vapictl's owners are UUIDs (it supports {uuid_or_text})",
                        user.ty
                    )),
                ),
            }
        }
    };

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
        if c.name == "id" && phone_id == IdKind::Integer {
            continue;
        }
        // vapictl writes every column it lists (the id only when it chooses it).
        let listed = PHONE_COLUMNS.iter().find(|p| p.name == c.name);
        let written = listed.is_some();
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
        } else if let Some(when) = listed.and_then(|p| p.null_when)
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
            squad_id,
            squad_user,
            squads_unusable,
            created_at,
            updated_at,
            checks: phone.checks.clone(),
        })
    } else {
        Err(StoreError::AppSchemaUnsupported { problems })
    }
}
