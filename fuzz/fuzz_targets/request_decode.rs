//! Arbitrary payloads decoded as requests; whatever decodes must encode back to the same.
#![no_main]

use ftprep::commands::Request;
use ftprep::wire::{decode, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = decode::<Request>(data) {
        let again = encode(&request).expect("a decoded request encodes");
        assert_eq!(&again[..], data, "decoding is not canonical");
    }
});
