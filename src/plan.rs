//! A plan: the ordered changes that make Vapi and the database match the spec, each with its
//! cause, its field-level differences and the steps that carry it out.

use serde::Serialize;
use uuid::Uuid;

use crate::state::{EncryptedToken, ObservedNumber, PhoneRow, RowWrite, ServerConfig};

/// What happens to one number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Release from Vapi, then delete the row.
    Delete,
    /// Delete a row whose number no longer exists in Vapi.
    RemoveRow,
    /// Create in Vapi, then insert (or repoint) the row.
    Create,
    /// The number was deleted in Vapi by hand: create it again and repoint the row.
    Recreate,
    /// The number exists in Vapi but no one records it: take it over (PATCH, insert row).
    Adopt,
    /// Change the fields that differ, in Vapi and/or the row.
    Update,
}

impl Action {
    /// Every action, in the order plans list them.
    pub const ALL: [Action; 6] = [
        Action::Delete,
        Action::RemoveRow,
        Action::Create,
        Action::Recreate,
        Action::Adopt,
        Action::Update,
    ];

    /// The action's name as the JSON plan spells it (`remove_row`): the metrics' label value.
    pub fn name(self) -> &'static str {
        match self {
            Action::Delete => "delete",
            Action::RemoveRow => "remove_row",
            Action::Create => "create",
            Action::Recreate => "recreate",
            Action::Adopt => "adopt",
            Action::Update => "update",
        }
    }

    /// The action for people (`remove row`, `re-create`).
    pub fn label(self) -> &'static str {
        match self {
            Action::Delete => "delete",
            Action::RemoveRow => "remove row",
            Action::Create => "create",
            Action::Recreate => "re-create",
            Action::Adopt => "adopt",
            Action::Update => "update",
        }
    }

    pub fn is_destructive(self) -> bool {
        matches!(self, Action::Delete | Action::RemoveRow)
    }
}

/// Why a change is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// The number is new in the spec.
    NewInSpec,
    /// The spec changed a value since it was last applied.
    SpecEdit,
    /// Someone changed the number in Vapi (dashboard, API) since vapictl last applied it.
    VapiEditedOutOfBand,
    /// Someone changed the row in the database since vapictl last applied it.
    DatabaseEditedOutOfBand,
    /// The number was deleted in Vapi by hand while the database still records it.
    DeletedInVapi,
    /// A row of the owner records a number that exists neither in Vapi nor in the spec.
    StaleDatabaseRow,
    /// A number in Vapi that no one records is taken over because the spec lists it.
    AdoptUnmanaged,
    /// The number's entry was removed from the spec (an implicit delete).
    RemovedFromSpec,
    /// The number's entry says `absent: true` (an explicit delete).
    MarkedAbsent,
}

impl Cause {
    /// Every cause.
    pub const ALL: [Cause; 9] = [
        Cause::NewInSpec,
        Cause::SpecEdit,
        Cause::VapiEditedOutOfBand,
        Cause::DatabaseEditedOutOfBand,
        Cause::DeletedInVapi,
        Cause::StaleDatabaseRow,
        Cause::AdoptUnmanaged,
        Cause::RemovedFromSpec,
        Cause::MarkedAbsent,
    ];

    /// The cause's name as the JSON plan spells it (`spec_edit`): the metrics' label value.
    pub fn name(self) -> &'static str {
        match self {
            Cause::NewInSpec => "new_in_spec",
            Cause::SpecEdit => "spec_edit",
            Cause::VapiEditedOutOfBand => "vapi_edited_out_of_band",
            Cause::DatabaseEditedOutOfBand => "database_edited_out_of_band",
            Cause::DeletedInVapi => "deleted_in_vapi",
            Cause::StaleDatabaseRow => "stale_database_row",
            Cause::AdoptUnmanaged => "adopt_unmanaged",
            Cause::RemovedFromSpec => "removed_from_spec",
            Cause::MarkedAbsent => "marked_absent",
        }
    }

    /// The cause for people.
    pub fn describe(self) -> &'static str {
        match self {
            Cause::NewInSpec => "new in the spec",
            Cause::SpecEdit => "spec edit",
            Cause::VapiEditedOutOfBand => "changed in Vapi outside vapictl",
            Cause::DatabaseEditedOutOfBand => "changed in the database outside vapictl",
            Cause::DeletedInVapi => "deleted in Vapi outside vapictl",
            Cause::StaleDatabaseRow => "stale database row",
            Cause::AdoptUnmanaged => "adopting a number nobody manages",
            Cause::RemovedFromSpec => "removed from the spec",
            Cause::MarkedAbsent => "marked `absent: true`",
        }
    }
}

