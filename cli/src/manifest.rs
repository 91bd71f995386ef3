//! App manifests: an app's bus and processes in TOML, for `interstate up`.
//!
//! ```toml
//! bus = "shop"              # default: the file name without `.toml`
//! transport = "unix"        # the only one for now
//!
//! [supervisor]              # all optional; these are the defaults
//! grace = "5s"              # SIGTERM -> SIGKILL
//! ready_timeout = "30s"
//! backoff_min = "100ms"
//! backoff_max = "5s"
//! max_restarts = 5          # ... within `within`, else give up
//! within = "10s"
//!
//! [[process]]
//! name = "worker"
//! command = "interstate"    # `interstate` is this very program
//! args = ["run", "worker.json", "--id", "worker"]
//! env = { RUST_LOG = "info" }
//! restart = "always"        # never | on-failure (default) | always
//! provides = ["worker"]     # machine ids; ready when they are registered
//! state_dir = "state/worker" # durable machines: journal here (INTERSTATE_STATE_DIR)
//! durability = "group"      # fsync (default) | group | group:STEPS:MS | none
//! ```
//!
//! Relative commands (with a `/`) and the working directory (`cwd`, default: the manifest's
//! directory) are relative to the manifest's directory. See `docs/lifecycle.md`.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use interstate_platform::supervisor::{ChildSpec, Readiness, Restart, SupervisorConfig};
use serde::Deserialize;

