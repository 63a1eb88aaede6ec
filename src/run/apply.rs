//! The apply protocol, in one place for one spec and for a run over many owners: spec digests of
//! saved plans, each owner's lease, one observation, replay and staleness checks, the deletion
//! gate, confirmation, the replay claim, the apply itself and the re-plan that proves it
//! converged. It returns a typed [`OwnerOutcome`] per owner; the binary turns them into words and
//! an exit code.
//!
//! The file is longer than the usual 600 lines on purpose: the protocol's steps and the
//! guarantees below are read together, and splitting them would hide the order they run in.
//!
//! # Guarantees
//! - Every owner is planned and applied under its own lease ([`Store::acquire_lock_with`], taken
//!   in [`lock_owner`] and nowhere else), and the plan that is applied is made under it. A wait
//!   for a lease is reported through [`ApplyHooks::lock_wait`] and ends at once when the run's
//!   interruption ([`ApplyRun::interrupted_by`]) completes.
//! - Every owner is planned with the run's identities, so that rows' tokens written by others
//!   are compared by decryption ([`pipeline::plan_from`]) in single-spec and fleet runs alike.
//! - A saved plan is claimed only once it is about to be carried out: after its staleness (by
//!   the `steps` digest of its changes), the deletion gate and the confirmation passed, and
//!   unless the run was stopped before applying. A refused plan can be retried.
//! - Owners are independent: one owner's failure, refusal or partial apply is its outcome and
//!   does not stop the others. Only a failed observation (Vapi or the database unreadable, or
//!   Twilio for the preflight) fails the whole run, before anything is applied.
//! - Over several owners, all appliers share one `parallelism` budget and one Vapi client (one
//!   `--max-rps` limit).
//! - With [`ApplyRun::with_twilio`], every plan passes the Twilio preflight before anything is
//!   applied (each distinct account read once for the run; an owner refused by Twilio fails
//!   like any refused number; a Twilio that cannot be read fails the run before any write), and
//!   Twilio's URLs of the numbers created or adopted are recorded afterwards, once per run.
//!
//! # Caveats
//! The lease of each owner is taken before the observation; with thousands of owners that is
//! thousands of lease rows renewed while the run lasts.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use futures::StreamExt;
use futures::future::{BoxFuture, FutureExt, Shared};
use uuid::Uuid;

use crate::Error;
use crate::apply::{Applier, ApplyOptions, ApplyReport, Progress};
use crate::pipeline;
use crate::plan::Plan;
use crate::safety::{DeleteThreshold, GateRefusal};
use crate::saved::SavedPlan;
use crate::secrets::Identities;
use crate::store::{LockHolder, LockWait, LockWaitEvent, OwnerLock, Store};
use crate::twilio::Preflight;
use crate::vapi::VapiClient;

use super::observe;
use super::specs::OwnerSpec;

/// Everything an apply run needs to know, resolved once from the arguments and environment.
#[derive(Debug, Clone)]
pub struct ApplySettings {
    /// Numbers in flight at once, over all owners.
    pub parallelism: usize,
    /// `--allow-deletes`: one owner's exact count, or over several owners the exact total of the
    /// owners whose deletion gate tripped.
    pub allow_deletes: Option<usize>,
    pub lock_timeout: Duration,
    /// Apply without asking ([`ApplyHooks::confirm`] is not called).
    pub auto_approve: bool,
    /// Set to stop starting new numbers (Ctrl-C, SIGTERM).
    pub stop: Arc<AtomicBool>,
    pub run_id: String,
    pub ci_run_id: Option<String>,
    pub commit_sha: Option<String>,
    pub threshold: DeleteThreshold,
}

/// Why an owner was not applied, on purpose (exit 3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The saved plan's spec was edited since the plan was made.
    SpecChanged { spec_path: String },
    /// The saved plan no longer describes what applying would do, for these reasons.
    Stale(Vec<String>),
    /// The saved plan was applied before.
    Replayed,
    /// One owner's deletion gate.
    Gate(GateRefusal),
    /// Over several owners: this owner's gate tripped, and `--allow-deletes` did not give the
    /// total of all tripped owners' implicit deletes.
    RunGate {
        count: usize,
        managed: usize,
        total: usize,
        given: Option<usize>,
    },
}

