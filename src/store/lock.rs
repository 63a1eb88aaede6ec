//! The per-owner lock: a lease row in `vapictl_locks`, renewed by a heartbeat while held, so that
//! two applies to one owner never interleave and a crashed holder blocks others only until its
//! lease runs out — or not at all when it ran on this machine and is visibly gone.
//!
//! `vapictl serve`'s leader lease is one more row of the same table (`leader.rs`).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use uuid::Uuid;

use super::{Store, StoreError};

/// Who holds (or wants) a lock; shown to whoever has to wait for it.
///
/// `pid` should be the holding process's: a lease whose holder ran on this host, in this pid
/// namespace, and whose process is gone is taken over at once (see [`OwnerLock`]). The lease
/// records where its holder runs only when `pid` is this process's, so a holder made up by a
/// test or a tool is never judged by a process it does not describe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockHolder {
    pub host: String,
    pub pid: u32,
    pub run_id: String,
}

impl LockHolder {
    /// This process on this host, for the run `run_id`.
    pub fn this_process(run_id: impl Into<String>) -> Self {
        LockHolder {
            host: hostname(),
            pid: std::process::id(),
            run_id: run_id.into(),
        }
    }

    /// Where this holder runs, as recorded in `vapictl_locks.holder_pid_namespace`: `None` unless
    /// it describes this very process.
    pub(crate) fn pid_namespace(&self) -> Option<&'static str> {
        (self.pid == std::process::id() && self.host == hostname())
            .then(this_pid_namespace)
            .flatten()
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown-host".to_owned())
}

/// This process's pid namespace, named so that no other machine can share the name: the
/// kernel's boot id (random per boot, shared by the containers of one kernel) and the inode of
/// `/proc/self/ns/pid` (unique among the namespaces alive on that kernel), e.g.
/// `6b1f…/pid:[4026531836]`. A hostname alone would not do: two machines may share one (and the
/// initial pid namespace has the same inode everywhere).
///
/// `None` when `/proc` cannot say, or when the `/proc` mounted here belongs to another pid
/// namespace (then `/proc/<pid>` would not name our pids): such a process never takes a lease
/// over early, nor is its own lease ever taken over early.
fn this_pid_namespace() -> Option<&'static str> {
    static NAMESPACE: OnceLock<Option<String>> = OnceLock::new();
    NAMESPACE
        .get_or_init(|| {
            let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
            let boot_id = boot_id.trim();
            let ns = std::fs::read_link("/proc/self/ns/pid").ok()?;
            let me = std::fs::read_link("/proc/self").ok()?;
            if boot_id.is_empty() || me.to_str()? != std::process::id().to_string() {
                return None;
            }
            Some(format!("{boot_id}/{}", ns.to_str()?))
        })
        .as_deref()
}

/// Whether `pid` names a live process in this process's pid namespace. A zombie counts as gone
/// (it runs no heartbeat); anything `/proc` does not answer clearly counts as alive.
fn process_is_alive(pid: i64) -> bool {
    if pid <= 0 || pid > i64::from(i32::MAX) {
        return true;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses and may contain anything.
        Ok(stat) => !matches!(
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next()),
            Some('Z' | 'X')
        ),
        Err(e) => e.kind() != std::io::ErrorKind::NotFound,
    }
}

/// A lease as stored: who holds it and until when.
#[derive(Debug, Clone)]
pub(crate) struct Lease {
    pub host: String,
    pub pid: i64,
    pub run_id: String,
    pub acquired_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub token: Uuid,
    /// See [`this_pid_namespace`]; NULL for leases taken by older versions or elsewhere.
    pub pid_namespace: Option<String>,
}

impl Lease {
    /// Whether the holder ran in this pid namespace on this machine and its process is gone, so
    /// the lease can be taken over without waiting for it to expire.
    pub(super) fn holder_is_gone(&self) -> bool {
        let Some(here) = this_pid_namespace() else {
            return false;
        };
        self.pid_namespace.as_deref() == Some(here)
            && self.host == hostname()
            && !process_is_alive(self.pid)
    }

