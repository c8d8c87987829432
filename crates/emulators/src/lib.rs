//! SIEM emulators: small HTTP/1.1 servers on 127.0.0.1 that answer like the real receivers, for
//! the integration tests and `examples/platform_figures.rs`. A crate of its own so that none of
//! it is compiled into the product (`sendauth-siem demo` has its own small receiver,
//! `src/demo/receiver.rs`).
//!
//! One [`Emulator`] is one listening socket speaking one [`Kind`] of SIEM. Status codes and
//! bodies come from `docs/PROTOCOLS.md` (each platform file cites its section). Each emulator
//! records what it received ([`Emulator::requests`]) and what it accepted ([`Emulator::events`])
//! and can be told to fail ([`Fault`]).
//!
//! Every request goes through the same pipeline:
//! 1. route: the platform answers 404 (unknown path) or 405 (wrong method) itself;
//! 2. read the body, bounded by `max_content_length`: a larger body is answered 413 and is
//!    drained (read and discarded, never buffered) up to 64 MiB so the client sees the answer
//!    rather than a reset; past that, or with `Expect: 100-continue`, the connection is closed;
//! 3. decode `Content-Encoding` (gzip, deflate = zlib), bounded by the same limit; each platform
//!    decides which encodings it accepts;
//! 4. faults: only requests that carry events ("ingest" requests: generic POST, HEC
//!    event/raw, ES `_doc`/`_create`/`_bulk`, Sumo POST) take faults; control requests (HEC
//!    health and ack polls, ES templates and `GET /`) never do, so a client's setup or
//!    health check cannot eat a fault meant for its data;
//! 5. the platform's handler runs synchronously under the state lock, so its checks (auth,
//!    `_id` dedupe, ack ids) and what it records are atomic with respect to other requests;
//! 6. the request is recorded with the status answered, and waiters are woken.
//!
//! Invariants:
//! - `events()` holds only accepted events, in the order they were accepted; a rejected event is
//!   never recorded, and a partially accepted batch records exactly the accepted prefix;
//! - every request the server read a head for is in `requests()`, in the order it was answered
//!   (status 0 = the connection was dropped without an answer);
//! - no input panics the server: client data is never unwrapped, and a poisoned lock is
//!   recovered rather than propagated;
//! - `stop()` returns only once the listener and every connection are closed.
//!
//! Not reproduced here: TLS (the TLS tests put a rustls front, `tests/common/tls.rs`, before
//! an emulator), HTTP/2, and timing behaviour such as server-side idle timeouts.
//!
//! Where things are: `config.rs` (what an emulator is told), `emulator.rs` (the handle a test
//! holds), `server.rs` (listener and pipeline), `body.rs` (reading and decoding bodies),
//! `fault.rs` (faults and their queue), `record.rs` (what was received), `state.rs` (the state
//! under the lock), `request.rs`/`reply.rs` (what platforms see and answer), `auth.rs` (the
//! shared credentials check), then one file or folder per SIEM.

mod auth;
mod azure_monitor;
mod body;
mod config;
mod datadog;
mod elasticsearch;
mod emulator;
mod fault;
mod generic;
mod record;
mod reply;
mod request;
mod server;
mod splunk_hec;
mod state;
mod sumo_logic;

pub use config::{EmulatorConfig, ExpectedAuth, Kind};
pub use emulator::Emulator;
pub use fault::Fault;
pub use record::RecordedRequest;

// What the platform files import from the crate root.
pub(crate) use auth::{basic_credentials, check_auth, strip_prefix_ci, AuthCheck};
pub(crate) use reply::{Handled, Reply};
pub(crate) use request::{BodyError, Encoding, Req, Route};
pub(crate) use state::State;

#[cfg(test)]
pub(crate) mod testkit;

#[cfg(test)]
mod tests;
