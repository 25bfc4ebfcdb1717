//! `CappedPipe`: a guest's stdout or stderr, held in memory with a hard cap.
//!
//! Stdout is the function's output: writing past the cap stops the guest at
//! once (a trap that the runtime reports as "output too large"). Stderr is a
//! log: past its cap bytes are dropped and the guest carries on.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// What happens to a write past the cap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Overflow {
    /// Stop the guest: the output is invalid.
    Trap,
    /// Drop the excess silently: it is only a log.
    Truncate,
}

#[derive(Debug)]
struct Buffer {
    bytes: Vec<u8>,
    overflowed: bool,
}

/// An in-memory output stream with a cap; cheap to clone (shared buffer).
#[derive(Clone, Debug)]
pub(crate) struct CappedPipe {
    buffer: Arc<Mutex<Buffer>>,
    cap: usize,
    overflow: Overflow,
}

/// Largest write permit handed to the guest at once.
const PERMIT: usize = 64 << 10;

impl CappedPipe {
    pub(crate) fn new(cap: usize, overflow: Overflow) -> Self {
        Self {
            buffer: Arc::new(Mutex::new(Buffer {
                bytes: Vec::new(),
                overflowed: false,
            })),
            cap,
            overflow,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Buffer> {
        // A poisoned buffer still holds valid bytes; a panic elsewhere must not hide them.
        self.buffer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the guest tried to write past the cap.
    pub(crate) fn overflowed(&self) -> bool {
        self.lock().overflowed
    }

    /// Takes the bytes written so far.
    pub(crate) fn take(&self) -> Vec<u8> {
        std::mem::take(&mut self.lock().bytes)
    }

    /// Appends what fits; returns false when something did not.
    fn append(&self, data: &[u8]) -> bool {
        let mut buf = self.lock();
        let room = self.cap.saturating_sub(buf.bytes.len());
        let fits = data.len().min(room);
        buf.bytes.extend_from_slice(&data[..fits]);
        if fits < data.len() {
            buf.overflowed = true;
        }
        fits == data.len()
    }
}

#[async_trait::async_trait]
impl OutputStream for CappedPipe {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        if self.append(&bytes) || self.overflow == Overflow::Truncate {
            Ok(())
        } else {
            Err(StreamError::Trap(wasmtime::format_err!(
                "output limit of {} bytes exceeded",
                self.cap
            )))
        }
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(PERMIT)
    }
}

#[async_trait::async_trait]
impl Pollable for CappedPipe {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for CappedPipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.append(data) || self.overflow == Overflow::Truncate {
            Poll::Ready(Ok(data.len()))
        } else {
            Poll::Ready(Err(io::Error::other("output limit exceeded")))
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl IsTerminal for CappedPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedPipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trap_mode_keeps_the_prefix_and_flags_overflow() {
        let mut pipe = CappedPipe::new(4, Overflow::Trap);
        assert!(pipe.write(Bytes::from_static(b"abc")).is_ok());
        assert!(pipe.write(Bytes::from_static(b"de")).is_err());
        assert!(pipe.overflowed());
        assert_eq!(pipe.take(), b"abcd");
    }

    #[test]
    fn truncate_mode_drops_the_excess_quietly() {
        let mut pipe = CappedPipe::new(2, Overflow::Truncate);
        assert!(pipe.write(Bytes::from_static(b"abc")).is_ok());
        assert_eq!(pipe.take(), b"ab");
    }
}
