//! Source positions of every node in a YAML document, by path (`phoneNumbers[2].name`).
//!
//! serde's YAML deserializer reports positions only for its own errors; validation needs the
//! position of any field it complains about, so the document is walked once more as events.

use std::collections::BTreeMap;
use std::fmt;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A 1-based line and column in the spec file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// Positions of keys and values, by path.
#[derive(Debug, Clone, Default)]
pub struct Locations {
    /// Where the value of each path starts.
    values: BTreeMap<String, Location>,
    /// Where each key is written (its first occurrence), by the path it names.
    keys: BTreeMap<String, Location>,
    /// Keys that appear twice in one mapping: (path, first, second).
    pub duplicate_keys: Vec<(String, Location, Location)>,
}

impl Locations {
    /// Walks the document. Errors are ignored here: serde reports them with better messages.
    pub fn index(source: &str) -> Locations {
        let mut walker = Walker::default();
        let mut parser = Parser::new_from_str(source);
        let _ = parser.load(&mut walker, false);
        walker.out
    }

    /// The position of `path`, else of its nearest parent that has one, else the start.
    pub fn of(&self, path: &str) -> Location {
        let mut p = path;
        loop {
            if let Some(l) = self.values.get(p) {
                return *l;
            }
            match p.rfind(['.', '[']) {
                Some(i) => p = &p[..i],
                None => {
                    return self
                        .values
                        .get("")
                        .copied()
                        .unwrap_or(Location { line: 1, column: 1 });
                }
            }
        }
    }

    /// The position of the key that names `path` (`phoneNumbers[0].name` → `name:`), if any.
    pub fn key_of(&self, path: &str) -> Option<Location> {
        self.keys.get(path).copied()
    }

    /// The exact position of `path`, if the document has that node.
    pub fn get(&self, path: &str) -> Option<Location> {
        self.values.get(path).copied()
    }
}

enum Frame {
    Map {
        path: String,
        /// The key waiting for its value, or None when the next scalar is a key.
        key: Option<String>,
        seen: BTreeMap<String, Location>,
    },
    Seq {
        path: String,
        index: usize,
    },
}

#[derive(Default)]
struct Walker {
    stack: Vec<Frame>,
    out: Locations,
}

fn loc(mark: Marker) -> Location {
    Location {
        line: mark.line(),
        column: mark.col() + 1,
    }
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

impl Walker {
    /// The path a new value takes at this point, or None when the value is a mapping key.
    fn next_value_path(&mut self) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Map { path, key, .. }) => key.take().map(|k| join(path, &k)),
            Some(Frame::Seq { path, index }) => {
                let p = format!("{path}[{index}]");
                *index += 1;
                Some(p)
            }
        }
    }
}

impl MarkedEventReceiver for Walker {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let here = loc(mark);
        match ev {
            Event::Scalar(value, ..) => match self.next_value_path() {
                Some(path) => {
                    self.out.values.insert(path, here);
                }
                None => {
                    // A key: remember it (and notice duplicates).
                    if let Some(Frame::Map { path, key, seen }) = self.stack.last_mut() {
                        let full = join(path, &value);
                        if let Some(first) = seen.get(&value) {
                            self.out.duplicate_keys.push((full.clone(), *first, here));
                        } else {
                            seen.insert(value.clone(), here);
                        }
                        self.out.keys.entry(full.clone()).or_insert(here);
                        // Until the value arrives, the key's own position stands for the field.
                        self.out.values.entry(full).or_insert(here);
                        *key = Some(value);
                    }
                }
            },
            Event::Alias(_) => {
                if let Some(path) = self.next_value_path() {
                    self.out.values.insert(path, here);
                }
            }
            Event::MappingStart(..) => {
                let path = self.next_value_path().unwrap_or_default();
                self.out.values.entry(path.clone()).or_insert(here);
                self.stack.push(Frame::Map {
                    path,
                    key: None,
                    seen: BTreeMap::new(),
                });
            }
            Event::SequenceStart(..) => {
                let path = self.next_value_path().unwrap_or_default();
                self.out.values.entry(path.clone()).or_insert(here);
                self.stack.push(Frame::Seq { path, index: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_point_at_keys_and_items() {
        let src = "version: 1\nphoneNumbers:\n  - number: \"+1\"\n    name: a\n  - number: x\n";
        let l = Locations::index(src);
        assert_eq!(
            l.of("version"),
            Location {
                line: 1,
                column: 10
            }
        );
        assert_eq!(l.of("phoneNumbers[1].number").line, 5);
        assert_eq!(l.of("phoneNumbers[0].name").line, 4);
        // Missing field: the nearest parent.
        assert_eq!(l.of("phoneNumbers[1].name").line, 5);
    }

    #[test]
    fn duplicate_keys_are_found_with_both_places() {
        let l = Locations::index("a: 1\nb: 2\na: 3\n");
        assert_eq!(l.duplicate_keys.len(), 1);
        let (path, first, second) = &l.duplicate_keys[0];
        assert_eq!(path, "a");
        assert_eq!((first.line, second.line), (1, 3));
    }
}
