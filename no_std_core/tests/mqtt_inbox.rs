//! Several records in one inbox publish (`interstate_core::mqtt::inbox`), on a simulated
//! broker and a virtual clock: two bridges, A with a machine that sends requests and B with
//! an echo that answers each in the loop turn it got it, their records gathered per
//! destination node by the `Outgoing` rule and carried by a broker that counts publishes.
//!
//! Checked: a reply carries the acknowledgement of its request (one publish per message
//! each way on a request/response exchange); an acknowledgement with nothing to ride on
//! leaves no later than its delay, or at once past the batch bound; a reply never overtakes
//! the acknowledgement of what it answers; a failure is never covered by a later
//! acknowledgement of its pair; every message ends acknowledged or reported failed, once.

use std::collections::VecDeque;

use interstate_core::mqtt::bridge::Envelope;
use interstate_core::mqtt::delivery::{Awaiting, InboxMessage};
use interstate_core::mqtt::inbox::{
    record_bound, records, write_record, Outgoing, ANSWER_BATCH, ANSWER_DELAY, PUBLISH_BYTES,
    RECORDS_TAG,
};
use interstate_core::wire::FailReason;
use interstate_core::{Duration, Instant};
use proptest::prelude::*;

#[test]
fn a_payload_of_records_reads_back_in_order_and_a_single_record_reads_as_before() {
    let recs = [
        InboxMessage::Ack {
            from: "s",
            to: "w",
            seq: 7,
        },
        InboxMessage::Message {
            origin: "host-a",
            incarnation: 42,
            envelope: Envelope {
                from: "w",
                to: "s",
                event: "PONG",
                payload: b"{}",
                seq: 9,
            },
        },
        InboxMessage::Failed {
            from: "s",
            to: "w",
            seq: 8,
            reason: FailReason::TargetStopped,
            detail: "boom",
        },
    ];
    let mut buf = vec![RECORDS_TAG];
    for r in &recs {
        let at = buf.len();
        buf.resize(at + record_bound(r), 0);
        let n = write_record(r, &mut buf[at..]).expect("the bound holds it");
        buf.truncate(at + n);
    }
    let back: Vec<_> = records(&buf).map(Result::unwrap).collect();
    assert_eq!(back, recs);

    // An earlier bridge's payload: one record, no tag.
    let mut one = [0u8; 64];
    let one = postcard::to_slice(&recs[0], &mut one).unwrap();
    assert_eq!(records(one).collect::<Vec<_>>(), [Ok(recs[0])]);

    // A broken tail: what came before it is read, then one error, then nothing.
    let mut broken = buf.clone();
    broken.extend_from_slice(&[9, 9, 9]);
    let got: Vec<_> = records(&broken).collect();
    assert_eq!(got.len(), 4);
    assert_eq!(got[3], Err(()));
    assert!(records(&[]).next().is_none());
}

#[test]
fn the_bound_of_a_record_holds_it_for_long_fields_and_large_numbers() {
    let long = "x".repeat(300);
    let payload = vec![7u8; 70_000];
    let recs = [
        InboxMessage::Message {
            origin: &long,
            incarnation: u64::MAX,
            envelope: Envelope {
                from: &long,
                to: &long,
                event: &long,
                payload: &payload,
                seq: u64::MAX,
            },
        },
        InboxMessage::Ack {
            from: &long,
            to: "",
            seq: u64::MAX,
        },
        InboxMessage::Failed {
            from: "",
            to: &long,
            seq: u64::MAX,
            reason: FailReason::NodeUnreachable,
            detail: &long,
        },
    ];
    for r in &recs {
        let mut buf = vec![0u8; record_bound(r)];
        assert!(write_record(r, &mut buf).is_some(), "{r:?}");
    }
}

