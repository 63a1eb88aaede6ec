//! A run: one or more owners' specs validated, planned, drifted or applied together — one spec
//! per owner, one observation of Vapi and the database for all of them, each owner diffed and
//! applied on its own, and one report.
//!
//! [`specs`] turns the `SPEC` arguments into loaded owners and refuses conflicting specs before
//! anything is read; [`observe`] reads Vapi and the database once and gives each owner its own
//! view; [`apply`] is the apply protocol, for one spec and for many; [`import`] writes specs
//! for what owners already have.

pub mod apply;
pub mod import;
pub mod observe;
pub mod plan;
pub mod saved;
pub mod specs;

pub use apply::{ApplyHooks, ApplyRun, ApplySettings, OwnerOutcome, Refusal, Verdict};
pub use import::{ImportError, ImportedAll, import_all, import_owner};
pub use observe::{Observation, Orphan, observe};
pub use plan::{PlannedRun, plan_run};
pub use saved::SavedRun;
pub use specs::{FailedSpec, LoadedRun, OwnerSpec, RunError, SpecConflict};
