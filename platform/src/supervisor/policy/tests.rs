//! The policy's rules, each checked without a process: the time is made up.

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn config(max_restarts: u32, within: Duration) -> SupervisorConfig {
    SupervisorConfig {
        backoff_min: ms(100),
        backoff_max: ms(1000),
        max_restarts,
        within,
        ..SupervisorConfig::default()
    }
}

fn invalid(children: &[ChildSpec]) -> String {
    match validate(children) {
        Err(SupervisorError::Invalid(why)) => why,
        other => panic!("expected an invalid spec, got {other:?}"),
    }
}

fn restart_delay(a: AfterExit) -> Duration {
    match a {
        AfterExit::Restart { delay } => delay,
        other => panic!("expected a restart, got {other:?}"),
    }
}

#[test]
fn names_are_checked() {
    let (long, too_long) = ("x".repeat(64), "x".repeat(65));
    for good in ["a", "web-1", "db_main", "v1.2", &long] {
        assert!(check_name(good), "{good}");
    }
    for bad in ["", "a b", "a/b", "é", &too_long] {
        assert!(!check_name(bad), "{bad}");
    }
    let why = invalid(&[ChildSpec::new("a b", "true")]);
    assert!(why.contains("'a b' is not valid"), "{why}");
}

#[test]
fn specs_that_do_not_hold_together_are_refused() {
    let two = [ChildSpec::new("a", "true"), ChildSpec::new("a", "true")];
    assert_eq!(invalid(&two), "two processes are named 'a'");
    let unknown = [ChildSpec::new("a", "true").after("b")];
    assert_eq!(
        invalid(&unknown),
        "process 'a' depends on 'b', which is not a process of the app"
    );
    let no_ids = [ChildSpec::new("a", "true").readiness(Readiness::Machines)];
    assert!(invalid(&no_ids).contains("provides none"));
    let fine = [
        ChildSpec::new("db", "true").provides("db"),
        ChildSpec::new("web", "true").after("db"),
    ];
    assert!(validate(&fine).is_ok());
}

#[test]
fn cycles_are_named() {
    let specs = vec![
        ChildSpec::new("a", "true").after("c"),
        ChildSpec::new("b", "true").after("a"),
        ChildSpec::new("c", "true").after("b"),
        ChildSpec::new("d", "true"),
    ];
    let cycle = find_cycle(&specs).expect("a cycle");
    assert_eq!(cycle, ["a", "c", "b", "a"]);
    assert!(find_cycle(&specs[3..]).is_none());
    assert_eq!(
        invalid(&specs),
        "the dependencies go round in a circle: a -> c -> b -> a"
    );
}

#[test]
fn a_cycle_is_found_behind_an_acyclic_start() {
    let specs = [
        ChildSpec::new("front", "true").after("x"),
        ChildSpec::new("x", "true").after("y"),
        ChildSpec::new("y", "true").after("x"),
    ];
    assert_eq!(find_cycle(&specs).expect("a cycle"), ["x", "y", "x"]);
    let own = [ChildSpec::new("self", "true").after("self")];
    assert_eq!(
        invalid(&own),
        "the dependencies go round in a circle: self -> self"
    );
}

#[test]
fn diamonds_are_not_cycles() {
    let specs = [
        ChildSpec::new("top", "true").after("left").after("right"),
        ChildSpec::new("left", "true").after("base"),
        ChildSpec::new("right", "true").after("base"),
        ChildSpec::new("base", "true"),
    ];
    assert!(find_cycle(&specs).is_none());
    assert!(validate(&specs).is_ok());
}

#[test]
fn backoff_doubles_and_caps() {
    let c = config(5, Duration::from_secs(10));
    let d: Vec<u128> = (1..=6).map(|n| backoff(&c, n).as_millis()).collect();
    assert_eq!(d, [100, 200, 400, 800, 1000, 1000]);
    assert_eq!(backoff(&c, 200).as_millis(), 1000);
    assert_eq!(backoff(&c, u32::MAX).as_millis(), 1000);
    assert_eq!(backoff(&c, 0).as_millis(), 100);
}

#[test]
fn each_policy_against_each_exit() {
    let (clean, failed, killed) = (Exit::Code(0), Exit::Code(1), Exit::Signal(9));
    // (policy, exit, timed out) -> restarted
    let table = [
        (Restart::Never, clean, false, false),
        (Restart::Never, failed, false, false),
        (Restart::Never, killed, false, false),
        (Restart::Never, clean, true, false),
        (Restart::OnFailure, clean, false, false),
        (Restart::OnFailure, failed, false, true),
        (Restart::OnFailure, killed, false, true),
        (Restart::OnFailure, clean, true, true),
        (Restart::Always, clean, false, true),
        (Restart::Always, failed, false, true),
        (Restart::Always, killed, false, true),
        (Restart::Always, clean, true, true),
    ];
    for (policy, exit, timed_out, want) in table {
        assert_eq!(
            restarts(policy, exit, timed_out),
            want,
            "{policy:?} after {exit}, timed out: {timed_out}"
        );
    }
}

