"""Where a bus lives, resolved exactly as the Rust side does (platform/src/busdir.rs).

The bus named `NAME` is the socket `DIR/NAME.sock`, where `DIR` is `$INTERSTATE_DIR` (an
absolute path), else `$XDG_RUNTIME_DIR/interstate`, else `/tmp/interstate-<uid>`; `NAME` is
`$INTERSTATE_BUS`, else `default`. Before connecting, the directory is checked as the hub
checks it: a directory, owned by this user, not writable by group or others, so that nobody
else can have planted the socket.
"""

from __future__ import annotations

import os
import stat
from typing import Optional

from .errors import BadBusSetting

DEFAULT_BUS = "default"


def bus_dir() -> str:
    """$INTERSTATE_DIR, else $XDG_RUNTIME_DIR/interstate, else /tmp/interstate-<uid>.
    Raises BadBusSetting for an INTERSTATE_DIR that is not absolute or not a directory."""
    d = os.environ.get("INTERSTATE_DIR")
    if d:
        if not os.path.isabs(d) or (os.path.exists(d) and not os.path.isdir(d)):
            raise BadBusSetting(
                f"INTERSTATE_DIR={d!r} cannot be used: use the absolute path of a directory "
                "(created, mode 0700, when it does not exist)"
            )
        return d
    x = os.environ.get("XDG_RUNTIME_DIR")
    if x:
        return os.path.join(x, "interstate")
    return f"/tmp/interstate-{os.getuid()}"


def default_bus() -> str:
    """$INTERSTATE_BUS, else "default"."""
    return os.environ.get("INTERSTATE_BUS") or DEFAULT_BUS


def check_bus_name(name: str) -> None:
    """Letters, digits, `-`, `_`, `.`; 1 to 64 bytes; not starting with a dot."""
    ok = (
        0 < len(name) <= 64
        and not name.startswith(".")
        and all(c.isascii() and (c.isalnum() or c in "-_.") for c in name)
    )
    if not ok:
        raise BadBusSetting(
            f"bus name {name!r} is not valid: use 1 to 64 letters, digits, '-', '_' or '.'"
        )


def check_dir(directory: str) -> None:
    """Refuses a bus directory another user owns or others can write to (as the hub does).
    A directory that does not exist yet passes: there is no socket in it to trust."""
    try:
        st = os.lstat(directory)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        raise BadBusSetting(f"the bus directory {directory} is not a directory")
    if st.st_uid != os.getuid():
        raise BadBusSetting(
            f"the bus directory {directory} belongs to uid {st.st_uid}, not to this user ({os.getuid()})"
        )
    if st.st_mode & 0o022:
        raise BadBusSetting(
            f"others can write to the bus directory {directory} (mode {st.st_mode & 0o777:o}); chmod 700 it"
        )


def socket_path(bus: Optional[str] = None, directory: Optional[str] = None) -> str:
    """The socket of `bus` (default: default_bus()) in `directory` (default: bus_dir())."""
    name = bus or default_bus()
    check_bus_name(name)
    return os.path.join(directory or bus_dir(), name + ".sock")
