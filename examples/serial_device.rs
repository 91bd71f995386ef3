//! A device on a serial line, simulated: the `lamp` chart (compiled into Rust statics by
//! `interstate compile --rust`) runs in a `Machine` and talks to the bus through the core's
//! `DeviceLink`, over stdin and stdout as its UART. Everything between the bytes and the
//! machine is `interstate-core` alone, as on a microcontroller; only the byte I/O, the clock
//! and the log lines are `std`.
//!
//! A second machine, `sensor` (`examples/charts/sensor.json`, compiled the same way into
//! `examples/charts/sensor_chart.rs`), answers requests from the bus: its `READ` sends
//! `READING` back to `{"sender": true}` with the request's data. The device hands each
//! delivered event its sender and its correlation, and puts each outgoing message's
//! correlation on the line ([`DeviceLink::send_correlated`]), so that the reply reaches the
//! requester as the answer to its request. `HOLD` takes the sensor to `busy`, where it never
//! answers: a request the device has taken when it dies. `ASK` makes the sensor itself ask
//! the Linux machine `echo` (a `request` with a 10 s timeout); its reply `PONG` (or the
//! request's `xstate.error.request`) is passed on to `echo` as `ANSWERED` (or
//! `UNANSWERED`). The machine keeps the request's table and its timeout; a request the
//! bus cannot deliver comes back as an `xstate.error.delivery` message the device does not
//! map to its request, so it ends by the timeout.
//!
//! Give it a pseudo-terminal as stdin and stdout and run `interstate serial-bridge --tty` on
//! the other end; `cli/tests/serial.rs` does exactly that. Options:
//!
//! - `--noise N`: before each of its first N writes, put a corrupted copy of the first frame
//!   and a frame cut in half on the line (two damaged frames each time), to show that the
//!   bridge drops and counts them and recovers at the next frame boundary.
//!
//! Log lines go to stderr: `device: ...`.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::sync::mpsc;
use std::time::Duration as StdDuration;

use interstate_core::endpoint::EndpointConfig;
use interstate_core::serial::{DeviceLink, Incoming, SerialStats};
use interstate_core::{
    ActionContext, ActionId, Behavior, Duration, Event, GuardContext, GuardId, Instant, Machine,
    Target,
};

#[allow(dead_code)]
mod lamp {
    include!("../no_std_core/check/src/generated_chart.rs");
}

#[allow(dead_code)]
mod sensor {
    include!("charts/sensor_chart.rs");
}

/// Both of the device's machines: the defaults, with room behind the outbox for a reply's
/// names and data (the requester's id is copied there with it), and for one request of its
/// own waiting for its reply.
type DeviceMachine = Machine<'static, 2, 4, 4, 2, 4, 160, 32, 1>;

/// The device's hardware: an LED, reported on stderr.
struct Led;

impl Behavior for Led {
    fn action(&mut self, action: ActionId, _cx: &mut ActionContext<'_>) {
        match action {
            lamp::actions::LED_ON => eprintln!("device: led on"),
            lamp::actions::LED_OFF => eprintln!("device: led off"),
            _ => {}
        }
    }
    fn guard(&mut self, guard: GuardId, _cx: &GuardContext<'_>) -> bool {
        match guard {
            lamp::guards::MANUAL_OFF => false,
            _ => false,
        }
    }
}

const MACHINES: &[&str] = &["lamp", "sensor"];

fn print_stats(s: &SerialStats) {
    eprintln!(
        "device: stats frames={} dropped={} crc={} cobs={} short={} oversized={} malformed={} sent={}",
        s.frames,
        s.dropped(),
        s.crc_errors,
        s.cobs_errors,
        s.too_short,
        s.oversized,
        s.malformed,
        s.sent
    );
}

/// A corrupted copy of the first frame in `pending` and its first half, or nothing.
fn noise(pending: &[u8]) -> Vec<u8> {
    // A frame on the line is `00 ... 00`.
    let Some(end) = pending.iter().skip(1).position(|&b| b == 0).map(|i| i + 2) else {
        return Vec::new();
    };
    let frame = &pending[..end];
    let mut corrupted = frame.to_vec();
    let mid = frame.len() / 2;
    corrupted[mid] = match corrupted[mid] ^ 0x55 {
        0 => 0x01,
        b => b,
    };
    let mut out = corrupted;
    out.extend_from_slice(&frame[..mid.max(2)]);
    out
}

