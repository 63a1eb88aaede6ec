//! The stand-in's in-memory picture of one Vapi org: phone numbers, assistants and the write-only
//! Twilio secrets, with a clock that tests can freeze.
//!
//! Records are kept as JSON objects rather than typed structs so that tests can seed numbers of
//! any provider, with fields this crate has never heard of, and get them back unchanged.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::StandInError;

/// Twilio fields that Vapi accepts on a number but that the stand-in never sends back.
pub const SECRET_FIELDS: [&str; 3] = ["twilioAuthToken", "twilioApiKey", "twilioApiSecret"];

/// Fields the server owns; a PATCH or an out-of-band edit cannot change them.
const SERVER_FIELDS: [&str; 4] = ["id", "orgId", "createdAt", "updatedAt"];

/// Formats a timestamp the way Vapi does: UTC, milliseconds, `Z` suffix.
pub fn format_ts(ts: DateTime<Utc>) -> String {
    ts.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Drops sub-millisecond precision, since the wire format cannot carry it and a stored value must
/// compare equal to what a client read back.
fn truncate_ms(ts: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ts.timestamp_millis()).unwrap_or(ts)
}

/// The time source for `createdAt`/`updatedAt`.
///
/// Unfrozen, every write gets a timestamp strictly later than the previous one (bumped by 1 ms
/// when the wall clock has not moved), so ordering by time is total. Frozen, every write gets the
/// same instant: that is how tests build the "thousands of numbers share one `createdAt`" case.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    frozen: Option<DateTime<Utc>>,
    last: Option<DateTime<Utc>>,
}

impl Clock {
    /// The timestamp for the next write.
    pub fn tick(&mut self) -> DateTime<Utc> {
        let ts = match self.frozen {
            Some(f) => f,
            None => {
                let now = truncate_ms(Utc::now());
                match self.last {
                    Some(last) if now <= last => last + TimeDelta::milliseconds(1),
                    _ => now,
                }
            }
        };
        self.observe(ts);
        ts
    }

    /// Remembers a timestamp that exists in the data, so later writes sort after it.
    pub fn observe(&mut self, ts: DateTime<Utc>) {
        if self.last.is_none_or(|last| ts > last) {
            self.last = Some(ts);
        }
    }

    pub fn freeze(&mut self, ts: DateTime<Utc>) {
        self.frozen = Some(truncate_ms(ts));
    }

    pub fn unfreeze(&mut self) {
        self.frozen = None;
    }
}

/// One stored object plus its parsed timestamps (kept beside the JSON so that sorting and
/// filtering do not re-parse strings).
#[derive(Debug, Clone)]
struct Record {
    created: DateTime<Utc>,
    updated: DateTime<Utc>,
    doc: Map<String, Value>,
}

impl Record {
    fn stamp(&mut self, updated: DateTime<Utc>) {
        self.updated = updated;
        self.doc
            .insert("updatedAt".into(), Value::String(format_ts(updated)));
    }
}

/// The Twilio secrets of one number, as last written.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TwilioSecrets {
    pub auth_token: Option<String>,
    pub api_key: Option<String>,
    pub api_secret: Option<String>,
}

impl std::fmt::Debug for TwilioSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Only presence, so a failing assertion cannot leak a token into test output.
        f.debug_struct("TwilioSecrets")
            .field("auth_token", &self.auth_token.as_ref().map(|_| "<set>"))
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .field("api_secret", &self.api_secret.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl TwilioSecrets {
    fn slot(&mut self, field: &str) -> Option<&mut Option<String>> {
        match field {
            "twilioAuthToken" => Some(&mut self.auth_token),
            "twilioApiKey" => Some(&mut self.api_key),
            "twilioApiSecret" => Some(&mut self.api_secret),
            _ => None,
        }
    }

    fn is_empty(&self) -> bool {
        self.auth_token.is_none() && self.api_key.is_none() && self.api_secret.is_none()
    }
}

/// Bounds on `createdAt`/`updatedAt`, as the list endpoints' query parameters give them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DateFilter {
    pub created_gt: Option<DateTime<Utc>>,
    pub created_lt: Option<DateTime<Utc>>,
    pub created_ge: Option<DateTime<Utc>>,
    pub created_le: Option<DateTime<Utc>>,
    pub updated_gt: Option<DateTime<Utc>>,
    pub updated_lt: Option<DateTime<Utc>>,
    pub updated_ge: Option<DateTime<Utc>>,
    pub updated_le: Option<DateTime<Utc>>,
}

