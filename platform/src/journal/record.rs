//! One machine's journal file: a header, then checksummed records, each the whole durable
//! state of the machine after one macrostep. The newest intact record is the state; a torn
//! or corrupted tail (a crash in the middle of a write, a bad sector) is found by its
//! length or checksum, dropped, and described.
//!
//! ```text
//! file    = "ISJOURN1" record*
//! record  = len:u32le crc:u32le body[len]        crc: CRC-32 (IEEE) of body
//! body    = steps:u64le seq:u64le senders_len:u32le senders[senders_len]
//!           snapshot_len:u32le snapshot[snapshot_len]
//!           [sent_len:u32le sent[sent_len]]
//! senders = (id_len:u8 id[id_len] pid:u32le delivered:u64le)*
//! sent    = (body_len:u32le deliver[body_len])*
//! ```
//!
//! `steps` counts the records the machine ever wrote (it goes on across compactions), `seq`
//! is the sequence number of the machine's next send (so that a restored machine numbers its
//! sends on from where it was), `senders` the highest sequence number the machine took from
//! each sender (id and process), so that a restored machine knows a retransmission of an
//! event it took for a duplicate, `snapshot` is [`interstate_core::Machine::snapshot`]'s
//! bytes, `sent` the messages the machine sent that were not acknowledged when the record
//! was written (each an encoded `Deliver` body, with its sequence number), so that a
//! restarted process sends them again. A sender's `pid` has its top bit set when the
//! sender was durable (no process id has it): a durable sender's restarted process goes on
//! with its numbers. A record without `sent` (written before it existed) holds none.

/// The first bytes of every journal file (the `1` is the format's version).
pub const MAGIC: &[u8; 8] = b"ISJOURN1";
/// Bytes before a record's body.
pub const RECORD_HEAD: usize = 8;
/// Bytes of a body besides the senders and the snapshot.
const BODY_HEAD: usize = 24;
/// The largest body a reader accepts: a length beyond it is corruption, not a record.
pub const MAX_BODY: usize = 16 << 20;

/// One durable state of a machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// Records written so far, this one included.
    pub steps: u64,
    /// The sequence number of the machine's next send.
    pub seq: u64,
    /// The senders' entries, encoded (see [`push_sender`], [`senders`]).
    pub senders: &'a [u8],
    /// The machine's snapshot.
    pub snapshot: &'a [u8],
    /// Its unacknowledged sends, encoded (see [`push_sent`], [`sent`]).
    pub sent: &'a [u8],
}

/// The top bit of a sender entry's `pid`: the sender was durable.
const DURABLE_SENDER: u32 = 1 << 31;

/// Appends one unacknowledged send (an encoded `Deliver` body) to `out`.
pub fn push_sent(out: &mut Vec<u8>, deliver: &[u8]) {
    out.extend_from_slice(&(deliver.len() as u32).to_le_bytes());
    out.extend_from_slice(deliver);
}

/// The unacknowledged sends of a record, in order, or why they are not sends.
pub fn sent(mut bytes: &[u8]) -> Result<Vec<&[u8]>, &'static str> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        if bytes.len() < 4 {
            return Err("a sent message's length is cut short");
        }
        let len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        if bytes.len() - 4 < len {
            return Err("a sent message is cut short");
        }
        out.push(&bytes[4..4 + len]);
        bytes = &bytes[4 + len..];
    }
    Ok(out)
}

/// Appends a sender's entry (id, process, whether it is durable, highest sequence number
/// taken) to `out`; an id longer than 255 bytes (never a machine id) is left out.
pub fn push_sender(out: &mut Vec<u8>, id: &str, pid: u32, durable: bool, delivered: u64) {
    let Ok(len) = u8::try_from(id.len()) else {
        return;
    };
    out.push(len);
    out.extend_from_slice(id.as_bytes());
    let pid = (pid & !DURABLE_SENDER) | if durable { DURABLE_SENDER } else { 0 };
    out.extend_from_slice(&pid.to_le_bytes());
    out.extend_from_slice(&delivered.to_le_bytes());
}

/// The senders' entries of a record, (id, process, durable, number), or why they are not
/// entries.
pub fn senders(mut bytes: &[u8]) -> Result<Vec<(String, u32, bool, u64)>, &'static str> {
    let mut out = Vec::new();
    while let Some((&len, rest)) = bytes.split_first() {
        let len = usize::from(len);
        if rest.len() < len + 12 {
            return Err("a sender entry is cut short");
        }
        let id = std::str::from_utf8(&rest[..len]).map_err(|_| "a sender id is not UTF-8")?;
        let mut pid = [0; 4];
        pid.copy_from_slice(&rest[len..len + 4]);
        let mut seq = [0; 8];
        seq.copy_from_slice(&rest[len + 4..len + 12]);
        let pid = u32::from_le_bytes(pid);
        out.push((
            id.to_string(),
            pid & !DURABLE_SENDER,
            pid & DURABLE_SENDER != 0,
            u64::from_le_bytes(seq),
        ));
        bytes = &rest[len + 12..];
    }
    Ok(out)
}

