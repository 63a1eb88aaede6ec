//! Planning a run: every owner of a [`LoadedRun`] diffed from one [`Observation`], plus what the
//! run reports beside the plans (numbers nobody manages, owners without a spec).

use std::collections::BTreeSet;

use uuid::Uuid;

use crate::Error;
use crate::plan::{Plan, Unmanaged};
use crate::render::{RunEntry, RunKind, RunView};
use crate::secrets::Identities;
use crate::state::DesiredState;
use crate::store::Store;
use crate::twilio::Preflight;
use crate::vapi::VapiClient;

use super::observe::{Orphan, observe};
use super::specs::{FailedSpec, LoadedRun, OwnerSpec};

/// A run's owners, planned from one observation.
#[derive(Debug)]
pub struct PlannedRun {
    /// Specs that could not be loaded or validated.
    pub failed: Vec<FailedSpec>,
    /// Every valid spec with its plan, or the reason it has none (a refused number).
    pub planned: Vec<(OwnerSpec, Result<Plan, Error>)>,
    /// Vapi numbers that no user's row records and no spec of the run declares.
    pub unmanaged: Vec<Unmanaged>,
    /// Owners with rows but no spec in the run.
    pub orphans: Vec<Orphan>,
}

/// Observes once (one Vapi listing, three statements) and plans each owner on its own, with the
/// identities the specs were decrypted with (rows' tokens are compared by decryption).
///
/// # Errors
/// A failed observation; each owner's own problem is in [`PlannedRun::planned`].
pub async fn plan_run(
    store: &Store,
    vapi: &VapiClient,
    loaded: LoadedRun,
    identities: &Identities,
) -> Result<PlannedRun, Error> {
    let LoadedRun { owners, failed } = loaded;
    let observation = observe(store, vapi).await?;
    let desired: Vec<&DesiredState> = owners.iter().map(|o| &o.desired).collect();
    let unmanaged = observation.unmanaged(&desired);
    let in_run: BTreeSet<Uuid> = owners
        .iter()
        .map(|o| o.desired.owner)
        .chain(failed.iter().filter_map(|f| f.owner))
        .collect();
    let orphans = observation.orphans(&in_run);
    let planned = owners
        .into_iter()
        .map(|o| {
            let plan = observation
                .plan(&o.desired, identities)
                .map_err(Error::from);
            (o, plan)
        })
        .collect();
    Ok(PlannedRun {
        failed,
        planned,
        unmanaged,
        orphans,
    })
}

impl PlannedRun {
    /// The Twilio preflight of every owner's plan, each distinct account read once for the
    /// whole run; a refused owner's plan becomes its refusal.
    ///
    /// # Errors
    /// [`Error::Twilio`] when Twilio cannot be read.
    pub async fn preflight(&mut self, twilio: &Preflight) -> Result<(), Error> {
        let mut items: Vec<(&DesiredState, &mut Result<Plan, Error>)> = self
            .planned
            .iter_mut()
            .map(|(o, p)| (&o.desired, p))
            .collect();
        twilio.check(&mut items).await
    }

    /// Twilio-side drift of every owner with a plan, each distinct account read once.
    ///
    /// # Errors
    /// A failed database read, or [`Error::Twilio`] when Twilio cannot be read.
    pub async fn twilio_drift(&mut self, store: &Store, twilio: &Preflight) -> Result<(), Error> {
        let mut items: Vec<(&DesiredState, &mut Plan)> = self
            .planned
            .iter_mut()
            .filter_map(|(o, p)| p.as_mut().ok().map(|p| (&o.desired, p)))
            .collect();
        twilio.drift(store, &mut items).await
    }

    /// The run as the renderers draw it, owners in the order of their files.
    pub fn view(&self, kind: RunKind) -> RunView<'_> {
        let failed = self.failed.iter().map(|f| RunEntry {
            spec: f.spec.display().to_string(),
            owner: f.owner,
            result: Err(f.error.to_string().trim_end().to_string()),
        });
        let planned = self.planned.iter().map(|(o, p)| RunEntry {
            spec: o.path.display().to_string(),
            owner: Some(o.desired.owner),
            result: p.as_ref().map_err(|e| e.to_string().trim_end().to_string()),
        });
        let mut entries: Vec<RunEntry<'_>> = failed.chain(planned).collect();
        entries.sort_by(|a, b| a.spec.cmp(&b.spec));
        RunView {
            kind,
            entries,
            unmanaged: &self.unmanaged,
            orphans: &self.orphans,
        }
    }
}
