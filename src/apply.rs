//! The applier: carries out a [`Plan`] against Vapi and the database, number by number.
//!
//! # Guarantees
//! - Per number, Vapi is changed first and the row second, each row change in its own
//!   transaction. A crash between the two leaves a number in Vapi that no row records; the next
//!   plan adopts it by number (never a second create).
//! - A create whose outcome is unknown (timeout, dropped connection, 5xx) is never re-sent
//!   blindly: the number is looked up in Vapi first and adopted when it exists.
//! - One number's failure is reported and does not stop the others.
//! - Deletes run before everything else; at most `parallelism` numbers are in flight at once.
//! - After a stop is requested, no new number is started; those in flight finish.
//!
//! # Caveats
//! - Only the owner's rows are written: the store refuses any other row.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use uuid::Uuid;

use crate::plan::{Action, Change, Plan, RowStep, VapiCreate, VapiStep};
use crate::secrets::{SecretValue, token_digest};
use crate::state::{EncryptedToken, ObservedNumber, RowWrite, mask_number};
use crate::store::{ChangeRecord, OwnerLock, Store};
use crate::vapi::{VapiClient, VapiError};

/// How many times a create is attempted when each attempt's outcome is unknown.
const CREATE_ATTEMPTS: u32 = 3;

/// Settings of one apply run.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Numbers in flight at once.
    pub parallelism: usize,
    /// Set to stop starting new numbers (Ctrl-C).
    pub stop: Arc<AtomicBool>,
    /// This run's id, recorded in the audit trail.
    pub run_id: String,
    /// CI metadata for the audit trail.
    pub ci_run_id: Option<String>,
    pub commit_sha: Option<String>,
    /// Shared by the appliers of a run over several owners, so that all of them together keep
    /// to one `--parallelism`; `None` for a single owner.
    pub budget: Option<Arc<tokio::sync::Semaphore>>,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            parallelism: 8,
            stop: Arc::new(AtomicBool::new(false)),
            run_id: Uuid::new_v4().to_string(),
            ci_run_id: None,
            commit_sha: None,
            budget: None,
        }
    }
}

/// What happened to one number.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub number: String,
    pub action: Action,
    pub result: Result<(), String>,
}

/// The result of a run.
#[derive(Debug, Clone, Default)]
pub struct ApplyReport {
    pub outcomes: Vec<Outcome>,
    /// Changes not started because a stop was requested.
    pub not_started: Vec<String>,
}

impl ApplyReport {
    pub fn failed(&self) -> usize {
        self.outcomes.iter().filter(|o| o.result.is_err()).count()
    }

    pub fn succeeded(&self) -> usize {
        self.outcomes.iter().filter(|o| o.result.is_ok()).count()
    }

    pub fn is_complete(&self) -> bool {
        self.failed() == 0 && self.not_started.is_empty()
    }
}

/// Receives progress events (the binary draws them; the library never prints).
pub trait Progress: Send + Sync {
    fn started(&self, _change: &Change) {}
    fn finished(&self, _outcome: &Outcome, _done: usize, _total: usize) {}
}

/// A [`Progress`] that ignores everything.
pub struct NoProgress;
impl Progress for NoProgress {}

/// Executes plans.
pub struct Applier<'a> {
    pub vapi: &'a VapiClient,
    pub store: &'a Store,
    pub owner: Uuid,
    pub options: ApplyOptions,
    /// The owner's lock, when held: no number is started once it is lost.
    pub lock: Option<&'a OwnerLock>,
}