fn main() {
    let mut noise_left: u32 = 0;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--noise" => noise_left = args.next().and_then(|n| n.parse().ok()).unwrap_or(3),
            other => {
                eprintln!("device: unknown argument '{other}'");
                std::process::exit(2);
            }
        }
    }

    // The UART: stdin in, stdout out, unbuffered.
    let (rx_tx, rx) = mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = [0u8; 256];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if rx_tx.send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let mut uart = File::from(
        std::io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .expect("stdout is a file descriptor"),
    );
    let start = std::time::Instant::now();
    let clock = || Instant::from_millis(start.elapsed().as_millis() as u64);

    let mut machines: Vec<DeviceMachine> = vec![
        Machine::new(lamp::chart(), "lamp").expect("the chart fits"),
        Machine::new(sensor::chart(), "sensor").expect("the chart fits"),
    ];
    let mut led = Led;
    for machine in &mut machines {
        machine.start(clock(), &mut led).expect("starts");
    }
    let mut config = EndpointConfig::new(0, "lamp-device");
    config.keepalive = Duration::from_millis(1_000);
    config.dead_after = Duration::from_millis(3_000);
    config.backoff_max = Duration::from_millis(500);
    let mut link: DeviceLink<'static, 256, 1024> =
        DeviceLink::with_config(MACHINES, config, clock());
    let mut last_stats = link.stats();

    loop {
        let now = clock();
        for _ in 0..4 {
            if link.poll_timeout().is_none_or(|d| d > now) {
                break;
            }
            if let Some(inc) = link.handle_timeout(now) {
                eprintln!("device: {inc:?}");
            }
        }
        for machine in &mut machines {
            while machine.poll_timeout().is_some_and(|d| d <= now) {
                if let Err(e) = machine.handle_timeout(now, &mut led) {
                    eprintln!("device: machine error: {e}");
                    break;
                }
            }
        }

        // The machines' outboxes go down the line once the bridge has welcomed us.
        for machine in &mut machines {
            let from = machine.id().to_string();
            let mut sent = 0;
            let mut to_self = Vec::new();
            for m in machine.outbox() {
                match m.target {
                    Target::ThisMachine => to_self.push((m.event.to_string(), m.payload.to_vec())),
                    Target::Topic(_) | Target::Broadcast => {
                        eprintln!(
                            "device: publications are not bridged yet; {} dropped",
                            m.event
                        );
                    }
                    Target::Machine(to) => {
                        // A reply carries its request's id back (a plain send carries none).
                        if let Err(e) =
                            link.send_correlated(&from, to, m.event, m.payload, m.correlation)
                        {
                            eprintln!("device: not sent yet: {e}");
                            break;
                        }
                        eprintln!("device: sent {} to {to}", m.event);
                    }
                }
                sent += 1;
            }
            machine.consume_outbox(sent);
            for (event, payload) in to_self {
                let _ = machine.send(now, Event::new(&event).with_payload(&payload), &mut led);
            }
        }

        if !link.pending_tx().is_empty() {
            let mut bytes = Vec::new();
            if noise_left > 0 {
                noise_left -= 1;
                bytes = noise(link.pending_tx());
                eprintln!("device: injected {} bytes of line noise", bytes.len());
            }
            bytes.extend_from_slice(link.pending_tx());
            if uart.write_all(&bytes).is_err() {
                eprintln!("device: the line is gone");
                return;
            }
            let n = link.pending_tx().len();
            link.consume_tx(n);
        }

        let deadline = machines
            .iter()
            .map(|m| m.poll_timeout())
            .chain([link.poll_timeout()])
            .flatten()
            .min();
        let wait = deadline
            .map(|d| StdDuration::from_millis((d - clock()).as_millis()))
            .unwrap_or(StdDuration::from_millis(100))
            .min(StdDuration::from_millis(100));
        match rx.recv_timeout(wait) {
            Ok(bytes) => {
                let now = clock();
                let mut input = &bytes[..];
                while let Some(inc) = link.handle_input(now, &mut input) {
                    match inc {
                        Incoming::Deliver(d) => {
                            eprintln!(
                                "device: got {} from {} for {} ({:?})",
                                d.event, d.from, d.to, d.correlation
                            );
                            // The sender and the correlation go with the event: the
                            // machine replies to the one, as the answer to the other.
                            let event = Event::new(d.event)
                                .with_payload(d.payload)
                                .with_sender(d.from)
                                .with_correlation(d.correlation);
                            match machines.iter_mut().find(|m| m.id() == d.to) {
                                Some(machine) => {
                                    if let Err(e) = machine.send(now, event, &mut led) {
                                        eprintln!("device: machine error: {e}");
                                    }
                                }
                                None => eprintln!("device: no machine '{}' here", d.to),
                            }
                        }
                        other => eprintln!("device: {other:?}"),
                    }
                }
                let s = link.stats();
                if s.dropped() != last_stats.dropped() || s.frames != last_stats.frames {
                    print_stats(&s);
                    last_stats = s;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                eprintln!("device: the line closed");
                print_stats(&link.stats());
                return;
            }
        }
    }
}
