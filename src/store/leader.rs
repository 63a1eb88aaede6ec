//! `vapictl serve`'s leader lease ([`LeaderLease`]): one more row of `vapictl_locks`, with an
//! epoch (fencing token) that every take raises; its statements are the backend's
//! (`TAKE_LEASE`, `RENEW_LEASE`, … in `backend.rs`, shared with the owners' leases), run by `pool.rs` as the owner leases are.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use uuid::Uuid;

use super::lock::*;
use super::*;

/// The `vapictl_locks` row that elects one `vapictl serve` replica (see [`LeaderLease`]). No user
/// has this id: it spells `vapictl leader` in ASCII, in a UUID of the reserved variant.
pub const LEADER_LEASE_OWNER: Uuid = Uuid::from_u128(0x7661_7069_6374_6c20_e06c_6561_6465_7200);

/// What one attempt at leadership found.
#[derive(Debug)]
pub enum LeaderAttempt {
    /// This replica leads, with the lease's new epoch.
    Leading(LeaderLease),
    /// Another replica leads (its lease has not run out, and it is not a process of this host
    /// that is visibly gone).
    Following(LeaseHolder),
}

/// The leader's lease: one row in `vapictl_locks` ([`LEADER_LEASE_OWNER`]) with an epoch, the
/// fencing token of issue 14, renewed by a heartbeat every third of its TTL.
///
/// # Guarantees
/// - At most one replica holds a live leader lease at a time: taking it is one atomic statement
///   that succeeds only on a free or expired row (or, by a compare-and-swap on its token, on the
///   row of a holder of this host and pid namespace whose process is gone, as for [`OwnerLock`]).
/// - Every take raises the row's epoch by one, and the row is never deleted (a release only
///   expires it), so epochs only grow: a replica that lost its lease and still believes it leads
///   finds another epoch in the row at its next [`fence`](LeaderLease::fence) and stops there.
/// - The heartbeat renews only while the row carries this lease's token and epoch; once it
///   cannot (taken over, or the database unreachable for a whole TTL) [`is_held`] turns false
///   and stays false.
///
/// # Caveats
/// Fencing is checked by the holder, before it writes (Vapi cannot check a token for us): a
/// replica paused for longer than the TTL between its fence and a write can still make that one
/// write. The owners' own leases ([`OwnerLock`]) keep two writers off one owner's numbers even
/// then. SQLite leases use the clocks of the processes sharing the file (one host); PostgreSQL's,
/// the server's.
///
/// [`is_held`]: LeaderLease::is_held
#[derive(Debug)]
pub struct LeaderLease {
    store: Store,
    token: Uuid,
    epoch: i64,
    lost: Arc<AtomicBool>,
    heartbeat: JoinHandle<()>,
}

impl LeaderLease {
    /// The fencing token: higher than that of every earlier leader on this database.
    pub fn epoch(&self) -> i64 {
        self.epoch
    }

    /// Whether the heartbeat still holds the lease (no query).
    pub fn is_held(&self) -> bool {
        !self.lost.load(Ordering::SeqCst)
    }

    /// A flag that turns true when the lease is lost, to stop work started under it.
    pub fn lost_flag(&self) -> Arc<AtomicBool> {
        self.lost.clone()
    }

    /// Checks in the database that the row still carries this lease's token and epoch and has
    /// not expired: call it before starting to write.
    ///
    /// # Errors
    /// [`StoreError::LockLost`] (the lease is then marked lost for good);
    /// [`StoreError::QueryFailed`] when the database cannot be reached.
    pub async fn fence(&self) -> Result<(), StoreError> {
        if !self.is_held() || !self.store.leader_is_live(self.token, self.epoch).await? {
            self.lost.store(true, Ordering::SeqCst);
            return Err(StoreError::LockLost {
                owner: LEADER_LEASE_OWNER,
            });
        }
        Ok(())
    }

    /// Stops the heartbeat and expires the row (keeping its epoch), so that another replica can
    /// lead at once.
    ///
    /// # Errors
    /// [`StoreError::LockLost`] when the row was no longer this lease's;
    /// [`StoreError::QueryFailed`] when the database cannot be reached (the lease then expires by
    /// itself).
    pub async fn release(self) -> Result<(), StoreError> {
        self.heartbeat.abort();
        let expired = self.store.expire_leader(self.token, self.epoch).await?;
        if expired && self.is_held() {
            Ok(())
        } else {
            Err(StoreError::LockLost {
                owner: LEADER_LEASE_OWNER,
            })
        }
    }
}

impl Drop for LeaderLease {
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
}

impl Store {
    /// One attempt at leading the replicas that share this database: takes the leader lease
    /// ([`LEADER_LEASE_OWNER`]) for `ttl` when it is free, expired, or held by a process of this
    /// host that is gone; otherwise reports who leads. Never waits.
    ///
    /// # Errors
    /// [`StoreError::QueryFailed`] when the database cannot be reached.
    ///
    /// # Guarantees
    /// See [`LeaderLease`].
    pub async fn try_lead(
        &self,
        holder: &LockHolder,
        ttl: Duration,
    ) -> Result<LeaderAttempt, StoreError> {
        let token = Uuid::new_v4();
        let epoch = match self.take_leader(None, holder, token, ttl).await? {
            Some(epoch) => epoch,
            None => {
                let Some(lease) = self.read_lease(LEADER_LEASE_OWNER).await? else {
                    // Released and deleted by hand in between: the next attempt takes it.
                    return Box::pin(self.try_lead(holder, ttl)).await;
                };
                if !lease.holder_is_gone() {
                    return Ok(LeaderAttempt::Following(lease.shown()));
                }
                match self
                    .take_leader(Some(lease.token), holder, token, ttl)
                    .await?
                {
                    Some(epoch) => epoch,
                    None => {
                        let now = self.read_lease(LEADER_LEASE_OWNER).await?;
                        return Ok(LeaderAttempt::Following(now.unwrap_or(lease).shown()));
                    }
                }
            }
        };
        let lost = Arc::new(AtomicBool::new(false));
        let heartbeat = tokio::spawn(leader_heartbeat(
            self.clone(),
            token,
            epoch,
            ttl,
            lost.clone(),
        ));
        Ok(LeaderAttempt::Leading(LeaderLease {
            store: self.clone(),
            token,
            epoch,
            lost,
            heartbeat,
        }))
    }
}

/// Renews the leader lease every third of `ttl` until aborted; marks it lost when the row no
/// longer carries it, or when it could not be renewed for a whole TTL.
async fn leader_heartbeat(
    store: Store,
    token: Uuid,
    epoch: i64,
    ttl: Duration,
    lost: Arc<AtomicBool>,
) {
    let mut last_renewed = Instant::now();
    loop {
        tokio::time::sleep(ttl / 3).await;
        match store.renew_leader(token, epoch, ttl).await {
            Ok(true) => last_renewed = Instant::now(),
            Ok(false) => break,
            Err(_) if last_renewed.elapsed() < ttl => {}
            Err(_) => break,
        }
    }
    lost.store(true, Ordering::SeqCst);
}
