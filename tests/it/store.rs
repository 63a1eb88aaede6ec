//! The store's conformance suite: every test below runs once on SQLite and once on PostgreSQL.
//!
//! SQLite tests use a temporary file. PostgreSQL tests need `VAPICTL_TEST_POSTGRES_URL`, a server
//! URL whose user may create databases (`eval "$(.ci/postgres.sh start)"` provides one); each test
//! creates its own database and drops it afterwards. Without the variable they skip with a line on
//! stderr, unless `VAPICTL_REQUIRE_POSTGRES=1`, which makes them fail instead.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use sqlx::{ConnectOptions, Connection, Row};
use tempfile::TempDir;
use uuid::Uuid;
use vapictl::state::RowWrite;
use vapictl::store::{ChangeRecord, LockHolder, Store, StoreError, StoreOptions, redact_url};

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// A fresh, empty database of one backend, removed when dropped.
struct TestDb {
    url: String,
    backend: Backend,
    /// Holds the SQLite file's directory alive.
    _dir: Option<TempDir>,
    /// The PostgreSQL server URL and this test's database name, for the drop.
    pg: Option<(String, String)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

impl TestDb {
    fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("app.db").display());
        TestDb {
            url,
            backend: Backend::Sqlite,
            _dir: Some(dir),
            pg: None,
        }
    }

    /// `None` (after a line on stderr) when no PostgreSQL server is configured.
    async fn postgres() -> Option<TestDb> {
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

    async fn connect(&self) -> Store {
        self.connect_with(&StoreOptions::default()).await
    }

    async fn connect_with(&self, opts: &StoreOptions) -> Store {
        Store::connect(&self.url, opts)
            .await
            .unwrap_or_else(|e| panic!("connect: {e}"))
    }

    /// A connection of the test's own, creating the file when the test writes the schema itself.
    async fn sqlite_connection(&self) -> sqlx::SqliteConnection {
        sqlx::sqlite::SqliteConnectOptions::from_str(&self.url)
            .unwrap()
            .create_if_missing(true)
            .connect()
            .await
            .unwrap()
    }

    /// Runs `sql` (one or more statements) on a connection of its own.
    async fn execute(&self, sql: &str) {
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
    async fn strings(&self, sql: &str) -> Vec<Vec<Option<String>>> {
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
    async fn string(&self, sql: &str) -> Option<String> {
        self.strings(sql).await.remove(0).remove(0)
    }

    /// Hand-written SQL for this backend: PostgreSQL's text or SQLite's.
    fn pick<'a>(&self, postgres: &'a str, sqlite: &'a str) -> &'a str {
        match self.backend {
            Backend::Postgres => postgres,
            Backend::Sqlite => sqlite,
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((server, name)) = self.pg.take() else {
            return;
        };
        // Drop runs inside the test's runtime (perhaps while unwinding): use a thread of its own.
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
fn with_database(server: &str, name: &str) -> String {
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

/// Declares each listed test once per backend.
macro_rules! conformance {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(&super::TestDb::sqlite()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    if let Some(db) = super::TestDb::postgres().await {
                        super::$test(&db).await;
                    }
                }
            )*
        }
    };
}

conformance!(
    a_saved_plan_is_claimed_once,
    fresh_database_is_migrated_and_round_trips_every_column,
    connecting_twice_migrates_once,
    concurrent_first_connects_all_succeed,
    existing_app_schema_gains_only_missing_columns_and_keeps_its_rows,
    app_table_without_a_needed_column_is_refused_by_name,
    load_recorded_returns_own_rows_foreign_claims_and_assistants,
    update_overwrites_managed_columns_and_bumps_updated_at,
    delete_removes_only_that_row,
    writes_to_another_users_row_are_refused_and_change_nothing,
    writes_to_a_missing_row_are_refused,
    recording_a_taken_number_is_refused_with_the_number_masked,
    second_acquire_times_out_naming_the_holder,
    released_lock_is_free_at_once,
    held_lock_outlives_its_ttl_while_the_heartbeat_runs,
    abandoned_lease_is_taken_over_once_expired,
    locks_on_different_owners_are_independent,
    four_contending_tasks_take_turns,
    history_is_newest_first_and_filters_by_number,
    audit_trail_stores_numbers_masked,
    load_costs_the_same_queries_for_2000_rows_as_for_2,
    extra_not_null_column_is_refused_by_name_and_nothing_is_changed,
    integer_ids_are_assigned_by_the_database_and_read_back,
    integer_id_without_a_default_is_refused_by_name,
    text_user_ids_are_matched_and_written_as_text,
    epoch_timestamps_are_written_as_epoch_integers,
    a_check_violation_names_the_constraint_without_row_values,
    an_up_to_date_schema_is_opened_without_any_ddl,
);

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn owner() -> Uuid {
    Uuid::new_v4()
}

fn write(number: &str) -> RowWrite {
    RowWrite {
        phone_number: number.to_owned(),
        friendly_name: format!("Line {number}"),
        vapi_phone_id: Some(format!("vapi-{number}")),
        vapi_credential_id: Some("cred-1".to_owned()),
        twilio_account_sid: "AC0000".to_owned(),
        twilio_auth_token:
            "-----BEGIN AGE ENCRYPTED FILE-----\nciphertext\n-----END AGE ENCRYPTED FILE-----"
                .to_owned(),
        api_key: Some("SK0123456789abcdef0123456789abcdef".to_owned()),
        token_digest: Some("digest-1".to_owned()),
        assigned_assistant_id: None,
        notes: None,
        protected: false,
        applied: None,
    }
}

fn holder(name: &str) -> LockHolder {
    LockHolder {
        host: format!("host-{name}"),
        pid: 4242,
        run_id: format!("run-{name}"),
    }
}

fn short_ttl(ttl_ms: u64) -> StoreOptions {
    StoreOptions {
        lock_ttl: Duration::from_millis(ttl_ms),
        ..StoreOptions::default()
    }
}

fn change(owner: Uuid, number: &str, action: &str, minute: u32) -> ChangeRecord {
    ChangeRecord {
        run_id: format!("run-{minute}"),
        at: Utc.with_ymd_and_hms(2025, 1, 31, 12, minute, 0).unwrap(),
        owner,
        number_masked: vapictl::state::mask_number(number),
        action: action.to_owned(),
        fields: vec!["name".to_owned()],
        before: Some(
            serde_json::json!({"name": "old"})
                .as_object()
                .unwrap()
                .clone(),
        ),
        after: Some(
            serde_json::json!({"name": "new"})
                .as_object()
                .unwrap()
                .clone(),
        ),
        vapi_phone_id: Some("vapi-1".to_owned()),
        outcome: "applied".to_owned(),
        error: None,
        ci_run_id: Some("ci-7".to_owned()),
        commit_sha: Some("abc123".to_owned()),
    }
}

/// Every column the application owns, per row, in id order: what vapictl must never alter.
async fn app_rows(db: &TestDb) -> Vec<Vec<Option<String>>> {
    db.strings(
        "SELECT CAST(id AS TEXT), CAST(user_id AS TEXT), phone_number, friendly_name, provider, \
         vapi_phone_id, vapi_credential_id, twilio_account_sid, twilio_auth_token, \
         CAST(assigned_assistant_id AS TEXT), CAST(created_at AS TEXT), CAST(updated_at AS TEXT), \
         legacy_flag FROM phone_numbers ORDER BY CAST(id AS TEXT)",
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// Migrations
// ---------------------------------------------------------------------------------------------

async fn fresh_database_is_migrated_and_round_trips_every_column(db: &TestDb) {
    let store = db.connect().await;
    let me = owner();
    let assistant = Uuid::new_v4();
    db.execute(&format!(
        "INSERT INTO assistants (id, user_id, name, vapi_assistant_id) \
         VALUES ('{assistant}', '{me}', 'Receptionist', 'asst-1')"
    ))
    .await;

    let mut row = write("+15551230001");
    row.assigned_assistant_id = Some(assistant);
    row.notes = Some("front desk".to_owned());
    row.protected = true;
    let id = store.insert_row(me, &row).await.unwrap();

    let state = store
        .load_recorded(me, &["+15551230001".to_owned()], &[])
        .await
        .unwrap();
    let got = &state.rows["+15551230001"];
    assert_eq!(got.id, id);
    assert_eq!(got.user_id, me);
    assert_eq!(got.friendly_name.as_deref(), Some("Line +15551230001"));
    assert_eq!(got.provider, "twilio");
    assert_eq!(got.vapi_phone_id.as_deref(), Some("vapi-+15551230001"));
    assert_eq!(got.vapi_credential_id.as_deref(), Some("cred-1"));
    assert_eq!(got.twilio_account_sid.as_deref(), Some("AC0000"));
    assert_eq!(
        got.twilio_auth_token.as_deref(),
        Some(row.twilio_auth_token.as_str())
    );
    assert_eq!(
        got.api_key.as_deref(),
        row.api_key.as_deref(),
        "the API key SID round-trips in `vapictl_twilio_api_key`"
    );
    assert_eq!(got.token_digest.as_deref(), Some("digest-1"));
    assert_eq!(got.assigned_assistant_id, Some(assistant));
    assert_eq!(got.notes.as_deref(), Some("front desk"));
    assert!(got.protected);
    assert!(state.foreign.is_empty());
    assert_eq!(state.assistants.len(), 1);
    assert_eq!(state.assistants[0].name.as_deref(), Some("Receptionist"));

    // Ids are stored as lowercase hyphenated text in SQLite (never a BLOB), `uuid` in PostgreSQL.
    let stored_id = db
        .string("SELECT CAST(id AS TEXT) FROM phone_numbers")
        .await
        .unwrap();
    assert_eq!(stored_id, id.hyphenated().to_string());
}

async fn a_saved_plan_is_claimed_once(db: &TestDb) {
    let store = db.connect().await;
    assert!(!store.plan_claimed("p1").await.unwrap());
    let claims = (0..4).map(|i| {
        let store = store.clone();
        async move { store.claim_plan("p1", owner(), &format!("run{i}")).await }
    });
    let won: Vec<bool> = futures_join_all(claims)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(
        won.iter().filter(|w| **w).count(),
        1,
        "exactly one run claims it"
    );
    assert!(store.plan_claimed("p1").await.unwrap());
    assert!(!store.plan_claimed("p2").await.unwrap());
}

async fn connecting_twice_migrates_once(db: &TestDb) {
    let first = db.connect().await;
    let me = owner();
    first.insert_row(me, &write("+15551230001")).await.unwrap();
    first.close().await;

    let second = db.connect().await;
    let state = second.load_recorded(me, &[], &[]).await.unwrap();
    assert_eq!(state.rows.len(), 1);
    let applied = db
        .string("SELECT CAST(COUNT(*) AS TEXT) FROM vapictl_schema_migrations")
        .await;
    assert_eq!(applied.as_deref(), Some(MIGRATIONS.as_str()));
    // The application's default migrations table is left alone.
    let sqlx_default = db
        .string(db.pick(
            "SELECT CAST(COUNT(*) AS TEXT) FROM pg_tables WHERE tablename = '_sqlx_migrations'",
            "SELECT CAST(COUNT(*) AS TEXT) FROM sqlite_master WHERE name = '_sqlx_migrations'",
        ))
        .await;
    assert_eq!(sqlx_default.as_deref(), Some("0"));
}

/// How many migrations vapictl ships (each backend has the same number).
static MIGRATIONS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite"))
        .unwrap()
        .count()
        .to_string()
});

async fn concurrent_first_connects_all_succeed(db: &TestDb) {
    let connects = (0..4).map(|_| {
        let url = db.url.clone();
        async move { Store::connect(&url, &StoreOptions::default()).await }
    });
    for result in futures_join_all(connects).await {
        result.unwrap_or_else(|e| panic!("a concurrent first connect failed: {e}"));
    }
    let applied = db
        .string("SELECT CAST(COUNT(*) AS TEXT) FROM vapictl_schema_migrations")
        .await;
    assert_eq!(applied.as_deref(), Some(MIGRATIONS.as_str()));
}

/// Awaits all futures concurrently (as separate tasks, so they truly overlap).
async fn futures_join_all<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.expect("task panicked"));
    }
    out
}

