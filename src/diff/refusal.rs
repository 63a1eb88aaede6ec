//! Why a number cannot be planned: named conditions, each with its message and its hint.

use std::fmt;
use std::path::PathBuf;

use uuid::Uuid;

use super::targets::TargetKind;
use crate::spec::Location;

/// One condition that makes a number impossible to plan safely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefusalReason {
    /// A row of another user records the number (by its E.164 form or by the Vapi id in use).
    AnotherUsersNumber {
        user: Uuid,
        stored_as: Option<String>,
    },
    /// Vapi lists the number more than once and no row of the owner says which copy is in use.
    DuplicateInVapi { ids: Vec<String> },
    /// Several rows of the owner hold the same number, written differently.
    DuplicateRows { stored_as: Vec<String> },
    /// Vapi holds the number under another provider than Twilio.
    OtherProviderInVapi { provider: String, id: String },
    /// The owner's row records the number as another provider's.
    OtherProviderInDatabase { provider: String },
    /// No assistant (squad) of the owner matches the reference; `known` are the owner's names.
    UnknownTarget {
        kind: TargetKind,
        reference: String,
        known: Vec<String>,
    },
    /// The reference names another user's assistant (squad) only.
    TargetOfAnotherUser { kind: TargetKind, reference: String },
    /// The reference matches several of the owner's assistants (squads) by name.
    AmbiguousTarget {
        kind: TargetKind,
        reference: String,
        ids: Vec<Uuid>,
    },
    /// The row has no Vapi id.
    TargetWithoutVapiId { kind: TargetKind, reference: String },
    /// The app's table of such targets cannot be read (`squads` of another shape).
    TargetTableUnusable { kind: TargetKind, reason: String },
    /// The row points at a Vapi assistant (squad) that does not exist.
    TargetMissingInVapi {
        kind: TargetKind,
        reference: String,
        vapi_id: String,
    },
    /// Twilio refused the entry's account: credentials rejected, account suspended or not
    /// found (the preflight, issue 13).
    TwilioAccountRefused { error: crate::twilio::TwilioError },
    /// The number is not on the entry's Twilio account (`account` masked).
    NotOnTwilioAccount { account: String },
    /// Twilio lists the number without voice capability.
    NoVoiceCapability { account: String },
}

