//! Standard output for reports, tables and JSON. A reader that goes away (`qkv run | head
//! -1`, `qkv adapters | true`) ends the output, not the command: what it was doing (files
//! written, checks run) still decides the exit code. A write that fails for another reason
//! (`> /dev/full`, a full disk) is an error of its own, reported once at the end with exit
//! code 4. Rust's `println!` panics in both cases.

use std::fmt;
use std::io::{ErrorKind, Write};
use std::sync::Mutex;

/// Whether output has ended, and the first failure that was not a closed reader.
struct State {
    ended: bool,
    failed: Option<std::io::Error>,
}

static STATE: Mutex<State> = Mutex::new(State {
    ended: false,
    failed: None,
});

/// Writes `args` to standard output unless output has ended.
pub fn write(args: fmt::Arguments) {
    let mut st = STATE.lock().unwrap_or_else(|p| p.into_inner());
    if st.ended {
        return;
    }
    if let Err(e) = std::io::stdout().lock().write_fmt(args) {
        end(&mut st, e);
    }
}

fn end(st: &mut State, e: std::io::Error) {
    st.ended = true;
    if e.kind() != ErrorKind::BrokenPipe {
        st.failed = Some(e);
    }
}

/// Flushes standard output; the failure to report, if writing failed other than by the
/// reader going away.
pub fn finish() -> Option<std::io::Error> {
    let mut st = STATE.lock().unwrap_or_else(|p| p.into_inner());
    if !st.ended {
        if let Err(e) = std::io::stdout().lock().flush() {
            end(&mut st, e);
        }
    }
    st.failed.take()
}

/// A `std::io::Write` over [`write`], for writers such as the CSV one.
pub struct Stdout;

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut st = STATE.lock().unwrap_or_else(|p| p.into_inner());
        if !st.ended {
            if let Err(e) = std::io::stdout().lock().write_all(buf) {
                end(&mut st, e);
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `println!` to [`write`].
macro_rules! outln {
    () => {
        $crate::stdout::write(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::stdout::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}
pub(crate) use outln;
