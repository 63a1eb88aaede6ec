//! Vapi's own request schemas for Twilio phone numbers (`CreateTwilioPhoneNumberDTO`,
//! `UpdateTwilioPhoneNumberDTO` and everything they reference, copied from Vapi's OpenAPI
//! document into `openapi-twilio-phone-number.json`), and a validator for the subset of JSON
//! Schema they use. Every POST and PATCH body the stand-in receives is checked against them, so
//! a client that passes the stand-in sends what Vapi's published schema accepts.
//!
//! Reading of the keywords, as Vapi's NestJS/class-validator backend applies them:
//! - properties not declared by an object schema are refused (`forbidNonWhitelisted`);
//! - `null` is accepted for optional properties of an update (the controller reads it as
//!   "clear"), never for required ones;
//! - `maxLength` on an array bounds its length (class-validator's `ArrayMaxSize`), and `enum` on
//!   an array applies to each item;
//! - `type: object` with an `enum` and no properties is the generator's rendering of a TypeScript
//!   enum or an untyped value (`BackoffPlan.type`, `excludedStatusCodes` items): only the `enum`
//!   is checked, the type is not.

use std::sync::LazyLock;

use serde_json::{Map, Value};

static DOC: LazyLock<Value> = LazyLock::new(|| {
    serde_json::from_str(include_str!("openapi-twilio-phone-number.json"))
        .expect("the bundled schema is JSON")
});

fn schema(name: &str) -> &'static Value {
    DOC.get("schemas")
        .and_then(|s| s.get(name))
        .unwrap_or_else(|| panic!("schema {name} is bundled"))
}

/// Problems of a POST /phone-number body (provider `twilio`) against `CreateTwilioPhoneNumberDTO`.
pub fn check_create(body: &Value) -> Vec<String> {
    let mut errs = Vec::new();
    check(
        body,
        schema("CreateTwilioPhoneNumberDTO"),
        "",
        false,
        &mut errs,
    );
    errs
}

/// Problems of a PATCH /phone-number/{id} body against `UpdateTwilioPhoneNumberDTO`.
pub fn check_update(body: &Value) -> Vec<String> {
    let mut errs = Vec::new();
    check(
        body,
        schema("UpdateTwilioPhoneNumberDTO"),
        "",
        true,
        &mut errs,
    );
    errs
}

