//! The event loop: one turn waits for readiness or the next deadline (spinning first on
//! shared-memory links), then reads, fires timers and pumps; `flush_all` writes every link.

use std::time::Duration as StdDuration;

use interstate_core::hub::LinkId;
use interstate_core::Instant;
use mio::{Interest, Token};

use crate::error::PlatformError;
use crate::transport::ring::InputWatch;
use crate::transport::shm::WaitStrategy;

use super::child_process::CHILD_TOKEN_BASE;
use super::direct::DIRECT_TOKEN_BASE;
use super::hub_side::{OBSERVER_BATCH, OBSERVER_FLUSH_EVERY};
use super::local::Deferred;
use super::{
    LinkConnIo, Node, Side, CLIENT, FIFO_LISTENER, LINK_BASE, LISTENER, SHM_LISTENER,
    USER_TOKEN_BASE, WAKER,
};

impl Node {
    fn next_deadline(&self) -> Option<Instant> {
        let m = self
            .local
            .machines
            .iter()
            .filter(|h| !h.stopped)
            .filter_map(|h| h.machine.poll_timeout())
            .min();
        let s = match &self.side {
            Side::Hub(h) => {
                // Monitor copies held back (see OBSERVER_FLUSH_EVERY) go when their time is up.
                let held = h.links[..h.high]
                    .iter()
                    .flatten()
                    .filter(|l| !l.urgent && l.conn.pending() > 0)
                    .map(|l| l.flushed_at + OBSERVER_FLUSH_EVERY)
                    .min();
                [h.hub.poll_timeout(), h.delivery.acks.poll_timeout(), held]
                    .into_iter()
                    .flatten()
                    .min()
            }
            Side::Client(c) => c.client.poll_timeout(self.turn_now),
        };
        let requests = self.local.next_port_deadline();
        let journal = self.journal_deadline();
        // Acknowledgements wait for the journal's group: their own timer waits with them.
        let s = match journal {
            Some(j) => s.map(|s| s.max(j)),
            None => s,
        };
        [
            m,
            s,
            requests,
            self.handover_deadline(),
            journal,
            self.next_report_deadline(),
            self.child_procs
                .deadline(self.turn_now, &self.local.registry),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Like [`run_once`](Self::run_once), handing the user's own sources' events to `user`.
    pub fn run_once_with(
        &mut self,
        timeout: Option<StdDuration>,
        user: &mut dyn FnMut(&mio::event::Event),
    ) -> Result<(), PlatformError> {
        // The clock is read once at the start of a turn and once more only if the turn
        // waited: everything in the turn runs at `turn_now` (a read costs about 25 ns, and a
        // turn used to make ten).
        let started = std::time::Instant::now();
        let now = Instant::from_millis(started.duration_since(self.origin).as_millis() as u64);
        self.turn_now = now;
        if let Side::Client(_) = self.side {
            self.cpu_share.turn(started);
        }
        let mut wait = timeout;
        let due = self.next_deadline();
        if let Some(d) = due {
            let until = StdDuration::from_millis((d - now).as_millis());
            wait = Some(wait.map_or(until, |w| w.min(until)));
        }
        if self.has_buffered_input() {
            wait = Some(StdDuration::ZERO);
        }
        // A port was read while a machine's message waited for room in it: the message goes
        // in this turn (the pump at its end), not after a wait for some other event.
        if std::mem::take(&mut self.local.port_room) {
            self.local.port_blocked = false;
            wait = Some(StdDuration::ZERO);
        }
        let mut spun_ready = false;
        if wait != Some(StdDuration::ZERO) && self.wait_on_shared_memory(wait, started) {
            wait = Some(StdDuration::ZERO);
            spun_ready = true;
        }
        // Shared memory had work while spinning: the fast path, unless the last
        // epoll_wait(0) is more than 50 us old (then sockets, pipes and control sockets get
        // their turn).
        if spun_ready
            && started.saturating_duration_since(self.last_poll) < StdDuration::from_micros(50)
        {
            return self.shared_memory_turn(due);
        } else {
            self.last_poll = started;
            match self.poll.poll(&mut self.events, wait) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(PlatformError::io("waiting for events", None, e)),
            }
        }
        if self.spinning.parked() {
            // How long the park lasted tells whether spinning longer would have paid.
            if let WaitStrategy::SpinThenPark(max) = self.config.transport.wait() {
                self.spinning.woke(std::time::Instant::now(), max);
            }
        }
        if wait != Some(StdDuration::ZERO) || spun_ready {
            // The turn may have waited (in the kernel or spinning): what it reads now happens
            // now, not when it began waiting.
            self.turn_now = self.now();
        }
        let mut accept = false;
        let mut accept_shm = false;
        let mut accept_fifo = false;
        let mut woken = false;
        for ev in self.events.iter() {
            match (ev.token(), &mut self.side) {
                (LISTENER, _) => accept = true,
                (WAKER, _) => woken = true,
                (SHM_LISTENER, _) => accept_shm = true,
                (FIFO_LISTENER, _) => accept_fifo = true,
                (CLIENT, Side::Client(c)) => {
                    if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                        c.readable = true;
                    }
                    // The peer hung up: read until end-of-file even after a short read (the
                    // data and the hang-up can come in one edge).
                    if ev.is_read_closed() || ev.is_error() {
                        if let Some(conn) = c.conn.as_mut() {
                            conn.more = true;
                        }
                    }
                }
                (Token(t), Side::Client(c)) if (DIRECT_TOKEN_BASE..LINK_BASE).contains(&t) => {
                    if let Some(Some(r)) = c.direct.get_mut(t - DIRECT_TOKEN_BASE) {
                        r.readable = true;
                    }
                }
                (Token(t), _) if t >= USER_TOKEN_BASE => user(ev),
                (Token(t), _) if t >= CHILD_TOKEN_BASE => self.child_procs.note_exit(Token(t)),
                (Token(t), Side::Hub(h)) if t >= LINK_BASE => {
                    if let Some(Some(link)) = h.links.get_mut(t - LINK_BASE) {
                        link.readable = true;
                        if ev.is_read_closed() || ev.is_error() {
                            link.conn.more = true;
                            link.hung_up = true;
                        }
                    }
                }
                _ => {}
            }
        }
        // A ring may hold input that arrived while this loop was awake (no signal was sent
        // then): looking costs one atomic load per shared-memory link.
        each_shm_link(&mut self.side, &mut |conn, readable| {
            if conn.stream.ready_now() {
                *readable = true;
            }
        });
        if accept {
            self.accept(false)?;
        }
        if accept_shm {
            self.accept(true)?;
        }
        if accept_fifo {
            self.accept_fifo();
        }
        self.read_inputs()?;
        if woken {
            self.poll_services();
        }
        self.fire_timers()?;
        self.pump()?;
        self.child_processes_turn()
    }

