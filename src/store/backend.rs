//! What differs between SQLite and PostgreSQL once a store is connected, named by one trait
//! ([`Backend`]) so that every operation is written once (in `pool.rs`), the way sqlx keeps one
//! `Migrate` trait with per-driver bodies only where a driver needs its own.
//!
//! A backend names: how vapictl's own tables spell a time (RFC 3339 text or `timestamptz`) and
//! read it and a UUID back; the statements that take a list parameter (a JSON array walked by
//! `json_each` in SQLite, a `text[]` in PostgreSQL, both bound as one [`TextList`]); and the
//! lease clock (the client's in SQLite, the server's in PostgreSQL). Connecting, adopting the
//! app's schema and classifying connection errors stay in `sqlite.rs` and `postgres.rs`.
//!
//! The parameter types here ([`TimeValue`], [`TextList`]) encode themselves for both backends,
//! as the ids of `ids.rs` do, so that a statement binds the same values on either.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgTypeInfo};
use sqlx::query::Query;
use sqlx::sqlite::{SqliteArgumentsBuffer, SqliteTypeInfo};
use sqlx::{ConnectOptions, Encode, Executor, Postgres, Sqlite, Type};
use uuid::Uuid;

use super::StoreError;
use super::ids::NullableId;
use super::schema::{self, Found, TimeRepr};
use super::url::{redact_url, scrub};

/// Which lease statement a lease clock is bound for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LeaseClock {
    /// Taking a lease (or taking one over): when it was acquired and when it expires.
    Take,
    /// Renewing a lease: when it now expires.
    Renew,
    /// Checking that a lease has not run out: the time now (SQLite binds it; PostgreSQL binds
    /// nothing and reads `now()`).
    Now,
}

/// One database engine as the store's operations see it (see the module docs).
pub(crate) trait Backend: sqlx::Database {
    /// How vapictl's own tables (`vapictl_changes`, `vapictl_locks`, `vapictl_applied_plans`,
    /// `vapictl_twilio_urls`) spell a time.
    const OWN_TIME: TimeRepr;

    /// Other users' rows that may hold the numbers in question: `$1` numbers, `$2` owner, `$3`
    /// Vapi ids, `$4` whether to add every row whose number is not canonical-looking (`+` then 7
    /// to 15 digits, the first not 0). `$1` and `$3` are [`TextList`]s.
    const SELECT_CLAIMS: &'static str;

    /// The `WHERE` clause that selects the owner's assistants (or squads) and those whose id,
    /// name or Vapi id (`{vapi_id}`, the table's column) is one of the references: `$1` owner,
    /// `$2` references ([`TextList`]).
    const TARGETS_FOR: &'static str;

    /// Takes a lease (an owner's, or `vapictl serve`'s leader lease) when it is free or expired,
    /// in one statement, raising the row's epoch (fencing token) by one (1 on a new row) and
    /// returning it; no row when the lease was not taken. `$1` owner, `$2` host, `$3` pid, `$4`
    /// run, `$5` token, `$6` pid namespace, then the [`LeaseClock::Take`] parameters.
    const TAKE_LEASE: &'static str;

    /// Replaces the lease whose token is `$2` (a dead holder's), whatever its expiry, raising
    /// and returning the epoch. `$1` owner, `$3` host, `$4` pid, `$5` run, `$6` new token, `$7`
    /// pid namespace, then the [`LeaseClock::Take`] parameters.
    const TAKE_OVER_LEASE: &'static str;

    /// Extends a lease if the row still carries token `$2` and, unless `$3` is NULL, epoch `$3`
    /// (`$1` owner), then the [`LeaseClock::Renew`] parameters.
    const RENEW_LEASE: &'static str;

    /// Counts the leader rows (0 or 1) carrying token `$2` and epoch `$3` (`$1` owner) that have
    /// not expired, then the [`LeaseClock::Now`] parameters.
    const LEADER_IS_LIVE: &'static str;

    /// How many rows a statement changed.
    fn rows_affected(done: &Self::QueryResult) -> u64;

    /// Binds the lease clock's parameters for `clock` (see the lease statements).
    fn bind_lease_clock(
        query: Query<'_, Self, Self::Arguments>,
        ttl: Duration,
        clock: LeaseClock,
    ) -> Query<'_, Self, Self::Arguments>;

    /// Reads the time in `column` of a row of vapictl's own `table`.
    fn read_time(
        row: &Self::Row,
        table: &'static str,
        column: &'static str,
    ) -> Result<DateTime<Utc>, StoreError>;

