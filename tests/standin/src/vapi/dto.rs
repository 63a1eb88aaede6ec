//! Vapi's request DTOs as the stand-in checks them, in the style of Vapi's NestJS/class-validator
//! backend: every problem is collected into one list of messages, so clients see the same 400
//! shape as from the real API. Also the list queries (paging, sorting, date filters) the routes
//! accept.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde_json::{Map, Value};

use super::model::{DateFilter, SortOrder};

/// Fields of CreateTwilioPhoneNumberDTO (the update DTO has the same set, none required).
const TWILIO_FIELDS: [&str; 14] = [
    "fallbackDestination",
    "hooks",
    "provider",
    "smsEnabled",
    "number",
    "twilioAccountSid",
    "twilioAuthToken",
    "twilioApiKey",
    "twilioApiSecret",
    "name",
    "assistantId",
    "workflowId",
    "squadId",
    "server",
];

const PROVIDERS: &str = "byo-phone-number, twilio, vonage, vapi, telnyx";

const SERVER_FIELDS: [&str; 7] = [
    "timeoutSeconds",
    "credentialId",
    "staticIpAddressesEnabled",
    "encryptedPaths",
    "url",
    "headers",
    "backoffPlan",
];

/// Top-level fields of CreateAssistantDTO; the stand-in stores them without looking inside.
const ASSISTANT_FIELDS: [&str; 31] = [
    "transcriber",
    "model",
    "voice",
    "firstMessage",
    "firstMessageInterruptionsEnabled",
    "firstMessageMode",
    "voicemailDetection",
    "clientMessages",
    "serverMessages",
    "maxDurationSeconds",
    "backgroundSound",
    "modelOutputInMessagesEnabled",
    "transportConfigurations",
    "observabilityPlan",
    "credentials",
    "hooks",
    "name",
    "voicemailMessage",
    "endCallMessage",
    "endCallPhrases",
    "compliancePlan",
    "metadata",
    "backgroundSpeechDenoisingPlan",
    "analysisPlan",
    "artifactPlan",
    "startSpeakingPlan",
    "stopSpeakingPlan",
    "monitorPlan",
    "credentialIds",
    "server",
    "keypadInputPlan",
];