#[test]
fn a_window_forgets_what_is_older_than_it() {
    let t0 = Instant::now();
    let within = Duration::from_secs(10);
    let mut w = Window::default();
    assert_eq!(w.record(t0, within), 1);
    assert_eq!(w.record(t0 + ms(5_000), within), 2);
    // Exactly `within` later is still inside.
    assert_eq!(w.record(t0 + ms(10_000), within), 3);
    // Past it, the first is forgotten.
    assert_eq!(w.record(t0 + ms(10_001), within), 3);
    assert_eq!(w.record(t0 + ms(30_000), within), 1);
}

#[test]
fn a_child_that_is_not_restarted_stays_down() {
    let t0 = Instant::now();
    let mut p = Policy::new(config(5, Duration::from_secs(10)), 2);
    let once = ChildSpec::new("once", "true").restart(Restart::Never);
    assert_eq!(
        p.after_exit(0, &once, Exit::Code(2), None, true, t0),
        AfterExit::Down {
            state: ChildState::Exited(Exit::Code(2)),
            ends_app: false
        }
    );
    let job = ChildSpec::new("job", "true");
    assert_eq!(
        p.after_exit(1, &job, Exit::Code(0), None, true, t0),
        AfterExit::Down {
            state: ChildState::Exited(Exit::Code(0)),
            ends_app: false
        }
    );
    let mut main = ChildSpec::new("main", "true").restart(Restart::Never);
    main.main = true;
    assert_eq!(
        p.after_exit(0, &main, Exit::Signal(15), None, true, t0),
        AfterExit::Down {
            state: ChildState::Exited(Exit::Signal(15)),
            ends_app: true
        }
    );
}

#[test]
fn not_ready_in_time_is_a_failure() {
    let t0 = Instant::now();
    let mut p = Policy::new(config(5, Duration::from_secs(10)), 1);
    let mut slow = ChildSpec::new("slow", "true").restart(Restart::Never);
    slow.ready_timeout = Some(ms(1500));
    let a = p.after_exit(
        0,
        &slow,
        Exit::Code(0),
        Some(StopReason::ReadyTimeout),
        true,
        t0,
    );
    assert_eq!(
        a,
        AfterExit::Down {
            state: ChildState::Failed("not ready within 1.5s".into()),
            ends_app: false
        }
    );
    let slow = slow.restart(Restart::OnFailure);
    let a = p.after_exit(
        0,
        &slow,
        Exit::Code(0),
        Some(StopReason::ReadyTimeout),
        true,
        t0,
    );
    assert_eq!(restart_delay(a), ms(100));
}

#[test]
fn exits_while_the_app_stops_are_final() {
    let t0 = Instant::now();
    let mut p = Policy::new(config(5, Duration::from_secs(10)), 1);
    let mut always = ChildSpec::new("always", "true").restart(Restart::Always);
    always.main = true;
    // Asked to stop: stopped, whatever its status; the main child does not end the app twice.
    let a = p.after_exit(
        0,
        &always,
        Exit::Signal(15),
        Some(StopReason::App),
        false,
        t0,
    );
    assert_eq!(
        a,
        AfterExit::Down {
            state: ChildState::Stopped,
            ends_app: false
        }
    );
    // Exited by itself before its turn: exited, not restarted.
    let a = p.after_exit(0, &always, Exit::Code(1), None, false, t0);
    assert_eq!(
        a,
        AfterExit::Down {
            state: ChildState::Exited(Exit::Code(1)),
            ends_app: false
        }
    );
}

#[test]
fn backoff_grows_per_child_and_resets_after_the_window() {
    let t0 = Instant::now();
    let within = Duration::from_secs(10);
    let mut p = Policy::new(config(100, within), 2);
    let a = ChildSpec::new("a", "false");
    let b = ChildSpec::new("b", "false");
    let mut delays = Vec::new();
    for k in 0..6 {
        let now = t0 + ms(k * 10);
        delays.push(restart_delay(p.after_exit(
            0,
            &a,
            Exit::Code(1),
            None,
            true,
            now,
        )));
    }
    assert_eq!(delays, [100, 200, 400, 800, 1000, 1000].map(ms));
    // Another child's restarts do not lengthen b's backoff.
    let b1 = p.after_exit(1, &b, Exit::Code(1), None, true, t0 + ms(100));
    assert_eq!(restart_delay(b1), ms(100));
    // Once a's restarts are older than the window, it starts over.
    let later = t0 + within + ms(1_000);
    let a7 = p.after_exit(0, &a, Exit::Code(1), None, true, later);
    assert_eq!(restart_delay(a7), ms(100));
}

