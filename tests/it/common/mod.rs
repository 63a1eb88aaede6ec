//! Test helpers: a temporary world (stand-in Vapi, database, age key, spec files) and a way to
//! run the real `vapictl` binary in it.

#![allow(dead_code)]

pub mod db;
pub mod spec;

use std::path::{Path, PathBuf};
use std::process::Output;

use standin::vapi::{StandIn, StandInConfig};
use uuid::Uuid;
use vapictl::secrets::{SecretValue, encrypt, parse_recipients};
use vapictl::state::RecordedState;
use vapictl::store::{Store, StoreOptions};

pub use db::{Backend, TestDb};
pub use spec::{Entry, SpecFile};

pub const OWNER: &str = "3f1c2b7e-0000-4000-8000-000000000001";
pub const OTHER_USER: &str = "0000aaaa-0000-4000-8000-000000000002";
pub const SID: &str = "AC0123456789abcdef0123456789abcdef";
/// Canary secrets: no output, log, plan or row may ever contain them.
pub const TOKEN: &str = "CANARYtok0123456789abcdef01234567";
pub const TOKEN2: &str = "CANARYrot0123456789abcdef01234567";

/// A fresh, isolated world for one test.
pub struct World {
    pub dir: tempfile::TempDir,
    pub vapi: StandIn,
    pub db_url: String,
    pub identity_file: PathBuf,
    pub identity_text: String,
    pub recipient: String,
    pub owner: Uuid,
    pub backend: Backend,
    /// The world's database (a PostgreSQL one is dropped with the world).
    pub db: TestDb,
    /// TOKEN encrypted once, so that specs written twice carry the same ciphertext.
    pub token_armored: String,
    rt: tokio::runtime::Runtime,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

impl World {
    pub fn sqlite() -> World {
        World::new(Backend::Sqlite).expect("sqlite world")
    }

    /// None when PostgreSQL is not configured (and not required): the caller skips.
    pub fn postgres() -> Option<World> {
        World::new(Backend::Postgres)
    }

    pub fn new(backend: Backend) -> Option<World> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let rt = runtime();
        let db = match backend {
            Backend::Sqlite => TestDb::sqlite_in(dir.path()),
            Backend::Postgres => rt.block_on(TestDb::postgres())?,
        };
        let vapi = StandIn::start_background(StandInConfig::default()).unwrap();
        use age::secrecy::ExposeSecret;
        let id = age::x25519::Identity::generate();
        let identity_text = id.to_string().expose_secret().to_string();
        let identity_file = dir.path().join("key.txt");
        std::fs::write(&identity_file, format!("# test key\n{identity_text}\n")).unwrap();
        let recipient = id.to_public().to_string();
        let token_armored = encrypt(
            &parse_recipients(std::slice::from_ref(&recipient)).unwrap(),
            &SecretValue::new(TOKEN),
        )
        .unwrap();
        let world = World {
            token_armored,
            recipient,
            identity_file,
            identity_text,
            vapi,
            db_url: db.url.clone(),
            db,
            owner: Uuid::parse_str(OWNER).unwrap(),
            backend,
            rt,
            dir,
        };
        // Migrate once so tests can seed the app's tables directly.
        world.store();
        Some(world)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn encrypt(&self, token: &str) -> String {
        encrypt(
            &parse_recipients(std::slice::from_ref(&self.recipient)).unwrap(),
            &SecretValue::new(token),
        )
        .unwrap()
    }

    /// A spec with the world's owner and default Twilio account.
    pub fn spec(&self) -> SpecFile {
        SpecFile::new(OWNER, SID, &self.token_armored)
    }

    /// Writes the spec and returns its path.
    pub fn write(&self, spec: &SpecFile) -> PathBuf {
        let p = self.path("spec.yaml");
        std::fs::write(&p, spec.to_yaml()).unwrap();
        p
    }

    /// The `vapictl` binary with this world's environment (and nothing inherited that could
    /// interfere), as a plain command (for spawning several at once).
    pub fn command(&self) -> std::process::Command {
        let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("vapictl"));
        for var in [
            "VAPI_API_KEY",
            "VAPI_TOKEN",
            "VAPI_BASE_URL",
            "DATABASE_URL",
            "VAPICTL_AGE_IDENTITY",
            "VAPICTL_AGE_IDENTITY_FILE",
            "VAPICTL_MAX_RPS",
            "VAPICTL_TWILIO_CHECK",
            "TWILIO_BASE_URL",
            "RUST_LOG",
            "NO_COLOR",
            "GITHUB_RUN_ID",
            "GITHUB_SHA",
        ] {
            c.env_remove(var);
        }
        c.env("VAPI_API_KEY", self.vapi.api_key())
            .env("VAPI_BASE_URL", self.vapi.base_url())
            .env("DATABASE_URL", &self.db_url)
            .env("VAPICTL_AGE_IDENTITY_FILE", &self.identity_file)
            .env("VAPICTL_VAPI_TIMEOUT", "5")
            // The stand-in has no rate limit, and pacing would only slow the suite down; the
            // tests of the limiter set their own.
            .env("VAPICTL_MAX_RPS", "10000")
            // Tests never reach the internet: the Twilio preflight is off unless a test starts
            // the Twilio stand-in and turns it on (tests/it/twilio.rs).
            .env("VAPICTL_TWILIO_CHECK", "off")
            .env("TWILIO_BASE_URL", "http://127.0.0.1:9")
            .current_dir(self.dir.path());
        c
    }

