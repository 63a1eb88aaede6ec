//! The columns of a `phone_numbers` row, listed once ([`PHONE_COLUMNS`]), and the statements
//! both backends share (their placeholders, `$n`, mean the same in SQLite and PostgreSQL), with
//! the raw row shapes they decode into.
//!
//! Everything about a column follows from its entry: whether vapictl reads it, writes it (and
//! from which value), may write NULL into it, adds it to an app's table that lacks it, and how
//! vapictl's own `CREATE TABLE` declares it. The select, insert and update statements and the
//! schema's expectations (`schema::decide`) are derived from the list.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::StoreError;
use super::backend::{RowValue, TimeValue};
use super::ids::{DbId, IdKind, NullableId};
use super::schema::{AppSchema, Dialect};
use crate::state::{PhoneRow, RowWrite, TargetRow};

/// Where the value vapictl writes into a column comes from.
pub(crate) enum Source {
    /// The row's id: vapictl's choice for UUID ids (bound last, on insert), else the database's.
    Id,
    /// The owner: written on insert, never changed (an update matches on it instead).
    Owner,
    /// A constant, as an SQL literal, written on insert only.
    Constant(&'static str),
    /// A field of the [`RowWrite`], written on insert and on every update.
    Field(fn(&RowWrite) -> RowValue),
    /// A text field of the [`RowWrite`], written on insert and on every update.
    Text(fn(&RowWrite) -> Option<String>),
    /// The assigned assistant, an `assistants.id` in the app's type.
    Assistant,
    /// The assigned squad, a `squads.id` as text in the app's spelling (integer digits or UUID).
    Squad,
    /// The time of the insert; never read.
    CreatedAt,
    /// The time of every write; never read.
    UpdatedAt,
}

/// One column of `phone_numbers`.
pub(crate) struct PhoneColumn {
    pub name: &'static str,
    pub source: Source,
    /// The column in vapictl's own `CREATE TABLE` (and its `ADD COLUMN`): SQLite, PostgreSQL.
    pub sqlite: &'static str,
    pub postgres: &'static str,
    /// vapictl adds the column to an app's table that lacks it (it is nullable or has a constant
    /// default, so adding it rewrites no rows); otherwise the app's table must have it.
    pub added: bool,
    /// When vapictl writes NULL into it, for a column that may be NULL.
    pub null_when: Option<&'static str>,
}

/// A text field of the [`RowWrite`].
const fn text(get: fn(&RowWrite) -> Option<String>) -> Source {
    Source::Text(get)
}

/// A column vapictl needs in the app's table, declared as `sqlite` and `postgres`.
const fn column(
    name: &'static str,
    source: Source,
    sqlite: &'static str,
    postgres: &'static str,
) -> PhoneColumn {
    PhoneColumn {
        name,
        source,
        sqlite,
        postgres,
        added: false,
        null_when: None,
    }
}

impl PhoneColumn {
    /// vapictl adds the column when the app's table lacks it.
    const fn added(self) -> Self {
        PhoneColumn {
            added: true,
            ..self
        }
    }

    /// vapictl writes NULL into it `when`.
    const fn null_when(self, when: &'static str) -> Self {
        PhoneColumn {
            null_when: Some(when),
            ..self
        }
    }

    /// Whether [`RawPhoneRow`] reads it.
    pub(crate) fn is_read(&self) -> bool {
        !matches!(self.source, Source::CreatedAt | Source::UpdatedAt)
    }

    /// Its definition in `dialect`.
    pub(crate) fn definition(&self, dialect: Dialect) -> &'static str {
        match dialect {
            Dialect::Sqlite => self.sqlite,
            Dialect::Postgres => self.postgres,
        }
    }
}

