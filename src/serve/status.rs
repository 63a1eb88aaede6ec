//! What the HTTP side reports about the loop: alive, ready (and why not), leading.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Shared between the loop (which writes) and the HTTP handlers (which read).
#[derive(Debug)]
pub struct Status {
    interval: Duration,
    alive: AtomicBool,
    leading: AtomicBool,
    contact: Mutex<Contact>,
}

/// The last time the loop reached what it needs, or why it did not.
#[derive(Debug, Default)]
struct Contact {
    /// When the last good contact ended: a reconcile that read the database and Vapi (leader),
    /// or a lease attempt that reached the database (follower).
    last_good: Option<Instant>,
    /// Set when the last attempt failed; cleared by a good one.
    failure: Option<String>,
    /// When the reconcile under way started: a long one (many owners) is not stale contact.
    in_progress: Option<Instant>,
}

impl Status {
    pub fn new(interval: Duration) -> Status {
        Status {
            interval,
            alive: AtomicBool::new(true),
            leading: AtomicBool::new(false),
            contact: Mutex::new(Contact::default()),
        }
    }

    /// Whether the loop is still running (false once it ended, or panicked).
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    pub(crate) fn set_alive(&self, alive: bool) {
        self.alive.store(alive, Ordering::SeqCst);
    }

    pub fn is_leading(&self) -> bool {
        self.leading.load(Ordering::SeqCst)
    }

    pub(crate) fn set_leading(&self, leading: bool) {
        self.leading.store(leading, Ordering::SeqCst);
    }

    /// A reconcile starts at `now`.
    pub(crate) fn reconciling(&self, now: Instant) {
        let mut c = self.contact.lock().unwrap_or_else(|p| p.into_inner());
        c.in_progress = Some(now);
    }

    /// A reconcile ended without trying the database and Vapi.
    pub(crate) fn idle(&self) {
        let mut c = self.contact.lock().unwrap_or_else(|p| p.into_inner());
        c.in_progress = None;
    }

    /// The loop reached what it needed at `now`.
    pub(crate) fn reached(&self, now: Instant) {
        let mut c = self.contact.lock().unwrap_or_else(|p| p.into_inner());
        c.last_good = Some(now);
        c.failure = None;
        c.in_progress = None;
    }

    /// The loop failed to reach what it needed; `why` is shown by `/readyz`.
    pub(crate) fn unreached(&self, why: String) {
        let mut c = self.contact.lock().unwrap_or_else(|p| p.into_inner());
        c.failure = Some(why);
        c.in_progress = None;
    }

    /// `Ok` when ready at `now`; otherwise the reason.
    ///
    /// Ready means: the last attempt succeeded, and it is not older than three intervals (a
    /// reconcile under way counts from its start). The
    /// leader's attempt is a reconcile (it reached the database and Vapi); a follower's is its
    /// attempt on the leader lease (it reached the database), so followers stay ready while the
    /// leader works.
    pub fn readiness(&self, now: Instant) -> Result<(), String> {
        if !self.is_alive() {
            return Err("the reconcile loop has stopped".to_owned());
        }
        let c = self.contact.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(why) = &c.failure {
            return Err(why.clone());
        }
        let Some(last) = c.last_good else {
            return Err("no reconcile has reached the database and Vapi yet".to_owned());
        };
        let last = c.in_progress.map_or(last, |started| last.max(started));
        let age = now.saturating_duration_since(last);
        let limit = self.interval * 3;
        if age > limit {
            return Err(format!(
                "the last successful contact was {}s ago, more than three intervals ({}s)",
                age.as_secs(),
                limit.as_secs()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_after_contact_and_not_when_it_is_old_or_failed() {
        let i = Duration::from_secs(10);
        let s = Status::new(i);
        let t0 = Instant::now();
        assert!(s.readiness(t0).unwrap_err().contains("no reconcile"));
        s.reached(t0);
        assert_eq!(s.readiness(t0 + i * 3), Ok(()));
        assert!(
            s.readiness(t0 + i * 4)
                .unwrap_err()
                .contains("three intervals")
        );
        // A reconcile under way for long is not stale contact; its failure is.
        s.reconciling(t0 + i * 4);
        assert_eq!(s.readiness(t0 + i * 6), Ok(()));
        s.unreached("cannot reach Vapi".to_owned());
        assert_eq!(s.readiness(t0).unwrap_err(), "cannot reach Vapi");
        s.reached(t0 + i);
        assert_eq!(s.readiness(t0 + i), Ok(()));
        s.set_alive(false);
        assert!(s.readiness(t0 + i).unwrap_err().contains("stopped"));
    }
}