/// A loaded manifest: what `interstate up` runs.
#[derive(Clone, Debug)]
pub struct Manifest {
    /// The bus name.
    pub bus: String,
    /// The supervisor's settings.
    pub supervisor: SupervisorConfig,
    /// The processes, in the manifest's order.
    pub processes: Vec<ChildSpec>,
    /// `metrics = "127.0.0.1:PORT"`: where `up` serves its metrics (the supervisor's node
    /// and each process's restarts) in the OpenMetrics text format.
    pub metrics: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    bus: Option<String>,
    transport: Option<String>,
    metrics: Option<String>,
    #[serde(default)]
    supervisor: RawSupervisor,
    #[serde(default)]
    process: Vec<RawProcess>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSupervisor {
    grace: Option<String>,
    ready_timeout: Option<String>,
    backoff_min: Option<String>,
    backoff_max: Option<String>,
    max_restarts: Option<u32>,
    within: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProcess {
    name: String,
    command: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    cwd: Option<String>,
    restart: Option<String>,
    #[serde(default)]
    after: Vec<String>,
    #[serde(default)]
    provides: Vec<String>,
    ready: Option<String>,
    ready_timeout: Option<String>,
    grace: Option<String>,
    #[serde(default)]
    main: bool,
    state_dir: Option<String>,
    durability: Option<String>,
}

/// Parses a duration: a number and a unit, `ms`, `s` or `m` (`"500ms"`, `"5s"`, `"1.5s"`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (num, unit) = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map(|i| t.split_at(i))
        .ok_or_else(|| format!("'{text}' has no unit: write e.g. \"500ms\", \"5s\" or \"1m\""))?;
    let n: f64 = num
        .parse()
        .map_err(|_| format!("'{text}' is not a duration: write e.g. \"500ms\" or \"5s\""))?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "s" => n,
        "m" | "min" => n * 60.0,
        u => return Err(format!("'{text}': unknown unit '{u}' (use ms, s or m)")),
    };
    if !secs.is_finite() || !(0.0..=86_400.0 * 365.0).contains(&secs) {
        return Err(format!("'{text}' is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

impl Manifest {
    /// Reads and checks the manifest at `path`. Errors start with the file name.
    pub fn load(path: &Path) -> Result<Manifest, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let base = std::fs::canonicalize(base).map_err(|e| format!("{}: {e}", base.display()))?;
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "app".into());
        Manifest::parse(&text, &base, &stem).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses manifest text. Relative paths are relative to `base`; the bus defaults to
    /// `default_bus`.
    pub fn parse(text: &str, base: &Path, default_bus: &str) -> Result<Manifest, String> {
        let raw: RawManifest = toml::from_str(text).map_err(|e| e.to_string())?;
        if let Some(t) = raw.transport.as_deref() {
            if t != "unix" {
                return Err(format!(
                    "transport '{t}' is not supported by `interstate up` yet (only \"unix\")"
                ));
            }
        }
        let bus = raw.bus.unwrap_or_else(|| default_bus.to_string());
        interstate_platform::busdir::check_bus_name(&bus).map_err(|e| format!("bus: {e}"))?;
        let d = |field: &str, v: &Option<String>, default: Duration| -> Result<Duration, String> {
            match v {
                Some(s) => parse_duration(s).map_err(|e| format!("{field}: {e}")),
                None => Ok(default),
            }
        };
        let def = SupervisorConfig::default();
        let s = &raw.supervisor;
        let supervisor = SupervisorConfig {
            grace: d("supervisor.grace", &s.grace, def.grace)?,
            ready_timeout: d(
                "supervisor.ready_timeout",
                &s.ready_timeout,
                def.ready_timeout,
            )?,
            backoff_min: d("supervisor.backoff_min", &s.backoff_min, def.backoff_min)?,
            backoff_max: d("supervisor.backoff_max", &s.backoff_max, def.backoff_max)?,
            max_restarts: s.max_restarts.unwrap_or(def.max_restarts),
            within: d("supervisor.within", &s.within, def.within)?,
        };
        if supervisor.backoff_max < supervisor.backoff_min {
            return Err("supervisor.backoff_max is shorter than supervisor.backoff_min".into());
        }
        if raw.process.is_empty() {
            return Err("no [[process]]: an app needs at least one process".into());
        }
        let mut processes = Vec::new();
        for (i, p) in raw.process.into_iter().enumerate() {
            let at = format!("process[{i}] ('{}')", p.name);
            processes.push(process(p, base).map_err(|e| format!("{at}: {e}"))?);
        }
        // Names, dependencies and cycles are checked by the supervisor too; checking here
        // names the file before anything starts.
        for (i, p) in processes.iter().enumerate() {
            if processes[..i].iter().any(|o| o.name == p.name) {
                return Err(format!("two processes are named '{}'", p.name));
            }
            for a in &p.after {
                if !processes.iter().any(|o| &o.name == a) {
                    return Err(format!(
                        "process '{}': after: no process is named '{a}'",
                        p.name
                    ));
                }
            }
        }
        Ok(Manifest {
            bus,
            supervisor,
            processes,
            metrics: raw.metrics,
        })
    }
}

fn process(p: RawProcess, base: &Path) -> Result<ChildSpec, String> {
    let restart = match p.restart.as_deref() {
        None | Some("on-failure") => Restart::OnFailure,
        Some("never") => Restart::Never,
        Some("always") => Restart::Always,
        Some(r) => {
            return Err(format!(
                "restart: '{r}' is not a policy (never, on-failure, always)"
            ))
        }
    };
    let readiness = match p.ready.as_deref() {
        None if p.provides.is_empty() => Readiness::Started,
        None | Some("machines") => Readiness::Machines,
        Some("notify") => Readiness::Notify,
        Some("started") => Readiness::Started,
        Some(r) => {
            return Err(format!(
                "ready: '{r}' is not a readiness (machines, notify, started)"
            ))
        }
    };
    if readiness == Readiness::Machines && p.provides.is_empty() {
        return Err("ready = \"machines\" needs the machine ids in `provides`".into());
    }
    for m in &p.provides {
        if !interstate_core::hub::valid_machine_id(m) {
            return Err(format!("provides: '{m}' is not a valid machine id"));
        }
    }
    let dur = |field: &str, v: &Option<String>| -> Result<Option<Duration>, String> {
        v.as_deref()
            .map(parse_duration)
            .transpose()
            .map_err(|e| format!("{field}: {e}"))
    };
    let cwd = match &p.cwd {
        Some(c) => base.join(c),
        None => base.to_path_buf(),
    };
    // A durable process: `interstate run` (and any node that reads them) journals its
    // machines there, relative to the manifest's directory.
    let mut env = p.env;
    if let Some(d) = &p.durability {
        d.parse::<interstate_platform::journal::Durability>()
            .map_err(|e| format!("durability: {e}"))?;
        if p.state_dir.is_none() {
            return Err("durability needs a state_dir".into());
        }
        env.insert("INTERSTATE_DURABILITY".into(), d.clone());
    }
    if let Some(dir) = &p.state_dir {
        let dir = base.join(dir);
        env.insert(
            "INTERSTATE_STATE_DIR".into(),
            dir.to_string_lossy().into_owned(),
        );
    }
    Ok(ChildSpec {
        program: resolve_command(&p.command, base)?,
        args: p.args.into_iter().map(OsString::from).collect(),
        env: env
            .into_iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect(),
        cwd: Some(cwd),
        restart,
        after: p.after,
        provides: p.provides,
        readiness,
        main: p.main,
        ready_timeout: dur("ready_timeout", &p.ready_timeout)?,
        grace: dur("grace", &p.grace)?,
        name: p.name,
    })
}

/// `interstate` is this program; a command with a `/` is relative to the manifest; any other
/// is looked up in `PATH` now, so that a typo is reported before anything starts.
fn resolve_command(command: &str, base: &Path) -> Result<PathBuf, String> {
    if command == "interstate" {
        return std::env::current_exe()
            .map_err(|e| format!("command: cannot find this interstate program: {e}"));
    }
    if command.contains('/') {
        let p = base.join(command);
        if !p.is_file() {
            return Err(format!("command: {} is not a file", p.display()));
        }
        return Ok(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(command))
        .find(|p| p.is_file())
        .ok_or_else(|| format!("command: '{command}' is not in PATH"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Manifest, String> {
        Manifest::parse(text, Path::new("/tmp"), "app")
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("5").unwrap_err().contains("no unit"));
        assert!(parse_duration("5h")
            .unwrap_err()
            .contains("unknown unit 'h'"));
    }

    #[test]
    fn a_full_manifest() {
        let m = parse(
            r#"
            bus = "shop"
            transport = "unix"
            [supervisor]
            grace = "2s"
            max_restarts = 3
            within = "5s"
            [[process]]
            name = "db"
            command = "sh"
            args = ["-c", "exec sleep 10"]
            ready = "notify"
            [[process]]
            name = "api"
            command = "interstate"
            args = ["run", "api.json", "--id", "api"]
            env = { A = "1" }
            restart = "always"
            after = ["db"]
            provides = ["api"]
            main = true
            "#,
        )
        .unwrap();
        assert_eq!(m.bus, "shop");
        assert_eq!(m.supervisor.grace, Duration::from_secs(2));
        assert_eq!(m.supervisor.max_restarts, 3);
        assert_eq!(m.processes.len(), 2);
        assert_eq!(m.processes[0].readiness, Readiness::Notify);
        assert_eq!(m.processes[0].restart, Restart::OnFailure);
        let api = &m.processes[1];
        assert_eq!(api.readiness, Readiness::Machines);
        assert_eq!(api.restart, Restart::Always);
        assert_eq!(api.after, ["db"]);
        assert!(api.main);
        assert_eq!(api.cwd.as_deref(), Some(Path::new("/tmp")));
        assert_eq!(api.program, std::env::current_exe().unwrap());
    }

    #[test]
    fn errors_name_the_place() {
        let one = |extra: &str| {
            parse(&format!(
                "[[process]]\nname = \"a\"\ncommand = \"sh\"\n{extra}\n"
            ))
            .unwrap_err()
        };
        assert!(one("restart = \"sometimes\"").contains("process[0] ('a'): restart: 'sometimes'"));
        assert!(one("ready = \"machines\"").contains("needs the machine ids"));
        assert!(one("after = [\"b\"]").contains("no process is named 'b'"));
        assert!(one("colour = 1").contains("unknown field `colour`"));
        let e = parse("transport = \"shm\"\n[[process]]\nname = \"a\"\ncommand = \"sh\"\n")
            .unwrap_err();
        assert!(e.contains("transport 'shm' is not supported"), "{e}");
        assert!(parse("bus = \"x\"").unwrap_err().contains("no [[process]]"));
        let e =
            parse("[[process]]\nname = \"a\"\ncommand = \"no-such-program-here\"\n").unwrap_err();
        assert!(e.contains("'no-such-program-here' is not in PATH"), "{e}");
    }

    #[test]
    fn a_durable_process_gets_its_state_dir_and_policy_in_its_environment() {
        let m = parse(
            "[[process]]\nname = \"a\"\ncommand = \"sh\"\nstate_dir = \"state/a\"\n\
             durability = \"group:8:2\"\n",
        )
        .unwrap();
        let env: BTreeMap<_, _> = m.processes[0].env.iter().cloned().collect();
        assert_eq!(
            env.get(&OsString::from("INTERSTATE_STATE_DIR")),
            Some(&OsString::from("/tmp/state/a"))
        );
        assert_eq!(
            env.get(&OsString::from("INTERSTATE_DURABILITY")),
            Some(&OsString::from("group:8:2"))
        );
        let one = |extra: &str| {
            parse(&format!(
                "[[process]]\nname = \"a\"\ncommand = \"sh\"\n{extra}\n"
            ))
            .unwrap_err()
        };
        let e = one("state_dir = \"s\"\ndurability = \"sometimes\"");
        assert!(
            e.contains("durability: 'sometimes' is not a durability policy"),
            "{e}"
        );
        assert!(one("durability = \"fsync\"").contains("durability needs a state_dir"));
    }

    #[test]
    fn the_example_manifests_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/apps");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                Manifest::load(&path).unwrap_or_else(|e| panic!("{e}"));
                n += 1;
            }
        }
        assert!(n > 0, "no manifests in {}", dir.display());
    }
}