impl Applier<'_> {
    /// Carries out every change of `plan`.
    ///
    /// # Errors
    /// None at this level: each number's failure is in its [`Outcome`].
    pub async fn apply(&self, plan: &Plan, progress: &dyn Progress) -> ApplyReport {
        let total = plan.changes.len();
        let (deletes, rest): (Vec<&Change>, Vec<&Change>) =
            plan.changes.iter().partition(|c| c.action.is_destructive());
        let mut report = ApplyReport::default();
        let done = std::sync::atomic::AtomicUsize::new(0);
        for phase in [deletes, rest] {
            let outcomes: Vec<Option<Outcome>> = futures::stream::iter(phase)
                .map(|c| async {
                    let _slot = match &self.options.budget {
                        Some(budget) => budget.clone().acquire_owned().await.ok(),
                        None => None,
                    };
                    if self.options.stop.load(Ordering::SeqCst) {
                        return None;
                    }
                    progress.started(c);
                    let mut vapi_id = None;
                    let result = match self.lock.map(OwnerLock::ensure_held) {
                        Some(Err(e)) => Err(ApplyError::Store(e)),
                        _ => self.apply_one(c, &mut vapi_id).await,
                    };
                    let outcome = Outcome {
                        number: c.number.clone(),
                        action: c.action,
                        result: result.map_err(|e| e.to_string()),
                    };
                    // `info`: the report already shows the failure; the log (`-v`, JSON) keeps it.
                    if let Err(error) = &outcome.result {
                        tracing::info!(
                            number = %mask_number(&c.number),
                            action = c.action.label(),
                            %error,
                            "change failed"
                        );
                    }
                    self.audit(c, &outcome, vapi_id).await;
                    let n = done.fetch_add(1, Ordering::SeqCst) + 1;
                    progress.finished(&outcome, n, total);
                    Some(outcome)
                })
                .buffer_unordered(self.options.parallelism.max(1))
                .collect()
                .await;
            report.outcomes.extend(outcomes.into_iter().flatten());
        }
        let started: std::collections::BTreeSet<&str> =
            report.outcomes.iter().map(|o| o.number.as_str()).collect();
        report.not_started = plan
            .changes
            .iter()
            .filter(|c| !started.contains(c.number.as_str()))
            .map(|c| c.number.clone())
            .collect();
        report
            .outcomes
            .sort_by(|a, b| (a.action, &a.number).cmp(&(b.action, &b.number)));
        report
    }

    /// Carries out one change; `vapi_id` receives the id of the number Vapi answered with as
    /// soon as it is known (a new number's id, even when the row write then fails).
    async fn apply_one(&self, c: &Change, vapi_id: &mut Option<String>) -> Result<(), ApplyError> {
        if !matches!(c.vapi, VapiStep::None) {
            self.probe_row(c).await?;
        }
        let vapi_result: Option<ObservedNumber> = match &c.vapi {
            VapiStep::None => None,
            VapiStep::Create(create) => Some(self.create(create).await?),
            VapiStep::Update { id, patch } => {
                let token = patch.token.as_ref().map(plaintext).transpose()?;
                if patch
                    .server
                    .as_ref()
                    .is_some_and(|s| s.as_ref().is_some_and(|s| s.needs_key()))
                {
                    return Err(ApplyError::NeedsKey);
                }
                Some(
                    self.vapi
                        .update_phone_number(id, &c.number, patch, token)
                        .await?,
                )
            }
            VapiStep::Delete { id } => {
                self.vapi.delete_phone_number(id, &c.number).await?;
                None
            }
        };
        if let Some(o) = &vapi_result {
            *vapi_id = Some(o.id.clone());
        }
        match &c.row {
            RowStep::None => {}
            RowStep::Insert(values) => {
                let values = self.complete_row(values, vapi_result.as_ref(), c)?;
                self.store.insert_row(self.owner, &values).await?;
            }
            RowStep::Update { row_id, values } => {
                let values = self.complete_row(values, vapi_result.as_ref(), c)?;
                self.store.update_row(self.owner, *row_id, &values).await?;
            }
            RowStep::Delete { row_id } => {
                self.store.delete_row(self.owner, *row_id).await?;
            }
        }
        Ok(())
    }

    /// Tries the row write that follows the Vapi step, and rolls it back: a row the app's schema
    /// rejects is refused before Vapi is changed, rather than after (when the number would exist
    /// in Vapi with no row, and every later apply would fail the same way — issue 9).
    async fn probe_row(&self, c: &Change) -> Result<(), ApplyError> {
        let (row_id, values) = match &c.row {
            RowStep::Insert(values) => (None, values),
            RowStep::Update { row_id, values } => (Some(*row_id), values),
            RowStep::None | RowStep::Delete { .. } => return Ok(()),
        };
        let mut values = self.complete_row(values, c.observed.as_ref(), c)?;
        // A new number's Vapi id is not known yet: stand in with something of the same shape.
        values
            .vapi_phone_id
            .get_or_insert_with(|| Uuid::nil().to_string());
        self.store
            .probe_row_write(self.owner, row_id, &values)
            .await?;
        Ok(())
    }

    /// Fills in what only the apply knows: the Vapi id of a new number and the token digest.
    fn complete_row(
        &self,
        values: &RowWrite,
        vapi: Option<&ObservedNumber>,
        c: &Change,
    ) -> Result<RowWrite, ApplyError> {
        let mut v = values.clone();
        if let Some(o) = vapi {
            v.vapi_phone_id = Some(o.id.clone());
            if o.credential_id.is_some() {
                v.vapi_credential_id = o.credential_id.clone();
            }
        }
        // A token sent to Vapi gets a fresh digest; an unchanged one keeps the row's.
        if v.token_digest.is_none()
            && let Some(token) = token_of(c)
        {
            v.token_digest = Some(token_digest(plaintext(token)?));
        }
        Ok(v)
    }

    /// POST, and when the outcome is unknown, look the number up before any new attempt.
    async fn create(&self, c: &VapiCreate) -> Result<ObservedNumber, ApplyError> {
        let token = plaintext(&c.token)?;
        if c.server.as_ref().is_some_and(|s| s.needs_key()) {
            return Err(ApplyError::NeedsKey);
        }
        let mut last = None;
        for attempt in 1..=CREATE_ATTEMPTS {
            match self.vapi.create_phone_number(c, token).await {
                Ok(o) => return Ok(o),
                Err(e @ VapiError::OutcomeUnknown { .. }) => {
                    tracing::warn!(
                        number = %mask_number(&c.number),
                        attempt,
                        error = %e,
                        "create outcome unknown; looking the number up before trying again"
                    );
                    let found = self.vapi.find_by_number(&c.number).await?;
                    let twilio: Vec<_> = found
                        .into_iter()
                        .filter(|o| o.provider == "twilio")
                        .collect();
                    match twilio.as_slice() {
                        [one] => return Ok(one.clone()),
                        [] => last = Some(e),
                        many => {
                            return Err(ApplyError::Duplicated {
                                number: mask_number(&c.number),
                                count: many.len(),
                            });
                        }
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(last.expect("at least one attempt").into())
    }

    /// Records the attempt; `vapi_id` is the number's id in Vapi when the apply learnt it (a
    /// create), which the plan could not know.
    async fn audit(&self, c: &Change, outcome: &Outcome, vapi_id: Option<String>) {
        let mut record = ChangeRecord::from_change(
            c,
            self.owner,
            &self.options.run_id,
            outcome.result.as_ref().err().map(String::as_str),
            self.options.ci_run_id.clone(),
            self.options.commit_sha.clone(),
        );
        if vapi_id.is_some() {
            record.vapi_phone_id = vapi_id;
        }
        if let Err(e) = self.store.record_change(&record).await {
            tracing::warn!(number = %mask_number(&c.number), error = %e, "could not write the audit record");
        }
    }
}

fn token_of(c: &Change) -> Option<&EncryptedToken> {
    match &c.vapi {
        VapiStep::Create(create) => Some(&create.token),
        VapiStep::Update { patch, .. } if patch.token.is_some() => patch.token.as_ref(),
        _ => None,
    }
}

fn plaintext(t: &EncryptedToken) -> Result<&SecretValue, ApplyError> {
    t.plaintext.as_ref().ok_or(ApplyError::NeedsKey)
}

/// One number's failure.
#[derive(Debug, thiserror::Error)]
enum ApplyError {
    #[error(transparent)]
    Vapi(#[from] VapiError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(
        "applying needs the Twilio token in plaintext, and no age identity could decrypt it\nhint: pass `--identity FILE` or set `VAPICTL_AGE_IDENTITY`"
    )]
    NeedsKey,
    #[error(
        "`{number}` now exists {count} times in Vapi\nhint: delete the extra copies in the Vapi dashboard, then run again"
    )]
    Duplicated {
        /// Masked with [`mask_number`]: the message reaches logs and the audit trail.
        number: String,
        count: usize,
    },
}
