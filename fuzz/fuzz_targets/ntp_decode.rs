//! Any datagram, as the time service receives it: decoding never panics, and a header that
//! decodes encodes back to the same 48 bytes.
#![no_main]

use ftprep::ntp::{HEADER_LEN, Packet};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(packet) = Packet::decode(data) {
        assert_eq!(&packet.encode()[..], &data[..HEADER_LEN]);
        let _ = packet.kiss_code();
        let _ = packet.reference_name();
    }
});