const NEW_PLAN_HINT: &str = "hint: run `vapictl plan --out FILE` again and review the new plan";

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::SpecChanged { spec_path } => write!(
                f,
                "the saved plan is stale: the spec `{spec_path}` changed since the plan was made\n{NEW_PLAN_HINT}"
            ),
            Refusal::Stale(reasons) => write!(
                f,
                "the saved plan is stale; nothing was applied:\n  {}\n{NEW_PLAN_HINT}",
                reasons.join("\n  ")
            ),
            Refusal::Replayed => f.write_str(
                "this saved plan was applied before; a plan can be applied once\nhint: run `vapictl plan --out FILE` for a new plan",
            ),
            Refusal::Gate(g) => write!(f, "{g}"),
            Refusal::RunGate {
                count,
                managed,
                total,
                given: Some(given),
            } => write!(
                f,
                "refusing to delete {count} of {managed} managed numbers whose entries disappeared from the spec: `--allow-deletes {given}` does not match the run, whose refused owners delete {total} in all\nhint: review the plan; confirm with `--allow-deletes {total}` only if all of them should go"
            ),
            Refusal::RunGate {
                count,
                managed,
                total,
                given: None,
            } => write!(
                f,
                "refusing to delete {count} of {managed} managed numbers whose entries disappeared from the spec\nhint: if that is intended, confirm the total over the run with `--allow-deletes {total}`; to delete on purpose, mark entries `absent: true` instead"
            ),
        }
    }
}

/// What happened to one owner.
#[derive(Debug)]
pub enum OwnerOutcome {
    /// Nothing to do.
    NoChanges(Plan),
    /// Applied, and a new plan is empty.
    Applied { plan: Plan, report: ApplyReport },
    /// Some change failed or was not started.
    Partial { plan: Plan, report: ApplyReport },
    /// Every change succeeded, but a new plan still has `remaining` changes.
    NotConverged {
        plan: Plan,
        report: ApplyReport,
        remaining: usize,
    },
    /// Applied, but the re-plan could not be made.
    ReplanFailed {
        plan: Plan,
        report: ApplyReport,
        error: Error,
    },
    /// Not applied on purpose; nothing was changed.
    Refused {
        plan: Option<Plan>,
        refusal: Refusal,
    },
    /// The user answered something other than `yes`; nothing was changed.
    Cancelled(Plan),
    /// Stopped (Ctrl-C, SIGTERM) after the confirmation and before anything started; nothing
    /// was changed, and a saved plan was not used up.
    Stopped(Plan),
    /// Could not be planned (a refused number, the lease not obtained); nothing was changed.
    Failed(Error),
}

/// How an outcome counts towards the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    Ok,
    Refused,
    Failed,
}

impl OwnerOutcome {
    pub fn verdict(&self) -> Verdict {
        match self {
            OwnerOutcome::NoChanges(_) | OwnerOutcome::Applied { .. } => Verdict::Ok,
            OwnerOutcome::Refused { .. } => Verdict::Refused,
            _ => Verdict::Failed,
        }
    }

    /// The plan that was made for the owner, if one was.
    pub fn plan(&self) -> Option<&Plan> {
        match self {
            OwnerOutcome::NoChanges(plan)
            | OwnerOutcome::Cancelled(plan)
            | OwnerOutcome::Stopped(plan)
            | OwnerOutcome::Applied { plan, .. }
            | OwnerOutcome::Partial { plan, .. }
            | OwnerOutcome::NotConverged { plan, .. }
            | OwnerOutcome::ReplanFailed { plan, .. } => Some(plan),
            OwnerOutcome::Refused { plan, .. } => plan.as_ref(),
            OwnerOutcome::Failed(_) => None,
        }
    }

    /// The apply report, when changes were carried out.
    pub fn report(&self) -> Option<&ApplyReport> {
        match self {
            OwnerOutcome::Applied { report, .. }
            | OwnerOutcome::Partial { report, .. }
            | OwnerOutcome::NotConverged { report, .. }
            | OwnerOutcome::ReplanFailed { report, .. } => Some(report),
            _ => None,
        }
    }
}

/// The exit verdict of a run: failed if any owner failed, else refused if any was, else ok.
pub fn run_verdict<'a>(outcomes: impl IntoIterator<Item = &'a OwnerOutcome>) -> Verdict {
    outcomes
        .into_iter()
        .map(OwnerOutcome::verdict)
        .max()
        .unwrap_or(Verdict::Ok)
}

