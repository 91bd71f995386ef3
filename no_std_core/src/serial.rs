//! Serial links: the bus protocol over a bare byte stream (a UART, a USB CDC port, a pty).
//!
//! A serial line can lose, flip or add bytes, so the length prefix of the socket transport
//! (see [`crate::wire`]) cannot be trusted there: one lost byte would desynchronize the stream
//! for good. On a serial link every frame is instead
//!
//! ```text
//! 00 | COBS( body | crc16(body), 2 bytes little-endian ) | 00
//! ```
//!
//! - `body` is exactly what the socket transport carries after its length prefix: one
//!   [`Frame`] as [`Frame::encode`] writes it (postcard, but a request's or a reply's
//!   Deliver is its own frame kind, which carries the correlation). A device speaks the same protocol (Hello, Register, Deliver, Ping, ...) as
//!   every process on the bus; only the framing differs.
//! - [COBS](https://en.wikipedia.org/wiki/Consistent_Overhead_Byte_Stuffing) removes every
//!   `00` byte from the encoded frame, so `00` marks frame boundaries and nothing else: after
//!   any damage the receiver resynchronizes at the next `00`. The leading `00` ends whatever
//!   line noise came before the frame, so that noise costs no good frame.
//! - The CRC is CRC-16/IBM-3740 (also called CCITT-FALSE: polynomial `0x1021`, initial value
//!   `0xFFFF`, no reflection; [`crc16`]`(b"123456789") == 0x29B1`). A frame whose CRC does not
//!   match, whose COBS encoding is broken, that is too short to hold a CRC, or that is longer
//!   than the receive buffer is dropped and counted in [`SerialStats`]; nothing else happens.
//!
//! The pieces, all without allocation:
//! - [`encode_frame`] writes one frame, delimiters included, into a byte buffer;
//! - [`FrameDecoder`] is fed the received bytes in chunks of any size and hands out each
//!   complete, CRC-checked body, decoded in place in its fixed buffer;
//! - [`DeviceLink`] is the device side of a serial link as a sans-IO state machine: fed the
//!   received bytes and the time, it answers with the bytes to transmit and the frames that
//!   matter to the application. It reuses [`crate::endpoint::Endpoint`] for the handshake,
//!   keepalive and reconnection, registers the device's machine ids, and sends their messages.
//!
//! The other end is a bridge on the host (`interstate serial-bridge`), which joins the bus as
//! an ordinary client and routes the device's machine ids like any other process's.
//!
//! The serial hop has no retransmission: a frame lost on the line is counted where it was
//! dropped (on the device in [`DeviceLink::stats`], on the bridge in its statistics), and the
//! keepalive notices a line that stays dead.

use crate::endpoint::{Endpoint, EndpointConfig, Todo};
use crate::error::Error;
use crate::hub::HelloRules;
use crate::time::Instant;
use crate::wire::{
    Correlation, Deliver, DeliveryFailed, Frame, RegisterStatus, RejectCode, LEN_PREFIX,
};

/// The frame delimiter on the line.
pub const DELIMITER: u8 = 0;

/// Bytes of CRC after each frame body.
pub const CRC_LEN: usize = 2;

/// The smallest largest-frame a device may announce in its Hello: room for every frame the
/// bridge answers it with (a Welcome, a RegisterResult for the longest machine id, a Pong, a
/// Goodbye). A device's receive buffer may be far below a process's minimum of 512 bytes
/// ([`crate::wire::MIN_MAX_FRAME`]): [`DeviceLink`]'s default of 256 bytes takes 252-byte bodies.
pub const MIN_DEVICE_FRAME: u32 = 96;

/// What the serial bridge requires of a device's Hello: the hub's rules
/// ([`HelloRules::check`]), with a device's smaller minimum frame ([`MIN_DEVICE_FRAME`]).
pub const DEVICE_HELLO: HelloRules = HelloRules {
    min_frame: MIN_DEVICE_FRAME,
    too_small: "the device's largest frame is below the minimum of 96 bytes",
};

