//! The journal: each durable machine's state after every macrostep, in a file of its own
//! under the node's state directory (`NodeConfig::state_dir`), so that a process restarted
//! after a crash goes on from where its machines were.
//!
//! A machine's file (`<id>.journal`) is append-only: each record is the machine's whole
//! snapshot after one step, with a length and a CRC-32 ([`record`]). Reading it back takes
//! the newest intact record; a torn or corrupted tail is dropped (the file is cut back to
//! the intact part), logged, and kept in [`Journal::dropped`] for the node's status. Once
//! it holds [`COMPACT_BYTES`] the file is replaced by one holding only the newest record:
//! written to `<id>.journal.tmp`, synced, renamed over the old file, and the directory
//! synced, so a crash at any point leaves either file whole (under the `None` policy the
//! two syncs are left out: a crash of the process, which is what that policy survives,
//! leaves the OS with both files whole anyway).
//!
//! When a record is on disk for good is the [`Durability`] policy: synced after every step,
//! by groups of steps (by count and by time), or left to the OS. The node acknowledges an
//! event a durable machine took only once the record of that step is synced (with `None`,
//! at once): see `docs/persistence.md`.
//!
//! For tests, `INTERSTATE_JOURNAL_CRASH=POINT:N` aborts the process the `N`th time it passes
//! `POINT`: `torn` (half of a record written), `before-sync` (a record written, not synced),
//! `before-rename` (a compacted file synced, not renamed over the old one), `after-rename`
//! (renamed, the directory not synced).

pub mod record;

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap as HashMap;

use crate::error::PlatformError;
use record::{Dropped, Record, MAGIC};

/// Bytes a machine's file grows to before it is compacted to its newest record (at least
/// two records). `INTERSTATE_JOURNAL_COMPACT=BYTES` sets another size (for tests).
pub const COMPACT_BYTES: u64 = 1 << 20;

/// When a journal record is on disk for good.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// `fdatasync` after every step: an acknowledged event's step survives a power loss.
    /// The slowest: one disk flush per event.
    Fsync,
    /// `fdatasync` once per group: when `steps` records wait, or `within` after the first
    /// of them, whichever comes first. Acknowledgements wait for their group, so nothing
    /// acknowledged is lost; events are acknowledged up to `within` later.
    Group {
        /// Records per flush at most.
        steps: u32,
        /// How long a record waits for its flush at most.
        within: Duration,
    },
    /// Written every step, never flushed by the node: survives the process's crash (the OS
    /// has the data), not the machine's. Acknowledgements do not wait.
    None,
}

impl Durability {
    /// The group policy's defaults: 64 steps or 5 ms.
    pub const GROUP: Durability = Durability::Group {
        steps: 64,
        within: Duration::from_millis(5),
    };

    /// What [`Durability::from_str`] accepts.
    pub const ALLOWED: &'static str =
        "use fsync, group (64 steps or 5ms), group:STEPS:MILLISECONDS (e.g. group:32:2) or none";
}

impl FromStr for Durability {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("'{s}' is not a durability policy: {}", Durability::ALLOWED);
        match s {
            "fsync" => Ok(Durability::Fsync),
            "none" => Ok(Durability::None),
            "group" => Ok(Durability::GROUP),
            _ => {
                let rest = s.strip_prefix("group:").ok_or_else(bad)?;
                let (steps, ms) = rest.split_once(':').ok_or_else(bad)?;
                let steps: u32 = steps.parse().map_err(|_| bad())?;
                let ms: u64 = ms.parse().map_err(|_| bad())?;
                if steps == 0 {
                    return Err(bad());
                }
                Ok(Durability::Group {
                    steps,
                    within: Duration::from_millis(ms),
                })
            }
        }
    }
}

impl std::fmt::Display for Durability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Durability::Fsync => f.write_str("fsync"),
            Durability::None => f.write_str("none"),
            Durability::Group { steps, within } => {
                write!(f, "group:{steps}:{}", within.as_millis())
            }
        }
    }
}

/// A machine's state as its journal last recorded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovered {
    /// Records the machine wrote before.
    pub steps: u64,
    /// The sequence number of its next send.
    pub seq: u64,
    /// The highest sequence number it took from each sender: (id, process, whether the
    /// sender is durable, number).
    pub senders: Vec<(String, u32, bool, u64)>,
    /// Its snapshot.
    pub snapshot: Vec<u8>,
    /// The messages it had sent and not had acknowledged, in order (encoded `Deliver`
    /// bodies): its restarted process sends them again.
    pub sent: Vec<Vec<u8>>,
}

