//! The files a projection writes: `q.npy`, `k.npy`, `v.npy`, or one `qkv.safetensors`,
//! streamed chunk by chunk into partial files and put in place all or none
//! ([`PartialOutputs`], through [`commit`](super::commit)).

use super::commit::{OutputDir, Partial};
use super::npy::NpyRowWriter;
use super::safetensors::SafetensorsWriter;
use crate::element::ElementType;
use crate::error::Error;
use crate::host::Elements;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// The output files' format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutFormat {
    /// q.npy, k.npy, v.npy.
    Npy,
    /// qkv.safetensors with tensors q, k, v.
    Safetensors,
}

impl std::str::FromStr for OutFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "npy" => Ok(OutFormat::Npy),
            "safetensors" => Ok(OutFormat::Safetensors),
            _ => Err(format!(
                "unknown output format '{s}': expected npy or safetensors"
            )),
        }
    }
}

impl std::fmt::Display for OutFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl OutFormat {
    /// Its name: `npy` or `safetensors`.
    pub fn name(self) -> &'static str {
        match self {
            OutFormat::Npy => "npy",
            OutFormat::Safetensors => "safetensors",
        }
    }

    /// The files it writes.
    pub fn files(self) -> &'static [&'static str] {
        match self {
            OutFormat::Npy => &["q.npy", "k.npy", "v.npy"],
            OutFormat::Safetensors => &["qkv.safetensors"],
        }
    }

    /// The type the files hold for a run in `element`.
    pub fn stored(self, element: ElementType) -> ElementType {
        match (self, element) {
            (OutFormat::Npy, ElementType::Bf16) => ElementType::F32,
            (_, e) => e,
        }
    }
}

/// Q, K and V being written chunk by chunk into partial files in the output directory, put
/// in place only by [`commit_with`](Self::commit_with), all or none (see [`super::commit`]).
/// Dropped uncommitted (an error, a failed check, NaN in the inputs), it removes the partial
/// files: nothing incomplete is ever left under a final name, and existing outputs stay
/// untouched.
pub struct PartialOutputs {
    partials: Vec<Partial>,
    writers: Writers,
}

enum Writers {
    /// q.npy, k.npy, v.npy.
    Npy(Vec<NpyRowWriter>),
    /// qkv.safetensors.
    Safetensors(SafetensorsWriter),
}

impl PartialOutputs {
    /// The partial files of `format` in `out`, holding `element` (see [`OutFormat::stored`]),
    /// Q of `shapes[0]` and K, V of `shapes[1]` and `shapes[2]`; a safetensors file carries
    /// `metadata`.
    pub fn create(
        out: &OutputDir,
        format: OutFormat,
        element: ElementType,
        shapes: [&[u64]; 3],
        metadata: &BTreeMap<String, String>,
    ) -> Result<Self, Error> {
        let mut partials = Vec::new();
        let writers = match format {
            OutFormat::Npy => {
                let mut writers = Vec::new();
                for (name, shape) in format.files().iter().zip(shapes) {
                    let mut p = out.partial(name)?;
                    let shown = p.path().display().to_string();
                    writers.push(NpyRowWriter::typed(p.take_file(), &shown, shape, element)?);
                    partials.push(p);
                }
                Writers::Npy(writers)
            }
            OutFormat::Safetensors => {
                let mut p = out.partial(format.files()[0])?;
                let shown = p.path().display().to_string();
                let tensors = [("q", shapes[0]), ("k", shapes[1]), ("v", shapes[2])];
                let w = SafetensorsWriter::new(p.take_file(), &shown, element, &tensors, metadata)?;
                partials.push(p);
                Writers::Safetensors(w)
            }
        };
        Ok(Self { partials, writers })
    }

    /// Q's, K's and V's next rows.
    pub fn write(&mut self, parts: [Elements<'_>; 3]) -> Result<(), Error> {
        match &mut self.writers {
            Writers::Npy(writers) => {
                for (w, data) in writers.iter_mut().zip(parts) {
                    w.write_elements(data)?;
                }
            }
            Writers::Safetensors(w) => {
                for (i, data) in parts.into_iter().enumerate() {
                    w.write(i, data)?;
                }
            }
        }
        Ok(())
    }

    /// Flushes the files (each must be complete) and puts them in place, with one more file
    /// in the same transaction where `extra` returns one: it is given each output's name and
    /// the path of its finished partial file, and returns the file's name and bytes (a
    /// shard's manifest), or None.
    pub fn commit_with(
        self,
        out: &OutputDir,
        force: bool,
        extra: impl FnOnce(&[(&str, &Path)]) -> Result<Option<(&'static str, Vec<u8>)>, Error>,
    ) -> Result<Vec<String>, Error> {
        let files = match self.writers {
            Writers::Npy(writers) => writers
                .into_iter()
                .map(NpyRowWriter::finish)
                .collect::<Result<Vec<_>, Error>>()?,
            Writers::Safetensors(w) => vec![w.finish()?],
        };
        let mut parts: Vec<_> = self.partials.into_iter().zip(files).collect();
        let named: Vec<(&str, &Path)> = parts.iter().map(|(p, _)| (p.name(), p.path())).collect();
        if let Some((name, bytes)) = extra(&named)? {
            let mut p = out.partial(name)?;
            let mut f = p.take_file();
            f.write_all(&bytes)
                .map_err(|e| Error::io(format!("cannot write {}", p.path().display()), e))?;
            parts.push((p, f));
        }
        Ok(out
            .commit(parts, force)?
            .iter()
            .map(|p| p.display().to_string())
            .collect())
    }
}

/// The metadata the output files carry: where the inputs came from (`sources`: key and
/// path), the tensors read (`tensors`), the storage type, the kernel, the layout and the
/// producer.
pub fn metadata(
    sources: [(&str, &std::path::Path); 2],
    tensors: &[&str],
    element: ElementType,
    config: crate::kernels::KernelConfig,
    layout: crate::layout::OutputLayout,
) -> BTreeMap<String, String> {
    let mut meta: BTreeMap<String, String> = sources
        .iter()
        .map(|(k, p)| (k.to_string(), p.display().to_string()))
        .collect();
    meta.extend([
        ("tensors".to_string(), tensors.join(",")),
        ("dtype".to_string(), element.to_string()),
        ("kernel".to_string(), config.to_string()),
        (
            "layout".to_string(),
            match layout {
                crate::layout::OutputLayout::Tokens => "tokens".to_string(),
                crate::layout::OutputLayout::Heads(_) => {
                    "heads [batch, heads, seq, head_dim]".to_string()
                }
            },
        ),
        (
            "producer".to_string(),
            format!("qkv-wgpu {}", env!("CARGO_PKG_VERSION")),
        ),
    ]);
    meta
}
