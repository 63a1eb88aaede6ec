//! Every structural problem of a spec at once: unknown fields, missing fields and values of the
//! wrong type, found by walking the YAML against the spec's own JSON Schema.
//!
//! serde stops at the first problem; the README promises them all. The schema is generated from
//! the same types serde reads ([`super::Spec`]), so the two cannot disagree about the shape. Only
//! the shape is checked here — value rules (patterns, lengths, ranges) are validation's, with
//! better messages.

use std::sync::LazyLock;

use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

use super::{Location, Locations};

/// One structural problem: where, and what (in serde's words where it has them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StructureProblem {
    pub location: Location,
    pub message: String,
}

static SCHEMA: LazyLock<Json> = LazyLock::new(|| schemars::schema_for!(super::Spec).to_value());

/// The structural problems of `doc`, in file order; empty when its shape is a spec's (or when
/// the walk meets something it does not model, such as a tag: serde then has the last word).
pub fn problems(doc: &Yaml, locations: &Locations) -> Vec<StructureProblem> {
    let mut walk = Walk {
        defs: SCHEMA.get("$defs"),
        locations,
        out: Vec::new(),
    };
    walk.check(doc, &SCHEMA, "");
    walk.out.sort_by_key(|p| p.location);
    walk.out
}

struct Walk<'a> {
    defs: Option<&'a Json>,
    locations: &'a Locations,
    out: Vec<StructureProblem>,
}

