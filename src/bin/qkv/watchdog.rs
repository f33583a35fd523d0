//! `qkv try --timeout`: a watch over each step of a user's kernel (a check, a run of the
//! timing, its back-to-back dispatches) that stops the process with exit code 3 when one
//! runs past its time, since no GPU (nor a CPU driver) can be made to drop a dispatch that
//! never ends, and waiting would hang.

use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

/// The step being watched: what it is, in words, its time, and when that runs out.
type Step = (String, Duration, Instant);

/// One watching thread, armed for a step at a time.
pub struct Watchdog {
    tx: Sender<Option<Step>>,
}

impl Watchdog {
    /// A watchdog, not armed yet.
    pub fn start() -> Self {
        let (tx, rx) = channel::<Option<Step>>();
        std::thread::spawn(move || {
            let mut step: Option<Step> = None;
            loop {
                let next = match &step {
                    None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                    Some((_, _, until)) => {
                        rx.recv_timeout(until.saturating_duration_since(Instant::now()))
                    }
                };
                match next {
                    Ok(s) => step = s,
                    Err(RecvTimeoutError::Disconnected) => return,
                    Err(RecvTimeoutError::Timeout) => {
                        let (what, budget, _) = step.take().expect("armed");
                        stop(&what, budget);
                    }
                }
            }
        });
        Self { tx }
    }

    /// Watches the step `what` for `budget` from now (in place of the step before).
    pub fn arm(&self, what: String, budget: Duration) {
        let _ = self.tx.send(Some((what, budget, Instant::now() + budget)));
    }

    /// Watches nothing until armed again.
    pub fn disarm(&self) {
        let _ = self.tx.send(None);
    }
}

/// Says which step ran past `budget`, and ends the process with exit code 3 at once.
fn stop(what: &str, budget: Duration) {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    eprintln!(
        "error: {what} did not finish within {} s (--timeout): the kernel may never end (a \
         loop without an exit?); stopping",
        budget.as_secs()
    );
    // At once, without the driver's exit handlers, which may wait for the dispatch that
    // never ends.
    #[cfg(unix)]
    // SAFETY: _exit ends the process; nothing of it runs afterwards.
    unsafe {
        libc::_exit(3)
    };
    #[cfg(not(unix))]
    std::process::exit(3);
}
