//! The `.npy` reader on arbitrary bytes: header, dtype, shape, length checks and the data.
//! The body is `exercise::npy`, shared with the property tests in tests/hostile_input.rs.
#![no_main]

#[path = "../exercise.rs"]
mod exercise;

libfuzzer_sys::fuzz_target!(|data: &[u8]| exercise::npy(data));