    /// Reads the UUID in `column` of a row of vapictl's own `table`.
    fn read_uuid(
        row: &Self::Row,
        table: &'static str,
        column: &'static str,
    ) -> Result<Uuid, StoreError>;
}

// --- Connecting and introspection, as both backends do them -----------------------------------

/// `url` parsed into `C`'s connect options.
pub(crate) fn connect_options<C: ConnectOptions>(url: &str) -> Result<C, StoreError> {
    C::from_str(url).map_err(|e| StoreError::InvalidUrl {
        url: redact_url(url),
        reason: scrub(&e.to_string(), url),
    })
}

/// A first connection of the backend's own (not the pool's), so that a failure surfaces as
/// itself rather than as the pool's "timed out"; `classify` names the failure.
pub(crate) async fn connect_within<C: ConnectOptions>(
    options: &C,
    url: &str,
    timeout: Duration,
    classify: fn(sqlx::Error, &str) -> StoreError,
) -> Result<C::Connection, StoreError>
where
    C::Connection: Sized,
{
    tokio::time::timeout(timeout, options.connect())
        .await
        .map_err(|_| StoreError::ConnectTimedOut {
            url: redact_url(url),
            after: timeout,
        })?
        .map_err(|e| classify(e, url))
}

/// Reads vapictl's migration bookkeeping into `found` (`applied`, `failed`); call it only when
/// the bookkeeping table exists.
pub(crate) async fn read_bookkeeping<'c, DB, E>(
    conn: E,
    found: &mut Found,
) -> Result<(), sqlx::Error>
where
    DB: sqlx::Database,
    E: Executor<'c, Database = DB>,
    for<'r> (i64, Vec<u8>, bool): sqlx::FromRow<'r, DB::Row>,
    DB::Arguments: sqlx::IntoArguments<DB>,
{
    let rows: Vec<(i64, Vec<u8>, bool)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT version, checksum, success FROM {} ORDER BY version",
        schema::MIGRATIONS_TABLE
    )))
    .fetch_all(conn)
    .await?;
    found.failed = rows.iter().filter(|r| !r.2).map(|r| r.0).collect();
    found.applied = Some(
        rows.into_iter()
            .filter(|r| r.2)
            .map(|r| (r.0, r.1))
            .collect(),
    );
    Ok(())
}

/// The newest value, as text, of each of `columns` of `phone_numbers` that holds any (to tell
/// epoch seconds from milliseconds, and which text form the app's timestamps take).
pub(crate) async fn newest_values<DB>(
    conn: &mut DB::Connection,
    columns: &[&str],
) -> Result<BTreeMap<String, String>, sqlx::Error>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'r> (Option<String>,): sqlx::FromRow<'r, DB::Row>,
    DB::Arguments: sqlx::IntoArguments<DB>,
{
    let mut samples = BTreeMap::new();
    for column in columns {
        let newest: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT CAST(max({column}) AS TEXT) FROM phone_numbers"
        )))
        .fetch_one(&mut *conn)
        .await?;
        if let Some(value) = newest {
            samples.insert((*column).to_owned(), value);
        }
    }
    Ok(samples)
}

// --- Parameters -------------------------------------------------------------------------------

/// A time as a timestamp column wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TimeValue {
    Native(DateTime<Utc>),
    Text(String),
    Int(i64),
}

impl TimeValue {
    /// `t` in the representation `repr`.
    pub(crate) fn new(repr: TimeRepr, t: DateTime<Utc>) -> TimeValue {
        match repr {
            TimeRepr::Native => TimeValue::Native(t),
            TimeRepr::Rfc3339 => TimeValue::Text(rfc3339(t)),
            TimeRepr::SqlText => TimeValue::Text(t.format("%Y-%m-%d %H:%M:%S").to_string()),
            TimeRepr::EpochSeconds => TimeValue::Int(t.timestamp()),
            TimeRepr::EpochMillis => TimeValue::Int(t.timestamp_millis()),
        }
    }
}

/// The one text form of a time in vapictl's own SQLite tables: RFC 3339, UTC, microseconds,
/// `Z`. Fixed width, so that text comparison (lease expiry) and text order (history) are time
/// order.
pub(crate) fn rfc3339(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// Reads back what [`rfc3339`] wrote.
pub(crate) fn parse_rfc3339(
    s: &str,
    table: &'static str,
    column: &'static str,
) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::UnreadableValue {
            table,
            column,
            reason: format!("`{s}` is not an RFC 3339 timestamp: {e}"),
        })
}

