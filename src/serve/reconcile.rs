//! One reconcile of the controller: load the specs, then apply the fleet through the library's
//! apply protocol (or, with `drift_only`, plan and report), and count what happened for the
//! metrics and the one log line.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::*;

impl Loop {
    /// Loads the specs and runs one fleet reconcile (or plan, with `drift_only`).
    pub(super) async fn reconcile(
        &mut self,
        store: &Store,
        stop: Arc<AtomicBool>,
        shutdown: Signal,
    ) -> Summary {
        let mut s = Summary::default();
        let identities = match (self.settings.identities)() {
            Ok(ids) => ids,
            Err(e) => {
                s.error = Some(e.to_string());
                return s;
            }
        };
        let loaded = run::specs::expand(&self.settings.specs)
            .and_then(|files| run::specs::load(&files, &identities, SecretMode::Required));
        let loaded = match loaded {
            Ok(l) => l,
            Err(e) => {
                s.error = Some(e.to_string());
                return s;
            }
        };
        let interval = self.settings.interval;
        let now = Instant::now();
        for f in &loaded.failed {
            tracing::warn!(spec = %f.spec.display(), error = %f.error, "spec skipped: it cannot be loaded");
        }
        s.owners = loaded.owners.len() + loaded.failed.len();
        s.failed = loaded.failed.len();
        let (due, waiting): (Vec<OwnerSpec>, Vec<OwnerSpec>) = loaded
            .owners
            .into_iter()
            .partition(|o| self.backoff.is_due(o.desired.owner, now, interval));
        s.backing_off = waiting.len();
        s.failed += waiting.len();
        if due.is_empty() {
            // Nothing to read Vapi and the database for (every owner waits out a backoff, or no
            // spec loaded): no contact, so readiness stays as the last one left it.
            return s;
        }
        let loaded = run::LoadedRun {
            owners: due,
            failed: Vec::new(),
        };
        if self.settings.drift_only {
            self.drift(store, loaded, identities, &mut s).await;
        } else {
            self.apply(store, loaded, identities, stop, shutdown, &mut s)
                .await;
        }
        s
    }

    async fn drift(
        &mut self,
        store: &Store,
        loaded: run::LoadedRun,
        identities: Identities,
        s: &mut Summary,
    ) {
        let planned = match run::plan_run(store, &self.vapi, loaded, &identities).await {
            Ok(p) => p,
            Err(e) => {
                s.error = Some(e.to_string());
                s.unreached = true;
                return;
            }
        };
        s.reached = true;
        let now = Instant::now();
        let threshold = DeleteThreshold::default();
        for (o, plan) in &planned.planned {
            let owner = o.desired.owner;
            match plan {
                Ok(plan) => {
                    count_plan(plan, s);
                    self.backoff.succeeded(owner);
                    if let Err(refusal) = threshold.check(plan, None) {
                        s.refused += 1;
                        tracing::warn!(spec = %o.path.display(), %owner, refusal = %refusal, "apply would refuse this owner's plan");
                    } else {
                        s.ok += 1;
                    }
                    if !plan.is_empty() {
                        tracing::info!(spec = %o.path.display(), %owner, changes = plan.changes.len(), "drift found (--drift-only: not applied)");
                    }
                }
                Err(e) => {
                    s.failed += 1;
                    let wait = self.backoff.failed(owner, now, self.settings.interval);
                    tracing::warn!(spec = %o.path.display(), %owner, error = %e, retry_in_s = wait.as_secs(), "owner failed");
                }
            }
        }
    }

