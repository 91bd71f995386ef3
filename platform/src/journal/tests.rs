use super::*;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "interstate-journal-{name}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn a_reopened_journal_gives_the_newest_record() {
    let dir = temp_dir("reopen");
    let mut j = Journal::open(&dir, Durability::Fsync).unwrap();
    assert_eq!(j.open_machine("lamp").unwrap(), (None, None));
    j.append("lamp", 7, b"", b"one", b"").unwrap();
    j.append("lamp", 8, b"", b"two", b"").unwrap();
    assert_eq!(j.stats().syncs, 2);
    drop(j);
    let mut j = Journal::open(&dir, Durability::Fsync).unwrap();
    let (r, dropped) = j.open_machine("lamp").unwrap();
    assert_eq!(dropped, None);
    assert_eq!(
        r,
        Some(Recovered {
            steps: 2,
            seq: 8,
            senders: Vec::new(),
            snapshot: b"two".to_vec(),
            sent: Vec::new()
        })
    );
    // The step count goes on.
    j.append("lamp", 9, b"", b"three", b"").unwrap();
    drop(j);
    let mut j = Journal::open(&dir, Durability::None).unwrap();
    assert_eq!(j.open_machine("lamp").unwrap().0.unwrap().steps, 3);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_torn_tail_is_cut_off_reported_and_the_file_goes_on() {
    let dir = temp_dir("torn");
    let mut j = Journal::open(&dir, Durability::Fsync).unwrap();
    j.open_machine("m").unwrap();
    j.append("m", 1, b"", b"intact", b"").unwrap();
    let path = j.path_of("m");
    drop(j);
    let whole = std::fs::metadata(&path).unwrap().len();
    // Half a record, as a crash in the middle of a write leaves it.
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(&[40, 0, 0, 0, 1, 2, 3]).unwrap();
    drop(f);
    let mut j = Journal::open(&dir, Durability::Fsync).unwrap();
    let (r, dropped) = j.open_machine("m").unwrap();
    assert_eq!(r.unwrap().snapshot, b"intact");
    let dropped = dropped.unwrap();
    assert_eq!(dropped.dropped.bytes, 7);
    assert!(dropped.to_string().contains("dropped 7 bytes"), "{dropped}");
    assert_eq!(j.dropped().len(), 1);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), whole);
    j.append("m", 2, b"", b"after", b"").unwrap();
    drop(j);
    let mut j = Journal::open(&dir, Durability::Fsync).unwrap();
    let (r, dropped) = j.open_machine("m").unwrap();
    assert_eq!((r.unwrap().snapshot, dropped), (b"after".to_vec(), None));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn group_commit_syncs_by_count_and_by_time() {
    let dir = temp_dir("group");
    let within = Duration::from_millis(50);
    let mut j = Journal::open(&dir, Durability::Group { steps: 3, within }).unwrap();
    j.open_machine("a").unwrap();
    j.open_machine("b").unwrap();
    let t0 = Instant::now();
    j.append("a", 1, b"", b"x", b"").unwrap();
    j.append("b", 1, b"", b"y", b"").unwrap();
    assert!(j.has_unsynced());
    assert_eq!(j.stats().syncs, 0);
    // Neither full nor due (the time is the caller's).
    assert!(!j.sync_if_due(t0).unwrap());
    j.append("a", 2, b"", b"z", b"").unwrap();
    assert!(j.sync_if_due(t0).unwrap());
    assert_eq!(
        j.stats().syncs,
        2,
        "one sync per file with unsynced records"
    );
    assert!(!j.has_unsynced());
    j.append("a", 3, b"", b"w", b"").unwrap();
    let due = j.sync_deadline().unwrap();
    assert!(!j.sync_if_due(due - Duration::from_millis(1)).unwrap());
    assert!(j.sync_if_due(due).unwrap());
    assert_eq!(j.stats().syncs, 3);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn none_never_syncs_and_never_holds_acknowledgements() {
    let dir = temp_dir("none");
    let mut j = Journal::open(&dir, Durability::None).unwrap();
    j.open_machine("a").unwrap();
    j.append("a", 1, b"", b"x", b"").unwrap();
    assert!(!j.has_unsynced());
    assert_eq!(j.sync_deadline(), None);
    assert_eq!(j.stats().syncs, 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn compaction_keeps_the_newest_record_only_and_a_leftover_is_removed() {
    let dir = temp_dir("compact");
    let mut j = Journal::open(&dir, Durability::Fsync).unwrap();
    j.compact_bytes = 1000;
    j.open_machine("m").unwrap();
    let mut i = 0;
    while j.stats().compactions == 0 {
        j.append("m", i, b"", format!("state {i}").as_bytes(), b"")
            .unwrap();
        i += 1;
    }
    let compacted_at = i;
    for _ in 0..5 {
        j.append("m", i, b"", format!("state {i}").as_bytes(), b"")
            .unwrap();
        i += 1;
    }
    assert_eq!(j.stats().compactions, 1);
    let path = j.path_of("m");
    drop(j);
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(record::scan(&bytes).unwrap().records, 6);
    // A compaction that crashed before its rename leaves its file aside: removed, unread.
    std::fs::write(tmp_path(&path), b"ISJOURN1 half").unwrap();
    let mut j = Journal::open(&dir, Durability::None).unwrap();
    let (r, dropped) = j.open_machine("m").unwrap();
    let r = r.unwrap();
    assert_eq!(r.snapshot, format!("state {}", i - 1).as_bytes());
    assert_eq!(r.steps, compacted_at + 5);
    assert_eq!(dropped, None);
    assert!(!tmp_path(&path).exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_file_that_is_not_a_journal_is_refused_with_what_to_do() {
    let dir = temp_dir("foreign");
    let mut j = Journal::open(&dir, Durability::None).unwrap();
    std::fs::write(j.path_of("m"), b"something else entirely").unwrap();
    let e = j.open_machine("m").unwrap_err().to_string();
    assert!(e.contains("not an interstate journal"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn policies_parse_and_print() {
    for text in ["fsync", "none", "group:64:5", "group:1:0"] {
        assert_eq!(text.parse::<Durability>().unwrap().to_string(), text);
    }
    assert_eq!("group".parse::<Durability>().unwrap(), Durability::GROUP);
    for bad in ["", "sync", "group:0:5", "group:5", "group:a:b"] {
        let e = bad.parse::<Durability>().unwrap_err();
        assert!(e.contains("fsync, group"), "{e}");
    }
}

#[test]
fn ids_become_safe_file_names() {
    assert_eq!(file_name("lamp-1"), "lamp-1.journal");
    assert_eq!(file_name("a/b"), "a%2Fb.journal");
    assert_eq!(file_name(".."), "%2E..journal");
    assert_eq!(file_name("x y"), "x%20y.journal");
}