    pub(super) fn shown(&self) -> LeaseHolder {
        LeaseHolder {
            host: self.host.clone(),
            pid: self.pid,
            run_id: self.run_id.clone(),
            since: self.acquired_at,
            expires_at: self.expires_at,
        }
    }
}

/// The holder of a lease as someone waiting for it sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseHolder {
    pub host: String,
    pub pid: i64,
    pub run_id: String,
    /// When it took the lock.
    pub since: DateTime<Utc>,
    /// When its lease runs out unless its heartbeat renews it.
    pub expires_at: DateTime<Utc>,
}

/// What happens while [`Store::acquire_lock_with`](super::Store::acquire_lock_with) waits, for
/// the caller to show (the library never prints). `Display` gives one line of text.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LockWaitEvent {
    /// The lock is held by another run: reported at once, and again whenever the holder changes.
    Busy {
        owner: Uuid,
        holder: LeaseHolder,
        timeout: Duration,
    },
    /// Still held; reported every [`LockWait::progress_every`].
    StillWaiting {
        owner: Uuid,
        holder: LeaseHolder,
        waited: Duration,
        timeout: Duration,
    },
    /// The holder ran on this host, in this pid namespace, and its process is gone: its lease
    /// was taken over without waiting for it to expire.
    TookOverFromDeadHolder { owner: Uuid, holder: LeaseHolder },
}

fn secs(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl fmt::Display for LockWaitEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockWaitEvent::Busy {
                owner,
                holder: h,
                timeout,
            } => write!(
                f,
                "owner `{owner}` is locked by another vapictl run: host `{}`, pid {}, run `{}`, since {}; its lease expires at {} unless renewed. Waiting up to {}s (--lock-timeout); Ctrl-C stops without changing anything",
                h.host,
                h.pid,
                h.run_id,
                secs(&h.since),
                secs(&h.expires_at),
                timeout.as_secs()
            ),
            LockWaitEvent::StillWaiting {
                owner,
                holder: h,
                waited,
                timeout,
            } => write!(
                f,
                "still waiting for the lock on owner `{owner}`: waited {}s of the {}s --lock-timeout (held by host `{}`, pid {})",
                waited.as_secs(),
                timeout.as_secs(),
                h.host,
                h.pid
            ),
            LockWaitEvent::TookOverFromDeadHolder { owner, holder: h } => write!(
                f,
                "took over the lock on owner `{owner}` from pid {} on this host (run `{}`, since {}): that process is gone",
                h.pid,
                h.run_id,
                secs(&h.since)
            ),
        }
    }
}

/// How often a waiting acquire reports [`LockWaitEvent::StillWaiting`] unless told otherwise.
pub const LOCK_PROGRESS_EVERY: Duration = Duration::from_secs(5);

type Observer<'a> = Box<dyn Fn(&LockWaitEvent) + Send + Sync + 'a>;
type Interrupt<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// How to wait for an owner's lock: how long, whom to tell, and what cuts the wait short.
pub struct LockWait<'a> {
    timeout: Duration,
    progress_every: Duration,
    observer: Observer<'a>,
    interrupt: Interrupt<'a>,
}

impl fmt::Debug for LockWait<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockWait")
            .field("timeout", &self.timeout)
            .field("progress_every", &self.progress_every)
            .finish_non_exhaustive()
    }
}

impl<'a> LockWait<'a> {
    /// Waits up to `timeout`, silently, until the lock is free or the timeout passes.
    pub fn new(timeout: Duration) -> Self {
        LockWait {
            timeout,
            progress_every: LOCK_PROGRESS_EVERY,
            observer: Box::new(|_| {}),
            interrupt: Box::pin(std::future::pending()),
        }
    }

    /// Calls `observer` with each [`LockWaitEvent`].
    pub fn reporting(mut self, observer: impl Fn(&LockWaitEvent) + Send + Sync + 'a) -> Self {
        self.observer = Box::new(observer);
        self
    }

    /// Reports [`LockWaitEvent::StillWaiting`] this often (default [`LOCK_PROGRESS_EVERY`]).
    pub fn progress_every(mut self, every: Duration) -> Self {
        self.progress_every = every.max(Duration::from_millis(10));
        self
    }