/// `+` then 8 to 15 digits: the shape Vapi's E.164 check lets through.
pub fn looks_e164(s: &str) -> bool {
    let Some(digits) = s.strip_prefix('+') else {
        return false;
    };
    (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
}

/// Checks a POST /phone-number body. Only the Twilio variant is accepted over HTTP; other
/// providers can still be seeded through the model.
pub fn create_phone_number(body: &Map<String, Value>) -> Result<(), Vec<String>> {
    let mut errs = Vec::new();
    match body.get("provider") {
        Some(Value::String(p)) if p == "twilio" => {}
        Some(Value::String(p)) if PROVIDERS.split(", ").any(|k| k == p) => {
            errs.push(format!(
                "provider {p} is not supported by the stand-in over HTTP; seed it instead"
            ));
            return Err(errs);
        }
        _ => {
            errs.push(format!(
                "provider must be one of the following values: {PROVIDERS}"
            ));
            return Err(errs);
        }
    }
    twilio_fields(body, true, &mut errs);
    schema_errors(
        super::openapi::check_create(&Value::Object(body.clone())),
        &mut errs,
    );
    finish(errs)
}

/// Adds the problems Vapi's published schema finds that the checks above did not word already.
fn schema_errors(found: Vec<String>, errs: &mut Vec<String>) {
    for e in found {
        if !errs.contains(&e) {
            errs.push(e);
        }
    }
}

/// Checks a PATCH /phone-number/{id} body against UpdateTwilioPhoneNumberDTO.
pub fn update_phone_number(body: &Map<String, Value>) -> Result<(), Vec<String>> {
    let mut errs = Vec::new();
    match body.get("provider") {
        None | Some(Value::Null) => {}
        Some(Value::String(p)) if p == "twilio" => {}
        Some(_) => errs.push("provider must be one of the following values: twilio".into()),
    }
    twilio_fields(body, false, &mut errs);
    schema_errors(
        super::openapi::check_update(&Value::Object(body.clone())),
        &mut errs,
    );
    finish(errs)
}

/// Drops the refusals of `server` sub-fields that the number's stored `server` already has: Vapi
/// knows the fields it returns itself, even when the bundled schema (a snapshot) does not — which
/// is how a client that keeps sub-fields it does not model is tested against "a field Vapi added
/// later".
pub fn known_to_vapi(errs: Vec<String>, current: &Value) -> Result<(), Vec<String>> {
    let stored = current.get("server").and_then(Value::as_object);
    let left: Vec<String> = errs
        .into_iter()
        .filter(|e| {
            let field = e
                .strip_prefix("server.property ")
                .and_then(|r| r.strip_suffix(" should not exist"));
            !field.is_some_and(|f| stored.is_some_and(|s| s.contains_key(f)))
        })
        .collect();
    finish(left)
}

/// Checks a POST /assistant body: known top-level fields only, `name` at most 40 characters.
pub fn create_assistant(body: &Map<String, Value>) -> Result<(), Vec<String>> {
    let mut errs = Vec::new();
    unknown(body, &ASSISTANT_FIELDS, "", &mut errs);
    opt_string(body, "name", "", &mut errs);
    max_len(body, "name", 40, "", &mut errs);
    finish(errs)
}

fn finish(errs: Vec<String>) -> Result<(), Vec<String>> {
    if errs.is_empty() { Ok(()) } else { Err(errs) }
}

fn twilio_fields(body: &Map<String, Value>, create: bool, errs: &mut Vec<String>) {
    unknown(body, &TWILIO_FIELDS, "", errs);

    for field in ["number", "twilioAccountSid"] {
        match body.get(field) {
            Some(Value::String(_)) => {}
            None if !create => {}
            // `null` cannot clear a field the response schema requires.
            _ => errs.push(format!("{field} must be a string")),
        }
    }
    if let Some(Value::String(n)) = body.get("number")
        && !looks_e164(n)
    {
        errs.push("number must be a valid phone number in E.164 format".into());
    }

    for field in [
        "name",
        "assistantId",
        "workflowId",
        "squadId",
        "twilioAuthToken",
        "twilioApiKey",
        "twilioApiSecret",
    ] {
        opt_string(body, field, "", errs);
    }
    max_len(body, "name", 40, "", errs);

    if let Some(v) = body.get("smsEnabled")
        && !v.is_null()
        && !v.is_boolean()
    {
        errs.push("smsEnabled must be a boolean value".into());
    }

    match body.get("server") {
        None | Some(Value::Null) => {}
        Some(Value::Object(s)) => server(s, errs),
        Some(_) => errs.push("nested property server must be either object or array".into()),
    }

    match body.get("fallbackDestination") {
        None | Some(Value::Null) => {}
        Some(Value::Object(d)) => fallback(d, errs),
        Some(_) => {
            errs.push("nested property fallbackDestination must be either object or array".into())
        }
    }

    match body.get("hooks") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                match item.get("on").and_then(Value::as_str) {
                    Some("call.ringing" | "call.ending") => {}
                    _ => errs.push(format!(
                        "hooks.{i}.on must be one of the following values: call.ringing, call.ending"
                    )),
                }
            }
        }
        Some(_) => errs.push("hooks must be an array".into()),
    }
}