#[test]
fn owed_acknowledgements_merge_per_pair_and_leave_by_their_delay() {
    let t0 = Instant::from_millis(100);
    let mut o: Outgoing<u8, 2> = Outgoing::new();
    assert!(o.is_empty() && !o.due(t0) && o.deadline().is_none());
    o.owe_ack(t0, 1, 5).unwrap();
    o.owe_ack(t0 + Duration::from_millis(1), 1, 6).unwrap();
    o.owe_ack(t0, 1, 4).unwrap();
    o.owe_ack(t0, 2, 9).unwrap();
    assert!(o.owe_ack(t0, 3, 1).is_err(), "two pairs at most");
    assert_eq!(o.deadline(), Some(t0 + ANSWER_DELAY), "from the first owed");
    assert!(!o.due(t0 + Duration::from_millis(1)));
    assert!(o.due(t0 + ANSWER_DELAY));
    assert_eq!(
        o.take_owed(),
        Some((1, 6)),
        "cumulative: the highest, in order"
    );
    o.wrote_answer(t0, 10);
    assert_eq!(o.take_owed(), Some((2, 9)));
    o.wrote_answer(t0, 10);
    assert_eq!(o.take_owed(), None);
    o.published();
    assert!(o.is_empty() && o.deadline().is_none());

    // A message makes the publish leave now, with what was owed.
    o.owe_ack(t0, 1, 7).unwrap();
    o.wrote_message(50);
    assert!(o.due(t0), "a message leaves in its loop turn");
    // The batch bound: enough answers leave at once.
    let mut o: Outgoing<u8, 2> = Outgoing::new();
    for _ in 0..ANSWER_BATCH - 1 {
        o.wrote_answer(t0, 8);
    }
    assert!(!o.due(t0));
    o.wrote_answer(t0, 8);
    assert!(o.due(t0));
    // The size bound: the first record always goes, the next only within the bound.
    let o: Outgoing<u8, 2> = Outgoing::new();
    assert!(o.fits(PUBLISH_BYTES * 4, PUBLISH_BYTES));
    let mut o: Outgoing<u8, 2> = Outgoing::new();
    o.wrote_message(PUBLISH_BYTES - 10);
    assert!(o.fits(10, PUBLISH_BYTES) && !o.fits(11, PUBLISH_BYTES));
    assert!(!o.fits(10, 100), "a smaller bound for a small store");
}

// ---------------------------------------------------------------------------------------
// The simulated pair of bridges.

/// The pair handle: 0 is A's `ma` to B's `mb` (requests), 1 is `mb` to `ma` (replies).
type Pair = u8;
const REQ: Pair = 0;
const REPLY: Pair = 1;

fn names(p: Pair) -> (&'static str, &'static str) {
    if p == REQ {
        ("ma", "mb")
    } else {
        ("mb", "ma")
    }
}

