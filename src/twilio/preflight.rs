//! The Twilio preflight of a plan and Twilio-side drift: the pure judgements ([`needs`],
//! [`judge`], [`drift_findings`]) and [`Preflight`], which reads Twilio for them — each distinct
//! account once per run, whatever the number of owners and entries.
//!
//! # Guarantees
//! - Only GETs: vapictl never writes to Twilio.
//! - A refusal (credentials rejected, number not on the account, no voice capability) replaces
//!   the owner's plan with [`Error::Refused`] before anything is written, exactly like every
//!   other refusal of the diff.
//! - Entries whose token could not be decrypted (a keyless plan) are not checked; the plan
//!   says so in its warnings and in [`TwilioCheck::SkippedKeyless`].

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use sha2::Digest;
use uuid::Uuid;

use super::{AccountListing, ListingKey, TwilioAuth, TwilioClient, TwilioError, url_host};
use crate::Error;
use crate::apply::ApplyReport;
use crate::diff::{FieldAt, Refusal, RefusalReason, Refusals};
use crate::plan::{Action, Plan, VapiStep};
use crate::state::{DesiredNumber, DesiredState};
use crate::store::{RecordedTwilioUrls, Store};

/// What the preflight did for a plan (the plan JSON's `twilio` field).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum TwilioCheck {
    /// The plan was not given to a preflight (library callers, `apply` of a saved plan's
    /// re-plan).
    #[default]
    NotRun,
    /// Nothing in the plan needs Twilio: no create, adopt or credential change.
    NotNeeded,
    /// `--twilio-check off`.
    Off,
    /// No identity could decrypt the tokens of `entries` entries, so they were not checked.
    SkippedKeyless { entries: usize },
    /// Twilio was read for `entries` entries over `accounts` accounts.
    Checked {
        accounts: usize,
        entries: usize,
        warnings: Vec<TwilioWarning>,
    },
}

impl TwilioCheck {
    pub fn is_not_run(&self) -> bool {
        matches!(self, TwilioCheck::NotRun)
    }

    /// One line for text and markdown plans when Twilio was read (the skips are warnings).
    pub fn summary(&self) -> Option<String> {
        match self {
            TwilioCheck::Checked {
                accounts, entries, ..
            } => Some(format!(
                "Twilio preflight: {entries} number{} checked on {accounts} account{} (read only).",
                if *entries == 1 { "" } else { "s" },
                if *accounts == 1 { "" } else { "s" }
            )),
            _ => None,
        }
    }
}

/// A number whose Twilio URL points somewhere other than Vapi today: the import takes it over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TwilioWarning {
    pub number: String,
    /// `voice_url` or `sms_url`.
    pub field: &'static str,
    /// The host it points at today.
    pub host: String,
    /// The entry's line in the spec.
    pub line: usize,
}

impl TwilioWarning {
    pub fn message(&self) -> String {
        let what = if self.field == "voice_url" {
            "calls"
        } else {
            "messages"
        };
        format!(
            "`{}`: Twilio sends its {what} to `{}` today (`{}`); applying points it at Vapi instead",
            self.number, self.host, self.field
        )
    }
}

/// Why a number's Twilio side differs from what vapictl recorded after its create or adopt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "cause", rename_all = "snake_case")]
pub enum TwilioDriftKind {
    /// The voice URL was changed on Twilio (the console, another tool).
    VoiceUrlChangedInTwilio {
        before: Option<String>,
        after: Option<String>,
    },
    /// The SMS URL was changed on Twilio.
    SmsUrlChangedInTwilio {
        before: Option<String>,
        after: Option<String>,
    },
    /// The number is no longer on the account (released, or moved to another account).
    LeftTwilioAccount { account: String },
    /// The account cannot be read with the spec's credentials any more.
    TwilioAccountUnreadable { reason: String },
}

/// One Twilio-side drift finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TwilioDrift {
    pub number: String,
    #[serde(flatten)]
    pub kind: TwilioDriftKind,
    /// Stable over runs while the finding stays the same.
    pub fingerprint: String,
}

impl TwilioDrift {
    fn new(number: &str, kind: TwilioDriftKind) -> TwilioDrift {
        let mut h = sha2::Sha256::new();
        h.update(b"twilio\0");
        h.update(number.as_bytes());
        h.update([0]);
        h.update(serde_json::to_vec(&kind).unwrap_or_default());
        TwilioDrift {
            number: number.to_string(),
            kind,
            fingerprint: format!("sha256:{}", &hex::encode(h.finalize())[..32]),
        }
    }