fn child(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// serde_yaml's way of naming where a nested problem is: `phoneNumbers[0]: …`.
fn at(path: &str, message: String) -> String {
    if path.is_empty() {
        message
    } else {
        format!("{path}: {message}")
    }
}

impl<'a> Walk<'a> {
    fn resolve(&self, schema: &'a Json) -> &'a Json {
        match schema.get("$ref").and_then(Json::as_str) {
            Some(r) => r
                .strip_prefix("#/$defs/")
                .and_then(|name| self.defs?.get(name))
                .unwrap_or(schema),
            None => schema,
        }
    }

    fn push(&mut self, location: Location, message: String) {
        self.out.push(StructureProblem { location, message });
    }

    fn check(&mut self, value: &Yaml, schema: &'a Json, path: &str) {
        let schema = self.resolve(schema);
        if let Some(alternatives) = schema.get("anyOf").and_then(Json::as_array) {
            // `Option<Struct>`: null, or the struct.
            if value.is_null() && alternatives.iter().any(allows_null) {
                return;
            }
            if let Some(inner) = alternatives.iter().find(|a| !allows_null(a)) {
                self.check(value, inner, path);
            }
            return;
        }
        let Some(kind) = kind(value) else {
            return;
        };
        let types = types(schema);
        if !types.is_empty() && !types.iter().any(|t| accepts(t, kind, value)) {
            let expected = types
                .iter()
                .find(|t| **t != "null")
                .map_or("a value", |t| expected(t, schema));
            self.push(
                self.locations.of(path),
                at(
                    path,
                    format!(
                        "invalid type: {}, expected {expected}",
                        unexpected(value, path.ends_with("authToken"))
                    ),
                ),
            );
            return;
        }
        if let Some(format) = schema.get("format").and_then(Json::as_str)
            && let Some(max) = match format {
                "uint32" => Some(u64::from(u32::MAX)),
                "uint64" => Some(u64::MAX),
                _ => None,
            }
            && let Yaml::Number(n) = value
            && n.as_u64().is_none_or(|v| v > max)
        {
            let ty = format.replace("int", "");
            self.push(
                self.locations.of(path),
                at(path, format!("invalid value: integer `{n}`, expected {ty}")),
            );
            return;
        }
        match value {
            Yaml::Mapping(map) => self.check_mapping(map, schema, path),
            Yaml::Sequence(items) => {
                if let Some(item_schema) = schema.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        self.check(item, item_schema, &format!("{path}[{i}]"));
                    }
                }
            }
            _ => {}
        }
    }

    fn check_mapping(&mut self, map: &serde_yaml::Mapping, schema: &'a Json, path: &str) {
        let Some(properties) = schema.get("properties").and_then(Json::as_object) else {
            return;
        };
        let closed = schema.get("additionalProperties") == Some(&Json::Bool(false));
        let mut allowed: Vec<&str> = properties.keys().map(String::as_str).collect();
        allowed.sort_unstable();
        for (key, value) in map {
            let Some(key) = key.as_str() else {
                continue;
            };
            let key_path = child(path, key);
            match properties.get(key) {
                Some(property) => self.check(value, property, &key_path),
                None if closed => {
                    let location = self
                        .locations
                        .key_of(&key_path)
                        .unwrap_or_else(|| self.locations.of(&key_path));
                    let expected = allowed
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ");
                    self.push(
                        location,
                        at(
                            path,
                            format!("unknown field `{key}`, expected one of {expected}"),
                        ),
                    );
                }
                None => {}
            }
        }
        for required in schema
            .get("required")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
            .filter_map(Json::as_str)
        {
            if !map.contains_key(required) {
                // The mapping starts where its first key is written.
                let start = map
                    .keys()
                    .filter_map(|k| self.locations.key_of(&child(path, k.as_str()?)))
                    .min()
                    .unwrap_or_else(|| self.locations.of(path));
                self.push(start, at(path, format!("missing field `{required}`")));
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Null,
    Bool,
    Number,
    String,
    Sequence,
    Mapping,
}

/// The value's kind; None for what the walk does not model (tags).
fn kind(value: &Yaml) -> Option<Kind> {
    Some(match value {
        Yaml::Null => Kind::Null,
        Yaml::Bool(_) => Kind::Bool,
        Yaml::Number(_) => Kind::Number,
        Yaml::String(_) => Kind::String,
        Yaml::Sequence(_) => Kind::Sequence,
        Yaml::Mapping(_) => Kind::Mapping,
        Yaml::Tagged(_) => return None,
    })
}

fn types(schema: &Json) -> Vec<&str> {
    match schema.get("type") {
        Some(Json::String(t)) => vec![t.as_str()],
        Some(Json::Array(ts)) => ts.iter().filter_map(Json::as_str).collect(),
        _ => Vec::new(),
    }
}

fn allows_null(schema: &Json) -> bool {
    types(schema).contains(&"null")
}

fn accepts(ty: &str, kind: Kind, value: &Yaml) -> bool {
    match ty {
        "null" => kind == Kind::Null,
        "boolean" => kind == Kind::Bool,
        "string" => kind == Kind::String,
        "array" => kind == Kind::Sequence,
        "object" => kind == Kind::Mapping,
        "number" => kind == Kind::Number,
        "integer" => value.as_i64().is_some() || value.as_u64().is_some(),
        _ => true,
    }
}

fn expected(ty: &str, schema: &Json) -> &'static str {
    match ty {
        "boolean" => "a boolean",
        "string" => "a string",
        "array" => "a sequence",
        "object" => "a mapping",
        "number" => "a number",
        "integer" => match schema.get("format").and_then(Json::as_str) {
            Some("uint32") => "u32",
            Some("uint64") => "u64",
            _ => "an integer",
        },
        _ => "a value",
    }
}

/// The value as serde names an unexpected one; a secret's value is never shown (a plaintext
/// token written where the ciphertext belongs), only its kind.
fn unexpected(value: &Yaml, secret: bool) -> String {
    match value {
        Yaml::Bool(_) if secret => "boolean".into(),
        Yaml::Number(_) if secret => "number".into(),
        Yaml::String(_) if secret => "string".into(),
        Yaml::Null => "unit value".into(),
        Yaml::Bool(b) => format!("boolean `{b}`"),
        Yaml::Number(n) if n.is_f64() => format!("floating point `{n}`"),
        Yaml::Number(n) => format!("integer `{n}`"),
        Yaml::String(s) => format!("string {s:?}"),
        Yaml::Sequence(_) => "sequence".into(),
        Yaml::Mapping(_) => "map".into(),
        Yaml::Tagged(_) => "tagged value".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(source: &str) -> Vec<String> {
        let doc: Yaml = serde_yaml::from_str(source).unwrap();
        problems(&doc, &Locations::index(source))
            .into_iter()
            .map(|p| format!("{}: {}", p.location, p.message))
            .collect()
    }

    #[test]
    fn a_token_of_the_wrong_type_is_never_shown() {
        let bad = "version: 1\nowner: x\ndefaults:\n  twilio:\n    accountSid: 1\n    authToken: 9876543210987654321\nphoneNumbers: []\n";
        let found = of(bad).join("\n");
        assert!(found.contains("authToken: invalid type: number"), "{found}");
        assert!(!found.contains("9876543210987654321"), "{found}");
    }

    #[test]
    fn a_spec_shaped_document_has_no_structural_problem() {
        let ok = "version: 2\nowner: x\ndefaults: null\nphoneNumbers:\n  - number: \"+1\"\n    name: a\n    server: {url: u, timeoutSeconds: 0}\n    smsEnabled: null\n";
        assert_eq!(of(ok), Vec::<String>::new());
    }

    #[test]
    fn every_problem_is_found_in_file_order_with_its_position() {
        let bad = "version: one\nowner: x\nphoneNumbers:\n  - number: 14155551234\n    nmae: a\n  - name: b\n    number: \"+1\"\n    server: {url: u, timeoutSeconds: -1}\n    twilio: [x]\nextra: 1\n";
        assert_eq!(
            of(bad),
            vec![
                "1:10: version: invalid type: string \"one\", expected u64",
                "4:5: phoneNumbers[0]: missing field `name`",
                "4:13: phoneNumbers[0].number: invalid type: integer `14155551234`, expected a string",
                "5:5: phoneNumbers[0]: unknown field `nmae`, expected one of `absent`, `assistant`, `fallbackDestination`, `hooks`, `name`, `notes`, `number`, `protected`, `server`, `smsEnabled`, `squad`, `twilio`",
                "8:38: phoneNumbers[1].server.timeoutSeconds: invalid value: integer `-1`, expected u32",
                "9:5: phoneNumbers[1].twilio: invalid type: sequence, expected a mapping",
                "10:1: unknown field `extra`, expected one of `defaults`, `owner`, `phoneNumbers`, `version`",
            ]
        );
    }
}
