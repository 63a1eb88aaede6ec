//! Which rows and Vapi numbers are the same number: rows are matched by the E.164 form of their
//! `phone_number` (however the application wrote it) and by their `vapi_phone_id`.
//!
//! # Canonical forms
//! A stored number is read as follows:
//! - already E.164-looking (`+`, then 7 to 15 digits, the first not `0`): taken as is;
//! - international (`+1 415-555-7002`, `+1 (415) 555-7002`, `0014155557002`, `00 44 …`): parsed
//!   without a region (a leading `00` is read as `+`) and written in E.164;
//! - national (`4155557002`, `(415) 555-7002`, `14155557002`, `020 7946 0958`): it has no country
//!   of its own, so it is read in the country of each number it is compared against — the spec's
//!   and Vapi's numbers — and matches the one whose E.164 form it then has. A national form that
//!   matches several of them is ambiguous and left alone; one that matches none is a number
//!   that neither the spec nor Vapi has.
//!
//! Anything else (no digits to speak of) is not a phone number vapictl can read: it is left
//! alone and listed as out of scope.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::refusal::RefusalReason;
use crate::state::{ObservedNumber, PhoneRow};

/// `+`, then 7 to 15 digits, the first not `0`: a string that is its own E.164 form.
pub(crate) fn looks_canonical(s: &str) -> bool {
    let Some(digits) = s.strip_prefix('+') else {
        return false;
    };
    (7..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

/// The E.164 form of `raw` read as an international number, or as a national number of `region`.
pub(crate) fn canonical_number(
    raw: &str,
    region: Option<phonenumber::country::Id>,
) -> Option<String> {
    let raw = raw.trim();
    if looks_canonical(raw) {
        return Some(raw.to_string());
    }
    let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
    let international = if raw.starts_with('+') {
        Some(raw.to_string())
    } else {
        digits.strip_prefix("00").map(|rest| format!("+{rest}"))
    };
    let parsed = match international {
        Some(text) => phonenumber::parse(None, text),
        None => phonenumber::parse(Some(region?), raw),
    }
    .ok()?;
    let e164 = parsed.format().mode(phonenumber::Mode::E164).to_string();
    looks_canonical(&e164).then_some(e164)
}

/// Whether `raw` is written as an international number (it carries its country).
fn is_international(raw: &str) -> bool {
    let raw = raw.trim();
    raw.starts_with('+')
        || raw
            .trim_start_matches(|c: char| !c.is_ascii_digit())
            .starts_with("00")
}

/// What a stored number is, compared with the numbers in question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NumberMatch {
    /// This E.164 number.
    One(String),
    /// A national form that reads as several numbers in question.
    Several(Vec<String>),
    /// A phone number that is none of the numbers in question (its key is the stored text).
    Elsewhere,
    /// Not a phone number vapictl can read.
    Unreadable,
}

/// Reads stored numbers against the numbers in question (the spec's and Vapi's).
pub(crate) struct NumberReader<'a> {
    known: &'a BTreeSet<String>,
    /// The countries of the known numbers, computed on the first national form.
    regions: Option<Vec<phonenumber::country::Id>>,
}

impl<'a> NumberReader<'a> {
    pub(crate) fn new(known: &'a BTreeSet<String>) -> Self {
        NumberReader {
            known,
            regions: None,
        }
    }

    pub(crate) fn read(&mut self, raw: &str) -> NumberMatch {
        if looks_canonical(raw) {
            return NumberMatch::One(raw.to_string());
        }
        if is_international(raw) {
            return match canonical_number(raw, None) {
                Some(n) => NumberMatch::One(n),
                None => NumberMatch::Unreadable,
            };
        }
        let digits = raw.chars().filter(char::is_ascii_digit).count();
        let phone_like = raw
            .chars()
            .all(|c| c.is_ascii_digit() || " ()-./".contains(c));
        if !(4..=17).contains(&digits) || !phone_like {
            return NumberMatch::Unreadable;
        }
        let known = self.known;
        let regions = self.regions.get_or_insert_with(|| {
            let mut regions = Vec::new();
            for id in known
                .iter()
                .filter_map(|n| phonenumber::parse(None, n).ok()?.country().id())
            {
                if !regions.contains(&id) {
                    regions.push(id);
                }
            }
            regions
        });
        let hits: BTreeSet<String> = regions
            .iter()
            .filter_map(|r| canonical_number(raw, Some(*r)))
            .filter(|n| known.contains(n))
            .collect();
        let mut hits: Vec<String> = hits.into_iter().collect();
        match hits.len() {
            0 => NumberMatch::Elsewhere,
            1 => NumberMatch::One(hits.remove(0)),
            _ => NumberMatch::Several(hits),
        }
    }
}

/// An owner's row that vapictl leaves alone because its number cannot be read unambiguously.
#[derive(Debug, Clone)]
pub(crate) struct Unmatched<'a> {
    pub row: &'a PhoneRow,
    pub reason: String,
}

/// Rows and Vapi numbers grouped by the number they are.
#[derive(Debug, Default)]
pub(crate) struct Matched<'a> {
    /// The owner's rows by number (E.164, or the stored text for a number nobody else has).
    pub rows: BTreeMap<String, Vec<&'a PhoneRow>>,
    pub unmatched: Vec<Unmatched<'a>>,
    /// Other users' rows by number: (user, the number as they stored it).
    pub claims: BTreeMap<String, (Uuid, String)>,
    /// Vapi's numbers by number.
    pub in_vapi: BTreeMap<&'a str, Vec<&'a ObservedNumber>>,
}

