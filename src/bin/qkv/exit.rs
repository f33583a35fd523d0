//! What a command failed with, and the exit code each failure maps to (`qkv --help` lists
//! them): 0 success, 1 a validation failed, 2 bad arguments or input, 3 no usable GPU or a
//! GPU error.

use qkv_wgpu::Error;

/// What a command failed with, and the exit code it maps to.
pub enum Failure {
    /// Ran fine, but a check failed (exit 1); already reported.
    Validation,
    /// A library error (exit 2 for the user's input, 3 for the GPU).
    Error(Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Error(e)
    }
}

/// The exit code of a library error.
pub fn exit_code(e: &Error) -> u8 {
    match e {
        Error::Shape(_) | Error::Input(_) | Error::DeviceLimit { .. } => 2,
        _ => 3,
    }
}