const APP_SCHEMA_POSTGRES: &str = "
CREATE TABLE assistants (
    id uuid PRIMARY KEY,
    user_id uuid,
    name text,
    vapi_assistant_id text,
    created_at timestamptz DEFAULT now()
);
CREATE TABLE phone_numbers (
    id uuid PRIMARY KEY,
    user_id uuid,
    phone_number varchar(32) UNIQUE,
    friendly_name text,
    provider text DEFAULT 'twilio',
    vapi_phone_id text,
    vapi_credential_id text,
    twilio_account_sid text,
    twilio_auth_token text,
    assigned_assistant_id uuid REFERENCES assistants (id),
    created_at timestamp DEFAULT now(),
    updated_at timestamp DEFAULT now(),
    legacy_flag text
);";

const APP_SCHEMA_SQLITE: &str = "
CREATE TABLE assistants (
    id TEXT PRIMARY KEY,
    user_id TEXT,
    name TEXT,
    vapi_assistant_id TEXT,
    created_at TEXT DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE phone_numbers (
    id TEXT PRIMARY KEY,
    user_id TEXT,
    phone_number TEXT UNIQUE,
    friendly_name TEXT,
    provider TEXT DEFAULT 'twilio',
    vapi_phone_id TEXT,
    vapi_credential_id TEXT,
    twilio_account_sid TEXT,
    twilio_auth_token TEXT,
    assigned_assistant_id TEXT REFERENCES assistants (id),
    created_at TEXT DEFAULT CURRENT_TIMESTAMP,
    updated_at TEXT DEFAULT CURRENT_TIMESTAMP,
    legacy_flag TEXT
);";

const ME: &str = "11111111-1111-4111-8111-111111111111";
const OTHER: &str = "22222222-2222-4222-8222-222222222222";
const MY_ASSISTANT: &str = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa";
const OTHER_ASSISTANT: &str = "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb";
const THIRD_ASSISTANT: &str = "cccccccc-cccc-4ccc-8ccc-cccccccccccc";

/// The application's own schema and data, as the web app would have left them.
async fn create_app_schema(db: &TestDb) {
    db.execute(db.pick(APP_SCHEMA_POSTGRES, APP_SCHEMA_SQLITE))
        .await;
    db.execute(&format!(
        "INSERT INTO assistants (id, user_id, name, vapi_assistant_id) VALUES
           ('{MY_ASSISTANT}', '{ME}', 'Receptionist', 'asst-mine'),
           ('{OTHER_ASSISTANT}', '{OTHER}', 'Their bot', 'asst-theirs'),
           ('{THIRD_ASSISTANT}', '{OTHER}', NULL, NULL);
         INSERT INTO phone_numbers (id, user_id, phone_number, friendly_name, provider,
             vapi_phone_id, twilio_account_sid, twilio_auth_token, assigned_assistant_id,
             legacy_flag, created_at, updated_at) VALUES
           ('00000000-0000-4000-8000-000000000001', '{ME}', '+15551230001', 'Main', 'twilio',
             'vapi-1', 'AC1', 'armored-1', '{MY_ASSISTANT}', 'keep-me',
             '2024-01-01 10:00:00', '2024-01-02 10:00:00'),
           ('00000000-0000-4000-8000-000000000002', '{ME}', '(555) 123-0002', NULL, NULL,
             NULL, NULL, NULL, NULL, NULL, '2024-01-01 10:00:00', '2024-01-01 10:00:00'),
           ('00000000-0000-4000-8000-000000000003', '{OTHER}', '+15551230003', 'Theirs',
             'vonage', 'vapi-3', NULL, NULL, '{OTHER_ASSISTANT}', 'x',
             '2024-01-01 10:00:00', '2024-01-01 10:00:00'),
           ('00000000-0000-4000-8000-000000000004', NULL, '+15551230004', 'Orphan', 'twilio',
             NULL, NULL, NULL, NULL, NULL, '2024-01-01 10:00:00', '2024-01-01 10:00:00');"
    ))
    .await;
}

async fn existing_app_schema_gains_only_missing_columns_and_keeps_its_rows(db: &TestDb) {
    create_app_schema(db).await;
    let before = app_rows(db).await;

    let store = db.connect().await;
    let _again = db.connect().await;

    assert_eq!(app_rows(db).await, before, "connecting changed app data");
    let added = db
        .strings(
            "SELECT CAST(notes AS TEXT), vapictl_token_digest, CAST(vapictl_protected AS TEXT) \
             FROM phone_numbers",
        )
        .await;
    assert_eq!(added.len(), 4);
    for row in added {
        assert_eq!(row[0], None);
        assert_eq!(row[1], None);
        assert!(matches!(row[2].as_deref(), Some("false" | "0")), "{row:?}");
    }
    // An existing table gets no index from vapictl.
    let indexes = db
        .string(db.pick(
            "SELECT CAST(COUNT(*) AS TEXT) FROM pg_indexes \
             WHERE tablename = 'phone_numbers' AND indexname = 'phone_numbers_user_id'",
            "SELECT CAST(COUNT(*) AS TEXT) FROM sqlite_master \
             WHERE type = 'index' AND name = 'phone_numbers_user_id'",
        ))
        .await;
    assert_eq!(indexes.as_deref(), Some("0"));

    // Messy rows load: a NULL provider and name, a number that is not E.164.
    let me = Uuid::from_str(ME).unwrap();
    let state = store.load_recorded(me, &[], &[]).await.unwrap();
    assert_eq!(state.rows.len(), 2);
    let messy = &state.rows["(555) 123-0002"];
    assert_eq!(messy.provider, "");
    assert_eq!(messy.friendly_name, None);
    assert!(!messy.protected);
    assert_eq!(
        state.rows["+15551230001"].assigned_assistant_id,
        Some(Uuid::from_str(MY_ASSISTANT).unwrap())
    );

    // vapictl's writes work on the app's table (its `timestamp` columns included).
    let id = store.insert_row(me, &write("+15551230009")).await.unwrap();
    store
        .update_row(me, id, &write("+15551230009"))
        .await
        .unwrap();
}

async fn app_table_without_a_needed_column_is_refused_by_name(db: &TestDb) {
    db.execute(
        "CREATE TABLE phone_numbers (id TEXT PRIMARY KEY, user_id TEXT, phone_number TEXT, \
         friendly_name TEXT, provider TEXT, vapi_phone_id TEXT, twilio_account_sid TEXT, \
         twilio_auth_token TEXT, assigned_assistant_id TEXT, created_at TEXT, updated_at TEXT)",
    )
    .await;
    let err = Store::connect(&db.url, &StoreOptions::default())
        .await
        .expect_err("a table without vapi_credential_id must be refused");
    assert!(
        matches!(&err, StoreError::AppSchemaMismatch { table: "phone_numbers", missing } if missing == &["vapi_credential_id"]),
        "{err:?}"
    );
    assert!(err.to_string().contains("`vapi_credential_id`"), "{err}");
    // And nothing was added to it on the way.
    let notes = db
        .string(db.pick(
            "SELECT CAST(COUNT(*) AS TEXT) FROM information_schema.columns \
             WHERE table_name = 'phone_numbers' AND column_name = 'notes'",
            "SELECT CAST(COUNT(*) AS TEXT) FROM pragma_table_info('phone_numbers') \
             WHERE name = 'notes'",
        ))
        .await;
    assert_eq!(notes.as_deref(), Some("0"));
}

// ---------------------------------------------------------------------------------------------
// Reads
// ---------------------------------------------------------------------------------------------

async fn load_recorded_returns_own_rows_foreign_claims_and_assistants(db: &TestDb) {
    create_app_schema(db).await;
    let store = db.connect().await;
    let me = Uuid::from_str(ME).unwrap();
    let other = Uuid::from_str(OTHER).unwrap();

    let numbers = [
        "+15551230001", // mine
        "+15551230003", // another user's
        "+15551230004", // a row with no user
        "+15559999999", // nobody's
    ]
    .map(str::to_owned);
    let other_assistant = Uuid::from_str(OTHER_ASSISTANT).unwrap();
    let state = store
        .load_recorded(
            me,
            &numbers,
            &[other_assistant.to_string(), Uuid::new_v4().to_string()],
        )
        .await
        .unwrap();

    assert_eq!(
        state.rows.keys().collect::<Vec<_>>(),
        ["(555) 123-0002", "+15551230001"]
    );
    assert!(state.rows.values().all(|r| r.user_id == me));
    assert_eq!(
        state.foreign,
        BTreeMap::from([
            ("+15551230003".to_owned(), other),
            ("+15551230004".to_owned(), Uuid::nil()),
        ])
    );
    let assistants: Vec<_> = state
        .assistants
        .iter()
        .map(|a| (a.id, a.user_id, a.name.as_deref()))
        .collect();
    assert_eq!(
        assistants,
        [
            (
                Uuid::from_str(MY_ASSISTANT).unwrap(),
                me,
                Some("Receptionist")
            ),
            (other_assistant, other, Some("Their bot")),
        ],
        "the owner's assistants plus the named one of another user, nothing else"
    );
}

// ---------------------------------------------------------------------------------------------
// Writes
// ---------------------------------------------------------------------------------------------

async fn update_overwrites_managed_columns_and_bumps_updated_at(db: &TestDb) {
    let store = db.connect().await;
    let me = owner();
    let id = store.insert_row(me, &write("+15551230001")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;

    let mut changed = write("+15551230001");
    changed.friendly_name = "Renamed".to_owned();
    changed.vapi_phone_id = None;
    changed.notes = Some("moved".to_owned());
    changed.token_digest = Some("digest-2".to_owned());
    changed.protected = true;
    store.update_row(me, id, &changed).await.unwrap();

    let state = store.load_recorded(me, &[], &[]).await.unwrap();
    let row = &state.rows["+15551230001"];
    assert_eq!(row.id, id);
    assert_eq!(row.friendly_name.as_deref(), Some("Renamed"));
    assert_eq!(row.vapi_phone_id, None);
    assert_eq!(row.notes.as_deref(), Some("moved"));
    assert_eq!(row.token_digest.as_deref(), Some("digest-2"));
    assert!(row.protected);
    assert_eq!(row.provider, "twilio");
    let bumped = db
        .string("SELECT CASE WHEN updated_at > created_at THEN 'bumped' ELSE 'same' END FROM phone_numbers")
        .await;
    assert_eq!(bumped.as_deref(), Some("bumped"));
}

async fn delete_removes_only_that_row(db: &TestDb) {
    let store = db.connect().await;
    let me = owner();
    let gone = store.insert_row(me, &write("+15551230001")).await.unwrap();
    store.insert_row(me, &write("+15551230002")).await.unwrap();

    store.delete_row(me, gone).await.unwrap();

    let state = store.load_recorded(me, &[], &[]).await.unwrap();
    assert_eq!(state.rows.keys().collect::<Vec<_>>(), ["+15551230002"]);
    let err = store.delete_row(me, gone).await.unwrap_err();
    assert!(
        matches!(err, StoreError::RowNotFound { row_id } if row_id == gone),
        "{err:?}"
    );
}

async fn writes_to_another_users_row_are_refused_and_change_nothing(db: &TestDb) {
    let store = db.connect().await;
    let (me, other) = (owner(), owner());
    let theirs = store
        .insert_row(other, &write("+15551230003"))
        .await
        .unwrap();

    let mut hijack = write("+15551230003");
    hijack.friendly_name = "Mine now".to_owned();
    let err = store.update_row(me, theirs, &hijack).await.unwrap_err();
    assert!(
        matches!(err, StoreError::RowOwnedByAnotherUser { row_id } if row_id == theirs),
        "{err:?}"
    );
    let err = store.delete_row(me, theirs).await.unwrap_err();
    assert!(
        matches!(err, StoreError::RowOwnedByAnotherUser { row_id } if row_id == theirs),
        "{err:?}"
    );

    let state = store.load_recorded(other, &[], &[]).await.unwrap();
    assert_eq!(
        state.rows["+15551230003"].friendly_name.as_deref(),
        Some("Line +15551230003")
    );
}

async fn writes_to_a_missing_row_are_refused(db: &TestDb) {
    let store = db.connect().await;
    let missing = Uuid::new_v4();
    let err = store
        .update_row(owner(), missing, &write("+15551230001"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::RowNotFound { row_id } if row_id == missing),
        "{err:?}"
    );
    let err = store.delete_row(owner(), missing).await.unwrap_err();
    assert!(matches!(err, StoreError::RowNotFound { .. }), "{err:?}");
}

async fn recording_a_taken_number_is_refused_with_the_number_masked(db: &TestDb) {
    let store = db.connect().await;
    let (me, other) = (owner(), owner());
    store
        .insert_row(other, &write("+15551231234"))
        .await
        .unwrap();

    for who in [me, other] {
        let err = store
            .insert_row(who, &write("+15551231234"))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::NumberAlreadyRecorded { number } if number == "…1234"),
            "{err:?}"
        );
        assert!(!err.to_string().contains("+1555"), "{err}");
    }

    // Renaming a row onto a taken number is refused the same way.
    let mine = store.insert_row(me, &write("+15551230001")).await.unwrap();
    let err = store
        .update_row(me, mine, &write("+15551231234"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NumberAlreadyRecorded { .. }),
        "{err:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Locks
// ---------------------------------------------------------------------------------------------

async fn second_acquire_times_out_naming_the_holder(db: &TestDb) {
    let first = db.connect().await;
    let second = db.connect().await;
    let me = owner();
    let held = first
        .acquire_lock(me, &holder("a"), Duration::ZERO)
        .await
        .unwrap();

    let started = std::time::Instant::now();
    let err = second
        .acquire_lock(me, &holder("b"), Duration::from_millis(400))
        .await
        .unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(400));
    match &err {
        StoreError::LockHeld {
            owner,
            host,
            pid,
            run_id,
            ..
        } => {
            assert_eq!(
                (*owner, host.as_str(), *pid, run_id.as_str()),
                (me, "host-a", 4242, "run-a")
            );
        }
        other => panic!("expected LockHeld, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("host-a") && message.contains("4242") && message.contains("run-a"),
        "{message}"
    );
    held.release().await.unwrap();
}

async fn released_lock_is_free_at_once(db: &TestDb) {
    let store = db.connect().await;
    let me = owner();
    let lock = store
        .acquire_lock(me, &holder("a"), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(lock.owner(), me);
    lock.ensure_held().unwrap();
    lock.release().await.unwrap();
    store
        .acquire_lock(me, &holder("b"), Duration::ZERO)
        .await
        .expect("a released lock is free without waiting")
        .release()
        .await
        .unwrap();
}

async fn held_lock_outlives_its_ttl_while_the_heartbeat_runs(db: &TestDb) {
    let store = db.connect_with(&short_ttl(600)).await;
    let me = owner();
    let lock = store
        .acquire_lock(me, &holder("a"), Duration::ZERO)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let err = store
        .acquire_lock(me, &holder("b"), Duration::ZERO)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::LockHeld { .. }), "{err:?}");
    lock.ensure_held().unwrap();
    lock.release().await.unwrap();
}

async fn abandoned_lease_is_taken_over_once_expired(db: &TestDb) {
    let crashed = db.connect_with(&short_ttl(800)).await;
    let me = owner();
    let lock = crashed
        .acquire_lock(me, &holder("crashed"), Duration::ZERO)
        .await
        .unwrap();
    drop(lock); // as if the process died: no release, no more heartbeats

    let next = db.connect().await;
    let err = next
        .acquire_lock(me, &holder("next"), Duration::ZERO)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::LockHeld { .. }), "{err:?}");

    let started = std::time::Instant::now();
    let lock = next
        .acquire_lock(me, &holder("next"), Duration::from_secs(10))
        .await
        .expect("an expired lease is taken over");
    assert!(started.elapsed() < Duration::from_secs(5));
    lock.release().await.unwrap();
}

