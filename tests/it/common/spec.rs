//! Building spec files for tests.

use vapictl::spec::{Defaults, PhoneNumberSpec, ServerSpec, Spec, TwilioSpec, to_yaml};

/// One `phoneNumbers` entry.
#[derive(Debug, Clone, Default)]
pub struct Entry {
    pub number: String,
    pub name: String,
    pub assistant: Option<String>,
    pub squad: Option<String>,
    pub notes: Option<String>,
    pub server_url: Option<String>,
    pub sms_enabled: Option<bool>,
    pub protected: bool,
    pub absent: bool,
    /// An entry-level token (armored) instead of the default.
    pub token: Option<String>,
    /// More of the entry, as YAML (`server:`, `hooks:`, …): its keys are set on the entry.
    pub extra: Option<String>,
}

impl Entry {
    pub fn new(number: &str, name: &str) -> Entry {
        Entry {
            number: number.into(),
            name: name.into(),
            ..Entry::default()
        }
    }

    pub fn assistant(mut self, a: &str) -> Entry {
        self.assistant = Some(a.into());
        self
    }

    pub fn squad(mut self, q: &str) -> Entry {
        self.squad = Some(q.into());
        self
    }

    /// Adds YAML to the entry: a mapping whose keys are set on it (over what it has).
    pub fn yaml(mut self, y: &str) -> Entry {
        self.extra = Some(
            self.extra
                .map_or_else(|| y.to_owned(), |x| format!("{x}\n{y}")),
        );
        self
    }
}

/// `e` with the keys of its [`Entry::extra`] set on it.
fn with_extra(entry: PhoneNumberSpec, e: &Entry) -> PhoneNumberSpec {
    let Some(extra) = &e.extra else {
        return entry;
    };
    let mut value = serde_yaml::to_value(&entry).expect("an entry serializes");
    let extra: serde_yaml::Mapping =
        serde_yaml::from_str(extra).expect("the extra YAML is a mapping");
    let map = value.as_mapping_mut().expect("an entry is a mapping");
    for (k, v) in extra {
        map.insert(k, v);
    }
    serde_yaml::from_value(value).expect("the extra YAML has the spec's fields")
}

/// A whole spec.
#[derive(Debug, Clone)]
pub struct SpecFile {
    pub owner: String,
    pub sid: String,
    pub token: String,
    pub entries: Vec<Entry>,
}

impl SpecFile {
    pub fn new(owner: &str, sid: &str, token: &str) -> SpecFile {
        SpecFile {
            owner: owner.into(),
            sid: sid.into(),
            token: token.into(),
            entries: vec![],
        }
    }

    pub fn with(mut self, e: Entry) -> SpecFile {
        self.entries.push(e);
        self
    }

    /// The spec as vapictl's own writer lays it out (`vapictl::spec::to_yaml`), with the schema
    /// line editors use.
    pub fn to_yaml(&self) -> String {
        let twilio = |token: &str| TwilioSpec {
            account_sid: self.sid.clone(),
            auth_token: Some(token.to_owned()),
            api_key: None,
            api_secret: None,
        };
        let spec = Spec {
            version: 1,
            owner: self.owner.clone(),
            defaults: Some(Defaults {
                twilio: Some(twilio(&self.token)),
                ..Defaults::default()
            }),
            phone_numbers: self
                .entries
                .iter()
                .map(|e| {
                    let entry = PhoneNumberSpec {
                        number: e.number.clone(),
                        name: e.name.clone(),
                        assistant: e.assistant.clone(),
                        squad: e.squad.clone(),
                        notes: e.notes.clone(),
                        twilio: e.token.as_deref().map(twilio),
                        server: e.server_url.as_ref().map(|url| ServerSpec {
                            url: url.clone(),
                            ..ServerSpec::default()
                        }),
                        sms_enabled: e.sms_enabled,
                        protected: e.protected,
                        absent: e.absent,
                        ..PhoneNumberSpec::default()
                    };
                    with_extra(entry, e)
                })
                .collect(),
        };
        format!(
            "# yaml-language-server: $schema=../schema/vapictl.schema.json\n{}",
            to_yaml(&spec)
        )
    }
}