/// A value written into a column of the app's `phone_numbers` (see `sql::PHONE_COLUMNS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RowValue {
    Text(Option<String>),
    Bool(bool),
    /// An id in the column's own type, NULL or not.
    Id(NullableId),
    Time(TimeValue),
}

/// A list of strings as one parameter: a JSON array in SQLite (walked by `json_each`), a
/// `text[]` in PostgreSQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TextList(pub Vec<String>);

impl Type<Postgres> for TimeValue {
    fn type_info() -> PgTypeInfo {
        <DateTime<Utc> as Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <DateTime<Utc> as Type<Postgres>>::compatible(ty)
            || <String as Type<Postgres>>::compatible(ty)
            || <i64 as Type<Postgres>>::compatible(ty)
    }
}

impl Encode<'_, Postgres> for TimeValue {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        match self {
            TimeValue::Native(t) => <DateTime<Utc> as Encode<Postgres>>::encode_by_ref(t, buf),
            TimeValue::Text(s) => <String as Encode<Postgres>>::encode_by_ref(s, buf),
            TimeValue::Int(n) => <i64 as Encode<Postgres>>::encode_by_ref(n, buf),
        }
    }

    fn produces(&self) -> Option<PgTypeInfo> {
        Some(match self {
            TimeValue::Native(_) => <DateTime<Utc> as Type<Postgres>>::type_info(),
            TimeValue::Text(_) => <String as Type<Postgres>>::type_info(),
            TimeValue::Int(_) => <i64 as Type<Postgres>>::type_info(),
        })
    }
}

impl Type<Sqlite> for TimeValue {
    fn type_info() -> SqliteTypeInfo {
        <String as Type<Sqlite>>::type_info()
    }
}

impl Encode<'_, Sqlite> for TimeValue {
    fn encode_by_ref(&self, buf: &mut SqliteArgumentsBuffer) -> Result<IsNull, BoxDynError> {
        match self {
            TimeValue::Native(t) => <DateTime<Utc> as Encode<Sqlite>>::encode_by_ref(t, buf),
            TimeValue::Text(s) => <String as Encode<Sqlite>>::encode_by_ref(s, buf),
            TimeValue::Int(n) => <i64 as Encode<Sqlite>>::encode_by_ref(n, buf),
        }
    }
}

impl Type<Postgres> for RowValue {
    fn type_info() -> PgTypeInfo {
        <String as Type<Postgres>>::type_info()
    }
}

impl Encode<'_, Postgres> for RowValue {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        match self {
            RowValue::Text(s) => <Option<String> as Encode<Postgres>>::encode_by_ref(s, buf),
            RowValue::Bool(b) => <bool as Encode<Postgres>>::encode_by_ref(b, buf),
            RowValue::Id(id) => <NullableId as Encode<Postgres>>::encode_by_ref(id, buf),
            RowValue::Time(t) => <TimeValue as Encode<Postgres>>::encode_by_ref(t, buf),
        }
    }

    fn produces(&self) -> Option<PgTypeInfo> {
        match self {
            RowValue::Text(_) => Some(<String as Type<Postgres>>::type_info()),
            RowValue::Bool(_) => Some(<bool as Type<Postgres>>::type_info()),
            RowValue::Id(id) => <NullableId as Encode<Postgres>>::produces(id),
            RowValue::Time(t) => <TimeValue as Encode<Postgres>>::produces(t),
        }
    }
}

impl Type<Sqlite> for RowValue {
    fn type_info() -> SqliteTypeInfo {
        <String as Type<Sqlite>>::type_info()
    }
}

impl Encode<'_, Sqlite> for RowValue {
    fn encode_by_ref(&self, buf: &mut SqliteArgumentsBuffer) -> Result<IsNull, BoxDynError> {
        match self {
            RowValue::Text(s) => <Option<String> as Encode<Sqlite>>::encode_by_ref(s, buf),
            RowValue::Bool(b) => <bool as Encode<Sqlite>>::encode_by_ref(b, buf),
            RowValue::Id(id) => <NullableId as Encode<Sqlite>>::encode_by_ref(id, buf),
            RowValue::Time(t) => <TimeValue as Encode<Sqlite>>::encode_by_ref(t, buf),
        }
    }
}

impl Type<Postgres> for TextList {
    fn type_info() -> PgTypeInfo {
        <Vec<String> as Type<Postgres>>::type_info()
    }
}

