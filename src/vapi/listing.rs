//! Complete listings: every phone number and every assistant, paged by `createdAt` so that
//! nothing is skipped or read twice, with the v2 endpoint's first page (which carries the total)
//! and its numbered pages for more items created in one instant than a page holds.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::VapiError;
use super::client::VapiClient;
use super::transport::{decode, decode_item};
use super::wire::{AssistantDto, ListShape, PhoneNumberDto, SquadDto, V2Page};
use crate::state::{ObservedAssistant, ObservedNumber, ObservedSquad};

impl VapiClient {
    fn page_limit(&self) -> usize {
        self.transport.config().page_limit
    }

    /// Every phone number of every provider.
    ///
    /// # Guarantees
    /// Complete, or an error: pages of `limit` items are walked by `createdAt` with an inclusive
    /// bound (ties at the page edge are fetched again and de-duplicated by id); when a whole page
    /// shares one `createdAt`, that instant is read through `/v2/phone-number`'s numbered pages.
    /// The first page comes from `/v2/phone-number` (newest first), whose `totalItems` the number
    /// read is then checked against; the listing is read again once when they differ.
    ///
    /// # Caveats
    /// Without `/v2/phone-number` (a 404), the first page comes from `/phone-number` and the
    /// total cannot be cross-checked.
    pub async fn list_phone_numbers(&self) -> Result<Vec<ObservedNumber>, VapiError> {
        let mut last_err = None;
        for _ in 0..2 {
            let (items, total) = self.list_all("/phone-number", true).await?;
            match total {
                Some(total) if total != items.len() as u64 => {
                    last_err = Some(VapiError::IncompleteListing {
                        what: "phone numbers".into(),
                        reason: format!("read {} numbers but Vapi reports {total}", items.len()),
                    });
                    continue;
                }
                _ => {}
            }
            let mut out = Vec::with_capacity(items.len());
            for v in items {
                let dto: PhoneNumberDto = decode_item("GET /phone-number", v)?;
                out.push(ObservedNumber::from(dto));
            }
            return Ok(out);
        }
        Err(last_err.expect("loop ran"))
    }

    /// The newest `limit` phone numbers and the total, from `/v2/phone-number`; None when that
    /// endpoint is not offered. One request instead of a first page plus a count: the total is
    /// taken at the same instant as the page, so a number deleted while later pages are read
    /// still shows as a shortfall.
    async fn first_page_v2(&self) -> Result<Option<(Vec<Value>, u64)>, VapiError> {
        // The order is stated rather than left to the default, so that the next pages (walked
        // by `createdAt` from this page's oldest item) continue exactly where this one ends.
        let q = [
            ("limit", self.page_limit().to_string()),
            ("sortBy", "createdAt".to_string()),
            ("sortOrder", "DESC".to_string()),
        ];
        let page = self.v2_page(&q).await?;
        if page.is_none() {
            tracing::debug!("`/v2/phone-number` not offered; listing not cross-checked");
        }
        Ok(page.map(|p| (p.results, p.metadata.total_items)))
    }

