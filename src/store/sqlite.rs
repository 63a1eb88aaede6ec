//! The SQLite backend: one file (or memory), UUIDs as lowercase hyphenated TEXT, timestamps as
//! fixed-width RFC 3339 UTC TEXT.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::types::Json;
use sqlx::{ConnectOptions, Connection, Row};
use uuid::Uuid;
use uuid::fmt::Hyphenated;

use super::audit::{self, ChangeRecord};
use super::ids::{DbId, IdKind};
use super::lock::{Lease, LockHolder};
use super::schema::{self, AppSchema, Check, Column, Dialect, Found, Table};
use super::sql::{self, RawAssistantRow, RawPhoneRow};
use super::url::{redact_url, scrub};
use super::{Lookup, QueryCounter, StoreError, StoreOptions};
use crate::state::{RecordedState, RowWrite, mask_number};

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("src/store/migrations/sqlite");

/// SQLite's primary result code for "attempt to write a readonly database".
const SQLITE_READONLY: i32 = 8;

/// The application tables as vapictl creates them when the database has none.
const CREATE_PHONE_NUMBERS: &str = "CREATE TABLE phone_numbers (
    id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL,
    phone_number TEXT NOT NULL UNIQUE,
    friendly_name TEXT,
    provider TEXT DEFAULT 'twilio',
    vapi_phone_id TEXT,
    vapi_credential_id TEXT,
    twilio_account_sid TEXT,
    twilio_auth_token TEXT,
    assigned_assistant_id TEXT,
    notes TEXT,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX phone_numbers_user_id ON phone_numbers (user_id);";

const CREATE_ASSISTANTS: &str = "CREATE TABLE assistants (
    id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL,
    name TEXT,
    vapi_assistant_id TEXT
);
CREATE INDEX assistants_user_id ON assistants (user_id);";

/// A pool on one SQLite database.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    queries: QueryCounter,
    lock_ttl: Duration,
    /// How the app's tables take vapictl's writes, learned when connecting.
    app: std::sync::Arc<AppSchema>,
}

/// Whether an error is SQLite's "database is locked" (SQLITE_BUSY), which a retry may clear.
fn is_busy(e: &StoreError) -> bool {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&s.to_string());
        source = s.source();
    }
    text.contains("database is locked") || text.contains("database is busy")
}

