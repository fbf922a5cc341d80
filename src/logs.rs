//! Where log lines go: stderr, access lines gathered per thread.
//!
//! Written one by one, the access line of every request cost a system call
//! per request: about a sixth of a proxied request (docs/performance.md).
//! On a thread that flushes on a tick (`flush_every`: every worker), access
//! lines gather in that thread's buffer and leave in one write when it holds
//! `FLUSH_AT` bytes, at the next tick, or just before any other line from
//! that thread (so a thread's lines keep their order, and a warning is never
//! held back); the buffer is also flushed when its thread ends. On any other
//! thread every line is written at once. Lines from different threads may
//! reach stderr out of order by up to a tick; each line is whole (the
//! writes take the stderr lock).

use std::cell::{Cell, RefCell};
use std::io::Write;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// The access log's target (`proxy::handle`).
pub const ACCESS: &str = "access";
/// How long an access line may wait on an idle thread.
pub const TICK: Duration = Duration::from_millis(200);
const FLUSH_AT: usize = 32 * 1024;

struct Buffer(Vec<u8>);

impl Drop for Buffer {
    fn drop(&mut self) {
        write_out(&mut self.0);
    }
}

thread_local! {
    static BUFFER: RefCell<Buffer> = const { RefCell::new(Buffer(Vec::new())) };
    /// This thread runs `flush_every`.
    static TICKING: Cell<bool> = const { Cell::new(false) };
}

#[cfg(test)]
thread_local! {
    /// What this thread wrote, instead of stderr, once a test sets it.
    static WRITTEN: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
}

fn write_out(bytes: &mut Vec<u8>) {
    #[cfg(test)]
    if WRITTEN.with_borrow_mut(|w| w.as_mut().map(|w| w.append(bytes))).is_some() {
        return;
    }
    if !bytes.is_empty() {
        // Nowhere to report a failure to write the log.
        let _ = std::io::stderr().lock().write_all(bytes);
        bytes.clear();
    }
}

/// Writes out this thread's gathered lines.
pub fn flush() {
    let _ = BUFFER.try_with(|b| write_out(&mut b.borrow_mut().0));
}

/// Flushes this thread's lines every `TICK`, and lets access lines gather
/// on this thread while it runs. For a worker's current-thread runtime.
pub async fn flush_every() {
    TICKING.set(true);
    let _ticking = Reset;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        flush();
    }
}

struct Reset;

impl Drop for Reset {
    fn drop(&mut self) {
        TICKING.set(false);
        flush();
    }
}

/// The subscriber's writer: stderr, as the module doc says.
pub struct Stderr;

/// One line on its way.
pub struct Line {
    gather: bool,
}

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line { gather: false }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Line {
        Line::new(meta.target())
    }
}

impl Line {
    fn new(target: &str) -> Line {
        Line { gather: target == ACCESS && TICKING.get() }
    }
}

impl Write for Line {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        BUFFER.with_borrow_mut(|b| b.0.extend_from_slice(bytes));
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        BUFFER.with_borrow_mut(|b| {
            if !self.gather || b.0.len() >= FLUSH_AT {
                write_out(&mut b.0);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buffered() -> usize {
        BUFFER.with_borrow(|b| b.0.len())
    }

    fn written() -> Vec<u8> {
        WRITTEN.with_borrow_mut(|w| w.as_mut().map(std::mem::take).unwrap_or_default())
    }

    #[test]
    fn access_lines_gather_only_on_a_ticking_thread_and_any_other_line_takes_them_out_first() {
        WRITTEN.set(Some(Vec::new()));
        let _ = Line::new(ACCESS).write_all(b"at once\n");
        assert_eq!((buffered(), written()), (0, b"at once\n".to_vec()), "not a ticking thread");

        TICKING.set(true);
        for n in 0..3 {
            let _ = Line::new(ACCESS).write_all(format!("access {n}\n").as_bytes());
        }
        assert_eq!((buffered(), written().len()), (3 * 9, 0), "gathered");
        let _ = Line::new("authgate::upstream").write_all(b"a warning\n");
        assert_eq!(written(), b"access 0\naccess 1\naccess 2\na warning\n".to_vec(), "in order");

        let _ = Line::new(ACCESS).write_all(&vec![b'x'; FLUSH_AT]);
        assert_eq!((buffered(), written().len()), (0, FLUSH_AT), "a full buffer leaves at once");
        let _ = Line::new(ACCESS).write_all(b"tick\n");
        flush();
        assert_eq!(written(), b"tick\n".to_vec());
        TICKING.set(false);
    }
}
