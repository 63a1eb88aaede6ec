//! The SQLite backend's own ways: opening one file (or memory) and adopting its schema,
//! reading its catalog, and telling a read-only file from other failures. Its operations are
//! the shared ones of `pool.rs`, with the encodings `backend.rs` names for SQLite (UUIDs as
//! lowercase hyphenated TEXT, vapictl's times as fixed-width RFC 3339 UTC TEXT, lists as JSON).

use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection, Sqlite};

use super::backend;
use super::pool::BackendStore;
use super::schema::{self, AppSchema, Check, Column, Dialect, Found, Table};
use super::url::{redact_url, scrub};
use super::{StoreError, StoreOptions};

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("src/store/migrations/sqlite");

/// SQLite's primary result code for "attempt to write a readonly database".
const SQLITE_READONLY: i32 = 8;

/// A pool on one SQLite database.
pub type SqliteStore = BackendStore<Sqlite>;

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

impl BackendStore<Sqlite> {
    /// Opens (creating when missing) and migrates the database at `url`.
    pub(crate) async fn connect(url: &str, opts: &StoreOptions) -> Result<Self, StoreError> {
        let options = backend::connect_options::<SqliteConnectOptions>(url)?
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
                let mut conn =
                    backend::connect_within(&options, url, opts.connect_timeout, connect_error)
                        .await?;
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

        Ok(BackendStore::new(pool, opts.lock_ttl, app))
    }
}

/// Reads the app's tables and vapictl's bookkeeping as they are, changing nothing.
async fn introspect(conn: &mut SqliteConnection) -> Result<Found, sqlx::Error> {
    let mut found = Found {
        phone_numbers: table(conn, "phone_numbers").await?,
        assistants: table(conn, "assistants").await?,
        squads: table(conn, "squads").await?,
        ..Found::default()
    };
    let bookkeeping: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = $1")
            .bind(schema::MIGRATIONS_TABLE)
            .fetch_one(&mut *conn)
            .await?;
    if bookkeeping > 0 {
        backend::read_bookkeeping(&mut *conn, &mut found).await?;
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
    let samples = if name == "phone_numbers" {
        let present: Vec<&str> = ["created_at", "updated_at"]
            .into_iter()
            .filter(|column| columns.iter().any(|c| c.name == *column))
            .collect();
        backend::newest_values::<Sqlite>(conn, &present).await?
    } else {
        Default::default()
    };
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
    let decide = |found: &Found| schema::decide(Dialect::Sqlite, found, &MIGRATIONS);
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
}