impl SqliteStore {
    /// Opens (creating when missing) and migrates the database at `url`.
    pub(crate) async fn connect(url: &str, opts: &StoreOptions) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::InvalidUrl {
                url: redact_url(url),
                reason: scrub(&e.to_string(), url),
            })?
            .create_if_missing(true)
            .busy_timeout(opts.busy_timeout)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal);

        // A first connection of our own, so that a failure surfaces as itself rather than as the
        // pool's "timed out".
        //
        // Several processes opening a new file at once race to switch it to WAL, and SQLite
        // answers that switch with "database is locked" without waiting for the busy timeout:
        // such a first connection is retried (with jitter) until the connect timeout.
        let deadline = tokio::time::Instant::now() + opts.connect_timeout;
        let (conn, app) = loop {
            let attempt = async {
                let mut conn = tokio::time::timeout(opts.connect_timeout, options.connect())
                    .await
                    .map_err(|_| StoreError::ConnectTimedOut {
                        url: redact_url(url),
                        after: opts.connect_timeout,
                    })?
                    .map_err(|e| connect_error(e, url))?;
                let app = migrate(&mut conn, url).await?;
                Ok::<_, StoreError>((conn, app))
            };
            match attempt.await {
                Ok(conn) => break conn,
                Err(e) if is_busy(&e) && tokio::time::Instant::now() < deadline => {
                    let pause = 20 + rand::random_range(0..80u64);
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
                Err(e) => return Err(e),
            }
        };

        // An in-memory database lives as long as one connection to it: keep exactly one, forever.
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let pool = SqlitePoolOptions::new()
            .max_connections(if in_memory { 1 } else { opts.max_connections })
            .min_connections(if in_memory { 1 } else { 0 })
            .idle_timeout((!in_memory).then_some(Duration::from_secs(600)))
            .max_lifetime((!in_memory).then_some(Duration::from_secs(1800)))
            .acquire_timeout(opts.connect_timeout)
            .connect_with(options)
            .await
            .map_err(|e| connect_error(e, url))?;
        let _ = conn.close().await;

        Ok(SqliteStore {
            pool,
            queries: QueryCounter::default(),
            lock_ttl: opts.lock_ttl,
            app: std::sync::Arc::new(app),
        })
    }

    pub(crate) fn queries(&self) -> &QueryCounter {
        &self.queries
    }

    pub(super) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub(crate) fn lock_ttl(&self) -> Duration {
        self.lock_ttl
    }

    pub(crate) async fn close(&self) {
        self.pool.close().await;
    }

    pub(crate) async fn load_recorded(
        &self,
        owner: Uuid,
        lookup: &Lookup<'_>,
    ) -> Result<RecordedState, StoreError> {
        let Lookup {
            numbers,
            vapi_ids,
            assistant_refs,
            non_canonical,
        } = *lookup;
        let mut state = RecordedState::default();

        self.queries.tick();
        let rows: Vec<RawPhoneRow<DbId>> = sqlx::query_as(sql::SELECT_OWNER_ROWS)
            .bind(owner.hyphenated())
            .fetch_all(&self.pool)
            .await?;
        state.rows = rows
            .into_iter()
            .filter_map(RawPhoneRow::into_phone_row)
            .map(|row| (row.phone_number.clone(), row))
            .collect();

        if !numbers.is_empty() || !vapi_ids.is_empty() || non_canonical {
            self.queries.tick();
            let claims = sqlx::query(sql::SQLITE_SELECT_CLAIMS)
                .bind(Json(numbers))
                .bind(owner.hyphenated())
                .bind(Json(vapi_ids))
                .bind(non_canonical)
                .fetch_all(&self.pool)
                .await?;
            for claim in claims {
                let number: Option<String> = claim.try_get("phone_number")?;
                let user: Option<DbId> = claim.try_get("user_id")?;
                let vapi_id: Option<String> = claim.try_get("vapi_phone_id")?;
                let user = user.map(Uuid::from).unwrap_or_default();
                state.add_claim(number, vapi_id, user);
            }
        }

        self.queries.tick();
        let assistants: Vec<RawAssistantRow<DbId>> = sqlx::query_as(
            "SELECT id, user_id, name, vapi_assistant_id FROM assistants \
             WHERE user_id = $1 OR id IN (SELECT value FROM json_each($2)) \
             OR name IN (SELECT value FROM json_each($2)) \
             OR vapi_assistant_id IN (SELECT value FROM json_each($2))",
        )
        .bind(owner.hyphenated())
        // Ids are stored lowercase and hyphenated; the references are matched as written too.
        .bind(Json(sql::lowercase_too(assistant_refs)))
        .fetch_all(&self.pool)
        .await?;
        state.assistants = sql::sorted_assistants(
            assistants
                .into_iter()
                .map(RawAssistantRow::into_assistant_row)
                .collect(),
        );
        Ok(state)
    }

    pub(crate) async fn insert_row(&self, owner: Uuid, row: &RowWrite) -> Result<Uuid, StoreError> {
        self.insert_with(&self.pool, owner, row).await
    }

    /// Tries the write, then rolls it back (see [`Store::probe_row_write`](super::Store::probe_row_write)).
    pub(crate) async fn probe_row_write(
        &self,
        owner: Uuid,
        row_id: Option<Uuid>,
        row: &RowWrite,
    ) -> Result<(), StoreError> {
        self.queries.tick();
        let mut tx = self.pool.begin().await?;
        let tried = match row_id {
            None => self.insert_with(&mut *tx, owner, row).await.map(|_| 1),
            Some(id) => self.update_with(&mut *tx, owner, id, row).await,
        };
        tx.rollback().await?;
        // An update that would match nothing fails the same way the real one would.
        match (tried?, row_id) {
            (0, Some(id)) => Err(self.why_untouched(id).await?),
            _ => Ok(()),
        }
    }

    async fn insert_with<'c, E>(
        &self,
        exec: E,
        owner: Uuid,
        row: &RowWrite,
    ) -> Result<Uuid, StoreError>
    where
        E: sqlx::Executor<'c, Database = sqlx::Sqlite>,
    {
        let app = &*self.app;
        let chosen = (app.phone_id != IdKind::Integer).then(Uuid::new_v4);
        let now = Utc::now();
        let sql = sqlx::AssertSqlSafe(sql::insert_row(chosen.is_some()));
        let query = sql::bind_fields!(sqlx::query(sql), app, owner, row);
        let query = sql::bind_time!(query, sql::time_value(app.created_at, now));
        let mut query = sql::bind_time!(query, sql::time_value(app.updated_at, now));
        if let Some(id) = chosen {
            query = query.bind(super::id_param(app.phone_id, id, "phone_numbers", "id")?);
        }
        self.queries.tick();
        let inserted = query
            .fetch_one(exec)
            .await
            .map_err(|e| super::write_error(e, &row.phone_number, app))?;
        match chosen {
            Some(id) => Ok(id),
            None => Ok(inserted.try_get::<DbId, _>(0)?.to_uuid()),
        }
    }

    pub(crate) async fn update_row(
        &self,
        owner: Uuid,
        row_id: Uuid,
        row: &RowWrite,
    ) -> Result<(), StoreError> {
        if self.update_with(&self.pool, owner, row_id, row).await? == 1 {
            Ok(())
        } else {
            Err(self.why_untouched(row_id).await?)
        }
    }

    /// The update statement; returns how many rows it matched.
    async fn update_with<'c, E>(
        &self,
        exec: E,
        owner: Uuid,
        row_id: Uuid,
        row: &RowWrite,
    ) -> Result<u64, StoreError>
    where
        E: sqlx::Executor<'c, Database = sqlx::Sqlite>,
    {
        let app = &*self.app;
        let Some(id) = app.phone_id.bind(row_id) else {
            return Err(StoreError::RowNotFound { row_id });
        };
        let query = sql::bind_fields!(sqlx::query(sql::UPDATE_ROW), app, owner, row);
        let query = sql::bind_time!(query, sql::time_value(app.updated_at, Utc::now()));
        self.queries.tick();
        let done = query
            .bind(id)
            .execute(exec)
            .await
            .map_err(|e| super::write_error(e, &row.phone_number, app))?;
        Ok(done.rows_affected())
    }

    pub(crate) async fn delete_row(&self, owner: Uuid, row_id: Uuid) -> Result<(), StoreError> {
        let Some(id) = self.app.phone_id.bind(row_id) else {
            return Err(StoreError::RowNotFound { row_id });
        };
        self.queries.tick();
        let done = sqlx::query(sql::DELETE_ROW)
            .bind(id)
            .bind(owner.hyphenated())
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 1 {
            Ok(())
        } else {
            Err(self.why_untouched(row_id).await?)
        }
    }

    /// After a write to `row_id` matched no row of the owner: whose fault it was.
    async fn why_untouched(&self, row_id: Uuid) -> Result<StoreError, StoreError> {
        if self.app.phone_id.bind(row_id).is_none() {
            return Ok(StoreError::RowNotFound { row_id });
        }
        self.queries.tick();
        let count: i64 = sqlx::query_scalar(sql::ROW_EXISTS)
            .bind(self.app.phone_id.bind(row_id))
            .fetch_one(&self.pool)
            .await?;
        Ok(super::untouched_row_error(row_id, count))
    }

    pub(crate) async fn plan_claimed(&self, plan_id: &str) -> Result<bool, StoreError> {
        self.queries.tick();
        let n: i64 = sqlx::query_scalar(sql::PLAN_CLAIMED)
            .bind(plan_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(n > 0)
    }

    pub(crate) async fn claim_plan(
        &self,
        plan_id: &str,
        owner: Uuid,
        run_id: &str,
    ) -> Result<bool, StoreError> {
        self.queries.tick();
        let done = sqlx::query(sql::CLAIM_PLAN)
            .bind(plan_id)
            .bind(owner.hyphenated())
            .bind(run_id)
            .bind(timestamp(chrono::Utc::now()))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn record_change(&self, change: &ChangeRecord) -> Result<(), StoreError> {
        self.queries.tick();
        sqlx::query(sql::INSERT_CHANGE)
            .bind(&change.run_id)
            .bind(timestamp(change.at))
            .bind(change.owner.hyphenated())
            .bind(mask_number(&change.number_masked))
            .bind(&change.action)
            .bind(Json(&change.fields))
            .bind(audit::object_json(&change.before).map(Json))
            .bind(audit::object_json(&change.after).map(Json))
            .bind(&change.vapi_phone_id)
            .bind(&change.outcome)
            .bind(&change.error)
            .bind(&change.ci_run_id)
            .bind(&change.commit_sha)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub(crate) async fn history(
        &self,
        owner: Uuid,
        number_masked: Option<String>,
        limit: i64,
    ) -> Result<Vec<ChangeRecord>, StoreError> {
        self.queries.tick();
        let rows = sqlx::query(sql::SELECT_CHANGES)
            .bind(owner.hyphenated())
            .bind(number_masked)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let at: String = row.try_get("at")?;
                let owner: Hyphenated = row.try_get("user_id")?;
                let fields: Json<serde_json::Value> = row.try_get("fields")?;
                let before: Option<Json<serde_json::Value>> = row.try_get("before")?;
                let after: Option<Json<serde_json::Value>> = row.try_get("after")?;
                Ok(ChangeRecord {
                    run_id: row.try_get("run_id")?,
                    at: parse_timestamp(&at, "vapictl_changes", "at")?,
                    owner: owner.into(),
                    number_masked: row.try_get("number_masked")?,
                    action: row.try_get("action")?,
                    fields: audit::json_fields(fields.0)?,
                    before: audit::json_object(before.map(|j| j.0), "before")?,
                    after: audit::json_object(after.map(|j| j.0), "after")?,
                    vapi_phone_id: row.try_get("vapi_phone_id")?,
                    outcome: row.try_get("outcome")?,
                    error: row.try_get("error")?,
                    ci_run_id: row.try_get("ci_run_id")?,
                    commit_sha: row.try_get("commit_sha")?,
                })
            })
            .collect()
    }

    /// Takes the owner's lease when it is free or expired, in one statement.
    pub(crate) async fn take_lease(
        &self,
        owner: Uuid,
        holder: &LockHolder,
        token: Uuid,
    ) -> Result<bool, StoreError> {
        let now = Utc::now();
        self.queries.tick();
        let done = sqlx::query(
            "INSERT INTO vapictl_locks \
             (owner, holder_host, holder_pid, run_id, lease_token, acquired_at, expires_at, \
             holder_pid_namespace) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (owner) DO UPDATE SET holder_host = excluded.holder_host, \
             holder_pid = excluded.holder_pid, run_id = excluded.run_id, \
             lease_token = excluded.lease_token, acquired_at = excluded.acquired_at, \
             expires_at = excluded.expires_at, \
             holder_pid_namespace = excluded.holder_pid_namespace \
             WHERE vapictl_locks.expires_at < excluded.acquired_at",
        )
        .bind(owner.hyphenated())
        .bind(&holder.host)
        .bind(i64::from(holder.pid))
        .bind(&holder.run_id)
        .bind(token.hyphenated())
        .bind(timestamp(now))
        .bind(timestamp(now + self.lock_ttl))
        .bind(holder.pid_namespace())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Replaces the lease whose token is `stale`, whatever its expiry, in one statement.
    pub(crate) async fn take_over_lease(
        &self,
        owner: Uuid,
        stale: Uuid,
        holder: &LockHolder,
        token: Uuid,
    ) -> Result<bool, StoreError> {
        let now = Utc::now();
        self.queries.tick();
        let done = sqlx::query(sql::TAKE_OVER_LEASE)
            .bind(owner.hyphenated())
            .bind(stale.hyphenated())
            .bind(&holder.host)
            .bind(i64::from(holder.pid))
            .bind(&holder.run_id)
            .bind(token.hyphenated())
            .bind(timestamp(now))
            .bind(timestamp(now + self.lock_ttl))
            .bind(holder.pid_namespace())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn read_lease(&self, owner: Uuid) -> Result<Option<Lease>, StoreError> {
        self.queries.tick();
        let Some(row) = sqlx::query(sql::SELECT_LEASE)
            .bind(owner.hyphenated())
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let acquired_at: String = row.try_get("acquired_at")?;
        let expires_at: String = row.try_get("expires_at")?;
        Ok(Some(Lease {
            host: row.try_get("holder_host")?,
            pid: row.try_get("holder_pid")?,
            run_id: row.try_get("run_id")?,
            acquired_at: parse_timestamp(&acquired_at, "vapictl_locks", "acquired_at")?,
            expires_at: parse_timestamp(&expires_at, "vapictl_locks", "expires_at")?,
            token: parse_lease_token(&row.try_get::<String, _>("lease_token")?)?,
            pid_namespace: row.try_get("holder_pid_namespace")?,
        }))
    }

    pub(crate) async fn renew_lease(&self, owner: Uuid, token: Uuid) -> Result<bool, StoreError> {
        self.queries.tick();
        let done = sqlx::query(
            "UPDATE vapictl_locks SET expires_at = $3 WHERE owner = $1 AND lease_token = $2",
        )
        .bind(owner.hyphenated())
        .bind(token.hyphenated())
        .bind(timestamp(Utc::now() + self.lock_ttl))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn drop_lease(&self, owner: Uuid, token: Uuid) -> Result<bool, StoreError> {
        self.queries.tick();
        let done = sqlx::query(sql::DELETE_LEASE)
            .bind(owner.hyphenated())
            .bind(token.hyphenated())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }
}

/// Reads the app's tables and vapictl's bookkeeping as they are, changing nothing.
async fn introspect(conn: &mut SqliteConnection) -> Result<Found, sqlx::Error> {
    let mut found = Found {
        phone_numbers: table(conn, "phone_numbers").await?,
        assistants: table(conn, "assistants").await?,
        ..Found::default()
    };
    let bookkeeping: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = $1")
            .bind(schema::MIGRATIONS_TABLE)
            .fetch_one(&mut *conn)
            .await?;
    if bookkeeping > 0 {
        let rows: Vec<(i64, Vec<u8>, bool)> = sqlx::query_as(
            "SELECT version, checksum, success FROM vapictl_schema_migrations ORDER BY version",
        )
        .fetch_all(&mut *conn)
        .await?;
        found.failed = rows.iter().filter(|r| !r.2).map(|r| r.0).collect();
        found.applied = Some(
            rows.into_iter()
                .filter(|r| r.2)
                .map(|r| (r.0, r.1))
                .collect(),
        );
    }
    Ok(found)
}

/// One app table as SQLite describes it, or `None` when there is none.
async fn table(conn: &mut SqliteConnection, name: &str) -> Result<Option<Table>, sqlx::Error> {
    let Some(ddl): Option<Option<String>> = sqlx::query_scalar(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND lower(name) = $1",
    )
    .bind(name)
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(None);
    };
    // `hidden` is 2 or 3 for generated columns.
    let rows: Vec<(String, String, bool, Option<String>, i64, i64)> = sqlx::query_as(
        "SELECT lower(name), lower(type), \"notnull\", dflt_value, pk, hidden \
         FROM pragma_table_xinfo($1) WHERE hidden IN (0, 2, 3)",
    )
    .bind(name)
    .fetch_all(&mut *conn)
    .await?;
    let primary_keys = rows.iter().filter(|r| r.4 > 0).count();
    let columns: Vec<Column> = rows
        .into_iter()
        .map(|(name, ty, not_null, default, pk, hidden)| {
            // The one `INTEGER PRIMARY KEY` column is the rowid: SQLite assigns it.
            let rowid = pk > 0 && primary_keys == 1 && ty == "integer";
            Column {
                name,
                ty,
                not_null,
                has_default: default.is_some() || rowid,
                generated: hidden != 0,
                primary_key: pk > 0,
                default: default.map(|d| d.to_lowercase()),
            }
        })
        .collect();
    let mut samples = std::collections::BTreeMap::new();
    if name == "phone_numbers" {
        for column in ["created_at", "updated_at"] {
            if columns.iter().any(|c| c.name == column) {
                let newest: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT CAST(max({column}) AS TEXT) FROM phone_numbers"
                )))
                .fetch_one(&mut *conn)
                .await?;
                if let Some(value) = newest {
                    samples.insert(column.to_owned(), value);
                }
            }
        }
    }
    Ok(Some(Table {
        columns,
        checks: ddl.as_deref().map(checks_in).unwrap_or_default(),
        samples,
    }))
}

