//! sendauth-siem: forwards SendAuth authentication events to a SIEM, durably.
//!
//! Data flows one way: sources -> validate -> queue -> sink -> SIEM. See ARCHITECTURE.md.

pub mod config;
pub mod event;
pub mod queue;
pub mod sink;
pub mod admin;
pub mod agent;
pub mod metrics;
pub mod reload;
pub mod server;
pub mod shutdown;
pub mod source;
pub mod status;
pub mod status_page;
pub mod connection_test;