fn pair_of(from: &str) -> Pair {
    if from == "ma" {
        REQ
    } else {
        REPLY
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Open,
    Acked,
    Failed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    Taken,
    Refused,
}

/// One bridge with one machine.
struct Bridge {
    node: &'static str,
    /// The sending side's table: messages of this machine awaiting the other node's answer.
    awaiting: Awaiting<Pair, u8, 1024>,
    /// The publish being gathered for the other node (the only one).
    out: Outgoing<Pair, 4>,
    buf: Vec<u8>,
    /// This machine's next sequence number.
    next: u64,
    /// The outcome of each message this machine sent, by sequence number - 1.
    outcome: Vec<Outcome>,
    /// What became of each message received from the other node (by its seq - 1).
    fate: Vec<Fate>,
    /// Whether the machine takes no more messages (answered Failed).
    stopped: bool,
    /// The echo (B) answers every message with one of its own in the same turn.
    echo: bool,
    /// The sequence numbers of the requests this machine's replies answer.
    answers: Vec<u64>,
}

struct Sim {
    now: Instant,
    a: Bridge,
    b: Bridge,
    /// The broker: publishes queued for A's inbox and B's, in order.
    to_a: VecDeque<Vec<u8>>,
    to_b: VecDeque<Vec<u8>>,
    publishes: usize,
    /// Publishes that carried only answers.
    answer_only: usize,
}

impl Bridge {
    fn new(node: &'static str, echo: bool) -> Self {
        Bridge {
            node,
            awaiting: Awaiting::new(),
            out: Outgoing::new(),
            buf: Vec::new(),
            next: 1,
            outcome: Vec::new(),
            fate: Vec::new(),
            stopped: false,
            echo,
            answers: Vec::new(),
        }
    }

    fn write(&mut self, rec: &InboxMessage<'_>, now: Instant, message: bool) -> bool {
        let tag = usize::from(self.buf.is_empty());
        let bound = record_bound(rec) + tag;
        if !self.out.fits(bound, PUBLISH_BYTES) {
            return false;
        }
        if tag == 1 {
            self.buf.push(RECORDS_TAG);
        }
        let at = self.buf.len();
        self.buf.resize(at + bound, 0);
        let n = write_record(rec, &mut self.buf[at..]).unwrap();
        self.buf.truncate(at + n);
        if message {
            self.out.wrote_message(n + tag);
        } else {
            self.out.wrote_answer(now, n + tag);
        }
        true
    }

    /// Writes a record, publishing first when it does not fit (the platform's way).
    fn put(&mut self, rec: &InboxMessage<'_>, now: Instant, message: bool, broker: &mut Wire) {
        if !self.write(rec, now, message) {
            self.publish(broker);
            assert!(self.write(rec, now, message));
        }
    }

    fn write_owed(&mut self, now: Instant, broker: &mut Wire) {
        while let Some((p, seq)) = self.out.take_owed() {
            let (from, to) = names(p);
            self.put(&InboxMessage::Ack { from, to, seq }, now, false, broker);
        }
    }

    fn publish(&mut self, broker: &mut Wire) {
        if !self.buf.is_empty() {
            let only_answers =
                records(&self.buf).all(|r| !matches!(r, Ok(InboxMessage::Message { .. })));
            broker.queue.push_back(std::mem::take(&mut self.buf));
            *broker.publishes += 1;
            if only_answers {
                *broker.answer_only += 1;
            }
        }
        self.out.published();
    }

    /// This machine sends a message (request, or reply answering `answers`).
    fn send(&mut self, now: Instant, broker: &mut Wire, answers: Option<u64>) {
        if !self.awaiting.has_room() {
            return; // backpressure: it stays with its sender
        }
        let seq = self.next;
        self.next += 1;
        let pair = if self.node == "A" { REQ } else { REPLY };
        let (from, to) = names(pair);
        self.write_owed(now, broker);
        let event = if answers.is_some() { "PONG" } else { "PING" };
        let payload = answers.unwrap_or(0).to_le_bytes();
        let rec = InboxMessage::Message {
            origin: self.node,
            incarnation: 0,
            envelope: Envelope {
                from,
                to,
                event,
                payload: &payload,
                seq,
            },
        };
        self.put(&rec, now, true, broker);
        self.awaiting.push(pair, 0, seq, now).unwrap();
        self.outcome.push(Outcome::Open);
    }
}

/// The broker side a bridge publishes to.
struct Wire<'a> {
    queue: &'a mut VecDeque<Vec<u8>>,
    publishes: &'a mut usize,
    answer_only: &'a mut usize,
}

impl Sim {
    fn new() -> Self {
        Sim {
            now: Instant::ZERO,
            a: Bridge::new("A", false),
            b: Bridge::new("B", true),
            to_a: VecDeque::new(),
            to_b: VecDeque::new(),
            publishes: 0,
            answer_only: 0,
        }
    }

    /// A's machine sends a request (written in A's current turn).
    fn request(&mut self) {
        let mut w = Wire {
            queue: &mut self.to_b,
            publishes: &mut self.publishes,
            answer_only: &mut self.answer_only,
        };
        self.a.send(self.now, &mut w, None);
    }