impl DateFilter {
    fn matches(&self, r: &Record) -> bool {
        fn within(
            t: DateTime<Utc>,
            gt: Option<DateTime<Utc>>,
            lt: Option<DateTime<Utc>>,
            ge: Option<DateTime<Utc>>,
            le: Option<DateTime<Utc>>,
        ) -> bool {
            gt.is_none_or(|b| t > b)
                && lt.is_none_or(|b| t < b)
                && ge.is_none_or(|b| t >= b)
                && le.is_none_or(|b| t <= b)
        }
        within(
            r.created,
            self.created_gt,
            self.created_lt,
            self.created_ge,
            self.created_le,
        ) && within(
            r.updated,
            self.updated_gt,
            self.updated_lt,
            self.updated_ge,
            self.updated_le,
        )
    }
}

/// Direction of a listing by `createdAt`. Ties are always broken by ascending id so that
/// offset paging over a frozen timestamp is stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortOrder {
    #[default]
    Desc,
    Asc,
}

/// The whole org.
#[derive(Debug, Clone)]
pub struct Model {
    org_id: String,
    numbers: BTreeMap<String, Record>,
    assistants: BTreeMap<String, Record>,
    squads: BTreeMap<String, Record>,
    secrets: BTreeMap<String, TwilioSecrets>,
    clock: Clock,
}

/// What the state file holds. Secrets are deliberately left out so a quickstart never leaves
/// plaintext Twilio tokens on disk; after a reload `token_of` knows nothing.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    pub version: u32,
    pub org_id: String,
    #[serde(default)]
    pub phone_numbers: Vec<Value>,
    #[serde(default)]
    pub assistants: Vec<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub squads: Vec<Value>,
}

const SNAPSHOT_VERSION: u32 = 1;

impl Model {
    pub fn new(org_id: impl Into<String>) -> Self {
        Model {
            org_id: org_id.into(),
            numbers: BTreeMap::new(),
            assistants: BTreeMap::new(),
            squads: BTreeMap::new(),
            secrets: BTreeMap::new(),
            clock: Clock::default(),
        }
    }

    pub fn org_id(&self) -> &str {
        &self.org_id
    }

    pub fn clock_mut(&mut self) -> &mut Clock {
        &mut self.clock
    }

    // ---- phone numbers ------------------------------------------------------------------------

    /// Stores a new number from an already validated body: assigns the server fields and moves
    /// the secrets aside. Returns the object as a client would see it.
    /// A new object from a create body: server-assigned id, org and timestamps first, then the
    /// body's own fields (any server-assigned field it carries is dropped).
    fn new_document(&mut self, mut body: Map<String, Value>) -> NewDocument {
        let ts = self.clock.tick();
        let id = Uuid::new_v4().to_string();
        for f in SERVER_FIELDS {
            body.remove(f);
        }
        let mut doc = Map::new();
        doc.insert("id".into(), Value::String(id.clone()));
        doc.insert("orgId".into(), Value::String(self.org_id.clone()));
        doc.insert("createdAt".into(), Value::String(format_ts(ts)));
        doc.insert("updatedAt".into(), Value::String(format_ts(ts)));
        doc.extend(body);
        NewDocument { id, doc, ts }
    }

    pub fn create_number(&mut self, mut body: Map<String, Value>) -> Value {
        // A create treats `null` like an absent field (class-validator's IsOptional does).
        body.retain(|_, v| !v.is_null());
        let secrets = take_secrets(&mut body);
        // Vapi reports a number's lifecycle; a number imported from Twilio is `active` (tests
        // block one with `patch_number`, as Vapi would on its side).
        body.insert("status".into(), Value::String("active".into()));
        let NewDocument { id, doc, ts } = self.new_document(body);
        if !secrets.is_empty() {
            self.secrets.insert(id.clone(), secrets);
        }
        let record = Record {
            created: ts,
            updated: ts,
            doc,
        };
        let out = Value::Object(record.doc.clone());
        self.numbers.insert(id, record);
        out
    }

    /// Stores an object of any provider as given, filling in only what is missing (`id`,
    /// `orgId`, timestamps). Secret fields are moved aside like on a create.
    pub fn insert_raw(&mut self, value: Value) -> Result<Value, StandInError> {
        let Value::Object(mut doc) = value else {
            return Err(StandInError::InvalidSeed(
                "a seed must be a JSON object".into(),
            ));
        };
        let id = match doc.get("id") {
            None => Uuid::new_v4().to_string(),
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(StandInError::InvalidSeed("id must be a string".into())),
        };
        if self.numbers.contains_key(&id) {
            return Err(StandInError::InvalidSeed(format!("id {id} already exists")));
        }
        let (created, updated) = self.seed_times(&doc)?;
        let secrets = take_secrets(&mut doc);
        doc.insert("id".into(), Value::String(id.clone()));
        doc.entry("orgId")
            .or_insert_with(|| Value::String(self.org_id.clone()));
        doc.insert("createdAt".into(), Value::String(format_ts(created)));
        doc.insert("updatedAt".into(), Value::String(format_ts(updated)));
        if !secrets.is_empty() {
            self.secrets.insert(id.clone(), secrets);
        }
        let out = Value::Object(doc.clone());
        self.numbers.insert(
            id,
            Record {
                created,
                updated,
                doc,
            },
        );
        Ok(out)
    }