    /// The cause as a snake_case word (as the JSON has it).
    pub fn cause(&self) -> &'static str {
        match self.kind {
            TwilioDriftKind::VoiceUrlChangedInTwilio { .. } => "voice_url_changed_in_twilio",
            TwilioDriftKind::SmsUrlChangedInTwilio { .. } => "sms_url_changed_in_twilio",
            TwilioDriftKind::LeftTwilioAccount { .. } => "left_twilio_account",
            TwilioDriftKind::TwilioAccountUnreadable { .. } => "twilio_account_unreadable",
        }
    }

    /// One line for text and markdown (URLs by host).
    pub fn message(&self) -> String {
        let host = |u: &Option<String>| u.as_deref().map_or("(none)".into(), url_host);
        match &self.kind {
            TwilioDriftKind::VoiceUrlChangedInTwilio { before, after } => format!(
                "`{}`: its Twilio voice URL was changed outside vapictl: `{}` → `{}`",
                self.number,
                host(before),
                host(after)
            ),
            TwilioDriftKind::SmsUrlChangedInTwilio { before, after } => format!(
                "`{}`: its Twilio SMS URL was changed outside vapictl: `{}` → `{}`",
                self.number,
                host(before),
                host(after)
            ),
            TwilioDriftKind::LeftTwilioAccount { account } => format!(
                "`{}`: the number is no longer on Twilio account `{account}`",
                self.number
            ),
            TwilioDriftKind::TwilioAccountUnreadable { reason } => {
                format!("`{}`: {reason}", self.number)
            }
        }
    }
}

/// The hint every Twilio-side drift finding carries.
pub const DRIFT_HINT: &str = "vapictl does not write to Twilio: to re-import the number through Vapi, delete it in Vapi (dashboard or API) and run `vapictl apply`, which re-creates it and points Twilio at Vapi again; or set the URL back in the Twilio console";

/// One entry the preflight must check, with its credentials (`None`: no identity decrypted
/// the token).
#[derive(Debug)]
pub struct Needed<'a> {
    pub entry: &'a DesiredNumber,
    pub auth: Option<TwilioAuth>,
}

/// The credentials of an entry, when its secret was decrypted: the account's auth token, or
/// the API key (`SK…`) with its secret.
pub fn auth_of(entry: &DesiredNumber) -> Option<TwilioAuth> {
    let secret = entry.twilio.auth_token.plaintext.clone()?;
    let account_sid = entry.twilio.account_sid.clone();
    Some(match &entry.twilio.api_key {
        Some(key_sid) => TwilioAuth::ApiKey {
            account_sid,
            key_sid: key_sid.clone(),
            secret,
        },
        None => TwilioAuth::AuthToken {
            account_sid,
            token: secret,
        },
    })
}

/// The entries of `plan` that Twilio must confirm: every number to be created (or re-created)
/// or adopted, and every change of credentials. Pure.
pub fn needs<'a>(desired: &'a DesiredState, plan: &Plan) -> Vec<Needed<'a>> {
    let by_number: BTreeMap<&str, &DesiredNumber> = desired
        .numbers
        .values()
        .filter(|d| !d.absent)
        .map(|d| (d.number.as_str(), d))
        .collect();
    plan.changes
        .iter()
        .filter(|c| match (&c.action, &c.vapi) {
            (Action::Create | Action::Recreate | Action::Adopt, _) => true,
            (Action::Update, VapiStep::Update { patch, .. }) => {
                patch.account_sid.is_some()
                    || patch.token.is_some()
                    || patch.api_key.is_some()
                    || patch.switch_form
            }
            _ => false,
        })
        .filter_map(|c| by_number.get(c.number.as_str()).copied())
        .map(|entry| Needed {
            entry,
            auth: auth_of(entry),
        })
        .collect()
}

fn field_at(entry: &DesiredNumber, field: &str) -> FieldAt {
    FieldAt {
        path: format!("{}.{field}", entry.path),
        location: entry.position(field),
    }
}