    /// [`World::command`] with assert_cmd's conveniences (stdin, output).
    pub fn vapictl(&self) -> assert_cmd::Command {
        assert_cmd::Command::from_std(self.command())
    }

    /// Runs `vapictl ARGS…` and returns its output, whatever the exit code.
    pub fn run(&self, args: &[&str]) -> Output {
        self.vapictl().args(args).output().unwrap()
    }

    /// Output as the user sees it, for snapshots: what differs from run to run (the world's
    /// temporary directory, the stand-in's address) reads `[DIR]` and `[VAPI]`.
    pub fn seen(&self, output: &str) -> String {
        let dir = self.dir.path().display().to_string();
        output
            .replace(&dir, "[DIR]")
            .replace(&self.vapi.base_url(), "[VAPI]")
    }

    pub fn plan(&self, spec: &Path) -> Output {
        self.run(&["plan", "--detailed-exitcode", spec.to_str().unwrap()])
    }

    pub fn apply(&self, spec: &Path) -> Output {
        self.run(&["apply", "--auto-approve", spec.to_str().unwrap()])
    }

    pub fn store(&self) -> Store {
        self.rt
            .block_on(Store::connect(&self.db_url, &StoreOptions::default()))
            .expect("connect")
    }

    /// The owner's rows (and the assistants) as the database holds them now.
    pub fn recorded(&self) -> RecordedState {
        let store = self.store();
        self.rt
            .block_on(store.load_recorded(self.owner, &[], &[]))
            .unwrap()
    }

    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// An assistant as the application would have it: in Vapi and as an `assistants` row.
    /// Returns (row id, Vapi id).
    pub fn assistant(&self, name: &str, user: &str) -> (Uuid, String) {
        let vapi_id = self.vapi.seed_assistant(name);
        let row_id = Uuid::new_v4();
        self.exec_sql(&format!(
            "INSERT INTO assistants (id, user_id, name, vapi_assistant_id) VALUES ('{row_id}', '{user}', '{name}', '{vapi_id}')"
        ));
        (row_id, vapi_id)
    }

    /// A squad in Vapi and its `squads` row for `user`: (row id, Vapi id).
    pub fn squad(&self, name: &str, user: &str) -> (Uuid, String) {
        let vapi_id = self.vapi.seed_squad(name);
        let row_id = Uuid::new_v4();
        self.exec_sql(&format!(
            "INSERT INTO squads (id, user_id, name, vapi_squad_id) VALUES ('{row_id}', '{user}', '{name}', '{vapi_id}')"
        ));
        (row_id, vapi_id)
    }

    /// Runs SQL (one or more statements) on the world's database (seeding app data, out-of-band
    /// edits).
    pub fn exec_sql(&self, sql: &str) {
        self.rt.block_on(self.db.execute(sql))
    }

    /// The rows of a query whose columns are all text (use `CAST(x AS TEXT)`).
    pub fn strings(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        self.rt.block_on(self.db.strings(sql))
    }

    /// Everything the database holds, as text (for leak scans).
    pub fn dump_db(&self) -> String {
        self.rt.block_on(self.db.dump())
    }
}

/// stdout and stderr as text.
pub fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Asserts the exit code, showing the output when it differs.
#[track_caller]
pub fn assert_code(o: &Output, code: i32) {
    let (out, err) = text(o);
    assert_eq!(
        o.status.code(),
        Some(code),
        "exit code\n--- stdout\n{out}\n--- stderr\n{err}"
    );
}

/// Declares tests that run once on SQLite and once on PostgreSQL (skipped with a line on stderr
/// when no server is configured, failing when `VAPICTL_REQUIRE_POSTGRES=1`), as modules `sqlite`
/// and `postgres` holding one test each.
///
/// - `both_backends!(name, |w: World| { … })`: an end-to-end test in a fresh [`World`];
/// - `both_backends!(async: test_a, test_b, …)`: each `async fn test_a(db: &TestDb)` of the
///   calling module on a fresh, empty [`TestDb`] (the store's conformance tests).
#[macro_export]
macro_rules! both_backends {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[test]
            fn sqlite() {
                let w = $crate::common::World::sqlite();
                ($body)(w);
            }
            #[test]
            fn postgres() {
                if let Some(w) = $crate::common::World::postgres() {
                    ($body)(w);
                }
            }
        }
    };
    (async: $($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(&$crate::common::TestDb::sqlite()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    if let Some(db) = $crate::common::TestDb::postgres().await {
                        super::$test(&db).await;
                    }
                }
            )*
        }
    };
}
