//! `interstate bench --transport mqtt` end to end, briefly: it starts its own mosquitto, the
//! hubs, the bridges and the peers, measures raw MQTT and both bridged paths (through the
//! hubs, and hosted in the bridges' processes), and reports them with their ratios
//! (no figure is checked against a bound: the machine is shared and noisy). Nothing of it
//! is left running or in its TMPDIR.
//!
//! Needs `/usr/sbin/mosquitto` (Debian package `mosquitto`; `scripts/test.sh` installs it).

use std::os::unix::fs::DirBuilderExt;
use std::process::Command;

use serde_json::Value;

#[test]
fn the_mqtt_benchmark_measures_both_bridged_paths_beside_raw_mqtt() {
    let tmp = std::env::temp_dir().join(format!("istbench-mqtt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::DirBuilder::new().mode(0o700).create(&tmp).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_interstate"))
        .args([
            "bench",
            "--transport",
            "mqtt",
            "--round-trips",
            "50",
            "--messages",
            "3000",
            "--payload",
            "64,1024",
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
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}\n{err}");
    assert!(left.is_empty(), "left in TMPDIR: {left:?}");
    let report: Value = serde_json::from_str(text.trim()).expect("a JSON report");
    assert_eq!(report["transport"], "mqtt");
    assert!(report["broker"].as_str().unwrap().contains("mosquitto"));
    let results = report["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "{report}");
    // Larger payloads send proportionally fewer (as the local paths; at least a tenth).
    for (r, (payload, messages)) in results.iter().zip([(64, 3000), (1024, 300)]) {
        assert_eq!(r["payload"], payload);
        assert_eq!(r["messages"], messages);
        for path in ["raw_mqtt", "internode", "hosted"] {
            for key in ["rtt_p50_us", "rtt_p99_us", "msgs_per_s"] {
                let v = r[path][key].as_f64().unwrap_or(0.0);
                assert!(v > 0.0, "{path}.{key} = {v}: {report}");
            }
        }
        for key in [
            "rtt_p50_ratio",
            "rate_ratio",
            "hosted_rtt_p50_ratio",
            "hosted_rate_ratio",
        ] {
            assert!(r[key].as_f64().unwrap_or(0.0) > 0.0, "{key}: {report}");
        }
    }
}
