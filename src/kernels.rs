//! The registry of projection kernels: every variant, its WGSL source, and how it is
//! dispatched. The CLI, the tests and the benchmarks all load shaders from here, so there is
//! exactly one copy of each.
//!
//! | # | name    | file                     | idea                                             |
//! |---|---------|--------------------------|--------------------------------------------------|
//! | 0 | `naive` | `shaders/qkv_naive.wgsl` | one output per invocation, straight from storage |
//! | 1 | `tiled` | `shaders/qkv_tiled.wgsl` | 16x16 workgroup-memory tiles over d_model        |
//!
//! Run one variant:
//! ```text
//! cargo run --release -- run --kernel naive    # or --kernel 0
//! cargo run --release -- run --kernel tiled    # or --kernel 1 (the default)
//! cargo run --release -- run --kernel all      # every variant on the same inputs
//! ```

use std::fmt;
use std::str::FromStr;

/// A projection kernel variant. The discriminant is its number on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kernel {
    /// One output per invocation, no workgroup memory.
    Naive = 0,
    /// Workgroup-memory tiles over d_model.
    Tiled = 1,
}

/// A WGSL source file under `shaders/`, compiled into the binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShaderSource {
    /// File name under `shaders/`, used as the shader module's label.
    pub file: &'static str,
    /// The WGSL text.
    pub wgsl: &'static str,
    /// Entry point.
    pub entry_point: &'static str,
}

/// The utility shader that fills output buffers with NaN before each dispatch.
pub const FILL_NAN: ShaderSource = ShaderSource {
    file: "fill_nan.wgsl",
    wgsl: include_str!("../shaders/fill_nan.wgsl"),
    entry_point: "main",
};

/// Every shader the crate compiles, for checks that must cover all of them.
pub const ALL_SHADERS: [ShaderSource; 3] =
    [Kernel::Naive.source(), Kernel::Tiled.source(), FILL_NAN];

impl Kernel {
    /// Every variant, in number order.
    pub const ALL: [Kernel; 2] = [Kernel::Naive, Kernel::Tiled];

    /// The variant `qkv run` uses when none is named.
    pub const DEFAULT: Kernel = Kernel::Tiled;

    /// The name used on the command line and in reports.
    pub const fn name(self) -> &'static str {
        match self {
            Kernel::Naive => "naive",
            Kernel::Tiled => "tiled",
        }
    }

    /// The variant's number (`--kernel 0`).
    pub const fn number(self) -> u32 {
        self as u32
    }

    /// One line on what the variant does.
    pub const fn description(self) -> &'static str {
        match self {
            Kernel::Naive => "one output per invocation, operands straight from storage",
            Kernel::Tiled => "16x16 workgroup-memory tiles of X and W over d_model",
        }
    }

    /// The variant's WGSL source.
    pub const fn source(self) -> ShaderSource {
        match self {
            Kernel::Naive => ShaderSource {
                file: "qkv_naive.wgsl",
                wgsl: include_str!("../shaders/qkv_naive.wgsl"),
                entry_point: "main",
            },
            Kernel::Tiled => ShaderSource {
                file: "qkv_tiled.wgsl",
                wgsl: include_str!("../shaders/qkv_tiled.wgsl"),
                entry_point: "main",
            },
        }
    }

    /// Output elements (columns, rows) covered by one workgroup: the dispatch grid is
    /// (ceil(n_out / cols), ceil(tokens / rows), 1).
    pub const fn workgroup_tile(self) -> (u32, u32) {
        match self {
            Kernel::Naive | Kernel::Tiled => (16, 16),
        }
    }

    /// Parses a comma-separated list of names or numbers, or `all`.
    pub fn parse_list(list: &str) -> Result<Vec<Kernel>, String> {
        if list.trim() == "all" {
            return Ok(Kernel::ALL.to_vec());
        }
        let mut kernels = Vec::new();
        for part in list.split(',') {
            let kernel: Kernel = part.trim().parse()?;
            if !kernels.contains(&kernel) {
                kernels.push(kernel);
            }
        }
        Ok(kernels)
    }
}

impl fmt::Display for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Kernel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Kernel::ALL
            .into_iter()
            .find(|k| s == k.name() || s.parse::<u32>().ok() == Some(k.number()))
            .ok_or_else(|| {
                let known: Vec<String> = Kernel::ALL
                    .iter()
                    .map(|k| format!("{} ({})", k.name(), k.number()))
                    .collect();
                format!(
                    "unknown kernel '{s}'; known kernels: {}, or 'all'",
                    known.join(", ")
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_round_trip() {
        for k in Kernel::ALL {
            assert_eq!(k.name().parse::<Kernel>(), Ok(k));
            assert_eq!(k.number().to_string().parse::<Kernel>(), Ok(k));
        }
        assert!("bogus".parse::<Kernel>().unwrap_err().contains("naive (0)"));
        assert!("7".parse::<Kernel>().is_err());
    }

    #[test]
    fn lists_parse_dedup_and_expand_all() {
        assert_eq!(Kernel::parse_list("all").unwrap(), Kernel::ALL.to_vec());
        assert_eq!(
            Kernel::parse_list("1, naive,tiled").unwrap(),
            vec![Kernel::Tiled, Kernel::Naive]
        );
        assert!(Kernel::parse_list("tiled,nope").is_err());
    }
}
