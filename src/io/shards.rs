//! A corpus of X shards projected one by one, resumably: which files the shards are
//! ([`expand`]: a file, a directory, a glob pattern or a list file), and each shard's
//! manifest ([`Manifest`]), committed with its outputs in one transaction, which is how a
//! rerun knows that a shard is done.
//!
//! A shard's outputs go to `OUT/<name>/` (name: the input's file name without `.npy`) with
//! `shard.json`: the input's path, size and XXH3-128 checksum, the job (a checksum of the
//! weights as uploaded and of every setting that changes the outputs), and each output's
//! size and checksum. A rerun skips a shard only when all of that still holds
//! ([`ShardState::Done`]); a shard with no outputs is projected; anything else (outputs
//! without a manifest, a changed input, other weights or settings, an output changed or
//! missing) is [`ShardState::Stale`] and is redone only with `--force`, since its files may
//! not be this tool's to replace.

use super::outputs::OutFormat;
use crate::element::ElementType;
use crate::epilogue::{Epilogue, Heads};
use crate::error::{Error, Result};
use crate::host::ElementVec;
use crate::layout::HeadSplit;
use crate::weights::FusedWeights;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use xxhash_rust::xxh3::Xxh3;

/// The manifest's name in each shard's directory.
pub const MANIFEST: &str = "shard.json";
/// What the manifest's `format` says: its layout and version (2: the job key of
/// [`job_key`], which every front end computes alike).
pub const MANIFEST_FORMAT: &str = "qkv-wgpu shard manifest 2";

/// The inputs of a run: one file (projected as before, outputs straight into `--out`), or
/// shards (each into its own directory under `--out`).
#[derive(Debug, Clone, PartialEq)]
pub enum Inputs {
    /// One `.npy` file, named as itself.
    One(PathBuf),
    /// The shards, in the order given (a directory's and a pattern's sorted by name).
    Shards(Vec<PathBuf>),
}

/// Whether `s` holds a glob metacharacter.
fn is_pattern(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Whether `p` names a list file: a file ending in `.txt` or `.list`.
fn is_list(p: &Path) -> bool {
    p.is_file() && p.extension().is_some_and(|e| e == "txt" || e == "list")
}

/// The `.npy` files directly in `dir`, sorted by name.
fn dir_shards(dir: &Path) -> Result<Vec<PathBuf>> {
    let what = || format!("cannot list {}", dir.display());
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(what(), e))? {
        let p = entry.map_err(|e| Error::io(what(), e))?.path();
        if p.extension().is_some_and(|e| e == "npy") && p.is_file() {
            found.push(p);
        }
    }
    found.sort();
    if found.is_empty() {
        return Err(Error::Input(format!(
            "{} holds no .npy files to project",
            dir.display()
        )));
    }
    Ok(found)
}

/// The files a glob pattern matches, sorted by name.
fn pattern_shards(pattern: &str) -> Result<Vec<PathBuf>> {
    let paths = glob::glob(pattern)
        .map_err(|e| Error::Input(format!("--input {pattern}: not a glob pattern: {e}")))?;
    let mut found = Vec::new();
    for p in paths {
        let p = p.map_err(|e| Error::Input(format!("--input {pattern}: {e}")))?;
        if p.is_file() {
            found.push(p);
        }
    }
    found.sort();
    if found.is_empty() {
        return Err(Error::Input(format!("--input {pattern} matches no file")));
    }
    Ok(found)
}

/// The paths a list file names, one a line (blank lines and lines starting with `#`
/// skipped; relative paths are relative to the list file's directory).
fn list_shards(list: &Path) -> Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string(list)
        .map_err(|e| Error::io(format!("cannot read the list {}", list.display()), e))?;
    let base = list.parent().unwrap_or(Path::new(""));
    let found: Vec<PathBuf> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| base.join(l))
        .collect();
    if found.is_empty() {
        return Err(Error::Input(format!(
            "the list {} names no file (one path a line)",
            list.display()
        )));
    }
    Ok(found)
}

