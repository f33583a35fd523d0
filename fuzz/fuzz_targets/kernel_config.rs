//! The `--kernel` parser on arbitrary text: lists, parameters, numbers; every configuration
//! The body is `exercise::kernel_config`, shared with the property tests in tests/hostile_input.rs.
#![no_main]

#[path = "../exercise.rs"]
mod exercise;

libfuzzer_sys::fuzz_target!(|data: &[u8]| exercise::kernel_config(data));
