//! The inspector's page in headless Chromium: this test starts a private bus with the demo
//! pipeline and `interstate inspect`, and runs `tests/browser/inspect.test.mjs` (node and
//! playwright-core) against it. It needs Debian's `chromium` (`.ci/run` installs it when
//! missing) and node; it runs `npm ci` in `tests/browser` when playwright-core is not
//! installed there. Without chromium or node it says so loudly and passes (skips).
//! Screenshots go to `target/tmp/inspector-browser/`.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{interstate_bin, Bus, P, STEP_LIMIT};

fn chromium() -> Option<PathBuf> {
    let from_env = std::env::var_os("CHROMIUM").map(PathBuf::from);
    from_env
        .into_iter()
        .chain(["/usr/bin/chromium", "/usr/bin/chromium-browser"].map(PathBuf::from))
        .find(|p| p.exists())
}

fn skip(why: &str) {
    eprintln!(
        "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
         !!! SKIPPED: the inspector's browser test did not run: {why}\n\
         !!! (.ci/run installs what it needs: `apt-get install -y chromium`, `npm ci` in\n\
         !!! tests/browser)\n\
         !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
    );
}

/// `tests/browser`, with playwright-core installed (`npm ci` from the lockfile if missing).
fn browser_dir() -> Result<PathBuf, String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/browser");
    if !dir
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        let out = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .output()
            .map_err(|e| format!("running npm ci: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "npm ci in tests/browser failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    Ok(dir)
}

/// A demo role (`interstate demo --role NAME ...`) on `bus`: the roles take the bus from
/// the environment.
fn role(bus: &mut Bus, name: &str, extra: &[&str], ready: &str) -> P {
    let mut cmd = Command::new(interstate_bin());
    cmd.args(["demo", "--role", name])
        .args(extra)
        .env("INTERSTATE_DIR", &bus.dir)
        .env("INTERSTATE_BUS", &bus.name)
        .env("INTERSTATE_TRANSPORT", &bus.transport)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let p = bus.spawn(name, cmd);
    bus.wait_line(p, false, &format!("{name}'s start line"), STEP_LIMIT, |l| {
        l.contains(ready)
    });
    p
}

#[test]
fn the_page_lists_lights_sends_and_follows_the_demo_pipeline() {
    let Some(chromium) = chromium() else {
        skip("no chromium (/usr/bin/chromium)");
        return;
    };
    if Command::new("node").arg("--version").output().is_err() {
        skip("no node");
        return;
    }
    let dir = browser_dir().expect("playwright-core for the browser test");

    let mut bus = Bus::new("inspect-browser");
    bus.start_hub();
    let monitor = role(&mut bus, "monitor", &[], "watching every message");
    let store = bus.path("store.jsonl");
    let storage = role(&mut bus, "storage", &["--store", &store], "registered");
    role(&mut bus, "processor", &[], "registered");
    // The inspector first: its event log starts with its subscription.
    let insp = bus.interstate("inspect", &["inspect", "--listen", "127.0.0.1:0"]);
    let url = bus.wait_line(insp, false, "the page's address", STEP_LIMIT, |l| {
        l.starts_with("http://")
    });
    // Three files; after the first the ingester pauses a minute: it stays on the bus.
    let input = bus.path("input");
    std::fs::create_dir(&input).unwrap();
    for (name, text) in [("a.txt", "one two"), ("b.txt", "three"), ("c.txt", "four")] {
        std::fs::write(Path::new(&input).join(name), text).unwrap();
    }
    role(
        &mut bus,
        "ingester",
        &["--input", &input, "--pace", "60000"],
        "files from",
    );
    let monitor_port = format!("demo-monitor.{}", bus.pid(monitor));
    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("inspector-browser");

    let mut node = Command::new("node");
    node.arg("inspect.test.mjs")
        .current_dir(&dir)
        .env("INSPECT_URL", &url)
        .env(
            "EXPECT_MACHINES",
            format!("ingester,processor,storage,{monitor_port}"),
        )
        .env("KILL_ID", "storage")
        .env("KILL_PID", bus.pid(storage).to_string())
        .env("ARTIFACT_DIR", &artifacts)
        .env("CHROMIUM", &chromium)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let p = bus.spawn("browser test", node);
    let status = bus.wait_exit(p, Duration::from_secs(180));
    assert!(
        status.success(),
        "the browser test failed (screenshots in {}):\n{}",
        artifacts.display(),
        bus.dump()
    );
    eprintln!("screenshots in {}", artifacts.display());
}
