//! Frames: a 4-byte big-endian payload length, then a bincode 2 (serde) payload.
//! All encoding lives here, so the format can change in one place.
//!
//! # Format
//! bincode's standard configuration with fixed-width little-endian integers: see
//! `docs/PROTOCOL.md`. A frame's length is checked against [`MAX_FRAME_LEN`] before any
//! buffer is reserved for it, and the decoder refuses length claims inside the payload that
//! exceed the same limit, so a peer cannot make us allocate more than one frame.
//!
//! # File data
//! Data frames ([`Request::PutData`], [`Response::Data`]) are most of the bytes a transfer
//! moves, so they skip bincode's copies: they are laid out byte for byte as bincode would lay
//! them out (variant index `u32`, length `u64`, the bytes), but written from the chunk with one
//! vectored write and read as a slice of the received frame. See [`Message`].

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::codec::{Decoder, Encoder, Framed};

use crate::commands::{Hello, Request, Response};
use crate::error::{Error, Result};

/// Largest payload accepted in either direction (1 MiB).
pub const MAX_FRAME_LEN: usize = 1 << 20;
/// Bytes in the length prefix.
pub const HEADER_LEN: usize = 4;

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard()
        .with_fixed_int_encoding()
        .with_limit::<MAX_FRAME_LEN>()
}

/// Encodes a message as a frame payload (without the length prefix).
///
/// # Errors
/// [`Error::FrameTooLarge`] if the payload would exceed the limit.
pub fn encode<T: Serialize>(message: &T) -> Result<Bytes> {
    let payload = bincode::serde::encode_to_vec(message, bincode_config())
        .map_err(|e| Error::MalformedFrame(e.to_string()))?;
    if payload.len() > MAX_FRAME_LEN {
        return Err(Error::FrameTooLarge {
            size: payload.len() as u64,
            limit: MAX_FRAME_LEN,
        });
    }
    Ok(payload.into())
}

/// Decodes a frame payload; trailing bytes are an error, not ignored.
///
/// # Errors
/// [`Error::MalformedFrame`] if the payload is not exactly one `T`.
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T> {
    let (message, used) = bincode::serde::decode_from_slice(payload, bincode_config())
        .map_err(|e| Error::MalformedFrame(e.to_string()))?;
    if used != payload.len() {
        return Err(Error::MalformedFrame(format!(
            "{} unexpected bytes after the message",
            payload.len() - used
        )));
    }
    Ok(message)
}

/// Appends `message` to `dst` as one frame, exactly as [`Connection::write`] would send it:
/// for bytes that must leave some other way (inside a TLS handshake, say).
///
/// # Errors
/// As [`encode`].
pub fn append_frame<T: Serialize>(message: &T, dst: &mut BytesMut) -> Result<()> {
    FrameCodec::default().encode(encode(message)?, dst)
}

/// Bytes before the data in a data frame's payload: variant index (`u32`) and length (`u64`).
const DATA_PREFIX_LEN: usize = 12;

/// A type that travels as frame payloads. A type with a variant that holds nothing but file
/// data names it here, so that [`Connection`] moves that variant's bytes without copying.
pub trait Message: Serialize + DeserializeOwned {
    /// bincode's index of the data variant, if there is one.
    const DATA_VARIANT: Option<u32> = None;

    /// The data variant around `data`.
    fn from_data(data: Bytes) -> Option<Self> {
        let _ = data;
        None
    }

    /// The bytes, if this is the data variant.
    fn as_data(&self) -> Option<&Bytes> {
        None
    }
}

impl Message for Hello {}
impl Message for crate::chat::ChatRequest {}
impl Message for crate::chat::ChatReply {}
impl Message for crate::chat::ChatEvent {}

impl Message for Request {
    const DATA_VARIANT: Option<u32> = Some(9);

    fn from_data(data: Bytes) -> Option<Self> {
        Some(Request::PutData { data })
    }

    fn as_data(&self) -> Option<&Bytes> {
        match self {
            Request::PutData { data } => Some(data),
            _ => None,
        }
    }
}

