//! The NTP packet (RFC 5905 §7.3), as the time service sends and accepts it: the 48-byte
//! header, its 64-bit timestamps, and the client's arithmetic (offset and delay, §8). Pure
//! data, no sockets: both `ftpd`'s server and `ftpc time` use it, and it is fuzzed.
//!
//! # Format
//! ```text
//! 0: LI(2) VN(3) Mode(3)   1: Stratum   2: Poll (log2 s)   3: Precision (log2 s)
//! 4: Root Delay (16.16 s)  8: Root Dispersion (16.16 s)    12: Reference ID
//! 16: Reference Timestamp  24: Origin Timestamp  32: Receive Timestamp  40: Transmit Timestamp
//! ```
//! Timestamps are seconds since 1900-01-01 (32 bits) and a binary fraction (32 bits).
//! Extension fields and a MAC may follow the header; they are accepted and never echoed.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Bytes of the header; a packet is never shorter.
pub const HEADER_LEN: usize = 48;

/// Seconds from 1900-01-01 (NTP era 0) to 1970-01-01.
const UNIX_TO_NTP: u64 = 2_208_988_800;

/// Mode 3: a client's request.
pub const MODE_CLIENT: u8 = 3;
/// Mode 4: a server's reply.
pub const MODE_SERVER: u8 = 4;

/// Leap indicator 3: the clock is not synchronised; clients must not use it.
pub const LEAP_UNSYNCHRONISED: u8 = 3;

/// A 64-bit NTP timestamp: seconds since 1900 in the high 32 bits, a fraction in the low.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The timestamp of a wall-clock time (era 0, as every NTP peer reads it until 2036).
    pub fn from_system_time(time: SystemTime) -> Self {
        let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = since.as_secs().wrapping_add(UNIX_TO_NTP) & 0xffff_ffff;
        let frac = (u64::from(since.subsec_nanos()) << 32) / 1_000_000_000;
        Timestamp((secs << 32) | frac)
    }

    /// Now, by the system clock.
    pub fn now() -> Self {
        Self::from_system_time(SystemTime::now())
    }

    /// Seconds from `earlier` to this one (negative if this is earlier), in the era that
    /// makes the difference smallest, as RFC 5905 does with 64-bit arithmetic.
    pub fn seconds_since(self, earlier: Timestamp) -> f64 {
        let difference = self.0.wrapping_sub(earlier.0) as i64;
        difference as f64 / 4_294_967_296.0
    }

    /// True for the all-zero timestamp, which means "not set".
    pub fn is_zero(self) -> bool {
        self.0 == 0
    }
}

/// Seconds as NTP's 16.16 short format (root delay and dispersion), saturating.
pub fn short_format(duration: Duration) -> u32 {
    let value = duration.as_secs_f64() * 65_536.0;
    if value >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        value as u32
    }
}

/// The 16.16 short format as seconds.
pub fn from_short_format(value: u32) -> f64 {
    f64::from(value) / 65_536.0
}

/// The 48-byte header, every field as RFC 5905 names it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    /// Leap indicator: 0 none, 1 last minute has 61 s, 2 has 59 s, 3 unsynchronised.
    pub leap: u8,
    /// Version number (3 or 4).
    pub version: u8,
    /// Association mode (3 client, 4 server, ...).
    pub mode: u8,
    /// Stratum: 1 primary, 2-15 secondary, 0 for a Kiss-o'-Death.
    pub stratum: u8,
    /// Poll interval, log2 seconds.
    pub poll: i8,
    /// Precision of the clock, log2 seconds.
    pub precision: i8,
    /// Round-trip delay to the reference clock (16.16 seconds).
    pub root_delay: u32,
    /// Dispersion to the reference clock (16.16 seconds).
    pub root_dispersion: u32,
    /// Reference ID: an address or four ASCII characters (`LOCL`, or a KoD code).
    pub reference_id: [u8; 4],
    /// When the clock was last set or corrected.
    pub reference: Timestamp,
    /// The request's transmit timestamp, echoed in a reply.
    pub origin: Timestamp,
    /// When the request arrived.
    pub receive: Timestamp,
    /// When this packet left.
    pub transmit: Timestamp,
}

