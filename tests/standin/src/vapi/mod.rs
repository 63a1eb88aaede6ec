//! The Vapi stand-in: a local, in-memory Vapi API for tests and the quickstart.
//!
//! It serves the phone-number and assistant routes on a loopback port, keeps one in-memory org,
//! can misbehave on purpose (latency, 5xx, 429, hangs, lost responses) deterministically, and
//! records every request so tests can check what a client actually sent.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use standin::vapi::{StandIn, StandInConfig};
//! let vapi = StandIn::start(StandInConfig::default()).await?;
//! let assistant = vapi.seed_assistant("Reception");
//! vapi.seed_twilio_number("+14155550100", "Front desk", Some(&assistant));
//! // point the client at vapi.base_url() with vapi.api_key()
//! # Ok(()) }
//! ```

mod dto;
mod faults;
mod model;
mod openapi;
mod routes;

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::net::TcpListener;

pub use dto::looks_e164;
pub use faults::{FaultConfig, FaultScope, InjectedFault};
pub use model::{TwilioSecrets, format_ts};
pub use routes::LoggedRequest;

use faults::{Faults, OneShotAction};
use model::{Model, Snapshot};
use routes::{Shared, lock};

/// The API key a stand-in expects unless configured otherwise.
pub const DEFAULT_API_KEY: &str = "standin-private-key";

/// The Twilio Account SID given to numbers made by [`StandIn::seed_twilio_number`].
pub const SEED_ACCOUNT_SID: &str = "AC00000000000000000000000000000000";

/// Problems with data handed to the stand-in (seeds, state files).
#[derive(Debug, thiserror::Error)]
pub enum StandInError {
    #[error("invalid seed: {0}")]
    InvalidSeed(String),
}

/// How to start a stand-in.
#[derive(Debug, Clone)]
pub struct StandInConfig {
    /// Must be a loopback address; port 0 picks a free port.
    pub listen: SocketAddr,
    /// The key clients must send as `Authorization: Bearer <key>`.
    pub api_key: String,
    /// The org every object belongs to; a fresh UUID if `None` (a state file's org wins).
    pub org_id: Option<String>,
    /// Loaded on start if it exists, rewritten after every change.
    pub state_file: Option<PathBuf>,
    pub faults: FaultConfig,
}

impl Default for StandInConfig {
    fn default() -> Self {
        StandInConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            api_key: DEFAULT_API_KEY.to_owned(),
            org_id: None,
            state_file: None,
            faults: FaultConfig::default(),
        }
    }
}

/// Keeps the server alive; dropping it stops the server and closes its open connections.
enum Runner {
    /// Serving on the caller's tokio runtime.
    Task(tokio::task::JoinHandle<()>),
    /// Serving on a private runtime in its own thread.
    Thread {
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        thread: Option<std::thread::JoinHandle<()>>,
    },
}

/// A running stand-in and the test-side handle on its state.
pub struct StandIn {
    shared: Arc<Shared>,
    addr: SocketAddr,
    runner: Runner,
}

impl std::fmt::Debug for StandIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StandIn").field("addr", &self.addr).finish()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        match &mut self.runner {
            Runner::Task(handle) => handle.abort(),
            Runner::Thread { stop, thread } => {
                drop(stop.take());
                if let Some(t) = thread.take() {
                    let _ = t.join();
                }
            }
        }
    }
}

/// Loads the model (from the state file when there is one) and builds the shared state.
fn prepare(config: &StandInConfig) -> io::Result<Arc<Shared>> {
    if !config.listen.ip().is_loopback() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "the stand-in only listens on loopback addresses, not {}",
                config.listen
            ),
        ));
    }
    let model = match &config.state_file {
        Some(path) if path.exists() => {
            let bytes = std::fs::read(path)?;
            let snap: Snapshot = serde_json::from_slice(&bytes)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            Model::from_snapshot(snap).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?
        }
        _ => Model::new(
            config
                .org_id
                .clone()
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        ),
    };
    let shared = Arc::new(Shared::new(
        config.api_key.clone(),
        model,
        Faults::new(config.faults.clone()),
        config.state_file.clone(),
    ));
    // Write the file right away, so a quickstart can rely on it existing once the server is up.
    shared.persist(&lock(&shared.model))?;
    Ok(shared)
}

impl StandIn {
    /// Starts serving on the current tokio runtime.
    pub async fn start(config: StandInConfig) -> io::Result<StandIn> {
        let shared = prepare(&config)?;
        let listener = TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let app = routes::router(shared.clone());
        let handle = tokio::spawn(crate::conn::accept_loop(
            listener,
            app,
            std::future::pending::<()>(),
        ));
        Ok(StandIn {
            shared,
            addr,
            runner: Runner::Task(handle),
        })
    }