/// CRC-32 (IEEE 802.3, reflected), table-free: a journal record is checked once when it
/// is read back and once when written, far from the hot path's budget.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

/// Appends `record`, framed and checksummed, to `out`.
pub fn encode(record: &Record<'_>, out: &mut Vec<u8>) {
    let sent_part = if record.sent.is_empty() {
        0
    } else {
        4 + record.sent.len()
    };
    let body_len = BODY_HEAD + record.senders.len() + record.snapshot.len() + sent_part;
    let start = out.len();
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&record.steps.to_le_bytes());
    out.extend_from_slice(&record.seq.to_le_bytes());
    out.extend_from_slice(&(record.senders.len() as u32).to_le_bytes());
    out.extend_from_slice(record.senders);
    out.extend_from_slice(&(record.snapshot.len() as u32).to_le_bytes());
    out.extend_from_slice(record.snapshot);
    if !record.sent.is_empty() {
        out.extend_from_slice(&(record.sent.len() as u32).to_le_bytes());
        out.extend_from_slice(record.sent);
    }
    let crc = crc32(&out[start + RECORD_HEAD..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// What reading a journal file found.
#[derive(Debug, PartialEq, Eq)]
pub struct Scan<'a> {
    /// The newest intact record, if any.
    pub last: Option<Record<'a>>,
    /// Intact records.
    pub records: usize,
    /// Where the intact part ends (the file is cut there when it is reopened).
    pub good_len: usize,
    /// What follows the intact part, when something does: why it was not taken.
    pub dropped: Option<Dropped>,
}

/// A tail of a journal file that was not a record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dropped {
    /// Its length in bytes.
    pub bytes: usize,
    /// Why it was not taken, for the log and the status.
    pub reason: &'static str,
}

/// Why a file is not a journal at all (its header is not one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotAJournal;

/// Reads every record of `file`. Never panics on any bytes: a header that is not one is
/// [`NotAJournal`]; anything after the last intact record is [`Scan::dropped`]. An empty
/// file (a crash before its header was written) holds no record.
pub fn scan(file: &[u8]) -> Result<Scan<'_>, NotAJournal> {
    let mut scan = Scan {
        last: None,
        records: 0,
        good_len: 0,
        dropped: None,
    };
    if file.is_empty() {
        return Ok(scan);
    }
    if file.len() < MAGIC.len() {
        if MAGIC.starts_with(file) {
            // The header itself was torn.
            scan.dropped = Some(Dropped {
                bytes: file.len(),
                reason: "a torn header",
            });
            return Ok(scan);
        }
        return Err(NotAJournal);
    }
    if &file[..MAGIC.len()] != MAGIC {
        return Err(NotAJournal);
    }
    let mut at = MAGIC.len();
    scan.good_len = at;
    while at < file.len() {
        let rest = &file[at..];
        let reason = match read_one(rest) {
            Ok((record, used)) => {
                scan.last = Some(record);
                scan.records += 1;
                at += used;
                scan.good_len = at;
                continue;
            }
            Err(reason) => reason,
        };
        scan.dropped = Some(Dropped {
            bytes: rest.len(),
            reason,
        });
        break;
    }
    Ok(scan)
}

