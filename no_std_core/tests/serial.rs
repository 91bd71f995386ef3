//! Serial links, deterministic: COBS framing with a CRC per frame, the streaming decoder under
//! line noise, and the device-side `DeviceLink` against a scripted bridge on a virtual clock.

use interstate_core::serial::{
    encode_frame, max_line_len, DeviceLink, FrameDecoder, Incoming, SerialStats, CRC_LEN,
};
use interstate_core::wire::{
    Correlation, Deliver, Frame, RegisterStatus, Welcome, LEN_PREFIX, PROTOCOL_VERSION,
};
use interstate_core::{Duration, Error, Instant};

fn deliver(event: &str, seq: u64) -> Frame<'_> {
    Frame::Deliver(Deliver {
        from: "controller",
        to: "lamp",
        event,
        payload: b"{\"n\":1}",
        seq,
        correlation: Default::default(),
    })
}

fn line(frame: &Frame<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; 1024];
    let n = encode_frame(frame, &mut buf).unwrap();
    buf.truncate(n);
    buf
}

/// Every frame body the decoder finds in `bytes`, decoded.
fn frames<const N: usize>(d: &mut FrameDecoder<N>, bytes: &[u8]) -> Vec<String> {
    let mut input = bytes;
    let mut out = Vec::new();
    while d.next_frame(&mut input).is_some() {
        out.push(format!("{:?}", Frame::decode(d.body()).unwrap()));
    }
    out
}

#[test]
fn a_frame_on_the_line_is_delimited_cobs_with_a_crc() {
    let f = deliver("TOGGLE", 300);
    let bytes = line(&f);
    assert_eq!(bytes[0], 0);
    assert_eq!(*bytes.last().unwrap(), 0);
    assert!(
        !bytes[1..bytes.len() - 1].contains(&0),
        "COBS leaves no zero inside"
    );
    let body = f.encoded_len() - 4;
    assert!(bytes.len() <= max_line_len(body));
    assert_eq!(
        bytes.len(),
        body + CRC_LEN + 1 + 2,
        "one COBS code byte for a short frame"
    );
    let mut d = FrameDecoder::<64>::new();
    assert_eq!(frames(&mut d, &bytes), vec![format!("{f:?}")]);
}

#[test]
fn frames_arrive_in_chunks_of_any_size() {
    let all: Vec<u8> = (0..20).flat_map(|i| line(&deliver("TICK", i))).collect();
    for chunk in [1usize, 2, 3, 7, 64, 1000] {
        let mut d = FrameDecoder::<64>::new();
        let mut got = 0;
        for piece in all.chunks(chunk) {
            got += frames(&mut d, piece).len();
        }
        assert_eq!(got, 20, "chunks of {chunk}");
        assert_eq!(d.stats().dropped(), 0);
    }
}

#[test]
fn every_corrupted_or_truncated_frame_is_dropped_and_counted_and_the_next_one_is_read() {
    let bad = line(&deliver("BROKEN", 1));
    let good = line(&deliver("GOOD", 2));
    // One byte changed, at every position inside the delimiters, to every other non-zero
    // value of a few: the CRC or the COBS check catches each.
    for at in 1..bad.len() - 1 {
        for x in [0x01u8, 0x20, 0x80, 0xFF] {
            let mut noisy = bad.clone();
            noisy[at] ^= x;
            if noisy[at] == 0 {
                continue; // a delimiter: splits the frame instead, covered below
            }
            let mut d = FrameDecoder::<64>::new();
            let mut bytes = noisy.clone();
            bytes.extend_from_slice(&good);
            let got = frames(&mut d, &bytes);
            assert_eq!(got.len(), 1, "byte {at} ^ {x:#x}");
            assert!(got[0].contains("GOOD"));
            let s = d.stats();
            assert_eq!(s.dropped(), 1, "byte {at} ^ {x:#x}: {s:?}");
            assert_eq!(s.crc_errors + s.cobs_errors + s.too_short, 1);
        }
    }
    // Cut short at every length, then the next frame: the next frame's leading delimiter ends
    // the cut one.
    for cut in 2..bad.len() - 1 {
        let mut d = FrameDecoder::<64>::new();
        let mut bytes = bad[..cut].to_vec();
        bytes.extend_from_slice(&good);
        let got = frames(&mut d, &bytes);
        assert_eq!(got.len(), 1, "cut at {cut}");
        assert!(got[0].contains("GOOD"));
        assert_eq!(d.stats().dropped(), 1, "cut at {cut}: {:?}", d.stats());
    }
    // Junk with no delimiter in it, longer than the buffer: one oversized drop, then the good
    // frame.
    let mut d = FrameDecoder::<64>::new();
    let mut bytes = vec![0u8];
    bytes.extend(std::iter::repeat_n(0x5Au8, 500));
    bytes.extend_from_slice(&good);
    assert_eq!(frames(&mut d, &bytes).len(), 1);
    assert_eq!(d.stats().oversized, 1);
    assert_eq!(d.stats().dropped(), 1);
    // Two bytes and a delimiter: too short to hold a CRC.
    let mut d = FrameDecoder::<64>::new();
    let mut bytes = vec![0u8, 0x02, 0x07, 0x00];
    bytes.extend_from_slice(&good);
    assert_eq!(frames(&mut d, &bytes).len(), 1);
    assert_eq!(d.stats().too_short, 1);
}

