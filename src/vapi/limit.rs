//! The client-side rate limit on Vapi's mutating calls: a token bucket whose rate halves on a 429
//! and climbs back towards the configured maximum as calls succeed (additive increase,
//! multiplicative decrease, as TCP does with its window).
//!
//! Hand-written rather than built on `governor`: a governor quota is fixed when the limiter is
//! made (adapting it would mean swapping limiters and losing their state), and governor waits on
//! its own clock, so tests could not drive it with `tokio::time::pause()`. What is here is the
//! same algorithm (GCRA, a token bucket kept as one "theoretical arrival time") on tokio's clock.
//!
//! # Guarantees
//! - Calls start at most at the current rate, after an initial burst of one second's worth
//!   (`max_rps` calls), as with `governor::Quota::per_second`.
//! - Each waiting call reserves its own slot, so waiters are served in arrival order and never
//!   stampede when a slot frees up.
//! - A 429 halves the rate (down to [`MIN_RPS`]) and empties the bucket; its `Retry-After` holds
//!   back every call, not only the one that was refused. The 429s of calls that were sent before
//!   the last slowdown count once: a burst of refusals from calls already in flight is one signal,
//!   not a collapse to the floor.
//! - Successful calls sent after the last slowdown raise the rate by a tenth of the maximum per
//!   second of calls, so one halving is recovered in about five seconds of successes.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

/// The lowest rate a run of 429s can push the limiter to, in calls per second.
const MIN_RPS: f64 = 0.5;

/// How fast the rate climbs back: this fraction of the maximum, per second of successful calls.
const RECOVERY_PER_SECOND: f64 = 0.1;

/// An adaptive limit on the rate of calls; shared by every clone of a client.
#[derive(Debug)]
pub struct RateLimiter {
    max: f64,
    min: f64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    rate: f64,
    /// When the next call would be due if calls had come exactly at the rate (GCRA's
    /// "theoretical arrival time"); `None` before the first call.
    tat: Option<Instant>,
    /// Bumped by every slowdown, so that outcomes of calls sent before it can be told apart.
    epoch: u64,
    lowest: f64,
    throttled: u64,
}

/// Permission to send one call; hand it back with the call's outcome.
#[derive(Debug, Clone, Copy)]
#[must_use = "report the call's outcome with `succeeded` or `throttled`"]
pub struct Permit {
    epoch: u64,
}

/// The limiter as it stands, for logs, tests and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimitState {
    /// The configured maximum, in calls per second.
    pub max_rps: f64,
    /// The rate calls may start at now.
    pub current_rps: f64,
    /// The lowest rate reached so far.
    pub lowest_rps: f64,
    /// 429 answers received so far.
    pub throttled: u64,
}

impl RateLimiter {
    /// A limiter allowing `max_rps` calls per second (at least one).
    pub fn new(max_rps: u32) -> Self {
        let max = f64::from(max_rps.max(1));
        RateLimiter {
            max,
            min: MIN_RPS.min(max),
            state: Mutex::new(State {
                rate: max,
                tat: None,
                epoch: 0,
                lowest: max,
                throttled: 0,
            }),
        }
    }

    /// Waits for the next slot at the current rate.
    pub async fn acquire(&self) -> Permit {
        let (at, permit) = self.reserve(Instant::now());
        tokio::time::sleep_until(at).await;
        permit
    }

    /// Books the next free slot at or after `now`: returns when the call may start.
    fn reserve(&self, now: Instant) -> (Instant, Permit) {
        let mut s = self.lock();
        let interval = interval(s.rate);
        let tat = s.tat.map_or(now, |t| t.max(now));
        let at = tat
            .checked_sub(tolerance(s.rate))
            .map_or(now, |a| a.max(now));
        s.tat = Some(tat + interval);
        (at, Permit { epoch: s.epoch })
    }

    /// Reports a call that Vapi accepted (any answer but 429 says nothing about the rate).
    pub fn succeeded(&self, permit: Permit) {
        let mut s = self.lock();
        // A call sent before the last slowdown says nothing about the new rate.
        if permit.epoch == s.epoch {
            // At rate r about r calls succeed per second, so adding `k / r` per call adds about
            // `k` per second, whatever the rate.
            s.rate = (s.rate + self.max * RECOVERY_PER_SECOND / s.rate).min(self.max);
        }
    }

    /// Reports a 429: slows down (once per burst, see the module docs) and holds every call back
    /// for `retry_after` when Vapi gave one.
    pub fn throttled(&self, permit: Permit, retry_after: Option<Duration>) {
        let now = Instant::now();
        let mut s = self.lock();
        s.throttled += 1;
        if permit.epoch == s.epoch {
            s.rate = (s.rate / 2.0).max(self.min);
            s.lowest = s.lowest.min(s.rate);
            s.epoch += 1;
            tracing::debug!(
                rps = s.rate,
                "Vapi answered 429; slowing down mutating calls"
            );
        }
        // Empty the bucket: the next call waits for `retry_after`, and no burst follows it.
        let resume = now + retry_after.unwrap_or(Duration::ZERO) + tolerance(s.rate);
        s.tat = Some(s.tat.map_or(resume, |t| t.max(resume)));
    }

