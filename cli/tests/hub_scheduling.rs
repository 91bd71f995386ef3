//! `interstate hub --nice N` (and `INTERSTATE_HUB_NICE`): the hub takes the nice value before
//! it serves, as `/proc/<hub>/sched` shows; bad values are refused with the setting named.

mod support;

use support::*;

/// `/proc/<pid>/sched`'s `field` (e.g. `prio`), if the kernel shows it.
fn sched_field(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/sched")).ok()?;
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(field))
        .and_then(|l| l.rsplit(':').next())
        .and_then(|v| v.trim().parse().ok())
}

/// A hub started with `args` (and `env`), once it serves: its pid, or its stderr if it
/// exited instead.
fn hub_with(bus: &mut Bus, args: &[&str], env: &[(&str, &str)]) -> Result<u32, String> {
    let mut all = vec!["hub"];
    all.extend_from_slice(args);
    let mut cmd = bus.command(&interstate_bin(), &all);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let hub = bus.spawn("hub", cmd);
    let limit = std::time::Duration::from_secs(30);
    let end = std::time::Instant::now() + limit;
    loop {
        if bus.err(hub).iter().any(|l| l.contains("hub serving bus")) {
            return Ok(bus.pid(hub));
        }
        if bus.try_status(hub).is_some() {
            // Exited: its stderr read to the end first (a reader thread collects it).
            let status = bus.wait_exit(hub, std::time::Duration::from_secs(5));
            assert_eq!(status.code(), Some(2), "{}", bus.dump());
            return Err(bus.err(hub).join("\n"));
        }
        assert!(
            std::time::Instant::now() < end,
            "no start line{}",
            bus.dump()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn the_hub_takes_its_nice_value_before_it_serves() {
    let mut bus = Bus::new("hub-sched");
    // Raising it needs no privilege.
    let pid = hub_with(&mut bus, &["--nice", "3"], &[]).expect("the hub serves");
    assert_eq!(
        sched_field(pid, "prio"),
        Some(123),
        "nice 3 is priority 123"
    );
}

#[test]
fn the_environment_sets_it_when_the_option_does_not() {
    let mut bus = Bus::new("hub-sched-env");
    let pid = hub_with(&mut bus, &[], &[("INTERSTATE_HUB_NICE", "4")]).expect("the hub serves");
    assert_eq!(sched_field(pid, "prio"), Some(124));
}

#[test]
fn bad_values_are_refused_with_the_setting_named() {
    let mut bus = Bus::new("hub-sched-bad");
    let err = hub_with(&mut bus, &["--nice", "30"], &[]).unwrap_err();
    assert!(err.contains("-20 to 19"), "{err}");
    let err = hub_with(&mut bus, &[], &[("INTERSTATE_HUB_NICE", "high")]).unwrap_err();
    assert!(err.contains("INTERSTATE_HUB_NICE: 'high'"), "{err}");
}