    /// One loop turn of bridge A (`b == false`) or B: everything its inbox holds, then
    /// the publish if due.
    fn turn(&mut self, at_b: bool) {
        let now = self.now;
        let (me, inbox, out_q) = if at_b {
            (&mut self.b, &mut self.to_b, &mut self.to_a)
        } else {
            (&mut self.a, &mut self.to_a, &mut self.to_b)
        };
        let mut w = Wire {
            queue: out_q,
            publishes: &mut self.publishes,
            answer_only: &mut self.answer_only,
        };
        while let Some(payload) = inbox.pop_front() {
            for rec in records(&payload) {
                match rec.expect("well formed") {
                    InboxMessage::Message { envelope, .. } => {
                        let pair = pair_of(envelope.from);
                        let seq = envelope.seq;
                        assert_eq!(seq as usize, me.fate.len() + 1, "in order, once");
                        if envelope.event == "PONG" {
                            // A reply never overtakes the acknowledgement of its request.
                            let answered = u64::from_le_bytes(envelope.payload.try_into().unwrap());
                            assert_eq!(
                                me.outcome[answered as usize - 1],
                                Outcome::Acked,
                                "the reply to {answered} came before its acknowledgement"
                            );
                        }
                        if me.stopped {
                            me.fate.push(Fate::Refused);
                            me.write_owed(now, &mut w);
                            let (from, to) = names(pair);
                            let rec = InboxMessage::Failed {
                                from,
                                to,
                                seq,
                                reason: FailReason::TargetStopped,
                                detail: "stopped",
                            };
                            me.put(&rec, now, false, &mut w);
                        } else {
                            me.fate.push(Fate::Taken);
                            if me.out.owe_ack(now, pair, seq).is_err() {
                                me.write_owed(now, &mut w);
                                me.out.owe_ack(now, pair, seq).unwrap();
                            }
                            if me.echo {
                                me.answers.push(seq);
                            }
                        }
                    }
                    InboxMessage::Ack { from, seq, .. } => {
                        let pair = pair_of(from);
                        let mut released = None;
                        me.awaiting.acked(pair, seq, &mut |_, s| released = Some(s));
                        if let Some(upto) = released {
                            for o in me.outcome.iter_mut().take(upto as usize) {
                                if *o == Outcome::Open {
                                    *o = Outcome::Acked;
                                }
                            }
                        }
                    }
                    InboxMessage::Failed { from, seq, .. } => {
                        let pair = pair_of(from);
                        let reported = me.awaiting.failed(pair, seq, &mut |_, _| {});
                        assert!(
                            reported,
                            "the failure of {seq} was covered by an acknowledgement before it"
                        );
                        let o = &mut me.outcome[seq as usize - 1];
                        assert_eq!(*o, Outcome::Open, "{seq} settled twice");
                        *o = Outcome::Failed;
                    }
                }
            }
        }
        // The echo answers in the same turn (its replies read from the ports after).
        for answered in std::mem::take(&mut me.answers) {
            me.send(now, &mut w, Some(answered));
        }
        if me.out.due(now) {
            me.write_owed(now, &mut w);
            me.publish(&mut w);
        }
    }

    fn tick(&mut self, ms: u64) {
        self.now = self.now + Duration::from_millis(ms);
    }

    /// Runs both bridges until nothing is in flight or owed.
    fn settle(&mut self) {
        for _ in 0..100 {
            self.turn(true);
            self.turn(false);
            self.tick(1);
        }
    }

    fn check_settled(&self) {
        for (who, side, other) in [("A", &self.a, &self.b), ("B", &self.b, &self.a)] {
            assert_eq!(side.awaiting.pending(), 0, "{who} still waits for answers");
            assert!(side.out.is_empty(), "{who} still owes answers");
            for (i, o) in side.outcome.iter().enumerate() {
                let fate = other.fate[i];
                let want = if fate == Fate::Taken {
                    Outcome::Acked
                } else {
                    Outcome::Failed
                };
                assert_eq!(*o, want, "{who}'s message {} ({fate:?})", i + 1);
            }
        }
    }
}