    pub fn state(&self) -> RateLimitState {
        let s = self.lock();
        RateLimitState {
            max_rps: self.max,
            current_rps: s.rate,
            lowest_rps: s.lowest,
            throttled: s.throttled,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent between statements, so a panic elsewhere cannot corrupt it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Time between calls at `rate`.
fn interval(rate: f64) -> Duration {
    Duration::from_secs_f64(1.0 / rate)
}

/// How far ahead of its slot a call may start: the burst is one second's worth of calls.
fn tolerance(rate: f64) -> Duration {
    let burst = rate.floor().max(1.0);
    interval(rate).mul_f64(burst - 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Acquires `n` permits and returns when each was granted, relative to `start`.
    async fn times(limiter: &RateLimiter, start: Instant, n: usize) -> Vec<Duration> {
        let mut out = Vec::new();
        for _ in 0..n {
            let p = limiter.acquire().await;
            limiter.succeeded(p);
            out.push(start.elapsed());
        }
        out
    }

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().copied().map(Duration::from_millis).collect()
    }

    /// Rounded to the millisecond: the rates are floats.
    fn rounded(v: Vec<Duration>) -> Vec<Duration> {
        v.into_iter()
            .map(|d| Duration::from_millis((d.as_secs_f64() * 1000.0).round() as u64))
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_one_second_then_calls_at_the_rate() {
        let l = RateLimiter::new(10);
        let start = Instant::now();
        let got = rounded(times(&l, start, 13).await);
        let mut want = vec![Duration::ZERO; 10];
        want.extend(ms(&[100, 200, 300]));
        assert_eq!(got, want);
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_calls_are_served_in_arrival_order_at_the_rate() {
        let l = std::sync::Arc::new(RateLimiter::new(2));
        let start = Instant::now();
        let tasks: Vec<_> = (0..5)
            .map(|_| {
                let l = l.clone();
                tokio::spawn(async move {
                    let _ = l.acquire().await;
                    start.elapsed()
                })
            })
            .collect();
        let mut got = Vec::new();
        for t in tasks {
            got.push(t.await.unwrap());
        }
        got.sort();
        assert_eq!(rounded(got), ms(&[0, 0, 500, 1000, 1500]));
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_halves_the_rate_and_empties_the_bucket() {
        let l = RateLimiter::new(10);
        let p = l.acquire().await;
        l.throttled(p, Some(Duration::ZERO));
        assert_eq!(l.state().current_rps, 5.0);
        let start = Instant::now();
        // No burst after a 429: one call now, then one every 200 ms.
        let mut got = Vec::new();
        for _ in 0..3 {
            let _ = l.acquire().await;
            got.push(start.elapsed());
        }
        assert_eq!(rounded(got), ms(&[0, 200, 400]));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_holds_back_every_call() {
        let l = RateLimiter::new(10);
        let first = l.acquire().await;
        let other = l.acquire().await;
        let start = Instant::now();
        l.throttled(first, Some(Duration::from_secs(2)));
        let _ = l.acquire().await;
        assert_eq!(start.elapsed(), Duration::from_secs(2));
        l.succeeded(other);
    }

    #[tokio::test(start_paused = true)]
    async fn refusals_of_calls_already_in_flight_slow_down_once() {
        let l = RateLimiter::new(16);
        let in_flight: Vec<Permit> = futures::future::join_all((0..8).map(|_| l.acquire())).await;
        for p in in_flight {
            l.throttled(p, None);
        }
        let s = l.state();
        assert_eq!(s.throttled, 8);
        assert_eq!(s.current_rps, 8.0, "one halving, not eight");
        // A refusal of a call sent after the slowdown slows down again.
        let p = l.acquire().await;
        l.throttled(p, None);
        assert_eq!(l.state().current_rps, 4.0);
        assert_eq!(l.state().lowest_rps, 4.0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_rate_never_drops_below_the_floor() {
        let l = RateLimiter::new(10);
        for _ in 0..20 {
            let p = l.acquire().await;
            l.throttled(p, None);
        }
        assert_eq!(l.state().current_rps, MIN_RPS);
        // The floor still lets calls through, two seconds apart.
        let _ = l.acquire().await;
        let start = Instant::now();
        let _ = l.acquire().await;
        assert_eq!(rounded(vec![start.elapsed()]), ms(&[2000]));
    }

    #[tokio::test(start_paused = true)]
    async fn successes_recover_one_halving_in_about_five_seconds() {
        let l = RateLimiter::new(10);
        let p = l.acquire().await;
        l.throttled(p, None);
        let start = Instant::now();
        let mut calls = 0;
        while l.state().current_rps < 10.0 {
            let p = l.acquire().await;
            l.succeeded(p);
            calls += 1;
            assert!(calls < 1000, "never recovered");
        }
        let took = start.elapsed();
        assert!(
            took >= Duration::from_secs(4) && took <= Duration::from_secs(6),
            "recovered in {took:?}"
        );
        assert_eq!(l.state().current_rps, 10.0, "never above the maximum");
        assert_eq!(l.state().lowest_rps, 5.0);
    }

    #[tokio::test(start_paused = true)]
    async fn successes_of_calls_sent_before_a_slowdown_do_not_undo_it() {
        let l = RateLimiter::new(10);
        let early: Vec<Permit> = futures::future::join_all((0..5).map(|_| l.acquire())).await;
        let refused = l.acquire().await;
        l.throttled(refused, None);
        for p in early {
            l.succeeded(p);
        }
        assert_eq!(l.state().current_rps, 5.0);
    }
}