#[test]
fn a_body_at_the_decoders_limit_fits_and_one_byte_more_does_not() {
    const N: usize = 300;
    let max = FrameDecoder::<N>::MAX_BODY;
    for (body_len, fits) in [(max, true), (N, false)] {
        // A Deliver whose payload makes the body exactly `body_len` bytes.
        let mut payload_len = body_len.saturating_sub(20);
        let body = loop {
            let payload = vec![7u8; payload_len];
            let f = Frame::Deliver(Deliver {
                from: "a",
                to: "b",
                event: "E",
                payload: &payload,
                seq: 1,
                correlation: Default::default(),
            });
            let n = f.encoded_len() - 4;
            if n >= body_len {
                break (line(&f), n);
            }
            payload_len += 1;
        };
        assert_eq!(body.1, body_len);
        let mut d = FrameDecoder::<N>::new();
        let got = frames(&mut d, &body.0).len();
        assert_eq!(got == 1, fits, "body of {body_len} bytes, limit {max}");
    }
}

/// The bridge's side, scripted: decodes what the device wrote and answers.
struct Bridge {
    rx: FrameDecoder<1024>,
    seen: Vec<String>,
}

impl Bridge {
    fn new() -> Self {
        Bridge {
            rx: FrameDecoder::new(),
            seen: Vec::new(),
        }
    }
    /// Takes everything the device has to send.
    fn read(&mut self, dev: &mut DeviceLink<'_, 256, 512>) -> Vec<String> {
        let bytes = dev.pending_tx().to_vec();
        dev.consume_tx(bytes.len());
        let got = frames(&mut self.rx, &bytes);
        self.seen.extend(got.iter().cloned());
        got
    }
}

/// Feeds bytes to the device; returns what it hands the application, as text.
fn feed(dev: &mut DeviceLink<'_, 256, 512>, now: Instant, bytes: &[u8]) -> Vec<String> {
    let mut input = bytes;
    let mut out = Vec::new();
    while let Some(inc) = dev.handle_input(now, &mut input) {
        out.push(format!("{inc:?}"));
    }
    out
}

fn welcome() -> Vec<u8> {
    line(&Frame::Welcome(Welcome {
        version: PROTOCOL_VERSION,
        max_frame: 4096,
        link: 1,
        hub_pid: 7,
    }))
}

