//! The facade's error: one enum for everything this crate can refuse, each variant carrying
//! the detail that says what to fix.

use std::fmt;

use interstate_platform::PlatformError;

use crate::bind::Unbound;
use crate::compile::CompileError;

/// Why the facade refused a chart or a machine.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The JSON is not a valid chart; the error names the JSON path and what is wrong there.
    Compile(CompileError),
    /// The bytes start like a chart image but the image is refused (another format version,
    /// damaged tables): compile the chart again with this version.
    Image(interstate_core::Error),
    /// The bytes are neither a chart image nor UTF-8 text.
    NotAChart,
    /// The chart uses action, guard or delay names that have no binding.
    Unbound(Unbound),
    /// The node refused the machine (id taken, capacity, bus error).
    Node(PlatformError),
    /// The chart cannot be compiled to native code (a feature the generator refuses).
    Native(crate::native::NativeError),
    /// A file could not be read or written (the path and the system's reason).
    Io(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Compile(e) => write!(f, "{e}"),
            Error::Image(e) => write!(
                f,
                "chart image refused: {e} (compile the chart again with `interstate compile`)"
            ),
            Error::NotAChart => f.write_str("neither a chart image nor UTF-8 JSON"),
            Error::Unbound(e) => write!(f, "{e}"),
            Error::Node(e) => write!(f, "{e}"),
            Error::Native(e) => write!(f, "{e}"),
            Error::Io(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Compile(e) => Some(e),
            Error::Image(e) => Some(e),
            Error::Unbound(_) | Error::NotAChart | Error::Io(_) => None,
            Error::Native(e) => Some(e),
            Error::Node(e) => Some(e),
        }
    }
}

impl From<CompileError> for Error {
    fn from(e: CompileError) -> Self {
        Error::Compile(e)
    }
}

impl From<Unbound> for Error {
    fn from(e: Unbound) -> Self {
        Error::Unbound(e)
    }
}

impl From<PlatformError> for Error {
    fn from(e: PlatformError) -> Self {
        Error::Node(e)
    }
}