    /// The fast path of a turn whose spin found input in shared memory (and whose last look
    /// at the other sources is recent): the rings that have input were marked readable by
    /// the spin, so there is no readiness to scan and nothing to accept; timers are looked
    /// at only if the earliest deadline, `due` (taken before the wait), has come; the pump
    /// writes only the links it queued to, and stops after a round that leaves nothing to
    /// move.
    fn shared_memory_turn(&mut self, due: Option<Instant>) -> Result<(), PlatformError> {
        self.events.clear();
        if self.spinning.parked() {
            // (A spin that found nothing, then input before the park: it counts as found.)
            if let WaitStrategy::SpinThenPark(max) = self.config.transport.wait() {
                self.spinning.woke(std::time::Instant::now(), max);
            }
        }
        // What it reads happens now, not when the turn began waiting.
        self.turn_now = self.now();
        self.read_inputs()?;
        // A deadline that a step just made earlier is caught by the next turn, which
        // computes `due` again before it waits (and does not wait when it has come).
        if due.is_some_and(|d| d <= self.turn_now) || self.sweep_due() {
            self.fire_timers()?;
        }
        self.pump()?;
        self.child_processes_turn()
    }

    /// Whether the hub's own duplicate filter is due for its sweep (done by `fire_timers`;
    /// not a deadline of its own, so that an idle hub does not wake for it).
    fn sweep_due(&self) -> bool {
        match &self.side {
            Side::Hub(h) => h.delivery.sweep_due(self.turn_now),
            Side::Client(_) => false,
        }
    }

