//! The worked examples of `docs/wire.md`, byte for byte.
//!
//! Every frame below is encoded with the real encoder and compared with the hex written here,
//! and every hex dump must appear verbatim in `docs/wire.md`; the doc's frame table must name
//! exactly the variants the decoder knows, at their indices. So the doc cannot drift from the
//! code: change a frame and this test says which example to regenerate (it prints the new
//! bytes).

use interstate::core::wire::{
    Correlation, Deliver, DeliveryFailed, FailReason, Frame, Hello, RegisterStatus, RegistryEntry,
    Reject, RejectCode, TopicStatus, Welcome, MAGIC, PROTOCOL_VERSION,
};
use interstate::core::TransportKind;

const DOC: &str = include_str!("../docs/wire.md");

fn encode(frame: &Frame<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; 1024];
    let n = frame.encode(&mut buf).expect("the example frame encodes");
    buf.truncate(n);
    assert_eq!(n, frame.encoded_len(), "encoded_len agrees with encode");
    buf
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The doc with every run of whitespace (and table pipes' surroundings) made one space.
fn doc_normalized() -> String {
    DOC.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn examples() -> Vec<(Frame<'static>, &'static str)> {
    vec![
        (
            Frame::Hello(Hello {
                magic: MAGIC,
                version: PROTOCOL_VERSION,
                max_frame: 65536,
                pid: 4242,
                executable: "echo_machine.py",
            }),
            "1c 00 00 00 00 c9 a6 d1 92 04 06 80 80 04 92 21 0f 65 63 68 6f 5f 6d 61 63 68 69 6e 65 2e 70 79",
        ),
        (
            Frame::Deliver(Deliver {
                from: "m",
                to: "py-echo",
                event: "PING",
                payload: b"{\"n\":1}",
                seq: 300,
                correlation: Default::default(),
            }),
            "1a 00 00 00 06 01 6d 07 70 79 2d 65 63 68 6f 04 50 49 4e 47 07 7b 22 6e 22 3a 31 7d ac 02",
        ),
        (
            Frame::Deliver(Deliver {
                from: "ui",
                to: "worker",
                event: "WORK",
                payload: b"{\"job\":1}",
                seq: 5,
                correlation: Correlation::Request(7),
            }),
            "1d 00 00 00 1c 02 75 69 06 77 6f 72 6b 65 72 04 57 4f 52 4b 09 7b 22 6a 6f 62 22 3a 31 7d 05 01 07",
        ),
        (
            Frame::Deliver(Deliver {
                from: "worker",
                to: "ui",
                event: "DONE",
                payload: b"",
                seq: 9,
                correlation: Correlation::Reply(7),
            }),
            "14 00 00 00 1c 06 77 6f 72 6b 65 72 02 75 69 04 44 4f 4e 45 00 09 02 07",
        ),
        (
            Frame::Welcome(Welcome {
                version: 3,
                max_frame: 65536,
                link: 3,
                hub_pid: 4100,
            }),
            "08 00 00 00 01 03 80 80 04 03 84 20",
        ),
        (
            Frame::Reject(Reject {
                code: RejectCode::Version,
                version: 3,
                message: "bad",
            }),
            "07 00 00 00 02 01 03 03 62 61 64",
        ),
        (
            Frame::Register { machine: "py-echo" },
            "09 00 00 00 03 07 70 79 2d 65 63 68 6f",
        ),
        (
            Frame::RegisterResult {
                machine: "py-echo",
                status: RegisterStatus::Ok,
            },
            "0a 00 00 00 04 07 70 79 2d 65 63 68 6f 00",
        ),
        (
            Frame::Unregister { machine: "py-echo" },
            "09 00 00 00 05 07 70 79 2d 65 63 68 6f",
        ),
        (
            Frame::DeliveryFailed(DeliveryFailed {
                from: "m",
                to: "nobody",
                event: "PING",
                seq: 2,
                reason: FailReason::UnknownTarget,
                detail: "",
            }),
            "12 00 00 00 07 01 6d 06 6e 6f 62 6f 64 79 04 50 49 4e 47 02 00 00",
        ),
        (
            Frame::Subscribe {
                registry: true,
                monitor: false,
            },
            "03 00 00 00 08 01 00",
        ),
        (
            Frame::RegistryEntry(RegistryEntry {
                machine: "py-echo",
                pid: 4242,
                uid: 1000,
                executable: "python3",
                transport: TransportKind::UnixSocket,
                since_ms: 1_700_000_000_000,
                durable: false,
            }),
            "1d 00 00 00 09 07 70 79 2d 65 63 68 6f 92 21 e8 07 07 70 79 74 68 6f 6e 33 01 80 d0 95 ff bc 31 00",
        ),
        (
            Frame::RegistryRemoved { machine: "py-echo" },
            "09 00 00 00 0a 07 70 79 2d 65 63 68 6f",
        ),
        (Frame::SnapshotEnd, "01 00 00 00 0b"),
        (
            Frame::Monitored {
                link: 3,
                at_ms: 5,
                frame: &[0x0d, 0x07],
            },
            "06 00 00 00 0c 03 05 02 0d 07",
        ),
        (Frame::Ping { nonce: 7 }, "02 00 00 00 0d 07"),
        (Frame::Pong { nonce: 7 }, "02 00 00 00 0e 07"),
        (
            Frame::Goodbye { reason: "bye" },
            "05 00 00 00 0f 03 62 79 65",
        ),
        (
            Frame::Ack {
                from: "py-echo",
                to: "m",
                seq: 300,
            },
            "0d 00 00 00 10 07 70 79 2d 65 63 68 6f 01 6d ac 02",
        ),
        (
            Frame::Watch {
                machine: "py-echo",
                on: true,
            },
            "0a 00 00 00 11 07 70 79 2d 65 63 68 6f 01",
        ),
        (
            Frame::Report {
                machine: "py-echo",
                on: false,
            },
            "0a 00 00 00 12 07 70 79 2d 65 63 68 6f 00",
        ),
        (
            Frame::State {
                machine: "m",
                report: br#"{"state":"on"}"#,
            },
            "12 00 00 00 13 01 6d 0e 7b 22 73 74 61 74 65 22 3a 22 6f 6e 22 7d",
        ),
        (
            Frame::Stopped {
                machine: "py-echo",
                error: "loop",
            },
            "0e 00 00 00 14 07 70 79 2d 65 63 68 6f 04 6c 6f 6f 70",
        ),
        (
            Frame::DeliveryFailed(DeliveryFailed {
                from: "m",
                to: "py-echo",
                event: "PING",
                seq: 3,
                reason: FailReason::TargetStopped,
                detail: "loop",
            }),
            "17 00 00 00 07 01 6d 07 70 79 2d 65 63 68 6f 04 50 49 4e 47 03 07 04 6c 6f 6f 70",
        ),
        (
            Frame::NodeFailure(DeliveryFailed {
                from: "m",
                to: "py-echo",
                event: "PING",
                seq: 4,
                reason: FailReason::TooLarge,
                detail: "",
            }),
            "13 00 00 00 15 01 6d 07 70 79 2d 65 63 68 6f 04 50 49 4e 47 04 04 00",
        ),
        (
            Frame::Deliver(Deliver {
                from: "py-echo",
                to: "m",
                event: "PONG",
                payload: b"",
                seq: 1,
                correlation: Default::default(),
            }),
            "12 00 00 00 06 07 70 79 2d 65 63 68 6f 01 6d 04 50 4f 4e 47 00 01",
        ),
        (
            Frame::TopicSubscribe {
                machine: "py-echo",
                filter: "a/+",
            },
            "0d 00 00 00 16 07 70 79 2d 65 63 68 6f 03 61 2f 2b",
        ),
        (
            Frame::TopicUnsubscribe {
                machine: "py-echo",
                filter: "a/+",
            },
            "0d 00 00 00 17 07 70 79 2d 65 63 68 6f 03 61 2f 2b",
        ),
        (
            Frame::TopicResult {
                machine: "py-echo",
                filter: "a/+",
                status: TopicStatus::TooMany,
            },
            "0e 00 00 00 18 07 70 79 2d 65 63 68 6f 03 61 2f 2b 03",
        ),
        (Frame::TopicWatch { on: true }, "02 00 00 00 19 01"),
        (
            Frame::TopicEntry {
                machine: "py-echo",
                filter: "a/+",
                on: true,
            },
            "0e 00 00 00 1a 07 70 79 2d 65 63 68 6f 03 61 2f 2b 01",
        ),
        (Frame::TopicSnapshotEnd, "01 00 00 00 1b"),
        (Frame::StatsRequest { link: 3 }, "02 00 00 00 1d 03"),
        (
            Frame::Stats {
                link: 0,
                expect: 1,
                report: b"{}",
            },
            "06 00 00 00 1e 00 01 02 7b 7d",
        ),
        (
            Frame::RegisterDurable { machine: "py-echo" },
            "09 00 00 00 1f 07 70 79 2d 65 63 68 6f",
        ),
        (
            Frame::Resending { machine: "py-echo" },
            "09 00 00 00 20 07 70 79 2d 65 63 68 6f",
        ),
        (Frame::DirectAllow { pairs: 4 }, "02 00 00 00 21 04"),
        (
            Frame::DirectOffer {
                pair: 1,
                peer_pid: 4242,
            },
            "04 00 00 00 22 01 92 21",
        ),
        (Frame::DirectOpen { pair: 1 }, "02 00 00 00 23 01"),
        (Frame::DirectClose { pair: 1 }, "02 00 00 00 24 01"),
        (
            Frame::Deliver(Deliver {
                from: "m",
                to: "py-echo",
                event: "a/1\0HI",
                payload: b"",
                seq: 2,
                correlation: Default::default(),
            }),
            "14 00 00 00 06 01 6d 07 70 79 2d 65 63 68 6f 06 61 2f 31 00 48 49 00 02",
        ),
    ]
}

#[test]
fn example_frames_encode_to_the_documented_bytes() {
    let mut wrong = Vec::new();
    for (frame, expected) in examples() {
        let got = hex(&encode(&frame));
        if got != expected {
            wrong.push(format!("{frame:?}\n  doc:  {expected}\n  code: {got}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "docs/wire.md and this test need the new bytes:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn documented_bytes_decode_back_to_the_frames() {
    for (frame, expected) in examples() {
        let bytes: Vec<u8> = expected
            .split(' ')
            .map(|h| u8::from_str_radix(h, 16).unwrap())
            .collect();
        let (len, body) = bytes.split_at(4);
        assert_eq!(
            u32::from_le_bytes(len.try_into().unwrap()) as usize,
            body.len(),
            "length prefix of {expected}"
        );
        assert_eq!(Frame::decode(body).expect("decodes"), frame);
    }
}

#[test]
fn every_example_appears_verbatim_in_the_doc() {
    let doc = doc_normalized();
    let missing: Vec<_> = examples()
        .into_iter()
        .filter(|(_, hex)| !doc.contains(hex))
        .map(|(f, hex)| format!("{f:?}: {hex}"))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/wire.md lacks these dumps:\n{}",
        missing.join("\n")
    );
}

/// `RegisterResult` -> `register-result`, as `Frame::kind` names it.
fn kebab(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('-');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// The frame a body of `index` followed by zeros decodes to, for some number of zeros. Zero
/// bytes are a valid encoding of every field type the protocol uses (empty strings, 0, false,
/// the first variant), so every variant the decoder knows is found this way; so is the
/// correlated Deliver, whose last field (a `Correlation`) may not be `None`: it is tried
/// with the zeros followed by `Request(0)` (`01 00`).
fn probe(index: u8) -> Option<&'static str> {
    (0..64).find_map(|zeros| {
        let mut body = vec![index];
        body.resize(1 + zeros, 0);
        let plain = Frame::decode(&body).ok().map(|f| f.kind());
        body.extend_from_slice(&[1, 0]);
        plain.or_else(|| Frame::decode(&body).ok().map(|f| f.kind()))
    })
}

#[test]
fn the_doc_frame_table_lists_every_variant_at_its_index() {
    // Rows of the table under "### The `Frame` enum": | index | `Name` | ...
    let section = DOC
        .split("### The `Frame` enum")
        .nth(1)
        .expect("the doc has the frame table")
        .split("\n### ")
        .next()
        .unwrap();
    let mut rows = Vec::new();
    for line in section.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() > 3 {
            if let Ok(i) = cells[1].parse::<u8>() {
                rows.push((i, cells[2].trim_matches('`').to_string()));
            }
        }
    }
    assert!(rows.len() >= 16, "frame table not found: {rows:?}");
    for (n, (i, name)) in rows.iter().enumerate() {
        assert_eq!(*i as usize, n, "the table's indices are 0, 1, 2, ...");
        if name == "(reserved)" {
            assert_eq!(
                probe(*i),
                None,
                "variant {i} is reserved: nothing decodes to it"
            );
            continue;
        }
        assert_eq!(
            probe(*i),
            Some(kebab(name).as_str()),
            "docs/wire.md says variant {i} is {name}"
        );
    }
    let next = rows.len() as u8;
    assert_eq!(
        probe(next),
        None,
        "the decoder knows a frame variant {next} that docs/wire.md does not document"
    );
}

#[test]
fn frame_kinds_counts_every_variant_the_decoder_knows() {
    use interstate::core::wire::{is_unknown_kind, FRAME_KINDS};
    assert!(probe(FRAME_KINDS - 1).is_some());
    assert!(probe(FRAME_KINDS).is_none());
    assert!(is_unknown_kind(&[FRAME_KINDS]) && !is_unknown_kind(&[FRAME_KINDS - 1]));
}
