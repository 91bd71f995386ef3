//! `Frame::decode` reads Deliver frames by hand (the bus's hot path) and everything else with
//! postcard. The two must agree exactly: on every valid Deliver (same fields), and on every
//! malformed or unusual body (same error, or the same other frame). Deliver frames are also
//! written by hand, byte for byte as postcard writes them. Checked here against postcard
//! itself on generated frames and on mutations of them.

use interstate_core::wire::{Deliver, Frame};

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn text(rng: &mut Rng) -> String {
    let pool = [
        "a",
        "machine",
        "é",
        "日本",
        "",
        "x".repeat(200).leak(),
        "\u{0}",
        "🦀",
    ];
    (0..rng.below(4))
        .map(|_| pool[rng.below(pool.len() as u64) as usize])
        .collect()
}

fn by_postcard(body: &[u8]) -> Result<Frame<'_>, &'static str> {
    match postcard::take_from_bytes::<Frame<'_>>(body) {
        Ok((f, [])) => Ok(f),
        Ok(_) => Err("trailing"),
        Err(_) => Err("invalid"),
    }
}

fn agree(body: &[u8]) {
    let fast = Frame::decode(body).map_err(|_| ());
    let slow = by_postcard(body).map_err(|_| ());
    assert_eq!(fast, slow, "body {body:02x?}");
}

#[test]
fn hand_read_deliver_frames_agree_with_postcard() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut buf = vec![0u8; 4096];
    for _ in 0..20_000 {
        let (from, to, event) = (text(&mut rng), text(&mut rng), text(&mut rng));
        let payload: Vec<u8> = (0..rng.below(300)).map(|_| rng.next() as u8).collect();
        let seq = match rng.below(5) {
            0 => 0,
            1 => u64::MAX,
            2 => rng.below(300),
            // Each side of a varint's byte boundaries (2^7k - 1 and 2^7k) and between them.
            3 => (1u64 << rng.below(64)).wrapping_sub(rng.below(2)),
            _ => rng.next(),
        };
        let frame = Frame::Deliver(Deliver {
            from: &from,
            to: &to,
            event: &event,
            payload: &payload,
            seq,
            correlation: Default::default(),
        });
        let n = frame.encode(&mut buf).expect("fits");
        assert_eq!(n, frame.encoded_len(), "the size computed without encoding");
        let body = &buf[4..n];
        let by_postcard = postcard::to_slice(&frame, &mut [0u8; 4096][..])
            .expect("fits")
            .to_vec();
        assert_eq!(
            body,
            &by_postcard[..],
            "written by hand as postcard writes it"
        );
        assert_eq!(
            u32::from_le_bytes(buf[..4].try_into().unwrap()) as usize,
            n - 4
        );
        // Too small a buffer is refused, as postcard refuses it.
        let mut small = vec![0u8; rng.below(n as u64) as usize];
        assert!(frame.encode(&mut small).is_err());
        assert_eq!(Frame::decode(body).expect("valid"), frame);
        agree(body);
        // Truncations, extensions and byte mutations.
        agree(&body[..rng.below(body.len() as u64) as usize]);
        let mut longer = body.to_vec();
        longer.push(rng.next() as u8);
        agree(&longer);
        let mut m = body.to_vec();
        for _ in 0..1 + rng.below(3) {
            let i = rng.below(m.len() as u64) as usize;
            m[i] = match rng.below(3) {
                0 => rng.next() as u8,
                1 => 0xFF,
                _ => 0x80 | m[i],
            };
        }
        agree(&m);
    }
}

#[test]
fn unusual_encodings_go_to_postcard() {
    // A non-canonical variant index for Deliver, overlong length varints, a sequence number
    // varint of 10 bytes with too large a last byte, and the largest valid one.
    let cases: &[&[u8]] = &[
        &[0x86, 0x00, 0, 0, 0, 0, 0],
        &[6, 0x80, 0x00, 0, 0, 0, 0],
        &[
            6, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x02,
        ],
        &[
            6, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01,
        ],
        &[
            6, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01,
        ],
        &[6],
        &[],
        // "é" cut between `from` and `to` (the names are checked as UTF-8 in one span, the
        // length prefix between them included), then both halves in one name.
        &[6, 1, 0xC3, 1, 0xA9, 0, 0, 0],
        &[6, 2, 0xC3, 0xA9, 0, 1, b'e', 0, 0],
    ];
    for body in cases {
        agree(body);
    }
    assert!(Frame::decode(cases[3]).is_ok());
    assert!(Frame::decode(cases[7]).is_err());
    let Ok(Frame::Deliver(d)) = Frame::decode(cases[8]) else {
        panic!("a valid Deliver")
    };
    assert_eq!((d.from, d.to, d.event), ("é", "", "e"));
}

/// A Deliver with a correlation (a request, a reply) is its own frame kind, which only the
/// hand reader knows: it round-trips, its size is computed without encoding, and every
/// truncation or bad correlation of it is refused (never taken for another frame).
#[test]
fn correlated_deliver_frames_round_trip_and_refuse_what_is_malformed() {
    use interstate_core::wire::{Correlation, DELIVER_CORRELATED_TAG};
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mut buf = vec![0u8; 4096];
    for _ in 0..5_000 {
        let (from, to, event) = (text(&mut rng), text(&mut rng), text(&mut rng));
        let payload: Vec<u8> = (0..rng.below(100)).map(|_| rng.next() as u8).collect();
        let id = match rng.below(3) {
            0 => 0,
            1 => u32::MAX,
            _ => rng.next() as u32,
        };
        let correlation = if rng.below(2) == 0 {
            Correlation::Request(id)
        } else {
            Correlation::Reply(id)
        };
        let d = Deliver {
            from: &from,
            to: &to,
            event: &event,
            payload: &payload,
            seq: rng.next(),
            correlation,
        };
        let frame = Frame::Deliver(d);
        let n = frame.encode(&mut buf).expect("fits");
        assert_eq!(n, frame.encoded_len());
        assert_eq!(n - 4, d.body_len());
        let body = buf[4..n].to_vec();
        assert_eq!(body[0], DELIVER_CORRELATED_TAG);
        assert_eq!(Frame::decode(&body), Ok(frame));
        for cut in 0..body.len() {
            assert!(Frame::decode(&body[..cut]).is_err(), "cut at {cut}");
        }
        // The correlation's variant index is the second-to-last byte when the id is < 128.
        if id < 128 {
            for bad in [0u8, 3, 0x80] {
                let mut b = body.clone();
                let at = b.len() - 2;
                b[at] = bad;
                assert!(Frame::decode(&b).is_err(), "kind {bad}");
            }
        }
        let mut longer = body.clone();
        longer.push(0);
        assert!(Frame::decode(&longer).is_err(), "trailing byte");
        // Too small a buffer is an error, never the plain flavour written by postcard.
        assert!(frame.encode(&mut vec![0u8; n - 1]).is_err());
    }
}