    /// About to block for up to `wait`: links in shared memory first spin (per the wait
    /// strategy, the adaptive budget and where the peers run: see [`super::spin`]) looking
    /// for input without system calls, then ask to be signalled. Returns true when input is
    /// waiting (do not block); such links are marked readable.
    // Kept out of line: profiles then show the spinning apart from the work.
    #[inline(never)]
    fn wait_on_shared_memory(
        &mut self,
        wait: Option<StdDuration>,
        started: std::time::Instant,
    ) -> bool {
        let strategy = self.config.transport.wait();
        let busy = strategy == WaitStrategy::BusySpin;
        // Say where this side waits, and see whether a peer waits on the same CPU: spinning
        // there would only hold off the data it waits for.
        let cpu = match strategy {
            WaitStrategy::Park => None,
            _ => self.spinning.cpu(started),
        };
        let mut any = false;
        let mut shares_cpu = false;
        each_shm_link(&mut self.side, &mut |conn, _| {
            any = true;
            conn.stream.publish_cpu(cpu);
            shares_cpu |= cpu.is_some() && conn.stream.peer_cpu() == cpu;
        });
        if !any {
            return false;
        }
        if let Side::Client(c) = &self.side {
            // A client holding direct rings waits for its messages on them; its link to the
            // hub then carries little, so where the hub runs does not decide.
            if c.direct.iter().any(Option::is_some) {
                shares_cpu = c
                    .direct
                    .iter()
                    .flatten()
                    .any(|r| cpu.is_some() && r.conn.stream.peer_cpu() == cpu);
            }
        }
        // (budget, how long this spin may last, whether it is the whole budget).
        let (max, spin) = match strategy {
            WaitStrategy::Park => (StdDuration::ZERO, StdDuration::ZERO),
            WaitStrategy::SpinThenPark(_) if shares_cpu => (StdDuration::ZERO, StdDuration::ZERO),
            WaitStrategy::SpinThenPark(d) => {
                let b = self.spinning.budget(d);
                (d, wait.map_or(b, |w| w.min(b)))
            }
            // Spin for at most a millisecond per loop turn, so sockets and timers still get
            // their turn; the caller's loop keeps coming back.
            WaitStrategy::BusySpin => {
                let ms = StdDuration::from_millis(1);
                (ms, wait.map_or(ms, |w| w.min(ms)))
            }
        };
        if !spin.is_zero() {
            // A look is a load of each ring's producer position when every link can be
            // watched so (no output queued, few links); else each link is asked through its
            // trait object, three indirect calls a link (about 90 instructions a look
            // against 6, counted: docs/performance.md).
            let watched = {
                // Filled in place: returned by value, the 16 watches' room was copied at
                // every turn (about 50 instructions, counted).
                let mut watches = heapless::Vec::new();
                input_watches(&self.side, &mut watches)
                    .then(|| spin_until(|| watches.iter().any(InputWatch::ready), spin, shares_cpu))
            };
            let found = match watched {
                Some(found) => found,
                None => spin_until(
                    || {
                        let mut found = false;
                        // Input, or room for queued output (a busy-spinning writer is not
                        // signalled).
                        each_shm_link(&mut self.side, &mut |conn, _| {
                            found |= conn.stream.ready_now()
                                || conn.pending() > 0 && conn.stream.writable_now()
                        });
                        found
                    },
                    spin,
                    shares_cpu,
                ),
            };
            if !busy && spin == self.spinning.budget(max) {
                self.spinning.spun(max, found);
                if !found {
                    self.spinning.parking(std::time::Instant::now());
                }
            }
        }
        let mut ready = false;
        each_shm_link(&mut self.side, &mut |conn, readable| {
            // Busy-spinning never sleeps: nobody needs to signal it.
            let has_input = if busy {
                conn.stream.ready_now()
            } else {
                conn.stream.prepare_wait()
            };
            if has_input {
                *readable = true;
                ready = true;
            }
        });
        ready || busy
    }

