//! The controller (`vapictl serve`): a long-running loop that keeps Vapi and the database
//! matching the specs, with health, readiness and Prometheus metrics over HTTP, and a leader
//! lease so that several replicas on one database never apply twice.
//!
//! Every `interval` (±10% jitter, [`schedule`]) the leader re-reads the spec paths (directories
//! are rescanned, so a git-sync sidecar or a mounted ConfigMap can change them) and runs one
//! fleet reconcile through the library's apply protocol ([`crate::run::ApplyRun`]): one
//! observation, each owner under its own lease, the deletion gate never auto-confirmed. With
//! `drift_only` it plans and reports instead. An owner that fails waits out an exponential
//! backoff (up to ten intervals) while the others go on.
//!
//! # Guarantees
//! - Only the holder of the leader lease ([`crate::store::LeaderLease`]) reconciles; it checks
//!   the lease's epoch in the database before every reconcile, and a lease lost during one
//!   stops it before its next number. Owners' own leases keep two writers off one owner even
//!   if two replicas believed they led.
//! - A replica that takes over from a dead leader reconciles at once, from a fresh observation:
//!   numbers the dead leader created without recording are adopted by number, never created
//!   again.
//! - A deletion above the thresholds is reported (log, `vapictl_reconcile_total{result="refused"}`,
//!   `vapictl_owners{state="refused"}`) and that owner is left as it is.
//! - On shutdown, numbers in flight finish (for at most [`SHUTDOWN_GRACE`]), no new one starts,
//!   the lease is released, and [`Controller::run`] returns.
//!
//! # Caveats
//! `POST /reconcile` on a follower is answered 409 (only the leader reconciles). Identities and
//! specs are re-read at every reconcile, so a rotated key file takes effect at the next one. A
//! create that a dead leader had in flight and that Vapi carries out only after the new leader
//! listed the numbers is the one case a listing cannot see: the new leader then creates the
//! number too. Where Vapi refuses a number it already holds (409), that owner fails once and its
//! next reconcile adopts the existing copy; the window is the time between the leader's death and
//! the takeover, plus Vapi's own processing of that request.

pub mod http;
pub mod metrics;
mod reconcile;
pub mod schedule;
pub mod status;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use tokio::sync::Notify;
use tokio::time::Instant;
use uuid::Uuid;

use crate::Error;
use crate::apply::{Outcome, Progress};
use crate::plan::{Cause, Change, Plan};
use crate::run::{self, ApplyHooks, ApplyRun, ApplySettings, OwnerOutcome, OwnerSpec, Verdict};
use crate::safety::DeleteThreshold;
use crate::secrets::{Identities, SecretValue};
use crate::state::mask_number;
use crate::store::{LeaderAttempt, LeaderLease, LockHolder, LockWaitEvent, Store, StoreOptions};
use crate::twilio::Preflight;
use crate::validate::SecretMode;
use crate::vapi::{VapiClient, VapiConfig, VapiError};

pub use metrics::{Metrics, OwnerState, ReconcileResult};
pub use schedule::{Backoff, parse_interval};
pub use status::Status;

/// The longest a shutdown waits for the numbers in flight (the bound is 30 s in all).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Default `--listen`: loopback only; listening beyond it is the user's explicit choice.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9750";

/// Default `--interval`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);

/// Default `--lease-ttl`.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(15);

/// Re-reads the age identities (files and environment) before each reconcile.
pub type IdentitySource = Box<dyn Fn() -> Result<Identities, Error> + Send + Sync>;

/// Everything the controller needs, resolved by the binary from flags and environment.
pub struct ServeSettings {
    /// The `SPEC` arguments: files or directories, re-read at every reconcile.
    pub specs: Vec<PathBuf>,
    pub interval: Duration,
    pub listen: SocketAddr,
    pub drift_only: bool,
    pub lease_ttl: Duration,
    /// `VAPICTL_SERVE_TOKEN`.
    pub token: Option<SecretValue>,
    pub database_url: String,
    pub vapi: VapiConfig,
    pub identities: IdentitySource,
    /// Numbers in flight at once, over all owners.
    pub parallelism: usize,
    /// The Twilio preflight every applied plan passes, as in `apply` (a client-less one when
    /// `--twilio-check off`).
    pub twilio: Preflight,
}