/// What `--input` names: one `.npy` file, or shards (several files, a directory, a glob
/// pattern, or a list file, `.txt` or `.list`, of paths one a line). Each shard must be a
/// file, no file may be named twice, and no two shards may share a name (their outputs'
/// directory).
pub fn expand(given: &[PathBuf]) -> Result<Inputs> {
    let mut shards = Vec::new();
    for p in given {
        let s = p.to_string_lossy();
        if p.is_dir() {
            shards.extend(dir_shards(p)?);
        } else if is_list(p) {
            shards.extend(list_shards(p)?);
        } else if p.exists() || !is_pattern(&s) {
            // A file (or what is not a pattern) is X: the .npy reader says what is wrong
            // with it, if anything.
            if given.len() == 1 {
                return Ok(Inputs::One(p.clone()));
            }
            shards.push(p.clone());
        } else {
            shards.extend(pattern_shards(&s)?);
        }
    }
    let mut names: HashMap<String, &Path> = HashMap::new();
    for p in &shards {
        if !p.is_file() {
            return Err(Error::Input(format!(
                "cannot open shard {}: no such file",
                p.display()
            )));
        }
        let name = shard_name(p)?;
        if let Some(other) = names.insert(name.clone(), p) {
            let what = if same_file::is_same_file(other, p).unwrap_or(false) {
                "is given twice".to_string()
            } else {
                format!(
                    "and {} have the same name, {name}, and would share its outputs' \
                     directory",
                    other.display()
                )
            };
            return Err(Error::Input(format!("shard {} {what}", p.display())));
        }
    }
    Ok(Inputs::Shards(shards))
}

/// A shard's name: its file name without `.npy` (the directory of its outputs).
pub fn shard_name(p: &Path) -> Result<String> {
    let name = match p.file_name().map(|n| n.to_string_lossy()) {
        Some(n) => n.strip_suffix(".npy").unwrap_or(&n).to_string(),
        None => String::new(),
    };
    if name.is_empty() || name.starts_with('.') {
        return Err(Error::Input(format!(
            "shard {}: its name cannot name a directory of outputs",
            p.display()
        )));
    }
    Ok(name)
}

/// A file's size and XXH3-128 checksum (32 hex digits).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    /// Bytes.
    pub bytes: u64,
    /// XXH3-128 of its bytes.
    pub xxh3: String,
}

impl FileDigest {
    /// The digest of the file at `p`, read in 1 MiB pieces.
    pub fn of(p: &Path) -> Result<Self> {
        let what = || format!("cannot read {}", p.display());
        let mut f = std::fs::File::open(p).map_err(|e| Error::io(what(), e))?;
        let mut h = Xxh3::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut bytes = 0u64;
        loop {
            let n = f.read(&mut buf).map_err(|e| Error::io(what(), e))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            bytes += n as u64;
        }
        Ok(Self {
            bytes,
            xxh3: format!("{:032x}", h.digest128()),
        })
    }
}

/// XXH3-128 of `parts`, each preceded by its length (so that no two lists of parts collide
/// by where one ends): a job's key.
pub fn digest_parts(parts: &[&[u8]]) -> String {
    let mut h = Xxh3::new();
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p);
    }
    format!("{:032x}", h.digest128())
}

