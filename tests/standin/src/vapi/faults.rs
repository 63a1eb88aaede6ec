//! Injected failures: random ones drawn from a seeded generator, so a test that replays the same
//! requests sees the same faults, and one-shot rules for exact scenarios.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// Which requests the random faults may hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FaultScope {
    /// Only POST, PATCH and DELETE: reads stay reliable, which keeps retry tests focused.
    #[default]
    Mutating,
    /// Every request, reads included.
    All,
}

/// How the stand-in misbehaves. The default misbehaves not at all.
///
/// Probabilities are checked in the order 5xx, 429, hang, lost, against one uniform draw per
/// request in scope; if they add up to more than 1 the later ones get what is left.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct FaultConfig {
    /// Seeds the generator; `set_faults` restarts the sequence from it.
    pub seed: u64,
    /// Delay added to every request (in or out of scope) before it is handled.
    pub latency_ms: u64,
    /// Chance of a 502 or 503 with a body; nothing is changed.
    pub p_server_error: f64,
    /// Chance of a 429 with `Retry-After`; nothing is changed.
    pub p_rate_limit: f64,
    /// The `Retry-After` value, in seconds (0 keeps retry tests fast).
    pub retry_after_secs: u64,
    /// Chance that the request hangs for `hang_ms`, then gets a 504; nothing is changed.
    pub p_hang: f64,
    pub hang_ms: u64,
    /// Chance that the request is carried out (a mutation is committed) and then the connection
    /// is closed without a response.
    pub p_lost_response: f64,
    pub scope: FaultScope,
    /// Added to `/v2/phone-number`'s `totalItems` (a listing that disagrees with its count,
    /// as when numbers appear or vanish mid-listing).
    #[serde(default)]
    pub total_items_skew: i64,
    /// `/v2/phone-number?search=` matches nothing (Vapi does not document how `search`
    /// matches: a client must not take "no match" for "absent").
    #[serde(default)]
    pub blind_search: bool,
}

/// A fault that was applied to a request, as the request log records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum InjectedFault {
    /// An error status chosen by a random fault (502 or 503) or a one-shot rule.
    Status(u16),
    RateLimited,
    Hang,
    LostResponse,
    /// A 400 whose message quotes the request body (as some validators do).
    EchoBody,
}

/// What a one-shot rule does to the requests it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OneShotAction {
    /// Answer with this status and a NestJS-style body without handling the request.
    Status(u16),
    /// Handle the request (commit it), then drop the connection.
    Lose,
    /// Answer 400 with a message that quotes the request body, without handling the request.
    Echo,
}

#[derive(Debug, Clone)]
struct OneShot {
    /// `None` matches any method.
    method: Option<String>,
    path_prefix: String,
    action: OneShotAction,
    remaining: usize,
}

/// The live fault state of one stand-in.
#[derive(Debug)]
pub struct Faults {
    config: FaultConfig,
    rng: StdRng,
    rules: Vec<OneShot>,
}

impl Faults {
    pub fn new(config: FaultConfig) -> Self {
        Faults {
            rng: StdRng::seed_from_u64(config.seed),
            config,
            rules: Vec::new(),
        }
    }

    pub fn config(&self) -> &FaultConfig {
        &self.config
    }

    /// Replaces the configuration and restarts the random sequence from its seed. One-shot
    /// rules are kept.
    pub fn set(&mut self, config: FaultConfig) {
        self.rng = StdRng::seed_from_u64(config.seed);
        self.config = config;
    }

    pub fn add_rule(
        &mut self,
        method: Option<&str>,
        path_prefix: &str,
        action: OneShotAction,
        times: usize,
    ) {
        if times == 0 {
            return;
        }
        self.rules.push(OneShot {
            method: method.map(str::to_ascii_uppercase),
            path_prefix: path_prefix.to_owned(),
            action,
            remaining: times,
        });
    }

    pub fn clear_rules(&mut self) {
        self.rules.clear();
    }

    /// Picks the fault for one request, if any. One-shot rules win (oldest first) and do not
    /// consume a random draw, so adding a rule does not shift the random sequence.
    pub fn decide(&mut self, method: &str, path: &str) -> Option<InjectedFault> {
        if let Some(i) = self.rules.iter().position(|r| {
            r.method.as_deref().is_none_or(|m| m == method) && path.starts_with(&r.path_prefix)
        }) {
            let rule = &mut self.rules[i];
            rule.remaining -= 1;
            let action = rule.action;
            if rule.remaining == 0 {
                self.rules.remove(i);
            }
            return Some(match action {
                OneShotAction::Status(429) => InjectedFault::RateLimited,
                OneShotAction::Status(s) => InjectedFault::Status(s),
                OneShotAction::Lose => InjectedFault::LostResponse,
                OneShotAction::Echo => InjectedFault::EchoBody,
            });
        }

        let in_scope = match self.config.scope {
            FaultScope::All => true,
            FaultScope::Mutating => matches!(method, "POST" | "PATCH" | "DELETE" | "PUT"),
        };
        let c = &self.config;
        let total = c.p_server_error + c.p_rate_limit + c.p_hang + c.p_lost_response;
        if !in_scope || total <= 0.0 {
            return None;
        }
        let r: f64 = self.rng.random();
        let mut edge = c.p_server_error;
        if r < edge {
            let status = if self.rng.random_bool(0.5) { 502 } else { 503 };
            return Some(InjectedFault::Status(status));
        }
        edge += c.p_rate_limit;
        if r < edge {
            return Some(InjectedFault::RateLimited);
        }
        edge += c.p_hang;
        if r < edge {
            return Some(InjectedFault::Hang);
        }
        edge += c.p_lost_response;
        if r < edge {
            return Some(InjectedFault::LostResponse);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noisy(seed: u64) -> FaultConfig {
        FaultConfig {
            seed,
            p_server_error: 0.2,
            p_rate_limit: 0.2,
            p_hang: 0.1,
            p_lost_response: 0.2,
            ..FaultConfig::default()
        }
    }

    fn run(f: &mut Faults, n: usize) -> Vec<Option<InjectedFault>> {
        (0..n).map(|_| f.decide("POST", "/phone-number")).collect()
    }

    #[test]
    fn same_seed_same_sequence() {
        let a = run(&mut Faults::new(noisy(7)), 200);
        let b = run(&mut Faults::new(noisy(7)), 200);
        let c = run(&mut Faults::new(noisy(8)), 200);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.iter().any(Option::is_none));
        assert!(a.contains(&Some(InjectedFault::LostResponse)));
    }

    #[test]
    fn reads_are_spared_in_mutating_scope() {
        let mut f = Faults::new(FaultConfig {
            p_server_error: 1.0,
            ..FaultConfig::default()
        });
        assert_eq!(f.decide("GET", "/phone-number"), None);
        assert!(matches!(
            f.decide("DELETE", "/phone-number/x"),
            Some(InjectedFault::Status(502 | 503))
        ));
    }

    #[test]
    fn one_shot_rules_count_down() {
        let mut f = Faults::new(FaultConfig::default());
        f.add_rule(Some("post"), "/phone-number", OneShotAction::Status(503), 2);
        assert_eq!(f.decide("GET", "/phone-number"), None);
        assert_eq!(
            f.decide("POST", "/phone-number"),
            Some(InjectedFault::Status(503))
        );
        assert_eq!(
            f.decide("POST", "/phone-number"),
            Some(InjectedFault::Status(503))
        );
        assert_eq!(f.decide("POST", "/phone-number"), None);
    }
}