/// Every column of `phone_numbers` vapictl reads or writes, in the order of its `CREATE TABLE`:
/// name, where its value comes from, its declaration in SQLite and in PostgreSQL.
#[rustfmt::skip]
pub(crate) const PHONE_COLUMNS: &[PhoneColumn] = &[
    column("id", Source::Id, "TEXT PRIMARY KEY NOT NULL", "uuid PRIMARY KEY"),
    column("user_id", Source::Owner, "TEXT NOT NULL", "uuid NOT NULL"),
    column("phone_number", text(|r| Some(r.phone_number.clone())),
        "TEXT NOT NULL UNIQUE", "text NOT NULL UNIQUE"),
    column("friendly_name", text(|r| Some(r.friendly_name.clone())), "TEXT", "text"),
    column("provider", Source::Constant("'twilio'"),
        "TEXT DEFAULT 'twilio'", "text DEFAULT 'twilio'"),
    column("vapi_phone_id", text(|r| r.vapi_phone_id.clone()), "TEXT", "text"),
    column("vapi_credential_id", text(|r| r.vapi_credential_id.clone()), "TEXT", "text")
        .null_when("Vapi reports no credential"),
    column("twilio_account_sid", text(|r| Some(r.twilio_account_sid.clone())), "TEXT", "text"),
    column("twilio_auth_token", text(|r| Some(r.twilio_auth_token.clone())), "TEXT", "text"),
    column("assigned_assistant_id", Source::Assistant, "TEXT", "uuid")
        .null_when("a number has no assistant"),
    column("notes", text(|r| r.notes.clone()), "TEXT", "text")
        .added()
        .null_when("an entry has no `notes`"),
    column("created_at", Source::CreatedAt,
        "TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
        "timestamptz NOT NULL DEFAULT now()"),
    column("updated_at", Source::UpdatedAt,
        "TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
        "timestamptz NOT NULL DEFAULT now()"),
    // vapictl's own columns, added to an app's table that lacks them.
    column("vapictl_token_digest", text(|r| r.token_digest.clone()), "TEXT", "text")
        .added()
        .null_when("the token's digest is not known yet"),
    column("vapictl_protected", Source::Field(|r| RowValue::Bool(r.protected)),
        "INTEGER NOT NULL DEFAULT 0", "boolean NOT NULL DEFAULT false")
        .added(),
    // What vapictl last applied to `server` and `smsEnabled`, which the row has no column for:
    // it tells a spec edit from an edit in Vapi (issue 9).
    column("vapictl_applied", text(|r| r.applied.clone()), "TEXT", "text").added(),
    // The Twilio API key SID of a number on the API-key form (issue 12).
    column("vapictl_twilio_api_key", text(|r| r.api_key.clone()), "TEXT", "text")
        .added()
        .null_when("a number is on the auth-token form"),
    // The `squads.id` a number is routed to (issue 12), as text whatever the id's type.
    column("vapictl_squad_id", Source::Squad, "TEXT", "text")
        .added()
        .null_when("a number has no squad"),
    // The API key's secret (age ciphertext) of a number on the API-key form (issue 12). The
    // app's `twilio_auth_token` holds the same ciphertext, so that an app whose column is
    // NOT NULL keeps working; it is never plaintext and never an auth token for such a number.
    column("vapictl_twilio_api_secret", text(|r| r.api_secret.clone()), "TEXT", "text")
        .added()
        .null_when("a number is on the auth-token form"),
];

/// vapictl's `CREATE TABLE phone_numbers` (with its index on `user_id`) in `dialect`.
pub(crate) fn create_phone_numbers(dialect: Dialect) -> String {
    let columns: Vec<String> = PHONE_COLUMNS
        .iter()
        .map(|c| format!("    {} {}", c.name, c.definition(dialect)))
        .collect();
    format!(
        "CREATE TABLE phone_numbers (\n{}\n);\n\
         CREATE INDEX phone_numbers_user_id ON phone_numbers (user_id);",
        columns.join(",\n")
    )
}

/// A table of routing targets (`assistants`, `squads`: issue 12), which vapictl reads and never
/// writes: `id`, `user_id`, `name` and the Vapi id, in the application's own types.
pub(crate) struct TargetTable {
    pub name: &'static str,
    /// The column holding the Vapi id (`vapi_assistant_id`, `vapi_squad_id`).
    pub vapi_column: &'static str,
    /// `name`'s declaration in vapictl's own `CREATE TABLE`: SQLite, PostgreSQL.
    name_type: (&'static str, &'static str),
}