/// A torn or corrupted tail dropped from a machine's journal when it was opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DroppedTail {
    /// The machine.
    pub machine: String,
    /// Its file.
    pub path: PathBuf,
    /// What was dropped and why.
    pub dropped: Dropped,
}

impl std::fmt::Display for DroppedTail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "machine '{}': dropped {} bytes at the end of its journal {} ({}); it goes on \
             from the last intact record",
            self.machine,
            self.dropped.bytes,
            self.path.display(),
            self.dropped.reason
        )
    }
}

struct MachineFile {
    file: File,
    path: PathBuf,
    /// Records in the file.
    records: u32,
    /// Bytes in the file.
    len: u64,
    /// Records written, across compactions.
    steps: u64,
    /// Whether a record was written and not synced.
    unsynced: bool,
}

/// Counters of a journal.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JournalStats {
    /// Records written.
    pub records: u64,
    /// Bytes written (records and compactions).
    pub bytes: u64,
    /// `fdatasync` calls on machine files.
    pub syncs: u64,
    /// Compactions.
    pub compactions: u64,
}

/// The node's journal: one file per durable machine in one directory.
pub struct Journal {
    dir: PathBuf,
    durability: Durability,
    files: HashMap<String, MachineFile>,
    /// Records written since the last sync (group policy).
    pending: u32,
    /// When the oldest of them was written.
    pending_since: Option<Instant>,
    dropped: Vec<DroppedTail>,
    scratch: Vec<u8>,
    crash: CrashPoint,
    stats: JournalStats,
    compact_bytes: u64,
}

