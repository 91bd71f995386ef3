//! Socket activation: a listening socket handed over by a service manager (systemd's
//! `LISTEN_FDS` protocol), so the hub can be started on demand and restarted without clients
//! ever seeing the socket disappear.

use std::os::fd::{FromRawFd, OwnedFd};

/// The first file descriptor a service manager passes (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: i32 = 3;

/// The listening socket passed by a service manager, if this process was socket-activated:
/// `LISTEN_PID` is this process and `LISTEN_FDS` is at least 1. The variables are removed so
/// that children do not take the socket for theirs.
///
/// Returns an error when the variables say a socket was passed but fd 3 is not a socket.
pub fn listen_fd_from_env() -> Result<Option<OwnedFd>, String> {
    let pid_matches = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        == Some(std::process::id());
    let count = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse::<u32>().ok())
        .unwrap_or(0);
    if !pid_matches || count == 0 {
        return Ok(None);
    }
    std::env::remove_var("LISTEN_PID");
    std::env::remove_var("LISTEN_FDS");
    std::env::remove_var("LISTEN_FDNAMES");
    // SAFETY: a socket-activated process is handed file descriptor 3 open, by the protocol
    // LISTEN_PID/LISTEN_FDS just confirmed for this very process; nothing else in this process
    // owns it. Taking ownership once, here, is the only way to use it; the fstat below checks
    // that it is a socket before anything relies on that.
    let fd = unsafe { OwnedFd::from_raw_fd(LISTEN_FDS_START) };
    let stat = rustix::fs::fstat(&fd)
        .map_err(|e| format!("LISTEN_FDS is set but fd 3 cannot be examined: {e}"))?;
    if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::Socket {
        // Not ours to close: give the descriptor back untouched.
        std::mem::forget(fd);
        return Err("LISTEN_FDS is set but fd 3 is not a socket".into());
    }
    Ok(Some(fd))
}
