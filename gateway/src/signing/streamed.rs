//! Reading a response body for an RFC 9421 signature: the SHA-256 is taken
//! piece by piece as the body arrives, and the pieces are kept as they
//! came (no copy into one buffer) and sent on with an exact length.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use stadttor_pki::sign::httpsig::{BodyDigest, Sha256Digest};

use super::SignError;

/// A fully read body, as the pieces it arrived in.
#[derive(Debug, Default)]
pub(super) struct Pieces {
    queue: VecDeque<Bytes>,
    remaining: u64,
}

impl Body for Pieces {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        Poll::Ready(this.queue.pop_front().map(|b| {
            this.remaining -= b.len() as u64;
            Ok(Frame::data(b))
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.queue.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// Reads `body` to its end, at most `limit` bytes, hashing each piece as
/// it arrives. Trailers are dropped (a signed response has none: the
/// signature covers the header section and the content only).
pub(super) async fn read_digesting<B>(
    body: B,
    limit: u64,
) -> Result<(Pieces, Sha256Digest), SignError>
where
    B: Body<Data = Bytes> + Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut body = std::pin::pin!(body);
    let mut digest = BodyDigest::new();
    let mut pieces = Pieces::default();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| SignError::Body(e.into().to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        pieces.remaining += data.len() as u64;
        if pieces.remaining > limit {
            return Err(SignError::TooLarge(limit));
        }
        digest.update(&data);
        pieces.queue.push_back(data);
    }
    Ok((pieces, digest.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    fn chunked(parts: &[&'static [u8]]) -> impl Body<Data = Bytes, Error = Infallible> + Send {
        let frames: Vec<Result<Frame<Bytes>, Infallible>> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::from_static(p))))
            .collect();
        StreamBody::new(futures_util::stream::iter(frames))
    }

    #[tokio::test]
    async fn pieces_hash_like_the_whole_body_and_keep_an_exact_length() {
        let (pieces, sha) = read_digesting(chunked(&[b"Bescheid ", b"", b"vom 7. Dezember"]), 100)
            .await
            .unwrap();
        assert_eq!(pieces.size_hint().exact(), Some(24));
        assert_eq!(
            sha.header_value(),
            stadttor_pki::sign::httpsig::content_digest(b"Bescheid vom 7. Dezember")
        );
        let body = pieces.collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"Bescheid vom 7. Dezember");
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_refused_even_when_it_streams() {
        let err = read_digesting(chunked(&[b"0123456789", b"0123456789", b"x"]), 20)
            .await
            .unwrap_err();
        assert!(matches!(err, SignError::TooLarge(20)), "{err}");
    }
}