/// Why bytes are not an NTP packet we take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NtpError {
    /// Fewer than 48 bytes.
    #[error("{0} bytes: shorter than an NTP header (48)")]
    TooShort(usize),
}

/// What a Kiss-o'-Death code asks, in words.
pub fn kiss_meaning(code: &str) -> &'static str {
    match code {
        "RATE" => "asks us to slow down (rate limit)",
        "DENY" | "RSTR" => "refuses to serve us",
        _ => "sent a Kiss-o'-Death",
    }
}

impl Packet {
    /// Reads the header from the start of `bytes` (extension fields after it are ignored).
    ///
    /// # Errors
    /// [`NtpError::TooShort`] for fewer than 48 bytes.
    pub fn decode(bytes: &[u8]) -> Result<Packet, NtpError> {
        let Some(header) = bytes.get(..HEADER_LEN) else {
            return Err(NtpError::TooShort(bytes.len()));
        };
        let u32_at =
            |i: usize| u32::from_be_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
        let u64_at = |i: usize| (u64::from(u32_at(i)) << 32) | u64::from(u32_at(i + 4));
        Ok(Packet {
            leap: header[0] >> 6,
            version: (header[0] >> 3) & 0b111,
            mode: header[0] & 0b111,
            stratum: header[1],
            poll: header[2] as i8,
            precision: header[3] as i8,
            root_delay: u32_at(4),
            root_dispersion: u32_at(8),
            reference_id: [header[12], header[13], header[14], header[15]],
            reference: Timestamp(u64_at(16)),
            origin: Timestamp(u64_at(24)),
            receive: Timestamp(u64_at(32)),
            transmit: Timestamp(u64_at(40)),
        })
    }

    /// The 48 bytes of the header.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0] = (self.leap & 0b11) << 6 | (self.version & 0b111) << 3 | (self.mode & 0b111);
        out[1] = self.stratum;
        out[2] = self.poll as u8;
        out[3] = self.precision as u8;
        out[4..8].copy_from_slice(&self.root_delay.to_be_bytes());
        out[8..12].copy_from_slice(&self.root_dispersion.to_be_bytes());
        out[12..16].copy_from_slice(&self.reference_id);
        out[16..24].copy_from_slice(&self.reference.0.to_be_bytes());
        out[24..32].copy_from_slice(&self.origin.0.to_be_bytes());
        out[32..40].copy_from_slice(&self.receive.0.to_be_bytes());
        out[40..48].copy_from_slice(&self.transmit.0.to_be_bytes());
        out
    }

    /// A client's request (version 4, mode 3) carrying `transmit`, which the server echoes
    /// as the reply's origin: a random value there proves a reply answers this request.
    pub fn client_request(transmit: Timestamp) -> Packet {
        Packet {
            version: 4,
            mode: MODE_CLIENT,
            poll: 6,
            transmit,
            ..Packet::default()
        }
    }

    /// A Kiss-o'-Death: stratum 0 and a four-letter code in the reference ID.
    pub fn kiss_code(&self) -> Option<String> {
        (self.stratum == 0 && self.mode == MODE_SERVER).then(|| {
            String::from_utf8_lossy(&self.reference_id)
                .trim_end_matches('\0')
                .to_owned()
        })
    }

    /// The reference ID as people read it: four letters for stratum 0-1 (and `LOCL`, a
    /// local clock at any stratum), an IPv4 address (or a hash of an IPv6 one) above.
    pub fn reference_name(&self) -> String {
        let id = self.reference_id;
        if self.stratum <= 1 || &id == b"LOCL" {
            id.iter()
                .take_while(|b| **b != 0)
                .map(|b| {
                    if b.is_ascii_graphic() {
                        char::from(*b)
                    } else {
                        '?'
                    }
                })
                .collect()
        } else {
            format!("{}.{}.{}.{}", id[0], id[1], id[2], id[3])
        }
    }
}

