//! Chart images: a chart's tables in one postcard frame, loadable without allocation.
//!
//! An image is the postcard encoding of [`Image`]: a magic, a format version and the chart
//! tables as byte strings. [`decode`] borrows every table from the input bytes, so loading an
//! image on a device copies nothing and allocates nothing; [`crate::Chart::new`] then validates
//! the tables like any others.

use serde::{Deserialize, Serialize};

use crate::chart::{Chart, Tables};
use crate::error::Error;

/// The first four bytes of every image.
pub const MAGIC: [u8; 4] = *b"ISCH";
/// The image format version this build writes and reads.
///
/// 2: transition records carry the sibling-move flag
/// ([`crate::chart::raw::TransitionRecord::SIBLING`]).
/// 3: a history state's memory is a bit set over its parent's subtree (16 states a slot),
/// sized by `history_len` and the image's `history_slots` accordingly.
pub const VERSION: u16 = 3;

/// The serialized form of a chart image.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Image<'a> {
    /// Always [`MAGIC`].
    pub magic: [u8; 4],
    /// Always [`VERSION`] when written by this build.
    pub version: u16,
    /// See [`Tables::history_slots`].
    pub history_slots: u16,
    /// See [`Tables::strings`].
    pub strings: &'a str,
    /// See [`Tables::names`].
    pub names: &'a [u8],
    /// See [`Tables::states`].
    pub states: &'a [u8],
    /// See [`Tables::transitions`].
    pub transitions: &'a [u8],
    /// See [`Tables::targets`].
    pub targets: &'a [u8],
    /// See [`Tables::actions`].
    pub actions: &'a [u8],
    /// See [`Tables::events`].
    pub events: &'a [u8],
    /// See [`Tables::event_index`].
    pub event_index: &'a [u8],
    /// See [`Tables::action_names`].
    pub action_names: &'a [u8],
    /// See [`Tables::guard_names`].
    pub guard_names: &'a [u8],
    /// See [`Tables::delay_names`].
    pub delay_names: &'a [u8],
}

impl<'a> Image<'a> {
    /// The image of a chart's tables.
    pub fn of(t: &Tables<'a>) -> Self {
        Image {
            magic: MAGIC,
            version: VERSION,
            history_slots: t.history_slots,
            strings: t.strings,
            names: t.names,
            states: t.states,
            transitions: t.transitions,
            targets: t.targets,
            actions: t.actions,
            events: t.events,
            event_index: t.event_index,
            action_names: t.action_names,
            guard_names: t.guard_names,
            delay_names: t.delay_names,
        }
    }

    /// The tables the image carries.
    pub fn tables(&self) -> Tables<'a> {
        Tables {
            strings: self.strings,
            names: self.names,
            states: self.states,
            transitions: self.transitions,
            targets: self.targets,
            actions: self.actions,
            events: self.events,
            event_index: self.event_index,
            action_names: self.action_names,
            guard_names: self.guard_names,
            delay_names: self.delay_names,
            history_slots: self.history_slots,
        }
    }
}

/// Decodes and validates an image, borrowing every table from `bytes`.
pub fn decode(bytes: &[u8]) -> Result<Chart<'_>, Error> {
    if bytes.len() < 4 || bytes[..4] != MAGIC {
        return Err(Error::InvalidImage("missing the ISCH magic"));
    }
    let (image, rest): (Image<'_>, &[u8]) = postcard::take_from_bytes(bytes)
        .map_err(|_| Error::InvalidImage("truncated or malformed postcard data"))?;
    if image.version != VERSION {
        return Err(Error::ImageVersion {
            expected: VERSION,
            found: image.version,
        });
    }
    if !rest.is_empty() {
        return Err(Error::InvalidImage("trailing bytes after the image"));
    }
    Chart::new(image.tables())
}

/// Encodes a chart's tables as an image into `buf`, returning the used part.
pub fn encode<'b>(chart: &Chart<'_>, buf: &'b mut [u8]) -> Result<&'b mut [u8], Error> {
    postcard::to_slice(&Image::of(chart.tables()), buf)
        .map_err(|_| Error::InvalidImage("buffer too small for the image"))
}