/// Where a field lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    Vapi,
    Database,
    Both,
}

/// One field that differs. Values are display strings; secrets have none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldChange {
    pub field: &'static str,
    pub target: Target,
    pub before: Option<String>,
    pub after: Option<String>,
    /// A secret: before/after are never shown; `note` says what is known.
    pub sensitive: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub cause: Cause,
}

/// The fields of a Vapi create (POST), all owned by vapictl.
#[derive(Debug, Clone)]
pub struct VapiCreate {
    pub number: String,
    pub name: String,
    pub assistant_id: Option<String>,
    /// The squad's Vapi id; never set with `assistant_id`.
    pub squad_id: Option<String>,
    pub server: Option<ServerConfig>,
    pub sms_enabled: bool,
    /// `fallbackDestination` as Vapi's JSON.
    pub fallback_destination: Option<serde_json::Value>,
    /// `hooks` as Vapi's JSON (an array).
    pub hooks: Option<serde_json::Value>,
    pub account_sid: String,
    /// The auth token, or the API key's secret when `api_key` is set.
    pub token: EncryptedToken,
    /// The API key SID (`twilioApiKey`) of the API-key form.
    pub api_key: Option<String>,
}

/// The fields of a Vapi PATCH: only those vapictl owns and that changed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VapiPatch {
    pub name: Option<String>,
    /// `Some(None)` clears the assistant.
    pub assistant_id: Option<Option<String>>,
    /// `Some(None)` clears the squad.
    pub squad_id: Option<Option<String>>,
    /// `Some(None)` clears the server.
    pub server: Option<Option<ServerConfig>>,
    /// Vapi's `server` object before the PATCH: what is sent starts from it (sub-fields vapictl
    /// does not model are kept).
    pub server_base: Option<serde_json::Map<String, serde_json::Value>>,
    /// Sub-fields of `server` vapictl applied before and the spec no longer declares: removed.
    pub server_clear: Vec<String>,
    pub sms_enabled: Option<bool>,
    /// `Some(None)` removes the fallback destination.
    pub fallback_destination: Option<Option<serde_json::Value>>,
    /// `Some(None)` removes every hook.
    pub hooks: Option<Option<serde_json::Value>>,
    pub account_sid: Option<String>,
    /// The secret to send: the auth token, or the API key's secret when `api_key` is set.
    pub token: Option<EncryptedToken>,
    /// The API key SID sent with the secret (the API-key form).
    pub api_key: Option<String>,
    /// The number changes form (token ↔ API key): the other form's fields are cleared.
    pub switch_form: bool,
}

impl PartialEq for EncryptedToken {
    fn eq(&self, other: &Self) -> bool {
        self.armored == other.armored
    }
}

impl VapiPatch {
    pub fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.assistant_id.is_none()
            && self.squad_id.is_none()
            && self.server.is_none()
            && self.sms_enabled.is_none()
            && self.fallback_destination.is_none()
            && self.hooks.is_none()
            && self.account_sid.is_none()
            && self.token.is_none()
    }
}

/// What to do in Vapi.
#[derive(Debug, Clone)]
pub enum VapiStep {
    None,
    Create(Box<VapiCreate>),
    Update { id: String, patch: Box<VapiPatch> },
    Delete { id: String },
}

/// What to do with the owner's row. For inserts and repoints after a create, the Vapi id is
/// filled in by the applier from Vapi's answer.
#[derive(Debug, Clone)]
pub enum RowStep {
    None,
    Insert(Box<RowWrite>),
    Update { row_id: Uuid, values: Box<RowWrite> },
    Delete { row_id: Uuid },
}

/// One number's change.
#[derive(Debug, Clone)]
pub struct Change {
    pub number: String,
    pub action: Action,
    pub cause: Cause,
    pub fields: Vec<FieldChange>,
    pub vapi: VapiStep,
    pub row: RowStep,
    /// What Vapi showed when the plan was made (saved plans compare it before applying).
    pub observed: Option<ObservedNumber>,
    /// The row when the plan was made.
    pub recorded: Option<PhoneRow>,
}

/// A number that stays although the spec no longer lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Kept {
    pub number: String,
    pub reason: String,
}

/// A number in Vapi that vapictl does not manage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unmanaged {
    pub number: Option<String>,
    pub id: String,
    pub provider: String,
}