fn server(s: &Map<String, Value>, errs: &mut Vec<String>) {
    unknown(s, &SERVER_FIELDS, "server.", errs);
    for f in ["url", "credentialId"] {
        opt_string(s, f, "server.", errs);
    }
    if let Some(v) = s.get("timeoutSeconds") {
        match v.as_f64() {
            Some(t) if t < 1.0 => errs.push("server.timeoutSeconds must not be less than 1".into()),
            Some(t) if t > 300.0 => {
                errs.push("server.timeoutSeconds must not be greater than 300".into())
            }
            Some(_) => {}
            None => errs.push(
                "server.timeoutSeconds must be a number conforming to the specified constraints"
                    .into(),
            ),
        }
    }
    if let Some(v) = s.get("staticIpAddressesEnabled")
        && !v.is_boolean()
    {
        errs.push("server.staticIpAddressesEnabled must be a boolean value".into());
    }
    if let Some(v) = s.get("headers")
        && !v.is_object()
    {
        errs.push("server.headers must be an object".into());
    }
    if let Some(v) = s.get("encryptedPaths") {
        let ok = v.as_array().is_some_and(|a| a.iter().all(Value::is_string));
        if !ok {
            errs.push("server.each value in encryptedPaths must be a string".into());
        }
    }
}

fn fallback(d: &Map<String, Value>, errs: &mut Vec<String>) {
    const NUMBER: [&str; 8] = [
        "message",
        "type",
        "numberE164CheckEnabled",
        "number",
        "extension",
        "callerId",
        "transferPlan",
        "description",
    ];
    const SIP: [&str; 7] = [
        "message",
        "type",
        "sipUri",
        "callerId",
        "transferPlan",
        "sipHeaders",
        "description",
    ];
    let p = "fallbackDestination.";
    match d.get("type").and_then(Value::as_str) {
        Some("number") => {
            unknown(d, &NUMBER, p, errs);
            match d.get("number") {
                Some(Value::String(n)) => {
                    let len = n.chars().count();
                    if len < 3 {
                        errs.push(format!(
                            "{p}number must be longer than or equal to 3 characters"
                        ));
                    } else if len > 40 {
                        errs.push(format!(
                            "{p}number must be shorter than or equal to 40 characters"
                        ));
                    }
                }
                _ => errs.push(format!("{p}number must be a string")),
            }
        }
        Some("sip") => {
            unknown(d, &SIP, p, errs);
            if !d.get("sipUri").is_some_and(Value::is_string) {
                errs.push(format!("{p}sipUri must be a string"));
            }
        }
        _ => errs.push(format!(
            "{p}type must be one of the following values: number, sip"
        )),
    }
}

fn unknown(body: &Map<String, Value>, known: &[&str], prefix: &str, errs: &mut Vec<String>) {
    for k in body.keys() {
        if !known.contains(&k.as_str()) {
            errs.push(format!("{prefix}property {k} should not exist"));
        }
    }
}

fn opt_string(body: &Map<String, Value>, field: &str, prefix: &str, errs: &mut Vec<String>) {
    if let Some(v) = body.get(field)
        && !v.is_null()
        && !v.is_string()
    {
        errs.push(format!("{prefix}{field} must be a string"));
    }
}

fn max_len(
    body: &Map<String, Value>,
    field: &str,
    max: usize,
    prefix: &str,
    errs: &mut Vec<String>,
) {
    if let Some(Value::String(s)) = body.get(field)
        // JavaScript counts UTF-16 units; that is what the real limit measures.
        && s.encode_utf16().count() > max
    {
        errs.push(format!(
            "{prefix}{field} must be shorter than or equal to {max} characters"
        ));
    }
}

// ---- query strings ----------------------------------------------------------------------------

/// The parsed query of a v1 list (`GET /phone-number`, `GET /assistant`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub limit: usize,
    pub filter: DateFilter,
}

/// The parsed query of `GET /v2/phone-number`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageQuery {
    pub limit: usize,
    pub page: usize,
    pub order: SortOrder,
    pub search: Option<String>,
    pub filter: DateFilter,
}

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

pub fn list_query(pairs: &[(String, String)]) -> Result<ListQuery, Vec<String>> {
    let mut errs = Vec::new();
    let mut q = ListQuery {
        limit: DEFAULT_LIMIT,
        filter: DateFilter::default(),
    };
    for (k, v) in single(pairs, &mut errs) {
        if k == "limit" {
            if let Some(n) = limit(v, &mut errs) {
                q.limit = n;
            }
        } else if !date_param(&mut q.filter, k, v, &mut errs) {
            errs.push(format!("property {k} should not exist"));
        }
    }
    finish(errs).map(|()| q)
}