    /// Timestamps for a seeded object: the ones it carries (so tests can build exact histories),
    /// else the clock's.
    fn seed_times(
        &mut self,
        doc: &Map<String, Value>,
    ) -> Result<(DateTime<Utc>, DateTime<Utc>), StandInError> {
        let parse = |field: &str| -> Result<Option<DateTime<Utc>>, StandInError> {
            match doc.get(field) {
                None => Ok(None),
                Some(Value::String(s)) => DateTime::parse_from_rfc3339(s)
                    .map(|t| Some(truncate_ms(t.with_timezone(&Utc))))
                    .map_err(|e| StandInError::InvalidSeed(format!("{field}: {e}"))),
                Some(_) => Err(StandInError::InvalidSeed(format!(
                    "{field} must be a string"
                ))),
            }
        };
        let created = parse("createdAt")?;
        let updated = parse("updatedAt")?;
        let created = match created {
            Some(c) => {
                self.clock.observe(c);
                c
            }
            None => self.clock.tick(),
        };
        let updated = match updated {
            Some(u) => {
                self.clock.observe(u);
                u
            }
            None => created,
        };
        Ok((created, updated))
    }

    pub fn get_number(&self, id: &str) -> Option<Value> {
        self.numbers.get(id).map(|r| Value::Object(r.doc.clone()))
    }

    /// Applies a partial update: present fields replace the stored value wholesale (objects and
    /// arrays included), `null` removes the field, secrets go to the side table. Bumps
    /// `updatedAt`. `None` if the id is unknown.
    pub fn update_number(&mut self, id: &str, mut patch: Map<String, Value>) -> Option<Value> {
        if !self.numbers.contains_key(id) {
            return None;
        }
        for f in SERVER_FIELDS {
            patch.remove(f);
        }
        let ts = self.clock.tick();
        let mut secrets = self.secrets.remove(id).unwrap_or_default();
        for field in SECRET_FIELDS {
            if let Some(v) = patch.remove(field)
                && let Some(slot) = secrets.slot(field)
            {
                *slot = v.as_str().map(str::to_owned);
            }
        }
        if !secrets.is_empty() {
            self.secrets.insert(id.to_owned(), secrets);
        }
        let record = self.numbers.get_mut(id)?;
        for (k, v) in patch {
            if v.is_null() {
                record.doc.remove(&k);
            } else {
                record.doc.insert(k, v);
            }
        }
        record.stamp(ts);
        Some(Value::Object(record.doc.clone()))
    }

    pub fn delete_number(&mut self, id: &str) -> Option<Value> {
        self.secrets.remove(id);
        self.numbers.remove(id).map(|r| Value::Object(r.doc))
    }

    pub fn secrets_of(&self, id: &str) -> Option<&TwilioSecrets> {
        self.secrets.get(id)
    }

    /// Every number, newest first.
    pub fn all_numbers(&self) -> Vec<Value> {
        all(&self.numbers, SortOrder::Desc)
    }

    pub fn page_numbers(
        &self,
        filter: &DateFilter,
        order: SortOrder,
        offset: usize,
        limit: usize,
        pred: DocFilter<'_>,
    ) -> Page {
        list(&self.numbers, filter, order, offset, limit, pred)
    }

    // ---- assistants ---------------------------------------------------------------------------

    /// Stores a new assistant from a validated body.
    pub fn create_assistant(&mut self, body: Map<String, Value>) -> Value {
        self.create_in(|m| &mut m.assistants, body)
    }

    /// Stores a new document (nulls dropped) in the collection `which` picks; returns it.
    fn create_in(
        &mut self,
        which: fn(&mut Model) -> &mut BTreeMap<String, Record>,
        mut body: Map<String, Value>,
    ) -> Value {
        body.retain(|_, v| !v.is_null());
        let NewDocument { id, doc, ts } = self.new_document(body);
        let out = Value::Object(doc.clone());
        which(self).insert(
            id,
            Record {
                created: ts,
                updated: ts,
                doc,
            },
        );
        out
    }