impl std::fmt::Debug for ServeSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeSettings")
            .field("specs", &self.specs)
            .field("interval", &self.interval)
            .field("listen", &self.listen)
            .field("drift_only", &self.drift_only)
            .field("lease_ttl", &self.lease_ttl)
            .field(
                "database_url",
                &crate::store::redact_url(&self.database_url),
            )
            .field("vapi", &self.vapi)
            .finish_non_exhaustive()
    }
}

/// Why the controller could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "cannot listen on `{addr}`: {source}\nhint: choose a free address with `--listen HOST:PORT`"
    )]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Vapi(#[from] VapiError),
    #[error("the HTTP server failed: {0}")]
    Http(#[source] std::io::Error),
}

/// A controller bound to its address, not yet running.
pub struct Controller {
    settings: ServeSettings,
    listener: tokio::net::TcpListener,
    vapi: VapiClient,
    metrics: Arc<Metrics>,
    status: Arc<Status>,
    trigger: Arc<Notify>,
}

type Signal = Shared<BoxFuture<'static, ()>>;

impl Controller {
    /// Binds `settings.listen` and builds the Vapi client (with request metrics).
    ///
    /// # Errors
    /// [`ServeError::Listen`] when the address cannot be bound; [`ServeError::Vapi`] for a bad
    /// Vapi URL.
    pub async fn bind(mut settings: ServeSettings) -> Result<Controller, ServeError> {
        let listener = tokio::net::TcpListener::bind(settings.listen)
            .await
            .map_err(|source| ServeError::Listen {
                addr: settings.listen,
                source,
            })?;
        let metrics = Arc::new(Metrics::new());
        settings.vapi.on_response = Some(metrics.vapi_observer());
        let vapi = VapiClient::new(settings.vapi.clone())?;
        Ok(Controller {
            status: Arc::new(Status::new(settings.interval)),
            settings,
            listener,
            vapi,
            metrics,
            trigger: Arc::new(Notify::new()),
        })
    }

    /// The address actually bound (`--listen 127.0.0.1:0` picks a free port).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves HTTP and runs the loop until `shutdown` completes, then finishes the numbers in
    /// flight, releases the lease and returns.
    ///
    /// # Errors
    /// [`ServeError::Http`] when the HTTP server fails.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let shutdown: Signal = shutdown.boxed().shared();
        let Controller {
            settings,
            listener,
            vapi,
            metrics,
            status,
            trigger,
        } = self;
        let shared = http::Shared {
            status: status.clone(),
            metrics: metrics.clone(),
            trigger: trigger.clone(),
            token: settings.token.clone(),
        };
        let (http_stop, http_stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            axum::serve(listener, http::router(shared))
                .with_graceful_shutdown(async {
                    let _ = http_stopped.await;
                })
                .await
        });
        let mut reconciler = Loop {
            settings,
            vapi,
            metrics,
            status: status.clone(),
            trigger,
            backoff: Backoff::default(),
            holder: LockHolder::this_process(format!("serve-{}", Uuid::new_v4())),
        };
        // /healthz turns 503 if the loop ever ends other than by shutdown (a panic included).
        let result = std::panic::AssertUnwindSafe(reconciler.run(shutdown))
            .catch_unwind()
            .await;
        status.set_alive(false);
        let _ = http_stop.send(());
        let served = server.await;
        if let Err(panic) = result {
            std::panic::resume_unwind(panic);
        }
        match served {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ServeError::Http(e)),
            Err(e) => Err(ServeError::Http(std::io::Error::other(e.to_string()))),
        }
    }
}

/// The loop's state.
struct Loop {
    settings: ServeSettings,
    vapi: VapiClient,
    metrics: Arc<Metrics>,
    status: Arc<Status>,
    trigger: Arc<Notify>,
    backoff: Backoff,
    holder: LockHolder,
}

