//! Event streams outside hyper. A connection's first request head is read here: when it opens
//! an event stream (`GET` of one of [`super::EVENT_STREAMS`], HTTP/1.1, no body, nothing
//! after it), the routes answer it as they answer any request, and the answer is written to
//! the socket from here, the events as HTTP/1.1 chunks, until the stream ends; then the
//! connection closes. Anything else goes to hyper with the bytes read so far put back
//! ([`Rewind`]), and hyper serves that request and the rest of the connection.
//!
//! Why: an idle event stream is most of what a browser-facing server holds, and hyper keeps
//! an 8 KiB read buffer and an 8 KiB write buffer for every connection for its whole life
//! (not configurable in hyper 1). Here an idle stream holds its task, its body and its index
//! entry: the head's buffer is freed before the first event, and nothing is buffered
//! between writes but what the body hands over.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, Version};
use bytes::{Buf, Bytes, BytesMut};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tower::ServiceExt;

/// The first read of a connection.
const HEAD_FIRST: usize = 1024;

/// The longest first request head answered here; a longer one is hyper's.
const HEAD_MAX: usize = 8 * 1024;

/// Most header fields of a first request answered here; more go to hyper.
const MAX_HEADERS: usize = 48;

/// How long a new connection may take to send its first request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// Reads `io`'s first request head. Answers it here if it opens an event stream (then
/// `None`: the connection is done); otherwise returns the connection for hyper, with what was
/// read put back. `None` also when the client leaves or sends nothing in time.
pub(super) async fn first_request<S>(
    mut io: S,
    routes: &axum::Router,
    write_deadline: Duration,
) -> Option<Rewind<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = BytesMut::with_capacity(HEAD_FIRST);
    // One deadline for the whole head: a client trickling bytes does not get more time.
    let deadline = tokio::time::Instant::now() + HEAD_TIMEOUT;
    let request = loop {
        let read = tokio::time::timeout_at(deadline, io.read_buf(&mut buf)).await;
        match read {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
            Ok(Ok(_)) => {}
        }
        match event_stream_request(&buf) {
            Head::Partial if buf.len() < HEAD_MAX => {
                if buf.capacity() == buf.len() {
                    buf.reserve(buf.len());
                }
            }
            Head::Partial | Head::Other => {
                return Some(Rewind {
                    prefix: buf.freeze(),
                    inner: io,
                });
            }
            Head::Events(request) => break request,
        }
    };
    drop(buf);
    let response = match routes.clone().oneshot(*request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    if let Err(err) = respond(&mut io, response, write_deadline).await {
        tracing::debug!(%err, "event stream ended");
    }
    let _ = io.shutdown().await;
    None
}

/// What a first request head is.
enum Head {
    /// Not complete yet.
    Partial,
    /// An event stream's request, ready for the routes.
    Events(Box<Request<Body>>),
    /// Anything else (including what hyper should refuse its own way).
    Other,
}

fn event_stream_request(buf: &[u8]) -> Head {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut fields);
    let len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Head::Partial,
        Err(_) => return Head::Other,
    };
    let (Some("GET"), Some(1), Some(target)) = (parsed.method, parsed.version, parsed.path) else {
        return Head::Other;
    };
    let path = target.split('?').next().unwrap_or(target);
    if len != buf.len() || !super::EVENT_STREAMS.iter().any(|t| matches(t, path)) {
        return Head::Other;
    }
    let Ok(uri) = target.parse::<Uri>() else {
        return Head::Other;
    };
    let mut headers = HeaderMap::with_capacity(parsed.headers.len());
    for field in parsed.headers.iter() {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(field.name.as_bytes()),
            HeaderValue::from_bytes(field.value),
        ) else {
            return Head::Other;
        };
        // A GET with a body is not what an event stream is opened with.
        if (name == CONTENT_LENGTH && value != "0") || name == TRANSFER_ENCODING {
            return Head::Other;
        }
        headers.append(name, value);
    }
    let mut request = Request::new(Body::empty());
    *request.method_mut() = Method::GET;
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = headers;
    Head::Events(Box::new(request))
}