fn connected<'a>(machines: &'a [&'a str], bridge: &mut Bridge) -> DeviceLink<'a, 256, 512> {
    let t0 = Instant::ZERO;
    let mut dev: DeviceLink<'_, 256, 512> = DeviceLink::new(machines, "lamp-device", t0);
    assert_eq!(dev.poll_timeout(), Some(t0), "says hello at once");
    assert_eq!(dev.handle_timeout(t0), None);
    let hello = bridge.read(&mut dev);
    assert_eq!(hello.len(), 1);
    assert!(hello[0].starts_with("Hello(Hello { magic: 1112822601"));
    assert!(hello[0].contains("executable: \"lamp-device\""));
    assert_eq!(
        dev.send("lamp", "controller", "X", b""),
        Err(Error::NotConnected)
    );
    let got = feed(&mut dev, t0, &welcome());
    assert_eq!(got, vec!["Ready { max_frame: 252 }"]);
    assert!(dev.is_ready());
    let regs = bridge.read(&mut dev);
    assert_eq!(
        regs,
        machines
            .iter()
            .map(|m| format!("Register {{ machine: {m:?} }}"))
            .collect::<Vec<_>>()
    );
    dev
}

#[test]
fn a_device_link_says_hello_registers_its_machines_and_exchanges_messages() {
    let mut bridge = Bridge::new();
    let machines = ["lamp", "button"];
    let mut dev = connected(&machines, &mut bridge);
    let t = Instant::from_millis(10);
    let got = feed(
        &mut dev,
        t,
        &line(&Frame::RegisterResult {
            machine: "lamp",
            status: RegisterStatus::Ok,
        }),
    );
    assert_eq!(got, vec!["Registered { machine: \"lamp\", status: Ok }"]);

    let got = feed(&mut dev, t, &line(&deliver("TOGGLE", 9)));
    assert_eq!(got.len(), 1);
    assert!(got[0]
        .starts_with("Deliver(Deliver { from: \"controller\", to: \"lamp\", event: \"TOGGLE\""));

    dev.send("lamp", "controller", "LAMP_ON", b"{}").unwrap();
    dev.send("lamp", "controller", "LAMP_OFF", b"").unwrap();
    let sent = bridge.read(&mut dev);
    assert_eq!(sent.len(), 2);
    assert!(sent[0].contains("event: \"LAMP_ON\"") && sent[0].contains("seq: 1"));
    assert!(sent[1].contains("event: \"LAMP_OFF\"") && sent[1].contains("seq: 2"));

    // The bridge pings; the device answers without bothering the application.
    let got = feed(&mut dev, t, &line(&Frame::Ping { nonce: 42 }));
    assert!(got.is_empty());
    assert_eq!(bridge.read(&mut dev), vec!["Pong { nonce: 42 }"]);
    let s: SerialStats = dev.stats();
    assert_eq!(s.dropped(), 0);
    assert_eq!(s.frames, 4);
}

#[test]
fn a_correlated_deliver_crosses_the_line_with_its_request_id_both_ways() {
    // On the line, a Deliver's body is byte for byte the socket transport's: for a request
    // or a reply that is the correlated flavour, not the plain one postcard alone writes.
    for correlation in [Correlation::Request(7), Correlation::Reply(u32::MAX)] {
        let f = Frame::Deliver(Deliver {
            from: "cli",
            to: "sensor",
            event: "READ",
            payload: b"{}",
            seq: 3,
            correlation,
        });
        let mut socket = [0u8; 128];
        let n = f.encode(&mut socket).unwrap();
        let mut d = FrameDecoder::<128>::new();
        let bytes = line(&f);
        let mut input = &bytes[..];
        assert!(d.next_frame(&mut input).is_some());
        assert_eq!(d.body(), &socket[LEN_PREFIX..n]);
        assert_eq!(Frame::decode(d.body()).unwrap(), f);
    }

    // The device gets a request with its id, and its reply goes up with the same id.
    let mut bridge = Bridge::new();
    let machines = ["sensor"];
    let mut dev = connected(&machines, &mut bridge);
    let t = Instant::from_millis(10);
    let request = Frame::Deliver(Deliver {
        from: "cli",
        to: "sensor",
        event: "READ",
        payload: b"",
        seq: 1,
        correlation: Correlation::Request(41),
    });
    let got = feed(&mut dev, t, &line(&request));
    assert_eq!(got, vec![format!("{request:?}")]);
    dev.send_correlated("sensor", "cli", "READING", b"5", Correlation::Reply(41))
        .unwrap();
    let sent = bridge.read(&mut dev);
    assert_eq!(sent.len(), 1);
    assert!(
        sent[0].contains("event: \"READING\"") && sent[0].contains("correlation: Reply(41)"),
        "{}",
        sent[0]
    );
}

#[test]
fn a_device_link_drops_and_counts_line_noise_and_recovers_at_the_next_frame() {
    let mut bridge = Bridge::new();
    let machines = ["lamp"];
    let mut dev = connected(&machines, &mut bridge);
    let t = Instant::from_millis(10);
    let good = line(&deliver("GOOD", 2));

    let mut corrupted = line(&deliver("BAD", 1));
    let mid = corrupted.len() / 2;
    corrupted[mid] ^= 0x40;
    let truncated = line(&deliver("CUT", 3));
    let truncated = &truncated[..truncated.len() / 2];
    // A frame with a good CRC whose body is not a frame at all.
    let mut not_a_frame = vec![0u8; 64];
    let body = [0xEEu8, 0x01, 0x02];
    let crc = interstate_core::serial::crc16(&body);
    let mut raw = body.to_vec();
    raw.extend_from_slice(&crc.to_le_bytes());
    // COBS by hand for a body with no zero byte: one code byte, the bytes.
    not_a_frame.clear();
    not_a_frame.push(0);
    not_a_frame.push(raw.len() as u8 + 1);
    not_a_frame.extend_from_slice(&raw);
    not_a_frame.push(0);

    let mut noisy = Vec::new();
    noisy.extend_from_slice(&corrupted);
    noisy.extend_from_slice(truncated);
    noisy.extend_from_slice(&not_a_frame);
    noisy.extend_from_slice(&[0x13, 0x37, 0x42]); // junk, ended by the good frame's delimiter
    noisy.extend_from_slice(&good);
    // Fed one byte at a time, as a UART interrupt would.
    let mut got = Vec::new();
    for b in &noisy {
        got.extend(feed(&mut dev, t, std::slice::from_ref(b)));
    }
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].contains("event: \"GOOD\""));
    let s = dev.stats();
    assert_eq!(s.malformed, 1, "{s:?}");
    assert_eq!(s.dropped(), 4, "{s:?}");
    assert_eq!(s.crc_errors + s.cobs_errors + s.too_short, 3, "{s:?}");
}

