//! The machine's context: one value the machine owns, kept as bytes in fixed storage (the
//! `C` capacity), reached by actions and guards through their contexts.
//!
//! A Rust machine keeps a typed, serde-serialisable value there, encoded with postcard
//! ([`ActionContext::context`], [`ActionContext::set_context`],
//! [`ActionContext::update_context`]); a JSON chart's machine keeps the JSON text of an object,
//! its `context` to begin with, which `assign` actions rewrite and context guards read. Keeping
//! bytes, not a value, is what lets a snapshot carry the context without knowing its type.
//!
//! A context that does not fit is an [`Error::ContextFull`]: the old value stays, the action
//! gets the error, and the step fails with it too, so an update cannot be lost unnoticed.

use serde::{Deserialize, Serialize};

use crate::chart::{AssignOp, Chart, CompareOp, StrId};
use crate::context::{ActionContext, GuardContext};
use crate::error::Error;
use crate::json_text;

use super::Machine;

/// How the machine's context is encoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ContextFormat {
    /// No context has been set (a chart without `context`, and no typed value yet).
    #[default]
    None,
    /// The JSON text of an object: a JSON chart's `context`, changed by `assign`.
    Json,
    /// A typed value, encoded with postcard.
    Postcard,
}

impl ContextFormat {
    pub(super) fn to_u8(self) -> u8 {
        match self {
            ContextFormat::None => 0,
            ContextFormat::Json => 1,
            ContextFormat::Postcard => 2,
        }
    }
    pub(super) fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            0 => ContextFormat::None,
            1 => ContextFormat::Json,
            2 => ContextFormat::Postcard,
            _ => return None,
        })
    }
}

/// The context's length and format.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ContextMeta {
    pub(crate) len: usize,
    pub(crate) format: ContextFormat,
}

/// The context storage of a machine.
pub(super) struct ContextStore<const C: usize> {
    pub(super) meta: ContextMeta,
    pub(super) bytes: [u8; C],
}

/// What an action reaches of the context: the storage, without its capacity in the type,
/// and where an update that failed is noted (the step fails with it once the action returns;
/// it lives on the step's stack, not in the machine).
pub(crate) struct ContextRef<'a> {
    pub(crate) meta: &'a mut ContextMeta,
    pub(crate) bytes: &'a mut [u8],
    pub(crate) error: &'a mut Option<Error>,
}

/// What a guard reads of the context.
#[derive(Clone, Copy)]
pub(crate) struct ContextView<'a> {
    pub(crate) format: ContextFormat,
    pub(crate) bytes: &'a [u8],
}

impl<const C: usize> ContextStore<C> {
    pub(super) fn new() -> Self {
        ContextStore {
            meta: ContextMeta::default(),
            bytes: [0; C],
        }
    }
    pub(super) fn get(&self) -> &[u8] {
        &self.bytes[..self.meta.len]
    }
    pub(super) fn as_ref<'s>(&'s mut self, error: &'s mut Option<Error>) -> ContextRef<'s> {
        ContextRef {
            meta: &mut self.meta,
            bytes: &mut self.bytes,
            error,
        }
    }
    pub(super) fn view(&self) -> ContextView<'_> {
        ContextView {
            format: self.meta.format,
            bytes: self.get(),
        }
    }
}

