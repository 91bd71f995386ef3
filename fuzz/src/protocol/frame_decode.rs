//! Target `frame_decode`: bytes as one frame body and as a length-delimited stream.

use interstate_core::wire::{split_frame, Frame, LEN_PREFIX};
use interstate_core::Error;

/// Checks one frame body: decoding agrees with postcard's (and encoding with postcard's
/// output), never panics and fails only with `MalformedFrame`; a
/// decoded frame re-encodes (no longer than the input, `encoded_len` exact) to bytes that
/// decode to the same frame, and to the same bytes again (the encoding is canonical).
pub fn check_body(body: &[u8]) {
    // Deliver frames are read and written by hand: exactly as postcard reads and writes them.
    let by_postcard = match postcard::take_from_bytes::<Frame<'_>>(body) {
        Ok((f, [])) => Some(f),
        _ => None,
    };
    assert_eq!(
        Frame::decode(body).ok(),
        by_postcard,
        "Frame::decode and postcard disagree"
    );
    if let Some(f) = by_postcard {
        let mut ours = vec![0u8; body.len() + LEN_PREFIX];
        let n = f.encode(&mut ours).expect("re-encodes");
        let theirs = postcard::to_allocvec(&f).expect("postcard encodes");
        assert_eq!(
            &ours[LEN_PREFIX..n],
            &theirs[..],
            "Frame::encode and postcard disagree"
        );
    }
    match Frame::decode(body) {
        Ok(f) => {
            assert!(!f.kind().is_empty());
            let mut buf = vec![0u8; body.len() + LEN_PREFIX];
            let n = f.encode(&mut buf).unwrap_or_else(|e| {
                panic!("a decoded frame does not re-encode in as many bytes: {e}")
            });
            assert_eq!(n, f.encoded_len(), "encoded_len disagrees with encode");
            assert!(
                n - LEN_PREFIX <= body.len(),
                "re-encoding is longer than the input"
            );
            assert_eq!(
                u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize,
                n - LEN_PREFIX,
                "length prefix"
            );
            let again = Frame::decode(&buf[LEN_PREFIX..n])
                .unwrap_or_else(|e| panic!("a re-encoded frame does not decode: {e}"));
            assert_eq!(again, f, "the round trip changed the frame");
            let mut buf2 = vec![0u8; n];
            let m = again.encode(&mut buf2).expect("encodes again");
            assert_eq!(&buf[..n], &buf2[..m], "the encoding is not canonical");
            // Too small a buffer is an error, never a panic or a short write.
            if n > LEN_PREFIX {
                let mut small = vec![0u8; n - 1];
                assert!(
                    f.encode(&mut small).is_err(),
                    "encoded into too small a buffer"
                );
            }
        }
        Err(Error::MalformedFrame(_)) => {}
        Err(e) => panic!("Frame::decode failed with an unexpected error: {e:?}"),
    }
}

/// Target `frame_decode`: the input as one frame body, then as a stream of length-prefixed
/// frames split with `split_frame` under a largest frame chosen by the first two bytes.
pub fn frame_decode(data: &[u8]) {
    check_body(data);
    let max = match data {
        [a, b, ..] => u32::from(u16::from_le_bytes([*a, *b])) * 4,
        _ => 64,
    };
    let mut rest = data;
    loop {
        match split_frame(rest, max) {
            Ok(Some((body, used))) => {
                assert_eq!(used, LEN_PREFIX + body.len(), "consumed");
                assert!(used <= rest.len(), "consumed past the end");
                assert!(body.len() as u32 <= max, "a body above the largest frame");
                assert_eq!(
                    body,
                    &rest[LEN_PREFIX..used],
                    "the body is not the bytes after the prefix"
                );
                check_body(body);
                rest = &rest[used..];
            }
            Ok(None) => {
                if rest.len() >= LEN_PREFIX {
                    let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
                    assert!(len <= max && rest.len() < LEN_PREFIX + len as usize);
                }
                break;
            }
            Err(Error::FrameTooLarge { len, max: m }) => {
                assert!(len > m && m == max, "refused a frame that fits");
                break;
            }
            Err(e) => panic!("split_frame failed with an unexpected error: {e:?}"),
        }
    }
}