async fn locks_on_different_owners_are_independent(db: &TestDb) {
    let store = db.connect().await;
    let a = store
        .acquire_lock(owner(), &holder("a"), Duration::ZERO)
        .await
        .unwrap();
    let b = store
        .acquire_lock(owner(), &holder("b"), Duration::ZERO)
        .await
        .expect("another owner's lock does not wait");
    a.release().await.unwrap();
    b.release().await.unwrap();
}

async fn four_contending_tasks_take_turns(db: &TestDb) {
    const ROUNDS: usize = 3;
    let me = owner();
    let inside = Arc::new(AtomicUsize::new(0));
    let completed = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for task in 0..4 {
        // One store per task: as separate processes would.
        let store = db.connect().await;
        let (inside, completed) = (inside.clone(), completed.clone());
        tasks.push(tokio::spawn(async move {
            for round in 0..ROUNDS {
                let lock = store
                    .acquire_lock(
                        me,
                        &holder(&format!("{task}-{round}")),
                        Duration::from_secs(30),
                    )
                    .await
                    .unwrap();
                assert_eq!(
                    inside.fetch_add(1, Ordering::SeqCst),
                    0,
                    "two holders at once"
                );
                tokio::time::sleep(Duration::from_millis(30)).await;
                inside.fetch_sub(1, Ordering::SeqCst);
                lock.release().await.unwrap();
                completed.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(completed.load(Ordering::SeqCst), 4 * ROUNDS);
}

// ---------------------------------------------------------------------------------------------
// Audit trail
// ---------------------------------------------------------------------------------------------

async fn history_is_newest_first_and_filters_by_number(db: &TestDb) {
    let store = db.connect().await;
    let (me, other) = (owner(), owner());
    store
        .record_change(&change(me, "+15551230001", "create", 1))
        .await
        .unwrap();
    store
        .record_change(&change(me, "+15551230002", "create", 2))
        .await
        .unwrap();
    store
        .record_change(&change(me, "+15551230001", "update", 3))
        .await
        .unwrap();
    store
        .record_change(&change(other, "+15551230001", "delete", 4))
        .await
        .unwrap();

    let all = store.history(me, None, 10).await.unwrap();
    let runs: Vec<_> = all.iter().map(|c| c.run_id.as_str()).collect();
    assert_eq!(runs, ["run-3", "run-2", "run-1"]);
    assert_eq!(
        all[0],
        change(me, "+15551230001", "update", 3),
        "round trip"
    );

    let one = store.history(me, Some("+15551230001"), 10).await.unwrap();
    let runs: Vec<_> = one.iter().map(|c| c.run_id.as_str()).collect();
    assert_eq!(runs, ["run-3", "run-1"]);

    let latest = store.history(me, None, 1).await.unwrap();
    assert_eq!(latest.len(), 1);
    assert_eq!(latest[0].run_id, "run-3");

    // A create has no `before`, a delete no `after`.
    let mut created = change(me, "+15551230005", "create", 5);
    created.before = None;
    created.outcome = "failed".to_owned();
    created.error = Some("vapi said 400".to_owned());
    store.record_change(&created).await.unwrap();
    let got = store.history(me, Some("+15551230005"), 1).await.unwrap();
    assert_eq!(got, [created]);
}

async fn audit_trail_stores_numbers_masked(db: &TestDb) {
    let store = db.connect().await;
    let me = owner();
    let mut careless = change(me, "+15551230001", "create", 1);
    careless.number_masked = "+15551230001".to_owned(); // a caller that forgot to mask
    store.record_change(&careless).await.unwrap();

    let stored = db
        .strings("SELECT number_masked FROM vapictl_changes")
        .await;
    assert_eq!(stored, [[Some("…0001".to_owned())]]);
    let got = store.history(me, Some("+15551230001"), 10).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].number_masked, "…0001");
}

// ---------------------------------------------------------------------------------------------
// Query budget
// ---------------------------------------------------------------------------------------------

async fn load_costs_the_same_queries_for_2000_rows_as_for_2(db: &TestDb) {
    let store = db.connect().await;
    let (small, large) = (owner(), owner());
    let mut large_numbers = Vec::new();
    for i in 0..2000 {
        let number = format!("+1555{i:07}");
        store.insert_row(large, &write(&number)).await.unwrap();
        large_numbers.push(number);
    }
    let small_numbers: Vec<String> = (0..2).map(|i| format!("+1666{i:07}")).collect();
    for number in &small_numbers {
        store.insert_row(small, &write(number)).await.unwrap();
    }

    let cost = |owner: Uuid, numbers: Vec<String>| {
        let store = store.clone();
        async move {
            let before = store.queries_issued();
            let state = store.load_recorded(owner, &numbers, &[]).await.unwrap();
            (store.queries_issued() - before, state.rows.len())
        }
    };
    let (small_cost, small_rows) = cost(small, small_numbers).await;
    let (large_cost, large_rows) = cost(large, large_numbers).await;
    assert_eq!((small_rows, large_rows), (2, 2000));
    assert_eq!(small_cost, large_cost);
    assert!(large_cost <= 5, "{large_cost} queries");
}

// ---------------------------------------------------------------------------------------------
// Connection errors (no database needed, or a deliberately wrong one)
// ---------------------------------------------------------------------------------------------

const CANARY: &str = "s3cret-canary";

fn quick() -> StoreOptions {
    StoreOptions {
        connect_timeout: Duration::from_secs(3),
        ..StoreOptions::default()
    }
}

fn assert_no_canary(err: &StoreError) {
    let mut text = format!("{err}\n{err:?}");
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(&format!("\n{cause}"));
        source = cause.source();
    }
    assert!(!text.contains(CANARY), "password leaked: {text}");
}

#[tokio::test]
async fn unsupported_scheme_is_refused_without_the_password() {
    let err = Store::connect(&format!("mysql://app:{CANARY}@db/prod"), &quick())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::UnsupportedUrl { .. }), "{err:?}");
    assert!(err.to_string().contains("hint:"), "{err}");
    assert_no_canary(&err);
}

