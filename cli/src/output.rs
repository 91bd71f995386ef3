//! What the tool writes on stdout, written so that a closed stdout ends it quietly.
//!
//! `interstate diagram chart.json | head -1` closes the pipe after one line; every further
//! write fails with `BrokenPipe`. [`Stdout`] notes that (see [`closed`]) and returns the
//! error, which the verb passes up as any other; `main` then exits with status 0 and prints
//! nothing, as `cat` and other filters do. Other write errors (a full disk) are reported.
//!
//! Verbs that supervise processes (`up`, `demo`) drop their output once stdout is closed and
//! go on, so that a reader going away never leaves an app half stopped; `run` stops its
//! machine and ends.
//!
//! It also answers whether output may be colored: never when `NO_COLOR` is set to anything
//! but the empty string, nor when stdout is not a terminal (see [`color`]).

use std::fmt;
use std::io::{self, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};

static CLOSED: AtomicBool = AtomicBool::new(false);

/// Whether a write to stdout found it closed (its reader went away).
pub fn closed() -> bool {
    CLOSED.load(Ordering::Relaxed)
}

/// The error text of a write to a closed stdout (never printed: see [`closed`]).
pub const CLOSED_TEXT: &str = "stdout is closed";

/// The process's stdout, noting a closed pipe. Line-buffered, as `std::io::stdout`.
pub struct Stdout;

impl Stdout {
    fn note(e: io::Error) -> io::Error {
        if e.kind() == io::ErrorKind::BrokenPipe {
            CLOSED.store(true, Ordering::Relaxed);
        }
        e
    }
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if closed() {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        io::stdout().lock().write(buf).map_err(Self::note)
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        if closed() {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        io::stdout().lock().write_all(buf).map_err(Self::note)
    }
    fn flush(&mut self) -> io::Result<()> {
        if closed() {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        io::stdout().lock().flush().map_err(Self::note)
    }
}

/// An I/O error on stdout as the verbs' error text.
pub fn error_text(e: &io::Error) -> String {
    if e.kind() == io::ErrorKind::BrokenPipe {
        CLOSED.store(true, Ordering::Relaxed);
        CLOSED_TEXT.to_string()
    } else {
        format!("writing to stdout: {e}")
    }
}

/// Writes `args` and a newline to stdout (flushed).
pub fn line(args: fmt::Arguments<'_>) -> Result<(), String> {
    let mut out = Stdout;
    out.write_fmt(args)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush())
        .map_err(|e| error_text(&e))
}

/// Writes `bytes` to stdout as they are (flushed).
pub fn bytes(bytes: &[u8]) -> Result<(), String> {
    let mut out = Stdout;
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|e| error_text(&e))
}

/// Whether `NO_COLOR` asks for no color (set and not empty).
pub fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// Whether stdout may carry color and other terminal styling: a terminal, and no `NO_COLOR`.
pub fn color() -> bool {
    !no_color() && io::stdout().is_terminal()
}

/// `println!` to stdout through [`line()`]: a `Result<(), String>` for the verb to pass up.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::output::line(format_args!($($arg)*))
    };
}