impl Journal {
    /// Opens (creating it if needed, mode 0700) the state directory `dir`.
    pub fn open(dir: &Path, durability: Durability) -> Result<Journal, PlatformError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| PlatformError::io("creating the state directory", Some(dir), e))?;
        Ok(Journal {
            dir: dir.to_path_buf(),
            durability,
            files: HashMap::default(),
            pending: 0,
            pending_since: None,
            dropped: Vec::new(),
            scratch: Vec::new(),
            crash: CrashPoint::from_env(),
            stats: JournalStats::default(),
            compact_bytes: std::env::var("INTERSTATE_JOURNAL_COMPACT")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(COMPACT_BYTES),
        })
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The policy.
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// Counters.
    pub fn stats(&self) -> JournalStats {
        self.stats
    }

    /// The tails dropped from files opened so far.
    pub fn dropped(&self) -> &[DroppedTail] {
        &self.dropped
    }

    /// The file of machine `id`.
    pub fn path_of(&self, id: &str) -> PathBuf {
        self.dir.join(file_name(id))
    }

    /// Opens machine `id`'s file and returns its newest intact record, if any. A torn or
    /// corrupted tail is cut off the file and returned (also kept in
    /// [`dropped`](Self::dropped)); an unfinished compaction's file is removed.
    pub fn open_machine(
        &mut self,
        id: &str,
    ) -> Result<(Option<Recovered>, Option<DroppedTail>), PlatformError> {
        let path = self.path_of(id);
        let tmp = tmp_path(&path);
        // A compaction that crashed before its rename: the old file is whole.
        match std::fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(PlatformError::io(
                    "removing a journal's leftover",
                    Some(&tmp),
                    e,
                ))
            }
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| PlatformError::io("opening a machine's journal", Some(&path), e))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| PlatformError::io("reading a machine's journal", Some(&path), e))?;
        let scan = record::scan(&bytes).map_err(|_| PlatformError::Journal {
            machine: id.to_string(),
            path: path.clone(),
            problem: "the file is not an interstate journal (its header is wrong): move it \
                      away or choose another --state-dir"
                .into(),
        })?;
        let recovered = match scan.last.as_ref() {
            None => None,
            Some(r) => Some(Recovered {
                steps: r.steps,
                seq: r.seq,
                senders: record::senders(r.senders).map_err(|problem| PlatformError::Journal {
                    machine: id.to_string(),
                    path: path.clone(),
                    problem: format!(
                        "its newest record is intact but {problem}: move the file away to \
                         start afresh"
                    ),
                })?,
                snapshot: r.snapshot.to_vec(),
                sent: record::sent(r.sent)
                    .map_err(|problem| PlatformError::Journal {
                        machine: id.to_string(),
                        path: path.clone(),
                        problem: format!(
                            "its newest record is intact but {problem}: move the file away \
                             to start afresh"
                        ),
                    })?
                    .into_iter()
                    .map(<[u8]>::to_vec)
                    .collect(),
            }),
        };
        let io = |what: &str, e| PlatformError::io(what.to_string(), Some(&path), e);
        let mut good_len = scan.good_len;
        if good_len < MAGIC.len() {
            // New (or its header torn): write the header.
            file.set_len(0).map_err(|e| io("cutting a journal", e))?;
            file.write_all(MAGIC)
                .map_err(|e| io("writing a journal's header", e))?;
            file.sync_data().map_err(|e| io("syncing a journal", e))?;
            sync_dir(&self.dir)?;
            good_len = MAGIC.len();
        } else if good_len < bytes.len() {
            file.set_len(good_len as u64)
                .map_err(|e| io("cutting a journal's torn tail", e))?;
            file.sync_data().map_err(|e| io("syncing a journal", e))?;
        }
        use std::io::Seek;
        file.seek(std::io::SeekFrom::Start(good_len as u64))
            .map_err(|e| io("seeking in a journal", e))?;
        let dropped = scan.dropped.map(|dropped| DroppedTail {
            machine: id.to_string(),
            path: path.clone(),
            dropped,
        });
        if let Some(d) = &dropped {
            self.dropped.push(d.clone());
        }
        self.files.insert(
            id.to_string(),
            MachineFile {
                file,
                path,
                records: scan.records as u32,
                len: good_len as u64,
                steps: recovered.as_ref().map_or(0, |r| r.steps),
                unsynced: false,
            },
        );
        Ok((recovered, dropped))
    }

    /// Whether machine `id` has a file open here.
    pub fn has(&self, id: &str) -> bool {
        self.files.contains_key(id)
    }

    /// Appends machine `id`'s state after a step (`senders`: entries made with
    /// [`record::push_sender`]; `sent`: its unacknowledged sends, made with
    /// [`record::push_sent`]), and syncs it if the policy says so now.
    pub fn append(
        &mut self,
        id: &str,
        seq: u64,
        senders: &[u8],
        snapshot: &[u8],
        sent: &[u8],
    ) -> Result<(), PlatformError> {
        let Some(f) = self.files.get_mut(id) else {
            return Ok(());
        };
        f.steps += 1;
        self.scratch.clear();
        record::encode(
            &Record {
                steps: f.steps,
                seq,
                senders,
                snapshot,
                sent,
            },
            &mut self.scratch,
        );
        let io = |what: &str, p: &Path, e| PlatformError::io(what.to_string(), Some(p), e);
        if self.crash.at("torn") {
            let half = self.scratch.len() / 2;
            let _ = f.file.write_all(&self.scratch[..half]);
            std::process::abort();
        }
        f.file
            .write_all(&self.scratch)
            .map_err(|e| io("writing a machine's journal", &f.path, e))?;
        f.records += 1;
        f.len += self.scratch.len() as u64;
        f.unsynced = true;
        self.stats.records += 1;
        self.stats.bytes += self.scratch.len() as u64;
        if self.crash.at("before-sync") {
            std::process::abort();
        }
        match self.durability {
            Durability::Fsync => {
                f.file
                    .sync_data()
                    .map_err(|e| io("syncing a machine's journal", &f.path, e))?;
                f.unsynced = false;
                self.stats.syncs += 1;
            }
            Durability::Group { .. } => {
                self.pending += 1;
                self.pending_since.get_or_insert_with(Instant::now);
            }
            Durability::None => f.unsynced = false,
        }
        if f.len >= self.compact_bytes && f.records >= 2 {
            self.compact(id)?;
        }
        Ok(())
    }

    /// Whether records wait for their sync (group policy): acknowledgements of their steps
    /// must wait too.
    pub fn has_unsynced(&self) -> bool {
        self.pending > 0
    }

    /// When the waiting records are due to be synced, if any wait.
    pub fn sync_deadline(&self) -> Option<Instant> {
        match self.durability {
            Durability::Group { within, .. } => self.pending_since.map(|t| t + within),
            _ => None,
        }
    }

    /// Syncs the waiting records if their group is full or due by `now`. Returns whether
    /// nothing waits any more.
    pub fn sync_if_due(&mut self, now: Instant) -> Result<bool, PlatformError> {
        if self.pending == 0 {
            return Ok(true);
        }
        let Durability::Group { steps, within } = self.durability else {
            return self.sync().map(|()| true);
        };
        let due = self.pending >= steps || self.pending_since.is_some_and(|t| now >= t + within);
        if due {
            self.sync()?;
        }
        Ok(due)
    }

    /// Syncs every record written, whatever the policy says.
    pub fn sync(&mut self) -> Result<(), PlatformError> {
        for f in self.files.values_mut().filter(|f| f.unsynced) {
            f.file
                .sync_data()
                .map_err(|e| PlatformError::io("syncing a machine's journal", Some(&f.path), e))?;
            f.unsynced = false;
            self.stats.syncs += 1;
        }
        self.pending = 0;
        self.pending_since = None;
        Ok(())
    }

    /// Replaces machine `id`'s file by one holding only its newest record: written aside,
    /// synced, renamed over the old one, the directory synced.
    fn compact(&mut self, id: &str) -> Result<(), PlatformError> {
        let Some(f) = self.files.get_mut(id) else {
            return Ok(());
        };
        let path = f.path.clone();
        let tmp = tmp_path(&path);
        let io = |what: &str, p: &Path, e| PlatformError::io(what.to_string(), Some(p), e);
        // The newest record is what `append` just encoded.
        let mut out =
            File::create(&tmp).map_err(|e| io("creating a compacted journal", &tmp, e))?;
        out.write_all(MAGIC)
            .and_then(|()| out.write_all(&self.scratch))
            .map_err(|e| io("writing a compacted journal", &tmp, e))?;
        let durable = self.durability != Durability::None;
        if durable {
            out.sync_data()
                .map_err(|e| io("syncing a compacted journal", &tmp, e))?;
        }
        if self.crash.at("before-rename") {
            std::process::abort();
        }
        std::fs::rename(&tmp, &path).map_err(|e| io("renaming a compacted journal", &path, e))?;
        if self.crash.at("after-rename") {
            std::process::abort();
        }
        if durable {
            sync_dir(&self.dir)?;
        }
        // The old file's unsynced records are in the new one, synced.
        f.file = out;
        f.records = 1;
        f.len = (MAGIC.len() + self.scratch.len()) as u64;
        if f.unsynced {
            f.unsynced = false;
            if self.files.values().all(|f| !f.unsynced) {
                self.pending = 0;
                self.pending_since = None;
            }
        }
        self.stats.compactions += 1;
        self.stats.bytes += (MAGIC.len() + self.scratch.len()) as u64;
        Ok(())
    }

    /// Forgets machine `id` (its file stays).
    pub fn close_machine(&mut self, id: &str) {
        self.files.remove(id);
    }
}