/// The job's key in every manifest: XXH3-128 of the weights as uploaded (W, in each
/// matrix's stored format where it has one, and the bias) and of every setting that changes
/// the outputs' values, types, layout or files: the storage type `element`, the heads of a
/// [batch, heads, seq, head_dim] layout (`heads`: the query heads and the key/value heads
/// where given, else as many as K's width holds at Q's head size), the norm and RoPE applied
/// to Q and K over which heads (their settings whole; not the sequence length, which each
/// shard's X gives), and the output `format`. Not the kernel: any kernel's outputs pass the same check. Every front end (the CLI, the
/// Python module) keys its manifests with it, so each skips what another completed.
pub fn job_key(
    w: &FusedWeights,
    element: ElementType,
    heads: Option<(u32, Option<u32>)>,
    epilogue: Option<(&Epilogue, &Heads)>,
    format: OutFormat,
) -> Result<String> {
    let layout = match heads {
        None => "tokens".to_string(),
        Some((h, kv)) => {
            let split = HeadSplit::with_default_kv(&w.shape(1)?, 1, h, kv)?;
            format!("heads {} {}", split.heads, split.kv_heads)
        }
    };
    // Without an epilogue the key is what it was before there was one.
    let epilogue = match epilogue {
        None => String::new(),
        Some((ep, h)) => format!(
            " | epilogue {ep:?} over {} {} {}",
            h.heads, h.kv_heads, h.head_dim
        ),
    };
    let settings = format!(
        "weights {} {} {} | dtype {element} | layout {layout}{epilogue} | out {format}",
        w.d_model, w.q_width, w.kv_width,
    );
    let w_bytes: &[u8] = match &w.w {
        ElementVec::F32(v) => bytemuck::cast_slice(v),
        ElementVec::Half(_, v) => bytemuck::cast_slice(v),
    };
    let bias: &[u8] = w.bias.as_deref().map_or(&[], bytemuck::cast_slice);
    let mut parts: Vec<&[u8]> = vec![settings.as_bytes(), w_bytes, bias];
    if let Some(stored) = &w.stored {
        parts.extend(stored.iter().map(|m| m.bytes.as_slice()));
    }
    Ok(digest_parts(&parts))
}

/// What a shard's directory says of it: written in the same commit as its outputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`MANIFEST_FORMAT`].
    pub format: String,
    /// The input as named.
    pub input: String,
    /// The input's size and checksum when it was projected.
    pub input_digest: FileDigest,
    /// The job's key: the weights as uploaded and every setting that changes the outputs.
    pub job: String,
    /// Each output's name, size and checksum.
    pub outputs: BTreeMap<String, FileDigest>,
}

/// Where a shard stands before a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardState {
    /// Its outputs are complete and belong to its input and this job: skipped.
    Done,
    /// Nothing of it is there: projected.
    Todo,
    /// Something is there that this run cannot vouch for (why): redone only with `--force`.
    Stale(String),
}

impl Manifest {
    /// The manifest of `input` (its digest) projected by `job` into `outputs` (name and the
    /// path of the finished file).
    pub fn new(input: &Path, input_digest: FileDigest, job: &str) -> Self {
        Self {
            format: MANIFEST_FORMAT.into(),
            input: input.display().to_string(),
            input_digest,
            job: job.into(),
            outputs: BTreeMap::new(),
        }
    }

