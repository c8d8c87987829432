//! sendauth-siem: forwards SendAuth authentication events to a SIEM, durably.
//!
//! Data flows one way: sources -> validate -> queue -> sink -> SIEM. See ARCHITECTURE.md.

pub mod config;
pub mod emulator;
pub mod event;
pub mod queue;
pub mod sink;
