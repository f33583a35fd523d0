//! What `qkv project` does on SIGINT (Ctrl-C), SIGTERM and SIGHUP: a thread waits for the
//! signal, removes every partial output file (after a commit in progress has finished), and
//! then lets the signal end the process as it would have, so the shell sees "killed by
//! SIGINT", not an exit code (git's tempfile.c does the same). SIGKILL cannot be caught:
//! the next run into the directory removes what it left and names it.

/// Installs the handler thread (once; later calls do nothing).
#[cfg(unix)]
pub fn remove_partials_on_signal() {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    use std::sync::Once;
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let mut signals = match signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) {
            Ok(s) => s,
            Err(e) => {
                eprintln!(
                    "warning: cannot handle signals ({e}); an interrupted run may leave partial \
                     files, which the next run removes"
                );
                return;
            }
        };
        std::thread::Builder::new()
            .name("qkv-signals".into())
            .spawn(move || {
                if let Some(sig) = signals.forever().next() {
                    let removed = qkv_wgpu::io::commit::remove_partials();
                    let name = signal_hook::low_level::signal_name(sig).unwrap_or("a signal");
                    if removed > 0 {
                        // What was put in place before (a sharded run's finished shards)
                        // stays; the files in progress are gone.
                        eprintln!(
                            "\ninterrupted by {name}: {removed} partial file{} removed; \
                             nothing in progress was written",
                            if removed == 1 { "" } else { "s" }
                        );
                    } else {
                        eprintln!("\ninterrupted by {name}");
                    }
                    let _ = signal_hook::low_level::emulate_default_handler(sig);
                    // Not reached for these signals; should it be, end the usual way.
                    std::process::exit(128 + sig);
                }
            })
            .expect("a thread can be spawned");
    });
}

/// Elsewhere: partial files of an interrupted run are removed by the next run.
#[cfg(not(unix))]
pub fn remove_partials_on_signal() {}
