//! Publish/subscribe topics: names, filters and MQTT's matching rules, and the bounded
//! subscription table the hub holds (and every node mirrors) without allocating.
//!
//! A **topic** is a `/`-separated list of levels (`plant/1/alarm`); levels may be empty
//! (`a//b`, `/a`). A **filter** is a topic in which a level may be `+` (exactly one level,
//! empty included) and the last level may be `#` (that level's parent and any number of
//! levels below it: `plant/#` matches `plant`, `plant/1` and `plant/1/alarm`). The rules are
//! MQTT 3.1.1's (section 4.7), so that a bridge can map topics 1:1:
//!
//! - a topic or filter is 1 to [`MAX_TOPIC`] bytes of UTF-8 without `U+0000`;
//! - a topic has no `+` or `#` at all;
//! - in a filter `+` and `#` are whole levels, and `#` is the last one;
//! - a topic whose first character is `$` is not matched by a filter whose first level is a
//!   wildcard (`#`, `+/...`): such topics are the system's.
//!
//! On the wire a publication is an ordinary `Deliver` to each subscriber whose event field is
//! `TOPIC`, a `U+0000` byte, then the event name ([`publication_event`], [`split_publication`]):
//! topics cannot contain `U+0000`, so the split is unambiguous, and every rule that holds for
//! a message (sequence numbers, acknowledgement, failure reports, order) holds for it.

/// The longest topic or filter, in bytes.
pub const MAX_TOPIC: usize = 128;

/// The byte that separates a publication's topic from its event name in a `Deliver`'s event
/// field.
pub const TOPIC_SEPARATOR: char = '\0';

/// The hub's answer to a subscription ([`crate::wire::Frame::TopicResult`]).
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum TopicStatus {
    /// The subscription is held.
    Ok,
    /// The filter breaks the rules (see [`check_filter`]).
    BadFilter,
    /// The link does not own the machine id.
    NotOwner,
    /// The link holds as many subscriptions as it may.
    TooMany,
    /// The hub's subscription table is full.
    HubFull,
}

impl TopicStatus {
    /// A sentence a user can act on.
    pub fn as_str(self) -> &'static str {
        match self {
            TopicStatus::Ok => "subscribed",
            TopicStatus::BadFilter => "the filter breaks the topic rules (see docs/wire.md)",
            TopicStatus::NotOwner => "the link does not own the subscribing machine id",
            TopicStatus::TooMany => {
                "this process holds as many subscriptions as the hub allows one link (256)"
            }
            TopicStatus::HubFull => "the hub's subscription table is full",
        }
    }
}

/// Why a topic or filter is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum TopicError {
    /// Empty.
    Empty,
    /// Longer than [`MAX_TOPIC`] bytes.
    TooLong,
    /// Contains `U+0000`.
    Nul,
    /// A topic to publish to contains `+` or `#`.
    WildcardInTopic,
    /// `+` or `#` shares its level with other characters (`a+/b`, `a/b#`).
    PartialWildcard,
    /// `#` is not the last level.
    HashNotLast,
}

impl TopicError {
    /// A sentence a user can act on.
    pub fn as_str(self) -> &'static str {
        match self {
            TopicError::Empty => "a topic or filter cannot be empty",
            TopicError::TooLong => "a topic or filter is at most 128 bytes",
            TopicError::Nul => "a topic or filter cannot contain the character U+0000",
            TopicError::WildcardInTopic => {
                "a topic to publish to cannot contain the wildcards + or # (only filters can)"
            }
            TopicError::PartialWildcard => {
                "a wildcard must be a whole level: '+' or '#' between slashes (e.g. 'a/+/c', 'a/#')"
            }
            TopicError::HashNotLast => "'#' may only be the last level of a filter",
        }
    }
}

impl core::fmt::Display for TopicError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn common(s: &str) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty);
    }
    if s.len() > MAX_TOPIC {
        return Err(TopicError::TooLong);
    }
    if s.contains(TOPIC_SEPARATOR) {
        return Err(TopicError::Nul);
    }
    Ok(())
}

/// Checks a topic to publish to.
pub fn check_topic(topic: &str) -> Result<(), TopicError> {
    common(topic)?;
    if topic.contains(['+', '#']) {
        return Err(TopicError::WildcardInTopic);
    }
    Ok(())
}

