//! The PostgreSQL backend's own ways: connecting, adopting the app's schema through the search
//! path under an advisory lock, reading the catalog, and classifying the server's refusals by
//! SQLSTATE. Its operations are the shared ones of `pool.rs`, with the encodings `backend.rs`
//! names for PostgreSQL (`uuid`, `timestamptz` and `jsonb` columns, arrays bound whole, the
//! server's clock for leases).

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};
use sqlx::{Connection, Postgres};

use super::backend;
use super::error::DbCause;
use super::pool::BackendStore;
use super::schema::{self, AppSchema, Check, Column, Decision, Dialect, Found, Table};
use super::url::{redact_url, scrub};
use super::{StoreError, StoreOptions};

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("src/store/migrations/postgres");

/// Key of the session advisory lock that serializes vapictl's migration step across processes
/// ("vapictl" in ASCII). Advisory locks are per database, so this never blocks another database.
const MIGRATION_LOCK_KEY: i64 = 0x0076_6170_6963_746c;

/// A pool on one PostgreSQL database.
pub type PgStore = BackendStore<Postgres>;

impl BackendStore<Postgres> {
    /// Connects to and migrates the database at `url`.
    pub(crate) async fn connect(url: &str, opts: &StoreOptions) -> Result<Self, StoreError> {
        let options = backend::connect_options::<PgConnectOptions>(url)?
            .application_name("vapictl")
            .options([(
                "statement_timeout",
                format!("{}ms", opts.statement_timeout.as_millis()),
            )]);

        // A first connection of our own, so that "connection refused" or a bad password surfaces
        // as itself: the pool would retry a refused connection until it reports only a timeout.
        let mut conn =
            backend::connect_within(&options, url, opts.connect_timeout, connect_error).await?;
        let app = migrate(&mut conn, url).await?;
        let _ = conn.close().await;

        let pool = PgPoolOptions::new()
            .max_connections(opts.max_connections)
            .acquire_timeout(opts.connect_timeout)
            .idle_timeout(Duration::from_secs(600))
            .connect_lazy_with(options);
        Ok(BackendStore::new(pool, opts.lock_ttl, app))
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
    schema::decide(Dialect::Postgres, found, &MIGRATIONS)
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
    let (search_path, role, phone_oid, assistants_oid, squads_oid, bookkeeping): (
        String,
        String,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        bool,
    ) = sqlx::query_as(
        "SELECT current_setting('search_path'), current_user::text, \
         to_regclass('phone_numbers')::oid::bigint, to_regclass('assistants')::oid::bigint, \
         to_regclass('squads')::oid::bigint, \
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
        squads: match squads_oid {
            Some(oid) => Some(table(conn, oid, "squads").await?),
            None => None,
        },
        elsewhere,
        search_path,
        role: Some(role),
        ..Found::default()
    };
    if bookkeeping {
        backend::read_bookkeeping(&mut *conn, &mut found).await?;
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
    // Only numbers and text say anything about their unit or form.
    let sampled: Vec<&str> = ["created_at", "updated_at"]
        .into_iter()
        .filter(|column| {
            name == "phone_numbers"
                && columns.iter().any(|c| {
                    c.name == *column
                        && (c.ty.contains("int")
                            || c.ty.starts_with("numeric")
                            || c.ty == "text"
                            || c.ty.starts_with("character"))
                })
        })
        .collect();
    let samples = backend::newest_values::<Postgres>(conn, &sampled).await?;
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
