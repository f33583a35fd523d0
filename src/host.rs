//! Arrays on the host in their storage type: f32, or the 16-bit patterns of f16 or bf16,
//! never an f32 copy of a half-typed array. [`ElementVec`] owns (the weights of a BF16
//! checkpoint, a chunk's X), [`Elements`] borrows (a chunk's Q, K, V read back, as mapped),
//! [`ElementsMut`] is what a source fills (X of one chunk, in the run's type): write-only, so
//! that it can be GPU memory mapped for writing (which may be write-combined: reading it back
//! would be slow, and wgpu does not allow it) as well as a host vector.
//!
//! 16-bit patterns are `u16`s in the machine's order; the GPU buffers hold them little-endian,
//! and wgpu's backends run on little-endian machines only.

use crate::element::{ElementType, OutOfRange};
use std::ops::Range;
use std::ptr::NonNull;
use wgpu::WriteOnly;

/// An array owned in its storage type.
#[derive(Debug, Clone, PartialEq)]
pub enum ElementVec {
    /// 32-bit floats.
    F32(Vec<f32>),
    /// f16 or bf16 bit patterns (the type says which).
    Half(ElementType, Vec<u16>),
}

/// An array borrowed in its storage type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Elements<'a> {
    /// 32-bit floats.
    F32(&'a [f32]),
    /// f16 or bf16 bit patterns (the type says which).
    Half(ElementType, &'a [u16]),
}

/// An array to fill in its storage type, write-only ([`wgpu::WriteOnly`]): a host vector's
/// elements or a mapped staging buffer's.
#[derive(Debug)]
pub enum ElementsMut<'a> {
    /// 32-bit floats.
    F32(WriteOnly<'a, [f32]>),
    /// f16 or bf16 bit patterns (the type says which).
    Half(ElementType, WriteOnly<'a, [u16]>),
}

impl ElementVec {
    /// `len` zeros of `element`.
    pub fn zeros(element: ElementType, len: usize) -> Self {
        if element.is_half() {
            ElementVec::Half(element, vec![0; len])
        } else {
            ElementVec::F32(vec![0.0; len])
        }
    }

    /// `values` rounded to nearest even into `element` (kept as they are for f32).
    pub fn from_f32(element: ElementType, values: &[f32]) -> Self {
        let mut out = Self::zeros(element, values.len());
        out.as_mut().put_f32_unchecked(0, values.iter().copied());
        out
    }

    /// The type the elements are stored in.
    pub fn element(&self) -> ElementType {
        self.as_ref().element()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.as_ref().len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A borrowed view.
    pub fn as_ref(&self) -> Elements<'_> {
        match self {
            ElementVec::F32(w) => Elements::F32(w),
            ElementVec::Half(e, w) => Elements::Half(*e, w),
        }
    }

    /// A view to write into.
    pub fn as_mut(&mut self) -> ElementsMut<'_> {
        match self {
            ElementVec::F32(w) => ElementsMut::F32(WriteOnly::from_mut(w.as_mut_slice())),
            ElementVec::Half(e, w) => ElementsMut::Half(*e, WriteOnly::from_mut(w.as_mut_slice())),
        }
    }

    /// The f32 elements, when stored as f32.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match self {
            ElementVec::F32(w) => Some(w),
            ElementVec::Half(..) => None,
        }
    }

    /// The f32 elements, mutably, when stored as f32.
    pub fn as_f32_mut(&mut self) -> Option<&mut Vec<f32>> {
        match self {
            ElementVec::F32(w) => Some(w),
            ElementVec::Half(..) => None,
        }
    }

    /// Elements `range` as f32: borrowed when stored as f32, else widened (exactly) into
    /// `buf`.
    pub fn slice<'a>(&'a self, range: Range<usize>, buf: &'a mut Vec<f32>) -> &'a [f32] {
        match self {
            ElementVec::F32(w) => &w[range],
            ElementVec::Half(..) => {
                buf.clear();
                self.as_ref().slice(range).extend_f32(buf);
                buf
            }
        }
    }

    /// Every element as f32, in order (widened one by one: no copy of the whole).
    pub fn values(&self) -> Box<dyn Iterator<Item = f32> + '_> {
        self.as_ref().values()
    }

    /// These elements in type `element`: the same when already stored so, else rounded to
    /// nearest even (to a narrower type) or widened exactly, value by value.
    pub fn to_element(&self, element: ElementType) -> ElementVec {
        if self.element() == element {
            return self.clone();
        }
        let mut out = Self::zeros(element, self.len());
        out.as_mut().put_f32_unchecked(0, self.values());
        out
    }
}

