//! Arbitrary bytes through the frame decoder, as a peer would send them, then each frame
//! through the message decoders: errors are fine, panics and huge allocations are not.
#![no_main]

use bytes::BytesMut;
use ftprep::commands::{Hello, Request, Response};
use ftprep::wire::{FrameCodec, decode};
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    // Feed the bytes in two pieces, as they might arrive from the network.
    let split = data.first().map_or(0, |b| *b as usize % (data.len() + 1));
    let mut buf = BytesMut::new();
    let mut codec = FrameCodec::default();
    for piece in [&data[..split], &data[split..]] {
        buf.extend_from_slice(piece);
        while let Ok(Some(frame)) = codec.decode(&mut buf) {
            let _ = decode::<Hello>(&frame);
            let _ = decode::<Request>(&frame);
            let _ = decode::<Response>(&frame);
        }
    }
    let _ = codec.decode_eof(&mut buf);
});
