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
use super::error::DbCause;
use super::ids::{DbId, IdKind};
use super::lock::{Lease, LockHolder};
use super::schema::{self, AppSchema, Check, Column, Decision, Dialect, Found, Table};
use super::sql::{self, RawAssistantRow, RawPhoneRow};
use super::url::{redact_url, scrub};
use super::{Lookup, QueryCounter, StoreError, StoreOptions};
use crate::state::{RecordedState, RowWrite, mask_number};

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("src/store/migrations/postgres");

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
    /// How the app's tables take vapictl's writes, learned when connecting.
    app: std::sync::Arc<AppSchema>,
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
        let app = migrate(&mut conn, url).await?;
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
            app: std::sync::Arc::new(app),
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
        let rows: Vec<RawPhoneRow<DbId>> = sqlx::query_as(sql::SELECT_OWNER_ROWS)
            .bind(self.owner(owner))
            .fetch_all(&self.pool)
            .await?;
        state.rows = rows
            .into_iter()
            .filter_map(RawPhoneRow::into_phone_row)
            .map(|row| (row.phone_number.clone(), row))
            .collect();

        if !numbers.is_empty() || !vapi_ids.is_empty() || non_canonical {
            self.queries.tick();
            type Claim = (Option<String>, Option<DbId>, Option<String>);
            let claims: Vec<Claim> = sqlx::query_as(sql::PG_SELECT_CLAIMS)
                .bind(numbers)
                .bind(self.owner(owner))
                .bind(vapi_ids)
                .bind(non_canonical)
                .fetch_all(&self.pool)
                .await?;
            for (number, user, vapi_id) in claims {
                state.add_claim(number, vapi_id, user.map(Uuid::from).unwrap_or_default());
            }
        }

        self.queries.tick();
        let assistants: Vec<RawAssistantRow<DbId>> = sqlx::query_as(
            "SELECT id, user_id, name, vapi_assistant_id FROM assistants \
             WHERE user_id = $1 OR id::text = ANY($2) OR name = ANY($2) \
             OR vapi_assistant_id = ANY($2)",
        )
        .bind(self.app.assistant_user.bind(owner))
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

    /// The owner as `phone_numbers.user_id` spells it.
    fn owner(&self, owner: Uuid) -> Option<DbId> {
        self.app.phone_user.bind(owner)
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
        E: sqlx::Executor<'c, Database = sqlx::Postgres>,
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
        E: sqlx::Executor<'c, Database = sqlx::Postgres>,
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
            .bind(self.owner(owner))
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

/// Learns the app's schema and, only when something is missing, brings it up to date under a
/// session advisory lock, so that concurrent first runs queue instead of racing on `CREATE TABLE`
/// (which PostgreSQL does not make safe by itself). The lock goes with the connection if this
/// process dies. A database with nothing missing is only read: a role with nothing but SELECT,
/// INSERT, UPDATE and DELETE works.
async fn migrate(conn: &mut PgConnection, url: &str) -> Result<AppSchema, StoreError> {
    let fail = |e: sqlx::Error| migration_error(e, url);
    // A refusal is only trusted under the lock: a concurrent first run may commit its new tables
    // between the statements of this look (seen in `pg_class` but not yet through the search
    // path, they would pass for tables in another schema).
    if let Ok(decision) = decide(&introspect(conn).await.map_err(fail)?)
        && decision.is_up_to_date()
    {
        return Ok(decision.app);
    }
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
    let app = migrated?;
    unlocked.map_err(fail)?;
    Ok(app)
}

fn decide(found: &Found) -> Result<Decision, StoreError> {
    schema::decide(
        Dialect::Postgres,
        found,
        &MIGRATIONS,
        CREATE_PHONE_NUMBERS,
        CREATE_ASSISTANTS,
    )
}

/// Checks the schema again under the lock, then creates the missing app tables, adds vapictl's
/// missing columns and runs vapictl's own migrations, all in one transaction: a refusal or a
/// failure leaves the schema exactly as it was.
///
/// Columns are inspected first and altered only when missing, because even
/// `ADD COLUMN IF NOT EXISTS` takes an exclusive lock on the application's busy table.
async fn adopt_and_migrate(conn: &mut PgConnection, url: &str) -> Result<AppSchema, StoreError> {
    let fail = |e: sqlx::Error| migration_error(e, url);
    let mut tx = conn.begin().await.map_err(fail)?;
    let found = introspect(&mut tx).await.map_err(fail)?;
    let decision = decide(&found)?;
    let denied =
        |e: &sqlx::Error| special_error(e, url).or_else(|| privilege_error(e, &decision, &found));
    for statement in &decision.ddl {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement.clone()))
            .execute(&mut *tx)
            .await
            .map_err(|e| denied(&e).unwrap_or_else(|| schema::ddl_failed(&e)))?;
    }
    if decision.migrations_pending {
        schema::migrator(&MIGRATIONS)
            .run_direct(None, &mut *tx, false)
            .await
            .map_err(|e| schema::migrate_error(e, denied))?;
    }
    let app = decide(&introspect(&mut tx).await.map_err(fail)?)?.app;
    tx.commit().await.map_err(fail)?;
    Ok(app)
}