/// A machine id made a file name: letters, digits, `-`, `_` and `.` as they are, every other
/// byte as `%XX` (ids may hold `/`), and a leading `.` escaped too.
pub fn file_name(id: &str) -> String {
    let mut out = String::with_capacity(id.len() + 8);
    for (i, b) in id.bytes().enumerate() {
        let plain = b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || (b == b'.' && i > 0);
        if plain {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out.push_str(".journal");
    out
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_os_string();
    p.push(".tmp");
    PathBuf::from(p)
}

fn sync_dir(dir: &Path) -> Result<(), PlatformError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| PlatformError::io("syncing the state directory", Some(dir), e))
}

/// The test crash point from `INTERSTATE_JOURNAL_CRASH=POINT:N`.
struct CrashPoint {
    point: Option<String>,
    left: u64,
}

impl CrashPoint {
    fn from_env() -> CrashPoint {
        let v = std::env::var("INTERSTATE_JOURNAL_CRASH").unwrap_or_default();
        match v.split_once(':') {
            Some((p, n)) => CrashPoint {
                point: Some(p.to_string()),
                left: n.parse().unwrap_or(1).max(1),
            },
            None if !v.is_empty() => CrashPoint {
                point: Some(v),
                left: 1,
            },
            None => CrashPoint {
                point: None,
                left: 0,
            },
        }
    }

    /// Whether to crash here now.
    fn at(&mut self, point: &str) -> bool {
        if self.point.as_deref() != Some(point) {
            return false;
        }
        self.left -= 1;
        self.left == 0
    }
}

#[cfg(test)]
mod tests;