/// Judges the checked entries of one plan against the listings. Pure.
///
/// # Errors
/// The refusals, one per entry that cannot be applied.
pub fn judge(
    needed: &[Needed<'_>],
    listings: &BTreeMap<ListingKey, Result<AccountListing, TwilioError>>,
    vapi_host: &str,
) -> Result<Vec<TwilioWarning>, Vec<Refusal>> {
    let mut refusals = Vec::new();
    let mut warnings = Vec::new();
    for n in needed {
        let Some(auth) = &n.auth else { continue };
        let entry = n.entry;
        let number = entry.number.as_str();
        let listing = match listings.get(&auth.listing_key()) {
            Some(Ok(l)) => l,
            Some(Err(e)) => {
                refusals.push(Refusal {
                    number: number.to_string(),
                    at: Some(field_at(entry, "twilio")),
                    reason: RefusalReason::TwilioAccountRefused { error: e.clone() },
                });
                continue;
            }
            // Every needed account is listed; a missing one is a caller's bug, refused safely.
            None => {
                refusals.push(Refusal {
                    number: number.to_string(),
                    at: Some(field_at(entry, "twilio")),
                    reason: RefusalReason::TwilioAccountRefused {
                        error: TwilioError::Config("the account was not listed".into()),
                    },
                });
                continue;
            }
        };
        let account = super::mask_sid(auth.account_sid());
        let Some(found) = listing.find(number) else {
            refusals.push(Refusal {
                number: number.to_string(),
                at: Some(field_at(entry, "number")),
                reason: RefusalReason::NotOnTwilioAccount { account },
            });
            continue;
        };
        if !found.voice {
            refusals.push(Refusal {
                number: number.to_string(),
                at: Some(field_at(entry, "number")),
                reason: RefusalReason::NoVoiceCapability { account },
            });
            continue;
        }
        let elsewhere = |url: &Option<String>| {
            url.as_deref()
                .map(url_host)
                .filter(|h| !h.eq_ignore_ascii_case(vapi_host))
        };
        if let Some(host) = elsewhere(&found.voice_url) {
            warnings.push(TwilioWarning {
                number: number.to_string(),
                field: "voice_url",
                host,
                line: entry.line,
            });
        }
        if entry.sms_enabled
            && let Some(host) = elsewhere(&found.sms_url)
        {
            warnings.push(TwilioWarning {
                number: number.to_string(),
                field: "sms_url",
                host,
                line: entry.line,
            });
        }
    }
    if refusals.is_empty() {
        Ok(warnings)
    } else {
        Err(refusals)
    }
}

/// Twilio-side drift of one owner: every entry with a record whose number changed on Twilio
/// since. Pure. Entries without a decrypted token are skipped.
pub fn drift_findings(
    desired: &DesiredState,
    recorded: &BTreeMap<String, RecordedTwilioUrls>,
    listings: &BTreeMap<ListingKey, Result<AccountListing, TwilioError>>,
) -> Vec<TwilioDrift> {
    let mut out = Vec::new();
    for entry in desired.numbers.values().filter(|d| !d.absent) {
        let number = entry.number.as_str();
        let (Some(rec), Some(auth)) = (recorded.get(number), auth_of(entry)) else {
            continue;
        };
        // A record of another account is stale (the spec moved the number): nothing to compare.
        if rec.account_sid != entry.twilio.account_sid {
            continue;
        }
        match listings.get(&auth.listing_key()) {
            Some(Ok(listing)) => match listing.find(number) {
                None => out.push(TwilioDrift::new(
                    number,
                    TwilioDriftKind::LeftTwilioAccount {
                        account: super::mask_sid(&entry.twilio.account_sid),
                    },
                )),
                Some(now) => {
                    if now.voice_url != rec.voice_url {
                        out.push(TwilioDrift::new(
                            number,
                            TwilioDriftKind::VoiceUrlChangedInTwilio {
                                before: rec.voice_url.clone(),
                                after: now.voice_url.clone(),
                            },
                        ));
                    }
                    if now.sms_url != rec.sms_url {
                        out.push(TwilioDrift::new(
                            number,
                            TwilioDriftKind::SmsUrlChangedInTwilio {
                                before: rec.sms_url.clone(),
                                after: now.sms_url.clone(),
                            },
                        ));
                    }
                }
            },
            Some(Err(e)) => out.push(TwilioDrift::new(
                number,
                TwilioDriftKind::TwilioAccountUnreadable {
                    reason: e.to_string(),
                },
            )),
            None => {}
        }
    }
    out
}

/// Reads Twilio for plans, drift and the record after an apply. `None` client: the check is
/// off (`--twilio-check off`) and Twilio is never contacted.
#[derive(Debug, Clone)]
pub struct Preflight {
    client: Option<TwilioClient>,
    /// The host Vapi's URLs on Twilio point at (from the Vapi base URL).
    vapi_host: String,
}

impl Preflight {
    /// `client` is `None` when the check is off; `vapi_base_url` tells Vapi's URLs from others.
    pub fn new(client: Option<TwilioClient>, vapi_base_url: &str) -> Preflight {
        Preflight {
            client,
            vapi_host: url_host(vapi_base_url),
        }
    }

    pub fn is_on(&self) -> bool {
        self.client.is_some()
    }

    /// Checks every plan of a run against Twilio, reading each distinct account once for all
    /// of them; a refused owner's plan becomes [`Error::Refused`]. Plans that are already errors
    /// are left alone.
    ///
    /// # Errors
    /// [`Error::Twilio`] when Twilio cannot be read (unreachable, 5xx or 429 after retries):
    /// no plan is judged from a partial view.
    pub async fn check(
        &self,
        plans: &mut [(&DesiredState, &mut Result<Plan, Error>)],
    ) -> Result<(), Error> {
        let mut per_plan: Vec<Vec<Needed<'_>>> = Vec::with_capacity(plans.len());
        for (desired, plan) in plans.iter() {
            per_plan.push(match plan {
                Ok(p) => needs(desired, p),
                Err(_) => Vec::new(),
            });
        }
        let Some(client) = &self.client else {
            for ((_, plan), needed) in plans.iter_mut().zip(&per_plan) {
                if let Ok(p) = plan {
                    p.twilio = if needed.is_empty() {
                        TwilioCheck::NotNeeded
                    } else {
                        TwilioCheck::Off
                    };
                }
            }
            return Ok(());
        };
        let auths: Vec<TwilioAuth> = per_plan
            .iter()
            .flatten()
            .filter_map(|n| n.auth.clone())
            .collect();
        let listings = if auths.is_empty() {
            BTreeMap::new()
        } else {
            client.list_accounts(auths).await
        };
        if let Some(e) = listings
            .values()
            .filter_map(|l| l.as_ref().err())
            .find(|e| !e.is_about_the_account())
        {
            return Err(Error::Twilio(e.clone()));
        }
        for ((desired, plan), needed) in plans.iter_mut().zip(per_plan) {
            let Ok(p) = plan else { continue };
            let keyless = needed.iter().filter(|n| n.auth.is_none()).count();
            if needed.is_empty() {
                p.twilio = TwilioCheck::NotNeeded;
                continue;
            }
            if keyless > 0 {
                p.warnings.push(format!(
                    "Twilio preflight skipped for {keyless} entr{}: no identity to decrypt the token{} (give `--identity` to check them)",
                    if keyless == 1 { "y" } else { "ies" },
                    if keyless == 1 { "" } else { "s" }
                ));
            }
            match judge(&needed, &listings, &self.vapi_host) {
                Ok(warnings) => {
                    p.warnings
                        .extend(warnings.iter().map(TwilioWarning::message));
                    let accounts: BTreeSet<ListingKey> = needed
                        .iter()
                        .filter_map(|n| n.auth.as_ref().map(TwilioAuth::listing_key))
                        .collect();
                    let checked = needed.len() - keyless;
                    p.twilio = if checked == 0 {
                        TwilioCheck::SkippedKeyless { entries: keyless }
                    } else {
                        TwilioCheck::Checked {
                            accounts: accounts.len(),
                            entries: checked,
                            warnings,
                        }
                    };
                }
                Err(items) => {
                    **plan = Err(Error::Refused(Refusals {
                        spec_path: desired.spec_path.clone(),
                        items,
                    }));
                }
            }
        }
        Ok(())
    }

    /// The preflight of one plan (the single-spec path).
    ///
    /// # Errors
    /// As [`Preflight::check`], plus the plan's refusal.
    pub async fn check_one(&self, desired: &DesiredState, plan: Plan) -> Result<Plan, Error> {
        let mut result = Ok(plan);
        self.check(&mut [(desired, &mut result)]).await?;
        result
    }

    /// Twilio-side drift of every owner: reads what vapictl recorded, then each distinct
    /// account once, and puts the findings in each plan's `twilio_drift`.
    ///
    /// # Errors
    /// A failed database read, or [`Error::Twilio`] when Twilio cannot be read.
    pub async fn drift(
        &self,
        store: &Store,
        plans: &mut [(&DesiredState, &mut Plan)],
    ) -> Result<(), Error> {
        let Some(client) = &self.client else {
            return Ok(());
        };
        let mut recorded = Vec::with_capacity(plans.len());
        let mut auths = Vec::new();
        for (desired, plan) in plans.iter_mut() {
            let rec = store.twilio_urls(desired.owner).await?;
            let tracked: Vec<&DesiredNumber> = desired
                .numbers
                .values()
                .filter(|d| !d.absent && rec.contains_key(d.number.as_str()))
                .collect();
            let keyless = tracked.iter().filter(|d| auth_of(d).is_none()).count();
            if keyless > 0 {
                plan.warnings.push(format!(
                    "Twilio-side drift not checked for {keyless} entr{}: no identity to decrypt the token{} (give `--identity` to check them)",
                    if keyless == 1 { "y" } else { "ies" },
                    if keyless == 1 { "" } else { "s" }
                ));
            }
            auths.extend(tracked.into_iter().filter_map(auth_of));
            recorded.push(rec);
        }
        if auths.is_empty() {
            return Ok(());
        }
        let listings = client.list_accounts(auths).await;
        if let Some(e) = listings
            .values()
            .filter_map(|l| l.as_ref().err())
            .find(|e| !e.is_about_the_account())
        {
            return Err(Error::Twilio(e.clone()));
        }
        for ((desired, plan), rec) in plans.iter_mut().zip(recorded) {
            plan.twilio_drift = drift_findings(desired, &rec, &listings);
        }
        Ok(())
    }

    /// After an apply: records what Twilio shows for every number created, re-created or
    /// adopted successfully, reading each distinct account once for all the run's owners, and
    /// forgets deleted ones. The apply stands whatever happens here.
    ///
    /// # Errors
    /// A failed read of Twilio or write of the database (numbers recorded before it stay).
    pub async fn record(
        &self,
        store: &Store,
        applied: &[(&DesiredState, &ApplyReport)],
    ) -> Result<usize, Error> {
        let succeeded = |report: &'_ ApplyReport, actions: &[Action]| -> Vec<String> {
            report
                .outcomes
                .iter()
                .filter(|o| o.result.is_ok() && actions.contains(&o.action))
                .map(|o| o.number.clone())
                .collect()
        };
        for (desired, report) in applied {
            for number in succeeded(report, &[Action::Delete, Action::RemoveRow]) {
                store.forget_twilio_urls(desired.owner, &number).await?;
            }
        }
        let Some(client) = &self.client else {
            return Ok(0);
        };
        let mut entries: Vec<(Uuid, &DesiredNumber, TwilioAuth)> = Vec::new();
        for (desired, report) in applied {
            for number in succeeded(report, &[Action::Create, Action::Recreate, Action::Adopt]) {
                if let Some(entry) = desired
                    .numbers
                    .values()
                    .find(|d| d.number.as_str() == number)
                    && let Some(auth) = auth_of(entry)
                {
                    entries.push((desired.owner, entry, auth));
                }
            }
        }
        if entries.is_empty() {
            return Ok(0);
        }
        let listings = client
            .list_accounts(entries.iter().map(|(_, _, a)| a.clone()))
            .await;
        let mut recorded = 0;
        for (owner, entry, auth) in entries {
            let listing = match listings.get(&auth.listing_key()) {
                Some(Ok(l)) => l,
                Some(Err(e)) => return Err(Error::Twilio(e.clone())),
                None => continue,
            };
            let Some(found) = listing.find(entry.number.as_str()) else {
                continue;
            };
            store
                .record_twilio_urls(
                    owner,
                    &RecordedTwilioUrls {
                        phone_number: entry.number.as_str().to_string(),
                        account_sid: entry.twilio.account_sid.clone(),
                        voice_url: found.voice_url.clone(),
                        sms_url: found.sms_url.clone(),
                    },
                )
                .await?;
            recorded += 1;
        }
        Ok(recorded)
    }
}

#[cfg(test)]
#[path = "preflight_tests.rs"]
mod tests;