    fn has_buffered_input(&self) -> bool {
        match &self.side {
            Side::Hub(h) => h.links[..h.high].iter().flatten().any(|l| {
                l.waiting_on.is_none() && (l.readable || matches!(l.conn.peek_frame(), Ok(Some(_))))
            }),
            Side::Client(c) => {
                c.readable
                    || c.conn
                        .as_ref()
                        .is_some_and(|cn| matches!(cn.peek_frame(), Ok(Some(_))))
                    || c.direct.iter().enumerate().any(|(k, r)| {
                        r.as_ref().is_some_and(|r| {
                            c.client.direct().readable(k)
                                && (r.readable || matches!(r.conn.peek_frame(), Ok(Some(_))))
                        })
                    })
            }
        }
    }

    fn read_inputs(&mut self) -> Result<(), PlatformError> {
        match &mut self.side {
            Side::Hub(_) => self.read_links(),
            Side::Client(_) => {
                self.read_client()?;
                self.read_direct();
                Ok(())
            }
        }
    }

    pub(super) fn flush_all(&mut self) {
        let mut lost = None;
        match &mut self.side {
            Side::Hub(h) => {
                let mut dead = Vec::new();
                let mut logs = Vec::new();
                let now = self.turn_now;
                let idle = self.config.idle_timeout;
                for (i, l) in h.links[..h.high].iter_mut().enumerate() {
                    if let Some(l) = l {
                        let before = l.conn.pending();
                        // Only monitor copies, a few, written less than a batch time ago:
                        // they wait for more (see OBSERVER_FLUSH_EVERY).
                        let hold = before > 0
                            && !l.urgent
                            && before < OBSERVER_BATCH
                            && now < l.flushed_at + OBSERVER_FLUSH_EVERY;
                        if before > 0 && !hold {
                            l.conn.flush();
                            l.flushed_at = now;
                            if l.conn.pending() == 0 {
                                l.urgent = false;
                            }
                            want_writable(self.poll.registry(), &mut l.conn, Token(LINK_BASE + i));
                        }
                        let after = l.conn.pending();
                        if hold {
                            // Not written yet by choice: says nothing about the reader.
                        } else if after == 0 || after < before {
                            l.unread_since = None;
                        } else if now >= *l.unread_since.get_or_insert(now) + idle {
                            logs.push(format!(
                                "hub: link {i}: read nothing it was sent for longer than the \
                                 idle timeout; closing it"
                            ));
                            dead.push((i as LinkId, "reads nothing".to_string()));
                            continue;
                        }
                        if l.conn.dead && !matches!(l.conn.peek_frame(), Ok(Some(_))) {
                            dead.push((i as LinkId, "connection lost".to_string()));
                        } else if l.conn.write_failed {
                            // The peer may have gone with frames still unread in the socket
                            // (the acknowledgements it owed, its goodbye): the link is read
                            // to its end, and closed there, not now.
                            l.readable = true;
                            l.conn.more = true;
                        }
                    }
                }
                if !dead.is_empty() {
                    self.settle(Deferred {
                        close: dead,
                        logs,
                        ..Default::default()
                    });
                }
            }
            Side::Client(c) => {
                // A ring's writes cannot block for long: its reader is a live process (or the
                // hub closes the pair when it is not).
                for (k, r) in c.direct.iter_mut().enumerate() {
                    if let Some(r) = r.as_mut().filter(|r| r.conn.pending() > 0) {
                        r.conn.flush();
                        want_writable(
                            self.poll.registry(),
                            &mut r.conn,
                            Token(DIRECT_TOKEN_BASE + k),
                        );
                    }
                }
                if let Some(conn) = c.conn.as_mut() {
                    let before = conn.pending();
                    if before > 0 {
                        conn.flush();
                        want_writable(self.poll.registry(), conn, CLIENT);
                    }
                    let after = conn.pending();
                    if after == 0 || after < before {
                        c.blocked_since = None;
                    } else {
                        let now = self.turn_now;
                        c.blocked_since.get_or_insert(now);
                    }
                    if conn.dead || conn.write_failed {
                        lost = Some("connection lost");
                    }
                }
            }
        }
        if let Some(why) = lost {
            self.client_lost(why);
        }
    }
}