impl Message for Response {
    const DATA_VARIANT: Option<u32> = Some(8);

    fn from_data(data: Bytes) -> Option<Self> {
        Some(Response::Data { data })
    }

    fn as_data(&self) -> Option<&Bytes> {
        match self {
            Response::Data { data } => Some(data),
            _ => None,
        }
    }
}

/// Decodes a received frame; a data frame becomes a slice of it, without a copy. Anything
/// that is not exactly a well-formed data frame goes through bincode, errors included.
///
/// # Errors
/// As [`decode`].
pub fn decode_frame<T: Message>(mut frame: BytesMut) -> Result<T> {
    let is_data = |variant: u32| {
        frame.len() >= DATA_PREFIX_LEN
            && frame[..4] == variant.to_le_bytes()
            && frame[4..DATA_PREFIX_LEN] == ((frame.len() - DATA_PREFIX_LEN) as u64).to_le_bytes()
    };
    if T::DATA_VARIANT.is_some_and(is_data) {
        frame.advance(DATA_PREFIX_LEN);
        if let Some(message) = T::from_data(frame.freeze()) {
            return Ok(message);
        }
        return Err(Error::MalformedFrame("no data variant".into()));
    }
    decode(&frame)
}

/// The frame header and data prefix of a data frame carrying `len` bytes.
fn data_frame_head(variant: u32, len: usize) -> Result<[u8; HEADER_LEN + DATA_PREFIX_LEN]> {
    let payload = DATA_PREFIX_LEN + len;
    let size = u32::try_from(payload)
        .ok()
        .filter(|&n| n as usize <= MAX_FRAME_LEN)
        .ok_or(Error::FrameTooLarge {
            size: payload as u64,
            limit: MAX_FRAME_LEN,
        })?;
    let mut head = [0u8; HEADER_LEN + DATA_PREFIX_LEN];
    head[..4].copy_from_slice(&size.to_be_bytes());
    head[4..8].copy_from_slice(&variant.to_le_bytes());
    head[8..].copy_from_slice(&(len as u64).to_le_bytes());
    Ok(head)
}

/// Length-prefixed framing with a hard limit and typed errors. The length is checked as
/// soon as its four bytes arrive, before any room is reserved for the payload.
#[derive(Debug)]
pub struct FrameCodec {
    /// Frames read may be this long at most ([`MAX_FRAME_LEN`] unless lowered).
    read_limit: usize,
}

impl Default for FrameCodec {
    fn default() -> Self {
        FrameCodec {
            read_limit: MAX_FRAME_LEN,
        }
    }
}

/// What a frame may hold before the login has succeeded: the hello and the SCRAM messages
/// take a few hundred bytes, so an anonymous connection makes the server hold no more.
pub const LOGIN_FRAME_LEN: usize = 4096;

impl Decoder for FrameCodec {
    type Item = BytesMut;
    type Error = Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>> {
        let Some(head) = src.get(..HEADER_LEN) else {
            return Ok(None);
        };
        let size = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        if size > self.read_limit {
            return Err(Error::FrameTooLarge {
                size: size as u64,
                limit: self.read_limit,
            });
        }
        if src.len() < HEADER_LEN + size {
            src.reserve(HEADER_LEN + size - src.len());
            return Ok(None);
        }
        src.advance(HEADER_LEN);
        Ok(Some(src.split_to(size)))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() => Ok(None),
            None => Err(Error::TruncatedFrame),
        }
    }
}

impl Encoder<Bytes> for FrameCodec {
    type Error = Error;

    fn encode(&mut self, payload: Bytes, dst: &mut BytesMut) -> Result<()> {
        let size = u32::try_from(payload.len())
            .ok()
            .filter(|&n| n as usize <= MAX_FRAME_LEN)
            .ok_or(Error::FrameTooLarge {
                size: payload.len() as u64,
                limit: MAX_FRAME_LEN,
            })?;
        dst.reserve(HEADER_LEN + payload.len());
        dst.put_u32(size);
        dst.extend_from_slice(&payload);
        Ok(())
    }
}

