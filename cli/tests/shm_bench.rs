//! `interstate bench --transport shm --json` end to end, briefly: the report carries issue
//! 19's targets for shared memory, each with its value (a ratio or figure within the run),
//! its limit and whether it was met, and each path its payload bytes per second. No figure
//! is checked against a bound: the machine is shared and noisy. Nothing is left in its
//! TMPDIR.

use std::os::unix::fs::DirBuilderExt;
use std::process::Command;

use serde_json::Value;

#[test]
fn the_shared_memory_benchmark_reports_issue_19s_targets() {
    let tmp = std::env::temp_dir().join(format!("istbench-shm-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::DirBuilder::new().mode(0o700).create(&tmp).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_interstate"))
        .args([
            "bench",
            "--transport",
            "shm",
            "--round-trips",
            "50",
            "--messages",
            "2000",
            "--payload",
            "64,4096",
            "--wait",
            "spin",
            "--pin",
            "none",
            "--json",
        ])
        .env("TMPDIR", &tmp)
        .env_remove("INTERSTATE_DIR")
        .env_remove("INTERSTATE_BUS")
        .output()
        .expect("run interstate bench");
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.file_name())).collect())
        .unwrap_or_default();
    let _ = std::fs::remove_dir_all(&tmp);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed: {stderr}");
    assert!(left.is_empty(), "left in TMPDIR: {left:?}");
    let v: Value = serde_json::from_slice(&out.stdout).expect("the report is JSON");
    let runs = v["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 2, "{v}");
    for run in runs {
        let payload = run["payload_bytes"].as_u64().unwrap();
        let targets: Vec<(&str, f64)> = run["targets"]
            .as_array()
            .expect("targets")
            .iter()
            .map(|t| {
                let name = t["target"].as_str().unwrap();
                assert!(t["value"].is_f64() || t["value"].is_u64(), "measured: {t}");
                assert!(t["met"].is_boolean(), "{t}");
                (name, t["limit"].as_f64().unwrap())
            })
            .collect();
        let mut want = vec![
            ("pair_spin rtt p50 / direct_spin rtt p50 <= 1.2", 1.2),
            ("direct_spin one way / pair_spin one way <= 1.2", 1.2),
            ("hub_spin rtt p50 / unix_hub rtt p50 <= 1", 1.0),
            ("unix_hub one way / hub_spin one way <= 1", 1.0),
        ];
        if payload == 64 {
            want.push(("direct_spin one way (M msgs/s) >= 10", 10.0));
        } else {
            want.push(("direct_spin rtt p50 (us) < 3", 3.0));
            want.push(("direct_spin one way payload (GB/s) >= 1", 1.0));
        }
        for w in &want {
            assert!(targets.contains(w), "{w:?} missing from {targets:?}");
        }
        assert_eq!(targets.len(), want.len(), "{targets:?}");
        for (name, p) in run["paths"].as_object().expect("paths") {
            let msgs = p["msgs_per_s"].as_f64().unwrap();
            let bytes = p["payload_bytes_per_s"].as_f64().unwrap();
            assert!(
                (bytes - msgs * payload as f64).abs() <= payload as f64,
                "{name}: {p}"
            );
        }
    }
}
