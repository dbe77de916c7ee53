//! The packet layer: 3-byte length + 1-byte sequence id framing, splitting of
//! payloads of 16 MiB and more, sequence checking and `max_allowed_packet`.
//!
//! ```text
//!  | len (3, LE) | seq (1) | payload (len) |   len == 0xffffff: more follows
//! ```
//!
//! Reads never buffer beyond the packet they return, so the stream can be
//! handed to TLS right after the SSLRequest packet. A lying length costs at
//! most the bytes actually received: the payload buffer grows as data
//! arrives, bounded by the limit given to [`PacketIo::read_packet`].

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::consts::MAX_PAYLOAD;

/// Why a packet could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// The peer closed the connection cleanly between packets.
    Closed,
    /// The socket failed.
    Io(std::io::Error),
    /// The peer closed the connection in the middle of a packet.
    Truncated {
        /// Bytes the header announced.
        expected: usize,
        /// Bytes received.
        got: usize,
    },
    /// A sequence id other than the expected one.
    OutOfOrder {
        /// Expected sequence id.
        expected: u8,
        /// Received sequence id.
        got: u8,
    },
    /// The payload exceeds the limit.
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The first bytes are a TLS record, not a MySQL packet: the client
    /// started TLS without sending an SSLRequest first.
    TlsInsteadOfMysql,
    /// No packet started within the idle timeout (`wait_timeout`), or a
    /// started packet did not complete within `net_read_timeout`.
    TimedOut {
        /// Which timeout.
        what: &'static str,
        /// Its length.
        after: Duration,
    },
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Closed => f.write_str("connection closed by the client"),
            ReadError::Io(e) => write!(f, "read failed: {e}"),
            ReadError::Truncated { expected, got } => write!(
                f,
                "connection closed mid-packet ({got} of {expected} payload bytes)"
            ),
            ReadError::OutOfOrder { expected, got } => {
                write!(f, "packet sequence id {got}, expected {expected}")
            }
            ReadError::TooLarge { limit } => {
                write!(f, "packet larger than the limit of {limit} bytes")
            }
            ReadError::TimedOut { what, after } => {
                write!(f, "{what}: nothing received for {}s", after.as_secs())
            }
            ReadError::TlsInsteadOfMysql => f.write_str(
                "the client sent a TLS ClientHello instead of a MySQL packet \
                 (TLS must be requested with an SSLRequest packet first)",
            ),
        }
    }
}

/// One connection's packet reader and writer.
#[derive(Debug)]
pub struct PacketIo<S> {
    stream: S,
    seq: u8,
    out: Vec<u8>,
    /// Whether any packet was read yet (to spot a TLS ClientHello).
    first_read: bool,
    /// How long to wait for a packet to start (`wait_timeout`).
    idle_timeout: Option<Duration>,
    /// How long a started packet may take to complete (`net_read_timeout`).
    packet_timeout: Option<Duration>,
}

impl<S> PacketIo<S> {
    /// Wraps a stream; the next packet expected has sequence id 0.
    pub fn new(stream: S) -> Self {
        PacketIo {
            stream,
            seq: 0,
            out: Vec::new(),
            first_read: true,
            idle_timeout: None,
            packet_timeout: None,
        }
    }

    /// Wraps a stream continuing an exchange at sequence id `seq`.
    pub fn with_seq(stream: S, seq: u8) -> Self {
        PacketIo {
            stream,
            seq,
            out: Vec::new(),
            first_read: false,
            idle_timeout: None,
            packet_timeout: None,
        }
    }

    /// Sets the idle timeout (between packets) and the timeout for the rest
    /// of a packet once its first byte arrived.
    pub fn set_timeouts(&mut self, idle: Option<Duration>, packet: Option<Duration>) {
        self.idle_timeout = idle;
        self.packet_timeout = packet;
    }

    /// Starts a new command: sequence ids restart at 0.
    pub fn reset_seq(&mut self) {
        self.seq = 0;
    }

    /// The next sequence id.
    pub fn seq(&self) -> u8 {
        self.seq
    }

    /// The stream (for a TLS upgrade, after [`PacketIo::flush`]).
    pub fn into_parts(self) -> (S, u8) {
        (self.stream, self.seq)
    }

