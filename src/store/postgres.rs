//! The PostgreSQL backend: `uuid`, `timestamptz` and `jsonb` columns, arrays bound whole, the
//! server's clock for leases, and an advisory lock around migrations.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::types::Json;
use sqlx::{ConnectOptions, Connection, Row};
use uuid::Uuid;

use super::audit::{self, ChangeRecord};
use super::lock::{Lease, LockHolder};
use super::schema::{self, ASSISTANTS_REQUIRED, PHONE_NUMBERS_REQUIRED};
use super::sql::{self, RawAssistantRow, RawPhoneRow};
use super::url::{redact_url, scrub};
use super::{Lookup, QueryCounter, StoreError, StoreOptions};
use crate::state::{RecordedState, RowWrite, mask_number};

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// Key of the session advisory lock that serializes vapictl's migration step across processes
/// ("vapictl" in ASCII). Advisory locks are per database, so this never blocks another database.
const MIGRATION_LOCK_KEY: i64 = 0x0076_6170_6963_746c;

/// The application tables as vapictl creates them when the database has none.
const CREATE_PHONE_NUMBERS: &str = "CREATE TABLE phone_numbers (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL,
    phone_number text NOT NULL UNIQUE,
    friendly_name text,
    provider text DEFAULT 'twilio',
    vapi_phone_id text,
    vapi_credential_id text,
    twilio_account_sid text,
    twilio_auth_token text,
    assigned_assistant_id uuid,
    notes text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX phone_numbers_user_id ON phone_numbers (user_id);";

const CREATE_ASSISTANTS: &str = "CREATE TABLE assistants (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL,
    name text,
    vapi_assistant_id text
);
CREATE INDEX assistants_user_id ON assistants (user_id);";

/// A pool on one PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    queries: QueryCounter,
    lock_ttl: Duration,
}

