//! Streaming bodies with limits and timeouts, never buffered whole.
//!
//! [`Guarded`] wraps a body in either direction and enforces a byte limit,
//! an idle timeout (no frame for too long) and an absolute deadline. The idle
//! timer is re-armed lazily: a frame only stores the time it arrived, and the
//! timer is pushed forward when it fires early, so busy streams cost no timer
//! operations per frame.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use tokio::time::{Instant, Sleep};

/// Error type of bodies on the proxy path.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type the proxy sends and returns.
pub(crate) type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// Why a guarded body stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    /// More bytes than the limit.
    #[error("body exceeds the limit of {0} bytes")]
    TooLarge(u64),
    /// No data for longer than the idle timeout.
    #[error("body idle for longer than {0:?}")]
    Idle(Duration),
    /// The exchange's deadline passed.
    #[error("body exceeded the total deadline")]
    Deadline,
}

/// Shared flags a [`Guarded`] request body raises when it stops on the
/// client's account, so the proxy can answer 413, 408 or 400 instead of
/// blaming the upstream.
#[derive(Debug, Default, Clone)]
pub(crate) struct Tripwire(Arc<[AtomicBool; 3]>);

impl Tripwire {
    /// The limit was exceeded.
    pub(crate) fn too_large(&self) -> bool {
        self.0[0].load(Ordering::Relaxed)
    }
    /// The body timed out.
    pub(crate) fn timed_out(&self) -> bool {
        self.0[1].load(Ordering::Relaxed)
    }
    /// The body itself was malformed (e.g. broken chunked encoding) or the
    /// client went away mid-body.
    pub(crate) fn broken(&self) -> bool {
        self.0[2].load(Ordering::Relaxed)
    }
    fn set(&self, i: usize) {
        self.0[i].store(true, Ordering::Relaxed);
    }
}

pin_project_lite::pin_project! {
    /// A body with a byte limit, an idle timeout and a deadline.
    pub(crate) struct Guarded<B> {
        #[pin]
        inner: B,
        limit: u64,
        seen: u64,
        idle: Duration,
        deadline: Instant,
        last_activity: Instant,
        #[pin]
        timer: Sleep,
        tripwire: Option<Tripwire>,
    }
}

impl<B> Guarded<B> {
    /// Wraps `inner`.
    pub(crate) fn new(
        inner: B,
        limit: u64,
        idle: Duration,
        deadline: Instant,
        tripwire: Option<Tripwire>,
    ) -> Self {
        let now = Instant::now();
        Self {
            inner,
            limit,
            seen: 0,
            idle,
            deadline,
            last_activity: now,
            timer: tokio::time::sleep_until((now + idle).min(deadline)),
            tripwire,
        }
    }
}

impl<B> Body for Guarded<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        loop {
            match this.inner.as_mut().poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(d) = frame.data_ref() {
                        *this.seen += d.len() as u64;
                        if *this.seen > *this.limit {
                            if let Some(t) = this.tripwire {
                                t.set(0);
                            }
                            return Poll::Ready(Some(Err(BodyError::TooLarge(*this.limit).into())));
                        }
                    }
                    *this.last_activity = Instant::now();
                    return Poll::Ready(Some(Ok(frame)));
                }
                Poll::Ready(Some(Err(e))) => {
                    if let Some(t) = this.tripwire {
                        t.set(2);
                    }
                    return Poll::Ready(Some(Err(e.into())));
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => {}
            }
            ready!(this.timer.as_mut().poll(cx));
            let now = Instant::now();
            let idle_end = *this.last_activity + *this.idle;
            if now >= *this.deadline || now >= idle_end {
                if let Some(t) = this.tripwire {
                    t.set(1);
                }
                let err = if now >= *this.deadline {
                    BodyError::Deadline
                } else {
                    BodyError::Idle(*this.idle)
                };
                return Poll::Ready(Some(Err(err.into())));
            }
            // Activity since the timer was armed: push it forward and poll
            // again so the new timer registers the waker.
            this.timer.as_mut().reset(idle_end.min(*this.deadline));
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

use std::future::Future;

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full, StreamBody};

    #[tokio::test]
    async fn limit_is_enforced_and_reported() {
        let t = Tripwire::default();
        let body = Full::new(Bytes::from(vec![0u8; 100]));
        let g = Guarded::new(
            body,
            99,
            Duration::from_secs(5),
            Instant::now() + Duration::from_secs(5),
            Some(t.clone()),
        );
        assert!(g.collect().await.is_err());
        assert!(t.too_large() && !t.timed_out());
    }

    #[tokio::test]
    async fn within_limit_passes_unchanged() {
        let body = Full::new(Bytes::from_static(b"hello"));
        let g = Guarded::new(
            body,
            5,
            Duration::from_secs(5),
            Instant::now() + Duration::from_secs(5),
            None,
        );
        assert_eq!(g.collect().await.unwrap().to_bytes(), "hello");
    }

    #[tokio::test(start_paused = true)]
    async fn idle_body_times_out() {
        let t = Tripwire::default();
        let stream = futures_util::stream::pending::<Result<Frame<Bytes>, std::io::Error>>();
        let g = Guarded::new(
            StreamBody::new(stream),
            10,
            Duration::from_secs(1),
            Instant::now() + Duration::from_secs(60),
            Some(t.clone()),
        );
        let err = g.collect().await.unwrap_err();
        assert!(err.to_string().contains("idle"), "{err}");
        assert!(t.timed_out());
    }
}