#[test]
fn the_intensity_limit_counts_every_child_within_the_window() {
    let t0 = Instant::now();
    let mut p = Policy::new(config(3, Duration::from_secs(10)), 2);
    let a = ChildSpec::new("a", "false").restart(Restart::Always);
    let b = ChildSpec::new("b", "false").restart(Restart::Always);
    for (k, (i, spec)) in [(0, &a), (1, &b), (0, &a)].into_iter().enumerate() {
        let now = t0 + ms(k as u64 * 100);
        let r = p.after_exit(i, spec, Exit::Code(0), None, true, now);
        assert!(matches!(r, AfterExit::Restart { .. }), "restart {k}: {r:?}");
    }
    // The fourth within 10 s, whichever child it is, is one too many.
    let r = p.after_exit(1, &b, Exit::Code(1), None, true, t0 + ms(300));
    assert_eq!(
        r,
        AfterExit::GiveUp {
            restarts: 3,
            state: ChildState::Failed(
                "exited again after 3 restarts within 10s (at most 3)".into()
            )
        }
    );
}

#[test]
fn the_intensity_limit_is_not_reached_by_restarts_spread_over_time() {
    let t0 = Instant::now();
    let mut p = Policy::new(config(2, Duration::from_secs(10)), 1);
    let a = ChildSpec::new("a", "false");
    // Never more than two within any 10 s.
    for at in [0, 5_000, 11_000, 16_000, 22_000, 27_000, 33_000] {
        let r = p.after_exit(0, &a, Exit::Code(1), None, true, t0 + ms(at));
        assert!(matches!(r, AfterExit::Restart { .. }), "at {at} ms: {r:?}");
    }
    // A third within 10 s of the last two.
    let r = p.after_exit(0, &a, Exit::Code(1), None, true, t0 + ms(34_000));
    assert!(matches!(r, AfterExit::GiveUp { restarts: 2, .. }), "{r:?}");
}

#[test]
fn a_zero_limit_gives_up_at_the_first_restart() {
    let t0 = Instant::now();
    let mut p = Policy::new(config(0, Duration::from_secs(10)), 1);
    let a = ChildSpec::new("a", "false");
    let r = p.after_exit(0, &a, Exit::Code(1), None, true, t0);
    assert!(matches!(r, AfterExit::GiveUp { restarts: 0, .. }), "{r:?}");
    // A clean exit under on-failure is no restart, so no give-up either.
    let r = p.after_exit(0, &a, Exit::Code(0), None, true, t0);
    assert!(matches!(r, AfterExit::Down { .. }), "{r:?}");
}

#[test]
fn timeouts_and_grace_default_to_the_config() {
    let t0 = Instant::now();
    let p = Policy::new(SupervisorConfig::default(), 0);
    let mut c = ChildSpec::new("c", "true");
    assert_eq!(p.ready_timeout(&c), Duration::from_secs(30));
    assert_eq!(p.grace(&c), Duration::from_secs(5));
    c.ready_timeout = Some(ms(250));
    c.grace = Some(ms(50));
    assert_eq!(p.ready_deadline(&c, t0), t0 + ms(250));
    assert_eq!(p.grace(&c), ms(50));
}

#[test]
fn each_readiness_has_its_sign() {
    use Readiness::*;
    use Sign::*;
    for (readiness, ready_on) in [
        (Started, Spawned),
        (Notify, Notified),
        (Machines, Registered),
    ] {
        for sign in [Spawned, Notified, Registered] {
            assert_eq!(
                shows_ready(readiness, sign),
                sign == ready_on,
                "{readiness:?} shown {sign:?}"
            );
        }
    }
    let provides = ["orders".to_string(), "payments".to_string()];
    assert!(machines_registered(&provides, |_| true));
    assert!(!machines_registered(&provides, |m| m == "orders"));
}

#[test]
fn dependents_wait_for_their_dependencies_to_be_up() {
    let states = [
        ("db", ChildState::Ready),
        ("migrate", ChildState::Exited(Exit::Code(0))),
        ("cache", ChildState::Starting),
        ("broken", ChildState::Exited(Exit::Code(3))),
        ("failed", ChildState::Failed("cannot run".into())),
        ("stopped", ChildState::Stopped),
        ("flapping", ChildState::Backoff),
    ];
    let state_of = |n: &str| states.iter().find(|(m, _)| *m == n).map(|(_, s)| s);
    let after = |names: &[&str]| -> Deps {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        deps(&names, state_of)
    };
    assert_eq!(after(&[]), Deps::Ready);
    assert_eq!(after(&["db", "migrate"]), Deps::Ready);
    assert_eq!(after(&["db", "cache"]), Deps::Waiting);
    assert_eq!(after(&["flapping"]), Deps::Waiting);
    assert_eq!(
        after(&["cache", "broken"]),
        Deps::Gone("its dependency broken exited with status 3".into())
    );
    assert_eq!(
        after(&["failed"]),
        Deps::Gone("its dependency failed is down for good".into())
    );
    assert_eq!(
        after(&["stopped"]),
        Deps::Gone("its dependency stopped is down for good".into())
    );
}