    /// The manifest as written: pretty JSON and a newline.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut s = serde_json::to_string_pretty(self).expect("a manifest serializes");
        s.push('\n');
        s.into_bytes()
    }

    /// Where the shard of `input`, with its outputs `names` in `dir`, stands for `job`.
    /// Sizes are compared before checksums, so a changed file is usually found without
    /// reading it.
    pub fn state(dir: &Path, input: &Path, job: &str, names: &[&str]) -> Result<ShardState> {
        let present: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| dir.join(n).exists())
            .collect();
        let path = dir.join(MANIFEST);
        if !path.exists() {
            return Ok(match present.first() {
                None => ShardState::Todo,
                Some(n) => ShardState::Stale(format!("{n} is there without a {MANIFEST}")),
            });
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
        let m: Manifest = match serde_json::from_str(&text) {
            Ok(m) => m,
            Err(e) => {
                return Ok(ShardState::Stale(format!(
                    "its {MANIFEST} is unreadable: {e}"
                )))
            }
        };
        let stale = |why: String| Ok(ShardState::Stale(why));
        if m.format != MANIFEST_FORMAT {
            return stale(format!(
                "its {MANIFEST} is of another format ({})",
                m.format
            ));
        }
        if m.job != job {
            return stale("it was projected with other weights or settings".into());
        }
        let same = |recorded: &FileDigest, p: &Path| -> Result<bool> {
            let bytes = std::fs::metadata(p).map(|m| m.len()).ok();
            Ok(bytes == Some(recorded.bytes) && FileDigest::of(p)? == *recorded)
        };
        if !same(&m.input_digest, input)? {
            return stale(format!(
                "{} changed since it was projected",
                input.display()
            ));
        }
        for n in names {
            match m.outputs.get(*n) {
                Some(d) if dir.join(n).is_file() && same(d, &dir.join(n))? => {}
                Some(_) => return stale(format!("{n} changed or is missing")),
                None => return stale(format!("its {MANIFEST} does not name {n}")),
            }
        }
        Ok(ShardState::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(dir: &Path, name: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, b"\x93NUMPY\x01\x00").unwrap();
        p
    }

    #[test]
    fn inputs_expand_from_a_file_a_directory_a_pattern_and_a_list() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        let (a, b) = (npy(d, "b.npy"), npy(d, "a.npy"));
        std::fs::write(d.join("notes.txt"), "a.npy\n# skipped\n\nb.npy\n").unwrap();
        assert_eq!(
            expand(std::slice::from_ref(&a)).unwrap(),
            Inputs::One(a.clone())
        );
        let sorted = Inputs::Shards(vec![b.clone(), a.clone()]);
        assert_eq!(expand(&[d.to_path_buf()]).unwrap(), sorted);
        assert_eq!(expand(&[d.join("*.npy")]).unwrap(), sorted);
        assert_eq!(expand(&[d.join("notes.txt")]).unwrap(), sorted);
        let given = Inputs::Shards(vec![a.clone(), b.clone()]);
        assert_eq!(expand(&[a.clone(), b.clone()]).unwrap(), given);
        let err = |g: &[PathBuf]| expand(g).unwrap_err().to_string();
        assert!(err(&[a.clone(), a.clone()]).contains("given twice"));
        assert!(err(&[d.join("*.bin")]).contains("matches no file"));
        // One name that is no file is X, for the .npy reader to refuse; among shards, it is
        // refused here.
        assert_eq!(
            expand(&[d.join("none.npy")]).unwrap(),
            Inputs::One(d.join("none.npy"))
        );
        assert!(err(&[a.clone(), d.join("none.npy")]).contains("no such file"));
        let sub = d.join("sub");
        std::fs::create_dir(&sub).unwrap();
        assert!(err(std::slice::from_ref(&sub)).contains("no .npy files"));
        // `b` is a.npy.
        let twin = npy(&sub, "a.npy");
        assert!(err(&[b, twin]).contains("same name, a,"));
    }

    #[test]
    fn a_shard_is_done_only_while_its_input_job_and_outputs_are_as_recorded() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        let input = npy(d, "x.npy");
        let out = d.join("x");
        let names = ["q.npy", "k.npy"];
        let state = || Manifest::state(&out, &input, "job", &names).unwrap();
        assert_eq!(state(), ShardState::Todo);
        std::fs::create_dir(&out).unwrap();
        assert_eq!(state(), ShardState::Todo);
        let mut m = Manifest::new(&input, FileDigest::of(&input).unwrap(), "job");
        for n in names {
            std::fs::write(out.join(n), n.as_bytes()).unwrap();
            m.outputs
                .insert(n.into(), FileDigest::of(&out.join(n)).unwrap());
        }
        assert!(matches!(state(), ShardState::Stale(w) if w.contains("without a shard.json")));
        std::fs::write(out.join(MANIFEST), m.to_bytes()).unwrap();
        assert_eq!(state(), ShardState::Done);
        let other = Manifest::state(&out, &input, "other", &names).unwrap();
        assert!(matches!(other, ShardState::Stale(w) if w.contains("other weights")));
        // The same size, other bytes: found by the checksum.
        std::fs::write(out.join("k.npy"), b"K.npy").unwrap();
        assert!(matches!(state(), ShardState::Stale(w) if w.contains("k.npy changed")));
        std::fs::write(out.join("k.npy"), b"k.npy").unwrap();
        std::fs::write(&input, b"\x93NUMPY\x01\x01").unwrap();
        assert!(matches!(state(), ShardState::Stale(w) if w.contains("changed since")));
        std::fs::write(out.join(MANIFEST), b"{").unwrap();
        assert!(matches!(state(), ShardState::Stale(w) if w.contains("unreadable")));
    }

    #[test]
    fn job_keys_depend_on_where_parts_end() {
        assert_ne!(digest_parts(&[b"ab", b"c"]), digest_parts(&[b"a", b"bc"]));
        assert_eq!(digest_parts(&[b"ab"]).len(), 32);
    }
}