/// The `CHECK (…)` constraints in a `CREATE TABLE` statement, with their names when given
/// (`CONSTRAINT name CHECK (…)`).
fn checks_in(ddl: &str) -> Vec<Check> {
    let lower = ddl.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    let mut checks = Vec::new();
    let mut from = 0;
    while let Some(found) = lower[from..].find("check") {
        let at = from + found;
        from = at + 5;
        let word_before =
            at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_');
        let rest = lower[from..].trim_start();
        if word_before || !rest.starts_with('(') {
            continue;
        }
        let open = lower.len() - rest.len();
        let mut depth = 0usize;
        let mut end = None;
        for (i, c) in lower[open..].char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(open + i);
                        break;
                    }
                }
                _ => {}
            }
        }
        let Some(end) = end else { break };
        let definition = ddl[open + 1..end].trim().to_owned();
        let before: Vec<&str> = ddl[..at].split_whitespace().rev().take(2).collect();
        let name = match before.as_slice() {
            [name, kw] if kw.eq_ignore_ascii_case("constraint") => Some(
                name.trim_matches(|c| c == '"' || c == '`' || c == '[' || c == ']')
                    .to_owned(),
            ),
            _ => None,
        };
        checks.push(Check { name, definition });
        from = end;
    }
    checks
}

