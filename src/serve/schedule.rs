//! When the controller acts: the `--interval` syntax, its ±10% jitter, and each owner's
//! exponential backoff after a failure. Pure: every function takes the time it reasons about.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;
use uuid::Uuid;

/// The longest an owner waits after failures, in intervals (issue 14: "up to 10 × the interval").
pub const MAX_BACKOFF_INTERVALS: u32 = 10;

/// Parses `--interval`: a whole number with a unit, `s`, `m` or `h` (`30s`, `5m`, `1h`).
///
/// # Errors
/// A message naming what is wrong and what is accepted.
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let bad = || {
        format!(
            "`{text}` is not a duration: write a whole number and a unit, e.g. `30s`, `5m` or `1h`"
        )
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60).ok_or_else(bad)?,
        "h" => n.checked_mul(3600).ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    if secs == 0 {
        return Err(format!("`{text}`: the interval must be at least `1s`"));
    }
    Ok(Duration::from_secs(secs))
}

/// `interval` moved by `jitter` (in −1.0..=1.0) times 10%, so that replicas and restarts do not
/// reconcile in step.
pub fn jittered(interval: Duration, jitter: f64) -> Duration {
    interval.mul_f64(1.0 + 0.1 * jitter.clamp(-1.0, 1.0))
}

/// How long an owner that failed `failures` times in a row waits before its next try:
/// one interval, then two, four, eight, and never more than [`MAX_BACKOFF_INTERVALS`].
pub fn backoff_delay(interval: Duration, failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(8);
    interval
        .saturating_mul(1 << doublings)
        .min(interval.saturating_mul(MAX_BACKOFF_INTERVALS))
}

/// The owners that failed, and when each may be tried again.
#[derive(Debug, Default)]
pub struct Backoff {
    owners: BTreeMap<Uuid, (u32, Instant)>,
}

impl Backoff {
    /// Whether `owner` may be reconciled at `now`. A retry due within a fifth of an interval
    /// counts as due, so that the jitter of the loop never skips a whole interval.
    pub fn is_due(&self, owner: Uuid, now: Instant, interval: Duration) -> bool {
        self.owners
            .get(&owner)
            .is_none_or(|(_, at)| *at <= now + interval / 5)
    }

    /// Records a failure of `owner` at `now`; returns how long it now waits.
    pub fn failed(&mut self, owner: Uuid, now: Instant, interval: Duration) -> Duration {
        let failures = self.owners.get(&owner).map_or(0, |(n, _)| *n) + 1;
        let delay = backoff_delay(interval, failures);
        self.owners.insert(owner, (failures, now + delay));
        delay
    }

    /// `owner` succeeded (or was refused on purpose): no more waiting.
    pub fn succeeded(&mut self, owner: Uuid) {
        self.owners.remove(&owner);
    }

    /// Failures in a row of `owner`.
    pub fn failures(&self, owner: Uuid) -> u32 {
        self.owners.get(&owner).map_or(0, |(n, _)| *n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_take_seconds_minutes_and_hours() {
        assert_eq!(parse_interval("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_interval("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_interval("1h"), Ok(Duration::from_secs(3600)));
        for bad in ["", "5", "m", "1.5m", "-1s", "5 m", "2d", "0s"] {
            let e = parse_interval(bad).unwrap_err();
            assert!(e.contains(&format!("`{bad}`")), "{e}");
        }
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        let i = Duration::from_secs(100);
        assert_eq!(jittered(i, 0.0), i);
        assert_eq!(jittered(i, 1.0), Duration::from_secs(110));
        assert_eq!(jittered(i, -1.0), Duration::from_secs(90));
        assert_eq!(jittered(i, 7.0), Duration::from_secs(110));
    }

    #[test]
    fn backoff_doubles_up_to_ten_intervals() {
        let i = Duration::from_secs(60);
        let delays: Vec<u64> = (1..=7)
            .map(|n| backoff_delay(i, n).as_secs() / 60)
            .collect();
        assert_eq!(delays, [1, 2, 4, 8, 10, 10, 10]);
        assert_eq!(backoff_delay(i, 1000), i * 10);
    }

    #[test]
    fn a_failed_owner_waits_while_the_others_go_on() {
        let i = Duration::from_secs(60);
        let t0 = Instant::now();
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let mut backoff = Backoff::default();
        backoff.failed(a, t0, i);
        backoff.failed(a, t0 + i, i);
        assert_eq!(backoff.failures(a), 2);
        // Due again two intervals after its second failure, not one.
        assert!(!backoff.is_due(a, t0 + i * 2, i));
        assert!(backoff.is_due(a, t0 + i * 3, i));
        assert!(backoff.is_due(b, t0, i));
        backoff.succeeded(a);
        assert!(backoff.is_due(a, t0, i));
        assert_eq!(backoff.failures(a), 0);
    }
}