/// Whether `path` is one of the route `template`'s (`{name}` takes one non-empty segment).
fn matches(template: &str, path: &str) -> bool {
    let mut want = template.split('/');
    let mut have = path.split('/');
    loop {
        match (want.next(), have.next()) {
            (None, None) => return true,
            (Some(w), Some(h)) if w.starts_with('{') => {
                if h.is_empty() {
                    return false;
                }
            }
            (Some(w), Some(h)) if w == h => {}
            _ => return false,
        }
    }
}

/// Writes `response`: its head, then its body (chunked unless its length is known), then
/// closes. The socket is read meanwhile, to see the client leave while the stream is idle.
async fn respond<S>(
    io: &mut S,
    response: axum::response::Response,
    write_deadline: Duration,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (parts, mut body) = response.into_parts();
    let length = http_body::Body::size_hint(&body).exact();
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(parts.status.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
    head.extend_from_slice(b"\r\n");
    for (name, value) in parts.headers.iter() {
        if name == CONTENT_LENGTH || name == TRANSFER_ENCODING {
            continue;
        }
        field(&mut head, name.as_str(), value.as_bytes());
    }
    match length {
        Some(length) => field(&mut head, "content-length", length.to_string().as_bytes()),
        None => field(&mut head, "transfer-encoding", b"chunked"),
    }
    field(
        &mut head,
        "date",
        httpdate::fmt_http_date(SystemTime::now()).as_bytes(),
    );
    field(&mut head, "connection", b"close");
    head.extend_from_slice(b"\r\n");
    drop(parts);
    write(io, &mut &head[..], write_deadline).await?;
    drop(head);
    let mut probe = [0u8; 16];
    loop {
        let frame = tokio::select! {
            frame = body.frame() => frame,
            read = io.read(&mut probe) => match read {
                Ok(0) => return Ok(()),
                Ok(_) => continue,
                Err(err) => return Err(err),
            },
        };
        let mut data = match frame {
            None => break,
            Some(Err(err)) => return Err(io::Error::other(err)),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) if !data.is_empty() => data,
                _ => continue,
            },
        };
        if length.is_some() {
            write(io, &mut data, write_deadline).await?;
            continue;
        }
        let mut size = [0u8; 20];
        let size = chunk_size(&mut size, data.len());
        let mut chunk = Buf::chain(size, data).chain(&b"\r\n"[..]);
        write(io, &mut chunk, write_deadline).await?;
    }
    if length.is_none() {
        write(io, &mut &b"0\r\n\r\n"[..], write_deadline).await?;
    }
    Ok(())
}

fn field(head: &mut Vec<u8>, name: &str, value: &[u8]) {
    head.extend_from_slice(name.as_bytes());
    head.extend_from_slice(b": ");
    head.extend_from_slice(value);
    head.extend_from_slice(b"\r\n");
}

/// The hexadecimal size line of a chunk of `len` bytes, in `out`.
fn chunk_size(out: &mut [u8; 20], len: usize) -> &[u8] {
    let digits = (usize::BITS - len.leading_zeros()).div_ceil(4).max(1) as usize;
    for (i, byte) in out[..digits].iter_mut().enumerate() {
        let shift = 4 * (digits - 1 - i);
        *byte = b"0123456789abcdef"[(len >> shift) & 0xf];
    }
    out[digits..digits + 2].copy_from_slice(b"\r\n");
    &out[..digits + 2]
}

/// Writes all of `buf` (vectored where the socket can), or fails once `deadline` passes
/// without it: a client that stopped reading is dropped. (Its events were bounded meanwhile
/// by its own buffer, whose overflow is what counts it as a slow consumer.)
async fn write<S, B>(io: &mut S, buf: &mut B, deadline: Duration) -> io::Result<()>
where
    S: AsyncWrite + Unpin,
    B: Buf,
{
    let written = async {
        io.write_all_buf(buf).await?;
        io.flush().await
    };
    tokio::time::timeout(deadline, written)
        .await
        .unwrap_or_else(|_| {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "write deadline passed: the client stopped reading",
            ))
        })
}