/// RFC 5905 §8's on-wire result: offset θ and round-trip delay δ in seconds, from the
/// client's send time t1, the server's receive t2 and transmit t3, and the client's arrival t4.
pub fn offset_and_delay(t1: Timestamp, t2: Timestamp, t3: Timestamp, t4: Timestamp) -> (f64, f64) {
    let offset = (t2.seconds_since(t1) + t3.seconds_since(t4)) / 2.0;
    let delay = t4.seconds_since(t1) - t3.seconds_since(t2);
    (offset, delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_follow_the_ntp_epoch() {
        assert_eq!(Timestamp::from_system_time(UNIX_EPOCH).0 >> 32, UNIX_TO_NTP);
        let half = UNIX_EPOCH + Duration::from_millis(500);
        assert_eq!(Timestamp::from_system_time(half).0 & 0xffff_ffff, 1 << 31);
        let a = Timestamp::from_system_time(UNIX_EPOCH + Duration::from_secs(10));
        let b = Timestamp::from_system_time(UNIX_EPOCH + Duration::from_millis(10_250));
        assert!((b.seconds_since(a) - 0.25).abs() < 1e-9);
        assert!((a.seconds_since(b) + 0.25).abs() < 1e-9);
    }

    #[test]
    fn packets_round_trip_bit_for_bit() {
        let packet = Packet {
            leap: 3,
            version: 4,
            mode: MODE_SERVER,
            stratum: 2,
            poll: 6,
            precision: -24,
            root_delay: short_format(Duration::from_millis(15)),
            root_dispersion: 0x0001_8000,
            reference_id: *b"LOCL",
            reference: Timestamp(1),
            origin: Timestamp(0x0102_0304_0506_0708),
            receive: Timestamp(u64::MAX),
            transmit: Timestamp(42),
        };
        let bytes = packet.encode();
        assert_eq!(bytes[0], 0b11_100_100);
        assert_eq!(bytes[3], 0xe8);
        assert_eq!(&bytes[12..16], b"LOCL");
        assert_eq!(&bytes[24..32], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(Packet::decode(&bytes).unwrap(), packet);
        // Extension fields after the header are fine; less than a header is not.
        let mut longer = bytes.to_vec();
        longer.extend_from_slice(&[0u8; 20]);
        assert_eq!(Packet::decode(&longer).unwrap(), packet);
        assert_eq!(Packet::decode(&bytes[..47]), Err(NtpError::TooShort(47)));
        assert!((from_short_format(packet.root_dispersion) - 1.5).abs() < 1e-9);
    }

    #[test]
    fn offset_and_delay_as_rfc_5905_computes_them() {
        let base = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let at = |ms: u64| Timestamp::from_system_time(base + Duration::from_millis(ms));
        // The server's clock is 100 ms ahead; 10 ms each way, 2 ms inside the server.
        let (offset, delay) = offset_and_delay(at(0), at(110), at(112), at(22));
        assert!((offset - 0.100).abs() < 1e-6, "{offset}");
        assert!((delay - 0.020).abs() < 1e-6, "{delay}");
    }

    #[test]
    fn kiss_codes_and_reference_names() {
        let kod = Packet {
            mode: MODE_SERVER,
            stratum: 0,
            reference_id: *b"RATE",
            ..Packet::default()
        };
        assert_eq!(kod.kiss_code().as_deref(), Some("RATE"));
        let secondary = Packet {
            stratum: 2,
            reference_id: [192, 0, 2, 1],
            ..Packet::default()
        };
        assert_eq!(secondary.kiss_code(), None);
        assert_eq!(secondary.reference_name(), "192.0.2.1");
        let local = Packet {
            stratum: 1,
            reference_id: *b"LOCL",
            ..Packet::default()
        };
        assert_eq!(local.reference_name(), "LOCL");
    }
}