impl Encode<'_, Postgres> for TextList {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        <Vec<String> as Encode<Postgres>>::encode_by_ref(&self.0, buf)
    }
}

impl Type<Sqlite> for TextList {
    fn type_info() -> SqliteTypeInfo {
        <String as Type<Sqlite>>::type_info()
    }
}

impl Encode<'_, Sqlite> for TextList {
    fn encode_by_ref(&self, buf: &mut SqliteArgumentsBuffer) -> Result<IsNull, BoxDynError> {
        <String as Encode<Sqlite>>::encode(serde_json::to_string(&self.0)?, buf)
    }
}

// --- The two backends -------------------------------------------------------------------------

impl Backend for Sqlite {
    const OWN_TIME: TimeRepr = TimeRepr::Rfc3339;

    const SELECT_CLAIMS: &'static str = "SELECT phone_number, user_id, vapi_phone_id \
         FROM phone_numbers WHERE user_id IS NOT $2 AND ( \
         phone_number IN (SELECT value FROM json_each($1)) \
         OR vapi_phone_id IN (SELECT value FROM json_each($3)) \
         OR ($4 AND NOT (phone_number GLOB '+[1-9]*' \
             AND substr(phone_number, 2) NOT GLOB '*[^0-9]*' \
             AND length(phone_number) BETWEEN 8 AND 16)))";

    const TARGETS_FOR: &'static str = "WHERE user_id = $1 \
         OR id IN (SELECT value FROM json_each($2)) \
         OR name IN (SELECT value FROM json_each($2)) \
         OR {vapi_id} IN (SELECT value FROM json_each($2))";

    // The client's clock: `$7` acquired, `$8` expires, both fixed-width RFC 3339 text.
    const TAKE_LEASE: &'static str = "INSERT INTO vapictl_locks \
         (owner, holder_host, holder_pid, run_id, lease_token, holder_pid_namespace, \
         acquired_at, expires_at, epoch) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1) \
         ON CONFLICT (owner) DO UPDATE SET holder_host = excluded.holder_host, \
         holder_pid = excluded.holder_pid, run_id = excluded.run_id, \
         lease_token = excluded.lease_token, acquired_at = excluded.acquired_at, \
         expires_at = excluded.expires_at, \
         holder_pid_namespace = excluded.holder_pid_namespace, \
         epoch = vapictl_locks.epoch + 1 \
         WHERE vapictl_locks.expires_at < excluded.acquired_at RETURNING epoch";

    const TAKE_OVER_LEASE: &'static str = "UPDATE vapictl_locks SET holder_host = $3, \
         holder_pid = $4, run_id = $5, lease_token = $6, holder_pid_namespace = $7, \
         acquired_at = $8, expires_at = $9, epoch = epoch + 1 \
         WHERE owner = $1 AND lease_token = $2 RETURNING epoch";

    const RENEW_LEASE: &'static str = "UPDATE vapictl_locks SET expires_at = $4 \
         WHERE owner = $1 AND lease_token = $2 AND ($3 IS NULL OR epoch = $3)";

    const LEADER_IS_LIVE: &'static str = "SELECT count(*) FROM vapictl_locks \
         WHERE owner = $1 AND lease_token = $2 AND epoch = $3 AND expires_at > $4";

    fn rows_affected(done: &Self::QueryResult) -> u64 {
        done.rows_affected()
    }

    fn bind_lease_clock(
        query: Query<'_, Self, Self::Arguments>,
        ttl: Duration,
        clock: LeaseClock,
    ) -> Query<'_, Self, Self::Arguments> {
        let now = Utc::now();
        match clock {
            LeaseClock::Take => query.bind(rfc3339(now)).bind(rfc3339(now + ttl)),
            LeaseClock::Renew => query.bind(rfc3339(now + ttl)),
            LeaseClock::Now => query.bind(rfc3339(now)),
        }
    }

    fn read_time(
        row: &Self::Row,
        table: &'static str,
        column: &'static str,
    ) -> Result<DateTime<Utc>, StoreError> {
        let text: String = sqlx::Row::try_get(row, column)?;
        parse_rfc3339(&text, table, column)
    }

    fn read_uuid(
        row: &Self::Row,
        table: &'static str,
        column: &'static str,
    ) -> Result<Uuid, StoreError> {
        let text: String = sqlx::Row::try_get(row, column)?;
        Uuid::parse_str(&text).map_err(|e| StoreError::UnreadableValue {
            table,
            column,
            reason: e.to_string(),
        })
    }
}