/// CRC-16/IBM-3740 (CCITT-FALSE) of `data`: polynomial `0x1021`, initial value `0xFFFF`, not
/// reflected, no final xor. Bitwise, so that it costs no table in flash.
pub fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for &b in data {
        crc ^= (b as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The most bytes one frame with a body of `body_len` bytes takes on the line: both
/// delimiters, the COBS overhead and the CRC included.
pub const fn max_line_len(body_len: usize) -> usize {
    let n = body_len + CRC_LEN;
    n + n / 254 + 1 + 2
}

/// Head room [`encode_frame`] keeps in front of the body it encodes in place, for a buffer of
/// `free` bytes: COBS output may run ahead of its input by one byte per 254, plus the code
/// byte and the leading delimiter.
const fn in_place_slack(free: usize) -> usize {
    4 + free / 254
}

/// COBS-encodes `buf[src..src + len]` into `buf[dst..]`, in place: the output may overlap the
/// input as long as `src >= dst + 3 + len / 254` (the output never overtakes the input).
/// Returns the encoded length.
fn cobs_encode_within(buf: &mut [u8], src: usize, len: usize, dst: usize) -> usize {
    let mut code_at = dst;
    let mut w = dst + 1;
    let mut code: u8 = 1;
    for i in src..src + len {
        let b = buf[i];
        if b == 0 {
            buf[code_at] = code;
            code_at = w;
            w += 1;
            code = 1;
        } else {
            buf[w] = b;
            w += 1;
            code += 1;
            if code == 0xFF {
                buf[code_at] = code;
                code_at = w;
                w += 1;
                code = 1;
            }
        }
    }
    buf[code_at] = code;
    w - dst
}

/// Decodes one COBS-encoded frame (without delimiters) in place. Returns the decoded length,
/// or `None` when the encoding is broken (a zero byte, or a block running past the end).
pub fn cobs_decode_in_place(buf: &mut [u8]) -> Option<usize> {
    let len = buf.len();
    let (mut r, mut w) = (0usize, 0usize);
    while r < len {
        let code = buf[r];
        if code == 0 {
            return None;
        }
        r += 1;
        let n = code as usize - 1;
        if r + n > len {
            return None;
        }
        buf.copy_within(r..r + n, w);
        w += n;
        r += n;
        if code != 0xFF && r < len {
            buf[w] = 0;
            w += 1;
        }
    }
    Some(w)
}

/// Encodes `frame` for a serial line into `out`: `00`, the COBS encoding of its postcard body
/// and CRC, `00`. Returns the bytes written.
///
/// The body is encoded in place inside `out` (no second buffer), so `out` needs a little more
/// room than the result: [`Error::TxFull`] says how much when it is too small.
pub fn encode_frame(frame: &Frame<'_>, out: &mut [u8]) -> Result<usize, Error> {
    let free = out.len();
    let slack = in_place_slack(free);
    let too_small = || Error::TxFull {
        needed: frame.encoded_len().saturating_sub(LEN_PREFIX) + CRC_LEN + in_place_slack(free),
        free,
    };
    if free < slack + CRC_LEN + 1 {
        return Err(too_small());
    }
    let room = &mut out[slack..free - CRC_LEN];
    let body_len = match frame {
        // A Deliver is written as the socket transport writes it: postcard alone would drop
        // a request's or a reply's correlation (its own frame kind, not a postcard field).
        Frame::Deliver(d) => d.write_body(room).ok_or_else(too_small)?,
        _ => postcard::to_slice(frame, room)
            .map_err(|_| too_small())?
            .len(),
    };
    let crc = crc16(&out[slack..slack + body_len]);
    out[slack + body_len..slack + body_len + CRC_LEN].copy_from_slice(&crc.to_le_bytes());
    let n = cobs_encode_within(out, slack, body_len + CRC_LEN, 1);
    out[0] = DELIMITER;
    out[1 + n] = DELIMITER;
    Ok(n + 2)
}

/// What a serial receiver dropped and kept. Every dropped frame is in exactly one counter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SerialStats {
    /// Frames received whole: CRC good (and, for a [`DeviceLink`], a valid [`Frame`]).
    pub frames: u32,
    /// Frames dropped because their CRC did not match (bytes flipped or lost on the line).
    pub crc_errors: u32,
    /// Frames dropped because their COBS encoding was broken (bytes lost or added).
    pub cobs_errors: u32,
    /// Frames dropped because they were too short to hold a body and a CRC (cut short).
    pub too_short: u32,
    /// Frames dropped because they did not fit the receive buffer (no delimiter in time).
    pub oversized: u32,
    /// Frames whose CRC was good but whose body is not a valid [`Frame`].
    pub malformed: u32,
    /// Frames sent.
    pub sent: u32,
    /// Frames the link generated itself (pongs, pings, registrations) dropped because the
    /// transmit buffer was full; the keepalive repairs the session.
    pub tx_dropped: u32,
}

impl SerialStats {
    /// Every frame dropped on receipt, whatever the reason.
    pub fn dropped(&self) -> u32 {
        self.crc_errors + self.cobs_errors + self.too_short + self.oversized + self.malformed
    }
}

/// Turns a received byte stream into frame bodies, in a fixed buffer of `N` bytes.
///
/// `N` bounds the encoded frame (without delimiters): a body of up to
/// [`FrameDecoder::MAX_BODY`] bytes fits. Feed it whatever the line delivered with
/// [`next_frame`](Self::next_frame); read each complete frame with [`body`](Self::body).
#[derive(Clone, Debug)]
pub struct FrameDecoder<const N: usize> {
    buf: [u8; N],
    len: usize,
    /// The buffer holds a complete body of this length (until the next call).
    ready: Option<usize>,
    overflow: bool,
    stats: SerialStats,
}

impl<const N: usize> Default for FrameDecoder<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> FrameDecoder<N> {
    /// The largest body whose encoding always fits the buffer.
    pub const MAX_BODY: usize = N - CRC_LEN - 1 - N / 254;

    /// An empty decoder.
    pub const fn new() -> Self {
        FrameDecoder {
            buf: [0; N],
            len: 0,
            ready: None,
            overflow: false,
            stats: SerialStats {
                frames: 0,
                crc_errors: 0,
                cobs_errors: 0,
                too_short: 0,
                oversized: 0,
                malformed: 0,
                sent: 0,
                tx_dropped: 0,
            },
        }
    }

    /// Counters (`sent` and `tx_dropped` stay zero: a decoder does not send).
    pub fn stats(&self) -> SerialStats {
        self.stats
    }

    /// Counts a body that [`body`](Self::body) returned but that the caller could not parse.
    pub fn count_malformed(&mut self) {
        self.stats.frames = self.stats.frames.saturating_sub(1);
        self.stats.malformed += 1;
    }

    /// Consumes bytes from the front of `input` up to the end of the next complete frame.
    /// Returns that frame's body length (its bytes are then [`body`](Self::body)), or `None`
    /// when `input` is used up without completing one. Damaged frames on the way are dropped
    /// and counted.
    pub fn next_frame(&mut self, input: &mut &[u8]) -> Option<usize> {
        if self.ready.take().is_some() {
            self.len = 0;
        }
        while let Some((&b, rest)) = input.split_first() {
            *input = rest;
            if b != DELIMITER {
                if self.len < N {
                    self.buf[self.len] = b;
                    self.len += 1;
                } else {
                    self.overflow = true;
                }
                continue;
            }
            let n = core::mem::replace(&mut self.len, 0);
            if core::mem::replace(&mut self.overflow, false) {
                self.stats.oversized += 1;
                core_log!(
                    warn,
                    "serial: dropped a frame longer than the receive buffer"
                );
                continue;
            }
            if n == 0 {
                // Back-to-back delimiters: the gap between two frames.
                continue;
            }
            let Some(m) = cobs_decode_in_place(&mut self.buf[..n]) else {
                self.stats.cobs_errors += 1;
                core_log!(warn, "serial: dropped a frame with a broken COBS encoding");
                continue;
            };
            if m < 1 + CRC_LEN {
                self.stats.too_short += 1;
                core_log!(warn, "serial: dropped a frame of {} bytes", m);
                continue;
            }
            let body = m - CRC_LEN;
            let crc = u16::from_le_bytes([self.buf[body], self.buf[body + 1]]);
            if crc16(&self.buf[..body]) != crc {
                self.stats.crc_errors += 1;
                core_log!(warn, "serial: dropped a frame with a bad CRC");
                continue;
            }
            self.stats.frames += 1;
            self.ready = Some(body);
            return Some(body);
        }
        None
    }

    /// The body of the frame [`next_frame`](Self::next_frame) last returned (empty if none).
    pub fn body(&self) -> &[u8] {
        match self.ready {
            Some(n) => &self.buf[..n],
            None => &[],
        }
    }
}

/// What a [`DeviceLink`] hands the application.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Incoming<'f> {
    /// The bridge welcomed the device; the link has queued a `Register` for each machine id.
    Ready {
        /// The largest frame body either side may send.
        max_frame: u32,
    },
    /// The answer to a registration.
    Registered {
        /// The machine id.
        machine: &'f str,
        /// The result.
        status: RegisterStatus,
    },
    /// A message for one of the device's machines.
    Deliver(Deliver<'f>),
    /// A message a device machine sent was not delivered.
    DeliveryFailed(DeliveryFailed<'f>),
    /// The bridge refused the device.
    Rejected(RejectCode),
    /// The bridge stopped answering or said goodbye; the link says Hello again after a
    /// backoff (keep calling [`DeviceLink::handle_timeout`]).
    Lost,
}

/// What a received frame means to the link (decided without keeping a borrow of it).
enum Step {
    Skip,
    App,
    Ready(u32),
    Rejected(Option<RejectCode>),
    Lost,
}

/// The device side of a serial link, sans-IO and allocation-free.
///
/// `RX` is the receive buffer (the largest encoded frame, see [`FrameDecoder`]); `TX` the
/// transmit buffer, which holds the line bytes not yet written. The device's loop:
///
/// 1. at start and whenever [`poll_timeout`](Self::poll_timeout) is due, call
///    [`handle_timeout`](Self::handle_timeout) (it says Hello, pings, notices a dead bridge);
/// 2. feed the bytes the UART received to [`handle_input`](Self::handle_input) until it
///    returns `None`, handing each [`Incoming::Deliver`] to the machine it names, with its
///    sender and its correlation ([`crate::Event::with_sender`], `with_correlation`), so
///    that the machine can answer a request;
/// 3. send the machines' outboxes with [`send_correlated`](Self::send_correlated) (each
///    message's correlation: a reply carries its request's id);
/// 4. write out [`pending_tx`](Self::pending_tx) and report it with
///    [`consume_tx`](Self::consume_tx).
pub struct DeviceLink<'a, const RX: usize = 256, const TX: usize = 512> {
    machines: &'a [&'a str],
    endpoint: Endpoint,
    rx: FrameDecoder<RX>,
    tx: [u8; TX],
    tx_len: usize,
    seq: u64,
    sent: u32,
    tx_dropped: u32,
    malformed: u32,
}