/// Checks a subscription filter.
pub fn check_filter(filter: &str) -> Result<(), TopicError> {
    common(filter)?;
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let last = levels.peek().is_none();
        match level {
            "+" => {}
            "#" if last => {}
            "#" => return Err(TopicError::HashNotLast),
            l if l.contains(['+', '#']) => return Err(TopicError::PartialWildcard),
            _ => {}
        }
    }
    Ok(())
}

/// Whether `filter` matches `topic` (both assumed valid: see [`check_filter`],
/// [`check_topic`]).
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            // `#` matches the rest, and the parent level alone (`a/#` matches `a`).
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(fl), Some(tl)) if fl == tl => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Splits a delivered event field into (topic, event name): `Some(topic)` for a publication,
/// `None` for a direct message.
pub fn split_publication(event: &str) -> (Option<&str>, &str) {
    match event.split_once(TOPIC_SEPARATOR) {
        Some((topic, name)) => (Some(topic), name),
        None => (None, event),
    }
}

/// The event field of a publication: `topic`, `U+0000`, `event`, written into `out`; `None`
/// when it does not fit.
pub fn publication_event<'b>(topic: &str, event: &str, out: &'b mut [u8]) -> Option<&'b str> {
    let n = topic.len() + 1 + event.len();
    let dst = out.get_mut(..n)?;
    dst[..topic.len()].copy_from_slice(topic.as_bytes());
    dst[topic.len()] = 0;
    dst[topic.len() + 1..].copy_from_slice(event.as_bytes());
    core::str::from_utf8(&out[..n]).ok()
}

/// One subscription: a machine and a filter (and, in the hub, the link that owns the machine).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    used: bool,
    /// Marked when a mirror starts again from a new snapshot; removed if the snapshot does
    /// not name it.
    stale: bool,
    link: u32,
    machine: heapless::String<64>,
    filter: heapless::String<MAX_TOPIC>,
}

impl Subscription {
    /// A free slot.
    pub const EMPTY: Subscription = Subscription {
        used: false,
        stale: false,
        link: 0,
        machine: heapless::String::new(),
        filter: heapless::String::new(),
    };
}

impl Default for Subscription {
    fn default() -> Self {
        Subscription::EMPTY
    }
}

/// Storage for a [`SubscriptionTable`] that can be made empty from nothing (the hub makes
/// its own): an array, or a host's heap slice in a type of its own.
pub trait SubscriptionSlots: AsRef<[Subscription]> + AsMut<[Subscription]> {
    /// Empty slots.
    fn empty() -> Self;
}

impl<const N: usize> SubscriptionSlots for [Subscription; N] {
    fn empty() -> Self {
        [Subscription::EMPTY; N]
    }
}

/// The table is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TableFull;

/// Subscriptions in the caller's slots `B` (an array in the hub, a boxed slice in a node),
/// allocated once. A subscription keeps its slot until it is removed, so that a publication
/// fanned out in slot order can resume where backpressure stopped it
/// ([`SubscriptionTable::next_subscriber`]) without skipping or repeating anyone.
pub struct SubscriptionTable<B> {
    slots: B,
    len: usize,
}

impl<B: AsRef<[Subscription]> + AsMut<[Subscription]>> SubscriptionTable<B> {
    /// A table over `slots` (every slot is cleared).
    pub fn new(mut slots: B) -> Self {
        for s in slots.as_mut() {
            *s = Subscription::EMPTY;
        }
        SubscriptionTable { slots, len: 0 }
    }

    /// Subscriptions held.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// How many it can hold.
    pub fn capacity(&self) -> usize {
        self.slots.as_ref().len()
    }

