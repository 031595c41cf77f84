//! A TCP relay between NATS clients and the server that, once armed, holds back the first
//! JetStream acknowledgement a client sends (`PUB $JS.ACK.… +ACK`) and everything after it.
//!
//! A consumer acknowledges only after its transaction committed, so when the gate holds, the
//! event's effect is in the database and the broker still counts the event as unacknowledged:
//! the moment a fault test kills the consumer's process in.
//!
//! The client protocol is line-based: `PUB subject [reply] size\r\n`, `HPUB subject [reply]
//! header-size total-size\r\n`, each followed by its payload and `\r\n`; every other operation
//! is one line. Whole operations are forwarded, so nothing reaches the server half-sent.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct AckGate {
    /// `nats://…` of the gate, for the client under test.
    pub url: String,
    armed: Arc<AtomicBool>,
    held: watch::Receiver<bool>,
    accepting: tokio::task::JoinHandle<()>,
}

impl AckGate {
    /// A gate in front of the server at `server` (`host:port`), letting everything through
    /// until [`AckGate::arm`].
    pub async fn start(server: &str) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("nats://{}", listener.local_addr()?);
        let armed = Arc::new(AtomicBool::new(false));
        let (hold, held) = watch::channel(false);
        let hold = Arc::new(hold);
        let server = server.to_string();
        let accepting = {
            let armed = armed.clone();
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let Ok(upstream) = TcpStream::connect(&server).await else {
                        continue;
                    };
                    tokio::spawn(relay(client, upstream, armed.clone(), hold.clone()));
                }
            })
        };
        Ok(Self {
            url,
            armed,
            held,
            accepting,
        })
    }

    /// From now on, the next acknowledgement is held.
    pub fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }

    /// Waits until an acknowledgement is held.
    pub async fn held(&mut self, timeout: Duration) -> anyhow::Result<()> {
        tokio::time::timeout(timeout, self.held.wait_for(|held| *held))
            .await
            .context("no acknowledgement reached the gate")?
            .context("the gate stopped")?;
        Ok(())
    }
}

impl Drop for AckGate {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

async fn relay(
    client: TcpStream,
    upstream: TcpStream,
    armed: Arc<AtomicBool>,
    hold: Arc<watch::Sender<bool>>,
) {
    let (mut from_client, to_client) = client.into_split();
    let (from_server, mut to_server) = upstream.into_split();
    let mut to_client = to_client;
    let mut from_server = from_server;
    let answers = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
    });
    let mut pending = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    'connection: loop {
        let read = match from_client.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        pending.extend_from_slice(&chunk[..read]);
        while let Some(length) = operation_length(&pending) {
            let operation: Vec<u8> = pending.drain(..length).collect();
            if armed.load(Ordering::SeqCst) && is_ack(&operation) {
                armed.store(false, Ordering::SeqCst);
                hold.send_replace(true);
                // Swallow the rest of this connection: the client is about to be killed.
                while matches!(from_client.read(&mut chunk).await, Ok(n) if n > 0) {}
                break 'connection;
            }
            if to_server.write_all(&operation).await.is_err() {
                break 'connection;
            }
        }
    }
    answers.abort();
}

/// The length of the first whole operation in `buffer`, when it holds one.
fn operation_length(buffer: &[u8]) -> Option<usize> {
    let line_end = buffer.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(&buffer[..line_end]).ok()?;
    let mut words = line.split_ascii_whitespace();
    let payload = match words.next().map(str::to_ascii_uppercase).as_deref() {
        Some("PUB") | Some("HPUB") => words.last()?.parse::<usize>().ok()? + 2,
        _ => 0,
    };
    let length = line_end + 2 + payload;
    (buffer.len() >= length).then_some(length)
}

/// A `PUB` to a JetStream acknowledgement subject whose payload is `+ACK` (not `+WPI`, the
/// "still working" a slow handler sends, nor `-NAK`).
fn is_ack(operation: &[u8]) -> bool {
    let Some(line_end) = operation.windows(2).position(|w| w == b"\r\n") else {
        return false;
    };
    operation.starts_with(b"PUB $JS.ACK.") && operation[line_end + 2..].starts_with(b"+ACK")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_cut_whole_and_acks_are_told_from_the_rest() {
        let ack = b"PUB $JS.ACK.s.billing.1.5.5.1.0 4\r\n+ACK\r\n";
        let progress = b"PUB $JS.ACK.s.billing.1.5.5.1.0 4\r\n+WPI\r\n";
        let ping = b"PING\r\n";
        let mut stream = Vec::new();
        stream.extend_from_slice(ping);
        stream.extend_from_slice(progress);
        stream.extend_from_slice(ack);
        assert_eq!(operation_length(&stream), Some(ping.len()));
        assert_eq!(
            operation_length(&stream[ping.len()..]),
            Some(progress.len())
        );
        assert_eq!(operation_length(&ack[..ack.len() - 1]), None, "half an ack");
        assert!(is_ack(ack));
        assert!(!is_ack(progress));
        assert!(!is_ack(ping));
        assert!(!is_ack(b"PUB carerp.t.workorder.completed 4\r\n+ACK\r\n"));
        let headers = b"HPUB s 12 14\r\nNATS/1.0\r\n\r\nhi\r\n";
        assert_eq!(operation_length(headers), Some(headers.len()));
    }
}