pub(crate) const ASSISTANTS: TargetTable = TargetTable {
    name: "assistants",
    vapi_column: "vapi_assistant_id",
    name_type: ("TEXT", "text"),
};

pub(crate) const SQUADS: TargetTable = TargetTable {
    name: "squads",
    vapi_column: "vapi_squad_id",
    name_type: ("TEXT NOT NULL", "text NOT NULL"),
};

impl TargetTable {
    /// Every column vapictl reads, as its own `CREATE TABLE` declares it: name, SQLite,
    /// PostgreSQL.
    pub(crate) fn columns(&self) -> [(&'static str, &'static str, &'static str); 4] {
        [
            ("id", "TEXT PRIMARY KEY NOT NULL", "uuid PRIMARY KEY"),
            ("user_id", "TEXT NOT NULL", "uuid NOT NULL"),
            ("name", self.name_type.0, self.name_type.1),
            (self.vapi_column, "TEXT", "text"),
        ]
    }

    /// The columns an application's table of this name must have.
    pub(crate) fn required(&self) -> Vec<&'static str> {
        self.columns().iter().map(|c| c.0).collect()
    }

    /// vapictl's `CREATE TABLE` (with its index on `user_id`) in `dialect`. It runs before
    /// vapictl's migrations, whose `squads` one (`IF NOT EXISTS`) then finds the table.
    pub(crate) fn create(&self, dialect: Dialect) -> String {
        let columns: Vec<String> = self
            .columns()
            .iter()
            .map(|&(name, sqlite, postgres)| {
                let ty = match dialect {
                    Dialect::Sqlite => sqlite,
                    Dialect::Postgres => postgres,
                };
                format!("    {name} {ty}")
            })
            .collect();
        format!(
            "CREATE TABLE {t} (\n{}\n);\n\
             CREATE INDEX {t}_user_id ON {t} (user_id);",
            columns.join(",\n"),
            t = self.name
        )
    }

    /// The rows `filter` (a `WHERE` clause, or nothing; `{vapi_id}` in it stands for the Vapi id
    /// column) selects, as [`RawTargetRow`] reads them.
    pub(crate) fn select(&self, filter: &str) -> String {
        format!(
            "SELECT id, user_id, name, {vapi} AS vapi_id FROM {} {}",
            self.name,
            filter.replace("{vapi_id}", self.vapi_column),
            vapi = self.vapi_column
        )
        .trim_end()
        .to_owned()
    }
}

/// The columns of a row as [`RawPhoneRow`] reads them.
fn read_columns() -> String {
    PHONE_COLUMNS
        .iter()
        .filter(|c| c.is_read())
        .map(|c| c.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The owner's rows. `$1` owner.
pub(crate) fn select_owner_rows() -> &'static str {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT {} FROM phone_numbers WHERE user_id = $1",
            read_columns()
        )
    });
    &SQL
}

/// Every row, for a run over many owners.
pub(crate) fn select_all_rows() -> &'static str {
    static SQL: LazyLock<String> =
        LazyLock::new(|| format!("SELECT {} FROM phone_numbers", read_columns()));
    &SQL
}

/// The columns an insert writes, in the order of [`inserted_values`] (the id, when vapictl
/// chooses it, comes last), with the SQL of each value (a placeholder or a constant).
fn insert_statement(with_id: bool) -> String {
    let mut names = Vec::new();
    let mut values = Vec::new();
    let mut bound = 0;
    let mut placeholder = || {
        bound += 1;
        format!("${bound}")
    };
    for c in PHONE_COLUMNS {
        match c.source {
            Source::Id => continue,
            Source::Constant(literal) => values.push(literal.to_owned()),
            _ => values.push(placeholder()),
        }
        names.push(c.name);
    }
    if with_id {
        names.push("id");
        values.push(placeholder());
    }
    format!(
        "INSERT INTO phone_numbers ({}) VALUES ({}) RETURNING id",
        names.join(", "),
        values.join(", ")
    )
}

