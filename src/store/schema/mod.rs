//! What vapictl expects of the application's tables, what it may add to them, and how it writes
//! to them as they really are.
//!
//! Each backend reads the tables as they are ([`Found`]: columns, types, `NOT NULL`, defaults,
//! `CHECK`s, which of vapictl's migrations ran); [`decide`] (pure) turns that into the DDL still
//! needed and an [`AppSchema`] — how to spell ids and timestamps in this database — or refuses,
//! naming the table and column, before anything is changed in the database or in Vapi.
//!
//! Here: the tables as found and the decision (which DDL is still needed); in `app.rs`, what the
//! app's columns say about writing to them (id and time representations, refusals); in
//! `script.rs`, the statements a database owner runs for a role that may not change the schema,
//! and vapictl's migration runner.

use std::collections::BTreeMap;

use sqlx::migrate::Migrator;

use super::StoreError;
use super::sql::{self, ASSISTANTS, PHONE_COLUMNS, PhoneColumn, SQUADS, TargetTable};

mod app;
mod script;

pub(crate) use app::{AppSchema, TimeRepr};
pub(crate) use script::{ddl_failed, migrate_error, migrator, owner_script};

/// sqlx's bookkeeping table for vapictl's own migrations. Not sqlx's default `_sqlx_migrations`:
/// the application may run its own sqlx migrations on the same database, and two migration sets
/// sharing one table refuse each other's history.
pub(crate) const MIGRATIONS_TABLE: &str = "vapictl_schema_migrations";

/// Columns vapictl reads and writes in an application's `phone_numbers` table and never adds.
pub(crate) fn phone_numbers_required() -> Vec<&'static str> {
    PHONE_COLUMNS
        .iter()
        .filter(|c| !c.added)
        .map(|c| c.name)
        .collect()
}

/// The columns vapictl adds to `phone_numbers` that `present` (lowercase names) lacks.
pub(crate) fn columns_to_add(present: &[String]) -> Vec<&'static PhoneColumn> {
    PHONE_COLUMNS
        .iter()
        .filter(|c| c.added && !present.iter().any(|p| p == c.name))
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

impl Found {
    /// The routing-target table `t` as found.
    fn target(&self, t: &TargetTable) -> Option<&Table> {
        if t.name == SQUADS.name {
            self.squads.as_ref()
        } else {
            self.assistants.as_ref()
        }
    }
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
    pub squads: Option<Table>,
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

/// A column as vapictl declares it in `dialect` (`definition`: the type, then constraints).
fn declared(name: &str, definition: &str) -> Column {
    let upper = definition.to_ascii_uppercase();
    Column {
        name: name.to_owned(),
        ty: definition
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase(),
        not_null: upper.contains("NOT NULL") || upper.contains("PRIMARY KEY"),
        has_default: upper.contains("DEFAULT"),
        generated: false,
        primary_key: upper.contains("PRIMARY KEY"),
        default: None,
    }
}

/// `phone_numbers` as vapictl creates it, for deciding before it exists.
fn own_phone_table(dialect: Dialect) -> Table {
    Table {
        columns: PHONE_COLUMNS
            .iter()
            .map(|c| declared(c.name, c.definition(dialect)))
            .collect(),
        ..Table::default()
    }
}

/// A routing-target table as vapictl creates it, for deciding before it exists.
fn own_target_table(dialect: Dialect, t: &TargetTable) -> Table {
    Table {
        columns: t
            .columns()
            .iter()
            .map(|&(name, sqlite, postgres)| {
                declared(
                    name,
                    match dialect {
                        Dialect::Sqlite => sqlite,
                        Dialect::Postgres => postgres,
                    },
                )
            })
            .collect(),
        ..Table::default()
    }
}

/// What to do with the database as `found`: the DDL still needed and how to write, or a refusal
/// naming every problem. Pure: the backends run the statements.
pub(crate) fn decide(
    dialect: Dialect,
    found: &Found,
    migrations: &Migrator,
) -> Result<Decision, StoreError> {
    // PostgreSQL: never create an app table while one of that name lives in another schema.
    // `squads` is left out: vapictl creates it for apps that have none (as its migration did),
    // so one elsewhere may be vapictl's own from a run with another search path.
    let missing: Vec<String> = [
        ("phone_numbers", found.phone_numbers.is_none()),
        (ASSISTANTS.name, found.assistants.is_none()),
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
            ddl.push(sql::create_phone_numbers(dialect));
            own_phone_table(dialect)
        }
    };
    let mut target = |t: &TargetTable| match found.target(t) {
        Some(table) => table.clone(),
        None => {
            ddl.push(t.create(dialect));
            own_target_table(dialect, t)
        }
    };
    let assistants = target(&ASSISTANTS);
    let squads = target(&SQUADS);
    for column in columns_to_add(&phone.names()) {
        let definition = column.definition(dialect);
        ddl.push(match dialect {
            Dialect::Sqlite => format!(
                "ALTER TABLE phone_numbers ADD COLUMN {} {definition}",
                column.name
            ),
            Dialect::Postgres => format!(
                "ALTER TABLE phone_numbers ADD COLUMN IF NOT EXISTS {} {definition}",
                column.name
            ),
        });
        phone.columns.push(declared(column.name, definition));
    }
    check_required("phone_numbers", &phone_numbers_required(), &phone.names())?;
    check_required(ASSISTANTS.name, &ASSISTANTS.required(), &assistants.names())?;
    // `squads` is optional for an app: one vapictl cannot read leaves every other command
    // working, and only an entry that names a squad is refused (with this reason).
    let squads = match check_required(SQUADS.name, &SQUADS.required(), &squads.names()) {
        Ok(()) => Ok(squads),
        Err(e) => Err(e.to_string()),
    };

    let app = app::app_schema(dialect, &phone, &assistants, squads.as_ref())?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ids::IdKind;

    /// An app's PostgreSQL tables, every column `ty` unless `types` says otherwise.
    fn found(types: &[(&str, &str)], samples: &[(&str, &str)]) -> Found {
        let ty = |name: &str, default: &str| {
            types
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(default.to_owned(), |(_, t)| t.to_string())
        };
        let mut phone = own_phone_table(Dialect::Postgres);
        for c in &mut phone.columns {
            c.ty = ty(&c.name, &c.ty);
        }
        phone.samples = samples
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Found {
            phone_numbers: Some(phone),
            assistants: Some(own_target_table(Dialect::Postgres, &ASSISTANTS)),
            squads: Some(own_target_table(Dialect::Postgres, &SQUADS)),
            ..Found::default()
        }
    }

    fn decide_pg(found: &Found) -> Result<Decision, StoreError> {
        static NONE: Migrator = Migrator::DEFAULT;
        decide(Dialect::Postgres, found, &NONE)
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
        assert!(d.ddl[0].starts_with("CREATE TABLE phone_numbers"));
        assert!(d.ddl[1].starts_with("CREATE TABLE assistants"));
        assert!(d.ddl[2].starts_with("CREATE TABLE squads"));
        assert!(
            d.ddl[3..]
                .iter()
                .all(|s| s.starts_with("ALTER TABLE phone_numbers"))
        );
        assert!(!d.migrations_pending, "no migrations in this set");
        assert_eq!(d.app.phone_id, IdKind::Uuid);
    }
}
