//! The exchange between a node and the supervisor that runs the processes its machines
//! invoke, on the simulated bus (`sim`, a virtual clock): a node's port asks
//! (`interstate.child.start`, `interstate.child.stop`), the supervisor's port answers each
//! child's end (`interstate.child.exit`), and the supervisor's host applies the core's rules
//! (`supervision::AskedChildren`): every start is answered once (by its child's exit, or at
//! once when the table is full), a repeated start makes no second child, a stop stops only
//! its own requester's child, an answered child's key is the next child's, and a requester
//! that leaves the bus has its children stopped. The process tests are
//! `platform/tests/supervisor_asked.rs` and `cli/tests/invoke_supervised.rs`.
//!
//! The simulated bus carries numbered messages: what each number means (start, stop or exit,
//! and its reference) is kept beside it here.

mod sim;

use std::collections::BTreeMap;

use interstate_core::supervision::{AskedChildren, Refusal};
use interstate_core::Duration;
use sim::{check, Sim, SimConfig};

const SUP: &str = "interstate.supervisor";
const SETTLE: Duration = Duration::from_millis(60_000);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Msg {
    Start(u64),
    Stop(u64),
    Exit(u64),
}

/// The bus; the meaning of each message number; the supervisor's host: its table, the
/// children it runs (key to reference) and what it did.
struct Exchange {
    s: Sim,
    sup: usize,
    meaning: BTreeMap<u64, (String, Msg)>,
    table: AskedChildren<8>,
    running: BTreeMap<u32, u64>,
    keys_made: u32,
    stopped: Vec<u64>,
    refused: Vec<u64>,
    /// The exits each node's port read, by process.
    got: BTreeMap<usize, Vec<u64>>,
}

impl Exchange {
    /// The supervisor (process 0, port `interstate.supervisor`) admitting `capacity` live
    /// children, and one process per `(machine, port)`: a parent machine and the port its
    /// node asks from.
    fn new(capacity: usize, nodes: &[(&str, &str)]) -> Exchange {
        let mut s = Sim::new(SimConfig::default());
        let sup = s.add_process(&[], &[SUP]);
        for &(machine, port) in nodes {
            s.add_process(&[machine], &[port]);
        }
        assert!(s.settle(SETTLE), "{}", s.describe());
        Exchange {
            s,
            sup,
            meaning: BTreeMap::new(),
            table: AskedChildren::with_capacity(capacity),
            running: BTreeMap::new(),
            keys_made: 0,
            stopped: Vec::new(),
            refused: Vec::new(),
            got: BTreeMap::new(),
        }
    }

    /// Process `p`'s port `from` sends `msg` to the supervisor.
    fn ask(&mut self, p: usize, from: &str, msg: Msg) {
        let n = self.s.send(p, from, SUP).expect("room");
        self.meaning.insert(n, (from.to_string(), msg));
    }

    /// The supervisor's port answers `reference` to `requester`.
    fn answer(&mut self, requester: &str, reference: u64) {
        let n = self.s.send(self.sup, SUP, requester).expect("room");
        self.meaning
            .insert(n, (SUP.to_string(), Msg::Exit(reference)));
    }

    /// The supervisor reads its port and applies each request (the parent machine of every
    /// requester `asker<k>` is `parent<k>`).
    fn serve(&mut self) {
        while let Some(n) = self.s.read_port(self.sup) {
            let (from, msg) = self.meaning[&n].clone();
            let parent = from.replace("asker", "parent");
            match msg {
                Msg::Start(r) => match self.table.admit(&from, r, &parent) {
                    Ok(()) => {
                        let key = self.table.free_key().unwrap_or_else(|| {
                            self.keys_made += 1;
                            self.keys_made - 1
                        });
                        self.table.start(key, &from, r, &parent).unwrap();
                        self.running.insert(key, r);
                    }
                    Err(Refusal::Repeated) => {}
                    Err(_) => {
                        self.refused.push(r);
                        self.answer(&from, r);
                    }
                },
                Msg::Stop(r) => {
                    if let Some(key) = self.table.stop(&from, r) {
                        self.stopped.push(r);
                        self.end(key);
                    }
                }
                Msg::Exit(_) => panic!("an exit sent to the supervisor"),
            }
        }
    }

    /// The child `key` ended: its exit is answered.
    fn end(&mut self, key: u32) {
        self.running.remove(&key);
        if let Some(a) = self.table.ended(key) {
            let (requester, reference) = (a.requester.to_string(), a.reference);
            self.answer(&requester, reference);
        }
    }

