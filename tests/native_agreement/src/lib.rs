//! The conformance cases and the differential batch compiled to native machines by the build
//! script (see `build.rs`), for `tests/agreement.rs`.

include!(concat!(env!("OUT_DIR"), "/cases.rs"));
