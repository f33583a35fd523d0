//! The tuning cache's parser on arbitrary text: whole-file and per-entry failures, and
//! The body is `exercise::tuning_cache`, shared with the property tests in tests/hostile_input.rs.
#![no_main]

#[path = "../exercise.rs"]
mod exercise;

libfuzzer_sys::fuzz_target!(|data: &[u8]| exercise::tuning_cache(data));