impl ContextRef<'_> {
    fn get(&self) -> &[u8] {
        &self.bytes[..self.meta.len]
    }

    /// Replaces the context with the `needed` bytes `encode` writes. A value that does not
    /// fit is refused before anything is written, so the old value stays whole.
    pub(crate) fn set_with(
        &mut self,
        format: ContextFormat,
        needed: usize,
        encode: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> Result<(), Error> {
        let capacity = self.bytes.len();
        if needed > capacity {
            return Err(Error::ContextFull { needed, capacity });
        }
        match encode(&mut self.bytes[..needed]) {
            Some(n) if n <= needed => {
                self.meta.len = n;
                self.meta.format = format;
                Ok(())
            }
            // The encoder disagreed with its own size: the context is not trustworthy now.
            _ => {
                self.meta.len = 0;
                self.meta.format = ContextFormat::None;
                Err(Error::ContextFull { needed, capacity })
            }
        }
    }

    /// Sets the context to JSON text (checked to be one object).
    pub(crate) fn set_json(&mut self, text: &[u8]) -> Result<(), Error> {
        if !json_text::is_object(text) {
            return Err(Error::ContextNotJson("the context must be one JSON object"));
        }
        self.set_with(ContextFormat::Json, text.len(), |buf| {
            buf.copy_from_slice(text);
            Some(text.len())
        })
    }

    /// The JSON object text the context is, `{}` when none was set.
    fn json(&self) -> Result<&[u8], Error> {
        match self.meta.format {
            ContextFormat::Json => Ok(self.get()),
            ContextFormat::None => Ok(b"{}"),
            ContextFormat::Postcard => Err(Error::ContextNotJson(
                "assign needs a JSON context, and this machine's context is a typed (postcard) value",
            )),
        }
    }

    /// Sets the top-level member `key` (a JSON string literal) to the JSON text `value`, or
    /// removes it when `value` is `None`.
    fn put_member(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), Error> {
        if self.meta.format != ContextFormat::Json {
            self.json()?;
            let capacity = self.bytes.len();
            self.bytes
                .get_mut(..2)
                .ok_or(Error::ContextFull {
                    needed: 2,
                    capacity,
                })?
                .copy_from_slice(b"{}");
            self.meta.len = 2;
            self.meta.format = ContextFormat::Json;
        }
        let len = self.meta.len;
        let capacity = self.bytes.len();
        let found = json_text::find(self.get(), key)
            .map_err(|()| Error::ContextNotJson("the context is not a JSON object"))?;
        // The span to replace and what replaces it: a value, or a new member before the
        // closing brace, or a member and its comma.
        let (start, end, parts): (usize, usize, [&[u8]; 4]) = match (found, value) {
            (Some(m), Some(v)) => (m.value.0, m.value.1, [v, b"", b"", b""]),
            (Some(m), None) => {
                let (s, e) = member_span(self.get(), m);
                (s, e, [b""; 4])
            }
            (None, None) => return Ok(()),
            (None, Some(v)) => {
                let close = self.get().iter().rposition(|&c| c == b'}').unwrap_or(len);
                let empty = self.get()[..close]
                    .iter()
                    .rev()
                    .find(|c| !c.is_ascii_whitespace())
                    == Some(&b'{');
                let comma: &[u8] = if empty { b"" } else { b"," };
                (close, close, [comma, key, b":", v])
            }
        };
        let new_len: usize = parts.iter().map(|p| p.len()).sum();
        let total = len - (end - start) + new_len;
        if total > capacity {
            return Err(Error::ContextFull {
                needed: total,
                capacity,
            });
        }
        self.bytes.copy_within(end..len, start + new_len);
        let mut at = start;
        for p in parts {
            self.bytes[at..at + p.len()].copy_from_slice(p);
            at += p.len();
        }
        self.meta.len = total;
        Ok(())
    }

    /// Runs an `assign` of the chart on the context.
    pub(crate) fn assign(
        &mut self,
        chart: &Chart<'_>,
        key: StrId,
        op: AssignOp,
        operand: StrId,
        event_data: &[u8],
    ) -> Result<(), Error> {
        let key = chart.str(key).as_bytes();
        let operand = chart.str(operand).as_bytes();
        match op {
            AssignOp::Set => self.put_member(key, Some(operand)),
            AssignOp::FromEvent => {
                // Data that is not a JSON object has no fields: the key is removed, as
                // XState's `event.field` is `undefined` then.
                match json_text::find(event_data, operand) {
                    Ok(Some(m)) => self.put_member(key, Some(&event_data[m.value.0..m.value.1])),
                    _ => self.put_member(key, None),
                }
            }
            AssignOp::Add => {
                let ctx = self.json()?;
                let current = match json_text::find(ctx, key) {
                    Ok(Some(m)) => json_text::number(&ctx[m.value.0..m.value.1]),
                    _ => None,
                };
                let sum = current
                    .zip(json_text::number(operand))
                    .and_then(|(a, b)| json_text::add(a, b))
                    .ok_or(Error::ContextNotNumber)?;
                let mut text = heapless::String::<40>::new();
                json_text::write_number(sum, &mut text).map_err(|_| Error::ContextNotNumber)?;
                self.put_member(key, Some(text.as_bytes()))
            }
        }
    }
}

/// A member's span with the comma that separates it from a neighbour, so that removing it
/// leaves valid JSON.
fn member_span(obj: &[u8], m: json_text::Member) -> (usize, usize) {
    let after = obj[m.value.1..]
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .map_or(obj.len(), |p| m.value.1 + p);
    if obj.get(after) == Some(&b',') {
        return (m.key, after + 1);
    }
    // The last member: take the comma before it, if any.
    let before = obj[..m.key]
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .unwrap_or(0);
    if obj.get(before) == Some(&b',') {
        (before, m.value.1)
    } else {
        (m.key, m.value.1)
    }
}

impl ContextView<'_> {
    /// Whether the context condition `index` of the chart holds.
    pub(crate) fn condition(&self, chart: &Chart<'_>, index: u16) -> bool {
        let c = chart.context_condition(index);
        let literal = chart.str(c.literal).as_bytes();
        let obj: &[u8] = match self.format {
            ContextFormat::Json => self.bytes,
            _ => b"{}",
        };
        let value = match json_text::find(obj, chart.str(c.key).as_bytes()) {
            Ok(Some(m)) => &obj[m.value.0..m.value.1],
            // A missing key is `undefined` in XState: equal to no literal.
            _ => return c.op == CompareOp::Ne,
        };
        let (eq, ord) = json_text::compare(value, literal);
        match c.op {
            CompareOp::Eq => eq,
            CompareOp::Ne => !eq,
            CompareOp::Lt => ord.is_some_and(|o| o.is_lt()),
            CompareOp::Le => ord.is_some_and(|o| o.is_le()),
            CompareOp::Gt => ord.is_some_and(|o| o.is_gt()),
            CompareOp::Ge => ord.is_some_and(|o| o.is_ge()),
        }
    }
}

