//! safetensors checkpoints on arbitrary bytes: the header check, family detection under
//! The body is `exercise::checkpoint`, shared with the property tests in tests/hostile_input.rs.
#![no_main]

#[path = "../exercise.rs"]
mod exercise;

libfuzzer_sys::fuzz_target!(|data: &[u8]| exercise::checkpoint(data));