    /// The child of `reference` ends by itself.
    fn child_exits(&mut self, reference: u64) {
        let key = *self
            .running
            .iter()
            .find(|(_, &r)| r == reference)
            .expect("running")
            .0;
        self.end(key);
    }

    /// Runs the bus, the supervisor and the nodes' readers until nothing moves: the nodes'
    /// ports read every exit as it comes (see [`exits`](Self::exits)).
    fn settle(&mut self) {
        for _ in 0..10_000 {
            self.s.run_for(Duration::from_millis(1));
            self.serve();
            for p in 1..self.s.procs.len() {
                if !self.s.is_alive(p) {
                    continue;
                }
                while let Some(n) = self.s.read_port(p) {
                    match self.meaning[&n].1 {
                        Msg::Exit(r) => self.got.entry(p).or_default().push(r),
                        other => panic!("{other:?} sent to a node"),
                    }
                }
            }
            if self.s.quiescent() {
                return;
            }
        }
        panic!("the bus never settled: {}", self.s.describe());
    }

    /// The exits process `p`'s port got since the last call, by reference, in order.
    fn exits(&mut self, p: usize) -> Vec<u64> {
        self.got.remove(&p).unwrap_or_default()
    }
}

#[test]
fn every_start_is_answered_once_and_a_stop_reaches_only_its_requesters_child() {
    let mut x = Exchange::new(8, &[("parent1", "asker1"), ("parent2", "asker2")]);
    for r in [1, 2, 3, 3] {
        x.ask(1, "asker1", Msg::Start(r));
    }
    // Another node's stop naming reference 1 stops nothing of asker1's.
    x.ask(2, "asker2", Msg::Stop(1));
    x.ask(1, "asker1", Msg::Stop(2));
    x.settle();
    assert_eq!(
        x.running.len(),
        2,
        "the repeated start made no second child"
    );
    assert_eq!(x.stopped, [2]);
    assert_eq!(x.exits(1), [2]);
    x.child_exits(1);
    x.child_exits(3);
    x.settle();
    assert_eq!(x.exits(1), [1, 3]);
    assert_eq!(x.exits(2), Vec::<u64>::new());
    // A stop after the exit stops nothing and is not answered again.
    x.ask(1, "asker1", Msg::Stop(1));
    x.settle();
    assert_eq!(x.exits(1), Vec::<u64>::new());
    assert_eq!(x.table.live_count(), 0);
    check(&x.s).unwrap();
}

#[test]
fn a_full_table_answers_a_start_at_once_and_an_answered_childs_key_is_the_next_ones() {
    let mut x = Exchange::new(2, &[("parent1", "asker1")]);
    for r in [1, 2, 3] {
        x.ask(1, "asker1", Msg::Start(r));
    }
    x.settle();
    assert_eq!(x.refused, [3]);
    assert_eq!(x.exits(1), [3], "refused: answered at once");
    // Job after job: the table and the keys stay as many as the children live at once.
    for r in 4..40 {
        let oldest = *x.running.values().min().expect("two run");
        x.child_exits(oldest);
        x.ask(1, "asker1", Msg::Start(r));
        x.settle();
        assert_eq!(x.exits(1), [oldest]);
        assert_eq!(x.table.live_count(), 2);
    }
    assert_eq!(x.keys_made, 2, "keys reused");
    assert_eq!(x.refused, [3]);
    check(&x.s).unwrap();
}

#[test]
fn a_requester_that_leaves_the_bus_has_its_children_stopped() {
    let mut x = Exchange::new(8, &[("parent1", "asker1"), ("parent2", "asker2")]);
    x.ask(1, "asker1", Msg::Start(1));
    x.ask(1, "asker1", Msg::Start(2));
    x.ask(2, "asker2", Msg::Start(1));
    x.settle();
    assert_eq!(x.table.live_count(), 3);
    // The node's process dies: its port and its parent machine leave the bus.
    x.s.kill(1);
    let sup = x.sup;
    assert!(x.s.drive_until(SETTLE, &mut |s| {
        let r = &s.proc(sup).registry;
        !r.contains("asker1") && !r.contains("parent1")
    }));
    let registry = x.s.proc(sup).registry.clone();
    let orphans: Vec<u32> = x.table.orphans(|id| registry.contains(id)).collect();
    assert_eq!(orphans.len(), 2, "asker1's two children, not asker2's");
    for key in orphans {
        x.end(key);
    }
    x.settle();
    assert_eq!(x.table.live_count(), 1);
    assert_eq!(x.exits(2), Vec::<u64>::new(), "asker2's child runs on");
    check(&x.s).unwrap();
}