    /// Gives up with [`StoreError::LockWaitInterrupted`] as soon as `interrupt` completes (at
    /// once if it already has), e.g. on Ctrl-C.
    pub fn interrupted_by(mut self, interrupt: impl Future<Output = ()> + Send + 'a) -> Self {
        self.interrupt = Box::pin(interrupt);
        self
    }
}

/// How long to wait between two attempts on a busy lock (plus up to as much again of jitter, so
/// that waiters do not retry in step).
const RETRY_INTERVAL: Duration = Duration::from_millis(100);

/// How long an interrupted acquire spends removing a lease it may have just taken.
const CLEANUP_BOUND: Duration = Duration::from_secs(2);

/// Exclusive right to change one owner's rows, until [`release`](OwnerLock::release)d.
///
/// # Guarantees
/// - At most one `OwnerLock` per owner is live at a time, across processes and hosts that share
///   the database, as long as its heartbeat keeps renewing the lease (every third of the TTL).
/// - A holder that dies stops renewing, and its lease can be taken over once it expires (after
///   at most [`StoreOptions::lock_ttl`](super::StoreOptions::lock_ttl)).
/// - A holder that ran on the same host, in the same pid namespace of the same running kernel
///   (its boot id and the inode of `/proc/self/ns/pid`, recorded with the lease), and whose
///   process no longer exists (or is a zombie), is taken over at once. The takeover is a
///   compare-and-swap on that lease's token, so of several waiters exactly one wins, and a lease
///   renewed or retaken in between is left alone.
/// - A live holder, or one from another host, pid namespace or boot, is never taken over early.
///
/// # Caveats
/// Dropping an `OwnerLock` without `release` abandons it: the heartbeat stops and the lease
/// lingers until it expires, exactly as if the process had crashed (a process that is still
/// alive is not taken over early). If the heartbeat cannot renew the lease in time (the database
/// unreachable for a whole TTL), another run may take it over: call
/// [`ensure_held`](OwnerLock::ensure_held) before each write. A pid reused by an unrelated
/// process makes a dead holder look alive; its lease then expires by TTL.
#[derive(Debug)]
pub struct OwnerLock {
    store: Store,
    owner: Uuid,
    token: Uuid,
    lost: Arc<AtomicBool>,
    heartbeat: JoinHandle<()>,
}

impl OwnerLock {
    pub fn owner(&self) -> Uuid {
        self.owner
    }

    /// Checks that the lease is still this lock's, as the heartbeat last saw it (no query).
    ///
    /// # Errors
    /// [`StoreError::LockLost`] when the heartbeat found the lease taken over, or could not renew
    /// it for a whole TTL.
    pub fn ensure_held(&self) -> Result<(), StoreError> {
        if self.lost.load(Ordering::SeqCst) {
            Err(StoreError::LockLost { owner: self.owner })
        } else {
            Ok(())
        }
    }

    /// Stops the heartbeat and deletes the lease, so the next run need not wait.
    ///
    /// # Errors
    /// [`StoreError::LockLost`] when the lease was no longer this lock's (another run took it
    /// over after it expired): the work done under it may have overlapped with that run's.
    /// [`StoreError::QueryFailed`] when the database could not be reached; the lease then
    /// expires on its own.
    pub async fn release(self) -> Result<(), StoreError> {
        self.heartbeat.abort();
        let deleted = self.store.drop_lease(self.owner, self.token).await?;
        if deleted && !self.lost.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(StoreError::LockLost { owner: self.owner })
        }
    }

    fn start(store: &Store, owner: Uuid, token: Uuid) -> OwnerLock {
        let lost = Arc::new(AtomicBool::new(false));
        let heartbeat = tokio::spawn(heartbeat(store.clone(), owner, token, lost.clone()));
        OwnerLock {
            store: store.clone(),
            owner,
            token,
            lost,
            heartbeat,
        }
    }
}

impl Drop for OwnerLock {
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
}

/// What one attempt on the lock found.
enum Attempt {
    Taken,
    TookOver(Lease),
    Held(Lease),
    /// Released between our two statements: try again at once.
    Vanished,
}

