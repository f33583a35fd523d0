//! GGUF files on arbitrary bytes: the header check, and every tensor it accepts read.
//! The body is `exercise::gguf`, shared with the property tests in tests/hostile_input.rs.
#![no_main]

#[path = "../exercise.rs"]
mod exercise;

libfuzzer_sys::fuzz_target!(|data: &[u8]| exercise::gguf(data));