    async fn apply(
        &mut self,
        store: &Store,
        loaded: run::LoadedRun,
        identities: Identities,
        stop: Arc<AtomicBool>,
        shutdown: Signal,
        s: &mut Summary,
    ) {
        let settings = ApplySettings {
            parallelism: self.settings.parallelism.max(1),
            allow_deletes: None,
            // Long enough for a dead leader's owner leases to expire.
            lock_timeout: self.settings.lease_ttl * 2,
            auto_approve: true,
            stop,
            run_id: Uuid::new_v4().to_string(),
            ci_run_id: None,
            commit_sha: None,
            threshold: DeleteThreshold::default(),
        };
        let run = ApplyRun::new(settings, true, loaded.owners, BTreeMap::new())
            .with_identities(identities)
            .with_twilio(self.settings.twilio.clone())
            .interrupted_by(shutdown);
        let outcomes = match run.execute(store, &self.vapi, &ServeHooks).await {
            Ok(o) => o,
            Err(e) => {
                s.error = Some(e.to_string());
                s.unreached = true;
                return;
            }
        };
        s.reached = true;
        let now = Instant::now();
        for (o, outcome) in &outcomes {
            let owner = o.desired.owner;
            if let Some(plan) = outcome.plan() {
                count_plan(plan, s);
            }
            if let Some(report) = outcome.report() {
                for done in report.outcomes.iter().filter(|x| x.result.is_ok()) {
                    self.metrics.applied(done.action);
                    *s.applied.entry(done.action.name()).or_default() += 1;
                }
            }
            match outcome.verdict() {
                Verdict::Ok => {
                    s.ok += 1;
                    self.backoff.succeeded(owner);
                }
                Verdict::Refused => {
                    s.refused += 1;
                    self.backoff.succeeded(owner);
                    if let OwnerOutcome::Refused { refusal, .. } = outcome {
                        tracing::warn!(spec = %o.path.display(), %owner, refusal = %refusal, "owner refused by a safety gate; left as it is");
                    }
                }
                Verdict::Failed => {
                    s.failed += 1;
                    if matches!(outcome, OwnerOutcome::Stopped(_)) {
                        continue;
                    }
                    let wait = self.backoff.failed(owner, now, self.settings.interval);
                    tracing::warn!(spec = %o.path.display(), %owner, error = %describe(outcome), retry_in_s = wait.as_secs(), "owner failed");
                }
            }
        }
    }
}

/// Adds a plan's findings (by cause) and managed numbers to the summary.
fn count_plan(plan: &Plan, s: &mut Summary) {
    s.managed += plan.managed_count;
    for c in &plan.changes {
        *s.findings.entry(c.cause).or_default() += 1;
    }
}

/// One line on why an owner failed.
fn describe(outcome: &OwnerOutcome) -> String {
    match outcome {
        OwnerOutcome::Failed(e) => e.to_string(),
        OwnerOutcome::ReplanFailed { error, .. } => format!("re-reading after apply: {error}"),
        OwnerOutcome::Partial { report, .. } => format!(
            "{} change(s) failed, {} not started",
            report.failed(),
            report.not_started.len()
        ),
        OwnerOutcome::NotConverged { remaining, .. } => {
            format!("applied, but {remaining} change(s) remain")
        }
        _ => "not applied".to_owned(),
    }
}

/// The controller's side of an apply: no prompt, logs instead of output.
struct ServeHooks;

impl ApplyHooks for ServeHooks {
    fn planned(&self, _plans: &[(&OwnerSpec, &Plan)]) -> std::io::Result<()> {
        Ok(())
    }

    fn confirm(&self) -> std::io::Result<bool> {
        // Never asked: the controller applies with `auto_approve`; the gates still hold.
        Ok(true)
    }

    fn progress(&self, owner: &OwnerSpec, _total: usize) -> Box<dyn Progress + '_> {
        Box::new(LogProgress {
            owner: owner.desired.owner,
        })
    }

    fn lock_wait(&self, owner: &OwnerSpec, event: &LockWaitEvent) {
        tracing::info!(owner = %owner.desired.owner, "{event}");
    }
}

/// One log line per number (masked), at debug; failures at warn.
struct LogProgress {
    owner: Uuid,
}

impl Progress for LogProgress {
    fn started(&self, change: &Change) {
        tracing::debug!(owner = %self.owner, number = %mask_number(&change.number), action = change.action.name(), "applying");
    }

    fn finished(&self, outcome: &Outcome, _done: usize, _total: usize) {
        if let Err(e) = &outcome.result {
            tracing::warn!(owner = %self.owner, number = %mask_number(&outcome.number), action = outcome.action.name(), error = %e, "change failed");
        }
    }
}
