//! Spec + identities → [`DesiredState`], collecting every problem with its file position (pure).
//!
//! This file holds the document: the driver, the spec-wide rules (version, owner, defaults, a
//! number listed twice) and the [`Problems`] it reports. The rules of one `phoneNumbers` entry are
//! in `rules.rs`; how a token is checked and decrypted is the secrets' business
//! ([`crate::secrets::TokenCache`]).

mod rules;

pub use rules::{is_api_key_sid, looks_secret_header};
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;

use uuid::Uuid;

pub use crate::secrets::SecretMode;
use crate::secrets::{Identities, TokenCache};
use crate::spec::{LoadedSpec, Location, SPEC_VERSION};
use crate::state::DesiredState;

/// One thing wrong with the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub location: Location,
    /// The field's path, e.g. `phoneNumbers[2].number`.
    pub field: String,
    pub message: String,
    pub hint: Option<String>,
}

/// Every problem found in one spec file.
#[derive(Debug, Clone)]
pub struct Problems {
    pub path: PathBuf,
    pub items: Vec<Problem>,
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.items.len();
        writeln!(
            f,
            "spec `{}` is invalid: {n} problem{}",
            self.path.display(),
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.items {
            writeln!(
                f,
                "{}:{}: `{}`: {}",
                self.path.display(),
                p.location,
                p.field,
                p.message
            )?;
            if let Some(h) = &p.hint {
                writeln!(f, "  hint: {h}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

struct Collector<'a> {
    loaded: &'a LoadedSpec,
    items: Vec<Problem>,
}

impl Collector<'_> {
    fn push(&mut self, field: &str, message: impl Into<String>, hint: Option<String>) {
        self.items.push(Problem {
            location: self.loaded.locations.of(field),
            field: field.to_string(),
            message: message.into(),
            hint,
        });
    }
}

/// Checks the spec and decrypts its tokens.
///
/// # Errors
/// Every problem found, in file order: nothing is planned or applied from an invalid spec.
pub fn validate(
    loaded: &LoadedSpec,
    identities: &Identities,
    mode: SecretMode,
) -> Result<DesiredState, Problems> {
    let spec = &loaded.spec;
    let mut c = Collector {
        loaded,
        items: Vec::new(),
    };

    for (path, first, _second) in &loaded.locations.duplicate_keys {
        c.push(
            path,
            format!("key appears twice (first at line {})", first.line),
            Some("keep one of them".into()),
        );
    }

    if spec.version != SPEC_VERSION {
        c.push(
            "version",
            format!("unsupported spec version `{}`", spec.version),
            Some(format!("this vapictl reads `version: {SPEC_VERSION}`")),
        );
    }
    let owner = match Uuid::parse_str(spec.owner.trim()) {
        Ok(u) if spec.owner.trim() == spec.owner => Some(u),
        _ => {
            c.push(
                "owner",
                format!("`{}` is not a UUID", spec.owner),
                Some(
                    "use the owner's `users.id`, e.g. `3f1c2b7e-0000-4000-8000-000000000001`"
                        .into(),
                ),
            );
            None
        }
    };

    let mut tokens = TokenCache::new(identities, mode);
    let default_twilio = spec.defaults.as_ref().and_then(|d| d.twilio.as_ref());
    let defaults = rules::Defaults {
        twilio: default_twilio
            .map(|t| rules::check_twilio(&mut c, &mut tokens, "defaults.twilio", t)),
        sms_enabled: spec.defaults.as_ref().and_then(|d| d.sms_enabled),
        target: spec.defaults.as_ref().and_then(|d| {
            rules::check_target(
                &mut c,
                "defaults",
                d.assistant.as_deref(),
                d.squad.as_deref(),
            );
            match (&d.assistant, &d.squad) {
                (Some(a), None) => Some(("assistant", a.clone())),
                (None, Some(q)) => Some(("squad", q.clone())),
                _ => None,
            }
        }),
    };

    let mut numbers = BTreeMap::new();
    let mut seen: HashMap<String, String> = HashMap::new();
    for (i, entry) in spec.phone_numbers.iter().enumerate() {
        let base = format!("phoneNumbers[{i}]");
        let field = format!("{base}.number");
        let number = rules::check_number(&mut c, &field, &entry.number);
        if let Some(n) = &number {
            if let Some(first) = seen.get(n.as_str()) {
                let first_loc = loaded.locations.of(first);
                c.push(
                    &field,
                    format!(
                        "`{n}` is listed twice (also at line {}, `{first}`)",
                        first_loc.line
                    ),
                    Some("keep one entry per number".into()),
                );
            } else {
                seen.insert(n.as_str().to_string(), field);
            }
        }
        if let Some(desired) =
            rules::check_entry(&mut c, &mut tokens, &defaults, &base, entry, number)
        {
            numbers.insert(desired.number.clone(), desired);
        }
    }

    if !c.items.is_empty() {
        c.items.sort_by_key(|p| p.location);
        return Err(Problems {
            path: loaded.path.clone(),
            items: c.items,
        });
    }
    Ok(DesiredState {
        owner: owner.expect("no problems means the owner parsed"),
        numbers,
        spec_digest: loaded.digest.clone(),
        spec_path: loaded.path.clone(),
    })
}