/// What the binary does during a run: draw plans, ask, show progress. The library never prints.
pub trait ApplyHooks: Sync {
    /// The plans about to be applied (and the empty ones), before any change.
    ///
    /// # Errors
    /// Writing failed; the run stops before anything is changed.
    fn planned(&self, plans: &[(&OwnerSpec, &Plan)]) -> std::io::Result<()>;
    /// Asked once, when something passed the gates and `auto_approve` is off; `false` cancels.
    ///
    /// # Errors
    /// Reading the answer failed (treated as an error of the run).
    fn confirm(&self) -> std::io::Result<bool>;
    /// Receives the progress of one owner's apply.
    fn progress(&self, owner: &OwnerSpec, total: usize) -> Box<dyn Progress + '_>;
    /// Receives what happens while the run waits for `owner`'s lease (who holds it, how long
    /// the run has waited). Ignored unless implemented.
    fn lock_wait(&self, owner: &OwnerSpec, event: &LockWaitEvent) {
        let _ = (owner, event);
    }
}

/// A run's interruption, shared by the waits for every owner's lease.
type Interrupt = Shared<BoxFuture<'static, ()>>;

/// Takes `owner`'s lease for this run: the one place where an apply waits for another. `wait`
/// holds the timeout, the observer of the wait's events and the interruption
/// ([`Store::acquire_lock_with`]).
///
/// # Errors
/// [`crate::store::StoreError::LockHeld`] after the timeout, naming the holder;
/// [`crate::store::StoreError::LockWaitInterrupted`] when interrupted first.
pub async fn lock_owner(
    store: &Store,
    owner: Uuid,
    run_id: &str,
    wait: LockWait<'_>,
) -> Result<OwnerLock, Error> {
    Ok(store
        .acquire_lock_with(owner, &LockHolder::this_process(run_id), wait)
        .await?)
}

/// One apply run: built from the loaded specs (checking saved plans' spec digests, which needs
/// no connection), then [`execute`](ApplyRun::execute)d.
pub struct ApplyRun {
    settings: ApplySettings,
    /// `true` for a run over several specs (one observation, the run-wide gate, shared budget).
    fleet: bool,
    owners: Vec<OwnerSpec>,
    saved: BTreeMap<Uuid, SavedPlan>,
    /// Decided before any IO (a saved plan whose spec changed).
    early: BTreeMap<Uuid, OwnerOutcome>,
    /// The identities the specs were decrypted with, for rows' tokens (none: keyless).
    identities: Identities,
    /// Ends lease waits early (the binary's signal).
    interrupt: Option<Interrupt>,
    /// The Twilio preflight of every plan, and the record of Twilio's URLs after an apply.
    twilio: Option<Preflight>,
}

impl ApplyRun {
    /// `saved` holds the saved plan of each owner, when applying one.
    pub fn new(
        settings: ApplySettings,
        fleet: bool,
        owners: Vec<OwnerSpec>,
        saved: BTreeMap<Uuid, SavedPlan>,
    ) -> ApplyRun {
        let mut early = BTreeMap::new();
        for o in &owners {
            if let Some(s) = saved.get(&o.desired.owner)
                && s.spec_digest != o.desired.spec_digest
            {
                early.insert(
                    o.desired.owner,
                    OwnerOutcome::Refused {
                        plan: None,
                        refusal: Refusal::SpecChanged {
                            spec_path: s.spec_path.clone(),
                        },
                    },
                );
            }
        }
        ApplyRun {
            settings,
            fleet,
            owners,
            saved,
            early,
            identities: Identities::none(),
            interrupt: None,
            twilio: None,
        }
    }

    /// The identities to plan with: rows' tokens without a digest are then compared by
    /// decryption ([`pipeline::recognise_row_tokens`]) for every owner.
    #[must_use]
    pub fn with_identities(mut self, identities: Identities) -> ApplyRun {
        self.identities = identities;
        self
    }

    /// Checks every plan against Twilio before anything is applied (a refusal fails the owner
    /// like any refused number), and records Twilio's URLs of the numbers created or adopted.
    #[must_use]
    pub fn with_twilio(mut self, twilio: Preflight) -> ApplyRun {
        self.twilio = Some(twilio);
        self
    }