#[tokio::test]
async fn unreachable_postgres_is_named_without_the_password() {
    // Port 1 on localhost: nothing listens there.
    let err = Store::connect(
        &format!("postgres://app:{CANARY}@127.0.0.1:1/prod"),
        &quick(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Unreachable { .. } | StoreError::ConnectTimedOut { .. }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
    assert_no_canary(&err);
}

#[tokio::test]
async fn malformed_postgres_url_is_refused_without_the_password() {
    let err = Store::connect(
        &format!("postgres://app:{CANARY}@host:notaport/db"),
        &quick(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, StoreError::InvalidUrl { .. }), "{err:?}");
    assert_no_canary(&err);
}

#[tokio::test]
async fn sqlite_in_a_missing_directory_cannot_be_opened() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/no/such/dir/app.db", dir.path().display());
    let err = Store::connect(&url, &quick()).await.unwrap_err();
    assert!(matches!(err, StoreError::CannotOpenFile { .. }), "{err:?}");
    assert!(err.to_string().contains("hint:"), "{err}");
}

#[tokio::test]
async fn read_only_sqlite_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    std::fs::write(&path, b"").unwrap(); // an empty file is an empty database
    let err = Store::connect(&format!("sqlite://{}?mode=ro", path.display()), &quick())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::ReadOnly { .. }), "{err:?}");
}