/// Groups the owner's rows and other users' claims by number.
pub(crate) fn match_numbers<'a>(
    spec_numbers: impl Iterator<Item = &'a str>,
    rows: &'a BTreeMap<String, PhoneRow>,
    foreign: &'a BTreeMap<String, Uuid>,
    observed: &'a [ObservedNumber],
) -> Matched<'a> {
    let mut m = Matched::default();
    let mut by_id: BTreeMap<&str, &ObservedNumber> = BTreeMap::new();
    for o in observed {
        by_id.insert(o.id.as_str(), o);
        if let Some(n) = o.number.as_deref() {
            m.in_vapi.entry(n).or_default().push(o);
        }
    }
    let known: BTreeSet<String> = spec_numbers
        .map(str::to_string)
        .chain(m.in_vapi.keys().map(|k| k.to_string()))
        .collect();
    let mut reader = NumberReader::new(&known);
    for row in rows.values() {
        // The Vapi number the row records, when it still exists, is a second way to match.
        let by_vapi_id = row
            .vapi_phone_id
            .as_deref()
            .and_then(|id| by_id.get(id))
            .and_then(|o| o.number.clone());
        let key = match reader.read(&row.phone_number) {
            NumberMatch::One(n) => n,
            NumberMatch::Elsewhere => by_vapi_id.unwrap_or_else(|| row.phone_number.clone()),
            NumberMatch::Several(all) => match by_vapi_id {
                Some(n) if all.contains(&n) => n,
                _ => {
                    m.unmatched.push(Unmatched {
                        row,
                        reason: format!(
                            "the stored number `{}` could be any of {}; write it in E.164 in the application",
                            row.phone_number,
                            all.join(", ")
                        ),
                    });
                    continue;
                }
            },
            NumberMatch::Unreadable => match by_vapi_id {
                Some(n) => n,
                None => {
                    m.unmatched.push(Unmatched {
                        row,
                        reason: format!(
                            "the stored number `{}` is not a phone number vapictl can read",
                            row.phone_number
                        ),
                    });
                    continue;
                }
            },
        };
        m.rows.entry(key).or_default().push(row);
    }
    for (stored, user) in foreign {
        let numbers = match reader.read(stored) {
            NumberMatch::One(n) => vec![n],
            // Ambiguous: a claim on each, so that none of them is taken from that user.
            NumberMatch::Several(all) => all,
            NumberMatch::Elsewhere | NumberMatch::Unreadable => vec![],
        };
        for n in numbers {
            m.claims.entry(n).or_insert((*user, stored.clone()));
        }
    }
    m
}

/// The Vapi record a number maps to, plus unrecorded duplicates to warn about.
///
/// # Errors
/// [`RefusalReason::DuplicateInVapi`] when Vapi lists the number several times and the row names
/// none of the copies.
pub(crate) fn pick_observed<'a>(
    row: Option<&PhoneRow>,
    found: &[&'a ObservedNumber],
) -> Result<(Option<&'a ObservedNumber>, Vec<&'a ObservedNumber>), RefusalReason> {
    match found {
        [] => Ok((None, vec![])),
        [one] => Ok((Some(*one), vec![])),
        many => {
            let recorded_id = row.and_then(|r| r.vapi_phone_id.as_deref());
            match many.iter().find(|o| Some(o.id.as_str()) == recorded_id) {
                Some(hit) => Ok((
                    Some(*hit),
                    many.iter().filter(|o| o.id != hit.id).copied().collect(),
                )),
                None => Err(RefusalReason::DuplicateInVapi {
                    ids: many.iter().map(|o| o.id.clone()).collect(),
                }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(ns: &[&str]) -> BTreeSet<String> {
        ns.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn international_forms_read_as_e164() {
        for raw in [
            "+14155557002",
            "+1 415-555-7002",
            "+1 (415) 555-7002",
            "0014155557002",
            "00 1 415 555 7002",
            " +14155557002 ",
        ] {
            let k = known(&[]);
            assert_eq!(
                NumberReader::new(&k).read(raw),
                NumberMatch::One("+14155557002".into()),
                "{raw}"
            );
        }
    }

    #[test]
    fn national_forms_read_in_the_country_they_are_compared_with() {
        let k = known(&["+14155557002", "+442079460958"]);
        let mut r = NumberReader::new(&k);
        for raw in [
            "4155557002",
            "(415) 555-7002",
            "415.555.7002",
            "14155557002",
        ] {
            assert_eq!(
                r.read(raw),
                NumberMatch::One("+14155557002".into()),
                "{raw}"
            );
        }
        assert_eq!(
            r.read("020 7946 0958"),
            NumberMatch::One("+442079460958".into())
        );
        assert_eq!(r.read("4155550000"), NumberMatch::Elsewhere);
    }

    #[test]
    fn text_that_is_no_number_is_unreadable() {
        let k = known(&["+14155557002"]);
        let mut r = NumberReader::new(&k);
        assert_eq!(r.read("n/a"), NumberMatch::Unreadable);
        assert_eq!(r.read(""), NumberMatch::Unreadable);
        assert_eq!(r.read("+1 call me"), NumberMatch::Unreadable);
    }
}