    /// Waits for owners' leases give up as soon as `interrupt` completes (nothing is changed
    /// yet then): the owners not locked fail with
    /// [`crate::store::StoreError::LockWaitInterrupted`].
    #[must_use]
    pub fn interrupted_by(
        mut self,
        interrupt: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> ApplyRun {
        self.interrupt = Some(interrupt.boxed().shared());
        self
    }

    /// Whether anything is left that needs the database and Vapi.
    pub fn needs_connection(&self) -> bool {
        self.owners.len() > self.early.len()
    }

    /// The outcomes decided without a connection, when [`needs_connection`] is false.
    ///
    /// [`needs_connection`]: ApplyRun::needs_connection
    pub fn without_connection(mut self) -> Vec<(OwnerSpec, OwnerOutcome)> {
        let owners = std::mem::take(&mut self.owners);
        owners
            .into_iter()
            .filter_map(|o| {
                let out = self.early.remove(&o.desired.owner)?;
                Some((o, out))
            })
            .collect()
    }

    /// Runs the protocol (see the module docs). Outcomes come back in the order of the owners.
    ///
    /// # Errors
    /// Only a failed observation (of Vapi, the database or, for the preflight, Twilio), before
    /// anything was applied; every
    /// owner's own problems are its [`OwnerOutcome`]. Writing through `hooks` failing is an
    /// error too.
    pub async fn execute(
        mut self,
        store: &Store,
        vapi: &VapiClient,
        hooks: &dyn ApplyHooks,
    ) -> Result<Vec<(OwnerSpec, OwnerOutcome)>, Error> {
        // Each owner's lease, a few at a time (the pool is small).
        let pending: Vec<Uuid> = self
            .owners
            .iter()
            .map(|o| o.desired.owner)
            .filter(|o| !self.early.contains_key(o))
            .collect();
        let timeout = self.settings.lock_timeout;
        let run_id = self.settings.run_id.clone();
        let owners = &self.owners;
        let interrupt = self.interrupt.clone();
        let taken: Vec<(Uuid, Result<OwnerLock, Error>)> = futures::stream::iter(pending)
            .map(|owner| {
                let run_id = run_id.clone();
                let spec = owners
                    .iter()
                    .find(|o| o.desired.owner == owner)
                    .expect("pending owners are the run's");
                let mut wait =
                    LockWait::new(timeout).reporting(move |event| hooks.lock_wait(spec, event));
                if let Some(interrupt) = interrupt.clone() {
                    wait = wait.interrupted_by(interrupt);
                }
                async move { (owner, lock_owner(store, owner, &run_id, wait).await) }
            })
            .buffer_unordered(8)
            .collect()
            .await;
        let mut locks: BTreeMap<Uuid, OwnerLock> = BTreeMap::new();
        for (owner, lock) in taken {
            match lock {
                Ok(l) => {
                    locks.insert(owner, l);
                }
                Err(e) => {
                    self.early.insert(owner, OwnerOutcome::Failed(e));
                }
            }
        }
        let result = self.under_locks(store, vapi, hooks, &locks).await;
        for (_, lock) in locks {
            if let Err(e) = lock.release().await {
                tracing::warn!(error = %e, "could not release the owner lock; it expires by itself");
            }
        }
        let mut outcomes = result?;
        Ok(self
            .owners
            .into_iter()
            .filter_map(|o| {
                let out = self
                    .early
                    .remove(&o.desired.owner)
                    .or_else(|| outcomes.remove(&o.desired.owner))?;
                Some((o, out))
            })
            .collect())
    }

    /// Plans every owner in `owners` from one observation (one owner: exactly the single-spec
    /// pipeline). The outer error is the observation's.
    async fn plan_owners(
        &self,
        store: &Store,
        vapi: &VapiClient,
        owners: &[&OwnerSpec],
    ) -> Result<BTreeMap<Uuid, Result<Plan, Error>>, Error> {
        let mut out = BTreeMap::new();
        if owners.is_empty() {
            return Ok(out);
        }
        if !self.fleet {
            for o in owners {
                let plan = match pipeline::plan_checked(
                    store,
                    vapi,
                    self.twilio.as_ref(),
                    &o.desired,
                    &self.identities,
                )
                .await
                {
                    Ok(p) => Ok(p),
                    Err(e @ Error::Refused(_)) => Err(e),
                    Err(e) => return Err(e),
                };
                out.insert(o.desired.owner, plan);
            }
            return Ok(out);
        }
        let observation = observe::observe(store, vapi).await?;
        let mut plans: Vec<(&OwnerSpec, Result<Plan, Error>)> = owners
            .iter()
            .map(|o| {
                (
                    *o,
                    observation
                        .plan(&o.desired, &self.identities)
                        .map_err(Error::from),
                )
            })
            .collect();
        // One preflight for the run: each distinct Twilio account is read once.
        if let Some(twilio) = &self.twilio {
            let mut items: Vec<(&crate::state::DesiredState, &mut Result<Plan, Error>)> =
                plans.iter_mut().map(|(o, p)| (&o.desired, p)).collect();
            twilio.check(&mut items).await?;
        }
        for (o, plan) in plans {
            out.insert(o.desired.owner, plan);
        }
        Ok(out)
    }

    async fn under_locks(
        &self,
        store: &Store,
        vapi: &VapiClient,
        hooks: &dyn ApplyHooks,
        locks: &BTreeMap<Uuid, OwnerLock>,
    ) -> Result<BTreeMap<Uuid, OwnerOutcome>, Error> {
        let mut outcomes: BTreeMap<Uuid, OwnerOutcome> = BTreeMap::new();
        let locked: Vec<&OwnerSpec> = self
            .owners
            .iter()
            .filter(|o| locks.contains_key(&o.desired.owner))
            .collect();
        let mut planned: Vec<(&OwnerSpec, Plan)> = Vec::new();
        for (owner, plan) in self.plan_owners(store, vapi, &locked).await? {
            let spec = locked
                .iter()
                .find(|o| o.desired.owner == owner)
                .expect("planned owners are locked owners");
            match plan {
                Err(e) => {
                    outcomes.insert(owner, OwnerOutcome::Failed(e));
                }
                Ok(plan) => match self.saved.get(&owner) {
                    Some(saved) if store.plan_claimed(&saved.plan_id).await? => {
                        outcomes.insert(
                            owner,
                            OwnerOutcome::Refused {
                                plan: Some(plan),
                                refusal: Refusal::Replayed,
                            },
                        );
                    }
                    Some(saved) if !saved.staleness(&plan).is_empty() => {
                        let reasons = saved.staleness(&plan);
                        outcomes.insert(
                            owner,
                            OwnerOutcome::Refused {
                                plan: Some(plan),
                                refusal: Refusal::Stale(reasons),
                            },
                        );
                    }
                    _ => planned.push((spec, plan)),
                },
            }
        }
        // Keep the order of the specs.
        planned.sort_by_key(|(o, _)| {
            self.owners
                .iter()
                .position(|x| x.desired.owner == o.desired.owner)
        });
        {
            let shown: Vec<(&OwnerSpec, &Plan)> = planned.iter().map(|(o, p)| (*o, p)).collect();
            hooks.planned(&shown).map_err(Error::Output)?;
        }

        // The deletion gate, per owner; over several owners `--allow-deletes` is the total of
        // the owners whose gate tripped.
        let threshold = self.settings.threshold;
        let allow = self.settings.allow_deletes;
        let tripped_total: usize = planned
            .iter()
            .filter(|(_, p)| threshold.check(p, None).is_err())
            .map(|(_, p)| p.implicit_deletes())
            .sum();
        let mut to_apply: Vec<(&OwnerSpec, Plan)> = Vec::new();
        for (spec, plan) in planned {
            let owner = spec.desired.owner;
            if plan.is_empty() {
                if let Some(saved) = self.saved.get(&owner)
                    && !store
                        .claim_plan(&saved.plan_id, owner, &self.settings.run_id)
                        .await?
                {
                    outcomes.insert(
                        owner,
                        OwnerOutcome::Refused {
                            plan: Some(plan),
                            refusal: Refusal::Replayed,
                        },
                    );
                    continue;
                }
                outcomes.insert(owner, OwnerOutcome::NoChanges(plan));
                continue;
            }
            let gate = if self.fleet {
                match threshold.check(&plan, None) {
                    Err(_) if allow != Some(tripped_total) => Err(Refusal::RunGate {
                        count: plan.implicit_deletes(),
                        managed: plan.managed_count,
                        total: tripped_total,
                        given: allow,
                    }),
                    _ => Ok(()),
                }
            } else {
                threshold.check(&plan, allow).map_err(Refusal::Gate)
            };
            match gate {
                Err(refusal) => {
                    outcomes.insert(
                        owner,
                        OwnerOutcome::Refused {
                            plan: Some(plan),
                            refusal,
                        },
                    );
                }
                Ok(()) => to_apply.push((spec, plan)),
            }
        }
        if to_apply.is_empty() {
            return Ok(outcomes);
        }
        let confirmed = self.settings.auto_approve || hooks.confirm().map_err(Error::Output)?;
        if !confirmed {
            for (spec, plan) in to_apply {
                outcomes.insert(spec.desired.owner, OwnerOutcome::Cancelled(plan));
            }
            return Ok(outcomes);
        }
        // Stopped before anything started: nothing is changed and no saved plan is used up.
        if self.settings.stop.load(std::sync::atomic::Ordering::SeqCst) {
            for (spec, plan) in to_apply {
                outcomes.insert(spec.desired.owner, OwnerOutcome::Stopped(plan));
            }
            return Ok(outcomes);
        }
        // Claimed only now that it is carried out.
        let mut claimed = Vec::new();
        for (spec, plan) in to_apply {
            let owner = spec.desired.owner;
            if let Some(saved) = self.saved.get(&owner)
                && !store
                    .claim_plan(&saved.plan_id, owner, &self.settings.run_id)
                    .await?
            {
                outcomes.insert(
                    owner,
                    OwnerOutcome::Refused {
                        plan: Some(plan),
                        refusal: Refusal::Replayed,
                    },
                );
                continue;
            }
            claimed.push((spec, plan));
        }

        let budget = self.fleet.then(|| {
            Arc::new(tokio::sync::Semaphore::new(
                self.settings.parallelism.max(1),
            ))
        });
        let reports = futures::future::join_all(claimed.iter().map(|(spec, plan)| {
            let options = ApplyOptions {
                parallelism: self.settings.parallelism,
                stop: self.settings.stop.clone(),
                run_id: self.settings.run_id.clone(),
                ci_run_id: self.settings.ci_run_id.clone(),
                commit_sha: self.settings.commit_sha.clone(),
                budget: budget.clone(),
            };
            let owner = spec.desired.owner;
            let lock = locks.get(&owner);
            async move {
                let applier = Applier {
                    vapi,
                    store,
                    owner,
                    options,
                    lock,
                };
                let progress = hooks.progress(spec, plan.changes.len());
                applier.apply(plan, progress.as_ref()).await
            }
        }))
        .await;

        // What Twilio shows now for the numbers created or adopted, for `drift` (best effort:
        // the apply stands whatever happens here).
        if let Some(twilio) = &self.twilio {
            let applied: Vec<_> = claimed
                .iter()
                .zip(&reports)
                .map(|((spec, _), report)| (&spec.desired, report))
                .collect();
            if let Err(e) = twilio.record(store, &applied).await {
                tracing::warn!(error = %e, "could not record the numbers' Twilio URLs; `drift` will not see Twilio-side changes to them");
            }
        }

        // Prove convergence: a fresh plan of every owner applied completely must be empty.
        let mut complete = Vec::new();
        for ((spec, plan), report) in claimed.into_iter().zip(reports) {
            if report.is_complete() {
                complete.push((spec, plan, report));
            } else {
                outcomes.insert(spec.desired.owner, OwnerOutcome::Partial { plan, report });
            }
        }
        let specs: Vec<&OwnerSpec> = complete.iter().map(|(s, _, _)| *s).collect();
        let again = self.plan_owners(store, vapi, &specs).await;
        let mut again = match again {
            Ok(a) => a,
            Err(e) => {
                // One error for all: the observation failed. Every owner carries its text.
                let text = e.to_string();
                let mut first = Some(e);
                for (spec, plan, report) in complete {
                    let error = first.take().unwrap_or_else(|| {
                        Error::config(text.clone(), "run `vapictl plan` to see what is left")
                    });
                    outcomes.insert(
                        spec.desired.owner,
                        OwnerOutcome::ReplanFailed {
                            plan,
                            report,
                            error,
                        },
                    );
                }
                return Ok(outcomes);
            }
        };
        for (spec, plan, report) in complete {
            let owner = spec.desired.owner;
            let outcome = match again.remove(&owner) {
                Some(Ok(p)) if p.is_empty() => OwnerOutcome::Applied { plan, report },
                Some(Ok(p)) => OwnerOutcome::NotConverged {
                    plan,
                    report,
                    remaining: p.changes.len(),
                },
                Some(Err(error)) => OwnerOutcome::ReplanFailed {
                    plan,
                    report,
                    error,
                },
                None => OwnerOutcome::NotConverged {
                    plan,
                    report,
                    remaining: 0,
                },
            };
            outcomes.insert(owner, outcome);
        }
        Ok(outcomes)
    }
}