    /// One page of `/v2/phone-number`; None when Vapi does not offer that endpoint (404).
    async fn v2_page(&self, query: &[(&str, String)]) -> Result<Option<V2Page>, VapiError> {
        let label = "GET /v2/phone-number";
        match self.transport.get("/v2/phone-number", query, label).await {
            Ok(a) => Ok(Some(decode(label, &a.body)?)),
            Err(VapiError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every assistant, by id.
    pub async fn list_assistants(&self) -> Result<BTreeMap<String, ObservedAssistant>, VapiError> {
        let (items, _) = self.list_all("/assistant", false).await?;
        let mut out = BTreeMap::new();
        for v in items {
            let dto: AssistantDto = decode_item("GET /assistant", v)?;
            out.insert(dto.id.clone(), ObservedAssistant::from(dto));
        }
        Ok(out)
    }

    /// Every squad, by id.
    pub async fn list_squads(&self) -> Result<BTreeMap<String, ObservedSquad>, VapiError> {
        let (items, _) = self.list_all("/squad", false).await?;
        let mut out = BTreeMap::new();
        for v in items {
            let dto: SquadDto = decode_item("GET /squad", v)?;
            out.insert(dto.id.clone(), ObservedSquad::from(dto));
        }
        Ok(out)
    }

    async fn list_page(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Vec<Value>, VapiError> {
        let label = format!("GET {path}");
        let a = self.transport.get(path, query, &label).await?;
        let shape: ListShape = decode(&label, &a.body)?;
        Ok(shape.into_items())
    }

    /// Pages through a v1 list endpoint to the end (see [`Self::list_phone_numbers`]); for phone
    /// numbers (`has_v2`), also returns the total `/v2/phone-number` reported with the first page.
    async fn list_all(
        &self,
        path: &str,
        has_v2: bool,
    ) -> Result<(Vec<Value>, Option<u64>), VapiError> {
        let limit = self.page_limit();
        let mut seen: HashMap<String, Value> = HashMap::new();
        let mut order: Vec<String> = Vec::new();
        // The bound for the next page: (query key, createdAt).
        let mut bound: Option<(&'static str, String)> = None;
        let what = path.trim_start_matches('/').to_string();
        let mut pages = 0usize;
        let mut total = None;
        loop {
            pages += 1;
            if pages > 100_000 {
                return Err(VapiError::IncompleteListing {
                    what,
                    reason: "paging did not end".into(),
                });
            }
            let mut q = vec![("limit", limit.to_string())];
            if let Some((k, v)) = &bound {
                q.push((k, v.clone()));
            }
            let first_v2 = match (pages, has_v2) {
                (1, true) => self.first_page_v2().await?,
                _ => None,
            };
            let page = match first_v2 {
                Some((page, reported)) => {
                    total = Some(reported);
                    page
                }
                None => self.list_page(path, &q).await?,
            };
            let full = page.len() >= limit;
            let mut stamps = Vec::with_capacity(page.len());
            for item in page {
                let id = item
                    .get("id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| VapiError::Decode {
                        request: format!("GET {path}"),
                        reason: "an item has no `id`".into(),
                    })?
                    .to_string();
                let created = item
                    .get("createdAt")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                stamps.push(created);
                remember(&mut seen, &mut order, id, item);
            }
            if !full {
                break;
            }
            // A full page: continue past its far edge. Decide the direction from the page itself
            // (the default order is documented nowhere; newest first is the observed behaviour).
            let first = stamps.first().cloned().unwrap_or_default();
            let last = stamps.last().cloned().unwrap_or_default();
            let ascending = instant(&first) < instant(&last);
            let edge = if ascending {
                stamps.iter().max_by_key(|s| instant(s)).cloned()
            } else {
                stamps.iter().min_by_key(|s| instant(s)).cloned()
            }
            .unwrap_or_default();
            if edge.is_empty() {
                return Err(VapiError::IncompleteListing {
                    what,
                    reason: "a full page has items without `createdAt`, so it cannot be paged"
                        .into(),
                });
            }
            let all_same = stamps.iter().all(|s| instant(s) == instant(&edge));
            if all_same {
                // More items share this instant than fit a page: read the instant by page number.
                if !has_v2 {
                    return Err(VapiError::IncompleteListing {
                        what,
                        reason: format!("more than {limit} items share createdAt {edge}"),
                    });
                }
                for item in self.list_instant_v2(&edge).await? {
                    if let Some(id) = item.get("id").and_then(Value::as_str) {
                        let id = id.to_string();
                        remember(&mut seen, &mut order, id, item);
                    }
                }
                bound = Some((
                    if ascending {
                        "createdAtGt"
                    } else {
                        "createdAtLt"
                    },
                    edge,
                ));
            } else {
                bound = Some((
                    if ascending {
                        "createdAtGe"
                    } else {
                        "createdAtLe"
                    },
                    edge,
                ));
            }
        }
        let items = order
            .into_iter()
            .filter_map(|id| seen.remove(&id))
            .collect();
        Ok((items, total))
    }

    /// Every phone number created at exactly `at`, by `/v2/phone-number` page numbers.
    async fn list_instant_v2(&self, at: &str) -> Result<Vec<Value>, VapiError> {
        let mut out: HashMap<String, Value> = HashMap::new();
        let mut page = 1u64;
        loop {
            let q = [
                ("limit", self.page_limit().to_string()),
                ("page", page.to_string()),
                ("sortOrder", "ASC".to_string()),
                ("createdAtGe", at.to_string()),
                ("createdAtLe", at.to_string()),
            ];
            let Some(p) = self.v2_page(&q).await? else {
                return Err(VapiError::IncompleteListing {
                    what: "phone-number".into(),
                    reason: format!(
                        "more numbers share createdAt {at} than one page holds, and `/v2/phone-number` is not offered"
                    ),
                });
            };
            let n = p.results.len();
            for item in p.results {
                if let Some(id) = item.get("id").and_then(Value::as_str) {
                    out.insert(id.to_string(), item);
                }
            }
            let total = p.metadata.total_items as usize;
            if out.len() >= total {
                return Ok(out.into_values().collect());
            }
            let last_page = p.metadata.total_pages.unwrap_or(u64::MAX);
            if n == 0 || page >= last_page {
                return Err(VapiError::IncompleteListing {
                    what: "phone-number".into(),
                    reason: format!(
                        "{} of {total} numbers created at {at} could be read",
                        out.len()
                    ),
                });
            }
            page += 1;
        }
    }

    /// Phone numbers whose `number` is exactly `number` (used after a create's outcome is
    /// unknown). Uses `/v2/phone-number?search=`; when that finds no exact match (Vapi does not
    /// document how `search` matches, and a wrong "absent" would create the number twice), or
    /// cannot answer on one page, absence is confirmed on a full listing.
    pub async fn find_by_number(&self, number: &str) -> Result<Vec<ObservedNumber>, VapiError> {
        let exact = |items: Vec<Value>| -> Vec<ObservedNumber> {
            items
                .into_iter()
                .filter_map(|v| serde_json::from_value::<PhoneNumberDto>(v).ok())
                .map(ObservedNumber::from)
                .filter(|o| o.number.as_deref() == Some(number))
                .collect()
        };
        let q = [
            ("search", number.to_string()),
            ("limit", self.page_limit().to_string()),
        ];
        match self.v2_page(&q).await {
            // Everything the search matched fits on the page: an exact match there is the answer.
            Ok(Some(p)) if (p.results.len() as u64) >= p.metadata.total_items => {
                let found = exact(p.results);
                if !found.is_empty() {
                    return Ok(found);
                }
            }
            Ok(_) | Err(VapiError::BadRequest { .. }) => {}
            Err(e) => return Err(e),
        }
        Ok(exact(self.list_all("/phone-number", true).await?.0))
    }
}

/// Keeps the first copy of an item seen on several pages, in listing order.
fn remember(seen: &mut HashMap<String, Value>, order: &mut Vec<String>, id: String, item: Value) {
    if let std::collections::hash_map::Entry::Vacant(slot) = seen.entry(id) {
        order.push(slot.key().clone());
        slot.insert(item);
    }
}

fn instant(s: &str) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    chrono::DateTime::parse_from_rfc3339(s).ok()
}
