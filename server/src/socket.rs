//! One client socket, from the first byte to the last: TLS negotiation, then pgwire's
//! message dispatch in a loop of our own, which adds what pgwire's `process_socket`
//! leaves out:
//!
//! - a limit on the size of any one message ([`FrameLimit`]), checked on the length
//!   prefix before the message is buffered (pgwire alone buffers up to 1 GiB);
//! - `idle_session_timeout` and `idle_in_transaction_session_timeout`, which close a
//!   session that sits idle (57P05, 25P03);
//! - `pg_terminate_backend`, which closes a session, idle or busy (57P01).
//!
//! The loop is otherwise pgwire's: a startup that does not finish in a minute ends the
//! connection, a Terminate ends it, a FATAL error ends it, and any other error is
//! reported and the connection goes on. Garbage on the socket is a protocol error for
//! that connection alone.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use pgwire::api::{ClientInfo, PgWireConnectionState, PgWireServerHandlers};
use pgwire::error::PgWireError;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::server::{negotiate_tls, process_error, process_message, MaybeTls};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, FramedParts};

use crate::errors::ClientError;
use crate::frontend::Frontend;
use crate::handler::ConnectionHandlers;

/// PostgreSQL's `authentication_timeout` default, and pgwire's.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Serves one accepted socket until the client leaves, a FATAL error, or the socket
/// breaks.
pub async fn serve(tcp: TcpStream, frontend: Arc<Frontend>, handlers: ConnectionHandlers) -> io::Result<()> {
    let startup_deadline = tokio::time::sleep(STARTUP_TIMEOUT);
    tokio::pin!(startup_deadline);
    let negotiated = tokio::select! {
        _ = &mut startup_deadline => return Ok(()),
        negotiated = negotiate_tls(tcp, frontend.tls.clone()) => negotiated?,
    };
    // A direct TLS handshake without TLS configured: nothing to say to it.
    let Some(socket) = negotiated else { return Ok(()) };

    let parts = socket.into_parts();
    let mut limit = FrameLimit::new(parts.io, frontend.max_message_bytes);
    limit.frames.scan(&parts.read_buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let mut framed = FramedParts::new(limit, parts.codec);
    framed.read_buf = parts.read_buf;
    framed.write_buf = parts.write_buf;
    let mut socket = Framed::from_parts(framed);

    let startup = handlers.startup_handler();
    let simple = handlers.simple_query_handler();
    let extended = handlers.extended_query_handler();
    let copy = handlers.copy_handler();
    let cancel = handlers.cancel_handler();
    loop {
        let starting = matches!(
            socket.state(),
            PgWireConnectionState::AwaitingStartup | PgWireConnectionState::AuthenticationInProgress
        );
        let idle = match socket.state() {
            PgWireConnectionState::ReadyForQuery => handlers.idle_timeout().await,
            _ => None,
        };
        let terminated = handlers.terminated();
        let next = tokio::select! {
            message = socket.next() => Next::Message(message),
            _ = &mut startup_deadline, if starting => Next::Message(None),
            _ = idle_for(idle.as_ref().map(|t| t.after)) => Next::Idle,
            _ = until_terminated(terminated.as_deref()) => Next::Terminated,
        };
        let message = match next {
            Next::Message(message) => message,
            Next::Idle => {
                let timeout = idle.expect("the branch waits only with a timeout");
                fatal(&mut socket, ClientError::fatal(timeout.code, timeout.message)).await?;
                break;
            }
            Next::Terminated => {
                fatal(&mut socket, terminating()).await?;
                break;
            }
        };
        let message = match message {
            Some(Ok(message)) => message,
            Some(Err(PgWireError::IoError(e))) if e.get_ref().is_some_and(|e| e.is::<TooLarge>()) => {
                let message = e.into_inner().map(|e| e.to_string()).unwrap_or_default();
                fatal(&mut socket, ClientError::fatal("54000", message)).await?;
                break;
            }
            Some(Err(e)) => {
                // A message pgwire cannot decode: the connection's stream is lost.
                tracing::debug!(error = %e, "closing a connection after a malformed message");
                let _ = process_error(&mut socket, e, false).await;
                break;
            }
            None => break,
        };
        if matches!(message, PgWireFrontendMessage::Terminate(_)) {
            break;
        }
        let wait_for_sync = match socket.state() {
            PgWireConnectionState::CopyInProgress(extended) => extended,
            _ => message.is_extended_query(),
        };
        let is_cancel = matches!(message, PgWireFrontendMessage::CancelRequest(_));
        let outcome = process_message(
            message,
            &mut socket,
            startup.clone(),
            simple.clone(),
            extended.clone(),
            copy.clone(),
            cancel.clone(),
        )
        .await;
        if let Err(error) = outcome {
            if error.is_fatal() {
                fatal(&mut socket, error).await?;
                break;
            }
            process_error(&mut socket, error, wait_for_sync).await?;
        }
        if is_cancel {
            break;
        }
        // Terminated while it ran a statement (or by that statement itself).
        if handlers.terminated().is_some_and(|t| t.is_set()) {
            fatal(&mut socket, terminating()).await?;
            break;
        }
    }
    let _ = socket.close().await;
    Ok(())
}

/// What ended the wait for the client.
enum Next<M> {
    Message(Option<M>),
    Idle,
    Terminated,
}

async fn until_terminated(terminated: Option<&crate::interrupt::Terminated>) {
    match terminated {
        Some(terminated) => terminated.wait().await,
        None => std::future::pending().await,
    }
}

/// Sends a FATAL error and closes: unlike pgwire's `process_error`, no ReadyForQuery
/// follows it (psql reports one that comes after a FATAL as a protocol error).
async fn fatal<S>(socket: &mut S, error: PgWireError) -> io::Result<()>
where
    S: futures::Sink<PgWireBackendMessage, Error = io::Error> + Unpin,
{
    let info: pgwire::error::ErrorInfo = error.into();
    socket.send(PgWireBackendMessage::ErrorResponse(info.into())).await?;
    socket.close().await
}

/// PostgreSQL's error for a session `pg_terminate_backend` ended.
fn terminating() -> PgWireError {
    ClientError::fatal("57P01", "terminating connection due to administrator command")
}

async fn idle_for(after: Option<Duration>) {
    match after {
        Some(after) => tokio::time::sleep(after).await,
        None => std::future::pending().await,
    }
}

/// An idle limit of a session, and the FATAL error that ends it.
pub struct IdleTimeout {
    pub after: Duration,
    pub code: &'static str,
    pub message: &'static str,
}

/// A message longer than the limit.
#[derive(Debug)]
struct TooLarge {
    length: u64,
    limit: usize,
}

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "a message of {} bytes is larger than the server's limit of {} bytes (max_message_mb)",
            self.length, self.limit
        )
    }
}