/// Learns the app's schema and brings it up to date, in that order: nothing is changed unless
/// the whole schema is usable, and then in one `BEGIN IMMEDIATE` transaction (which takes
/// SQLite's write lock up front, so that concurrent first runs queue, up to the busy timeout,
/// instead of racing). A database with nothing missing is only read, so a read-only file works.
async fn migrate(conn: &mut SqliteConnection, url: &str) -> Result<AppSchema, StoreError> {
    let fail = |e: sqlx::Error| migration_error(e, url);
    let decide = |found: &Found| {
        schema::decide(
            Dialect::Sqlite,
            found,
            &MIGRATIONS,
            CREATE_PHONE_NUMBERS,
            CREATE_ASSISTANTS,
        )
    };
    let decision = decide(&introspect(conn).await.map_err(fail)?)?;
    if decision.is_up_to_date() {
        return Ok(decision.app);
    }

    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(fail)?;
    // Again under the write lock: another process may have migrated meanwhile.
    let decision = decide(&introspect(&mut tx).await.map_err(fail)?)?;
    for statement in &decision.ddl {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement.clone()))
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
    }
    if decision.migrations_pending {
        schema::migrator(&MIGRATIONS)
            .run_direct(None, &mut *tx, false)
            .await
            .map_err(|e| schema::migrate_error(e, |e| read_only(e, url)))?;
    }
    // The tables as they now are (those vapictl created included).
    let decision = decide(&introspect(&mut tx).await.map_err(fail)?)?;
    tx.commit().await.map_err(fail)?;
    Ok(decision.app)
}

