//! The counting receiver: an HTTP/1 server on 127.0.0.1 that answers 200 to every POST and
//! counts its NDJSON lines by `transaction_id` ([`Tally`]), optionally a round trip away
//! (`--rtt`). It keeps no event, only one arrival time per expected id, so a million events cost
//! a few MiB and the receiver stays cheap beside the agent it measures.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};

const ID_MARK: &[u8] = b"\"transaction_id\":\"tx-";

/// What the receiver saw. Arrival times are nanoseconds since `base`, plus one (0 = not yet).
pub struct Tally {
    pub base: Instant,
    pub events: AtomicU64,
    pub bytes: AtomicU64,
    pub requests: AtomicU64,
    pub duplicates: AtomicU64,
    /// Events whose id is below one already seen (meaningful for a single ordered stream).
    pub reordered: AtomicU64,
    /// Lines without a readable `tx-<n>` id, or with an id beyond the capacity.
    pub unknown: AtomicU64,
    pub first_ns: AtomicU64,
    pub last_ns: AtomicU64,
    /// TCP connections accepted.
    pub connections: AtomicU64,
    /// Requests received and not yet answered (with `--rtt`, answers wait that long).
    pub open_requests: AtomicU64,
    /// The most requests open at once since the start or the last [`Tally::reset_max_open`].
    pub max_open_requests: AtomicU64,
    max_id: AtomicU64,
    arrival: Vec<AtomicU64>,
}