/// Inserts a row and returns its id: [`inserted_values`] in order, then the id when vapictl
/// chooses it (`with_id`); otherwise the database assigns it.
pub(crate) fn insert_row(with_id: bool) -> &'static str {
    static WITH_ID: LazyLock<String> = LazyLock::new(|| insert_statement(true));
    static WITHOUT_ID: LazyLock<String> = LazyLock::new(|| insert_statement(false));
    if with_id { &WITH_ID } else { &WITHOUT_ID }
}

/// Overwrites the fields and `updated_at` of the row with the id and owner of the last two
/// parameters ([`updated_values`] gives them all, in order). Never touches `provider`, `user_id` or `created_at`, nor rows of another
/// user.
pub(crate) fn update_row() -> &'static str {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        let set: Vec<String> = PHONE_COLUMNS
            .iter()
            .filter(|c| is_updated(&c.source))
            .enumerate()
            .map(|(i, c)| format!("{} = ${}", c.name, i + 1))
            .collect();
        format!(
            "UPDATE phone_numbers SET {} WHERE id = ${} AND user_id = ${}",
            set.join(", "),
            set.len() + 1,
            set.len() + 2
        )
    });
    &SQL
}

fn is_updated(source: &Source) -> bool {
    matches!(
        source,
        Source::Field(_) | Source::Text(_) | Source::Assistant | Source::Squad | Source::UpdatedAt
    )
}

/// The value of a column written from `row` for `owner` at `now`; `None` for the id and
/// constants, which are not bound here.
fn value(
    source: &Source,
    app: &AppSchema,
    owner: Uuid,
    row: &RowWrite,
    now: DateTime<Utc>,
) -> Result<Option<RowValue>, StoreError> {
    Ok(Some(match source {
        Source::Id | Source::Constant(_) => return Ok(None),
        Source::Owner => RowValue::Id(NullableId {
            kind: app.phone_user,
            value: Some(id_param(app.phone_user, owner, "phone_numbers", "user_id")?),
        }),
        Source::Field(get) => get(row),
        Source::Text(get) => RowValue::Text(get(row)),
        Source::Assistant => RowValue::Id(NullableId {
            kind: app.phone_assistant,
            value: row
                .assigned_assistant_id
                .map(|a| id_param(app.phone_assistant, a, "assistants", "id"))
                .transpose()?,
        }),
        Source::Squad => RowValue::Text(
            row.assigned_squad_id
                .map(|s| id_param(app.squad_id, s, "squads", "id").map(|id| id.to_text()))
                .transpose()?,
        ),
        Source::CreatedAt => RowValue::Time(TimeValue::new(app.created_at, now)),
        Source::UpdatedAt => RowValue::Time(TimeValue::new(app.updated_at, now)),
    }))
}

/// The parameters of [`insert_row`] but the id, each in the app's own type.
pub(crate) fn inserted_values(
    app: &AppSchema,
    owner: Uuid,
    row: &RowWrite,
    now: DateTime<Utc>,
) -> Result<Vec<RowValue>, StoreError> {
    let mut values = Vec::new();
    for c in PHONE_COLUMNS {
        values.extend(value(&c.source, app, owner, row, now)?);
    }
    Ok(values)
}

/// The parameters of [`update_row`] for the row `id` (as the app spells it) of `owner`, each in
/// the app's own type.
pub(crate) fn updated_values(
    app: &AppSchema,
    id: DbId,
    owner: Uuid,
    row: &RowWrite,
    now: DateTime<Utc>,
) -> Result<Vec<RowValue>, StoreError> {
    let mut values = Vec::new();
    for c in PHONE_COLUMNS.iter().filter(|c| is_updated(&c.source)) {
        values.extend(value(&c.source, app, owner, row, now)?);
    }
    values.push(RowValue::Id(NullableId {
        kind: app.phone_id,
        value: Some(id),
    }));
    values.extend(value(&Source::Owner, app, owner, row, now)?);
    Ok(values)
}

/// `id` as `kind` spells it, for a statement on `table.column`.
pub(crate) fn id_param(
    kind: IdKind,
    id: Uuid,
    table: &'static str,
    column: &'static str,
) -> Result<DbId, StoreError> {
    kind.bind(id).ok_or_else(|| StoreError::UnreadableValue {
        table,
        column,
        reason: format!("`{id}` is not one of this table's integer ids"),
    })
}