    /// The stream, borrowed.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// Queues one payload as one or more packets (split at 16 MiB - 1, with
    /// an empty packet after a payload that is an exact multiple).
    pub fn queue(&mut self, payload: &[u8]) {
        let mut rest = payload;
        loop {
            let n = rest.len().min(MAX_PAYLOAD);
            self.out.extend_from_slice(&(n as u32).to_le_bytes()[..3]);
            self.out.push(self.seq);
            self.seq = self.seq.wrapping_add(1);
            self.out.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            if n < MAX_PAYLOAD {
                break;
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> PacketIo<S> {
    /// Writes everything queued.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        if !self.out.is_empty() {
            let out = std::mem::take(&mut self.out);
            self.stream.write_all(&out).await?;
            self.out = out;
            self.out.clear();
        }
        self.stream.flush().await
    }

    /// Queues one payload and writes everything queued.
    pub async fn send(&mut self, payload: &[u8]) -> std::io::Result<()> {
        self.queue(payload);
        self.flush().await
    }
}

impl<S: AsyncRead + Unpin> PacketIo<S> {
    /// Reads one logical payload (reassembling split packets), checking
    /// sequence ids and that the whole payload is at most `limit` bytes.
    pub async fn read_packet(&mut self, limit: usize) -> Result<Vec<u8>, ReadError> {
        // Wait for the first byte with the idle timeout, then give the rest
        // of the packet the packet timeout.
        let mut first = [0u8; 1];
        let n = match self.idle_timeout {
            Some(t) => tokio::time::timeout(t, self.stream.read(&mut first))
                .await
                .map_err(|_| ReadError::TimedOut {
                    what: "idle connection (wait_timeout)",
                    after: t,
                })?,
            None => self.stream.read(&mut first).await,
        }
        .map_err(ReadError::Io)?;
        if n == 0 {
            return Err(ReadError::Closed);
        }
        match self.packet_timeout {
            Some(t) => tokio::time::timeout(t, self.read_rest(first[0], limit))
                .await
                .map_err(|_| ReadError::TimedOut {
                    what: "incomplete packet (net_read_timeout)",
                    after: t,
                })?,
            None => self.read_rest(first[0], limit).await,
        }
    }

    async fn read_rest(&mut self, first: u8, limit: usize) -> Result<Vec<u8>, ReadError> {
        let mut payload = Vec::new();
        let mut have_first = true;
        loop {
            let mut header = [0u8; 4];
            let mut filled = 0;
            if have_first {
                header[0] = first;
                filled = 1;
                have_first = false;
            }
            while filled < 4 {
                let n = self
                    .stream
                    .read(&mut header[filled..])
                    .await
                    .map_err(ReadError::Io)?;
                if n == 0 {
                    return Err(ReadError::Truncated {
                        expected: 4,
                        got: filled,
                    });
                }
                filled += n;
            }
            if self.first_read && header[0] == 0x16 && header[1] == 0x03 {
                return Err(ReadError::TlsInsteadOfMysql);
            }
            self.first_read = false;
            let len = u32::from_le_bytes([header[0], header[1], header[2], 0]) as usize;
            if header[3] != self.seq {
                return Err(ReadError::OutOfOrder {
                    expected: self.seq,
                    got: header[3],
                });
            }
            self.seq = self.seq.wrapping_add(1);
            if payload.len() + len > limit {
                return Err(ReadError::TooLarge { limit });
            }
            let before = payload.len();
            let got = (&mut self.stream)
                .take(len as u64)
                .read_to_end(&mut payload)
                .await
                .map_err(ReadError::Io)?;
            if got < len {
                return Err(ReadError::Truncated {
                    expected: len,
                    got: payload.len() - before,
                });
            }
            if len < MAX_PAYLOAD {
                return Ok(payload);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn roundtrip(payload: &[u8]) -> Vec<u8> {
        let (a, b) = tokio::io::duplex(1 << 20);
        let mut w = PacketIo::new(a);
        let data = payload.to_vec();
        let writer = tokio::spawn(async move {
            w.send(&data).await.unwrap();
            w
        });
        let mut r = PacketIo::new(b);
        let got = r.read_packet(64 << 20).await.unwrap();
        let w = writer.await.unwrap();
        assert_eq!(w.seq(), r.seq(), "both sides agree on the next sequence id");
        got
    }

    #[tokio::test]
    async fn splits_and_reassembles_payloads_of_16_mib_and_more() {
        for len in [
            0,
            1,
            MAX_PAYLOAD - 1,
            MAX_PAYLOAD,
            MAX_PAYLOAD + 7,
            2 * MAX_PAYLOAD,
        ] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            assert_eq!(roundtrip(&payload).await, payload, "len {len}");
        }
    }

    #[tokio::test]
    async fn exact_multiple_of_max_payload_ends_with_an_empty_packet() {
        let mut io = PacketIo::new(tokio::io::sink());
        io.queue(&vec![0u8; MAX_PAYLOAD]);
        assert_eq!(io.out.len(), 4 + MAX_PAYLOAD + 4);
        assert_eq!(io.seq(), 2);
    }

    #[tokio::test]
    async fn rejects_payloads_over_the_limit_before_reading_them() {
        let (mut a, b) = tokio::io::duplex(64);
        // Announce 1000 bytes, send none: the limit check comes first.
        tokio::io::AsyncWriteExt::write_all(&mut a, &[0xe8, 0x03, 0, 0])
            .await
            .unwrap();
        let mut r = PacketIo::new(b);
        assert!(matches!(
            r.read_packet(100).await,
            Err(ReadError::TooLarge { limit: 100 })
        ));
    }
}
