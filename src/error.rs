//! The one error type of the library: every failure a user can cause or meet (bad shapes,
//! missing adapters, device limits, GPU validation errors) as a message that says what to do.

/// What can go wrong while setting up or running a projection.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No adapter at all: the machine has no usable GPU driver.
    #[error(
        "no GPU adapter found{filter}.\n\
         wgpu needs a Vulkan, Metal or DX12 driver. On Linux without a GPU, install Mesa's \
         software Vulkan driver (lavapipe):\n    sudo apt-get install mesa-vulkan-drivers\n\
         or run scripts/setup.sh, which does that for you. `qkv adapters` lists what wgpu sees."
    )]
    NoAdapter {
        /// The filter that was applied, already formatted (" matching ...") or empty.
        filter: String,
    },

    /// The browser offers no WebGPU adapter (the page's build).
    #[error(
        "this browser gave no WebGPU adapter ({reason}). WebGPU needs a secure page (https or \
         localhost) in a browser that has it enabled: recent Chrome or Edge, Safari 26 or later, \
         Firefox 141 or later on Windows; on Linux, Chrome still needs \
         chrome://flags/#enable-unsafe-webgpu. chrome://gpu tells why an adapter is refused."
    )]
    NoWebGpu {
        /// What the browser said.
        reason: String,
    },

    /// Adapters exist, but none matches `--backend` / `--adapter`.
    #[error("no adapter matches {filter}; available: {available}")]
    AdapterNotFound {
        /// The filter, formatted for the user.
        filter: String,
        /// The adapters that do exist, formatted for the user.
        available: String,
    },

    /// The adapter refused to create a device.
    #[error("could not create a device on adapter '{adapter}': {source}")]
    RequestDevice {
        /// Name of the adapter.
        adapter: String,
        /// wgpu's reason.
        source: wgpu::RequestDeviceError,
    },

    /// A shape that makes no sense (a zero dimension, an overflow, mismatched data).
    #[error("invalid shape: {0}")]
    Shape(String),

    /// A shape that is valid but does not fit the device.
    #[error(
        "{what} needs {needed} but this device allows at most {limit} ({limit_name}); \
         use a smaller shape"
    )]
    DeviceLimit {
        /// The resource, e.g. "the Q output buffer".
        what: String,
        /// The amount needed, formatted with its unit.
        needed: String,
        /// The device's limit, formatted with its unit.
        limit: String,
        /// The wgpu limit's name, so the user can look it up in `qkv adapters`.
        limit_name: &'static str,
    },

    /// Input data that cannot be projected (wrong length, non-finite where not allowed).
    #[error("invalid input: {0}")]
    Input(String),

    /// The machine has not the memory a run needs, found before any of it is allocated
    /// ([`crate::host::check_room`]): never an abort half way.
    #[error(
        "this needs about {needed} of memory ({parts}) but the system has {available} \
         available; {way_out}"
    )]
    HostMemory {
        /// The total, formatted ("38.7 GB").
        needed: String,
        /// Each part and its size.
        parts: String,
        /// What the system can still give, formatted.
        available: String,
        /// What to do instead.
        way_out: String,
    },

    /// wgpu reported a validation, out-of-memory or internal error.
    #[error("GPU error during {during}: {message}")]
    Gpu {
        /// The operation in progress, e.g. "dispatch of kernel tiled".
        during: String,
        /// wgpu's message.
        message: String,
    },

    /// The device was lost (driver reset, watchdog, out of memory on some backends).
    #[error("the GPU device was lost during {during}: {message}")]
    DeviceLost {
        /// The operation in progress.
        during: String,
        /// The driver's reason.
        message: String,
    },

    /// Waiting on the GPU failed or timed out.
    #[error("waiting for the GPU failed during {during}: {message}")]
    Poll {
        /// The operation in progress.
        during: String,
        /// wgpu's reason.
        message: String,
    },

    /// The machine could not read or write a file: a full disk, a missing permission, a
    /// read-only file system. Not the input's fault, and reported apart from it.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, with the file's name: "cannot write out/q.npy".
        what: String,
        /// The operating system's reason.
        source: std::io::Error,
    },

    /// Mapping a readback buffer failed.
    #[error("reading results back from the GPU failed: {0}")]
    Readback(String),

    /// The caller asked the run to stop (a front end's Ctrl-C), between chunks.
    #[error("interrupted after {done} of {tokens} tokens")]
    Interrupted {
        /// Tokens done when the run stopped.
        done: u32,
        /// Tokens of the batch.
        tokens: u32,
    },
}

impl Error {
    /// An [`Error::Io`]: `what` was being done when the operating system said `source`.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Formats a byte count for messages: exact bytes plus a human unit.
pub(crate) fn fmt_bytes(bytes: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    if bytes >= 1 << 30 {
        format!("{bytes} bytes ({:.2} GiB)", bytes as f64 / (MIB * 1024.0))
    } else if bytes >= 1 << 20 {
        format!("{bytes} bytes ({:.1} MiB)", bytes as f64 / MIB)
    } else {
        format!("{bytes} bytes")
    }
}

/// The settings a user gives that the library's messages name, by their API names: in a
/// message each is written in backquotes (`` `chunk_tokens` 11 does not fit ``), so that a
/// front end can put its own name in its place ([`name_settings`]): the CLI its flags, the
/// page and a Python caller the names they use.
pub const SETTINGS: [&str; 12] = [
    "chunk_tokens",
    "kernel",
    "tokens",
    "max_tokens",
    "cpu",
    "force",
    "out",
    "weight_layout",
    "heads",
    "kv_heads",
    "check_rows",
    "allow_nonfinite",
];

/// `message` with each backquoted setting named as `names` says: (setting, the front end's
/// name), e.g. `("chunk_tokens", "--chunk-tokens")`. Settings not in `names` stay as they are.
pub fn name_settings(message: &str, names: &[(&str, &str)]) -> String {
    let mut out = message.to_string();
    for (setting, name) in names {
        out = out.replace(&format!("`{setting}`"), name);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_front_end_names_the_settings_its_own_way() {
        let names = [("chunk_tokens", "--chunk-tokens"), ("force", "--force")];
        assert_eq!(
            name_settings(
                "`chunk_tokens` 11 does not fit; pass `force` (force)",
                &names
            ),
            "--chunk-tokens 11 does not fit; pass --force (force)"
        );
        assert_eq!(name_settings("`out` is a file", &names), "`out` is a file");
    }
}