fn decode<'s, X: Deserialize<'s>>(format: ContextFormat, bytes: &'s [u8]) -> Result<X, Error> {
    if format == ContextFormat::Json {
        return Err(Error::ContextDecode);
    }
    postcard::from_bytes(bytes).map_err(|_| Error::ContextDecode)
}

/// Stores `value` encoded with postcard, sized first so that a value too large is refused
/// before the old one is touched.
fn set_postcard<X: Serialize + ?Sized>(
    context: &mut ContextRef<'_>,
    value: &X,
) -> Result<(), Error> {
    let needed =
        postcard::experimental::serialized_size(value).map_err(|_| Error::ContextDecode)?;
    context.set_with(ContextFormat::Postcard, needed, |buf| {
        postcard::to_slice(value, buf).ok().map(|b| b.len())
    })
}

impl<'a> ActionContext<'a> {
    /// The machine's context as a `X`, decoded from postcard. [`Error::ContextDecode`] when
    /// it holds another type, none, or a JSON chart's context (read that with
    /// [`context_json`](Self::context_json)).
    pub fn context<'s, X: Deserialize<'s>>(&'s self) -> Result<X, Error> {
        decode(
            self.context.meta.format,
            &self.context.bytes[..self.context.meta.len],
        )
    }
    /// The machine's context as JSON text, when it is a JSON chart's context.
    pub fn context_json(&self) -> Option<&str> {
        (self.context.meta.format == ContextFormat::Json)
            .then(|| core::str::from_utf8(self.context.get()).ok())
            .flatten()
    }
    /// Replaces the machine's context with `value`, encoded with postcard. A value that does
    /// not fit the machine's context storage is [`Error::ContextFull`]: the old value stays
    /// and the step fails with the error too.
    pub fn set_context<X: Serialize>(&mut self, value: &X) -> Result<(), Error> {
        let r = set_postcard(&mut self.context, value);
        self.context_result(r)
    }
    /// Changes the context in place: decodes it as `X` (the default value when none was set
    /// yet), lets `f` change it, and stores it back, as [`set_context`](Self::set_context).
    pub fn update_context<X, F>(&mut self, f: F) -> Result<(), Error>
    where
        X: Serialize + serde::de::DeserializeOwned + Default,
        F: FnOnce(&mut X),
    {
        let mut value: X = match self.context.meta.format {
            ContextFormat::None => X::default(),
            format => {
                let r = decode(format, self.context.get());
                self.context_result(r)?
            }
        };
        f(&mut value);
        self.set_context(&value)
    }
    fn context_result<T>(&mut self, r: Result<T, Error>) -> Result<T, Error> {
        if let Err(e) = &r {
            self.context.error.get_or_insert(*e);
        }
        r
    }
}

impl<'a> GuardContext<'a> {
    /// The machine's context as a `X`, decoded from postcard (see
    /// [`ActionContext::context`]).
    pub fn context<X: Deserialize<'a>>(&self) -> Result<X, Error> {
        decode(self.context.format, self.context.bytes)
    }
    /// The machine's context as JSON text, when it is a JSON chart's context.
    pub fn context_json(&self) -> Option<&'a str> {
        (self.context.format == ContextFormat::Json)
            .then(|| core::str::from_utf8(self.context.bytes).ok())
            .flatten()
    }
}

impl<
        'c,
        const W: usize,
        const Q: usize,
        const O: usize,
        const T: usize,
        const H: usize,
        const B: usize,
        const C: usize,
        const R: usize,
    > Machine<'c, W, Q, O, T, H, B, C, R>
{
    /// How the context is encoded.
    pub fn context_format(&self) -> ContextFormat {
        self.context.meta.format
    }
    /// The context's bytes: postcard of a typed value, or a JSON chart's JSON text.
    pub fn context_bytes(&self) -> &[u8] {
        self.context.get()
    }
    /// The context as JSON text, when it is a JSON chart's context (or one set with
    /// [`set_context_json`](Self::set_context_json)).
    pub fn context_json(&self) -> Option<&str> {
        (self.context.meta.format == ContextFormat::Json)
            .then(|| core::str::from_utf8(self.context.get()).ok())
            .flatten()
    }
    /// The context as a `X`, decoded from postcard.
    pub fn context<'s, X: Deserialize<'s>>(&'s self) -> Result<X, Error> {
        decode(self.context.meta.format, self.context.get())
    }
    /// Sets the context to a typed value, encoded with postcard: the initial value of a Rust
    /// machine (before [`start`](Self::start)), or a host's change between steps.
    pub fn set_context<X: Serialize>(&mut self, value: &X) -> Result<(), Error> {
        set_postcard(&mut self.context.as_ref(&mut None), value)
    }
    /// Sets the context to JSON text, which must be one JSON object (what `assign` needs).
    pub fn set_context_json(&mut self, text: &str) -> Result<(), Error> {
        self.context.as_ref(&mut None).set_json(text.as_bytes())
    }
}