pub fn page_query(pairs: &[(String, String)]) -> Result<PageQuery, Vec<String>> {
    let mut errs = Vec::new();
    let mut q = PageQuery {
        limit: DEFAULT_LIMIT,
        page: 1,
        order: SortOrder::Desc,
        search: None,
        filter: DateFilter::default(),
    };
    for (k, v) in single(pairs, &mut errs) {
        match k {
            "limit" => {
                if let Some(n) = limit(v, &mut errs) {
                    q.limit = n;
                }
            }
            "page" => match integer(v) {
                Some(n) if n >= 1 => q.page = n as usize,
                Some(_) => errs.push("page must not be less than 1".into()),
                None => errs
                    .push("page must be a number conforming to the specified constraints".into()),
            },
            "sortOrder" => match v {
                "ASC" => q.order = SortOrder::Asc,
                "DESC" => q.order = SortOrder::Desc,
                _ => errs.push("sortOrder must be one of the following values: ASC, DESC".into()),
            },
            // Numbers have no duration or cost; the real API presumably falls back to
            // createdAt for them, so the stand-in does too.
            "sortBy" => {
                if !matches!(v, "createdAt" | "duration" | "cost") {
                    errs.push(
                        "sortBy must be one of the following values: createdAt, duration, cost"
                            .into(),
                    );
                }
            }
            "search" => {
                if v.encode_utf16().count() > 100 {
                    errs.push("search must be shorter than or equal to 100 characters".into());
                } else {
                    q.search = Some(v.to_owned());
                }
            }
            _ => {
                if !date_param(&mut q.filter, k, v, &mut errs) {
                    errs.push(format!("property {k} should not exist"));
                }
            }
        }
    }
    finish(errs).map(|()| q)
}

/// Yields each parameter once; a repeated one arrives at class-validator as an array, which
/// fails every scalar check, so it is reported rather than silently picking one value.
fn single<'a>(pairs: &'a [(String, String)], errs: &mut Vec<String>) -> Vec<(&'a str, &'a str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for (k, v) in pairs {
        if out.iter().any(|(seen, _)| seen == k) {
            let msg = format!("{k} must not be repeated");
            if !errs.contains(&msg) {
                errs.push(msg);
            }
        } else {
            out.push((k, v));
        }
    }
    out
}

fn integer(v: &str) -> Option<i64> {
    let f: f64 = v.trim().parse().ok()?;
    (f.is_finite() && f.fract() == 0.0).then_some(f as i64)
}

fn limit(v: &str, errs: &mut Vec<String>) -> Option<usize> {
    match integer(v) {
        Some(n) if n < 0 => errs.push("limit must not be less than 0".into()),
        Some(n) if n > MAX_LIMIT as i64 => {
            errs.push(format!("limit must not be greater than {MAX_LIMIT}"))
        }
        Some(n) => return Some(n as usize),
        None => errs.push("limit must be a number conforming to the specified constraints".into()),
    }
    None
}

/// Handles one of the eight date filters; `false` if `k` is not one of them.
fn date_param(f: &mut DateFilter, k: &str, v: &str, errs: &mut Vec<String>) -> bool {
    let slot = match k {
        "createdAtGt" => &mut f.created_gt,
        "createdAtLt" => &mut f.created_lt,
        "createdAtGe" => &mut f.created_ge,
        "createdAtLe" => &mut f.created_le,
        "updatedAtGt" => &mut f.updated_gt,
        "updatedAtLt" => &mut f.updated_lt,
        "updatedAtGe" => &mut f.updated_ge,
        "updatedAtLe" => &mut f.updated_le,
        _ => return false,
    };
    match parse_date(v) {
        Some(t) => *slot = Some(t),
        None => errs.push(format!("{k} must be a valid ISO 8601 date string")),
    }
    true
}