/// `$1` id, `$2` owner.
pub(crate) const DELETE_ROW: &str = "DELETE FROM phone_numbers WHERE id = $1 AND user_id = $2";

/// Whether a row exists at all, to tell "missing" from "someone else's" after a write matched
/// nothing. `$1` id.
pub(crate) const ROW_EXISTS: &str = "SELECT COUNT(*) FROM phone_numbers WHERE id = $1";

/// `$1` run, `$2` at, `$3` owner, `$4` masked number, `$5` action, `$6` fields, `$7` before,
/// `$8` after, `$9` Vapi id, `$10` outcome, `$11` error, `$12` CI run, `$13` commit.
pub(crate) const INSERT_CHANGE: &str = "INSERT INTO vapictl_changes (run_id, at, user_id, \
     number_masked, action, fields, \"before\", \"after\", vapi_phone_id, outcome, error, \
     ci_run_id, commit_sha) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";

/// Newest first. `$1` owner, `$2` masked number or NULL for all, `$3` limit.
pub(crate) const SELECT_CHANGES: &str = "SELECT run_id, at, user_id, number_masked, action, \
     fields, \"before\", \"after\", vapi_phone_id, outcome, error, ci_run_id, commit_sha \
     FROM vapictl_changes WHERE user_id = $1 AND ($2 IS NULL OR number_masked = $2) \
     ORDER BY at DESC, id DESC LIMIT $3";

/// `$1` owner, `$2` lease token.
pub(crate) const DELETE_LEASE: &str =
    "DELETE FROM vapictl_locks WHERE owner = $1 AND lease_token = $2";

/// Expires the leader lease now, keeping the row and its epoch, if it still carries token `$2`
/// and epoch `$3` (`$1` owner).
pub(crate) const EXPIRE_LEADER: &str = "UPDATE vapictl_locks SET expires_at = acquired_at \
     WHERE owner = $1 AND lease_token = $2 AND epoch = $3";

/// `$1` owner.
pub(crate) const SELECT_LEASE: &str = "SELECT holder_host, holder_pid, run_id, acquired_at, \
     expires_at, lease_token, holder_pid_namespace FROM vapictl_locks WHERE owner = $1";

/// Claims a saved plan for one run; no row is inserted when it was claimed before.
pub(crate) const CLAIM_PLAN: &str = "INSERT INTO vapictl_applied_plans (plan_id, user_id, run_id, \
     applied_at) VALUES ($1, $2, $3, $4) ON CONFLICT (plan_id) DO NOTHING";

/// Whether a saved plan was applied.
pub(crate) const PLAN_CLAIMED: &str =
    "SELECT count(*) FROM vapictl_applied_plans WHERE plan_id = $1";

/// Records (or replaces) what Twilio showed for the owner's number. `$1` owner, `$2` number,
/// `$3` account SID, `$4` voice URL, `$5` SMS URL, `$6` recorded at.
pub(crate) const UPSERT_TWILIO_URLS: &str = "INSERT INTO vapictl_twilio_urls (user_id, \
     phone_number, account_sid, voice_url, sms_url, recorded_at) VALUES ($1, $2, $3, $4, $5, $6) \
     ON CONFLICT (user_id, phone_number) DO UPDATE SET account_sid = excluded.account_sid, \
     voice_url = excluded.voice_url, sms_url = excluded.sms_url, recorded_at = excluded.recorded_at";

/// `$1` owner.
pub(crate) const SELECT_TWILIO_URLS: &str = "SELECT phone_number, account_sid, voice_url, \
     sms_url FROM vapictl_twilio_urls WHERE user_id = $1";

/// `$1` owner, `$2` number.
pub(crate) const DELETE_TWILIO_URLS: &str =
    "DELETE FROM vapictl_twilio_urls WHERE user_id = $1 AND phone_number = $2";