impl std::error::Error for TooLarge {}

/// The socket under pgwire's codec, refusing a message announced longer than the
/// limit before its body is buffered.
struct FrameLimit {
    io: MaybeTls,
    frames: Frames,
}

impl FrameLimit {
    fn new(io: MaybeTls, limit: usize) -> FrameLimit {
        FrameLimit { io, frames: Frames::new(limit) }
    }
}

/// The frames' length prefixes, read as the bytes go by. After TLS negotiation a client
/// sends one message without a type byte (the startup packet or a cancel request), then
/// typed messages.
struct Frames {
    limit: usize,
    /// Whether the untyped first message has been read.
    typed: bool,
    /// The prefix of the current message's header read so far.
    header: [u8; 5],
    header_len: usize,
    /// Bytes of the current message's body still to come.
    body_left: u64,
}

impl Frames {
    fn new(limit: usize) -> Frames {
        Frames { limit, typed: false, header: [0; 5], header_len: 0, body_left: 0 }
    }

    /// Follows the frames through `bytes`, the next bytes from the client.
    fn scan(&mut self, mut bytes: &[u8]) -> Result<(), TooLarge> {
        while !bytes.is_empty() {
            if self.body_left > 0 {
                let skip = self.body_left.min(bytes.len() as u64) as usize;
                self.body_left -= skip as u64;
                bytes = &bytes[skip..];
                continue;
            }
            let header_size = if self.typed { 5 } else { 4 };
            let take = (header_size - self.header_len).min(bytes.len());
            self.header[self.header_len..self.header_len + take].copy_from_slice(&bytes[..take]);
            self.header_len += take;
            bytes = &bytes[take..];
            if self.header_len < header_size {
                break;
            }
            let length_at = header_size - 4;
            let length = u32::from_be_bytes(self.header[length_at..header_size].try_into().expect("4 bytes"));
            let total = length as u64 + length_at as u64;
            if total > self.limit as u64 {
                return Err(TooLarge { length: total, limit: self.limit });
            }
            // The length counts itself; pgwire rejects one shorter than 4.
            self.body_left = (length as u64).saturating_sub(4);
            self.header_len = 0;
            self.typed = true;
        }
        Ok(())
    }
}

impl AsyncRead for FrameLimit {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let read = &buf.filled()[before..];
                match this.frames.scan(read) {
                    Ok(()) => Poll::Ready(Ok(())),
                    Err(too_large) => Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, too_large))),
                }
            }
            other => other,
        }
    }
}

impl AsyncWrite for FrameLimit {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(kind: u8, body: usize) -> Vec<u8> {
        let mut m = vec![kind];
        m.extend_from_slice(&((body + 4) as u32).to_be_bytes());
        m.extend(std::iter::repeat_n(b'x', body));
        m
    }

    #[test]
    fn frames_are_followed_across_reads_and_a_long_one_is_refused() {
        let mut stream = 12u32.to_be_bytes().to_vec();
        stream.extend_from_slice(&[0, 3, 0, 0, 0, 0, 0, 0]);
        stream.extend(typed(b'Q', 100));
        stream.extend(typed(b'S', 0));
        stream.extend(typed(b'Q', 1000));
        // In pieces of 3 bytes: the headers straddle reads.
        let mut frames = Frames::new(1005);
        for chunk in stream.chunks(3) {
            frames.scan(chunk).unwrap();
        }
        assert_eq!((frames.header_len, frames.body_left, frames.typed), (0, 0, true));
        // One byte over the limit, in one piece.
        let error = Frames::new(1004).scan(&stream).unwrap_err();
        assert_eq!(error.length, 1005);
    }
}