/// Accepts the ISO-8601 forms a JavaScript `new Date()` would: full RFC 3339, a local
/// date-time (taken as UTC), or a bare date.
pub fn parse_date(v: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Some(t.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(v, fmt) {
            return Some(t.and_utc());
        }
    }
    NaiveDate::parse_from_str(v, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

/// The v2 `search` match: a case-insensitive substring of the name, number or SIP URI; a search
/// made only of digits and phone punctuation also matches the number's digits, so
/// `(415) 555-0100` finds `+14155550100`.
pub fn search_matches(doc: &Map<String, Value>, search: &str) -> bool {
    let needle = search.to_lowercase();
    let hay = ["name", "number", "sipUri"];
    if hay.iter().any(|f| {
        doc.get(*f)
            .and_then(Value::as_str)
            .is_some_and(|s| s.to_lowercase().contains(&needle))
    }) {
        return true;
    }
    let phoneish = !search.contains('+')
        && search.chars().any(|c| c.is_ascii_digit())
        && search
            .chars()
            .all(|c| c.is_ascii_digit() || " -().".contains(c));
    if !phoneish {
        return false;
    }
    let digits: String = search.chars().filter(char::is_ascii_digit).collect();
    doc.get("number").and_then(Value::as_str).is_some_and(|n| {
        n.chars()
            .filter(char::is_ascii_digit)
            .collect::<String>()
            .contains(&digits)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn e164_shape() {
        assert!(looks_e164("+14155550100"));
        assert!(looks_e164("+49301234"));
        assert!(!looks_e164("14155550100"));
        assert!(!looks_e164("+1415555"));
        assert!(!looks_e164("+1234567890123456"));
        assert!(!looks_e164("+1 415 555 0100"));
    }

    #[test]
    fn create_reports_every_problem() {
        let errs = create_phone_number(&obj(json!({
            "provider": "twilio",
            "name": "x".repeat(41),
            "bogus": 1,
            "server": {"timeoutSeconds": 301, "secret": "s"},
        })))
        .unwrap_err();
        for want in [
            "property bogus should not exist",
            "number must be a string",
            "twilioAccountSid must be a string",
            "name must be shorter than or equal to 40 characters",
            "server.timeoutSeconds must not be greater than 300",
            "server.property secret should not exist",
        ] {
            assert!(
                errs.iter().any(|e| e == want),
                "missing {want:?} in {errs:?}"
            );
        }
    }

    #[test]
    fn update_allows_nulls_but_not_for_required_fields() {
        assert!(update_phone_number(&obj(json!({"assistantId": null, "server": null}))).is_ok());
        assert!(update_phone_number(&obj(json!({"number": null}))).is_err());
        assert!(update_phone_number(&obj(json!({"provider": "vonage"}))).is_err());
    }

    #[test]
    fn list_query_limits() {
        assert_eq!(list_query(&[]).unwrap().limit, 100);
        assert_eq!(
            list_query(&pairs(&[("limit", "1000")])).unwrap().limit,
            1000
        );
        assert!(list_query(&pairs(&[("limit", "1001")])).is_err());
        assert!(list_query(&pairs(&[("limit", "abc")])).is_err());
        assert!(list_query(&pairs(&[("limit", "-1")])).is_err());
        assert_eq!(
            list_query(&pairs(&[("page", "2")])).unwrap_err(),
            vec!["property page should not exist"]
        );
        assert!(list_query(&pairs(&[("createdAtLt", "yesterday")])).is_err());
        assert!(list_query(&pairs(&[("createdAtLt", "2026-11-25T10:00:00.000Z")])).is_ok());
    }

    #[test]
    fn search_by_digits() {
        let doc = obj(json!({"number": "+14155550100", "name": "Front Desk"}));
        assert!(search_matches(&doc, "front"));
        assert!(search_matches(&doc, "(415) 555-0100"));
        assert!(search_matches(&doc, "+1415"));
        assert!(!search_matches(&doc, "+415"));
        assert!(!search_matches(&doc, "desk 2"));
    }
}