#[test]
fn a_chain_starts_one_link_at_a_time() {
    // web after api after db: each is let go only once the one before is ready.
    let specs = [
        ChildSpec::new("web", "true").after("api"),
        ChildSpec::new("api", "true").after("db"),
        ChildSpec::new("db", "true"),
    ];
    let mut states = vec![ChildState::Waiting; 3];
    let startable = |states: &[ChildState]| -> Vec<&str> {
        specs
            .iter()
            .zip(states)
            .filter(|(_, s)| **s == ChildState::Waiting)
            .filter(|(spec, _)| {
                deps(&spec.after, |n| {
                    specs.iter().position(|c| c.name == n).map(|i| &states[i])
                }) == Deps::Ready
            })
            .map(|(spec, _)| spec.name.as_str())
            .collect()
    };
    assert_eq!(startable(&states), ["db"]);
    states[2] = ChildState::Starting;
    assert!(startable(&states).is_empty());
    states[2] = ChildState::Ready;
    assert_eq!(startable(&states), ["api"]);
    states[1] = ChildState::Ready;
    assert_eq!(startable(&states), ["web"]);
    assert!(!all_up(&states));
    states[0] = ChildState::Ready;
    assert!(all_up(&states));
}

#[test]
fn the_app_is_complete_when_every_child_is_down_for_good() {
    let ok = Exit::Code(0);
    assert_eq!(
        completed([("a", &ChildState::Exited(ok)), ("b", &ChildState::Ready)]),
        None
    );
    assert_eq!(
        completed([("a", &ChildState::Exited(ok)), ("b", &ChildState::Backoff)]),
        None
    );
    assert_eq!(
        completed([("a", &ChildState::Exited(ok)), ("b", &ChildState::Stopped)]),
        Some(vec![])
    );
    let failures = completed([
        ("a", &ChildState::Exited(Exit::Signal(9))),
        ("b", &ChildState::Failed("not ready within 1s".into())),
        ("c", &ChildState::Exited(ok)),
    ]);
    assert_eq!(
        failures,
        Some(vec![
            ("a".into(), "signal SIGKILL".into()),
            ("b".into(), "not ready within 1s".into())
        ])
    );
}

#[test]
fn only_children_without_a_process_are_stopped_at_once() {
    assert!(stopped_at_once(&ChildState::Waiting));
    assert!(stopped_at_once(&ChildState::Backoff));
    for s in [
        ChildState::Starting,
        ChildState::Ready,
        ChildState::Stopping,
        ChildState::Stopped,
    ] {
        assert!(!stopped_at_once(&s), "{s:?}");
    }
}

#[test]
fn sigkill_follows_after_the_grace_period() {
    let t0 = Instant::now();
    let mut s = Stop::new(StopReason::App, t0, ms(500));
    assert_eq!(s.deadline(), Some(t0 + ms(500)));
    assert!(!s.kill_due(t0));
    assert!(!s.kill_due(t0 + ms(499)));
    assert!(s.kill_due(t0 + ms(500)));
    s.killed = true;
    assert!(!s.kill_due(t0 + ms(600)));
    assert_eq!(s.deadline(), None);
}

#[test]
fn the_app_stops_in_reverse_start_order_one_at_a_time() {
    use Proc::*;
    // Started in the order 2, 0, 1 (by readiness, not by position).
    let order = [2, 0, 1];
    assert_eq!(next_stop(&order, &[Up, Up, Up]), StopStep::Stop(1));
    assert_eq!(next_stop(&order, &[Up, Stopping, Up]), StopStep::Wait);
    assert_eq!(next_stop(&order, &[Up, Down, Up]), StopStep::Stop(0));
    assert_eq!(next_stop(&order, &[Down, Down, Up]), StopStep::Stop(2));
    assert_eq!(next_stop(&order, &[Down, Down, Down]), StopStep::Done);
    // A child stopping for another reason (its ready timeout) is waited for too.
    assert_eq!(next_stop(&[0, 1], &[Stopping, Up]), StopStep::Wait);
    // Never started: nothing to stop.
    assert_eq!(next_stop(&[], &[Down, Down]), StopStep::Done);
}
