//! The per-owner lock: a lease row in `vapictl_locks`, renewed by a heartbeat while held, so that
//! two applies to one owner never interleave and a crashed holder blocks others only until its
//! lease runs out.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use uuid::Uuid;

use super::{Store, StoreError};

/// Who holds (or wants) a lock; shown to whoever has to wait for it.
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

/// A lease as stored: who holds it and until when.
#[derive(Debug, Clone)]
pub(crate) struct Lease {
    pub host: String,
    pub pid: i64,
    pub run_id: String,
    pub acquired_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// How long to wait between two attempts on a busy lock (plus up to as much again of jitter, so
/// that waiters do not retry in step).
const RETRY_INTERVAL: Duration = Duration::from_millis(100);

/// Exclusive right to change one owner's rows, until [`release`](OwnerLock::release)d.
///
/// # Guarantees
/// - At most one `OwnerLock` per owner is live at a time, across processes and hosts that share
///   the database, as long as its heartbeat keeps renewing the lease (every third of the TTL).
/// - A holder that dies stops renewing, and its lease can be taken over once it expires (after
///   at most [`StoreOptions::lock_ttl`](super::StoreOptions::lock_ttl)).
///
/// # Caveats
/// Dropping an `OwnerLock` without `release` abandons it: the heartbeat stops and the lease
/// lingers until it expires, exactly as if the process had crashed. If the heartbeat cannot renew
/// the lease in time (the database unreachable for a whole TTL), another run may take it over:
/// call [`ensure_held`](OwnerLock::ensure_held) before each write.
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
}

impl Drop for OwnerLock {
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
}

/// Takes the owner's lease, retrying until `timeout` has passed.
pub(crate) async fn acquire(
    store: &Store,
    owner: Uuid,
    holder: &LockHolder,
    timeout: Duration,
) -> Result<OwnerLock, StoreError> {
    let deadline = Instant::now() + timeout;
    let token = Uuid::new_v4();
    loop {
        if store.take_lease(owner, holder, token).await? {
            let lost = Arc::new(AtomicBool::new(false));
            let heartbeat = tokio::spawn(heartbeat(store.clone(), owner, token, lost.clone()));
            return Ok(OwnerLock {
                store: store.clone(),
                owner,
                token,
                lost,
                heartbeat,
            });
        }
        let now = Instant::now();
        if now >= deadline {
            // The holder may have released between the two statements: then just try again.
            if let Some(lease) = store.read_lease(owner).await? {
                return Err(StoreError::LockHeld {
                    owner,
                    host: lease.host,
                    pid: lease.pid,
                    run_id: lease.run_id,
                    since: lease.acquired_at,
                    expires_at: lease.expires_at,
                });
            }
            continue;
        }
        let jitter = Duration::from_millis(rand::random_range(0..=100));
        let pause = (RETRY_INTERVAL + jitter).min(deadline.saturating_duration_since(now));
        tokio::time::sleep(pause).await;
    }
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
