//! The controller's Prometheus metrics (names are a contract, issue 14), encoded as OpenMetrics
//! text. Labels are bounded sets — results, actions, causes, states, HTTP methods and statuses —
//! never a number, an owner or a secret.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::plan::{Action, Cause};
use crate::vapi::ResponseObserver;

/// The content type of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How a reconcile ended, as `vapictl_reconcile_total{result}` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReconcileResult {
    /// Every owner is as its spec says (or, with `--drift-only`, was reported).
    Success,
    /// The observation failed, or an owner failed.
    Error,
    /// An owner was refused by a safety gate (and none failed).
    Refused,
}

impl ReconcileResult {
    pub fn label(self) -> &'static str {
        match self {
            ReconcileResult::Success => "success",
            ReconcileResult::Error => "error",
            ReconcileResult::Refused => "refused",
        }
    }
}

/// What one owner's state is after a reconcile, as `vapictl_owners{state}` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerState {
    Ok,
    Failed,
    Refused,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabel {
    action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabel {
    cause: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    status: String,
}

/// Every metric of the controller, in one registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ResultLabel, Counter>,
    duration: Histogram,
    applied: Family<ActionLabel, Counter>,
    findings: Family<CauseLabel, Gauge>,
    managed: Gauge,
    owners: Family<StateLabel, Gauge>,
    requests: Family<RequestLabels, Counter>,
    leader: Gauge,
    last_success: Gauge<f64, AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let m = Metrics {
            registry: Registry::default(),
            reconciles: Family::default(),
            // 50 ms … about 7 minutes.
            duration: Histogram::new(exponential_buckets(0.05, 2.0, 14)),
            applied: Family::default(),
            findings: Family::default(),
            managed: Gauge::default(),
            owners: Family::default(),
            requests: Family::default(),
            leader: Gauge::default(),
            last_success: Gauge::default(),
        };
        // Every bounded label value exists from the start, at 0: a dashboard's rate() and an
        // alert on `result="error"` need the series before the first error.
        for r in [
            ReconcileResult::Success,
            ReconcileResult::Error,
            ReconcileResult::Refused,
        ] {
            let _ = m
                .reconciles
                .get_or_create(&ResultLabel { result: r.label() });
        }
        for a in Action::ALL {
            let _ = m.applied.get_or_create(&ActionLabel { action: a.name() });
        }
        for c in Cause::ALL {
            let _ = m.findings.get_or_create(&CauseLabel { cause: c.name() });
        }
        for s in ["ok", "failed", "refused"] {
            let _ = m.owners.get_or_create(&StateLabel { state: s });
        }
        let mut m = m;
        let r = &mut m.registry;
        r.register(
            "vapictl_reconcile",
            "Reconciles, by result: success, error (the observation or an owner failed), refused (a safety gate)",
            m.reconciles.clone(),
        );
        r.register_with_unit(
            "vapictl_reconcile_duration",
            "How long one reconcile took",
            Unit::Seconds,
            m.duration.clone(),
        );
        r.register(
            "vapictl_changes_applied",
            "Changes applied successfully, by action",
            m.applied.clone(),
        );
        r.register(
            "vapictl_drift_findings",
            "Differences found by the last reconcile before applying, by cause",
            m.findings.clone(),
        );
        r.register(
            "vapictl_managed_numbers",
            "Numbers the specs manage, as of the last reconcile",
            m.managed.clone(),
        );
        r.register(
            "vapictl_owners",
            "Owners by state after the last reconcile: ok, failed (including those waiting out a backoff), refused",
            m.owners.clone(),
        );
        r.register(
            "vapictl_vapi_requests",
            "HTTP requests to Vapi, by method and status (`error`: no answer)",
            m.requests.clone(),
        );
        r.register(
            "vapictl_leader",
            "1 while this replica holds the leader lease, else 0",
            m.leader.clone(),
        );
        r.register_with_unit(
            "vapictl_last_success_timestamp",
            "Unix time at which the last successful reconcile ended",
            Unit::Seconds,
            m.last_success.clone(),
        );
        m
    }

    /// The registry as OpenMetrics text (ends with `# EOF`).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// An observer for [`crate::vapi::VapiConfig::on_response`] that counts requests.
    pub fn vapi_observer(self: &std::sync::Arc<Self>) -> ResponseObserver {
        let me = self.clone();
        std::sync::Arc::new(move |method: &str, status: Option<u16>| {
            me.requests
                .get_or_create(&RequestLabels {
                    method: method.to_owned(),
                    status: status.map_or_else(|| "error".to_owned(), |s| s.to_string()),
                })
                .inc();
        })
    }

    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    pub fn reconciled(&self, result: ReconcileResult, seconds: f64) {
        self.reconciles
            .get_or_create(&ResultLabel {
                result: result.label(),
            })
            .inc();
        self.duration.observe(seconds);
        if result == ReconcileResult::Success {
            let now = chrono::Utc::now();
            self.last_success
                .set(now.timestamp() as f64 + f64::from(now.timestamp_subsec_millis()) / 1000.0);
        }
    }

    pub fn applied(&self, action: Action) {
        self.applied
            .get_or_create(&ActionLabel {
                action: action.name(),
            })
            .inc();
    }

    /// The last reconcile's findings by cause (every cause set, absent ones to 0).
    pub fn set_findings(&self, by_cause: &std::collections::BTreeMap<Cause, usize>) {
        for c in Cause::ALL {
            self.findings
                .get_or_create(&CauseLabel { cause: c.name() })
                .set(gauge(by_cause.get(&c).copied().unwrap_or(0)));
        }
    }

    pub fn set_managed(&self, n: usize) {
        self.managed.set(gauge(n));
    }

    pub fn set_owners(&self, ok: usize, failed: usize, refused: usize) {
        for (state, n) in [("ok", ok), ("failed", failed), ("refused", refused)] {
            self.owners
                .get_or_create(&StateLabel { state })
                .set(gauge(n));
        }
    }
}

fn gauge(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_contract_name_is_exposed_from_the_start() {
        // (`vapictl_vapi_requests_total` appears with its first request: its labels are open.)
        let text = Metrics::new().encode();
        for name in [
            "vapictl_reconcile_total{result=\"success\"} 0",
            "vapictl_reconcile_total{result=\"error\"} 0",
            "vapictl_reconcile_total{result=\"refused\"} 0",
            "vapictl_reconcile_duration_seconds_count 0",
            "vapictl_changes_applied_total{action=\"create\"} 0",
            "vapictl_drift_findings{cause=\"vapi_edited_out_of_band\"} 0",
            "vapictl_managed_numbers 0",
            "vapictl_owners{state=\"failed\"} 0",
            "vapictl_leader 0",
            "vapictl_last_success_timestamp_seconds 0",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn vapi_requests_are_counted_by_method_and_status() {
        let m = std::sync::Arc::new(Metrics::new());
        let observe = m.vapi_observer();
        observe("GET", Some(200));
        observe("GET", Some(200));
        observe("POST", None);
        let text = m.encode();
        assert!(
            text.contains("vapictl_vapi_requests_total{method=\"GET\",status=\"200\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("vapictl_vapi_requests_total{method=\"POST\",status=\"error\"} 1"),
            "{text}"
        );
    }
}