    /// Starts serving on a thread of its own, for tests that are not async (e.g. ones driving
    /// the `vapictl` binary).
    pub fn start_background(config: StandInConfig) -> io::Result<StandIn> {
        let shared = prepare(&config)?;
        let std_listener = std::net::TcpListener::bind(config.listen)?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = routes::router(shared.clone());
        let thread = std::thread::Builder::new()
            .name(format!("vapi-standin-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = TcpListener::from_std(std_listener) else {
                        return;
                    };
                    crate::conn::accept_loop(listener, app, async {
                        let _ = stopped.await;
                    })
                    .await;
                });
            })?;
        Ok(StandIn {
            shared,
            addr,
            runner: Runner::Thread {
                stop: Some(stop),
                thread: Some(thread),
            },
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn api_key(&self) -> &str {
        &self.shared.api_key
    }

    pub fn org_id(&self) -> String {
        lock(&self.shared.model).org_id().to_owned()
    }

    /// Runs `f` on the model, then saves the state file (best effort: seeding helpers stay
    /// infallible; [`StandIn::save_state`] reports errors).
    fn mutate<T>(&self, f: impl FnOnce(&mut Model) -> T) -> T {
        let mut model = lock(&self.shared.model);
        let out = f(&mut model);
        let _ = self.shared.persist(&model);
        out
    }

    /// Writes the state file now (no-op without one).
    pub fn save_state(&self) -> io::Result<()> {
        self.shared.persist(&lock(&self.shared.model))
    }

    // ---- seeding and inspection ---------------------------------------------------------------

    /// Creates an assistant with this name (names need not be unique) and returns its id.
    pub fn seed_assistant(&self, name: &str) -> String {
        let mut body = serde_json::Map::new();
        body.insert("name".into(), Value::String(name.to_owned()));
        let out = self.mutate(|m| m.create_assistant(body));
        id_of(&out)
    }

    /// Creates a squad with this name (one member, no assistant of its own) and returns its id.
    pub fn seed_squad(&self, name: &str) -> String {
        let mut body = serde_json::Map::new();
        body.insert("name".into(), Value::String(name.to_owned()));
        body.insert("members".into(), Value::Array(Vec::new()));
        let out = self.mutate(|m| m.create_squad(body));
        id_of(&out)
    }

    /// The id of the oldest assistant with this name, creating one if there is none.
    pub fn ensure_assistant(&self, name: &str) -> String {
        if let Some(id) = lock(&self.shared.model).assistants_named(name).first() {
            return id.clone();
        }
        self.seed_assistant(name)
    }

    /// Every assistant, newest first.
    pub fn assistants(&self) -> Vec<Value> {
        lock(&self.shared.model).all_assistants()
    }

    /// Creates a Twilio number as if imported earlier (account [`SEED_ACCOUNT_SID`], no token)
    /// and returns its id.
    pub fn seed_twilio_number(
        &self,
        number: &str,
        name: &str,
        assistant_id: Option<&str>,
    ) -> String {
        let mut body = serde_json::Map::new();
        body.insert("provider".into(), "twilio".into());
        body.insert("number".into(), number.into());
        body.insert("twilioAccountSid".into(), SEED_ACCOUNT_SID.into());
        body.insert("name".into(), name.into());
        if let Some(a) = assistant_id {
            body.insert("assistantId".into(), a.into());
        }
        let out = self.mutate(|m| m.create_number(body));
        id_of(&out)
    }

    /// Stores any phone-number object as given (any provider, unknown fields kept). `id`,
    /// `orgId`, `createdAt` and `updatedAt` are filled in when missing; Twilio secret fields
    /// are moved to the secret table like on a create.
    pub fn seed_raw(&self, doc: Value) -> Result<String, StandInError> {
        let out = self.mutate(|m| m.insert_raw(doc))?;
        Ok(id_of(&out))
    }

    /// Every phone number (no secrets), newest first.
    pub fn numbers(&self) -> Vec<Value> {
        lock(&self.shared.model).all_numbers()
    }

    pub fn number(&self, id: &str) -> Option<Value> {
        lock(&self.shared.model).get_number(id)
    }

    /// All numbers whose `number` is exactly this string (duplicates included).
    pub fn find_by_number(&self, number: &str) -> Vec<Value> {
        self.numbers()
            .into_iter()
            .filter(|n| n.get("number").and_then(Value::as_str) == Some(number))
            .collect()
    }

    /// The Twilio auth token last written for a number, if any.
    pub fn token_of(&self, id: &str) -> Option<String> {
        self.secrets_of(id).and_then(|s| s.auth_token)
    }

    /// All write-only Twilio secrets last written for a number.
    pub fn secrets_of(&self, id: &str) -> Option<TwilioSecrets> {
        lock(&self.shared.model).secrets_of(id).cloned()
    }

    /// An out-of-band edit (as if made in the dashboard): no validation, same merge rules as
    /// PATCH (`null` removes a field, everything else replaces). `None` if the id is unknown or
    /// `patch` is not an object. Not counted as a call.
    pub fn patch_number(&self, id: &str, patch: Value) -> Option<Value> {
        let Value::Object(patch) = patch else {
            return None;
        };
        self.mutate(|m| m.update_number(id, patch))
    }

    /// An out-of-band delete. Returns the removed object.
    pub fn delete_number(&self, id: &str) -> Option<Value> {
        self.mutate(|m| m.delete_number(id))
    }

    /// From now on every write gets exactly this timestamp (truncated to milliseconds).
    pub fn freeze_clock(&self, ts: DateTime<Utc>) {
        lock(&self.shared.model).clock_mut().freeze(ts);
    }

    /// Back to real time, still strictly after every timestamp handed out so far.
    pub fn unfreeze_clock(&self) {
        lock(&self.shared.model).clock_mut().unfreeze();
    }

    /// From now on a Twilio import sets the number's URLs in `twilio` (and fails, as Vapi's
    /// does, when Twilio does not know the credentials or the number).
    pub fn link_twilio(&self, twilio: &crate::twilio::TwilioStandIn) {
        *lock(&self.shared.twilio) = Some((twilio.link(), self.base_url()));
    }

    // ---- faults -------------------------------------------------------------------------------

    /// Replaces the fault configuration; the random sequence restarts from its seed.
    pub fn set_faults(&self, config: FaultConfig) {
        lock(&self.shared.faults).set(config);
    }

    pub fn faults(&self) -> FaultConfig {
        lock(&self.shared.faults).config().clone()
    }

    /// Answers the next `times` requests whose method is `method` (`"*"` for any) and whose
    /// path starts with `path_prefix` with `status` and an error body, without handling them.
    /// A 429 carries `Retry-After` from the fault config.
    pub fn fail_next(&self, method: &str, path_prefix: &str, status: u16, times: usize) {
        lock(&self.shared.faults).add_rule(
            any_method(method),
            path_prefix,
            OneShotAction::Status(status),
            times,
        );
    }

    /// Handles (commits) the next `times` matching requests, then drops their connections
    /// without answering.
    pub fn lose_next(&self, method: &str, path_prefix: &str, times: usize) {
        lock(&self.shared.faults).add_rule(
            any_method(method),
            path_prefix,
            OneShotAction::Lose,
            times,
        );
    }

    /// Answers the next `times` matching requests with a 400 whose message quotes the request
    /// body (secrets included), without handling them: for leak tests.
    pub fn echo_next(&self, method: &str, path_prefix: &str, times: usize) {
        lock(&self.shared.faults).add_rule(
            any_method(method),
            path_prefix,
            OneShotAction::Echo,
            times,
        );
    }

    pub fn clear_fault_rules(&self) {
        lock(&self.shared.faults).clear_rules();
    }

    // ---- observation --------------------------------------------------------------------------

    /// Every request received since the last [`StandIn::reset_log`], in arrival order.
    pub fn request_log(&self) -> Vec<LoggedRequest> {
        self.shared.request_log()
    }

    /// Clears the log and the call counters.
    pub fn reset_log(&self) {
        self.shared.reset_log();
    }

    /// Requests received with this method (any outcome).
    pub fn calls(&self, method: &str) -> usize {
        self.request_log()
            .iter()
            .filter(|r| r.method.eq_ignore_ascii_case(method))
            .count()
    }

    /// POST/PATCH/DELETE requests that changed the model (lost responses included).
    pub fn mutating_calls(&self) -> usize {
        self.shared.mutating_calls()
    }

    /// List requests (`GET /phone-number`, `/v2/phone-number`, `/assistant`) that were answered
    /// with a list.
    pub fn list_calls(&self) -> usize {
        self.shared.list_calls()
    }
}

fn any_method(method: &str) -> Option<&str> {
    (method != "*" && !method.is_empty()).then_some(method)
}

fn id_of(v: &Value) -> String {
    v.get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}
