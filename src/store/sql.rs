//! The statements both backends share (their placeholders, `$n`, mean the same in SQLite and
//! PostgreSQL) and the raw row shapes they decode into.

use uuid::Uuid;

use super::schema::TimeRepr;
use crate::state::{AssistantRow, PhoneRow};

/// Columns of a `phone_numbers` row as [`RawPhoneRow`] reads them.
macro_rules! phone_columns {
    () => {
        "id, user_id, phone_number, friendly_name, provider, vapi_phone_id, vapi_credential_id, \
         twilio_account_sid, twilio_auth_token, assigned_assistant_id, notes, \
         vapictl_token_digest, vapictl_protected, vapictl_applied, vapictl_twilio_api_key"
    };
}

/// The owner's rows. `$1` owner.
pub(crate) const SELECT_OWNER_ROWS: &str = concat!(
    "SELECT ",
    phone_columns!(),
    " FROM phone_numbers WHERE user_id = $1"
);

/// Every row, for a run over many owners.
pub(crate) const SELECT_ALL_ROWS: &str =
    concat!("SELECT ", phone_columns!(), " FROM phone_numbers");

/// Other users' rows that may hold the numbers in question. `$1` numbers (JSON array), `$2`
/// owner, `$3` Vapi ids (JSON array), `$4` whether to add every row whose number is not
/// canonical-looking (`+` then 7 to 15 digits, the first not 0).
pub(crate) const SQLITE_SELECT_CLAIMS: &str = "SELECT phone_number, user_id, vapi_phone_id \
     FROM phone_numbers WHERE user_id IS NOT $2 AND ( \
     phone_number IN (SELECT value FROM json_each($1)) \
     OR vapi_phone_id IN (SELECT value FROM json_each($3)) \
     OR ($4 AND NOT (phone_number GLOB '+[1-9]*' \
         AND substr(phone_number, 2) NOT GLOB '*[^0-9]*' \
         AND length(phone_number) BETWEEN 8 AND 16)))";

/// [`SQLITE_SELECT_CLAIMS`] for PostgreSQL: `$1` and `$3` are text arrays.
pub(crate) const PG_SELECT_CLAIMS: &str = "SELECT phone_number, user_id, vapi_phone_id \
     FROM phone_numbers WHERE user_id IS DISTINCT FROM $2 AND ( \
     phone_number = ANY($1) OR vapi_phone_id = ANY($3) \
     OR ($4 AND phone_number !~ '^\\+[1-9][0-9]{6,14}$'))";

/// Inserts a row and returns its id. `$1` owner, `$2..$11` the [`RowWrite`](crate::state::RowWrite)
/// fields (see [`UPDATE_ROW`] for the order), `$12` what was applied (`vapictl_applied`), `$13`
/// the API key SID (`vapictl_twilio_api_key`), `$14` created_at, `$15` updated_at, and `$16` the
/// id when vapictl chooses it (`with_id`); otherwise the database assigns it.
pub(crate) fn insert_row(with_id: bool) -> String {
    format!(
        "INSERT INTO phone_numbers (user_id, phone_number, friendly_name, provider, \
         vapi_phone_id, vapi_credential_id, twilio_account_sid, twilio_auth_token, \
         vapictl_token_digest, assigned_assistant_id, notes, vapictl_protected, vapictl_applied, \
         vapictl_twilio_api_key, created_at, updated_at{}) \
         VALUES ($1, $2, $3, 'twilio', $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15{}) \
         RETURNING id",
        if with_id { ", id" } else { "" },
        if with_id { ", $16" } else { "" },
    )
}

/// `$1` owner, `$2..$11` the fields, `$12` what was applied, `$13` the API key SID, `$14`
/// updated_at, `$15` id. Never touches `provider`, `user_id` or `created_at`, nor rows of another
/// user.
pub(crate) const UPDATE_ROW: &str = "UPDATE phone_numbers SET phone_number = $2, \
     friendly_name = $3, vapi_phone_id = $4, vapi_credential_id = $5, twilio_account_sid = $6, \
     twilio_auth_token = $7, vapictl_token_digest = $8, assigned_assistant_id = $9, notes = $10, \
     vapictl_protected = $11, vapictl_applied = $12, vapictl_twilio_api_key = $13, \
     updated_at = $14 WHERE id = $15 AND user_id = $1";

/// A time as a timestamp column of the app wants it.
pub(crate) enum TimeValue {
    Native(chrono::DateTime<chrono::Utc>),
    Text(String),
    Int(i64),
}

/// `now` in the representation `repr`.
pub(crate) fn time_value(repr: TimeRepr, now: chrono::DateTime<chrono::Utc>) -> TimeValue {
    match repr {
        TimeRepr::Native => TimeValue::Native(now),
        TimeRepr::Rfc3339 => TimeValue::Text(now.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()),
        TimeRepr::SqlText => TimeValue::Text(now.format("%Y-%m-%d %H:%M:%S").to_string()),
        TimeRepr::EpochSeconds => TimeValue::Int(now.timestamp()),
        TimeRepr::EpochMillis => TimeValue::Int(now.timestamp_millis()),
    }
}

