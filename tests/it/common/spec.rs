//! Building spec files for tests.

/// One `phoneNumbers` entry.
#[derive(Debug, Clone, Default)]
pub struct Entry {
    pub number: String,
    pub name: String,
    pub assistant: Option<String>,
    pub notes: Option<String>,
    pub server_url: Option<String>,
    pub sms_enabled: Option<bool>,
    pub protected: bool,
    pub absent: bool,
    /// An entry-level token (armored) instead of the default.
    pub token: Option<String>,
    /// More of the entry, as YAML lines indented under it (`server:`, `hooks:`, …).
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

    /// Adds YAML to the entry; each line is indented to the entry's fields.
    pub fn yaml(mut self, y: &str) -> Entry {
        let lines: String = y.lines().map(|l| format!("    {l}\n")).collect();
        self.extra = Some(self.extra.unwrap_or_default() + &lines);
        self
    }
}

/// A whole spec.
#[derive(Debug, Clone)]
pub struct SpecFile {
    pub owner: String,
    pub sid: String,
    pub token: String,
    pub entries: Vec<Entry>,
}

fn block(armored: &str, indent: usize) -> String {
    armored
        .lines()
        .map(|l| format!("{}{l}\n", " ".repeat(indent)))
        .collect()
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

    pub fn to_yaml(&self) -> String {
        let mut y = format!(
            "# yaml-language-server: $schema=../schema/vapictl.schema.json\nversion: 1\nowner: {}\ndefaults:\n  twilio:\n    accountSid: {}\n    authToken: |\n{}phoneNumbers:",
            self.owner,
            self.sid,
            block(&self.token, 6)
        );
        if self.entries.is_empty() {
            y.push_str(" []\n");
            return y;
        }
        y.push('\n');
        for e in &self.entries {
            y.push_str(&format!(
                "  - number: \"{}\"\n    name: {:?}\n",
                e.number, e.name
            ));
            if let Some(a) = &e.assistant {
                y.push_str(&format!("    assistant: {a}\n"));
            }
            if let Some(n) = &e.notes {
                y.push_str(&format!("    notes: {n:?}\n"));
            }
            if let Some(u) = &e.server_url {
                y.push_str(&format!("    server:\n      url: {u}\n"));
            }
            if let Some(s) = e.sms_enabled {
                y.push_str(&format!("    smsEnabled: {s}\n"));
            }
            if e.protected {
                y.push_str("    protected: true\n");
            }
            if e.absent {
                y.push_str("    absent: true\n");
            }
            if let Some(x) = &e.extra {
                y.push_str(x);
            }
            if let Some(t) = &e.token {
                y.push_str(&format!(
                    "    twilio:\n      accountSid: {}\n      authToken: |\n{}",
                    self.sid,
                    block(t, 8)
                ));
            }
        }
        y
    }
}
