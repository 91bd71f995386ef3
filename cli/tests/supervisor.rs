//! The process lifecycle end to end: `interstate up` supervising real processes (restart with
//! backoff, the intensity limit, ordered start-up, Ctrl-C, crash notification), `interstate
//! down`, and the systemd protocols (`NOTIFY_SOCKET`, `LISTEN_FDS`) without systemd.
//!
//! Every test has a private directory (its bus directory, manifests and charts) and an [`App`]
//! guard whose Drop SIGKILLs the processes it started and every pid they reported, then removes
//! the directory. Waits poll for a line or a condition with a deadline; only the backoff test
//! looks at times, measured by the crashing child itself.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a step that takes milliseconds may take on a loaded machine.
const LIMIT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(20);

fn interstate() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_interstate"))
}

type Lines = Arc<Mutex<Vec<String>>>;

fn collect(pipe: impl Read + Send + 'static) -> Lines {
    let lines: Lines = Arc::default();
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

/// A test's directory and the processes it started.
struct App {
    dir: PathBuf,
    children: Vec<(Child, Lines, Lines)>,
}

impl App {
    fn new(test: &str) -> App {
        let dir = std::env::temp_dir().join(format!("istsup-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .recursive(true)
            .create(dir.join("bus"))
            .expect("create the test's directories");
        App {
            dir,
            children: Vec::new(),
        }
    }

    /// The bus directory (`INTERSTATE_DIR` of everything started here).
    fn bus_dir(&self) -> PathBuf {
        self.dir.join("bus")
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::write(&p, text).expect("write a test file");
        p
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(interstate());
        c.args(args)
            .current_dir(&self.dir)
            .env("INTERSTATE_DIR", self.bus_dir())
            .env_remove("INTERSTATE_BUS")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// Starts a process; returns its index.
    fn spawn(&mut self, mut cmd: Command) -> usize {
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("start {cmd:?}: {e}"));
        let out = collect(child.stdout.take().expect("piped stdout"));
        let err = collect(child.stderr.take().expect("piped stderr"));
        self.children.push((child, out, err));
        self.children.len() - 1
    }

    fn up(&mut self, manifest: &Path) -> usize {
        let cmd = self.command(&["up", manifest.to_str().expect("UTF-8 path")]);
        self.spawn(cmd)
    }

    fn out(&self, i: usize) -> Vec<String> {
        self.children[i].1.lock().unwrap().clone()
    }

    fn pid(&self, i: usize) -> u32 {
        self.children[i].0.id()
    }

    fn dump(&self, i: usize) -> String {
        format!(
            "\n--- stdout:\n{}\n--- stderr:\n{}",
            self.out(i).join("\n"),
            self.children[i].2.lock().unwrap().join("\n")
        )
    }

    /// Waits for a stdout line containing `text`; returns it.
    fn wait_line(&mut self, i: usize, text: &str) -> String {
        let end = Instant::now() + LIMIT;
        loop {
            if let Some(l) = self.out(i).into_iter().find(|l| l.contains(text)) {
                return l;
            }
            let exited = self.children[i].0.try_wait().ok().flatten().is_some();
            if Instant::now() >= end || exited {
                // The last lines may still be on their way from the reader thread.
                std::thread::sleep(Duration::from_millis(200));
                if let Some(l) = self.out(i).into_iter().find(|l| l.contains(text)) {
                    return l;
                }
                panic!(
                    "no line with '{text}' ({}){}",
                    if exited { "it exited" } else { "timed out" },
                    self.dump(i)
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits for the process to exit, then for its output to be read to the end.
    fn wait_exit(&mut self, i: usize) -> ExitStatus {
        let end = Instant::now() + LIMIT;
        loop {
            if let Some(s) = self.children[i].0.try_wait().expect("poll a child") {
                let settle = Instant::now() + Duration::from_secs(2);
                while Instant::now() < settle
                    && (Arc::strong_count(&self.children[i].1) > 1
                        || Arc::strong_count(&self.children[i].2) > 1)
                {
                    std::thread::sleep(Duration::from_millis(5));
                }
                return s;
            }
            if Instant::now() >= end {
                panic!("the process did not exit within {LIMIT:?}{}", self.dump(i));
            }
            std::thread::sleep(POLL);
        }
    }

    fn signal(&self, i: usize, sig: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.pid(i) as i32).expect("a pid");
        rustix::process::kill_process(pid, sig).expect("signal the process");
    }

    /// Every pid the processes reported: `... (pid N)` and `sleeper N`.
    fn reported_pids(&self) -> Vec<u32> {
        let mut pids = Vec::new();
        for i in 0..self.children.len() {
            for l in self.out(i) {
                if let Some(p) = number_after(&l, "(pid ") {
                    pids.push(p);
                }
                if let Some(p) = number_after(&l, "sleeper ") {
                    pids.push(p);
                }
            }
        }
        pids.sort_unstable();
        pids.dedup();
        pids
    }
}

impl Drop for App {
    fn drop(&mut self) {
        for pid in self.reported_pids() {
            if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
                let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
            }
        }
        for (c, _, _) in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn number_after(line: &str, key: &str) -> Option<u32> {
    let rest = &line[line.find(key)? + key.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Whether a process is gone (or a zombie whose parent is not this test: init reaps it).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rfind(')')
            .is_some_and(|i| stat[i + 2..].starts_with('Z')),
    }
}

fn wait_gone(pids: &[u32]) {
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end && !pids.iter().all(|&p| gone(p)) {
        std::thread::sleep(POLL);
    }
    let left: Vec<_> = pids.iter().filter(|&&p| !gone(p)).collect();
    assert!(left.is_empty(), "processes left behind: {left:?}");
}

fn dir_entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|r| {
            r.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

const QUIET: &str = r#"{"id":"quiet","initial":"idle","states":{"idle":{}}}"#;

const WATCHER: &str = r#"{
  "id": "watcher", "initial": "watching",
  "states": { "watching": { "on": {
    "xstate.machine.down": { "actions": [ { "type": "log", "message": "worker went down" } ] },
    "xstate.machine.up": { "actions": [ { "type": "log", "message": "worker came back" } ] }
  } } }
}"#;

#[test]
fn a_crash_loop_is_restarted_with_backoff_until_the_intensity_limit() {
    let mut app = App::new("crash");
    let manifest = app.write(
        "crash.toml",
        r#"
        bus = "crash"
        [supervisor]
        backoff_min = "100ms"
        backoff_max = "1s"
        max_restarts = 3
        within = "30s"
        grace = "2s"

        [[process]]
        name = "steady"
        command = "sleep"
        args = ["30"]

        [[process]]
        name = "crasher"
        command = "sh"
        # Each run prints when it started (ns), as the child itself saw it.
        args = ["-c", "echo started-at $(date +%s%N); exit 3"]
        after = ["steady"]
        "#,
    );
    let up = app.up(&manifest);
    let status = app.wait_exit(up);
    let out = app.out(up);
    let dump = app.dump(up);
    assert_eq!(status.code(), Some(1), "giving up is a failure{dump}");

    let count = |text: &str| out.iter().filter(|l| l.contains(text)).count();
    assert_eq!(
        count("up: crasher started"),
        4,
        "one start, three restarts{dump}"
    );
    for (n, delay) in [(1, "100ms"), (2, "200ms"), (3, "400ms")] {
        assert_eq!(
            count(&format!("up: crasher restarting in {delay} (restart {n})")),
            1,
            "restart {n} after {delay}{dump}"
        );
    }
    assert_eq!(
        count("up: giving up: 3 restarts within 30s and crasher exited again"),
        1,
        "{dump}"
    );
    assert_eq!(
        count("up: finished: gave up: 3 restarts within 30s (the last exit was crasher's)"),
        1,
        "{dump}"
    );
    // The others are stopped when the supervisor gives up.
    assert_eq!(count("up: steady (pid"), 1, "{dump}");
    assert!(
        out.iter()
            .any(|l| l.contains("steady (pid") && l.contains("as asked")),
        "{dump}"
    );

    // The backoff, as the crasher's runs saw it: each start at least the delay after the
    // previous one (which exited at once).
    let starts: Vec<u128> = out
        .iter()
        .filter_map(|l| l.split("started-at ").nth(1)?.trim().parse().ok())
        .collect();
    assert_eq!(starts.len(), 4, "{dump}");
    for (k, min_ms) in [100u128, 200, 400].into_iter().enumerate() {
        let gap_ms = (starts[k + 1] - starts[k]) / 1_000_000;
        assert!(
            gap_ms >= min_ms,
            "restart {} came {gap_ms} ms after the previous start, before its {min_ms} ms backoff{dump}",
            k + 1
        );
    }
    assert!(dir_entries(&app.bus_dir()).is_empty(), "{dump}");
}

#[test]
fn sigint_stops_everything_in_reverse_order_and_leaves_nothing_behind() {
    let mut app = App::new("sigint");
    app.write("worker.json", QUIET);
    app.write("watcher.json", WATCHER);
    let manifest = app.write(
        "app.toml",
        r#"
        bus = "sigint"
        [supervisor]
        grace = "300ms"

        [[process]]
        name = "worker"
        command = "interstate"
        args = ["run", "worker.json", "--id", "worker", "--client"]
        provides = ["worker"]

        [[process]]
        name = "watcher"
        command = "interstate"
        args = ["run", "watcher.json", "--id", "watcher", "--client", "--watch", "worker"]
        ready = "notify"
        after = ["worker"]

        [[process]]
        name = "stubborn"
        command = "sh"
        # Ignores SIGTERM (so does its sleeper): only SIGKILL ends them.
        args = ["-c", "trap '' TERM; sleep 60 & echo sleeper $!; wait"]
        after = ["watcher"]
        "#,
    );
    let up = app.up(&manifest);
    app.wait_line(up, "up: every process is ready");
    app.wait_line(up, "sleeper ");
    let out = app.out(up);
    let pos = |text: &str| out.iter().position(|l| l.contains(text));
    // Ordered start-up: each started after its dependency was ready.
    assert!(pos("worker ready (worker registered)") < pos("watcher started"));
    assert!(pos("watcher ready (READY=1)") < pos("stubborn started"));
    let run_dir = app.bus_dir().join("sigint.supervisor");
    assert!(run_dir.join("pid").exists());
    assert!(app.bus_dir().join("sigint.sock").exists());

    let pids = app.reported_pids();
    assert_eq!(pids.len(), 4, "three children and a grandchild: {pids:?}");
    app.signal(up, rustix::process::Signal::INT);
    let status = app.wait_exit(up);
    let dump = app.dump(up);
    assert!(status.success(), "a requested stop is a success{dump}");
    let out = app.out(up);
    let pos = |text: &str| {
        out.iter()
            .position(|l| l.contains(text))
            .unwrap_or_else(|| panic!("no line with '{text}'{dump}"))
    };
    pos("up: stopping every process (SIGINT)");
    // Reverse order, one at a time; the stubborn one needs SIGKILL.
    assert!(pos("stubborn: SIGTERM sent") < pos("stubborn: SIGKILL sent"));
    assert!(pos("stubborn (pid") < pos("watcher: SIGTERM sent"));
    assert!(pos("watcher (pid") < pos("worker: SIGTERM sent"));
    pos("worker (pid");
    pos("up: finished: stopped (SIGINT)");
    wait_gone(&pids);
    assert!(
        dir_entries(&app.bus_dir()).is_empty(),
        "left in the bus directory: {:?}",
        dir_entries(&app.bus_dir())
    );
}

#[test]
fn a_watching_machine_sees_a_killed_worker_go_down_and_come_back() {
    let mut app = App::new("watch");
    app.write("worker.json", QUIET);
    app.write("watcher.json", WATCHER);
    let manifest = app.write(
        "app.toml",
        r#"
        bus = "watch"
        [supervisor]
        backoff_min = "50ms"

        [[process]]
        name = "worker"
        command = "interstate"
        args = ["run", "worker.json", "--id", "worker", "--client"]
        restart = "always"
        provides = ["worker"]

        [[process]]
        name = "watcher"
        command = "interstate"
        args = ["run", "watcher.json", "--id", "watcher", "--client", "--watch", "worker"]
        provides = ["watcher"]
        after = ["worker"]
        "#,
    );
    let up = app.up(&manifest);
    app.wait_line(up, "up: every process is ready");
    let line = app.wait_line(up, "up: worker started (pid ");
    let worker = number_after(&line, "(pid ").expect("the worker's pid");
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(worker as i32).unwrap(),
        rustix::process::Signal::KILL,
    )
    .expect("kill the worker");
    app.wait_line(up, "[watcher] worker went down");
    app.wait_line(up, "up: worker restarting in 50ms (restart 1)");
    app.wait_line(up, "[watcher] worker came back");
    let out = app.out(up);
    let dump = app.dump(up);
    let pos = |text: &str| {
        out.iter()
            .position(|l| l.contains(text))
            .unwrap_or_else(|| panic!("no line with '{text}'{dump}"))
    };
    assert!(pos(&format!("worker (pid {worker}) exited with signal SIGKILL")) > 0);
    let restarted = out
        .iter()
        .rposition(|l| l.contains("up: worker started (pid "))
        .unwrap();
    assert!(pos("worker went down") < pos("worker came back"), "{dump}");
    assert!(restarted < pos("worker came back"), "{dump}");
    app.signal(up, rustix::process::Signal::TERM);
    assert!(app.wait_exit(up).success(), "{}", app.dump(up));
    app.wait_line(up, "up: finished: stopped (SIGTERM)");
}

#[test]
fn down_stops_a_running_app_by_bus_name() {
    let mut app = App::new("down");
    let manifest = app.write(
        "app.toml",
        "bus = \"downy\"\n[[process]]\nname = \"sleeper\"\ncommand = \"sleep\"\nargs = [\"30\"]\n",
    );
    let (status, _, err) = {
        let d = app.command(&["down", "--bus", "downy"]);
        let i = app.spawn(d);
        let s = app.wait_exit(i);
        (s, app.out(i), app.children[i].2.lock().unwrap().join("\n"))
    };
    assert_eq!(status.code(), Some(2));
    assert!(err.contains("no supervisor runs bus 'downy'"), "{err}");

    let up = app.up(&manifest);
    app.wait_line(up, "up: every process is ready");
    // A second `up` on the same bus is refused.
    let again = app.up(&manifest);
    assert_eq!(app.wait_exit(again).code(), Some(2));
    let err = app.children[again].2.lock().unwrap().join("\n");
    assert!(err.contains("already runs bus 'downy'"), "{err}");

    let d = app.command(&["down", manifest.to_str().unwrap()]);
    let down = app.spawn(d);
    assert!(app.wait_exit(down).success(), "{}", app.dump(down));
    app.wait_line(down, "down: the app on bus 'downy' stopped");
    assert!(app.wait_exit(up).success(), "{}", app.dump(up));
    app.wait_line(up, "up: finished: stopped (SIGTERM)");
    assert!(dir_entries(&app.bus_dir()).is_empty());
}

#[test]
fn a_process_not_ready_in_time_fails_and_bad_manifests_are_refused() {
    let mut app = App::new("notready");
    let manifest = app.write(
        "app.toml",
        r#"
        [[process]]
        name = "mute"
        command = "sleep"
        args = ["30"]
        ready = "notify"
        ready_timeout = "300ms"
        restart = "never"
        "#,
    );
    let up = app.up(&manifest);
    assert_eq!(app.wait_exit(up).code(), Some(1), "{}", app.dump(up));
    app.wait_line(up, "up: mute not ready after 300ms; stopping it");
    app.wait_line(up, "failed: not ready within 300ms");

    let bad = app.write(
        "bad.toml",
        "transport = \"shm\"\n[[process]]\nname = \"a\"\ncommand = \"sleep\"\n",
    );
    let b = app.up(&bad);
    assert_eq!(app.wait_exit(b).code(), Some(2));
    let err = app.children[b].2.lock().unwrap().join("\n");
    assert!(
        err.contains("bad.toml: transport 'shm' is not supported by `interstate up` yet"),
        "{err}"
    );
}

/// A notification socket the test listens on, as systemd would.
fn notify_socket(dir: &Path) -> (UnixDatagram, PathBuf) {
    let path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&path).expect("bind a notification socket");
    sock.set_read_timeout(Some(LIMIT)).unwrap();
    (sock, path)
}

fn recv_notification(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = sock
        .recv(&mut buf)
        .expect("a notification within the limit");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn hub_and_run_tell_notify_socket_they_are_ready() {
    let mut app = App::new("notify");
    let (sock, path) = notify_socket(&app.dir);
    let mut hub = app.command(&["hub", "--bus", "n"]);
    hub.env("NOTIFY_SOCKET", &path);
    let hub = app.spawn(hub);
    let msg = recv_notification(&sock);
    assert!(msg.lines().any(|l| l == "READY=1"), "{msg}");
    assert!(msg.contains("STATUS=serving bus 'n'"), "{msg}");
    // Ready means serving: a client connects at once.
    assert!(app.bus_dir().join("n.sock").exists());

    let chart = app.write("quiet.json", QUIET);
    let mut run = app.command(&[
        "run",
        chart.to_str().unwrap(),
        "--id",
        "quiet",
        "--client",
        "--bus",
        "n",
    ]);
    run.env("NOTIFY_SOCKET", &path);
    let run = app.spawn(run);
    let msg = recv_notification(&sock);
    assert!(msg.lines().any(|l| l == "READY=1"), "{msg}");
    assert!(msg.contains("machine 'quiet' on the bus"), "{msg}");
    // Ready means registered: `interstate ps` sees it now.
    let ps = app.command(&["ps", "--json", "--bus", "n"]);
    let ps = app.spawn(ps);
    assert!(app.wait_exit(ps).success(), "{}", app.dump(ps));
    assert!(
        app.out(ps).join("").contains("\"machine\":\"quiet\""),
        "{}",
        app.dump(ps)
    );
    app.signal(run, rustix::process::Signal::TERM);
    app.wait_exit(run);
    app.signal(hub, rustix::process::Signal::TERM);
    assert!(app.wait_exit(hub).success(), "{}", app.dump(hub));
    let msg = recv_notification(&sock);
    assert_eq!(msg, "STOPPING=1");
}

/// Starts `interstate hub` the way systemd's socket activation does: the listening socket as
/// fd 3, `LISTEN_FDS=1`, and `LISTEN_PID` set to the hub's own pid, which only the child knows:
/// the pre_exec hook writes it into a buffer prepared beforehand and execs the hub itself
/// (nothing is allocated between fork and exec).
fn spawn_activated_hub(app: &mut App, listener: &std::os::unix::net::UnixListener) -> usize {
    use std::ffi::CString;
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::process::CommandExt;

    let program = CString::new(interstate().as_os_str().as_bytes()).unwrap();
    let argv: Vec<CString> = ["interstate", "hub", "--bus", "act"]
        .iter()
        .map(|a| CString::new(*a).unwrap())
        .collect();
    let mut env: Vec<CString> = std::env::vars_os()
        .filter(|(k, _)| {
            !matches!(
                k.to_str(),
                Some("LISTEN_FDS" | "LISTEN_PID" | "INTERSTATE_DIR" | "NOTIFY_SOCKET")
            )
        })
        .map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).unwrap()
        })
        .collect();
    let mut dir = b"INTERSTATE_DIR=".to_vec();
    dir.extend_from_slice(app.bus_dir().as_os_str().as_bytes());
    env.push(CString::new(dir).unwrap());
    env.push(CString::new("LISTEN_FDS=1").unwrap());
    // Ten digits of room, filled in the child.
    env.push(CString::new("LISTEN_PID=0000000000").unwrap());
    // Addresses as integers, so that the hook is Send; the CStrings they point into move
    // into the hook with them.
    let pid_slot = env.last().unwrap().as_ptr() as usize;
    let argv_ptrs: Vec<usize> = argv
        .iter()
        .map(|a| a.as_ptr() as usize)
        .chain(std::iter::once(0))
        .collect();
    let env_ptrs: Vec<usize> = env
        .iter()
        .map(|e| e.as_ptr() as usize)
        .chain(std::iter::once(0))
        .collect();
    let fd = listener.as_raw_fd();

    let mut cmd = Command::new(interstate());
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: between fork and exec the hook only makes system calls (dup2, fcntl, getpid,
    // execve) and writes digits into the child's own copy of a buffer made before the fork;
    // the CStrings and pointer arrays it uses outlive the spawn (they are moved into it).
    unsafe {
        cmd.pre_exec(move || {
            let _keep = (&program, &argv, &env);
            if fd != 3 && libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let mut pid = libc::getpid() as u32;
            let digits =
                std::slice::from_raw_parts_mut((pid_slot as *mut u8).add("LISTEN_PID=".len()), 10);
            let mut n = 0;
            let mut tmp = [0u8; 10];
            loop {
                tmp[n] = b'0' + (pid % 10) as u8;
                n += 1;
                pid /= 10;
                if pid == 0 {
                    break;
                }
            }
            for k in 0..10 {
                digits[k] = if k < n { tmp[n - 1 - k] } else { 0 };
            }
            libc::execve(
                program.as_ptr(),
                argv_ptrs.as_ptr() as *const *const libc::c_char,
                env_ptrs.as_ptr() as *const *const libc::c_char,
            );
            Err(std::io::Error::last_os_error())
        });
    }
    app.spawn(cmd)
}

#[test]
fn a_socket_activated_hub_serves_the_socket_it_is_handed() {
    let mut app = App::new("activate");
    // The service manager binds the bus socket; the hub never binds anything.
    let path = app.bus_dir().join("act.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind the bus socket");
    let hub = spawn_activated_hub(&mut app, &listener);
    drop(listener); // the hub has its own copy now
    app.wait_line_err(hub, "hub serving bus 'act'");
    let chart = app.write("quiet.json", QUIET);
    let run = app.command(&[
        "run",
        chart.to_str().unwrap(),
        "--id",
        "activated",
        "--client",
        "--bus",
        "act",
    ]);
    let run = app.spawn(run);
    app.wait_line_err(run, "machine 'activated' joined bus 'act' (client)");
    let ps = app.command(&["ps", "--json", "--bus", "act"]);
    let ps = app.spawn(ps);
    assert!(app.wait_exit(ps).success(), "{}", app.dump(ps));
    assert!(
        app.out(ps).join("").contains("\"machine\":\"activated\""),
        "{}",
        app.dump(ps)
    );
    app.signal(run, rustix::process::Signal::TERM);
    app.wait_exit(run);
    app.signal(hub, rustix::process::Signal::TERM);
    assert!(app.wait_exit(hub).success(), "{}", app.dump(hub));
}

impl App {
    /// Waits for a stderr line containing `text`.
    fn wait_line_err(&mut self, i: usize, text: &str) {
        let end = Instant::now() + LIMIT;
        loop {
            if self.children[i]
                .2
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains(text))
            {
                return;
            }
            let exited = self.children[i].0.try_wait().ok().flatten().is_some();
            if exited || Instant::now() >= end {
                std::thread::sleep(Duration::from_millis(200));
                if self.children[i]
                    .2
                    .lock()
                    .unwrap()
                    .iter()
                    .any(|l| l.contains(text))
                {
                    return;
                }
                panic!("no stderr line with '{text}'{}", self.dump(i));
            }
            std::thread::sleep(POLL);
        }
    }
}
