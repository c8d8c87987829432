//! What an emulator received: one [`RecordedRequest`] per request it read a head for, in the
//! order answered, with the status answered (0 = dropped without an answer). Tests read these
//! through `Emulator::requests`; the wire facts they check are in `docs/PROTOCOLS.md`.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    pub method: String,
    /// Path with the query string.
    pub path: String,
    /// Header names are lowercase; values are lossily decoded as UTF-8.
    pub headers: Vec<(String, String)>,
    /// The body after Content-Encoding was undone (the wire bytes if it could not be).
    pub body: Vec<u8>,
    /// Body bytes as received (before decompression).
    pub wire_bytes: usize,
    /// The status answered; 0 when the connection was dropped without an answer.
    pub status: u16,
}

impl RecordedRequest {
    /// The first value of a header (name matched case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}
