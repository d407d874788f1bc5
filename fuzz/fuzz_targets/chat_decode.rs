//! Arbitrary payloads decoded as chat requests, replies and events (what a hostile client or
//! server could send); whatever decodes must encode back to the same bytes.
#![no_main]

use ftprep::chat::{ChatEvent, ChatReply, ChatRequest};
use ftprep::wire::{decode, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = decode::<ChatRequest>(data) {
        let again = encode(&request).expect("a decoded request encodes");
        assert_eq!(&again[..], data, "decoding is not canonical");
    }
    if let Ok(reply) = decode::<ChatReply>(data) {
        let again = encode(&reply).expect("a decoded reply encodes");
        assert_eq!(&again[..], data, "decoding is not canonical");
    }
    if let Ok(event) = decode::<ChatEvent>(data) {
        let again = encode(&event).expect("a decoded event encodes");
        assert_eq!(&again[..], data, "decoding is not canonical");
    }
});