    /// Every subscription: (link, machine, filter).
    pub fn iter(&self) -> impl Iterator<Item = (u32, &str, &str)> + '_ {
        self.slots
            .as_ref()
            .iter()
            .filter(|s| s.used)
            .map(|s| (s.link, s.machine.as_str(), s.filter.as_str()))
    }

    /// How many subscriptions `link` holds.
    pub fn count_link(&self, link: u32) -> usize {
        self.iter().filter(|s| s.0 == link).count()
    }

    fn find(&self, machine: &str, filter: &str) -> Option<usize> {
        self.slots
            .as_ref()
            .iter()
            .position(|s| s.used && s.machine == machine && s.filter == filter)
    }

    /// Adds `machine`'s subscription to `filter` (owned by `link`). `Ok(true)`: added;
    /// `Ok(false)`: it was there already. The strings must fit (a machine id of at most 64
    /// bytes, a filter of at most [`MAX_TOPIC`]): longer ones are refused as [`TableFull`]
    /// would be, since they cannot be held.
    pub fn insert(&mut self, link: u32, machine: &str, filter: &str) -> Result<bool, TableFull> {
        if let Some(i) = self.find(machine, filter) {
            let s = &mut self.slots.as_mut()[i];
            s.stale = false;
            s.link = link;
            return Ok(false);
        }
        let slot = self
            .slots
            .as_mut()
            .iter_mut()
            .find(|s| !s.used)
            .ok_or(TableFull)?;
        let mut m = heapless::String::new();
        let mut f = heapless::String::new();
        if m.push_str(machine).is_err() || f.push_str(filter).is_err() {
            return Err(TableFull);
        }
        *slot = Subscription {
            used: true,
            stale: false,
            link,
            machine: m,
            filter: f,
        };
        self.len += 1;
        Ok(true)
    }

    /// Removes one subscription; whether it was there.
    pub fn remove(&mut self, machine: &str, filter: &str) -> bool {
        match self.find(machine, filter) {
            Some(i) => {
                self.slots.as_mut()[i] = Subscription::EMPTY;
                self.len -= 1;
                true
            }
            None => false,
        }
    }

    /// Removes every subscription for which `drop(link, machine)` is true, telling `removed`
    /// (machine, filter) of each.
    pub fn remove_where(
        &mut self,
        drop: &mut dyn FnMut(u32, &str) -> bool,
        removed: &mut dyn FnMut(&str, &str),
    ) -> usize {
        let mut n = 0;
        for s in self.slots.as_mut() {
            if s.used && drop(s.link, &s.machine) {
                removed(&s.machine, &s.filter);
                *s = Subscription::EMPTY;
                n += 1;
            }
        }
        self.len -= n;
        n
    }

    /// Sets every subscription's link number to `link` (a process's copy of its own
    /// subscriptions uses it to note which the hub has confirmed).
    pub fn set_links(&mut self, link: u32) {
        for s in self.slots.as_mut().iter_mut().filter(|s| s.used) {
            s.link = link;
        }
    }

    /// Marks every subscription stale: a mirror about to receive a new snapshot. Those the
    /// snapshot names again keep their slots ([`SubscriptionTable::insert`] clears the mark);
    /// [`SubscriptionTable::sweep_stale`] removes the others.
    pub fn mark_stale(&mut self) {
        for s in self.slots.as_mut().iter_mut().filter(|s| s.used) {
            s.stale = true;
        }
    }

    /// Removes what the last snapshot did not name.
    pub fn sweep_stale(&mut self) -> usize {
        let mut n = 0;
        for s in self.slots.as_mut() {
            if s.used && s.stale {
                *s = Subscription::EMPTY;
                n += 1;
            }
        }
        self.len -= n;
        n
    }

    /// The first subscriber of `topic` at slot `from` or later, as (slot, machine): a machine
    /// subscribed with several matching filters is named once (at its first matching slot).
    /// A fan-out calls it with `from` = 0, then the slot after each subscriber served.
    pub fn next_subscriber(&self, topic: &str, from: usize) -> Option<(usize, &str)> {
        let slots = self.slots.as_ref();
        (from..slots.len()).find_map(|i| {
            let s = &slots[i];
            if !s.used || !matches(&s.filter, topic) {
                return None;
            }
            let earlier = slots[..i]
                .iter()
                .any(|e| e.used && e.machine == s.machine && matches(&e.filter, topic));
            (!earlier).then_some((i, s.machine.as_str()))
        })
    }

    /// How many machines a publication to `topic` reaches.
    pub fn count_subscribers(&self, topic: &str) -> usize {
        let mut n = 0;
        let mut at = 0;
        while let Some((i, _)) = self.next_subscriber(topic, at) {
            n += 1;
            at = i + 1;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_follow_mqtts_validity_rules() {
        for ok in [
            "#",
            "+",
            "a",
            "a/b",
            "a/+",
            "+/+",
            "a/#",
            "+/#",
            "/",
            "//",
            "/a",
            "a/",
            "a/+/c/#",
            "$SYS/#",
            "sport/tennis/+",
            "a b/c",
        ] {
            assert_eq!(check_filter(ok), Ok(()), "{ok}");
        }
        let bad = [
            ("", TopicError::Empty),
            ("a/#/b", TopicError::HashNotLast),
            ("#/a", TopicError::HashNotLast),
            ("a#", TopicError::PartialWildcard),
            ("a/b#", TopicError::PartialWildcard),
            ("a+", TopicError::PartialWildcard),
            ("a/+b/c", TopicError::PartialWildcard),
            ("++", TopicError::PartialWildcard),
            ("##", TopicError::PartialWildcard),
            ("a\0b", TopicError::Nul),
        ];
        for (f, e) in bad {
            assert_eq!(check_filter(f), Err(e), "{f:?}");
        }
        let long = [b'a'; MAX_TOPIC + 1];
        let long = core::str::from_utf8(&long).unwrap();
        assert_eq!(check_filter(long), Err(TopicError::TooLong));
        assert_eq!(check_filter(&long[..MAX_TOPIC]), Ok(()));
    }

    #[test]
    fn topics_carry_no_wildcards() {
        for ok in ["a", "a/b", "/", "a//b", "$SYS/x", "plant/1/alarm"] {
            assert_eq!(check_topic(ok), Ok(()), "{ok}");
        }
        for bad in ["a/+", "#", "a/#", "a+b", "x#"] {
            assert_eq!(check_topic(bad), Err(TopicError::WildcardInTopic), "{bad}");
        }
        assert_eq!(check_topic(""), Err(TopicError::Empty));
        assert_eq!(check_topic("a\0"), Err(TopicError::Nul));
    }

    #[test]
    fn matching_follows_mqtt() {
        let cases: &[(&str, &str, bool)] = &[
            // Exact levels.
            ("a/b", "a/b", true),
            ("a/b", "a/c", false),
            ("a/b", "a/b/c", false),
            ("a/b/c", "a/b", false),
            ("a", "A", false),
            // `+`: exactly one level, empty included.
            ("a/+", "a/b", true),
            ("a/+", "a/", true),
            ("a/+", "a", false),
            ("a/+", "a/b/c", false),
            ("+/b", "a/b", true),
            ("+/b", "/b", true),
            ("+", "a", true),
            ("+", "/", false),
            ("+/+", "/", true),
            ("/+", "/a", true),
            ("+/+/alarm", "plant/1/alarm", true),
            ("plant/+/alarm", "plant/1/alarm", true),
            ("plant/+/alarm", "plant/1/2/alarm", false),
            ("plant/+/alarm", "plant/alarm", false),
            // `#`: the parent level and everything below it.
            ("#", "a", true),
            ("#", "a/b/c", true),
            ("#", "/", true),
            ("a/#", "a", true),
            ("a/#", "a/", true),
            ("a/#", "a/b", true),
            ("a/#", "a/b/c", true),
            ("a/#", "ab", false),
            ("a/#", "b/a", false),
            ("a/b/#", "a", false),
            ("+/#", "a", true),
            ("+/#", "a/b/c", true),
            ("a/+/#", "a/b", true),
            ("a/+/#", "a", false),
            ("sport/tennis/player1/#", "sport/tennis/player1", true),
            (
                "sport/tennis/player1/#",
                "sport/tennis/player1/ranking",
                true,
            ),
            (
                "sport/tennis/player1/#",
                "sport/tennis/player1/score/wimbledon",
                true,
            ),
            ("sport/#", "sport", true),
            // `$` topics: not matched by a leading wildcard, matched by a literal first level.
            ("#", "$SYS/x", false),
            ("+/x", "$SYS/x", false),
            ("+", "$SYS", false),
            ("$SYS/#", "$SYS/x", true),
            ("$SYS/+", "$SYS/x", true),
            ("$SYS/#", "$SYS", true),
            ("a/#", "a/$x", true),
            ("a/+", "a/$x", true),
            // Empty levels are levels.
            ("a//b", "a//b", true),
            ("a/+/b", "a//b", true),
            ("a/b", "a//b", false),
            ("/", "/", true),
            ("/#", "/a/b", true),
            ("/#", "a", false),
        ];
        for &(f, t, want) in cases {
            assert_eq!(check_filter(f), Ok(()), "{f}");
            assert_eq!(check_topic(t), Ok(()), "{t}");
            assert_eq!(matches(f, t), want, "filter {f:?} topic {t:?}");
        }
    }

    #[test]
    fn every_filter_over_a_small_alphabet_agrees_with_a_reference_matcher() {
        // All filters and topics of up to three levels over {a, b, empty} (and + and # in
        // filters), checked against a recursive reference of the rules.
        fn reference(f: &[&str], t: &[&str]) -> bool {
            match (f.first(), t.first()) {
                (Some(&"#"), _) => true,
                (Some(&"+"), Some(_)) => reference(&f[1..], &t[1..]),
                (Some(a), Some(b)) if a == b => reference(&f[1..], &t[1..]),
                (None, None) => true,
                _ => false,
            }
        }
        let levels = ["a", "b", "", "+", "#"];
        let mut buf = [0u8; 32];
        let mut checked = 0;
        let join = |parts: &[&str], buf: &mut [u8; 32]| -> usize {
            let mut n = 0;
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    buf[n] = b'/';
                    n += 1;
                }
                buf[n..n + p.len()].copy_from_slice(p.as_bytes());
                n += p.len();
            }
            n
        };
        for fl in 1..=3usize {
            for fi in 0..levels.len().pow(fl as u32) {
                let f: heapless::Vec<&str, 3> = (0..fl)
                    .map(|k| levels[fi / levels.len().pow(k as u32) % levels.len()])
                    .collect();
                let n = join(&f, &mut buf);
                let filter: heapless::String<32> =
                    heapless::String::try_from(core::str::from_utf8(&buf[..n]).unwrap()).unwrap();
                if check_filter(&filter).is_err() {
                    assert!(
                        filter.is_empty() || f[..f.len() - 1].contains(&"#"),
                        "{filter} refused"
                    );
                    continue;
                }
                for tl in 1..=3usize {
                    for ti in 0..3usize.pow(tl as u32) {
                        let t: heapless::Vec<&str, 3> = (0..tl)
                            .map(|k| levels[ti / 3usize.pow(k as u32) % 3])
                            .collect();
                        let mut tb = [0u8; 32];
                        let n = join(&t, &mut tb);
                        let topic = core::str::from_utf8(&tb[..n]).unwrap();
                        if topic.is_empty() {
                            continue;
                        }
                        assert_eq!(
                            matches(&filter, topic),
                            reference(&f, &t),
                            "{filter} {topic}"
                        );
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 2000, "{checked}");
    }

    #[test]
    fn a_publication_event_splits_back() {
        let mut buf = [0u8; 64];
        let e = publication_event("plant/1/alarm", "ALARM", &mut buf).unwrap();
        assert_eq!(split_publication(e), (Some("plant/1/alarm"), "ALARM"));
        assert_eq!(split_publication("ALARM"), (None, "ALARM"));
        let mut small = [0u8; 8];
        assert_eq!(
            publication_event("plant/1/alarm", "ALARM", &mut small),
            None
        );
    }

    #[test]
    fn subscriptions_keep_their_slots_and_a_machine_is_served_once() {
        let mut t = SubscriptionTable::new([Subscription::EMPTY; 4]);
        assert_eq!(t.insert(1, "m1", "plant/+/alarm"), Ok(true));
        assert_eq!(t.insert(1, "m1", "plant/#"), Ok(true));
        assert_eq!(t.insert(2, "m2", "plant/1/alarm"), Ok(true));
        assert_eq!(t.insert(2, "m2", "plant/1/alarm"), Ok(false));
        assert_eq!(t.insert(3, "m3", "other"), Ok(true));
        assert_eq!(t.insert(3, "m4", "other"), Err(TableFull));
        assert_eq!(t.len(), 4);
        assert_eq!(t.count_subscribers("plant/1/alarm"), 2);
        assert_eq!(t.next_subscriber("plant/1/alarm", 0), Some((0, "m1")));
        assert_eq!(t.next_subscriber("plant/1/alarm", 1), Some((2, "m2")));
        assert_eq!(t.next_subscriber("plant/1/alarm", 3), None);
        // Removing the first slot does not move the others: a fan-out resuming at slot 2
        // still reaches m2.
        assert!(t.remove("m1", "plant/+/alarm"));
        assert_eq!(t.next_subscriber("plant/1/alarm", 2), Some((2, "m2")));
        // m1 is still subscribed through its second filter, now its first matching slot.
        assert_eq!(t.next_subscriber("plant/1/alarm", 0), Some((1, "m1")));
        assert_eq!(t.count_link(1), 1);
        let mut gone = 0;
        t.remove_where(&mut |link, _| link == 2, &mut |m, _| {
            assert_eq!(m, "m2");
            gone += 1;
        });
        assert_eq!(gone, 1);
        assert_eq!(t.len(), 2);
        t.mark_stale();
        assert_eq!(t.insert(1, "m1", "plant/#"), Ok(false));
        assert_eq!(t.sweep_stale(), 1);
        assert_eq!(t.len(), 1);
        assert_eq!(t.iter().next(), Some((1, "m1", "plant/#")));
    }
}