/// Binds the owner (`$1`), the [`RowWrite`](crate::state::RowWrite) fields (`$2..$11`), what
/// was applied (`$12`) and the API key SID (`$13`) of [`insert_row`] and [`UPDATE_ROW`], each id
/// in the app's own type.
macro_rules! bind_fields {
    ($query:expr, $app:expr, $owner:expr, $row:expr) => {{
        let app: &$crate::store::schema::AppSchema = $app;
        let row: &$crate::state::RowWrite = $row;
        let owner = $crate::store::id_param(app.phone_user, $owner, "phone_numbers", "user_id")?;
        let assistant = $crate::store::ids::NullableId {
            kind: app.phone_assistant,
            value: row
                .assigned_assistant_id
                .map(|a| $crate::store::id_param(app.phone_assistant, a, "assistants", "id"))
                .transpose()?,
        };
        $query
            .bind(owner)
            .bind(row.phone_number.clone())
            .bind(row.friendly_name.clone())
            .bind(row.vapi_phone_id.clone())
            .bind(row.vapi_credential_id.clone())
            .bind(row.twilio_account_sid.clone())
            .bind(row.twilio_auth_token.clone())
            .bind(row.token_digest.clone())
            .bind(assistant)
            .bind(row.notes.clone())
            .bind(row.protected)
            .bind(row.applied.clone())
            .bind(row.api_key.clone())
    }};
}
pub(crate) use bind_fields;

/// Binds a [`TimeValue`] as the next parameter.
macro_rules! bind_time {
    ($query:expr, $value:expr) => {
        match $value {
            $crate::store::sql::TimeValue::Native(t) => $query.bind(t),
            $crate::store::sql::TimeValue::Text(t) => $query.bind(t),
            $crate::store::sql::TimeValue::Int(t) => $query.bind(t),
        }
    };
}
pub(crate) use bind_time;

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

/// SQLite's takeover of a dead holder's lease, whatever its expiry. `$1` owner, `$2` the stale
/// lease's token, `$3` host, `$4` pid, `$5` run, `$6` new token, `$7` acquired, `$8` expires,
/// `$9` pid namespace. (PostgreSQL's reads the server's clock instead.)
pub(crate) const TAKE_OVER_LEASE: &str = "UPDATE vapictl_locks SET holder_host = $3, \
     holder_pid = $4, run_id = $5, lease_token = $6, acquired_at = $7, expires_at = $8, \
     holder_pid_namespace = $9 WHERE owner = $1 AND lease_token = $2";

/// `$1` owner.
pub(crate) const SELECT_LEASE: &str = "SELECT holder_host, holder_pid, run_id, acquired_at, \
     expires_at, lease_token, holder_pid_namespace FROM vapictl_locks WHERE owner = $1";

/// A `phone_numbers` row as stored, before the NULLs of messy app data are given meaning.
/// `U` is how the backend spells a UUID.
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
            notes: self.notes,
            token_digest: self.vapictl_token_digest,
            protected: self.vapictl_protected.unwrap_or(false),
            applied: self.vapictl_applied,
            api_key: self.vapictl_twilio_api_key,
        })
    }
}

/// An `assistants` row as stored.
#[derive(sqlx::FromRow)]
pub(crate) struct RawAssistantRow<U> {
    id: U,
    user_id: Option<U>,
    name: Option<String>,
    vapi_assistant_id: Option<String>,
}

impl<U: Into<Uuid>> RawAssistantRow<U> {
    /// A NULL `user_id` reads as the nil UUID (nobody's).
    pub(crate) fn into_assistant_row(self) -> AssistantRow {
        AssistantRow {
            id: self.id.into(),
            user_id: self.user_id.map(Into::into).unwrap_or_default(),
            name: self.name,
            vapi_assistant_id: self.vapi_assistant_id,
        }
    }
}

/// Assistants in a stable order (by name, then id), whatever order the database returned.
pub(crate) fn sorted_assistants(mut rows: Vec<AssistantRow>) -> Vec<AssistantRow> {
    rows.sort_by(|a, b| (&a.name, a.id).cmp(&(&b.name, b.id)));
    rows
}

/// Claims a saved plan for one run; no row is inserted when it was claimed before.
pub(crate) const CLAIM_PLAN: &str = "INSERT INTO vapictl_applied_plans (plan_id, user_id, run_id, \
     applied_at) VALUES ($1, $2, $3, $4) ON CONFLICT (plan_id) DO NOTHING";

/// Whether a saved plan was applied.
pub(crate) const PLAN_CLAIMED: &str =
    "SELECT count(*) FROM vapictl_applied_plans WHERE plan_id = $1";

/// The references as written plus their lowercase forms (ids are stored lowercase).
pub(crate) fn lowercase_too(refs: &[String]) -> Vec<String> {
    let mut all: Vec<String> = refs.to_vec();
    all.extend(refs.iter().map(|r| r.to_lowercase()));
    all.sort();
    all.dedup();
    all
}