#[tokio::test]
async fn in_memory_sqlite_works_across_pooled_uses() {
    let store = Store::connect("sqlite::memory:", &StoreOptions::default())
        .await
        .unwrap();
    let me = owner();
    store.insert_row(me, &write("+15551230001")).await.unwrap();
    let lock = store
        .acquire_lock(me, &holder("a"), Duration::ZERO)
        .await
        .unwrap();
    let state = store.load_recorded(me, &[], &[]).await.unwrap();
    assert_eq!(state.rows.len(), 1);
    lock.release().await.unwrap();
}

/// A PostgreSQL server's refusals (unknown role, unknown database) name the condition, and
/// neither they nor a connected store's `Debug` repeat the password.
#[tokio::test]
async fn postgres_refusals_and_debug_output_never_show_the_password() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let (server, _) = db.pg.clone().unwrap();
    let (scheme_and_user, rest) = server.split_once('@').unwrap();
    let scheme = scheme_and_user.split("://").next().unwrap();

    let unknown_role = format!("{scheme}://no_such_role:{CANARY}@{rest}");
    let err = Store::connect(&unknown_role, &quick()).await.unwrap_err();
    assert!(
        matches!(err, StoreError::AuthenticationFailed { .. }),
        "{err:?}"
    );
    assert_no_canary(&err);

    let user = scheme_and_user.split("://").nth(1).unwrap();
    let user = user.split(':').next().unwrap();
    let unknown_db = with_database(
        &format!("{scheme}://{user}:{CANARY}@{rest}"),
        "vapictl_no_such_database",
    );
    let err = Store::connect(&unknown_db, &quick()).await.unwrap_err();
    assert!(matches!(err, StoreError::DatabaseMissing { .. }), "{err:?}");
    assert_no_canary(&err);

    // The test server trusts any password, so this one connects.
    let with_password = with_database(
        &format!("{scheme}://{user}:{CANARY}@{rest}"),
        &db.pg.as_ref().unwrap().1,
    );
    let store = Store::connect(&with_password, &quick()).await.unwrap();
    let debug = format!("{store:?}");
    assert!(!debug.contains(CANARY), "{debug}");
}

