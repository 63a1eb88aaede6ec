//! Reading a spec file: size limit, UTF-8, YAML → [`Spec`], and the location index.

use std::path::{Path, PathBuf};

use sha2::Digest;

use super::{Locations, MAX_SPEC_BYTES, Spec};

/// A parsed spec with what validation needs to point at its lines.
#[derive(Debug, Clone)]
pub struct LoadedSpec {
    pub path: PathBuf,
    pub spec: Spec,
    pub locations: Locations,
    /// SHA-256 (hex) of the file's bytes.
    pub digest: String,
}

/// The spec file could not be read as a spec at all.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error(
        "cannot read spec `{path}`: {source}\nhint: check the path; vapictl takes one YAML file per owner"
    )]
    Unreadable {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "spec `{path}` is {size} bytes, over the {limit}-byte limit\nhint: a spec holds one owner's numbers; split very large owners or check that the right file is named"
    )]
    TooLarge { path: String, size: u64, limit: u64 },
    #[error("spec `{path}` is not UTF-8 text (byte {offset})\nhint: save the file as UTF-8 YAML")]
    NotText { path: String, offset: usize },
    #[error("{path}:{line}:{column}: {message}\nhint: {hint}")]
    Yaml {
        path: String,
        line: usize,
        column: usize,
        message: String,
        hint: String,
    },
    /// The document is YAML but not shaped like a spec, in more than one place: every place.
    #[error("{}", structure_message(path, problems, text))]
    Structure {
        path: String,
        problems: Vec<super::StructureProblem>,
        /// The file's text, for the hints (never shown whole).
        text: String,
    },
}

fn structure_message(path: &str, problems: &[super::StructureProblem], source: &str) -> String {
    let mut out = format!("spec `{path}` is invalid: {} problems", problems.len());
    for p in problems {
        out.push_str(&format!(
            "\n{path}:{}: {}\n  hint: {}",
            p.location,
            p.message,
            yaml_hint(&p.message, source)
        ));
    }
    out
}

/// Reads and parses `path`.
///
/// # Errors
/// The file is unreadable, larger than [`MAX_SPEC_BYTES`] (checked before it is read), not
/// UTF-8, or not a YAML document of the spec's shape.
pub fn load_file(path: &Path) -> Result<LoadedSpec, SpecError> {
    let shown = path.display().to_string();
    let unreadable = |source| SpecError::Unreadable {
        path: shown.clone(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(unreadable)?;
    if meta.is_dir() {
        return Err(unreadable(std::io::Error::other("it is a directory")));
    }
    if meta.len() > MAX_SPEC_BYTES {
        return Err(SpecError::TooLarge {
            path: shown,
            size: meta.len(),
            limit: MAX_SPEC_BYTES,
        });
    }
    // Read at most one byte past the limit, in case the file grew since `metadata`.
    use std::io::Read;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    std::fs::File::open(path)
        .map_err(unreadable)?
        .take(MAX_SPEC_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() as u64 > MAX_SPEC_BYTES {
        return Err(SpecError::TooLarge {
            path: shown,
            size: bytes.len() as u64,
            limit: MAX_SPEC_BYTES,
        });
    }
    load_bytes(path, &bytes)
}

/// Parses a spec held in memory (`path` is used in messages only).
pub fn load_str(path: &Path, source: &str) -> Result<LoadedSpec, SpecError> {
    load_bytes(path, source.as_bytes())
}

fn load_bytes(path: &Path, bytes: &[u8]) -> Result<LoadedSpec, SpecError> {
    let shown = path.display().to_string();
    if bytes.len() as u64 > MAX_SPEC_BYTES {
        return Err(SpecError::TooLarge {
            path: shown,
            size: bytes.len() as u64,
            limit: MAX_SPEC_BYTES,
        });
    }
    let source = std::str::from_utf8(bytes).map_err(|e| SpecError::NotText {
        path: shown.clone(),
        offset: e.valid_up_to(),
    })?;
    if let Some(offset) = source.find('\0') {
        return Err(SpecError::NotText {
            path: shown,
            offset,
        });
    }
    let spec: Spec = serde_yaml::from_str(source).map_err(|e| {
        // serde stops at the first problem; when the document is YAML, find all of them.
        if let Ok(doc) = serde_yaml::from_str::<serde_yaml::Value>(source) {
            let problems = super::structure::problems(&doc, &Locations::index(source));
            if problems.len() > 1 {
                return SpecError::Structure {
                    path: shown.clone(),
                    problems,
                    text: source.to_string(),
                };
            }
        }
        let mut err = yaml_error(&shown, source, &e);
        // serde points a duplicate key at its mapping; the event walk knows the key itself.
        if let SpecError::Yaml {
            line,
            column,
            message,
            ..
        } = &mut err
            && message.contains("duplicate")
            && let Some((path, first, second)) = Locations::index(source).duplicate_keys.first()
        {
            *line = second.line;
            *column = second.column;
            *message = format!("`{path}` appears twice (first at line {})", first.line);
        }
        err
    })?;
    let locations = Locations::index(source);
    Ok(LoadedSpec {
        path: path.to_path_buf(),
        spec,
        locations,
        digest: hex::encode(sha2::Sha256::digest(bytes)),
    })
}

fn yaml_error(path: &str, source: &str, e: &serde_yaml::Error) -> SpecError {
    let (line, column) = match e.location() {
        Some(l) => (l.line(), l.column()),
        None => (1, 1),
    };
    let raw = e.to_string();
    // serde_yaml appends " at line L column C"; the location is already in front.
    let message = match raw.find(" at line ") {
        Some(i) => raw[..i].to_string(),
        None => raw.clone(),
    };
    let hint = yaml_hint(&message, source);
    SpecError::Yaml {
        path: path.to_string(),
        line,
        column,
        message,
        hint,
    }
}

fn yaml_hint(message: &str, source: &str) -> String {
    if source.contains("\"vapictl_plan\"") {
        return "this is a saved plan (from `vapictl plan --out`), not a spec: apply it with `vapictl apply FILE`; if it is truncated or corrupt, make a new plan".into();
    }
    if message.contains("unknown field") {
        if let Some(expected) = message.split("expected one of ").nth(1) {
            return format!("remove the field or correct its spelling; allowed here: {expected}");
        }
        return "remove the field or correct its spelling".into();
    }
    if message.contains("missing field") {
        return "add the field; `vapictl schema` prints the spec format".into();
    }
    if message.contains("duplicate") {
        return "each key may appear once per mapping; remove one of them".into();
    }
    if message.contains("recursion limit") || message.contains("repetition limit") {
        return "the document nests or repeats aliases too deeply; write the values out plainly"
            .into();
    }
    if message.contains("invalid type") && message.contains("expected a string") {
        return "quote the value, e.g. number: \"+14155551234\"".into();
    }
    if source.trim().is_empty() || message.contains("EOF") {
        return "the file is empty; start from examples/ or `vapictl import`".into();
    }
    "fix the YAML at that position; `vapictl schema` prints the spec format".into()
}
