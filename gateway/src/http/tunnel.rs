//! Upgraded connections (WebSocket): a byte tunnel between client and
//! upstream that ends when either side closes, when nothing moved in either
//! direction for the route's idle timeout, or at the route's total deadline.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// Copies both ways between the two upgraded connections until one closes
/// or a timeout ends it.
pub(crate) async fn run(
    downstream: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    upstream_name: String,
    idle: Duration,
    total: Duration,
) {
    let (d, u) = match tokio::try_join!(downstream, upstream) {
        Ok(x) => x,
        Err(e) => {
            tracing::info!(upstream = %upstream_name, error = %e, "upgrade failed");
            return;
        }
    };
    let start = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let mut d = Activity::new(TokioIo::new(d), start, last.clone());
    let mut u = Activity::new(TokioIo::new(u), start, last.clone());
    let deadline = start + total;
    let watchdog = async {
        loop {
            let idle_end = start + Duration::from_millis(last.load(Ordering::Relaxed)) + idle;
            let wake = idle_end.min(deadline);
            if Instant::now() >= wake {
                return if wake == deadline { "total" } else { "idle" };
            }
            tokio::time::sleep_until(wake).await;
        }
    };
    tokio::select! {
        r = tokio::io::copy_bidirectional(&mut d, &mut u) => {
            if let Err(e) = r {
                tracing::debug!(upstream = %upstream_name, error = %e, "tunnel closed with error");
            }
        }
        which = watchdog => {
            tracing::info!(upstream = %upstream_name, timeout = which, "tunnel closed by timeout");
        }
    }
}

/// Records the time of the last byte read, shared by both directions.
struct Activity<T> {
    inner: T,
    start: Instant,
    last: Arc<AtomicU64>,
}

impl<T> Activity<T> {
    fn new(inner: T, start: Instant, last: Arc<AtomicU64>) -> Self {
        Self { inner, start, last }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Activity<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            let ms = self.start.elapsed().as_millis() as u64;
            self.last.store(ms, Ordering::Relaxed);
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Activity<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
