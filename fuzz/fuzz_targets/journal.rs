//! The commit journal a run finds in its output directory, planted or damaged: refused or
//! rolled back, never a panic, a hang, or a user's file changed.
//! The body is `exercise::journal`, shared with the property tests in tests/hostile_input.rs.
#![no_main]

#[path = "../exercise.rs"]
mod exercise;

libfuzzer_sys::fuzz_target!(|data: &[u8]| exercise::journal(data));