impl Tally {
    fn new(capacity: u64) -> Tally {
        Tally {
            base: Instant::now(),
            events: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            reordered: AtomicU64::new(0),
            unknown: AtomicU64::new(0),
            first_ns: AtomicU64::new(0),
            last_ns: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            open_requests: AtomicU64::new(0),
            max_open_requests: AtomicU64::new(0),
            max_id: AtomicU64::new(0),
            arrival: (0..capacity).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn ns(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.base).as_nanos() as u64
    }

    /// Counts one NDJSON body that arrived at `now`.
    fn record(&self, body: &[u8], now: Instant) {
        let t = self.ns(now) + 1;
        let mut n = 0u64;
        let finder = memchr::memmem::Finder::new(ID_MARK);
        for line in body.split(|b| *b == b'\n') {
            if line.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            n += 1;
            let id = finder.find(line).and_then(|p| {
                let digits = &line[p + ID_MARK.len()..];
                let end = digits.iter().position(|b| !b.is_ascii_digit()).unwrap_or(digits.len());
                std::str::from_utf8(&digits[..end]).ok()?.parse::<u64>().ok()
            });
            match id.and_then(|id| self.arrival.get(id as usize).map(|slot| (id, slot))) {
                Some((id, slot)) => {
                    if slot.compare_exchange(0, t, Ordering::Relaxed, Ordering::Relaxed).is_err() {
                        self.duplicates.fetch_add(1, Ordering::Relaxed);
                    }
                    let prev = self.max_id.fetch_max(id + 1, Ordering::Relaxed);
                    if id + 1 < prev {
                        self.reordered.fetch_add(1, Ordering::Relaxed);
                    }
                }
                None => {
                    self.unknown.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        let _ = self.first_ns.compare_exchange(0, t, Ordering::Relaxed, Ordering::Relaxed);
        self.last_ns.fetch_max(t, Ordering::Relaxed);
        self.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.events.fetch_add(n, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }

    /// Starts a new window for `max_open_requests` (from the requests open now).
    pub fn reset_max_open(&self) {
        self.max_open_requests
            .store(self.open_requests.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    fn open_request(self: &Arc<Self>) -> OpenRequest {
        let open = self.open_requests.fetch_add(1, Ordering::Relaxed) + 1;
        self.max_open_requests.fetch_max(open, Ordering::Relaxed);
        OpenRequest(self.clone())
    }

    /// When event `id` arrived, if it did.
    pub fn arrived(&self, id: u64) -> Option<Instant> {
        let v = self.arrival.get(id as usize)?.load(Ordering::Relaxed);
        (v != 0).then(|| self.base + Duration::from_nanos(v - 1))
    }

    pub fn last_arrival(&self) -> Option<Instant> {
        let v = self.last_ns.load(Ordering::Relaxed);
        (v != 0).then(|| self.base + Duration::from_nanos(v - 1))
    }

    /// Events of `range` that have not arrived.
    pub fn missing(&self, range: std::ops::Range<u64>) -> u64 {
        range.filter(|i| self.arrived(*i).is_none()).count() as u64
    }
}

/// A request being handled: counted in `open_requests` until dropped (answered or cut off).
struct OpenRequest(Arc<Tally>);

impl Drop for OpenRequest {
    fn drop(&mut self) {
        self.0.open_requests.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An HTTP/1 server on 127.0.0.1 that answers 200 to every POST and counts its NDJSON lines.
///
/// With a round-trip delay (`--rtt`), it counts a body when it has arrived, then answers after
/// the delay; it also serves a new connection only after the delay, as a TCP handshake with a
/// distant peer costs one round trip. Delays are per request (tokio timers), so any number of
/// requests can be open at once, as with a real distant SIEM.
pub struct Receiver {
    pub addr: SocketAddr,
    pub tally: Arc<Tally>,
    rtt_ns: Arc<AtomicU64>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Receiver {
    /// Listens on `listen` (port 0: any free port); ids `0..capacity` get arrival times. Each
    /// request is answered `rtt` after its body arrived (zero: at once).
    pub fn start_with_rtt(listen: SocketAddr, capacity: u64, rtt: Duration) -> anyhow::Result<Receiver> {
        anyhow::ensure!(
            listen.ip().is_loopback(),
            "the receiver only listens on a loopback address, not {listen}"
        );
        let std_listener = std::net::TcpListener::bind(listen).with_context(|| format!("receiver: cannot listen on {listen}"))?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let tally = Arc::new(Tally::new(capacity));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let t = tally.clone();
        let rtt_ns = Arc::new(AtomicU64::new(rtt.as_nanos() as u64));
        let delay = rtt_ns.clone();
        let thread = std::thread::Builder::new()
            .name("bench-receiver".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        eprintln!("receiver: cannot start a runtime: {e}");
                        return;
                    }
                };
                rt.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(std_listener) else {
                        return;
                    };
                    let accept = async {
                        while let Ok((stream, _)) = listener.accept().await {
                            let _ = stream.set_nodelay(true);
                            t.connections.fetch_add(1, Ordering::Relaxed);
                            let t = t.clone();
                            let delay = delay.clone();
                            tokio::spawn(async move {
                                let handshake = Duration::from_nanos(delay.load(Ordering::Relaxed));
                                if !handshake.is_zero() {
                                    tokio::time::sleep(handshake).await;
                                }
                                let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                                    let t = t.clone();
                                    let delay = delay.clone();
                                    async move {
                                        let _open = t.open_request();
                                        let body = req.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
                                        t.record(&body, Instant::now());
                                        let rtt = Duration::from_nanos(delay.load(Ordering::Relaxed));
                                        if !rtt.is_zero() {
                                            tokio::time::sleep(rtt).await;
                                        }
                                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::new())))
                                    }
                                });
                                let io = hyper_util::rt::TokioIo::new(stream);
                                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, svc).await;
                            });
                        }
                    };
                    tokio::select! {
                        _ = accept => {}
                        _ = stop_rx => {}
                    }
                });
            })
            .context("cannot start the receiver thread")?;
        Ok(Receiver {
            addr,
            tally,
            rtt_ns,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// Changes the round-trip delay for requests and connections from now on.
    pub fn set_rtt(&self, rtt: Duration) {
        self.rtt_ns.store(rtt.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Waits until `n` events arrived; false if `timeout` passed (or `alive` said the agent died).
    pub fn wait_for(&self, n: u64, timeout: Duration, mut alive: impl FnMut() -> bool) -> bool {
        let end = Instant::now() + timeout;
        loop {
            if self.tally.count() >= n {
                return true;
            }
            if Instant::now() >= end || !alive() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;
    use crate::events::events_buffer;

    #[test]
    fn tally_counts_ids_duplicates_and_reordering() {
        let t = Tally::new(10);
        let body = [events_buffer(0..3), events_buffer(1..2), events_buffer(0..1)].concat();
        t.record(&body, Instant::now());
        t.record(b"{\"no\":\"id\"}\n", Instant::now());
        assert_eq!(t.count(), 6);
        assert_eq!(t.duplicates.load(Ordering::Relaxed), 2);
        assert_eq!(t.reordered.load(Ordering::Relaxed), 2);
        assert_eq!(t.unknown.load(Ordering::Relaxed), 1);
        assert_eq!(t.missing(0..4), 1);
    }

    /// Three requests on three connections, all sent before any answer is read: each answer
    /// comes no sooner than the delay, and the receiver saw three connections, three requests
    /// open at once and three events. (Assumes the three local writes happen within 500 ms.)
    #[test]
    fn receiver_delays_answers_and_counts_connections_and_open_requests() {
        let rtt = Duration::from_millis(500);
        let rx = Receiver::start_with_rtt("127.0.0.1:0".parse().unwrap(), 3, rtt).unwrap();
        let t0 = Instant::now();
        let mut conns: Vec<std::net::TcpStream> = (0..3u64)
            .map(|i| {
                let mut s = std::net::TcpStream::connect(rx.addr).unwrap();
                let body = events_buffer(i..i + 1);
                write!(
                    s,
                    "POST /ingest HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                )
                .unwrap();
                s.write_all(&body).unwrap();
                s
            })
            .collect();
        for s in &mut conns {
            let mut answer = String::new();
            s.read_to_string(&mut answer).unwrap();
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
        }
        assert!(t0.elapsed() >= rtt, "answered after {:?}", t0.elapsed());
        let t = &rx.tally;
        assert_eq!(t.connections.load(Ordering::Relaxed), 3);
        assert_eq!(t.requests.load(Ordering::Relaxed), 3);
        assert_eq!(t.max_open_requests.load(Ordering::Relaxed), 3);
        assert_eq!(t.missing(0..3), 0);
        t.reset_max_open();
        assert_eq!(t.max_open_requests.load(Ordering::Relaxed), t.open_requests.load(Ordering::Relaxed));
    }
}
