//! Test databases: a fresh, empty database of one backend per test, and raw SQL on it.
//!
//! SQLite databases are temporary files. PostgreSQL ones need `VAPICTL_TEST_POSTGRES_URL`, a server
//! URL whose user may create databases (`eval "$(.ci/postgres.sh start)"` provides one); each test
//! creates its own database and drops it afterwards. Without the variable they skip with a line on
//! stderr, unless `VAPICTL_REQUIRE_POSTGRES=1`, which makes them fail instead.

use std::path::Path;
use std::str::FromStr;

use sqlx::{ConnectOptions, Connection, Row};
use tempfile::TempDir;
use uuid::Uuid;
use vapictl::store::{Store, StoreOptions, redact_url};

/// Which database a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh, empty database of one backend, removed when dropped.
pub struct TestDb {
    pub url: String,
    pub backend: Backend,
    /// Holds the SQLite file's directory alive (when the database owns it).
    _dir: Option<TempDir>,
    /// The PostgreSQL server URL and this test's database name, for the drop.
    pg: Option<(String, String)>,
}

impl TestDb {
    /// A SQLite database in a temporary directory of its own.
    pub fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut db = TestDb::sqlite_in(dir.path());
        db._dir = Some(dir);
        db
    }

    /// A SQLite database `app.db` in `dir`, which the caller keeps alive.
    pub fn sqlite_in(dir: &Path) -> TestDb {
        TestDb {
            url: format!("sqlite://{}", dir.join("app.db").display()),
            backend: Backend::Sqlite,
            _dir: None,
            pg: None,
        }
    }

    /// A new database on the test PostgreSQL server; `None` (after a line on stderr) when no
    /// server is configured and none is required.
    pub async fn postgres() -> Option<TestDb> {
        let Ok(server) = std::env::var("VAPICTL_TEST_POSTGRES_URL") else {
            if std::env::var("VAPICTL_REQUIRE_POSTGRES").as_deref() == Ok("1") {
                panic!("VAPICTL_REQUIRE_POSTGRES=1 but VAPICTL_TEST_POSTGRES_URL is not set");
            }
            eprintln!("skipped: VAPICTL_TEST_POSTGRES_URL not set");
            return None;
        };
        let name = format!("vapictl_t_{}", Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(&server)
            .await
            .unwrap_or_else(|e| panic!("cannot reach {}: {e}", redact_url(&server)));
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("create the test database");
        let _ = admin.close().await;
        Some(TestDb {
            url: with_database(&server, &name),
            backend: Backend::Postgres,
            _dir: None,
            pg: Some((server, name)),
        })
    }

    /// A fresh database of `backend` (see [`TestDb::postgres`] for when that is `None`).
    pub async fn new(backend: Backend) -> Option<TestDb> {
        match backend {
            Backend::Sqlite => Some(TestDb::sqlite()),
            Backend::Postgres => TestDb::postgres().await,
        }
    }

    /// For a PostgreSQL database: the server URL it was made on, and its name.
    pub fn postgres_server_and_name(&self) -> Option<(&str, &str)> {
        self.pg.as_ref().map(|(s, n)| (s.as_str(), n.as_str()))
    }

    pub async fn connect(&self) -> Store {
        self.connect_with(&StoreOptions::default()).await
    }

    pub async fn connect_with(&self, opts: &StoreOptions) -> Store {
        Store::connect(&self.url, opts)
            .await
            .unwrap_or_else(|e| panic!("connect: {e}"))
    }

    /// A connection of the test's own, creating the file when the test writes the schema itself.
    pub async fn sqlite_connection(&self) -> sqlx::SqliteConnection {
        sqlx::sqlite::SqliteConnectOptions::from_str(&self.url)
            .unwrap()
            .create_if_missing(true)
            .connect()
            .await
            .unwrap()
    }

    /// Runs `sql` (one or more statements) on a connection of its own.
    pub async fn execute(&self, sql: &str) {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match self.backend {
            Backend::Sqlite => {
                let mut conn = self.sqlite_connection().await;
                sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
                conn.close().await.unwrap();
            }
            Backend::Postgres => {
                let mut conn = sqlx::PgConnection::connect(&self.url).await.unwrap();
                sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
                conn.close().await.unwrap();
            }
        }
    }

    /// The rows of a query whose columns are all text (use `CAST(x AS TEXT)`).
    pub async fn strings(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match self.backend {
            Backend::Sqlite => {
                let mut conn = self.sqlite_connection().await;
                let rows = sqlx::query(sql).fetch_all(&mut conn).await.unwrap();
                rows.iter()
                    .map(|r| (0..r.len()).map(|i| r.try_get(i).unwrap()).collect())
                    .collect()
            }
            Backend::Postgres => {
                let mut conn = sqlx::PgConnection::connect(&self.url).await.unwrap();
                let rows = sqlx::query(sql).fetch_all(&mut conn).await.unwrap();
                rows.iter()
                    .map(|r| (0..r.len()).map(|i| r.try_get(i).unwrap()).collect())
                    .collect()
            }
        }
    }

    /// The single text value of a query.
    pub async fn string(&self, sql: &str) -> Option<String> {
        self.strings(sql).await.remove(0).remove(0)
    }

    /// Hand-written SQL for this backend: PostgreSQL's text or SQLite's.
    pub fn pick<'a>(&self, postgres: &'a str, sqlite: &'a str) -> &'a str {
        match self.backend {
            Backend::Postgres => postgres,
            Backend::Sqlite => sqlite,
        }
    }

    /// Everything the database holds, as text (for leak scans).
    pub async fn dump(&self) -> String {
        let mut out = String::new();
        match self.backend {
            Backend::Sqlite => {
                let mut c = self.sqlite_connection().await;
                let tables: Vec<String> =
                    sqlx::query("SELECT name FROM sqlite_master WHERE type='table'")
                        .fetch_all(&mut c)
                        .await
                        .unwrap()
                        .iter()
                        .map(|r| r.get::<String, _>(0))
                        .collect();
                for t in tables {
                    let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT * FROM \"{t}\"")))
                        .fetch_all(&mut c)
                        .await
                        .unwrap();
                    for r in rows {
                        for i in 0..r.len() {
                            let v: Option<String> =
                                r.try_get::<Option<String>, _>(i).ok().flatten();
                            out.push_str(&v.unwrap_or_default());
                            out.push('\t');
                        }
                        out.push('\n');
                    }
                }
            }
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url).await.unwrap();
                let tables: Vec<String> = sqlx::query(
                    "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'",
                )
                .fetch_all(&mut c)
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<String, _>(0))
                .collect();
                for t in tables {
                    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "SELECT row_to_json(x)::text FROM \"{t}\" x"
                    )))
                    .fetch_all(&mut c)
                    .await
                    .unwrap();
                    for r in rows {
                        out.push_str(&r.get::<String, _>(0));
                        out.push('\n');
                    }
                }
            }
        }
        out
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((server, name)) = self.pg.take() else {
            return;
        };
        // Drop may run inside a test's runtime (perhaps while unwinding): use a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut admin) = sqlx::PgConnection::connect(&server).await {
                    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                        .execute(&mut admin)
                        .await;
                    let _ = admin.close().await;
                }
            });
        })
        .join();
    }
}

/// `server` with its database replaced by `name`.
pub fn with_database(server: &str, name: &str) -> String {
    let (base, query) = match server.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (server, String::new()),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let root = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    format!("{root}/{name}{query}")
}