/// [`StoreError::InsufficientPrivilege`] for a role that may not change the schema, with the
/// statements the database owner must run instead.
fn privilege_error(err: &sqlx::Error, decision: &Decision, found: &Found) -> Option<StoreError> {
    let code = err.as_database_error()?.code()?;
    (code == "42501").then(|| {
        let script = schema::owner_script(
            Dialect::Postgres,
            decision,
            &MIGRATIONS,
            found,
            found.role.as_deref(),
        );
        StoreError::InsufficientPrivilege {
            action: "change the schema, and vapictl's tables or columns are missing".to_owned(),
            cause: Box::new(DbCause::of(err)),
            hint: format!(
                "ask the database owner to run these statements once, then run vapictl again; \
                 from then on it needs only SELECT, INSERT, UPDATE and DELETE:\n\
                 BEGIN;\n{script}\nCOMMIT;"
            ),
        }
    })
}

/// Reads the app's tables (through the search path, as every unqualified statement resolves
/// them), tables of the same names elsewhere, and vapictl's bookkeeping — changing nothing.
async fn introspect(conn: &mut PgConnection) -> Result<Found, sqlx::Error> {
    let (search_path, role, phone_oid, assistants_oid, bookkeeping): (
        String,
        String,
        Option<i64>,
        Option<i64>,
        bool,
    ) = sqlx::query_as(
        "SELECT current_setting('search_path'), current_user::text, \
         to_regclass('phone_numbers')::oid::bigint, to_regclass('assistants')::oid::bigint, \
         to_regclass('vapictl_schema_migrations') IS NOT NULL",
    )
    .fetch_one(&mut *conn)
    .await?;
    let elsewhere: Vec<String> = sqlx::query_scalar(
        "SELECT n.nspname::text || '.' || c.relname::text FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relname IN ('phone_numbers', 'assistants') AND c.relkind IN ('r', 'p', 'v', 'f', 'm') \
         AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
         AND n.nspname NOT LIKE 'pg\\_temp%' \
         AND c.oid::bigint IS DISTINCT FROM $1 AND c.oid::bigint IS DISTINCT FROM $2 \
         ORDER BY 1",
    )
    .bind(phone_oid)
    .bind(assistants_oid)
    .fetch_all(&mut *conn)
    .await?;
    let mut found = Found {
        phone_numbers: match phone_oid {
            Some(oid) => Some(table(conn, oid, "phone_numbers").await?),
            None => None,
        },
        assistants: match assistants_oid {
            Some(oid) => Some(table(conn, oid, "assistants").await?),
            None => None,
        },
        elsewhere,
        search_path,
        role: Some(role),
        ..Found::default()
    };
    if bookkeeping {
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

/// One app table (by oid) as the catalog describes it.
async fn table(conn: &mut PgConnection, oid: i64, name: &str) -> Result<Table, sqlx::Error> {
    let rows: Vec<(String, String, bool, bool, bool, bool)> = sqlx::query_as(
        "SELECT lower(a.attname::text), lower(format_type(a.atttypid, a.atttypmod)), \
         a.attnotnull, (a.atthasdef OR a.attidentity <> ''), \
         (a.attidentity = 'a' OR a.attgenerated <> ''), \
         EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = a.attrelid AND i.indisprimary \
                 AND a.attnum = ANY (i.indkey)) \
         FROM pg_attribute a WHERE a.attrelid = $1::oid AND a.attnum > 0 \
         AND NOT a.attisdropped ORDER BY a.attnum",
    )
    .bind(oid)
    .fetch_all(&mut *conn)
    .await?;
    let columns: Vec<Column> = rows
        .into_iter()
        .map(
            |(name, ty, not_null, has_default, generated, primary_key)| Column {
                name,
                ty,
                not_null,
                has_default,
                generated,
                primary_key,
                default: None,
            },
        )
        .collect();
    let checks = sqlx::query_as::<_, (String, String)>(
        "SELECT conname::text, pg_get_constraintdef(oid) FROM pg_constraint \
         WHERE conrelid = $1::oid AND contype = 'c' ORDER BY conname",
    )
    .bind(oid)
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|(name, definition)| Check {
        name: Some(name),
        definition,
    })
    .collect();
    let mut samples = std::collections::BTreeMap::new();
    if name == "phone_numbers" {
        for column in ["created_at", "updated_at"] {
            // Only numbers and text say anything about their unit or form.
            let sampled = columns.iter().any(|c| {
                c.name == column
                    && (c.ty.contains("int")
                        || c.ty.starts_with("numeric")
                        || c.ty == "text"
                        || c.ty.starts_with("character"))
            });
            if sampled {
                let newest: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT CAST(max({column}) AS text) FROM phone_numbers"
                )))
                .fetch_one(&mut *conn)
                .await?;
                if let Some(value) = newest {
                    samples.insert(column.to_owned(), value);
                }
            }
        }
    }
    Ok(Table {
        columns,
        checks,
        samples,
    })
}

fn connect_error(err: sqlx::Error, url: &str) -> StoreError {
    special_error(&err, url).unwrap_or_else(|| StoreError::Unreachable {
        url: redact_url(url),
        reason: scrub(&DbCause::of(&err).to_string(), url),
    })
}

fn migration_error(err: sqlx::Error, url: &str) -> StoreError {
    special_error(&err, url).unwrap_or_else(|| schema::ddl_failed(&err))
}

/// The server's refusals that deserve their own variant, by SQLSTATE.
fn special_error(err: &sqlx::Error, url: &str) -> Option<StoreError> {
    let code = err.as_database_error()?.code()?;
    let url_shown = redact_url(url);
    // The server's message, without sqlx's " at line N" (a line of PostgreSQL's own source).
    let reason = scrub(&DbCause::of(err).to_string(), url);
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