impl RefusalReason {
    /// The spec field the condition is about.
    pub fn field(&self) -> &'static str {
        match self {
            RefusalReason::UnknownTarget { kind, .. }
            | RefusalReason::TargetOfAnotherUser { kind, .. }
            | RefusalReason::AmbiguousTarget { kind, .. }
            | RefusalReason::TargetWithoutVapiId { kind, .. }
            | RefusalReason::TargetTableUnusable { kind, .. }
            | RefusalReason::TargetMissingInVapi { kind, .. } => kind.field(),
            RefusalReason::TwilioAccountRefused { .. } => "twilio",
            _ => "number",
        }
    }

    /// What is wrong, in one line (without the number, which [`Refusal`] adds).
    pub fn message(&self) -> String {
        match self {
            RefusalReason::AnotherUsersNumber { user, stored_as } => match stored_as {
                Some(s) => format!(
                    "the number is recorded in the database for another user (`{user}`), stored as `{s}`"
                ),
                None => {
                    format!("the number is recorded in the database for another user (`{user}`)")
                }
            },
            RefusalReason::DuplicateInVapi { ids } => format!(
                "the number is listed in Vapi {} times ({}) and no row says which one is in use",
                ids.len(),
                ids.join(", ")
            ),
            RefusalReason::DuplicateRows { stored_as } => format!(
                "the owner has {} rows for the number (stored as {})",
                stored_as.len(),
                stored_as
                    .iter()
                    .map(|s| format!("`{s}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            RefusalReason::OtherProviderInVapi { provider, id } => format!(
                "the number exists in Vapi as a `{provider}` number (`{id}`); vapictl manages Twilio numbers only"
            ),
            RefusalReason::OtherProviderInDatabase { provider } => format!(
                "the database records the number as a `{provider}` number; vapictl manages Twilio numbers only"
            ),
            RefusalReason::UnknownTarget {
                kind, reference, ..
            } => {
                format!("unknown {} `{reference}`", kind.field())
            }
            RefusalReason::TargetOfAnotherUser { kind, reference } => {
                format!("{} `{reference}` belongs to another user", kind.field())
            }
            RefusalReason::AmbiguousTarget {
                kind,
                reference,
                ids,
            } => format!(
                "{} name `{reference}` matches {} of the owner's {}",
                kind.field(),
                ids.len(),
                kind.table()
            ),
            RefusalReason::TargetWithoutVapiId { kind, reference } => format!(
                "{} `{reference}` has no `{}` in the database",
                kind.field(),
                kind.vapi_column()
            ),
            RefusalReason::TargetTableUnusable { kind, reason } => format!(
                "the application's `{}` table cannot be read: {reason}",
                kind.table()
            ),
            RefusalReason::TargetMissingInVapi {
                kind,
                reference,
                vapi_id,
            } => format!(
                "{field} `{reference}` points at Vapi {field} `{vapi_id}`, which does not exist in Vapi",
                field = kind.field()
            ),
            RefusalReason::TwilioAccountRefused { error } => error.to_string(),
            RefusalReason::NotOnTwilioAccount { account } => {
                format!("the number is not on Twilio account `{account}`")
            }
            RefusalReason::NoVoiceCapability { account } => format!(
                "the number has no voice capability on Twilio account `{account}`; Vapi cannot answer its calls"
            ),
        }
    }

    /// What the user can do about it.
    pub fn hint(&self) -> String {
        match self {
            RefusalReason::AnotherUsersNumber { .. } => "a spec can only manage its owner's numbers; remove the entry, or move the row to this owner in the application first".into(),
            RefusalReason::DuplicateInVapi { .. } => "delete the extra copies in the Vapi dashboard, keeping the one in use, then plan again".into(),
            RefusalReason::DuplicateRows { .. } => "delete the extra rows in the application, keeping the one in use, then plan again".into(),
            // Removing the entry is safe: numbers of other providers are out of scope on every
            // path, so vapictl never deletes them (issue 9).
            RefusalReason::OtherProviderInVapi { provider, .. } => format!(
                "remove the entry: vapictl leaves `{provider}` numbers alone; to manage it as a Twilio number, delete it in Vapi first"
            ),
            RefusalReason::OtherProviderInDatabase { provider } => format!(
                "remove the entry: vapictl leaves `{provider}` numbers alone; if it is a Twilio number, fix the row's `provider` in the application"
            ),
            RefusalReason::UnknownTarget { kind, known, .. } => {
                if known.is_empty() {
                    format!(
                        "the owner has no rows in `{}`; create the {} in the application first",
                        kind.table(),
                        kind.field()
                    )
                } else {
                    format!(
                        "use the name or id of one of the owner's {}: {}",
                        kind.table(),
                        known.join(", ")
                    )
                }
            }
            RefusalReason::TargetOfAnotherUser { kind, .. } => format!(
                "a number can only be answered by one of its owner's {}",
                kind.table()
            ),
            RefusalReason::AmbiguousTarget { ids, .. } => format!(
                "refer to it by id instead: {}",
                ids.iter().map(Uuid::to_string).collect::<Vec<_>>().join(", ")
            ),
            RefusalReason::TargetWithoutVapiId { kind, .. } => format!(
                "create the {} in Vapi through the application first",
                kind.field()
            ),
            RefusalReason::TargetTableUnusable { kind, .. } => format!(
                "give `{}` the columns `id`, `user_id` (UUIDs), `name` and `{}` as vapictl reads them (README, \"The database\"), or route the number otherwise",
                kind.table(),
                kind.vapi_column()
            ),
            RefusalReason::TargetMissingInVapi { kind, .. } => format!(
                "fix the `{}` row or re-create the {} in Vapi",
                kind.table(),
                kind.field()
            ),
            RefusalReason::TwilioAccountRefused { error } => error.hint().into(),
            RefusalReason::NotOnTwilioAccount { .. } => "check the number and `twilio.accountSid`: the number must be bought on (or ported to) that account; Twilio console → Phone Numbers → Active numbers".into(),
            RefusalReason::NoVoiceCapability { .. } => "use a voice-capable number; Twilio console → Phone Numbers shows each number's capabilities".into(),
        }
    }
}

/// Where in the spec a refusal points: the field's path and position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldAt {
    /// `phoneNumbers[2].assistant`
    pub path: String,
    pub location: Location,
}

/// Why a number cannot be planned. The whole plan is refused: nothing is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub number: String,
    /// The field in the spec, when the spec lists the number.
    pub at: Option<FieldAt>,
    pub reason: RefusalReason,
}

impl Refusal {
    /// The entry's line in the spec, when the spec lists the number.
    pub fn line(&self) -> Option<usize> {
        self.at.as_ref().map(|a| a.location.line)
    }
}

/// Every refusal of one plan, with the spec file they point into.
#[derive(Debug, Clone)]
pub struct Refusals {
    pub spec_path: PathBuf,
    pub items: Vec<Refusal>,
}

impl fmt::Display for Refusals {
    /// Positions print as validation problems do: `file:line:col: `field`: message`, then the
    /// hint on its own line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.items.len();
        writeln!(
            f,
            "cannot plan: {n} number{} refused",
            if n == 1 { "" } else { "s" }
        )?;
        for r in &self.items {
            match &r.at {
                Some(at) => writeln!(
                    f,
                    "{}:{}: `{}`: `{}`: {}",
                    self.spec_path.display(),
                    at.location,
                    at.path,
                    r.number,
                    r.reason.message()
                )?,
                None => writeln!(f, "`{}`: {}", r.number, r.reason.message())?,
            }
            writeln!(f, "  hint: {}", r.reason.hint())?;
        }
        Ok(())
    }
}

impl std::error::Error for Refusals {}
