//! TEMPORARY (not for merging): where a paced message's time goes at the hub. With
//! INTERSTATE_STAGE_PROBE=<file>, every Deliver frame of event `P` whose payload starts with
//! a wall-clock stamp is noted when read, and the end of the turn that wrote it: one line
//! "stamp_ns read_ns written_ns" per message.
use std::io::Write;
use std::sync::Mutex;

static STATE: Mutex<Option<(std::fs::File, Vec<(u64, u64)>)>> = Mutex::new(None);
static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

fn on() -> bool {
    *ON.get_or_init(|| {
        let Ok(path) = std::env::var("INTERSTATE_STAGE_PROBE") else {
            return false;
        };
        let Ok(f) = std::fs::File::create(path) else {
            return false;
        };
        *STATE.lock().unwrap() = Some((f, Vec::new()));
        true
    })
}

fn wall_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

pub(super) fn frame_read(body: &[u8]) {
    if !on() {
        return;
    }
    let Ok(interstate_core::wire::Frame::Deliver(d)) = interstate_core::wire::Frame::decode(body)
    else {
        return;
    };
    if d.event != "P" || d.payload.len() < 8 {
        return;
    }
    let stamp = u64::from_le_bytes(d.payload[..8].try_into().unwrap());
    if let Some((_, v)) = STATE.lock().unwrap().as_mut() {
        v.push((stamp, wall_ns()));
    }
}

pub(super) fn turn_written() {
    if !on() {
        return;
    }
    let mut g = STATE.lock().unwrap();
    let Some((f, v)) = g.as_mut() else { return };
    if v.is_empty() {
        return;
    }
    let now = wall_ns();
    let mut s = String::new();
    for (stamp, read) in v.drain(..) {
        s += &format!("{stamp} {read} {now}\n");
    }
    let _ = f.write_all(s.as_bytes());
}