impl ElementVec {
    /// These elements rounded to `via`, then to `element`, value by value in one pass
    /// (what a kernel reading `element` gets in a run stored as `via`); the same as
    /// [`to_element`](Self::to_element) when the two are one.
    pub fn to_element_via(&self, via: ElementType, element: ElementType) -> ElementVec {
        if via == element || via == self.element() {
            return self.to_element(element);
        }
        let mut out = Self::zeros(element, self.len());
        out.as_mut()
            .put_f32_unchecked(0, self.values().map(|v| via.round(v)));
        out
    }
}

impl<'a> Elements<'a> {
    /// The type the elements are stored in.
    pub fn element(&self) -> ElementType {
        match self {
            Elements::F32(_) => ElementType::F32,
            Elements::Half(e, _) => *e,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Elements::F32(d) => d.len(),
            Elements::Half(_, d) => d.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i`, as f32 (widened exactly).
    pub fn get(&self, i: usize) -> f32 {
        match self {
            Elements::F32(d) => d[i],
            Elements::Half(e, d) => e.widen_bits(d[i]),
        }
    }

    /// Elements `range`.
    pub fn slice(&self, range: Range<usize>) -> Elements<'a> {
        match *self {
            Elements::F32(d) => Elements::F32(&d[range]),
            Elements::Half(e, d) => Elements::Half(e, &d[range]),
        }
    }

    /// How many elements are NaN or infinite, and the index of the first: a test of the
    /// exponent bits (all ones in f32, f16 and bf16 alike), with no widening.
    pub fn non_finite(&self) -> (usize, Option<usize>) {
        let (mut count, mut first) = (0, None);
        let mut see = |i: usize, bad: bool| {
            if bad {
                count += 1;
                first.get_or_insert(i);
            }
        };
        match *self {
            Elements::F32(d) => d
                .iter()
                .enumerate()
                .for_each(|(i, v)| see(i, !v.is_finite())),
            Elements::Half(e, d) => {
                let exponent: u16 = if e == ElementType::F16 {
                    0x7c00
                } else {
                    0x7f80
                };
                d.iter()
                    .enumerate()
                    .for_each(|(i, &b)| see(i, b & exponent == exponent));
            }
        }
        (count, first)
    }

    /// Every element as f32, in order.
    pub fn values(self) -> Box<dyn Iterator<Item = f32> + 'a> {
        match self {
            Elements::F32(d) => Box::new(d.iter().copied()),
            Elements::Half(e, d) => Box::new(d.iter().map(move |&b| e.widen_bits(b))),
        }
    }

    /// Appends every element, widened exactly to f32, to `out`.
    pub fn extend_f32(&self, out: &mut Vec<f32>) {
        match *self {
            Elements::F32(d) => out.extend_from_slice(d),
            Elements::Half(e, d) => {
                let at = out.len();
                out.resize(at + d.len(), 0.0);
                e.decode(bytemuck::cast_slice(d), &mut out[at..]);
            }
        }
    }

    /// Every element widened exactly to f32.
    pub fn to_f32(&self) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.len());
        self.extend_f32(&mut out);
        out
    }

    /// Appends the elements' little-endian bytes in type `element` to `out`: as they are
    /// when stored so, else rounded to nearest even or widened exactly.
    pub fn encode(&self, element: ElementType, out: &mut Vec<u8>) {
        match *self {
            Elements::F32(d) => element.encode(d, out),
            Elements::Half(e, d) if e == element => {
                if cfg!(target_endian = "little") {
                    out.extend_from_slice(bytemuck::cast_slice(d));
                } else {
                    out.extend(d.iter().flat_map(|b| b.to_le_bytes()));
                }
            }
            Elements::Half(..) => {
                // Another type: widened a block at a time (no f32 copy of the whole).
                let mut wide = Vec::with_capacity(self.len().min(4096));
                for at in (0..self.len()).step_by(4096) {
                    wide.clear();
                    self.slice(at..(at + 4096).min(self.len()))
                        .extend_f32(&mut wide);
                    element.encode(&wide, out);
                }
            }
        }
    }
}

impl<'a> From<&'a [f32]> for Elements<'a> {
    fn from(d: &'a [f32]) -> Self {
        Elements::F32(d)
    }
}

/// A [`WriteOnly`] slice that may move to another thread. wgpu 30 implements `Send` for
/// `WriteOnly<T>` with `T: Send` but, lacking `?Sized` there, not for slices; a write-only
/// slice is as sendable as the `&mut [T]` it stands for.
pub(crate) struct SendWriteOnly<'a, T>(pub(crate) WriteOnly<'a, [T]>);

// SAFETY: like `&mut [T]`, a `WriteOnly<[T]>` gives exclusive access to its elements; sending
// it sends the right to write `T`s, which `T: Send` allows.
unsafe impl<T: Send> Send for SendWriteOnly<'_, T> {}

impl<'a> ElementsMut<'a> {
    /// Bytes (a mapped buffer's) seen as `len` elements of `element`. Panics if the bytes are
    /// too few or not aligned to the element (mapped ranges are aligned far past 4 bytes).
    pub fn from_bytes(element: ElementType, mut bytes: WriteOnly<'a, [u8]>, len: usize) -> Self {
        let size = element.size() as usize;
        assert!(
            len * size <= bytes.len(),
            "{len} elements do not fit the bytes"
        );
        let ptr = bytes.as_raw_element_ptr();
        assert_eq!(
            ptr.as_ptr() as usize % size,
            0,
            "bytes not aligned to {element}"
        );
        // SAFETY: the pointer is valid for writes of `len * size` bytes for 'a (checked above;
        // `bytes` is a WriteOnly of 'a, consumed here), aligned to the element (checked), and
        // every bit pattern is a valid f32 or u16, so no write can make the memory invalid.
        unsafe {
            if element.is_half() {
                ElementsMut::Half(
                    element,
                    WriteOnly::new(NonNull::slice_from_raw_parts(ptr.cast::<u16>(), len)),
                )
            } else {
                ElementsMut::F32(WriteOnly::new(NonNull::slice_from_raw_parts(
                    ptr.cast::<f32>(),
                    len,
                )))
            }
        }
    }

    /// The type the elements are stored in.
    pub fn element(&self) -> ElementType {
        match self {
            ElementsMut::F32(_) => ElementType::F32,
            ElementsMut::Half(e, _) => *e,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            ElementsMut::F32(d) => d.len(),
            ElementsMut::Half(_, d) => d.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A shorter view: elements `range`.
    pub fn slice_mut(&mut self, range: Range<usize>) -> ElementsMut<'_> {
        match self {
            ElementsMut::F32(d) => ElementsMut::F32(d.slice(range)),
            ElementsMut::Half(e, d) => ElementsMut::Half(*e, d.slice(range)),
        }
    }

    /// Writes `values` from element `at` on, rounded to nearest even into the storage type.
    /// A finite value the type cannot hold (it would round to an infinity) is refused: the
    /// error's index counts from the first of `values`, and elements before it are written.
    /// NaN and infinities are written as they are (they are no range errors; callers that
    /// refuse them scan for them).
    pub fn put_f32(&mut self, at: usize, values: &[f32]) -> Result<(), OutOfRange> {
        let element = self.element();
        if let Some(e) = element.check_range(values) {
            self.put_f32_unchecked(at, values[..e.index].iter().copied());
            return Err(e);
        }
        match self {
            // As they are: one copy.
            ElementsMut::F32(d) => d.slice(at..at + values.len()).copy_from_slice(values),
            _ => self.put_f32_unchecked(at, values.iter().copied()),
        }
        Ok(())
    }

    /// Writes `values` from element `at` on (as many as there are, or as fit), rounded to
    /// nearest even (an out-of-range value becomes an infinity).
    pub fn put_f32_unchecked(&mut self, at: usize, values: impl Iterator<Item = f32>) {
        fn put<T: Copy>(d: &mut WriteOnly<'_, [T]>, at: usize, values: impl Iterator<Item = T>) {
            d.slice(at..)
                .into_iter()
                .zip(values)
                .for_each(|(slot, v)| slot.write(v));
        }
        match self {
            ElementsMut::F32(d) => put(d, at, values),
            ElementsMut::Half(ElementType::F16, d) => {
                put(d, at, values.map(|v| half::f16::from_f32(v).to_bits()))
            }
            ElementsMut::Half(_, d) => {
                put(d, at, values.map(|v| half::bf16::from_f32(v).to_bits()))
            }
        }
    }

    /// Writes `values`, of any type, from element `at` on: patterns of the storage type
    /// copied as they are, anything else widened exactly and rounded as
    /// [`put_f32`](Self::put_f32) rounds (a block at a time: no f32 copy of the whole), which
    /// refuses a finite value the storage type cannot hold.
    pub fn put(&mut self, at: usize, values: Elements<'_>) -> Result<(), OutOfRange> {
        match values {
            Elements::F32(v) => self.put_f32(at, v),
            Elements::Half(e, bits) if e == self.element() => {
                self.put_bits(at, bits);
                Ok(())
            }
            Elements::Half(..) => {
                const BLOCK: usize = 4096;
                let mut buf = Vec::with_capacity(BLOCK);
                for start in (0..values.len()).step_by(BLOCK) {
                    let end = (start + BLOCK).min(values.len());
                    buf.clear();
                    values.slice(start..end).extend_f32(&mut buf);
                    self.put_f32(at + start, &buf).map_err(|e| OutOfRange {
                        index: start + e.index,
                        ..e
                    })?;
                }
                Ok(())
            }
        }
    }

    /// Writes 16-bit patterns of the storage type (a half type) from element `at` on.
    /// Panics for f32.
    pub fn put_bits(&mut self, at: usize, bits: &[u16]) {
        match self {
            ElementsMut::Half(_, d) => d.slice(at..at + bits.len()).copy_from_slice(bits),
            ElementsMut::F32(_) => panic!("put_bits on f32 elements"),
        }
    }

    /// Splits into `[0, mid)` and `[mid, len)`.
    pub fn split_at(self, mid: usize) -> (ElementsMut<'a>, ElementsMut<'a>) {
        match self {
            ElementsMut::F32(d) => {
                let (a, b) = d.split_at(mid);
                (ElementsMut::F32(a), ElementsMut::F32(b))
            }
            ElementsMut::Half(e, d) => {
                let (a, b) = d.split_at(mid);
                (ElementsMut::Half(e, a), ElementsMut::Half(e, b))
            }
        }
    }
}

/// Threads the host-side loops (the reference, seeded inputs) may use: every core with the
/// `native` feature; one in the browser, where a wasm module has no threads.
pub(crate) fn threads() -> usize {
    if cfg!(feature = "native") {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        1
    }
}

/// The bytes of memory a run may use: what the system can still give this process, where
/// it says ([`system_memory`]: the machine's, its cgroup's, `ulimit -v`), capped by `QKV_MEMORY_LIMIT` where that is set
/// (bytes, or with a K, M or G suffix: a user's cap on this tool, and how the tests stand
/// in for a small machine); None where neither says, and no guard can be kept.
pub fn available_memory() -> Option<u64> {
    let limit = std::env::var("QKV_MEMORY_LIMIT")
        .ok()
        .and_then(|v| parse_bytes(&v));
    match (system_memory(), limit) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// "8G", "512M", "1048576K" or a plain count of bytes; None for anything else.
pub fn parse_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let (digits, scale) = match s.as_bytes().last()? {
        b'K' | b'k' => (&s[..s.len() - 1], 1u64 << 10),
        b'M' | b'm' => (&s[..s.len() - 1], 1 << 20),
        b'G' | b'g' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    digits.parse::<u64>().ok()?.checked_mul(scale)
}

/// What the operating system says this process can still allocate: the least of the
/// memory the machine has left (Linux's `MemAvailable` plus free swap), what its cgroup
/// (container) allows on top of what the cgroup holds, and its address-space limit
/// (`ulimit -v`) above its size; None where none is known (not Linux).
fn system_memory() -> Option<u64> {
    [machine_left(), cgroup_left(), address_space_left()]
        .into_iter()
        .flatten()
        .min()
}

fn read_proc(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// The number after `name` in a /proc file's line ("MemAvailable:   24244812 kB"), in
/// bytes.
fn kb_field(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

fn machine_left() -> Option<u64> {
    let info = read_proc("/proc/meminfo")?;
    Some(
        kb_field(&info, "MemAvailable:")?.saturating_add(kb_field(&info, "SwapFree:").unwrap_or(0)),
    )
}

/// cgroup v2's memory.max less memory.current for this process's cgroup.
fn cgroup_left() -> Option<u64> {
    let cgroup = read_proc("/proc/self/cgroup")?;
    let path = cgroup.lines().find_map(|l| l.strip_prefix("0::"))?.trim();
    let dir = format!("/sys/fs/cgroup{}", path.trim_end_matches('/'));
    // "max" (no limit) does not parse: None.
    let max: u64 = read_proc(&format!("{dir}/memory.max"))?
        .trim()
        .parse()
        .ok()?;
    let current: u64 = read_proc(&format!("{dir}/memory.current"))?
        .trim()
        .parse()
        .ok()?;
    Some(max.saturating_sub(current))
}

/// RLIMIT_AS's soft limit less this process's virtual size.
fn address_space_left() -> Option<u64> {
    let limits = read_proc("/proc/self/limits")?;
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max address space"))?;
    // "Max address space   <soft>   <hard>   bytes": "unlimited", or a number.
    let limit: u64 = line
        .trim_start_matches("Max address space")
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let size = kb_field(&read_proc("/proc/self/status")?, "VmSize:")?;
    Some(limit.saturating_sub(size))
}

/// `bytes` as "12.9 GB", or below a gigabyte "67.1 MB".
pub fn gigabytes(bytes: u64) -> String {
    if bytes >= 1_000_000_000 {
        format!("{:.1} GB", bytes as f64 / 1e9)
    } else {
        format!("{:.1} MB", bytes as f64 / 1e6)
    }
}

/// Refuses, before any of it is allocated, work whose `parts` (what each holds, bytes) add
/// up past `available` (the system's, [`available_memory`]; None: no guard), with the sizes
/// and `way_out`: a run is never started to be killed, or to abort, half way.
pub fn check_room(
    parts: &[(&str, u64)],
    available: Option<u64>,
    way_out: &str,
) -> crate::error::Result<()> {
    let needed = parts.iter().fold(0u64, |a, (_, b)| a.saturating_add(*b));
    match available {
        Some(available) if needed > available => Err(crate::error::Error::HostMemory {
            needed: gigabytes(needed),
            parts: parts
                .iter()
                .filter(|(_, b)| *b >= 1_000_000)
                .map(|(what, b)| format!("{what} {}", gigabytes(*b)))
                .collect::<Vec<_>>()
                .join(", "),
            available: gigabytes(available),
            way_out: way_out.to_string(),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn memory_limits_parse_and_refuse_with_their_sizes() {
        assert_eq!(parse_bytes("8G"), Some(8 << 30));
        assert_eq!(parse_bytes("512m"), Some(512 << 20));
        assert_eq!(parse_bytes("1000"), Some(1000));
        assert_eq!(parse_bytes("lots"), None);
        assert_eq!(parse_bytes(""), None);
        let parts = [("weights", 12_900_000_000), ("rows", 10)];
        let e = check_room(&parts, Some(8 << 30), "smaller")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("12.9 GB") && e.contains("8.6 GB available; smaller"),
            "{e}"
        );
        assert!(check_room(&parts, None, "x").is_ok());
        assert!(check_room(&parts, Some(u64::MAX), "x").is_ok());
    }

    use super::*;

    #[test]
    fn non_finite_elements_are_counted_in_every_type() {
        let v = [1.0f32, f32::INFINITY, -2.0, f32::NAN, 65504.0, 1e30];
        assert_eq!(Elements::F32(&v).non_finite(), (2, Some(1)));
        // 1e30 rounds to infinity in f16 (past 65504), not in bf16.
        let f16 = ElementVec::from_f32(ElementType::F16, &[1.0, 65504.0, -1e30, f32::NAN]);
        assert_eq!(f16.as_ref().non_finite(), (2, Some(2)));
        let bf16 = ElementVec::from_f32(ElementType::Bf16, &[1e30, 3.0, f32::NEG_INFINITY]);
        assert_eq!(bf16.as_ref().non_finite(), (1, Some(2)));
        assert_eq!(Elements::F32(&[]).non_finite(), (0, None));
    }

    #[test]
    fn put_copies_its_own_type_and_rounds_or_refuses_another() {
        // 5000 values: past put's block of 4096, so the refused index counts across blocks.
        let data: Vec<f32> = (0..5000).map(|i| (i as f32 - 2500.0) * 0.37).collect();
        for (from, to) in [
            (ElementType::F16, ElementType::F16),
            (ElementType::F16, ElementType::Bf16),
            (ElementType::Bf16, ElementType::F32),
            (ElementType::F32, ElementType::Bf16),
        ] {
            let src = ElementVec::from_f32(from, &data);
            let mut dst = ElementVec::zeros(to, data.len() + 3);
            dst.as_mut().put(3, src.as_ref()).unwrap();
            let want: Vec<f32> = src.as_ref().values().map(|v| to.round(v)).collect();
            assert_eq!(&dst.as_ref().to_f32()[3..], &want[..], "{from} -> {to}");
        }
        // bf16 holds 1e30; f16 does not, and the error names where.
        let mut big = vec![1.0f32; 5000];
        big[4500] = 1e30;
        let src = ElementVec::from_f32(ElementType::Bf16, &big);
        let mut dst = ElementVec::zeros(ElementType::F16, 5000);
        let e = dst.as_mut().put(0, src.as_ref()).unwrap_err();
        assert_eq!((e.index, e.element), (4500, ElementType::F16));
    }

    #[test]
    fn values_are_rounded_in_and_widened_out_exactly() {
        let data = [1.0f32, -2.5, 1.0 + 3.0 / 2048.0, 1.0 + 1.0 / 256.0, 0.1];
        for e in ElementType::ALL {
            let v = ElementVec::from_f32(e, &data);
            assert_eq!(v.element(), e);
            let back = v.as_ref().to_f32();
            let rounded: Vec<f32> = data.iter().map(|&d| e.round(d)).collect();
            assert_eq!(back, rounded, "{e}");
            assert_eq!(v.as_ref().get(2), e.round(data[2]));
            assert_eq!(v.values().collect::<Vec<_>>(), rounded);
            // Bytes as the encoder writes them, and converted between types.
            let mut a = Vec::new();
            v.as_ref().encode(e, &mut a);
            let mut b = Vec::new();
            e.encode(&data, &mut b);
            assert_eq!(a, b, "{e}");
            for to in ElementType::ALL {
                for via in ElementType::ALL {
                    let one_pass =
                        ElementVec::from_f32(ElementType::F32, &data).to_element_via(via, to);
                    let two_steps = ElementVec::from_f32(ElementType::F32, &data)
                        .to_element(via)
                        .to_element(to);
                    assert_eq!(one_pass, two_steps, "f32 -> {via} -> {to}");
                }
                let c = v.to_element(to);
                let want: Vec<f32> = rounded.iter().map(|&d| to.round(d)).collect();
                assert_eq!(c.as_ref().to_f32(), want, "{e} -> {to}");
            }
        }
    }

    #[test]
    fn put_f32_refuses_the_first_value_out_of_range_after_writing_those_before() {
        let mut v = ElementVec::zeros(ElementType::F16, 4);
        let e = v
            .as_mut()
            .put_f32(1, &[3.0, 70000.0, 5.0])
            .expect_err("70000 is past f16's range");
        assert_eq!((e.index, e.value), (1, 70000.0));
        assert_eq!(v.as_ref().to_f32(), vec![0.0, 3.0, 0.0, 0.0]);
        // bf16 has f32's range.
        let mut b = ElementVec::zeros(ElementType::Bf16, 2);
        b.as_mut().put_f32(0, &[70000.0, f32::NAN]).unwrap();
        assert!(b.as_ref().get(1).is_nan());
        let mut whole = ElementVec::zeros(ElementType::Bf16, 4);
        let (mut lo, mut hi) = whole.as_mut().split_at(1);
        lo.put_f32(0, &[1.0]).unwrap();
        hi.slice_mut(1..3).put_f32(0, &[2.0, 3.0]).unwrap();
        assert_eq!(whole.as_ref().to_f32(), vec![1.0, 0.0, 2.0, 3.0]);
    }
}