/// What one reconcile did, for the log line and the metrics.
#[derive(Debug, Default)]
struct Summary {
    owners: usize,
    ok: usize,
    failed: usize,
    refused: usize,
    /// Owners skipped while waiting out a backoff (counted as failed too).
    backing_off: usize,
    applied: BTreeMap<&'static str, usize>,
    findings: BTreeMap<Cause, usize>,
    managed: usize,
    /// Set when the database and Vapi were both read.
    reached: bool,
    /// Set when reading the database or Vapi failed.
    unreached: bool,
    /// Why the reconcile failed as a whole.
    error: Option<String>,
}

impl Summary {
    fn result(&self) -> ReconcileResult {
        if self.error.is_some() || self.failed > 0 {
            ReconcileResult::Error
        } else if self.refused > 0 {
            ReconcileResult::Refused
        } else {
            ReconcileResult::Success
        }
    }
}

impl Loop {
    async fn run(&mut self, shutdown: Signal) {
        let stopping = Arc::new(AtomicBool::new(false));
        let interval = self.settings.interval;
        let ttl = self.settings.lease_ttl;
        let mut store: Option<Store> = None;
        let mut leader: Option<LeaderLease> = None;
        let mut next_reconcile = Instant::now();
        let mut triggered = false;
        loop {
            if shutdown.peek().is_some() {
                break;
            }
            let Some(db) = store.clone() else {
                match self.connect().await {
                    Ok(s) => store = Some(s),
                    Err(e) => {
                        let text = e.to_string();
                        tracing::warn!(error = %text, "cannot reach the database; retrying");
                        self.status
                            .unreached(format!("cannot reach the database: {text}"));
                        if wait(Instant::now() + interval.min(ttl), &self.trigger, &shutdown).await
                        {
                            triggered = true;
                        }
                    }
                }
                continue;
            };
            if leader.as_ref().is_some_and(|l| !l.is_held()) {
                tracing::warn!("lost the leader lease; following");
                leader = None;
                self.set_leading(false);
            }
            if leader.is_none() {
                match db.try_lead(&self.holder, ttl).await {
                    Ok(LeaderAttempt::Leading(lease)) => {
                        tracing::info!(epoch = lease.epoch(), "leading: this replica reconciles");
                        leader = Some(lease);
                        self.set_leading(true);
                        // Finish at once whatever a previous leader left.
                        next_reconcile = Instant::now();
                    }
                    Ok(LeaderAttempt::Following(h)) => {
                        tracing::debug!(host = %h.host, pid = h.pid, "following: another replica leads");
                        self.set_leading(false);
                        self.status.reached(Instant::now());
                    }
                    Err(e) => {
                        let text = e.to_string();
                        tracing::warn!(error = %text, "cannot reach the database for the leader lease");
                        self.status
                            .unreached(format!("cannot reach the database: {text}"));
                    }
                }
            }
            if let Some(lease) = &leader
                && (triggered || Instant::now() >= next_reconcile)
            {
                triggered = false;
                if let Err(e) = lease.fence().await {
                    tracing::warn!(error = %e, "the leader lease is no longer this replica's; following");
                    leader = None;
                    self.set_leading(false);
                    continue;
                }
                let lost = lease.lost_flag();
                self.reconcile_once(&db, lost, stopping.clone(), shutdown.clone())
                    .await;
                let jitter = rand::random_range(-1.0..=1.0);
                next_reconcile = Instant::now() + schedule::jittered(interval, jitter);
                continue;
            }
            // Leaders wake for their next reconcile (and a third of the TTL at most, to notice
            // a lost lease); followers retry the lease every third of the TTL.
            let until = match &leader {
                Some(_) => next_reconcile.min(Instant::now() + ttl / 3),
                None => Instant::now() + (ttl / 3).min(interval),
            };
            if wait(until, &self.trigger, &shutdown).await {
                triggered = true;
            }
        }
        stopping.store(true, Ordering::SeqCst);
        if let Some(lease) = leader {
            match tokio::time::timeout(Duration::from_secs(5), lease.release()).await {
                Ok(Ok(())) => tracing::info!("released the leader lease"),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "could not release the leader lease; it expires by itself")
                }
                Err(_) => {
                    tracing::warn!("releasing the leader lease timed out; it expires by itself")
                }
            }
        }
        self.set_leading(false);
    }

    fn set_leading(&self, leading: bool) {
        self.status.set_leading(leading);
        self.metrics.set_leader(leading);
    }

    async fn connect(&self) -> Result<Store, crate::store::StoreError> {
        let opts = StoreOptions {
            // A dead leader's owner leases expire as fast as its leader lease.
            lock_ttl: self.settings.lease_ttl,
            ..StoreOptions::default()
        };
        Store::connect(&self.settings.database_url, &opts).await
    }

    /// One reconcile, bounded by shutdown: on the signal no new number starts and the numbers in
    /// flight get [`SHUTDOWN_GRACE`] to finish.
    async fn reconcile_once(
        &mut self,
        store: &Store,
        lost: Arc<AtomicBool>,
        stopping: Arc<AtomicBool>,
        shutdown: Signal,
    ) {
        let started = Instant::now();
        self.status.reconciling(started);
        let stop = Arc::new(AtomicBool::new(false));
        // The run stops starting numbers when the lease is lost or on shutdown.
        let watcher = {
            let stop = stop.clone();
            let stopping = stopping.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                loop {
                    if lost.load(Ordering::SeqCst)
                        || stopping.load(Ordering::SeqCst)
                        || shutdown.peek().is_some()
                    {
                        stop.store(true, Ordering::SeqCst);
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        };
        let summary = {
            let work = self.reconcile(store, stop, shutdown.clone());
            tokio::pin!(work);
            tokio::select! {
                s = &mut work => Some(s),
                () = shutdown.clone() => {
                    stopping.store(true, Ordering::SeqCst);
                    tokio::time::timeout(SHUTDOWN_GRACE, &mut work).await.ok()
                }
            }
        };
        watcher.abort();
        let elapsed = started.elapsed();
        let Some(summary) = summary else {
            tracing::warn!(
                "shutdown: the numbers in flight did not finish within {}s; the next leader repairs them",
                SHUTDOWN_GRACE.as_secs()
            );
            return;
        };
        self.record(&summary, elapsed);
    }

    /// Metrics, readiness and the one log line of a reconcile.
    fn record(&self, s: &Summary, elapsed: Duration) {
        let result = s.result();
        self.metrics.reconciled(result, elapsed.as_secs_f64());
        if s.reached {
            self.status.reached(Instant::now());
            self.metrics.set_findings(&s.findings);
            self.metrics.set_managed(s.managed);
        } else if let (true, Some(e)) = (s.unreached, &s.error) {
            self.status.unreached(format!(
                "the last reconcile did not reach the database and Vapi: {e}"
            ));
        } else {
            // Failed before any contact (a spec conflict, an unreadable key): readiness is about
            // the database and Vapi, and stays as the last contact left it.
            self.status.idle();
        }
        self.metrics.set_owners(s.ok, s.failed, s.refused);
        let actions = s
            .applied
            .iter()
            .map(|(a, n)| format!("{a}={n}"))
            .collect::<Vec<_>>()
            .join(" ");
        let findings: usize = s.findings.values().sum();
        // One line per reconcile, at warn unless it succeeded (tracing's levels are static).
        macro_rules! line {
            ($level:ident) => {
                tracing::$level!(
                    result = result.label(),
                    owners = s.owners,
                    ok = s.ok,
                    failed = s.failed,
                    refused = s.refused,
                    backing_off = s.backing_off,
                    findings,
                    actions = %actions,
                    duration_ms = elapsed.as_millis() as u64,
                    error = s.error.as_deref().unwrap_or(""),
                    "reconcile"
                )
            };
        }
        if result == ReconcileResult::Success {
            line!(info);
        } else {
            line!(warn);
        }
    }
}

/// Sleeps until `until`; true when woken by a trigger instead. Returns at once on shutdown.
async fn wait(until: Instant, trigger: &Notify, shutdown: &Signal) -> bool {
    tokio::select! {
        () = tokio::time::sleep_until(until) => false,
        () = trigger.notified() => true,
        () = shutdown.clone() => false,
    }
}