/// Every store future can be spawned on a multi-threaded runtime (the applier does).
#[tokio::test]
async fn store_futures_are_send() {
    fn spawnable<F: std::future::Future + Send>(_: F) {}
    let store = Store::connect("sqlite::memory:", &StoreOptions::default())
        .await
        .unwrap();
    let (me, row) = (owner(), write("+15551230001"));
    spawnable(Store::connect("sqlite::memory:", &StoreOptions::default()));
    spawnable(store.load_recorded(me, &[], &[]));
    spawnable(store.insert_row(me, &row));
    spawnable(store.update_row(me, me, &row));
    spawnable(store.probe_row_write(me, Some(me), &row));
    spawnable(store.delete_row(me, me));
    spawnable(store.acquire_lock(me, &holder("a"), Duration::ZERO));
    spawnable(store.record_change(&change(me, "+15551230001", "create", 1)));
    spawnable(store.history(me, None, 1));
    let lock = store
        .acquire_lock(me, &holder("a"), Duration::ZERO)
        .await
        .unwrap();
    spawnable(lock.release());
}

// ---------------------------------------------------------------------------------------------
// The app's schema as it really is (issue 9, defect 14)
// ---------------------------------------------------------------------------------------------

/// An app's `phone_numbers` and `assistants`, with `{ID}` (the id columns' type and key),
/// `{REF}` (the type of references to them), `{USER}`, `{TIME}` and `{EXTRA}` (more columns or
/// constraints of `phone_numbers`, each starting with a comma) filled in by the caller.
const APP_SCHEMA_TEMPLATE: &str = "
CREATE TABLE assistants (
    id {ID},
    user_id {USER},
    name text,
    vapi_assistant_id text
);
CREATE TABLE phone_numbers (
    id {ID},
    user_id {USER},
    phone_number varchar(32) UNIQUE,
    friendly_name text,
    provider text DEFAULT 'twilio',
    vapi_phone_id text,
    vapi_credential_id text,
    twilio_account_sid text,
    twilio_auth_token text,
    assigned_assistant_id {REF} REFERENCES assistants (id),
    created_at {TIME},
    updated_at {TIME}
    {EXTRA}
);";

struct AppSchema<'a> {
    id: &'a str,
    reference: &'a str,
    user: &'a str,
    time: &'a str,
    extra: &'a str,
}

impl AppSchema<'_> {
    fn uuid(db: &TestDb) -> AppSchema<'static> {
        AppSchema {
            id: db.pick("uuid PRIMARY KEY", "TEXT PRIMARY KEY"),
            reference: db.pick("uuid", "TEXT"),
            user: db.pick("uuid", "TEXT"),
            time: db.pick(
                "timestamptz DEFAULT now()",
                "TEXT DEFAULT CURRENT_TIMESTAMP",
            ),
            extra: "",
        }
    }

    async fn create(&self, db: &TestDb) {
        let sql = APP_SCHEMA_TEMPLATE
            .replace("{ID}", self.id)
            .replace("{REF}", self.reference)
            .replace("{USER}", self.user)
            .replace("{TIME}", self.time)
            .replace("{EXTRA}", self.extra);
        db.execute(&sql).await;
    }
}

/// The tables and columns vapictl would have added, as `(vapictl tables, notes columns)`.
async fn vapictl_traces(db: &TestDb) -> (String, String) {
    let tables = db
        .string(db.pick(
            "SELECT CAST(COUNT(*) AS TEXT) FROM pg_tables WHERE tablename LIKE 'vapictl%'",
            "SELECT CAST(COUNT(*) AS TEXT) FROM sqlite_master WHERE name LIKE 'vapictl%'",
        ))
        .await
        .unwrap();
    let columns = db
        .string(db.pick(
            "SELECT CAST(COUNT(*) AS TEXT) FROM information_schema.columns \
             WHERE table_name = 'phone_numbers' AND column_name IN ('notes', 'vapictl_protected')",
            "SELECT CAST(COUNT(*) AS TEXT) FROM pragma_table_info('phone_numbers') \
             WHERE name IN ('notes', 'vapictl_protected')",
        ))
        .await
        .unwrap();
    (tables, columns)
}

async fn extra_not_null_column_is_refused_by_name_and_nothing_is_changed(db: &TestDb) {
    AppSchema {
        extra: ", tenant_id text NOT NULL, region text NOT NULL DEFAULT 'eu'",
        ..AppSchema::uuid(db)
    }
    .create(db)
    .await;

    let err = Store::connect(&db.url, &StoreOptions::default())
        .await
        .expect_err("a column vapictl cannot fill must be refused");
    let StoreError::AppSchemaUnsupported { problems } = &err else {
        panic!("expected AppSchemaUnsupported, got {err:?}");
    };
    let named: Vec<_> = problems
        .iter()
        .map(|p| (p.table.as_str(), p.column.as_str()))
        .collect();
    assert_eq!(named, [("phone_numbers", "tenant_id")], "{err}");
    let message = err.to_string();
    assert!(message.contains("`phone_numbers.tenant_id`"), "{message}");
    assert!(message.contains("NOT NULL"), "{message}");
    assert!(message.contains("hint:"), "{message}");
    assert_eq!(
        vapictl_traces(db).await,
        ("0".to_owned(), "0".to_owned()),
        "nothing added to a schema that is then refused"
    );
}

async fn integer_ids_are_assigned_by_the_database_and_read_back(db: &TestDb) {
    AppSchema {
        id: db.pick(
            "bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
            "INTEGER PRIMARY KEY AUTOINCREMENT",
        ),
        reference: db.pick("bigint", "INTEGER"),
        ..AppSchema::uuid(db)
    }
    .create(db)
    .await;
    db.execute(&format!(
        "INSERT INTO assistants (user_id, name, vapi_assistant_id) \
         VALUES ('{ME}', 'Receptionist', 'asst-1');
         INSERT INTO phone_numbers (user_id, phone_number, provider) \
         VALUES ('{OTHER}', '+15551230003', 'twilio');"
    ))
    .await;
    let store = db.connect().await;
    let me = Uuid::from_str(ME).unwrap();

    let loaded = store.load_recorded(me, &[], &[]).await.unwrap();
    let assistant = loaded.assistants[0].id;
    let mut row = write("+15551230001");
    row.assigned_assistant_id = Some(assistant);
    let id = store.insert_row(me, &row).await.unwrap();

    // The database chose the id (the app's row has 1, so this one is 2) and vapictl read it back.
    let stored = db
        .strings(
            "SELECT CAST(id AS TEXT), CAST(assigned_assistant_id AS TEXT) FROM phone_numbers \
             WHERE phone_number = '+15551230001'",
        )
        .await;
    assert_eq!(stored, [[Some("2".to_owned()), Some("1".to_owned())]]);
    let state = store
        .load_recorded(me, &["+15551230003".to_owned()], &[])
        .await
        .unwrap();
    let got = &state.rows["+15551230001"];
    assert_eq!(got.id, id);
    assert_eq!(got.assigned_assistant_id, Some(assistant));
    assert_eq!(
        state.foreign.get("+15551230003"),
        Some(&Uuid::from_str(OTHER).unwrap())
    );

    let mut renamed = row.clone();
    renamed.friendly_name = "Renamed".to_owned();
    store.update_row(me, id, &renamed).await.unwrap();
    let state = store.load_recorded(me, &[], &[]).await.unwrap();
    assert_eq!(
        state.rows["+15551230001"].friendly_name.as_deref(),
        Some("Renamed")
    );
    store.delete_row(me, id).await.unwrap();
    assert!(
        store
            .load_recorded(me, &[], &[])
            .await
            .unwrap()
            .rows
            .is_empty()
    );
}