/// Encodes `frame` at the end of `tx[..*len]`.
fn queue_into(tx: &mut [u8], len: &mut usize, frame: &Frame<'_>) -> Result<(), Error> {
    let n = encode_frame(frame, &mut tx[*len..])?;
    *len += n;
    Ok(())
}

impl<'a, const RX: usize, const TX: usize> DeviceLink<'a, RX, TX> {
    /// A link for the device's `machines` (their ids on the bus), named `name` in the
    /// registry, with the endpoint's default timings (ping after 5 s of silence, the bridge
    /// declared dead 10 s later, Hello again after 50 ms to 2 s).
    pub fn new(machines: &'a [&'a str], name: &str, now: Instant) -> Self {
        Self::with_config(machines, EndpointConfig::new(0, name), now)
    }

    /// A link with the given endpoint settings (`max_frame` is set from `RX`).
    pub fn with_config(machines: &'a [&'a str], mut config: EndpointConfig, now: Instant) -> Self {
        config.max_frame = FrameDecoder::<RX>::MAX_BODY as u32;
        DeviceLink {
            machines,
            endpoint: Endpoint::new(config, now),
            rx: FrameDecoder::new(),
            tx: [0; TX],
            tx_len: 0,
            seq: 0,
            sent: 0,
            tx_dropped: 0,
            malformed: 0,
        }
    }

    /// Whether the bridge has welcomed the device (messages can be sent).
    pub fn is_ready(&self) -> bool {
        self.endpoint.is_ready()
    }

    /// The endpoint state machine (handshake, keepalive, backoff).
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Counters: frames received, dropped (by reason) and sent.
    pub fn stats(&self) -> SerialStats {
        let mut s = self.rx.stats();
        s.frames = s.frames.saturating_sub(self.malformed);
        s.malformed = self.malformed;
        s.sent = self.sent;
        s.tx_dropped = self.tx_dropped;
        s
    }

    /// When [`handle_timeout`](Self::handle_timeout) next has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.endpoint.poll_timeout()
    }

    fn queue_own(&mut self, frame: &Frame<'_>) {
        match queue_into(&mut self.tx, &mut self.tx_len, frame) {
            Ok(()) => self.sent += 1,
            Err(_) => {
                self.tx_dropped += 1;
                core_log!(
                    warn,
                    "serial: transmit buffer full; dropped a {}",
                    frame.kind()
                );
            }
        }
    }

    /// Time-driven work: the Hello (at start, and again after the bridge was lost), keepalive
    /// pings, and declaring a silent bridge lost ([`Incoming::Lost`]).
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Incoming<'static>> {
        match self.endpoint.handle_timeout(now) {
            Todo::Connect => {
                self.endpoint.connected(now);
                let hello = self.endpoint.hello();
                match queue_into(&mut self.tx, &mut self.tx_len, &hello) {
                    Ok(()) => self.sent += 1,
                    Err(_) => self.tx_dropped += 1,
                }
                None
            }
            Todo::Send(f) => {
                self.queue_own(&f);
                None
            }
            Todo::Close => {
                core_log!(warn, "serial: the bridge stopped answering");
                Some(Incoming::Lost)
            }
            Todo::Nothing | Todo::Ready => None,
        }
    }

    /// Consumes received bytes from the front of `input` until a frame the application must
    /// see is complete, and returns it; `None` once `input` is used up. Handshake, pings and
    /// damaged frames are handled (and counted) on the way. Call it again with the rest of
    /// `input` until it returns `None`.
    pub fn handle_input(&mut self, now: Instant, input: &mut &[u8]) -> Option<Incoming<'_>> {
        loop {
            self.rx.next_frame(input)?;
            let step = match Frame::decode(self.rx.body()) {
                Err(_) => {
                    self.malformed += 1;
                    core_log!(warn, "serial: dropped a frame that is not a valid frame");
                    Step::Skip
                }
                Ok(frame) => {
                    let todo = self.endpoint.handle_frame(now, &frame);
                    match (todo, frame) {
                        (Todo::Ready, _) => match self.endpoint.state() {
                            crate::endpoint::LinkState::Ready { max_frame, .. } => {
                                Step::Ready(max_frame)
                            }
                            _ => Step::Skip,
                        },
                        (Todo::Close, _) => Step::Rejected(self.endpoint.rejection()),
                        (Todo::Send(reply), _) => {
                            self.queue_own(&reply);
                            Step::Skip
                        }
                        (_, Frame::Goodbye { .. }) => {
                            self.endpoint.disconnected(now);
                            Step::Lost
                        }
                        (
                            _,
                            Frame::Deliver(_)
                            | Frame::DeliveryFailed(_)
                            | Frame::RegisterResult { .. },
                        ) => Step::App,
                        _ => Step::Skip,
                    }
                }
            };
            match step {
                Step::Skip => {}
                Step::Lost => return Some(Incoming::Lost),
                Step::Rejected(code) => {
                    return Some(Incoming::Rejected(
                        code.unwrap_or(RejectCode::NotInterstate),
                    ))
                }
                Step::Ready(max_frame) => {
                    for &m in self.machines {
                        let f = Frame::Register { machine: m };
                        match queue_into(&mut self.tx, &mut self.tx_len, &f) {
                            Ok(()) => self.sent += 1,
                            Err(_) => self.tx_dropped += 1,
                        }
                    }
                    return Some(Incoming::Ready { max_frame });
                }
                Step::App => break,
            }
        }
        match Frame::decode(self.rx.body()) {
            Ok(Frame::Deliver(d)) => Some(Incoming::Deliver(d)),
            Ok(Frame::DeliveryFailed(f)) => Some(Incoming::DeliveryFailed(f)),
            Ok(Frame::RegisterResult { machine, status }) => {
                Some(Incoming::Registered { machine, status })
            }
            // Decoded the same way a moment ago.
            _ => None,
        }
    }

    /// Sends a message from one of the device's machines to any machine on the bus.
    ///
    /// Fails with [`Error::NotConnected`] before the bridge's welcome, and with
    /// [`Error::TxFull`] when the transmit buffer has no room (write out
    /// [`pending_tx`](Self::pending_tx) and try again).
    pub fn send(&mut self, from: &str, to: &str, event: &str, payload: &[u8]) -> Result<(), Error> {
        self.send_correlated(from, to, event, payload, Correlation::None)
    }

    /// As [`send`](Self::send), for a request or a reply: a device machine answers a request
    /// it got (an [`Incoming::Deliver`] with [`Correlation::Request`]) with
    /// [`Correlation::Reply`] and the same id.
    pub fn send_correlated(
        &mut self,
        from: &str,
        to: &str,
        event: &str,
        payload: &[u8],
        correlation: Correlation,
    ) -> Result<(), Error> {
        if !self.endpoint.is_ready() {
            return Err(Error::NotConnected);
        }
        let frame = Frame::Deliver(Deliver {
            from,
            to,
            event,
            payload,
            seq: self.seq + 1,
            correlation,
        });
        queue_into(&mut self.tx, &mut self.tx_len, &frame)?;
        self.seq += 1;
        self.sent += 1;
        Ok(())
    }

    /// Says goodbye (for a device that shuts down on purpose).
    pub fn goodbye(&mut self, reason: &str) -> Result<(), Error> {
        queue_into(&mut self.tx, &mut self.tx_len, &Frame::Goodbye { reason })?;
        self.sent += 1;
        Ok(())
    }

    /// The bytes waiting to be written to the line, oldest first.
    pub fn pending_tx(&self) -> &[u8] {
        &self.tx[..self.tx_len]
    }

    /// Removes the first `n` bytes of [`pending_tx`](Self::pending_tx): the UART took them.
    pub fn consume_tx(&mut self, n: usize) {
        let n = n.min(self.tx_len);
        self.tx.copy_within(n..self.tx_len, 0);
        self.tx_len -= n;
    }

    /// Space left in the transmit buffer.
    pub fn tx_free(&self) -> usize {
        TX - self.tx_len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_frame_the_bridge_answers_a_device_with_fits_the_smallest_device_frame() {
        use crate::hub::MAX_ID;
        use crate::wire::{RegisterStatus, Welcome, PROTOCOL_VERSION};
        let longest_id = core::str::from_utf8(&[b'm'; MAX_ID]).unwrap();
        let answers = [
            Frame::Welcome(Welcome {
                version: PROTOCOL_VERSION,
                max_frame: u32::MAX,
                link: u32::MAX,
                hub_pid: u32::MAX,
            }),
            Frame::RegisterResult {
                machine: longest_id,
                status: RegisterStatus::TooMany,
            },
            Frame::Pong { nonce: u64::MAX },
            Frame::Goodbye {
                reason: "say hello first",
            },
        ];
        for frame in answers {
            let body = frame.encoded_len() - LEN_PREFIX;
            assert!(body <= MIN_DEVICE_FRAME as usize, "{frame:?}: {body} bytes");
        }
    }

    #[test]
    fn a_device_hello_passes_the_hubs_checks_with_a_devices_minimum_frame() {
        use crate::hub::Refusal;
        use crate::wire::{Hello, RejectCode, MAGIC, PROTOCOL_VERSION};
        let hello = |magic, version, max_frame| Hello {
            magic,
            version,
            pid: 0,
            max_frame,
            executable: "lamp-device",
        };
        let check = |h| DEVICE_HELLO.check(&h, 16 * 1024);
        let code = |r: Result<u32, Refusal>| r.map_err(|r| r.code);
        // A default DeviceLink (256-byte receive buffer) is below a process's minimum.
        let small = FrameDecoder::<256>::MAX_BODY as u32;
        assert_eq!(check(hello(MAGIC, PROTOCOL_VERSION, small)), Ok(small));
        assert_eq!(
            check(hello(MAGIC, PROTOCOL_VERSION, u32::MAX)),
            Ok(16 * 1024)
        );
        assert_eq!(
            code(check(hello(MAGIC, PROTOCOL_VERSION, MIN_DEVICE_FRAME - 1))),
            Err(RejectCode::FrameSize)
        );
        assert_eq!(
            code(check(hello(MAGIC ^ 1, PROTOCOL_VERSION, small))),
            Err(RejectCode::NotInterstate)
        );
        assert_eq!(
            code(check(hello(MAGIC, PROTOCOL_VERSION + 1, small))),
            Err(RejectCode::Version)
        );
        assert!(DEVICE_HELLO.too_small.contains(" 96 bytes"));
        assert_eq!(MIN_DEVICE_FRAME, 96);
    }

    #[test]
    fn crc_check_value() {
        assert_eq!(crc16(b"123456789"), 0x29B1);
    }

    #[test]
    fn cobs_round_trips_in_place() {
        // Runs of zero and non-zero bytes around the 254-byte block boundary.
        let mut seed = 0x1234_5678u32;
        for len in [0usize, 1, 2, 253, 254, 255, 256, 508, 509, 600] {
            for zero_every in [0usize, 1, 3, 254, 255] {
                let mut data = [0u8; 600];
                for (i, d) in data[..len].iter_mut().enumerate() {
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    *d = if zero_every != 0 && i % zero_every == 0 {
                        0
                    } else {
                        (seed >> 16) as u8 | 1
                    };
                }
                let mut buf = [0u8; 1400];
                let src = in_place_slack(700);
                buf[src..src + len].copy_from_slice(&data[..len]);
                let n = cobs_encode_within(&mut buf, src, len, 1);
                assert!(n <= len + len / 254 + 1);
                assert!(!buf[1..1 + n].contains(&0), "len {len}");
                let m = cobs_decode_in_place(&mut buf[1..1 + n]).expect("decodes");
                assert_eq!(
                    &buf[1..1 + m],
                    &data[..len],
                    "len {len}, zeros {zero_every}"
                );
            }
        }
    }
}