    pub fn get_assistant(&self, id: &str) -> Option<Value> {
        self.assistants
            .get(id)
            .map(|r| Value::Object(r.doc.clone()))
    }

    /// Ids of the assistants with exactly this name, oldest first.
    pub fn assistants_named(&self, name: &str) -> Vec<String> {
        let mut found: Vec<&Record> = self
            .assistants
            .values()
            .filter(|r| r.doc.get("name").and_then(Value::as_str) == Some(name))
            .collect();
        found.sort_by_key(|r| r.created);
        found
            .into_iter()
            .filter_map(|r| r.doc.get("id").and_then(Value::as_str).map(str::to_owned))
            .collect()
    }

    pub fn page_assistants(
        &self,
        filter: &DateFilter,
        order: SortOrder,
        offset: usize,
        limit: usize,
    ) -> Page {
        list(&self.assistants, filter, order, offset, limit, &|_| true)
    }

    /// Every assistant, newest first.
    pub fn all_assistants(&self) -> Vec<Value> {
        all(&self.assistants, SortOrder::Desc)
    }

    // ---- squads -------------------------------------------------------------------------------

    /// Stores a new squad (Vapi's `CreateSquadDTO` needs `members`; the stand-in keeps what it
    /// is given).
    pub fn create_squad(&mut self, body: Map<String, Value>) -> Value {
        self.create_in(|m| &mut m.squads, body)
    }

    pub fn get_squad(&self, id: &str) -> Option<Value> {
        self.squads.get(id).map(|r| Value::Object(r.doc.clone()))
    }

    pub fn page_squads(
        &self,
        filter: &DateFilter,
        order: SortOrder,
        offset: usize,
        limit: usize,
    ) -> Page {
        list(&self.squads, filter, order, offset, limit, &|_| true)
    }

    // ---- persistence --------------------------------------------------------------------------

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            version: SNAPSHOT_VERSION,
            org_id: self.org_id.clone(),
            phone_numbers: all(&self.numbers, SortOrder::Asc),
            assistants: all(&self.assistants, SortOrder::Asc),
            squads: all(&self.squads, SortOrder::Asc),
        }
    }

    pub fn from_snapshot(snap: Snapshot) -> Result<Self, StandInError> {
        if snap.version != SNAPSHOT_VERSION {
            return Err(StandInError::InvalidSeed(format!(
                "unsupported state file version {}",
                snap.version
            )));
        }
        let mut model = Model::new(snap.org_id);
        for n in snap.phone_numbers {
            model.insert_raw(n)?;
        }
        for a in snap.assistants {
            model.insert_raw_assistant(a)?;
        }
        for s in snap.squads {
            let Value::Object(body) = s else {
                return Err(StandInError::InvalidSeed(
                    "a squad must be a JSON object".into(),
                ));
            };
            model.create_squad(body);
        }
        Ok(model)
    }

    fn insert_raw_assistant(&mut self, value: Value) -> Result<(), StandInError> {
        let Value::Object(mut doc) = value else {
            return Err(StandInError::InvalidSeed(
                "an assistant must be a JSON object".into(),
            ));
        };
        let id = match doc.get("id") {
            Some(Value::String(s)) => s.clone(),
            _ => Uuid::new_v4().to_string(),
        };
        let (created, updated) = self.seed_times(&doc)?;
        doc.insert("id".into(), Value::String(id.clone()));
        doc.entry("orgId")
            .or_insert_with(|| Value::String(self.org_id.clone()));
        doc.insert("createdAt".into(), Value::String(format_ts(created)));
        doc.insert("updatedAt".into(), Value::String(format_ts(updated)));
        self.assistants.insert(
            id,
            Record {
                created,
                updated,
                doc,
            },
        );
        Ok(())
    }
}

fn take_secrets(doc: &mut Map<String, Value>) -> TwilioSecrets {
    let mut secrets = TwilioSecrets::default();
    for field in SECRET_FIELDS {
        if let Some(v) = doc.remove(field)
            && let Some(slot) = secrets.slot(field)
        {
            *slot = v.as_str().map(str::to_owned);
        }
    }
    secrets
}

/// One window of a listing plus the number of matches overall.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub items: Vec<Value>,
    pub total: usize,
}

/// Predicate over stored documents, for filters beyond the date bounds (v2 `search`).
pub type DocFilter<'a> = &'a dyn Fn(&Map<String, Value>) -> bool;

