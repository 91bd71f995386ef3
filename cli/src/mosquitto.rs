//! A private mosquitto broker for `interstate bench --transport mqtt`, `interstate demo
//! --internode` and the InterNode tests: started on a free loopback port with its own
//! configuration in its own directory, killed (by its pid) and the directory removed when
//! dropped.
//!
//! It needs `/usr/sbin/mosquitto` (Debian package `mosquitto`; `scripts/test.sh` and
//! `.ci/run` install it when missing).

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian installs the broker.
pub const MOSQUITTO: &str = "/usr/sbin/mosquitto";

/// A private broker (see the module docs).
pub struct Mosquitto {
    child: Child,
    dir: PathBuf,
    port: u16,
}

/// A port the kernel says is free now (bound, read, released): the broker binds it next.
pub fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free loopback port: {e}"))
}

impl Mosquitto {
    /// Starts a broker in a new directory `dir` (removed first if it exists), listening on a
    /// free port of 127.0.0.1, and waits until it accepts connections. `listener_extra` is
    /// added to the listener's section of the configuration (TLS files, a password file);
    /// paths in it may be relative to `dir`. The configuration always has
    /// `max_queued_messages 0`, as `docs/internode.md` asks of every broker the bridges use,
    /// `set_tcp_nodelay true` (without it mosquitto's small writes wait for the peer's
    /// delayed acknowledgement: 40 ms round trips), and no persistence (see [`start_with`](Self::start_with)).
    pub fn start(dir: &Path, listener_extra: &str) -> Result<Mosquitto, String> {
        Mosquitto::start_with(dir, "persistence false\n", listener_extra)
    }

    /// [`start`](Self::start) with `global` lines before the listener's section (e.g.
    /// `persistence true` and `persistence_location`).
    pub fn start_with(dir: &Path, global: &str, listener_extra: &str) -> Result<Mosquitto, String> {
        if !Path::new(MOSQUITTO).exists() {
            return Err(format!(
                "{MOSQUITTO} is missing: install the broker (apt-get install -y mosquitto)"
            ));
        }
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let port = free_port()?;
        let anonymous = if listener_extra.contains("password_file")
            || listener_extra.contains("require_certificate true")
        {
            "false"
        } else {
            "true"
        };
        let conf = format!(
            "per_listener_settings true\nmax_queued_messages 0\nset_tcp_nodelay true\nlog_dest stderr\n{global}\n\
             listener {port} 127.0.0.1\nallow_anonymous {anonymous}\n{listener_extra}\n"
        );
        std::fs::write(dir.join("mosquitto.conf"), conf)
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        let child = Mosquitto::spawn(dir)?;
        let mut broker = Mosquitto {
            child,
            dir: dir.to_path_buf(),
            port,
        };
        broker.wait_listening()?;
        Ok(broker)
    }

    fn spawn(dir: &Path) -> Result<Child, String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("mosquitto.log"))
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        Command::new(MOSQUITTO)
            .arg("-c")
            .arg(dir.join("mosquitto.conf"))
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {MOSQUITTO}: {e}"))
    }

    fn wait_listening(&mut self) -> Result<(), String> {
        let end = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("mosquitto exited ({status}): {}", self.log()));
            }
            if Instant::now() >= end {
                return Err(format!(
                    "mosquitto did not listen on port {} within 20 s: {}",
                    self.port,
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Kills the broker (SIGKILL: it keeps only what its persistence saved, nothing by
    /// default) and starts it again on the same port with the same configuration.
    pub fn restart(&mut self) -> Result<(), String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = Mosquitto::spawn(&self.dir)?;
        self.wait_listening()
    }

    /// Stops the broker with SIGTERM (with persistence on, it saves its sessions and queued
    /// messages first) and starts it again on the same port with the same configuration.
    pub fn restart_gracefully(&mut self) -> Result<(), String> {
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let _ = self.child.wait();
        self.child = Mosquitto::spawn(&self.dir)?;
        self.wait_listening()
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `mqtt://127.0.0.1:PORT` (`mqtts://` when `tls`).
    pub fn url(&self, tls: bool) -> String {
        let scheme = if tls { "mqtts" } else { "mqtt" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Its directory (configuration, log, and any files put there).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
