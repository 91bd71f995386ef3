//! The core's one logging macro, `core_log!`: log lines go to `defmt` (feature `defmt`),
//! else to the `log` facade (feature `log`), else nowhere, with their arguments still
//! evaluated and type-checked so that every build sees the same code. (smoltcp's
//! `src/macros.rs` is the model.)
//!
//! `core_log!(level, "format {}", args...)` with `level` one of `trace`, `debug`, `info`,
//! `warn`, `error`. Formats are the common subset of `log` and `defmt`: `{}` placeholders
//! only, with arguments that are both `Display` and `defmt::Format` (`&str`, integers,
//! [`crate::Error`], ...).
//!
//! The core logs the decisions a host would otherwise not see: a hub refusing a link or a
//! frame, an endpoint giving up on its hub, a serial frame dropped, a machine stopped by an
//! error. It never logs on the hot path of a successful step or delivery.

#[cfg(feature = "defmt")]
macro_rules! core_log {
    ($level:ident, $fmt:literal $(, $arg:expr)* $(,)?) => {
        defmt::$level!($fmt $(, $arg)*)
    };
}

#[cfg(all(feature = "log", not(feature = "defmt")))]
macro_rules! core_log {
    ($level:ident, $fmt:literal $(, $arg:expr)* $(,)?) => {
        log::$level!(target: "interstate_core", $fmt $(, $arg)*)
    };
}

#[cfg(not(any(feature = "log", feature = "defmt")))]
macro_rules! core_log {
    ($level:ident, $fmt:literal $(, $arg:expr)* $(,)?) => {{
        $( let _ = &$arg; )*
    }};
}