fn primary_code(err: &sqlx::Error) -> Option<i32> {
    let code = err.as_database_error()?.code()?;
    code.parse::<i32>().ok().map(|c| c & 0xff)
}

fn connect_error(err: sqlx::Error, url: &str) -> StoreError {
    read_only(&err, url).unwrap_or_else(|| StoreError::CannotOpenFile {
        url: redact_url(url),
        reason: scrub(&err.to_string(), url),
    })
}

fn migration_error(err: sqlx::Error, url: &str) -> StoreError {
    read_only(&err, url).unwrap_or_else(|| schema::ddl_failed(&err))
}

/// [`StoreError::ReadOnly`] when SQLite refused a write because the file or connection is
/// read-only.
fn read_only(err: &sqlx::Error, url: &str) -> Option<StoreError> {
    (primary_code(err) == Some(SQLITE_READONLY)).then(|| StoreError::ReadOnly {
        url: redact_url(url),
        reason: scrub(&err.to_string(), url),
    })
}

/// The one text form of a timestamp: RFC 3339, UTC, microseconds, `Z`. Fixed width, so that text
/// comparison (lease expiry) and text order (history) are time order.
fn timestamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

fn parse_timestamp(
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

fn parse_lease_token(text: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(text).map_err(|e| StoreError::UnreadableValue {
        table: "vapictl_locks",
        column: "lease_token",
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_are_found_with_their_names() {
        let checks = checks_in(
            "CREATE TABLE t (a TEXT CHECK (length(a) < 10), b INT, \
             CONSTRAINT \"b_positive\" CHECK(b > (0)), checked TEXT)",
        );
        assert_eq!(
            checks,
            [
                Check {
                    name: None,
                    definition: "length(a) < 10".to_owned()
                },
                Check {
                    name: Some("b_positive".to_owned()),
                    definition: "b > (0)".to_owned()
                },
            ]
        );
    }

    #[test]
    fn timestamps_are_fixed_width_and_round_trip() {
        let t = DateTime::parse_from_rfc3339("2025-01-31T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(timestamp(t), "2025-01-31T12:00:00.000000Z");
        assert_eq!(parse_timestamp(&timestamp(t), "t", "c").unwrap(), t);
    }
}
