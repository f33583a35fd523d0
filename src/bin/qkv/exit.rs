//! What a command failed with, and the exit code each failure maps to (`qkv --help` lists
//! them): 0 success, 1 a validation failed, 2 bad arguments or input, 3 no usable GPU or a
//! GPU error, 4 the machine could not read or write a file or standard output.

use qkv_wgpu::Error;

/// A validation failed: the GPU's result does not match the reference.
pub const VALIDATION: u8 = 1;
/// Bad arguments or input (clap uses 2 for bad arguments too).
pub const INPUT: u8 = 2;
/// No usable GPU, or the GPU failed.
pub const GPU: u8 = 3;
/// The machine could not read or write: a full disk, a permission, standard output.
pub const IO: u8 = 4;

/// What a command failed with, and the exit code it maps to.
pub enum Failure {
    /// Ran fine, but a check failed (exit 1); already reported.
    Validation,
    /// A library error (exit 2 for the user's input, 3 for the GPU, 4 for the machine).
    Error(Error),
    /// Errors already reported in the command's own output (a sharded run's failed shards):
    /// the exit code, and one line for stderr.
    Reported(u8, String),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Error(e)
    }
}

/// The exit code of a library error.
pub fn exit_code(e: &Error) -> u8 {
    match e {
        Error::Shape(_)
        | Error::Input(_)
        | Error::DeviceLimit { .. }
        | Error::HostMemory { .. } => INPUT,
        Error::Io { .. } => IO,
        _ => GPU,
    }
}

/// What an exit code means, for JSON output.
pub fn reason(code: u8) -> &'static str {
    match code {
        0 => "success",
        VALIDATION => "validation failed",
        INPUT => "bad arguments or input",
        GPU => "no usable GPU, or a GPU error",
        IO => "a file or standard output could not be read or written",
        _ => "unknown",
    }
}
