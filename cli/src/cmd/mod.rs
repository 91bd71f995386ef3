//! The verbs that act on a bus or an app; the chart verbs (`check`, `simulate`, `compile`,
//! `diagram`) are thin enough to live in `main.rs` over the facade.

pub mod app;
pub mod bus;
pub mod serial;
pub mod status;