impl PgStore {
    /// Connects to and migrates the database at `url`.
    pub(crate) async fn connect(url: &str, opts: &StoreOptions) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::InvalidUrl {
                url: redact_url(url),
                reason: scrub(&e.to_string(), url),
            })?
            .application_name("vapictl")
            .options([(
                "statement_timeout",
                format!("{}ms", opts.statement_timeout.as_millis()),
            )]);

        // A first connection of our own, so that "connection refused" or a bad password surfaces
        // as itself: the pool would retry a refused connection until it reports only a timeout.
        let mut conn = tokio::time::timeout(opts.connect_timeout, options.connect())
            .await
            .map_err(|_| StoreError::ConnectTimedOut {
                url: redact_url(url),
                after: opts.connect_timeout,
            })?
            .map_err(|e| connect_error(e, url))?;
        migrate(&mut conn, url).await?;
        let _ = conn.close().await;

        let pool = PgPoolOptions::new()
            .max_connections(opts.max_connections)
            .acquire_timeout(opts.connect_timeout)
            .idle_timeout(Duration::from_secs(600))
            .connect_lazy_with(options);
        Ok(PgStore {
            pool,
            queries: QueryCounter::default(),
            lock_ttl: opts.lock_ttl,
        })
    }

    pub(crate) fn queries(&self) -> &QueryCounter {
        &self.queries
    }

    pub(super) fn pool(&self) -> &PgPool {
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
        let rows: Vec<RawPhoneRow<Uuid>> = sqlx::query_as(sql::SELECT_OWNER_ROWS)
            .bind(owner)
            .fetch_all(&self.pool)
            .await?;
        state.rows = rows
            .into_iter()
            .filter_map(RawPhoneRow::into_phone_row)
            .map(|row| (row.phone_number.clone(), row))
            .collect();

        if !numbers.is_empty() || !vapi_ids.is_empty() || non_canonical {
            self.queries.tick();
            type Claim = (Option<String>, Option<Uuid>, Option<String>);
            let claims: Vec<Claim> = sqlx::query_as(sql::PG_SELECT_CLAIMS)
                .bind(numbers)
                .bind(owner)
                .bind(vapi_ids)
                .bind(non_canonical)
                .fetch_all(&self.pool)
                .await?;
            for (number, user, vapi_id) in claims {
                state.add_claim(number, vapi_id, user.unwrap_or_default());
            }
        }

        self.queries.tick();
        let assistants: Vec<RawAssistantRow<Uuid>> = sqlx::query_as(
            "SELECT id, user_id, name, vapi_assistant_id FROM assistants \
             WHERE user_id = $1 OR id::text = ANY($2) OR name = ANY($2) \
             OR vapi_assistant_id = ANY($2)",
        )
        .bind(owner)
        .bind(sql::lowercase_too(assistant_refs))
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
        let id = Uuid::new_v4();
        self.queries.tick();
        bind_row(sqlx::query(sql::INSERT_ROW), id, owner, row)
            .execute(&self.pool)
            .await
            .map_err(|e| super::unique_violation_is_taken_number(e, &row.phone_number))?;
        Ok(id)
    }

    pub(crate) async fn update_row(
        &self,
        owner: Uuid,
        row_id: Uuid,
        row: &RowWrite,
    ) -> Result<(), StoreError> {
        self.queries.tick();
        let done = bind_row(sqlx::query(sql::UPDATE_ROW), row_id, owner, row)
            .execute(&self.pool)
            .await
            .map_err(|e| super::unique_violation_is_taken_number(e, &row.phone_number))?;
        if done.rows_affected() == 1 {
            Ok(())
        } else {
            Err(self.why_untouched(row_id).await?)
        }
    }

    pub(crate) async fn delete_row(&self, owner: Uuid, row_id: Uuid) -> Result<(), StoreError> {
        self.queries.tick();
        let done = sqlx::query(sql::DELETE_ROW)
            .bind(row_id)
            .bind(owner)
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
        self.queries.tick();
        let count: i64 = sqlx::query_scalar(sql::ROW_EXISTS)
            .bind(row_id)
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
            .bind(owner)
            .bind(run_id)
            .bind(chrono::Utc::now())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn record_change(&self, change: &ChangeRecord) -> Result<(), StoreError> {
        self.queries.tick();
        sqlx::query(sql::INSERT_CHANGE)
            .bind(&change.run_id)
            .bind(change.at)
            .bind(change.owner)
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
            .bind(owner)
            .bind(number_masked)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let fields: Json<serde_json::Value> = row.try_get("fields")?;
                let before: Option<Json<serde_json::Value>> = row.try_get("before")?;
                let after: Option<Json<serde_json::Value>> = row.try_get("after")?;
                Ok(ChangeRecord {
                    run_id: row.try_get("run_id")?,
                    at: row.try_get("at")?,
                    owner: row.try_get("user_id")?,
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

    /// Takes the owner's lease when it is free or expired, in one statement, by the server's
    /// clock (so clients' clocks may disagree).
    pub(crate) async fn take_lease(
        &self,
        owner: Uuid,
        holder: &LockHolder,
        token: Uuid,
    ) -> Result<bool, StoreError> {
        self.queries.tick();
        let done = sqlx::query(
            "INSERT INTO vapictl_locks \
             (owner, holder_host, holder_pid, run_id, lease_token, acquired_at, expires_at, \
             holder_pid_namespace) \
             VALUES ($1, $2, $3, $4, $5, now(), now() + make_interval(secs => $6), $7) \
             ON CONFLICT (owner) DO UPDATE SET holder_host = excluded.holder_host, \
             holder_pid = excluded.holder_pid, run_id = excluded.run_id, \
             lease_token = excluded.lease_token, acquired_at = excluded.acquired_at, \
             expires_at = excluded.expires_at, \
             holder_pid_namespace = excluded.holder_pid_namespace \
             WHERE vapictl_locks.expires_at < now()",
        )
        .bind(owner)
        .bind(&holder.host)
        .bind(i64::from(holder.pid))
        .bind(&holder.run_id)
        .bind(token)
        .bind(self.lock_ttl.as_secs_f64())
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
        self.queries.tick();
        let done = sqlx::query(
            "UPDATE vapictl_locks SET holder_host = $3, holder_pid = $4, run_id = $5, \
             lease_token = $6, acquired_at = now(), \
             expires_at = now() + make_interval(secs => $7), holder_pid_namespace = $8 \
             WHERE owner = $1 AND lease_token = $2",
        )
        .bind(owner)
        .bind(stale)
        .bind(&holder.host)
        .bind(i64::from(holder.pid))
        .bind(&holder.run_id)
        .bind(token)
        .bind(self.lock_ttl.as_secs_f64())
        .bind(holder.pid_namespace())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn read_lease(&self, owner: Uuid) -> Result<Option<Lease>, StoreError> {
        self.queries.tick();
        let Some(row) = sqlx::query(sql::SELECT_LEASE)
            .bind(owner)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(Lease {
            host: row.try_get("holder_host")?,
            pid: row.try_get("holder_pid")?,
            run_id: row.try_get("run_id")?,
            acquired_at: row.try_get::<DateTime<Utc>, _>("acquired_at")?,
            expires_at: row.try_get::<DateTime<Utc>, _>("expires_at")?,
            token: row.try_get("lease_token")?,
            pid_namespace: row.try_get("holder_pid_namespace")?,
        }))
    }

    pub(crate) async fn renew_lease(&self, owner: Uuid, token: Uuid) -> Result<bool, StoreError> {
        self.queries.tick();
        let done = sqlx::query(
            "UPDATE vapictl_locks SET expires_at = now() + make_interval(secs => $3) \
             WHERE owner = $1 AND lease_token = $2",
        )
        .bind(owner)
        .bind(token)
        .bind(self.lock_ttl.as_secs_f64())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn drop_lease(&self, owner: Uuid, token: Uuid) -> Result<bool, StoreError> {
        self.queries.tick();
        let done = sqlx::query(sql::DELETE_LEASE)
            .bind(owner)
            .bind(token)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }
}

/// Binds `$1` id, `$2` owner and `$3..$13` of [`sql::INSERT_ROW`] / [`sql::UPDATE_ROW`].
fn bind_row<'q>(
    query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    id: Uuid,
    owner: Uuid,
    row: &RowWrite,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    query
        .bind(id)
        .bind(owner)
        .bind(&row.phone_number)
        .bind(&row.friendly_name)
        .bind(&row.vapi_phone_id)
        .bind(&row.vapi_credential_id)
        .bind(&row.twilio_account_sid)
        .bind(&row.twilio_auth_token)
        .bind(&row.token_digest)
        .bind(row.assigned_assistant_id)
        .bind(&row.notes)
        .bind(row.protected)
        .bind(Utc::now())
        .bind(&row.applied)
}

/// Runs the migration step under a session advisory lock, so that concurrent first runs queue
/// instead of racing on `CREATE TABLE` (which PostgreSQL does not make safe by itself). The lock
/// goes with the connection if this process dies.
async fn migrate(conn: &mut PgConnection, url: &str) -> Result<(), StoreError> {
    let fail = |e: sqlx::Error| migration_error(e, url);
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(MIGRATION_LOCK_KEY)
        .execute(&mut *conn)
        .await
        .map_err(fail)?;
    let migrated = adopt_and_migrate(conn, url).await;
    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(MIGRATION_LOCK_KEY)
        .execute(&mut *conn)
        .await;
    migrated?;
    unlocked.map_err(fail)?;
    Ok(())
}

/// Creates the application tables when absent and adds vapictl's columns when missing (one
/// transaction), then runs vapictl's own migrations.
///
/// Columns are inspected first and altered only when missing, because even
/// `ADD COLUMN IF NOT EXISTS` takes an exclusive lock on the application's busy table.
async fn adopt_and_migrate(conn: &mut PgConnection, url: &str) -> Result<(), StoreError> {
    let fail = |e: sqlx::Error| migration_error(e, url);
    let mut tx = conn.begin().await.map_err(fail)?;

    // `to_regclass` resolves through the search path, exactly as the unqualified names in every
    // statement do.
    let (has_phone_numbers, has_assistants): (bool, bool) = sqlx::query_as(
        "SELECT to_regclass('phone_numbers') IS NOT NULL, to_regclass('assistants') IS NOT NULL",
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(fail)?;
    // Indexes come only with tables vapictl creates: an application's table is left as it is.
    if !has_phone_numbers {
        sqlx::raw_sql(CREATE_PHONE_NUMBERS)
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
    }
    if !has_assistants {
        sqlx::raw_sql(CREATE_ASSISTANTS)
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
    }

    let mut phone_columns = columns(&mut tx, "phone_numbers").await.map_err(fail)?;
    for column in schema::columns_to_add(&phone_columns) {
        let ddl = format!(
            "ALTER TABLE phone_numbers ADD COLUMN IF NOT EXISTS {} {}",
            column.name, column.postgres
        );
        sqlx::query(sqlx::AssertSqlSafe(ddl))
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        phone_columns.push(column.name.to_owned());
    }
    schema::check_required("phone_numbers", PHONE_NUMBERS_REQUIRED, &phone_columns)?;
    let assistant_columns = columns(&mut tx, "assistants").await.map_err(fail)?;
    schema::check_required("assistants", ASSISTANTS_REQUIRED, &assistant_columns)?;
    tx.commit().await.map_err(fail)?;

    schema::migrator(&MIGRATIONS)
        .run_direct(None, &mut *conn, false)
        .await
        .map_err(|e| schema::migrate_error(e, |e| special_error(e, url)))
}

/// Lowercase column names of `table` (resolved through the search path).
async fn columns(conn: &mut PgConnection, table: &str) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT lower(attname::text) FROM pg_attribute \
         WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped",
    )
    .bind(table)
    .fetch_all(conn)
    .await
}

fn connect_error(err: sqlx::Error, url: &str) -> StoreError {
    special_error(&err, url).unwrap_or_else(|| StoreError::Unreachable {
        url: redact_url(url),
        reason: scrub(&err.to_string(), url),
    })
}

fn migration_error(err: sqlx::Error, url: &str) -> StoreError {
    special_error(&err, url).unwrap_or_else(|| schema::migration_failed(err))
}

/// The server's refusals that deserve their own variant, by SQLSTATE.
fn special_error(err: &sqlx::Error, url: &str) -> Option<StoreError> {
    let code = err.as_database_error()?.code()?;
    let url_shown = redact_url(url);
    let reason = scrub(&err.to_string(), url);
    match code.as_ref() {
        // invalid_password, invalid_authorization_specification
        "28P01" | "28000" => Some(StoreError::AuthenticationFailed {
            url: url_shown,
            reason,
        }),
        // invalid_catalog_name
        "3D000" => Some(StoreError::DatabaseMissing {
            url: url_shown,
            reason,
        }),
        // read_only_sql_transaction: a standby, or `default_transaction_read_only`
        "25006" => Some(StoreError::ReadOnly {
            url: url_shown,
            reason,
        }),
        _ => None,
    }
}