/// A connection with the bytes already read from it put back in front.
pub(super) struct Rewind<S> {
    prefix: Bytes,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;
    use tokio::time::Instant;

    use super::*;

    /// On the runtime's paused clock: a head sent a line every 10 s is cut off at 30 s.
    #[tokio::test(start_paused = true)]
    async fn a_first_head_gets_30_seconds_in_all_however_it_trickles_in() {
        let (mut client, server) = tokio::io::duplex(4096);
        let start = Instant::now();
        let serving = tokio::spawn(async move {
            let routes = axum::Router::new();
            let given = first_request(server, &routes, Duration::from_secs(10)).await;
            (given.is_none(), start.elapsed())
        });
        client
            .write_all(b"GET /v1/subscribe/x HTTP/1.1\r\n")
            .await
            .unwrap_or_else(|_| unreachable!());
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_secs(10)).await;
            let _ = client.write_all(b"X-Slow: 1\r\n").await;
        }
        let (closed, after) = serving.await.unwrap_or_else(|_| unreachable!());
        assert!(closed, "the connection was handed on");
        assert_eq!(after, HEAD_TIMEOUT);
    }

    /// A client that reads nothing holds a write for `write_deadline`, then is let go.
    #[tokio::test(start_paused = true)]
    async fn a_client_that_stops_reading_is_let_go_at_the_write_deadline() {
        let (_client, mut server) = tokio::io::duplex(64);
        let body = Body::from_stream(futures::stream::iter([Ok::<_, io::Error>(Bytes::from(
            vec![b'x'; 4096],
        ))]));
        let start = Instant::now();
        let deadline = Duration::from_secs(10);
        let err = respond(&mut server, axum::response::Response::new(body), deadline)
            .await
            .expect_err("a write that never ends");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(start.elapsed(), deadline);
    }

    #[test]
    fn route_templates_take_one_segment_per_parameter() {
        assert!(matches("/v1/subscribe/{pattern}", "/v1/subscribe/a.b"));
        assert!(!matches("/v1/subscribe/{pattern}", "/v1/subscribe/"));
        assert!(!matches("/v1/subscribe/{pattern}", "/v1/subscribe/a/b"));
        assert!(matches(
            "/v1/streams/{name}/consume",
            "/v1/streams/S/consume"
        ));
        assert!(!matches(
            "/v1/streams/{name}/consume",
            "/v1/streams/S/consumers"
        ));
        assert!(!matches("/v1/streams/{name}/consume", "/v1/streams/S"));
    }

    #[test]
    fn chunk_sizes_are_hexadecimal() {
        let mut out = [0u8; 20];
        assert_eq!(chunk_size(&mut out, 0), b"0\r\n");
        assert_eq!(chunk_size(&mut out, 9), b"9\r\n");
        assert_eq!(chunk_size(&mut out, 255), b"ff\r\n");
        assert_eq!(chunk_size(&mut out, 4096), b"1000\r\n");
        assert_eq!(chunk_size(&mut out, usize::MAX), b"ffffffffffffffff\r\n");
    }

    #[test]
    fn only_an_opening_event_stream_request_is_answered_here() {
        let events = |head: &str| matches!(event_stream_request(head.as_bytes()), Head::Events(_));
        assert!(events(
            "GET /v1/subscribe/a.%3E?queue=q HTTP/1.1\r\nHost: x\r\n\r\n"
        ));
        assert!(events(
            "GET /v1/streams/S/consume HTTP/1.1\r\nLast-Event-ID: 4\r\n\r\n"
        ));
        assert!(matches!(
            event_stream_request(b"GET /v1/subscribe/a HTTP/1.1\r\nHost"),
            Head::Partial
        ));
        for other in [
            "POST /v1/subscribe/a HTTP/1.1\r\n\r\n",
            "GET /v1/subscribe/a HTTP/1.0\r\n\r\n",
            "GET /v1/streams HTTP/1.1\r\n\r\n",
            "GET /v1/subscribe/a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
            "GET /v1/subscribe/a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET /v1/subscribe/a HTTP/1.1\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n",
            "NOT HTTP\r\n\r\n",
        ] {
            assert!(!events(other), "{other:?}");
        }
    }
}