#[test]
fn a_reply_carries_the_acknowledgement_of_its_request_one_publish_per_message() {
    let mut sim = Sim::new();
    for _ in 0..100 {
        // A sends in its turn; B answers in its next; A takes the reply in its next, and
        // the next request (within the delay) carries the acknowledgement of the reply.
        sim.request();
        sim.turn(false);
        sim.turn(true);
        sim.turn(false);
    }
    assert_eq!(sim.publishes, 200, "one publish per message, each way");
    assert_eq!(sim.answer_only, 0, "no acknowledgement went alone");
    // The last reply's acknowledgement has nothing to ride on: it leaves at its delay, not
    // before.
    sim.tick(1);
    sim.turn(false);
    assert_eq!(sim.publishes, 200);
    sim.tick(1);
    sim.turn(false);
    assert_eq!(sim.publishes, 201);
    assert_eq!(sim.answer_only, 1);
    sim.turn(true);
    sim.check_settled();
}

#[test]
fn one_way_acknowledgements_leave_by_their_delay_or_in_batches() {
    let mut sim = Sim::new();
    sim.b.echo = false;
    // 1,000 requests in one turn: published in publishes of at most PUBLISH_BYTES.
    for _ in 0..1000 {
        sim.request();
    }
    sim.turn(false);
    let requests = sim.publishes;
    assert!((2..20).contains(&requests), "{requests} publishes");
    // B takes them all in one turn: its acknowledgements (one pair, cumulative) are owed,
    // not published yet.
    sim.turn(true);
    assert_eq!(sim.publishes, requests);
    assert_eq!(sim.b.out.deadline(), Some(sim.now + ANSWER_DELAY));
    sim.tick(2);
    sim.turn(true);
    assert_eq!(sim.publishes, requests + 1, "one publish acknowledges all");
    sim.turn(false);
    assert_eq!(sim.a.awaiting.pending(), 0);
    sim.check_settled();
}

#[derive(Clone, Debug)]
enum Step {
    Request,
    TurnA,
    TurnB,
    Tick(u64),
    /// B's echo stops (answers Failed) or starts again.
    ToggleB,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => Just(Step::Request),
        4 => Just(Step::TurnA),
        4 => Just(Step::TurnB),
        2 => (0u64..4).prop_map(Step::Tick),
        1 => Just(Step::ToggleB),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Whatever the interleaving of requests, loop turns, time and refusals: every message
    /// ends acknowledged (it was taken) or reported failed (it was refused), once; replies
    /// never overtake acknowledgements; failures are never covered by a later
    /// acknowledgement (checked as each record arrives); and nothing stays owed past its
    /// delay once both bridges keep turning.
    #[test]
    fn every_message_ends_once_and_records_keep_their_order(
        steps in proptest::collection::vec(step(), 1..300)
    ) {
        let mut sim = Sim::new();
        for s in &steps {
            match s {
                Step::Request => sim.request(),
                Step::TurnA => sim.turn(false),
                Step::TurnB => sim.turn(true),
                Step::Tick(ms) => sim.tick(*ms),
                Step::ToggleB => sim.b.stopped = !sim.b.stopped,
            }
        }
        sim.b.stopped = false;
        // Nothing gathered outlives its deadline by more than a turn.
        for side in [&sim.a, &sim.b] {
            if let Some(d) = side.out.deadline() {
                prop_assert!(d <= sim.now + ANSWER_DELAY);
            }
        }
        sim.settle();
        sim.check_settled();
    }
}

proptest! {
    /// A payload from the broker is outside input: any bytes read as records and a final
    /// error, without panicking, each record taking at least one byte.
    #[test]
    fn arbitrary_payloads_read_without_panicking(
        bytes in proptest::collection::vec(any::<u8>(), 0..512)
    ) {
        let mut n = 0;
        let mut errors = 0;
        for r in records(&bytes) {
            n += 1;
            if r.is_err() {
                errors += 1;
            }
        }
        prop_assert!(n <= bytes.len() + 1);
        prop_assert!(errors <= 1);
    }
}
