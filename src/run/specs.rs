//! From the `SPEC` arguments to the owners of a run: files and directories expanded, every spec
//! loaded and validated on its own, and conflicts between specs refused before anything is read
//! from the database or Vapi.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use uuid::Uuid;

use crate::Error;
use crate::secrets::Identities;
use crate::spec::load_file;
use crate::state::DesiredState;
use crate::validate::{SecretMode, validate};

/// One owner's valid spec.
#[derive(Debug, Clone)]
pub struct OwnerSpec {
    /// The file, as found from the arguments.
    pub path: PathBuf,
    pub desired: DesiredState,
}

/// A spec that could not be loaded or validated: reported, and the run goes on without it.
#[derive(Debug)]
pub struct FailedSpec {
    pub spec: PathBuf,
    /// The owner, when the file could be read far enough to say.
    pub owner: Option<Uuid>,
    pub error: Error,
}

/// The specs of a run, loaded.
#[derive(Debug, Default)]
pub struct LoadedRun {
    /// Valid specs, in the order of the files.
    pub owners: Vec<OwnerSpec>,
    pub failed: Vec<FailedSpec>,
}

/// Why the specs of a run cannot be run together. Nothing was read from the database or Vapi.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(
        "cannot read spec `{path}`: it is a directory without any spec file (`*.yaml`, `*.yml`)\nhint: give the directory that holds one spec per owner; an empty directory never means \"delete everything\""
    )]
    NoSpecs { path: String },
    #[error("cannot read the directory `{path}`: {source}")]
    UnreadableDirectory {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", conflicts_text(.0))]
    Conflicts(Vec<SpecConflict>),
}

/// Two specs that claim the same thing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpecConflict {
    /// One owner in two files.
    DuplicateOwner {
        owner: Uuid,
        first: PathBuf,
        second: PathBuf,
    },
    /// One number in two owners' specs.
    SharedNumber {
        number: String,
        first: PathBuf,
        second: PathBuf,
    },
}

impl fmt::Display for SpecConflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpecConflict::DuplicateOwner {
                owner,
                first,
                second,
            } => write!(
                f,
                "owner `{owner}` has two specs: `{}` and `{}`",
                first.display(),
                second.display()
            ),
            SpecConflict::SharedNumber {
                number,
                first,
                second,
            } => write!(
                f,
                "`{number}` is in two owners' specs: `{}` and `{}`",
                first.display(),
                second.display()
            ),
        }
    }
}

fn conflicts_text(conflicts: &[SpecConflict]) -> String {
    let mut s = format!(
        "the specs conflict ({} problem{}); nothing was read from the database or Vapi",
        conflicts.len(),
        if conflicts.len() == 1 { "" } else { "s" }
    );
    for c in conflicts {
        s.push_str("\n  ");
        s.push_str(&c.to_string());
    }
    s.push_str(
        "\nhint: one spec per owner, and each number in one owner's spec only; merge or fix the files named",
    );
    s
}

fn is_spec_file(p: &Path) -> bool {
    matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
}

fn is_hidden(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), RunError> {
    let unreadable = |source| RunError::UnreadableDirectory {
        path: dir.display().to_string(),
        source,
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(unreadable)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(unreadable)?;
    entries.sort();
    for p in entries {
        if is_hidden(&p) {
            continue;
        }
        if p.is_dir() {
            walk(&p, out)?;
        } else if is_spec_file(&p) {
            out.push(p);
        }
    }
    Ok(())
}

/// The spec files that `args` name: a file as given (whatever its name), a directory as every
/// `*.yaml`/`*.yml` under it, recursively, in sorted order, hidden files and directories
/// skipped. A file named twice is taken once.
///
/// # Errors
/// A directory that cannot be read, or that holds no spec.
pub fn expand(args: &[PathBuf]) -> Result<Vec<PathBuf>, RunError> {
    let mut files = Vec::new();
    for a in args {
        if a.is_dir() {
            let before = files.len();
            walk(a, &mut files)?;
            if files.len() == before {
                return Err(RunError::NoSpecs {
                    path: a.display().to_string(),
                });
            }
        } else {
            files.push(a.clone());
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    files.retain(|f| seen.insert(f.clone()));
    Ok(files)
}

/// Whether `args` make a run over several specs (more than one argument, or a directory) rather
/// than the single-spec command, whose output stays as it always was.
pub fn is_fleet(args: &[PathBuf]) -> bool {
    args.len() > 1 || args.iter().any(|a| a.is_dir())
}

/// Loads and validates every file on its own (an invalid one is reported in
/// [`LoadedRun::failed`]), then refuses the run when two specs claim one owner or one number.
///
/// # Errors
/// [`RunError::Conflicts`] naming both files of every conflict.
pub fn load(
    files: &[PathBuf],
    identities: &Identities,
    mode: SecretMode,
) -> Result<LoadedRun, RunError> {
    // Each file is read, parsed, decrypted and validated on its own: spread over the CPUs (a
    // thousand specs are a thousand token decryptions), then gathered in file order.
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(files.len().max(1));
    let chunk = files.len().div_ceil(threads).max(1);
    let results: Vec<Result<OwnerSpec, Box<FailedSpec>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|path| load_one(path, identities, mode))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("loading a spec does not panic"))
            .collect()
    });
    let mut run = LoadedRun::default();
    for r in results {
        match r {
            Ok(o) => run.owners.push(o),
            Err(f) => run.failed.push(*f),
        }
    }
    let conflicts = conflicts(&run);
    if conflicts.is_empty() {
        Ok(run)
    } else {
        Err(RunError::Conflicts(conflicts))
    }
}