/// Write readiness is watched only while a flush is blocked, so that finished writes do not
/// wake the loop for nothing.
fn want_writable(registry: &mio::Registry, conn: &mut LinkConnIo, token: Token) {
    let want = conn.pending() > 0 && !conn.dead && !conn.write_failed;
    if want != conn.want_write {
        let interest = if want {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        if conn.stream.reregister(registry, token, interest).is_ok() {
            conn.want_write = want;
        }
    }
}

/// Looks (`look`) until it finds something, or `spin` has passed: true when it found.
/// The clock is read only every 32nd look (about a tenth of a microsecond apart), or at
/// every look while yielding the CPU to a peer (`shares_cpu`).
#[inline(always)]
fn spin_until(mut look: impl FnMut() -> bool, spin: StdDuration, shares_cpu: bool) -> bool {
    let start = std::time::Instant::now();
    let mut looks = 0u32;
    loop {
        if look() {
            return true;
        }
        looks = looks.wrapping_add(1);
        if (shares_cpu || looks % 32 == 0) && start.elapsed() >= spin {
            return false;
        }
        if shares_cpu {
            // Busy-spinning never parks: it gives the CPU to the peer instead.
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
}

/// Links a spin can watch with one load each (see [`InputWatch`]): at most this many.
const WATCHED_LINKS: usize = 16;

/// A watch on every shared-memory link's input, put in `watches`: true, or false when a
/// spin must ask the links themselves: one has output queued (the spin then also looks for
/// room to write it), one gives no watch, or there are more than [`WATCHED_LINKS`].
fn input_watches<'a>(
    side: &'a Side,
    watches: &mut heapless::Vec<InputWatch<'a>, WATCHED_LINKS>,
) -> bool {
    fn add<'a>(
        watches: &mut heapless::Vec<InputWatch<'a>, WATCHED_LINKS>,
        conn: &'a LinkConnIo,
    ) -> Option<()> {
        if conn.pending() > 0 {
            return None;
        }
        watches.push(conn.stream.input_watch()?).ok()
    }
    let shm = |c: &LinkConnIo| c.stream.kind() == interstate_core::TransportKind::SharedMemory;
    let mut all = || -> Option<()> {
        match side {
            Side::Hub(h) => {
                for l in h.links[..h.high].iter().flatten().filter(|l| shm(&l.conn)) {
                    add(watches, &l.conn)?;
                }
            }
            Side::Client(c) => {
                if let Some(conn) = c.conn.as_ref().filter(|c| shm(c)) {
                    add(watches, conn)?;
                }
                for r in c.direct.iter().flatten() {
                    add(watches, &r.conn)?;
                }
            }
        }
        Some(())
    };
    all().is_some()
}

/// Calls `f` with each link in shared memory and its readable flag.
fn each_shm_link(side: &mut Side, f: &mut dyn FnMut(&mut LinkConnIo, &mut bool)) {
    let shm = |c: &LinkConnIo| c.stream.kind() == interstate_core::TransportKind::SharedMemory;
    match side {
        Side::Hub(h) => {
            for l in h.links[..h.high]
                .iter_mut()
                .flatten()
                .filter(|l| shm(&l.conn))
            {
                f(&mut l.conn, &mut l.readable);
            }
        }
        Side::Client(c) => {
            if let Some(conn) = c.conn.as_mut().filter(|c| shm(c)) {
                f(conn, &mut c.readable);
            }
            for r in c.direct.iter_mut().flatten() {
                f(&mut r.conn, &mut r.readable);
            }
        }
    }
}