/// A framed, typed connection over any byte stream (TLS or plain TCP, a QUIC stream).
#[derive(Debug)]
pub struct Connection<S> {
    framed: Framed<S, FrameCodec>,
    /// How long one write may wait for a peer that does not read.
    write_deadline: Option<Duration>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    /// Wraps a connected stream.
    pub fn new(stream: S) -> Self {
        Connection {
            framed: Framed::new(stream, FrameCodec::default()),
            write_deadline: None,
        }
    }

    /// From now on frames read may be `limit` bytes long at most (up to [`MAX_FRAME_LEN`]):
    /// [`LOGIN_FRAME_LEN`] until a login has succeeded.
    pub fn set_read_limit(&mut self, limit: usize) {
        self.framed.codec_mut().read_limit = limit.min(MAX_FRAME_LEN);
    }

    /// From now on a write that cannot complete within `deadline` (a peer that stopped
    /// reading) fails with [`Error::Timeout`], rather than hold the connection forever.
    pub fn set_write_deadline(&mut self, deadline: Option<Duration>) {
        self.write_deadline = deadline;
    }

    /// Reads the next message. `Ok(None)` means the peer closed cleanly between frames.
    ///
    /// # Errors
    /// [`Error::FrameTooLarge`], [`Error::TruncatedFrame`], [`Error::MalformedFrame`] or I/O.
    pub async fn read<T: Message>(&mut self) -> Result<Option<T>> {
        match self.framed.next().await {
            None => Ok(None),
            // A TLS peer that leaves without close_notify, between frames: a clean close (a
            // cut inside a frame is still caught, by the length prefix).
            Some(Err(Error::Io(e)))
                if e.kind() == std::io::ErrorKind::UnexpectedEof
                    && self.framed.read_buffer().is_empty() =>
            {
                Ok(None)
            }
            Some(Err(Error::Io(e))) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                Err(Error::TruncatedFrame)
            }
            Some(frame) => decode_frame(frame?).map(Some),
        }
    }

    /// Reads the next message; a clean close is [`Error::ConnectionClosed`].
    ///
    /// # Errors
    /// As [`Connection::read`], plus [`Error::ConnectionClosed`].
    pub async fn expect<T: Message>(&mut self) -> Result<T> {
        self.read().await?.ok_or(Error::ConnectionClosed)
    }

    /// Writes one message and flushes it, within the write deadline if one is set.
    ///
    /// # Errors
    /// Encoding or I/O errors; [`Error::Timeout`] past the deadline.
    pub async fn write<T: Message>(&mut self, message: &T) -> Result<()> {
        let deadline = self.write_deadline;
        let write = async {
            match (T::DATA_VARIANT, message.as_data()) {
                (Some(variant), Some(data)) => self.write_data(variant, data).await,
                _ => self.framed.send(encode(message)?).await,
            }
        };
        match deadline {
            Some(deadline) => tokio::time::timeout(deadline, write)
                .await
                .map_err(|_| Error::Timeout)?,
            None => write.await,
        }
    }

    /// Queues one message without flushing it: the next [`Connection::write`] sends both in
    /// one go.
    ///
    /// # Errors
    /// Encoding errors, or I/O errors if the buffer had to be written out.
    pub async fn feed<T: Message>(&mut self, message: &T) -> Result<()> {
        SinkExt::<Bytes>::feed(&mut self.framed, encode(message)?).await
    }

    /// Writes each message `pending` yields, in the order it yields them, until it ends:
    /// the answers to requests in flight, written as they come.
    ///
    /// # Errors
    /// As [`Connection::write`].
    pub async fn write_each<T, P>(&mut self, mut pending: P) -> Result<()>
    where
        T: Message,
        P: futures_util::Stream<Item = T> + Unpin,
    {
        while let Some(message) = pending.next().await {
            self.write(&message).await?;
        }
        Ok(())
    }

    /// Writes a data frame straight from the chunk: head and bytes in one vectored write.
    async fn write_data(&mut self, variant: u32, data: &Bytes) -> Result<()> {
        let head = data_frame_head(variant, data.len())?;
        // Whatever an earlier write left buffered goes first.
        SinkExt::<Bytes>::flush(&mut self.framed).await?;
        let stream = self.framed.get_mut();
        stream
            .write_all_buf(&mut Buf::chain(&head[..], &data[..]))
            .await?;
        stream.flush().await?;
        Ok(())
    }

    /// Closes after an error reply so that the reply arrives: shuts down our side, then reads
    /// and discards what the peer still sends (at most 1 MiB, for at most `within`). Closing
    /// with unread input would make the kernel reset the connection and the peer could lose
    /// the reply.
    pub async fn linger_close(&mut self, within: Duration) {
        let stream = self.framed.get_mut();
        let _ = stream.shutdown().await;
        let drain = async {
            let mut sink = [0u8; 4096];
            let mut total = 0usize;
            while let Ok(n) = stream.read(&mut sink).await {
                total += n;
                if n == 0 || total > MAX_FRAME_LEN {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(within, drain).await;
    }

    /// Flushes and shuts down our side (for TLS: sends close_notify).
    ///
    /// # Errors
    /// I/O errors.
    pub async fn shutdown(&mut self) -> Result<()> {
        SinkExt::<Bytes>::flush(&mut self.framed).await?;
        self.framed.get_mut().shutdown().await?;
        Ok(())
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &S {
        self.framed.get_ref()
    }

    /// The underlying stream (for tests that need to misbehave).
    pub fn get_mut(&mut self) -> &mut S {
        self.framed.get_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_layout() {
        let hello = Hello::ours();
        let bytes = encode(&hello).unwrap();
        assert_eq!(&bytes[..], b"FTPR\x08\x00");
        assert_eq!(decode::<Hello>(&bytes).unwrap(), hello);
        let req = Request::Mkdir {
            path: "a/b".into(),
            parents: true,
        };
        let bytes = encode(&req).unwrap();
        // variant 2 as u32 LE, string length as u64 LE, bytes, bool.
        assert_eq!(&bytes[..], b"\x02\0\0\0\x03\0\0\0\0\0\0\0a/b\x01");
        assert_eq!(decode::<Request>(&bytes).unwrap(), req);
    }

    #[test]
    fn data_frames_are_laid_out_as_bincode_would_and_decode_without_a_copy() {
        let data = Bytes::from(vec![7u8; 1000]);
        let cases: [(Option<u32>, Bytes); 2] = [
            (
                Request::DATA_VARIANT,
                encode(&Request::PutData { data: data.clone() }).unwrap(),
            ),
            (
                Response::DATA_VARIANT,
                encode(&Response::Data { data: data.clone() }).unwrap(),
            ),
        ];
        for (variant, by_bincode) in cases {
            let head = data_frame_head(variant.unwrap(), data.len()).unwrap();
            assert_eq!(
                &head[..HEADER_LEN],
                &(by_bincode.len() as u32).to_be_bytes()
            );
            assert_eq!(&head[HEADER_LEN..], &by_bincode[..DATA_PREFIX_LEN]);
            assert_eq!(&by_bincode[DATA_PREFIX_LEN..], &data[..]);
        }
        let frame = BytesMut::from(&encode(&Request::PutData { data: data.clone() }).unwrap()[..]);
        let start = frame.as_ptr() as usize;
        match decode_frame::<Request>(frame).unwrap() {
            Request::PutData { data: got } => {
                assert_eq!(got, data);
                assert_eq!(got.as_ptr() as usize, start + DATA_PREFIX_LEN, "copied");
            }
            other => panic!("decoded {other:?}"),
        }
        // A length that disagrees with the frame goes to bincode, which refuses it.
        let mut short = encode(&Response::Data { data }).unwrap().to_vec();
        short.pop();
        assert!(matches!(
            decode_frame::<Response>(BytesMut::from(&short[..])),
            Err(Error::MalformedFrame(_))
        ));
        // Other variants still go through bincode.
        let ok = BytesMut::from(&encode(&Response::Ok).unwrap()[..]);
        assert_eq!(decode_frame::<Response>(ok).unwrap(), Response::Ok);
    }

    #[tokio::test]
    async fn data_frames_cross_a_connection_intact() {
        let (client, server) = tokio::io::duplex(1 << 16);
        let mut client = Connection::new(client);
        let mut server = Connection::new(server);
        let data = Bytes::from((0..200_000u32).map(|i| i as u8).collect::<Vec<_>>());
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            client
                .write(&Request::Mkdir {
                    path: "d".into(),
                    parents: false,
                })
                .await
                .unwrap();
            client
                .write(&Request::PutData { data: sent })
                .await
                .unwrap();
            client.write(&Request::Usage).await.unwrap();
        });
        assert!(matches!(
            server.expect::<Request>().await.unwrap(),
            Request::Mkdir { .. }
        ));
        assert_eq!(
            server.expect::<Request>().await.unwrap(),
            Request::PutData { data }
        );
        assert_eq!(server.expect::<Request>().await.unwrap(), Request::Usage);
        writer.await.unwrap();
    }

    #[test]
    fn trailing_and_garbage_bytes_are_errors() {
        let mut bytes = encode(&Hello::ours()).unwrap().to_vec();
        bytes.push(0);
        assert!(matches!(
            decode::<Hello>(&bytes),
            Err(Error::MalformedFrame(_))
        ));
        assert!(matches!(
            decode::<Request>(b"\xff\xff\xff\xff"),
            Err(Error::MalformedFrame(_))
        ));
        // A string claiming 2^62 bytes is refused without allocating it.
        let claim = b"\x03\0\0\0\0\0\0\0\0\0\0\x40";
        assert!(matches!(
            decode::<Request>(claim),
            Err(Error::MalformedFrame(_))
        ));
    }

    #[tokio::test]
    async fn oversized_frame_is_refused_before_its_body_arrives() {
        let (client, server) = tokio::io::duplex(64);
        let mut client = client;
        client.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        let mut conn = Connection::new(server);
        match conn.read::<Hello>().await {
            Err(Error::FrameTooLarge { size, limit }) => {
                assert_eq!(size, u64::from(u32::MAX));
                assert_eq!(limit, MAX_FRAME_LEN);
            }
            other => panic!("expected FrameTooLarge, got {other:?}"),
        }
    }

    #[test]
    fn frames_split_anywhere_decode_the_same() {
        let mut wire = BytesMut::new();
        let payload = encode(&Request::List {
            path: "x".repeat(5000),
        })
        .unwrap();
        FrameCodec::default()
            .encode(payload.clone(), &mut wire)
            .unwrap();
        FrameCodec::default()
            .encode(payload.clone(), &mut wire)
            .unwrap();
        for step in [1, 3, 4, 5, 97, 4096] {
            let mut codec = FrameCodec::default();
            let mut buf = BytesMut::new();
            let mut frames = Vec::new();
            for chunk in wire.chunks(step) {
                buf.extend_from_slice(chunk);
                while let Some(frame) = codec.decode(&mut buf).unwrap() {
                    frames.push(frame);
                }
            }
            assert_eq!(frames.len(), 2, "step {step}");
            assert!(frames.iter().all(|f| f[..] == payload[..]), "step {step}");
        }
    }

    #[tokio::test]
    async fn close_mid_frame_is_truncated_and_clean_close_is_none() {
        let (mut client, server) = tokio::io::duplex(64);
        client.write_all(&[0, 0, 0, 10, 1, 2]).await.unwrap();
        drop(client);
        let mut conn = Connection::new(server);
        assert!(matches!(
            conn.read::<Hello>().await,
            Err(Error::TruncatedFrame)
        ));

        let (client, server) = tokio::io::duplex(64);
        drop(client);
        assert!(
            Connection::new(server)
                .read::<Hello>()
                .await
                .unwrap()
                .is_none()
        );
    }
}