fn resolve(s: &'static Value) -> &'static Value {
    match s.get("$ref").and_then(Value::as_str) {
        Some(r) => schema(r.rsplit('/').next().unwrap_or(r)),
        None => s,
    }
}

fn at(path: &str) -> String {
    if path.is_empty() {
        "body".into()
    } else {
        path.to_string()
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Checks `v` against schema `s`; `nullable` lets a top-level optional property be `null`.
fn check(v: &Value, s: &'static Value, path: &str, nullable: bool, errs: &mut Vec<String>) {
    let s = resolve(s);
    if v.is_null() && nullable {
        return;
    }
    if let Some(all) = s.get("allOf").and_then(Value::as_array) {
        for sub in all {
            check(v, sub, path, false, errs);
        }
    }
    if let Some(one) = s.get("oneOf").and_then(Value::as_array) {
        let matching = one
            .iter()
            .filter(|sub| {
                let mut e = Vec::new();
                check(v, sub, path, false, &mut e);
                e.is_empty()
            })
            .count();
        if matching != 1 {
            // The closest alternative's problems say the most; report the first one's briefly.
            errs.push(format!(
                "{} must match exactly one of its {} schemas (matches {matching})",
                at(path),
                one.len()
            ));
        }
        return;
    }
    let enumeration = s.get("enum").and_then(Value::as_array);
    let ty = s.get("type").and_then(Value::as_str);
    let loose_object = ty == Some("object") && s.get("properties").is_none();
    match (ty, v) {
        (Some("array"), Value::Array(items)) => {
            if let Some(max) = s.get("maxLength").and_then(Value::as_u64)
                && items.len() as u64 > max
            {
                errs.push(format!(
                    "{} must contain no more than {max} elements",
                    at(path)
                ));
            }
            for (i, item) in items.iter().enumerate() {
                let p = format!("{path}.{i}");
                if let Some(e) = enumeration
                    && !e.contains(item)
                {
                    errs.push(format!("{} must be one of the allowed values", at(&p)));
                }
                if let Some(item_schema) = s.get("items") {
                    check(item, item_schema, &p, false, errs);
                }
            }
            return;
        }
        (Some("array"), _) => {
            errs.push(format!("{} must be an array", at(path)));
            return;
        }
        _ => {}
    }
    if let Some(e) = enumeration
        && !e.contains(v)
    {
        errs.push(format!(
            "{} must be one of the following values: {}",
            at(path),
            e.iter()
                .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        return;
    }
    match (ty, v) {
        (Some("object"), _) if loose_object => {}
        (Some("object"), Value::Object(m)) => object(m, s, path, errs),
        (Some("string"), Value::String(text)) => {
            let n = text.encode_utf16().count() as u64;
            if let Some(max) = s.get("maxLength").and_then(Value::as_u64)
                && n > max
            {
                errs.push(format!(
                    "{} must be shorter than or equal to {max} characters",
                    at(path)
                ));
            }
            if let Some(min) = s.get("minLength").and_then(Value::as_u64)
                && n < min
            {
                errs.push(format!(
                    "{} must be longer than or equal to {min} characters",
                    at(path)
                ));
            }
        }
        (Some("number"), Value::Number(n)) => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            if let Some(min) = s.get("minimum").and_then(Value::as_f64)
                && x < min
            {
                errs.push(format!("{} must not be less than {min}", at(path)));
            }
            if let Some(max) = s.get("maximum").and_then(Value::as_f64)
                && x > max
            {
                errs.push(format!("{} must not be greater than {max}", at(path)));
            }
        }
        (Some("boolean"), Value::Bool(_)) | (None, _) => {}
        (Some(t), _) => errs.push(format!("{} must be a {t}", at(path))),
    }
}

fn object(m: &Map<String, Value>, s: &'static Value, path: &str, errs: &mut Vec<String>) {
    let props = s.get("properties").and_then(Value::as_object);
    let required: Vec<&str> = s
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for r in &required {
        if m.get(*r).is_none_or(Value::is_null) {
            errs.push(format!("{} should not be empty", join(path, r)));
        }
    }
    for (k, v) in m {
        match props.and_then(|p| p.get(k)) {
            None => errs.push(format!("{}property {k} should not exist", prefix(path))),
            // `null` clears an optional property; a required one cannot be cleared.
            Some(ps) => check(v, ps, &join(path, k), !required.contains(&k.as_str()), errs),
        }
    }
}

fn prefix(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!("{path}.")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_full_create_body_is_accepted() {
        let body = json!({
            "provider": "twilio", "number": "+14155550100", "twilioAccountSid": "AC1",
            "twilioApiKey": "SK1", "twilioApiSecret": "s", "name": "Main", "squadId": "sq",
            "server": {"url": "https://x.test", "headers": {"A": "b"}, "timeoutSeconds": 20,
                "backoffPlan": {"type": "fixed", "maxRetries": 2, "baseDelaySeconds": 1,
                    "excludedStatusCodes": [400]},
                "staticIpAddressesEnabled": true, "encryptedPaths": ["a.b"]},
            "fallbackDestination": {"type": "number", "number": "+14155550199", "extension": "12"},
            "hooks": [
                {"on": "call.ringing", "filters": [{"type": "startsWith", "key": "number", "startsWith": ["1415"]}],
                 "do": [{"type": "say", "exact": "hi"}]},
                {"on": "call.ending", "filters": [{"type": "oneOf", "key": "call.endedReason", "oneOf": ["assistant-request-failed"]}],
                 "do": {"type": "transfer", "destination": {"type": "sip", "sipUri": "sip:a@b.test"}}}
            ]
        });
        assert_eq!(check_create(&body), Vec::<String>::new());
    }

    #[test]
    fn schema_violations_are_named() {
        let body = json!({
            "provider": "twilio", "number": "+14155550100",
            "server": {"backoffPlan": {"type": "sometimes", "maxRetries": 11, "baseDelaySeconds": 1}, "nope": 1},
            "fallbackDestination": {"type": "number", "number": "+1"},
            "hooks": [{"on": "call.ringing", "do": [{"type": "say", "exact": "x".repeat(4001)}]}]
        });
        let errs = check_create(&body);
        let text = errs.join("\n");
        for needle in [
            "twilioAccountSid should not be empty",
            "server.property nope should not exist",
            "server.backoffPlan.type must be one of the following values: fixed, exponential",
            "server.backoffPlan.maxRetries must not be greater than 10",
            "fallbackDestination must match exactly one",
            "hooks.0 must match exactly one",
        ] {
            assert!(text.contains(needle), "{needle} missing from:\n{text}");
        }
    }

    #[test]
    fn an_update_may_clear_optional_fields_but_not_required_sub_fields() {
        assert!(check_update(&json!({"assistantId": null, "server": null, "fallbackDestination": null, "hooks": []})).is_empty());
        assert!(!check_update(&json!({"server": {"backoffPlan": {"type": "fixed"}}})).is_empty());
    }
}
