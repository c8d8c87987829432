//! sendauth-siem: forwards SendAuth authentication events to a SIEM, durably.
//!
//! Data flows one way: sources -> validate -> queue -> sink -> SIEM. See ARCHITECTURE.md.

pub mod admin;
pub mod agent;
pub mod audit;
pub mod build_info;
pub mod cli;
pub mod config;
pub mod connection_test;
pub mod demo;
pub mod event;
pub mod fd_limit;
pub mod history;
pub mod metrics;
pub mod queue;
pub mod reload;
pub mod schema;
pub mod secret;
pub mod server;
pub(crate) mod service_manager;
pub mod settings;
pub mod shutdown;
pub mod sink;
pub mod source;
pub mod status;
pub mod status_page;
pub mod tap;
pub mod transform;
pub mod units;