fn list(
    records: &BTreeMap<String, Record>,
    filter: &DateFilter,
    order: SortOrder,
    offset: usize,
    limit: usize,
    pred: DocFilter<'_>,
) -> Page {
    // BTreeMap iteration is by ascending id, and the sort is stable: ties keep that order.
    let mut hits: Vec<&Record> = records
        .values()
        .filter(|r| filter.matches(r) && pred(&r.doc))
        .collect();
    match order {
        SortOrder::Desc => hits.sort_by_key(|r| std::cmp::Reverse(r.created)),
        SortOrder::Asc => hits.sort_by_key(|r| r.created),
    }
    let total = hits.len();
    // Only the returned window is cloned: lists over thousands of numbers stay cheap.
    let items = hits
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|r| Value::Object(r.doc.clone()))
        .collect();
    Page { items, total }
}

fn all(records: &BTreeMap<String, Record>, order: SortOrder) -> Vec<Value> {
    list(
        records,
        &DateFilter::default(),
        order,
        0,
        usize::MAX,
        &|_| true,
    )
    .items
}

/// A freshly made object: its id, its JSON and its creation instant.
struct NewDocument {
    id: String,
    doc: Map<String, Value>,
    ts: DateTime<Utc>,
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

    #[test]
    fn clock_is_strictly_increasing_unless_frozen() {
        let mut c = Clock::default();
        let a = c.tick();
        let b = c.tick();
        let d = c.tick();
        assert!(a < b && b < d);
        let frozen = DateTime::parse_from_rfc3339("2026-11-25T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        c.freeze(frozen);
        assert_eq!(c.tick(), frozen);
        assert_eq!(c.tick(), frozen);
        c.unfreeze();
        assert!(c.tick() > d);
    }

    #[test]
    fn timestamps_have_milliseconds_and_z() {
        let t = DateTime::parse_from_rfc3339("2026-11-25T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(format_ts(t), "2026-11-25T10:00:00.000Z");
    }

    #[test]
    fn secrets_never_stored_in_the_document() {
        let mut m = Model::new("org");
        let out = m.create_number(obj(json!({
            "provider": "twilio", "number": "+14155550100", "twilioAccountSid": "AC1",
            "twilioAuthToken": "tok", "twilioApiKey": "SK1", "twilioApiSecret": "sec"
        })));
        let id = out["id"].as_str().unwrap().to_owned();
        for f in SECRET_FIELDS {
            assert!(out.get(f).is_none());
            assert!(m.get_number(&id).unwrap().get(f).is_none());
        }
        assert_eq!(
            m.secrets_of(&id).unwrap().auth_token.as_deref(),
            Some("tok")
        );
        let snap = serde_json::to_string(&m.snapshot()).unwrap();
        assert!(!snap.contains("tok") && !snap.contains("sec"));
    }

    #[test]
    fn update_replaces_wholesale_and_null_removes() {
        let mut m = Model::new("org");
        let out = m.create_number(obj(json!({
            "provider": "twilio", "number": "+14155550100", "twilioAccountSid": "AC1",
            "assistantId": "a", "server": {"url": "https://x", "timeoutSeconds": 20}
        })));
        let id = out["id"].as_str().unwrap();
        let upd = m
            .update_number(
                id,
                obj(json!({"server": {"url": "https://y"}, "assistantId": null})),
            )
            .unwrap();
        assert_eq!(upd["server"], json!({"url": "https://y"}));
        assert!(upd.get("assistantId").is_none());
        assert!(upd["updatedAt"].as_str().unwrap() > out["updatedAt"].as_str().unwrap());
        assert_eq!(upd["createdAt"], out["createdAt"]);
    }

    #[test]
    fn ties_are_ordered_by_id() {
        let mut m = Model::new("org");
        let t = Utc::now();
        m.clock_mut().freeze(t);
        for i in 0..20 {
            m.create_number(obj(
                json!({"provider": "twilio", "number": format!("+1415555{i:04}")}),
            ));
        }
        let ids: Vec<String> = m
            .all_numbers()
            .iter()
            .map(|v| v["id"].as_str().unwrap().to_owned())
            .collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
    }

    #[test]
    fn snapshot_round_trip_keeps_documents() {
        let mut m = Model::new("org-1");
        m.insert_raw(json!({"provider": "vonage", "number": "+4930123456", "credentialId": "c", "weird": [1]}))
            .unwrap();
        m.create_assistant(obj(json!({"name": "Reception"})));
        let snap = m.snapshot();
        let back = Model::from_snapshot(
            serde_json::from_str(&serde_json::to_string(&snap).unwrap()).unwrap(),
        )
        .unwrap();
        assert_eq!(back.org_id(), "org-1");
        assert_eq!(back.all_numbers(), m.all_numbers());
        assert_eq!(
            back.assistants_named("Reception"),
            m.assistants_named("Reception")
        );
    }
}