/// An owner's number that vapictl leaves alone because it is outside its scope: another
/// provider than Twilio (in the row or in Vapi), or a stored number it cannot read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutOfScope {
    /// The number as the row stores it (or as Vapi lists it).
    pub number: String,
    /// The provider, when that is the reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    pub reason: String,
}

/// A number of the owner that Vapi reports as `blocked`: a drift finding of its own (vapictl
/// cannot unblock it), shown in plans and drift with a warning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Blocked {
    pub number: String,
    /// The number's Vapi id.
    pub id: String,
    /// Vapi's `status`.
    pub status: String,
    /// Always `blocked_in_vapi`.
    pub cause: &'static str,
}

/// A value Vapi has on one of the owner's numbers that the spec does not declare, which vapictl
/// keeps as it is: a `server` sub-field set in the dashboard (or one vapictl does not model).
/// Shown by `plan` and `drift` so that it is never invisible; never changed, and not drift.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotOwned {
    pub number: String,
    /// `server.headers`, `server.backoffPlan`, …
    pub field: String,
    /// Vapi's value for display (secret header values as `(sensitive)`); `None` for a sub-field
    /// vapictl does not model, whose value is not shown.
    pub value: Option<String>,
}

/// The whole plan for one owner.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub owner: Uuid,
    pub changes: Vec<Change>,
    pub kept: Vec<Kept>,
    /// Vapi numbers that no user's row records. Numbers recorded for other users are never
    /// listed, only counted ([`Plan::other_users_count`]).
    pub unmanaged: Vec<Unmanaged>,
    /// The owner's numbers that vapictl never touches (see [`OutOfScope`]).
    pub out_of_scope: Vec<OutOfScope>,
    /// How many Vapi numbers are recorded for other users (never shown).
    pub other_users_count: usize,
    pub warnings: Vec<String>,
    /// The owner's numbers that Vapi reports as blocked (see [`Blocked`]).
    pub blocked: Vec<Blocked>,
    /// What Vapi has that the spec does not declare and vapictl keeps (see [`NotOwned`]).
    pub not_owned: Vec<NotOwned>,
    pub spec_digest: String,
    /// How many numbers the owner manages now (rows within vapictl's scope).
    pub managed_count: usize,
    /// How many of the owner's numbers vapictl could release from Vapi: rows within its scope
    /// whose number exists in Vapi and is not protected. The deletion gate's base.
    pub releasable_count: usize,
    /// How many entries the spec has (`phoneNumbers: []` has none: every implicit delete then
    /// needs confirmation).
    pub spec_entries: usize,
    /// What the Twilio preflight found (issue 13); its warnings are in `warnings` too.
    pub twilio: crate::twilio::TwilioCheck,
    /// Twilio-side drift (`drift` with an identity): numbers repointed on Twilio or gone from
    /// their account since vapictl created or adopted them. `apply` does not change Twilio.
    pub twilio_drift: Vec<crate::twilio::TwilioDrift>,
}

/// Counts per action, for summaries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub create: usize,
    pub adopt: usize,
    pub update: usize,
    pub delete: usize,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Whether `drift` has something to report: a change, a Twilio-side finding, or a number
    /// Vapi blocked (which no apply can fix).
    pub fn has_drift(&self) -> bool {
        !self.changes.is_empty() || !self.twilio_drift.is_empty() || !self.blocked.is_empty()
    }

    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for c in &self.changes {
            match c.action {
                Action::Create | Action::Recreate => s.create += 1,
                Action::Adopt => s.adopt += 1,
                Action::Update => s.update += 1,
                Action::Delete | Action::RemoveRow => s.delete += 1,
            }
        }
        s
    }

    /// Numbers to be released from Vapi because their entry disappeared from the spec (not
    /// `absent: true`, and not stale rows whose number is already gone from Vapi).
    pub fn implicit_deletes(&self) -> usize {
        self.changes
            .iter()
            .filter(|c| c.action == Action::Delete && c.cause == Cause::RemovedFromSpec)
            .count()
    }
}

#[cfg(test)]
mod name_tests {
    use super::*;

    #[test]
    fn names_are_the_json_spelling_of_every_action_and_cause() {
        for a in Action::ALL {
            assert_eq!(serde_json::to_value(a).unwrap(), a.name());
        }
        for c in Cause::ALL {
            assert_eq!(serde_json::to_value(c).unwrap(), c.name());
        }
    }
}