#[test]
fn a_device_link_notices_a_silent_bridge_and_says_hello_again() {
    let mut bridge = Bridge::new();
    let machines = ["lamp"];
    let mut dev = connected(&machines, &mut bridge);
    // Keepalive: a ping after 5 s of silence.
    let ping_at = dev.poll_timeout().unwrap();
    assert_eq!(ping_at, Instant::from_millis(5_000));
    assert_eq!(dev.handle_timeout(ping_at), None);
    assert!(bridge.read(&mut dev)[0].starts_with("Ping"));
    // No pong for 10 s: the bridge is lost.
    let dead_at = dev.poll_timeout().unwrap();
    assert_eq!(dead_at, ping_at + Duration::from_millis(10_000));
    assert_eq!(dev.handle_timeout(dead_at), Some(Incoming::Lost));
    assert!(!dev.is_ready());
    // Hello again after the backoff, and registered again after the welcome.
    let retry = dev.poll_timeout().unwrap();
    assert!(retry > dead_at);
    dev.handle_timeout(retry);
    assert!(bridge.read(&mut dev)[0].starts_with("Hello"));
    assert_eq!(feed(&mut dev, retry, &welcome()).len(), 1);
    assert_eq!(
        bridge.read(&mut dev),
        vec!["Register { machine: \"lamp\" }"]
    );

    // A bridge that restarted says goodbye to frames before a hello: the device starts over.
    let t = retry + Duration::from_millis(1);
    let got = feed(
        &mut dev,
        t,
        &line(&Frame::Goodbye {
            reason: "say hello first",
        }),
    );
    assert_eq!(got, vec!["Lost"]);
    let again = dev.poll_timeout().unwrap();
    dev.handle_timeout(again);
    assert!(bridge.read(&mut dev)[0].starts_with("Hello"));
}

#[test]
fn a_full_transmit_buffer_is_an_error_the_application_sees() {
    let mut bridge = Bridge::new();
    let machines = ["lamp"];
    let mut dev = connected(&machines, &mut bridge);
    let payload = [1u8; 100];
    let mut sent = 0;
    let err = loop {
        match dev.send("lamp", "controller", "BIG", &payload) {
            Ok(()) => sent += 1,
            Err(e) => break e,
        }
    };
    assert!(sent >= 3, "{sent}");
    assert!(matches!(err, Error::TxFull { .. }), "{err}");
    // Written out, there is room again.
    assert_eq!(bridge.read(&mut dev).len(), sent);
    dev.send("lamp", "controller", "BIG", &payload).unwrap();
}