impl Backend for Postgres {
    const OWN_TIME: TimeRepr = TimeRepr::Native;

    const SELECT_CLAIMS: &'static str = "SELECT phone_number, user_id, vapi_phone_id \
         FROM phone_numbers WHERE user_id IS DISTINCT FROM $2 AND ( \
         phone_number = ANY($1) OR vapi_phone_id = ANY($3) \
         OR ($4 AND phone_number !~ '^\\+[1-9][0-9]{6,14}$'))";

    const TARGETS_FOR: &'static str = "WHERE user_id = $1 \
         OR id::text = ANY($2) OR name = ANY($2) \
         OR {vapi_id} = ANY($2)";

    // The server's clock, so that clients' clocks may disagree: `$7` the TTL in seconds.
    const TAKE_LEASE: &'static str = "INSERT INTO vapictl_locks \
         (owner, holder_host, holder_pid, run_id, lease_token, holder_pid_namespace, \
         acquired_at, expires_at, epoch) \
         VALUES ($1, $2, $3, $4, $5, $6, now(), now() + make_interval(secs => $7), 1) \
         ON CONFLICT (owner) DO UPDATE SET holder_host = excluded.holder_host, \
         holder_pid = excluded.holder_pid, run_id = excluded.run_id, \
         lease_token = excluded.lease_token, acquired_at = excluded.acquired_at, \
         expires_at = excluded.expires_at, \
         holder_pid_namespace = excluded.holder_pid_namespace, \
         epoch = vapictl_locks.epoch + 1 \
         WHERE vapictl_locks.expires_at < now() RETURNING epoch";

    const TAKE_OVER_LEASE: &'static str = "UPDATE vapictl_locks SET holder_host = $3, \
         holder_pid = $4, run_id = $5, lease_token = $6, holder_pid_namespace = $7, \
         acquired_at = now(), expires_at = now() + make_interval(secs => $8), \
         epoch = epoch + 1 WHERE owner = $1 AND lease_token = $2 RETURNING epoch";

    const RENEW_LEASE: &'static str = "UPDATE vapictl_locks \
         SET expires_at = now() + make_interval(secs => $4) \
         WHERE owner = $1 AND lease_token = $2 AND ($3::bigint IS NULL OR epoch = $3)";

    const LEADER_IS_LIVE: &'static str = "SELECT count(*) FROM vapictl_locks \
         WHERE owner = $1 AND lease_token = $2 AND epoch = $3 AND expires_at > now()";

    fn rows_affected(done: &Self::QueryResult) -> u64 {
        done.rows_affected()
    }

    fn bind_lease_clock(
        query: Query<'_, Self, Self::Arguments>,
        ttl: Duration,
        clock: LeaseClock,
    ) -> Query<'_, Self, Self::Arguments> {
        match clock {
            LeaseClock::Take | LeaseClock::Renew => query.bind(ttl.as_secs_f64()),
            LeaseClock::Now => query,
        }
    }

    fn read_time(
        row: &Self::Row,
        _table: &'static str,
        column: &'static str,
    ) -> Result<DateTime<Utc>, StoreError> {
        Ok(sqlx::Row::try_get(row, column)?)
    }

    fn read_uuid(
        row: &Self::Row,
        _table: &'static str,
        column: &'static str,
    ) -> Result<Uuid, StoreError> {
        Ok(sqlx::Row::try_get(row, column)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_times_are_fixed_width_and_round_trip() {
        let t = DateTime::parse_from_rfc3339("2025-01-31T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(rfc3339(t), "2025-01-31T12:00:00.000000Z");
        assert_eq!(parse_rfc3339(&rfc3339(t), "t", "c").unwrap(), t);
        assert_eq!(
            TimeValue::new(TimeRepr::Rfc3339, t),
            TimeValue::Text(rfc3339(t))
        );
    }

    #[test]
    fn app_times_take_the_columns_representation() {
        let t = DateTime::parse_from_rfc3339("2025-01-31T12:00:00.5Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            TimeValue::new(TimeRepr::SqlText, t),
            TimeValue::Text("2025-01-31 12:00:00".into())
        );
        assert_eq!(
            TimeValue::new(TimeRepr::EpochSeconds, t),
            TimeValue::Int(1_738_324_800)
        );
        assert_eq!(
            TimeValue::new(TimeRepr::EpochMillis, t),
            TimeValue::Int(1_738_324_800_500)
        );
        assert_eq!(TimeValue::new(TimeRepr::Native, t), TimeValue::Native(t));
    }
}