fn read_one(bytes: &[u8]) -> Result<(Record<'_>, usize), &'static str> {
    let u32_at = |b: &[u8], i: usize| -> u32 {
        let mut a = [0; 4];
        a.copy_from_slice(&b[i..i + 4]);
        u32::from_le_bytes(a)
    };
    let u64_at = |b: &[u8], i: usize| -> u64 {
        let mut a = [0; 8];
        a.copy_from_slice(&b[i..i + 8]);
        u64::from_le_bytes(a)
    };
    if bytes.len() < RECORD_HEAD {
        return Err("a torn record header");
    }
    let len = u32_at(bytes, 0) as usize;
    if !(BODY_HEAD..=MAX_BODY).contains(&len) {
        return Err("a record length out of range");
    }
    if bytes.len() - RECORD_HEAD < len {
        return Err("a torn record (shorter than its length)");
    }
    let body = &bytes[RECORD_HEAD..RECORD_HEAD + len];
    if crc32(body) != u32_at(bytes, 4) {
        return Err("a record whose checksum does not match");
    }
    let senders_len = u32_at(body, 16) as usize;
    if senders_len > len - BODY_HEAD {
        return Err("a record whose senders' length exceeds its length");
    }
    let senders_end = 20 + senders_len;
    let snapshot_len = u32_at(body, senders_end) as usize;
    let after = len - BODY_HEAD - senders_len;
    if snapshot_len > after {
        return Err("a record whose snapshot length exceeds its length");
    }
    let snapshot_end = senders_end + 4 + snapshot_len;
    let sent = match after - snapshot_len {
        0 => &body[snapshot_end..],
        rest if rest >= 4 && u32_at(body, snapshot_end) as usize == rest - 4 => {
            &body[snapshot_end + 4..]
        }
        _ => return Err("a record whose sent messages' length disagrees with its length"),
    };
    let record = Record {
        steps: u64_at(body, 0),
        seq: u64_at(body, 8),
        senders: &body[20..senders_end],
        snapshot: &body[senders_end + 4..snapshot_end],
        sent,
    };
    Ok((record, RECORD_HEAD + len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(records: &[Record<'_>]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        for r in records {
            encode(r, &mut out);
        }
        out
    }

    #[test]
    fn crc32_is_the_ieee_checksum() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn the_newest_intact_record_wins() {
        let a = Record {
            steps: 1,
            seq: 10,
            senders: b"",
            snapshot: b"first",
            sent: b"",
        };
        let b = Record {
            steps: 2,
            seq: 11,
            senders: b"",
            snapshot: b"second one",
            sent: b"",
        };
        let bytes = file(&[a, b.clone()]);
        let s = scan(&bytes).unwrap();
        assert_eq!(s.last, Some(b));
        assert_eq!(s.records, 2);
        assert_eq!(s.good_len, bytes.len());
        assert_eq!(s.dropped, None);
    }

    #[test]
    fn a_torn_or_corrupted_tail_is_dropped_and_described_at_every_cut() {
        let a = Record {
            steps: 1,
            seq: 10,
            senders: b"",
            snapshot: b"first",
            sent: b"",
        };
        let b = Record {
            steps: 2,
            seq: 11,
            senders: b"",
            snapshot: b"second",
            sent: b"m1",
        };
        let one = file(std::slice::from_ref(&a));
        let two = file(&[a.clone(), b]);
        for cut in one.len() + 1..two.len() {
            let s = scan(&two[..cut]).unwrap();
            assert_eq!(s.last, Some(a.clone()), "cut at {cut}");
            assert_eq!(s.good_len, one.len());
            assert_eq!(s.dropped.as_ref().unwrap().bytes, cut - one.len());
        }
        for flip in one.len()..two.len() {
            let mut bad = two.clone();
            bad[flip] ^= 0x40;
            let s = scan(&bad).unwrap();
            assert_eq!(s.last, Some(a.clone()), "flip at {flip}");
            assert!(s.dropped.is_some());
        }
    }

    #[test]
    fn a_torn_header_holds_nothing_and_a_foreign_file_is_refused() {
        assert_eq!(scan(b"").unwrap().last, None);
        let s = scan(b"ISJO").unwrap();
        assert_eq!((s.last, s.dropped.unwrap().bytes), (None, 4));
        assert_eq!(scan(b"{\"json\": true}"), Err(NotAJournal));
        assert_eq!(scan(b"no"), Err(NotAJournal));
    }

    #[test]
    fn arbitrary_bytes_after_the_header_never_panic() {
        let mut seed = 0x9E37_79B9u32;
        for n in 0..2000 {
            let mut bytes = MAGIC.to_vec();
            for _ in 0..(n % 97) {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                bytes.push(seed as u8);
            }
            let s = scan(&bytes).unwrap();
            assert!(s.good_len <= bytes.len());
        }
    }

    #[test]
    fn senders_round_trip_and_bad_entries_are_refused() {
        let mut enc = Vec::new();
        push_sender(&mut enc, "src", 41, false, 100);
        push_sender(&mut enc, "other", 7, true, u64::MAX);
        let r = Record {
            steps: 3,
            seq: 9,
            senders: &enc,
            snapshot: b"snap",
            sent: b"",
        };
        let bytes = file(std::slice::from_ref(&r));
        let back = scan(&bytes).unwrap().last.unwrap();
        assert_eq!(back, r);
        assert_eq!(
            senders(back.senders).unwrap(),
            [
                ("src".to_string(), 41, false, 100),
                ("other".to_string(), 7, true, u64::MAX)
            ]
        );
        assert!(senders(&enc[..enc.len() - 1]).is_err());
        assert!(senders(&[1, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn unacknowledged_sends_round_trip_and_a_record_without_them_still_reads() {
        let mut enc = Vec::new();
        push_sent(&mut enc, b"first deliver");
        push_sent(&mut enc, b"");
        push_sent(&mut enc, b"third");
        let r = Record {
            steps: 4,
            seq: 12,
            senders: b"",
            snapshot: b"snap",
            sent: &enc,
        };
        let bytes = file(std::slice::from_ref(&r));
        let back = scan(&bytes).unwrap().last.unwrap();
        assert_eq!(back, r);
        assert_eq!(
            sent(back.sent).unwrap(),
            [&b"first deliver"[..], b"", b"third"]
        );
        assert!(sent(&enc[..enc.len() - 1]).is_err());
        assert!(sent(&enc[..2]).is_err());
        // A record as written before sends were journalled: the snapshot ends the body.
        let mut old = MAGIC.to_vec();
        let body: Vec<u8> = [
            &4u64.to_le_bytes()[..],
            &12u64.to_le_bytes(),
            &0u32.to_le_bytes(),
            &4u32.to_le_bytes(),
            b"snap",
        ]
        .concat();
        old.extend_from_slice(&(body.len() as u32).to_le_bytes());
        old.extend_from_slice(&crc32(&body).to_le_bytes());
        old.extend_from_slice(&body);
        let back = scan(&old).unwrap().last.unwrap();
        assert_eq!((back.snapshot, back.sent), (&b"snap"[..], &b""[..]));
    }
}
