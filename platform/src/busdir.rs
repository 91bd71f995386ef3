//! Where a bus lives: its directory and socket path, created safely.
//!
//! The bus named `NAME` lives in `$INTERSTATE_DIR`, else `$XDG_RUNTIME_DIR/interstate/`, else
//! `/tmp/interstate-<uid>/`, as the socket `NAME.sock`. The directory is created mode 0700 and
//! refused if another user owns it or others can write to it, so nobody else can plant or
//! replace a socket there.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::PlatformError;

/// The bus name used when none is given.
pub const DEFAULT_BUS: &str = "default";

/// The directory buses live in, from the environment.
pub fn default_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("INTERSTATE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("interstate");
    }
    PathBuf::from(format!(
        "/tmp/interstate-{}",
        rustix::process::getuid().as_raw()
    ))
}

/// What `INTERSTATE_DIR` accepts.
pub const DIR_ALLOWED: &str =
    "use the absolute path of a directory (created, mode 0700, when it does not exist)";

/// [`default_dir`], refusing an `INTERSTATE_DIR` that is not an absolute path or names
/// something other than a directory, with an error naming the variable and its value.
pub fn try_default_dir() -> Result<PathBuf, PlatformError> {
    if let Some(d) = std::env::var_os("INTERSTATE_DIR").filter(|d| !d.is_empty()) {
        let path = PathBuf::from(&d);
        let exists_not_dir = std::fs::metadata(&path).is_ok_and(|m| !m.is_dir());
        if !path.is_absolute() || exists_not_dir {
            return Err(PlatformError::BadSetting {
                variable: "INTERSTATE_DIR",
                value: d.to_string_lossy().into_owned(),
                allowed: DIR_ALLOWED,
            });
        }
    }
    Ok(default_dir())
}

/// The bus name from `INTERSTATE_BUS`, else [`DEFAULT_BUS`].
pub fn default_bus() -> String {
    std::env::var("INTERSTATE_BUS")
        .ok()
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| DEFAULT_BUS.to_string())
}

/// Checks a bus name: letters, digits, `-`, `_`, `.`; 1 to 64 bytes; not starting with a dot.
pub fn check_bus_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "bus name '{name}' is not valid: use 1 to 64 letters, digits, '-', '_' or '.'"
        ))
    }
}

/// Creates (if needed) and checks the bus directory.
pub fn ensure_dir(dir: &Path) -> Result<(), PlatformError> {
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        Ok(()) => {}
        Err(e) => {
            return Err(PlatformError::io(
                "creating the bus directory",
                Some(dir),
                e,
            ))
        }
    }
    let meta = std::fs::symlink_metadata(dir)
        .map_err(|e| PlatformError::io("reading the bus directory", Some(dir), e))?;
    if !meta.is_dir() {
        return Err(PlatformError::UnsafeBusDir {
            path: dir.into(),
            problem: "it is not a directory".into(),
        });
    }
    let uid = rustix::process::getuid().as_raw();
    if meta.uid() != uid {
        return Err(PlatformError::UnsafeBusDir {
            path: dir.into(),
            problem: format!("it belongs to uid {}, not to this user ({uid})", meta.uid()),
        });
    }
    if meta.permissions().mode() & 0o022 != 0 {
        return Err(PlatformError::UnsafeBusDir {
            path: dir.into(),
            problem: format!(
                "others can write to it (mode {:o}); chmod 700 it",
                meta.permissions().mode() & 0o777
            ),
        });
    }
    Ok(())
}

/// The socket path of a bus in a directory.
pub fn socket_path(dir: &Path, bus: &str) -> PathBuf {
    dir.join(format!("{bus}.sock"))
}