fn load_one(
    path: &Path,
    identities: &Identities,
    mode: SecretMode,
) -> Result<OwnerSpec, Box<FailedSpec>> {
    let loaded = load_file(path).map_err(|e| {
        Box::new(FailedSpec {
            spec: path.to_path_buf(),
            owner: None,
            error: e.into(),
        })
    })?;
    match validate(&loaded, identities, mode) {
        Ok(desired) => Ok(OwnerSpec {
            path: path.to_path_buf(),
            desired,
        }),
        Err(e) => Err(Box::new(FailedSpec {
            spec: path.to_path_buf(),
            owner: Uuid::parse_str(loaded.spec.owner.trim()).ok(),
            error: e.into(),
        })),
    }
}

fn conflicts(run: &LoadedRun) -> Vec<SpecConflict> {
    let mut out = Vec::new();
    let mut owners: BTreeMap<Uuid, &Path> = BTreeMap::new();
    let claims = run
        .owners
        .iter()
        .map(|o| (Some(o.desired.owner), o.path.as_path()))
        .chain(run.failed.iter().map(|f| (f.owner, f.spec.as_path())));
    for (owner, path) in claims {
        let Some(owner) = owner else { continue };
        match owners.get(&owner) {
            Some(first) => out.push(SpecConflict::DuplicateOwner {
                owner,
                first: first.to_path_buf(),
                second: path.to_path_buf(),
            }),
            None => {
                owners.insert(owner, path);
            }
        }
    }
    let mut numbers: BTreeMap<&str, (Uuid, &Path)> = BTreeMap::new();
    for o in &run.owners {
        for n in o.desired.numbers.keys() {
            match numbers.get(n.as_str()) {
                Some((owner, first)) if *owner != o.desired.owner => {
                    out.push(SpecConflict::SharedNumber {
                        number: n.to_string(),
                        first: first.to_path_buf(),
                        second: o.path.clone(),
                    })
                }
                Some(_) => {}
                None => {
                    numbers.insert(n.as_str(), (o.desired.owner, &o.path));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_expand_to_sorted_yaml_files_without_hidden_ones() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::create_dir_all(p.join("b/nested")).unwrap();
        std::fs::create_dir_all(p.join(".git")).unwrap();
        for f in [
            "z.yaml",
            "a.yml",
            "b/nested/c.yaml",
            ".hidden.yaml",
            ".git/x.yaml",
            "notes.txt",
        ] {
            std::fs::write(p.join(f), "").unwrap();
        }
        let files = expand(&[p.to_path_buf()]).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|f| f.strip_prefix(p).unwrap().display().to_string())
            .collect();
        assert_eq!(names, vec!["a.yml", "b/nested/c.yaml", "z.yaml"]);
        assert!(matches!(
            expand(&[p.join(".git")]),
            Ok(v) if v.len() == 1
        ));
        std::fs::create_dir_all(p.join("empty")).unwrap();
        assert!(matches!(
            expand(&[p.join("empty")]),
            Err(RunError::NoSpecs { .. })
        ));
    }
}