async fn integer_id_without_a_default_is_refused_by_name(db: &TestDb) {
    AppSchema {
        // SQLite: `INT PRIMARY KEY` is not the rowid, so nothing assigns it.
        id: db.pick("integer PRIMARY KEY", "INT PRIMARY KEY"),
        reference: db.pick("integer", "INT"),
        ..AppSchema::uuid(db)
    }
    .create(db)
    .await;
    let err = Store::connect(&db.url, &StoreOptions::default())
        .await
        .expect_err("an integer id nobody assigns must be refused");
    let message = err.to_string();
    assert!(
        matches!(&err, StoreError::AppSchemaUnsupported { problems }
            if problems.iter().any(|p| p.table == "phone_numbers" && p.column == "id")),
        "{err:?}"
    );
    assert!(message.contains("`phone_numbers.id`"), "{message}");
    assert!(message.contains("hint:"), "{message}");
    assert_eq!(vapictl_traces(db).await, ("0".to_owned(), "0".to_owned()));
}

async fn text_user_ids_are_matched_and_written_as_text(db: &TestDb) {
    AppSchema {
        id: db.pick("text PRIMARY KEY", "TEXT PRIMARY KEY"),
        reference: "text",
        user: db.pick("varchar(36)", "TEXT"),
        ..AppSchema::uuid(db)
    }
    .create(db)
    .await;
    db.execute(&format!(
        "INSERT INTO assistants (id, user_id, name) VALUES ('{MY_ASSISTANT}', '{ME}', 'Desk');
         INSERT INTO phone_numbers (id, user_id, phone_number) \
         VALUES ('00000000-0000-4000-8000-000000000003', '{OTHER}', '+15551230003');
         INSERT INTO phone_numbers (id, user_id, phone_number, vapi_phone_id) \
         VALUES ('00000000-0000-4000-8000-000000000004', '{OTHER}', '(555) 123-0004', 'vapi-4');"
    ))
    .await;
    let store = db.connect().await;
    let me = Uuid::from_str(ME).unwrap();
    let other = Uuid::from_str(OTHER).unwrap();
    let mut row = write("+15551230001");
    row.assigned_assistant_id = Some(Uuid::from_str(MY_ASSISTANT).unwrap());
    row.applied = Some(r#"{"server":null}"#.to_owned());
    let id = store.insert_row(me, &row).await.unwrap();
    row.applied = Some(r#"{"smsEnabled":true}"#.to_owned());
    store.update_row(me, id, &row).await.unwrap();

    // The claims query compares the owner as the column spells it: by Vapi id and, for plans,
    // every other user's non-canonical number.
    let vapi_ids = ["vapi-4".to_owned()];
    let claims = store
        .load_recorded_for(
            me,
            &vapictl::store::Lookup {
                vapi_ids: &vapi_ids,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(claims.foreign_vapi_ids.get("vapi-4"), Some(&other));
    assert_eq!(claims.foreign.get("(555) 123-0004"), Some(&other));
    assert!(!claims.foreign.contains_key("+15551230001"));
    let claims = store
        .load_recorded_for(
            me,
            &vapictl::store::Lookup {
                non_canonical: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(claims.foreign.len(), 1, "{:?}", claims.foreign);
    assert_eq!(claims.foreign.get("(555) 123-0004"), Some(&other));
    assert_eq!(
        claims.rows["+15551230001"].applied.as_deref(),
        Some(r#"{"smsEnabled":true}"#)
    );

    let state = store
        .load_recorded(me, &["+15551230003".to_owned()], &[])
        .await
        .unwrap();
    assert_eq!(state.rows["+15551230001"].id, id);
    assert_eq!(state.assistants.len(), 1);
    assert_eq!(state.foreign.len(), 1);
    let stored = db
        .string("SELECT user_id FROM phone_numbers WHERE phone_number = '+15551230001'")
        .await;
    assert_eq!(stored.as_deref(), Some(ME));
}

async fn epoch_timestamps_are_written_as_epoch_integers(db: &TestDb) {
    AppSchema {
        time: db.pick("bigint", "INTEGER"),
        ..AppSchema::uuid(db)
    }
    .create(db)
    .await;
    // The app's own row says these are seconds.
    db.execute(&format!(
        "INSERT INTO phone_numbers (id, user_id, phone_number, created_at, updated_at) \
         VALUES ('00000000-0000-4000-8000-000000000003', '{OTHER}', '+15551230003', \
         1700000000, 1700000000)"
    ))
    .await;
    let store = db.connect().await;
    let me = Uuid::from_str(ME).unwrap();
    let id = store.insert_row(me, &write("+15551230001")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    store
        .update_row(me, id, &write("+15551230001"))
        .await
        .unwrap();

    let now = Utc::now().timestamp();
    let stored = db
        .strings(db.pick(
            "SELECT CAST(created_at AS TEXT), CAST(updated_at AS TEXT), 'integer' \
             FROM phone_numbers WHERE phone_number = '+15551230001'",
            "SELECT CAST(created_at AS TEXT), CAST(updated_at AS TEXT), typeof(updated_at) \
             FROM phone_numbers WHERE phone_number = '+15551230001'",
        ))
        .await;
    let [created, updated, kind] = &stored[0][..] else {
        panic!("{stored:?}")
    };
    assert_eq!(kind.as_deref(), Some("integer"));
    let created: i64 = created.as_deref().unwrap().parse().expect("epoch seconds");
    let updated: i64 = updated.as_deref().unwrap().parse().expect("epoch seconds");
    assert!((now - 5..=now).contains(&created), "{created} vs {now}");
    assert!(
        updated > created,
        "updated_at moves on: {updated} vs {created}"
    );
}

async fn a_check_violation_names_the_constraint_without_row_values(db: &TestDb) {
    AppSchema {
        extra: ", CONSTRAINT token_fits CHECK (length(twilio_auth_token) < 40)",
        ..AppSchema::uuid(db)
    }
    .create(db)
    .await;
    let store = db.connect().await;
    let err = store
        .insert_row(owner(), &write("+15551239876"))
        .await
        .expect_err("the CHECK refuses a long ciphertext");
    let message = err.to_string();
    assert!(
        matches!(
            &err,
            StoreError::RowRejected {
                table: "phone_numbers",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(message.contains("token_fits"), "{message}");
    assert!(
        message.contains("length(twilio_auth_token)"),
        "the constraint's definition: {message}"
    );
    assert!(message.contains("hint:"), "{message}");
    for leak in [" at line ", "Failing row", "ciphertext", "15551239876"] {
        assert!(!message.contains(leak), "{leak:?} in {message}");
        assert!(!format!("{err:?}").contains(leak), "{leak:?} in {err:?}");
    }

    // A probe reports the same refusal, and a probe that passes keeps nothing.
    let probed = store
        .probe_row_write(owner(), None, &write("+15551239876"))
        .await
        .unwrap_err();
    assert_eq!(probed.to_string(), message);
    let mut short = write("+15551239876");
    short.twilio_auth_token = "short".to_owned();
    store.probe_row_write(owner(), None, &short).await.unwrap();
    let rows = db
        .string("SELECT CAST(COUNT(*) AS TEXT) FROM phone_numbers")
        .await;
    assert_eq!(rows.as_deref(), Some("0"), "a probe is rolled back");
    let missing = Uuid::new_v4();
    let err = store
        .probe_row_write(owner(), Some(missing), &short)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::RowNotFound { row_id } if row_id == missing),
        "{err:?}"
    );
}

async fn an_up_to_date_schema_is_opened_without_any_ddl(db: &TestDb) {
    create_app_schema(db).await;
    db.connect().await.close().await;
    // Read-only from now on: a connect that ran any DDL (even sqlx's `CREATE TABLE IF NOT
    // EXISTS` for its bookkeeping) would fail.
    let read_only = format!(
        "{}{}",
        db.url,
        db.pick(
            "?options=-c%20default_transaction_read_only%3Don",
            "?mode=ro"
        )
    );
    let store = Store::connect(&read_only, &StoreOptions::default())
        .await
        .unwrap_or_else(|e| panic!("an up-to-date schema must open read-only: {e}"));
    let state = store
        .load_recorded(Uuid::from_str(ME).unwrap(), &[], &[])
        .await
        .unwrap();
    assert_eq!(state.rows.len(), 2);
}

/// `db`'s URL as the role `role` (the test server trusts any role it knows).
fn as_role(db: &TestDb, role: &str) -> String {
    let (scheme, rest) = db.url.split_once("://").unwrap();
    let host_and_db = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    format!("{scheme}://{role}@{host_and_db}")
}

/// Drops a role made for one test, once its databases are gone.
async fn drop_role(role: &str) {
    let server = std::env::var("VAPICTL_TEST_POSTGRES_URL").unwrap();
    if let Ok(mut admin) = sqlx::PgConnection::connect(&server).await {
        let sql = format!("DROP ROLE IF EXISTS {role}");
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut admin)
            .await;
    }
}

#[tokio::test]
async fn postgres_app_tables_outside_the_search_path_are_not_shadowed() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    db.execute(&format!(
        "CREATE SCHEMA app; SET search_path TO app; {APP_SCHEMA_POSTGRES}
         INSERT INTO phone_numbers (id, user_id, phone_number, provider)
         VALUES ('00000000-0000-4000-8000-000000000003', '{OTHER}', '+15551230003', 'twilio');"
    ))
    .await;

    let err = Store::connect(&db.url, &StoreOptions::default())
        .await
        .expect_err("tables in another schema must not be shadowed by new empty ones");
    assert!(
        matches!(&err, StoreError::AppTablesElsewhere { found, .. }
            if found == &["app.assistants", "app.phone_numbers"]),
        "{err:?}"
    );
    let message = err.to_string();
    for expected in [
        "public",
        "`app.phone_numbers`",
        "search_path%3Dapp",
        "hint:",
    ] {
        assert!(message.contains(expected), "{expected:?} in {message}");
    }
    let in_public = db
        .string("SELECT CAST(COUNT(*) AS TEXT) FROM pg_tables WHERE schemaname = 'public'")
        .await;
    assert_eq!(in_public.as_deref(), Some("0"), "nothing created in public");

    // The URL form the hint gives works.
    let store = Store::connect(
        &format!("{}?options=-c%20search_path%3Dapp", db.url),
        &StoreOptions::default(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let state = store
        .load_recorded(
            Uuid::from_str(ME).unwrap(),
            &["+15551230003".to_owned()],
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        state.foreign.get("+15551230003"),
        Some(&Uuid::from_str(OTHER).unwrap()),
        "the other user's number is seen as theirs"
    );
}

#[tokio::test]
async fn postgres_role_without_create_works_once_the_schema_is_in_place() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let Some(empty) = TestDb::postgres().await else {
        return;
    };
    let role = format!("vapictl_dml_{}", Uuid::new_v4().simple());
    create_app_schema(&db).await;
    db.connect().await.close().await; // migrated by the owner
    db.execute(&format!(
        "CREATE ROLE {role} LOGIN;
         REVOKE CREATE ON SCHEMA public FROM PUBLIC;
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role};"
    ))
    .await;

    // Plan and apply need nothing more.
    let store = Store::connect(&as_role(&db, &role), &StoreOptions::default())
        .await
        .unwrap_or_else(|e| panic!("a DML-only role must be able to connect: {e}"));
    let me = Uuid::from_str(ME).unwrap();
    assert_eq!(
        store.load_recorded(me, &[], &[]).await.unwrap().rows.len(),
        2
    );
    let lock = store
        .acquire_lock(me, &holder("dml"), Duration::ZERO)
        .await
        .unwrap();
    let id = store.insert_row(me, &write("+15551230009")).await.unwrap();
    store
        .update_row(me, id, &write("+15551230009"))
        .await
        .unwrap();
    store
        .record_change(&change(me, "+15551230009", "create", 1))
        .await
        .unwrap();
    assert!(store.claim_plan("p1", me, "run").await.unwrap());
    lock.release().await.unwrap();

    // A privilege taken away is named as such, with what to grant.
    db.execute(&format!("REVOKE INSERT ON vapictl_changes FROM {role}"))
        .await;
    let err = store
        .record_change(&change(me, "+15551230009", "update", 2))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::InsufficientPrivilege { .. }),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains("vapictl_changes"), "{message}");
    assert!(message.contains("hint: grant"), "{message}");
    store.close().await;

    // Where the schema is missing, the role is told what the owner must run, and nothing changes.
    empty
        .execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        .await;
    let err = Store::connect(&as_role(&empty, &role), &StoreOptions::default())
        .await
        .expect_err("a role without CREATE cannot create the schema");
    let StoreError::InsufficientPrivilege { hint, .. } = &err else {
        panic!("expected InsufficientPrivilege, got {err:?}");
    };
    let message = err.to_string();
    for expected in [
        "CREATE TABLE phone_numbers",
        "CREATE TABLE assistants",
        "CREATE TABLE vapictl_locks",
        "INSERT INTO vapictl_schema_migrations",
        &format!("TO \"{role}\""),
        "42501",
    ] {
        assert!(message.contains(expected), "{expected:?} in {message}");
    }
    assert!(!message.contains(" at line "), "{message}");
    let tables = empty
        .string("SELECT CAST(COUNT(*) AS TEXT) FROM pg_tables WHERE schemaname = 'public'")
        .await;
    assert_eq!(tables.as_deref(), Some("0"));

    // Those statements, run by the owner, are exactly what was missing.
    let script = hint.split_once("DELETE:\n").unwrap().1;
    empty.execute(script).await;
    let store = Store::connect(&as_role(&empty, &role), &StoreOptions::default())
        .await
        .unwrap_or_else(|e| panic!("after the owner's script: {e}"));
    store.insert_row(me, &write("+15551230001")).await.unwrap();
    store.close().await;

    drop(db);
    drop(empty);
    drop_role(&role).await;
}

#[tokio::test]
async fn read_only_sqlite_names_the_write_it_refused() {
    let db = TestDb::sqlite();
    db.connect().await.close().await;
    let store = Store::connect(&format!("{}?mode=ro", db.url), &StoreOptions::default())
        .await
        .unwrap();
    let err = store
        .insert_row(owner(), &write("+15551230001"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::InsufficientPrivilege { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("readonly"), "{err}");
}