/// Takes the owner's lease, retrying until the wait's timeout has passed or it is interrupted.
pub(crate) async fn acquire(
    store: &Store,
    owner: Uuid,
    holder: &LockHolder,
    wait: LockWait<'_>,
) -> Result<OwnerLock, StoreError> {
    let LockWait {
        timeout,
        progress_every,
        observer,
        mut interrupt,
    } = wait;
    let started = Instant::now();
    let deadline = started + timeout;
    let token = Uuid::new_v4();
    let mut reported: Option<Uuid> = None;
    let mut next_progress = started + progress_every;
    loop {
        let attempt = tokio::select! {
            biased;
            () = &mut interrupt => return Err(interrupted(store, owner, token).await),
            a = attempt(store, owner, holder, token) => a?,
        };
        let lease = match attempt {
            Attempt::Taken => return Ok(OwnerLock::start(store, owner, token)),
            Attempt::TookOver(dead) => {
                observer(&LockWaitEvent::TookOverFromDeadHolder {
                    owner,
                    holder: dead.shown(),
                });
                return Ok(OwnerLock::start(store, owner, token));
            }
            Attempt::Vanished => continue,
            Attempt::Held(lease) => lease,
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(StoreError::LockHeld {
                owner,
                host: lease.host,
                pid: lease.pid,
                run_id: lease.run_id,
                since: lease.acquired_at,
                expires_at: lease.expires_at,
            });
        }
        if reported != Some(lease.token) {
            reported = Some(lease.token);
            next_progress = now + progress_every;
            observer(&LockWaitEvent::Busy {
                owner,
                holder: lease.shown(),
                timeout,
            });
        } else if now >= next_progress {
            next_progress = now + progress_every;
            observer(&LockWaitEvent::StillWaiting {
                owner,
                holder: lease.shown(),
                waited: now - started,
                timeout,
            });
        }
        let jitter = Duration::from_millis(rand::random_range(0..=100));
        let pause = (RETRY_INTERVAL + jitter).min(deadline.saturating_duration_since(now));
        tokio::select! {
            biased;
            () = &mut interrupt => return Err(interrupted(store, owner, token).await),
            () = tokio::time::sleep(pause) => {}
        }
    }
}

async fn attempt(
    store: &Store,
    owner: Uuid,
    holder: &LockHolder,
    token: Uuid,
) -> Result<Attempt, StoreError> {
    if store.take_lease(owner, holder, token).await? {
        return Ok(Attempt::Taken);
    }
    let Some(lease) = store.read_lease(owner).await? else {
        return Ok(Attempt::Vanished);
    };
    if lease.holder_is_gone() {
        return Ok(
            if store
                .take_over_lease(owner, lease.token, holder, token)
                .await?
            {
                Attempt::TookOver(lease)
            } else {
                // Renewed, released or taken by another waiter in between: look again.
                Attempt::Vanished
            },
        );
    }
    Ok(Attempt::Held(lease))
}

/// The error for an interrupted wait, after removing the lease in case a statement in flight
/// took it (best effort and bounded: an unremoved lease names this process, which is about to
/// exit, so the next run on this host takes it over at once).
async fn interrupted(store: &Store, owner: Uuid, token: Uuid) -> StoreError {
    let _ = tokio::time::timeout(CLEANUP_BOUND, store.drop_lease(owner, token)).await;
    StoreError::LockWaitInterrupted { owner }
}

/// Renews the lease every third of the TTL until aborted; marks it lost when it was taken over or
/// could not be renewed for a whole TTL.
async fn heartbeat(store: Store, owner: Uuid, token: Uuid, lost: Arc<AtomicBool>) {
    let ttl = store.lock_ttl();
    let mut last_renewed = Instant::now();
    loop {
        tokio::time::sleep(ttl / 3).await;
        match store.renew_lease(owner, token).await {
            Ok(true) => last_renewed = Instant::now(),
            Ok(false) => break,
            // Transient: keep trying while the lease may still be ours.
            Err(_) if last_renewed.elapsed() < ttl => {}
            Err(_) => break,
        }
    }
    lost.store(true, Ordering::SeqCst);
}