/// A `phone_numbers` row as stored, before the NULLs of messy app data are given meaning: one
/// field for each column of [`PHONE_COLUMNS`] that is read. `U` is how the backend spells a UUID.
#[derive(sqlx::FromRow)]
pub(crate) struct RawPhoneRow<U> {
    id: U,
    user_id: Option<U>,
    phone_number: Option<String>,
    friendly_name: Option<String>,
    provider: Option<String>,
    vapi_phone_id: Option<String>,
    vapi_credential_id: Option<String>,
    twilio_account_sid: Option<String>,
    twilio_auth_token: Option<String>,
    assigned_assistant_id: Option<U>,
    notes: Option<String>,
    vapictl_token_digest: Option<String>,
    vapictl_protected: Option<bool>,
    vapictl_applied: Option<String>,
    vapictl_twilio_api_key: Option<String>,
    vapictl_squad_id: Option<String>,
    vapictl_twilio_api_secret: Option<String>,
}

impl<U: Into<Uuid>> RawPhoneRow<U> {
    /// The row, or for a row without a number the claim its Vapi id makes, if it records one:
    /// (user, Vapi id), a NULL `user_id` read as the nil UUID.
    pub(crate) fn into_phone_row_or_claim(self) -> Result<PhoneRow, Option<(Uuid, String)>> {
        if self.phone_number.is_none() {
            let user = self.user_id.map(Into::into).unwrap_or_default();
            return Err(self.vapi_phone_id.map(|id| (user, id)));
        }
        self.into_phone_row().ok_or(None)
    }

    /// `None` for a row without a number: nothing can refer to it by number.
    /// A NULL `provider` reads as `""` and a NULL `user_id` as the nil UUID.
    pub(crate) fn into_phone_row(self) -> Option<PhoneRow> {
        Some(PhoneRow {
            id: self.id.into(),
            user_id: self.user_id.map(Into::into).unwrap_or_default(),
            phone_number: self.phone_number?,
            friendly_name: self.friendly_name,
            provider: self.provider.unwrap_or_default(),
            vapi_phone_id: self.vapi_phone_id,
            vapi_credential_id: self.vapi_credential_id,
            twilio_account_sid: self.twilio_account_sid,
            twilio_auth_token: self.twilio_auth_token,
            assigned_assistant_id: self.assigned_assistant_id.map(Into::into),
            assigned_squad_id: self
                .vapictl_squad_id
                .as_deref()
                .and_then(DbId::uuid_of_text),
            notes: self.notes,
            token_digest: self.vapictl_token_digest,
            protected: self.vapictl_protected.unwrap_or(false),
            applied: self.vapictl_applied,
            api_key: self.vapictl_twilio_api_key,
            api_secret: self.vapictl_twilio_api_secret,
        })
    }
}

/// Every row a run over many owners reads (`Store::load_everything`).
pub(crate) struct Everything {
    pub rows: Vec<RawPhoneRow<DbId>>,
    pub assistants: Vec<TargetRow>,
    /// The squads, or why the app's `squads` table cannot be read.
    pub squads: Result<Vec<TargetRow>, String>,
}

/// A row of a [`TargetTable`] as stored.
#[derive(sqlx::FromRow)]
pub(crate) struct RawTargetRow<U> {
    id: U,
    user_id: Option<U>,
    name: Option<String>,
    vapi_id: Option<String>,
}

impl<U: Into<Uuid>> RawTargetRow<U> {
    /// A NULL `user_id` reads as the nil UUID (nobody's).
    pub(crate) fn into_target_row(self) -> TargetRow {
        TargetRow {
            id: self.id.into(),
            user_id: self.user_id.map(Into::into).unwrap_or_default(),
            name: self.name,
            vapi_id: self.vapi_id,
        }
    }
}

/// Assistants or squads in a stable order (by name, then id), whatever order the database
/// returned.
pub(crate) fn sorted_targets(mut rows: Vec<TargetRow>) -> Vec<TargetRow> {
    rows.sort_by(|a, b| (&a.name, a.id).cmp(&(&b.name, b.id)));
    rows
}

/// The references as written plus their lowercase forms (ids are stored lowercase).
pub(crate) fn lowercase_too(refs: &[String]) -> Vec<String> {
    let mut all: Vec<String> = refs.to_vec();
    all.extend(refs.iter().map(|r| r.to_lowercase()));
    all.sort();
    all.dedup();
    all
}

#[cfg(test)]
#[path = "sql_tests.rs"]
mod tests;
