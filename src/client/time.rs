//! `ftpc time`: asks an NTP server (an `ftpd`, chrony, ntpd ...) how far this machine's
//! clock is off. It never changes the clock.
//!
//! Each request carries a random transmit timestamp; only a reply that echoes it (origin
//! check), in mode 4, from a synchronised server (stratum 1-15, leap indicator not 3) with
//! a transmit time counts. Of several samples, the one with the lowest delay is reported
//! (RFC 5905's clock filter in its simplest form): its offset is right within ± delay/2.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;
use tokio::net::UdpSocket;

use crate::error::{Error, Result};
use crate::ntp::{self, LEAP_UNSYNCHRONISED, MODE_SERVER, Packet, Timestamp};

/// The time port `ftpd` serves on by default.
pub const DEFAULT_TIME_PORT: u16 = 1123;

/// How long one sample waits for its reply.
pub const SAMPLE_TIMEOUT: Duration = Duration::from_secs(2);

/// Pause between two samples, so a server's rate limit is not tested.
const SAMPLE_SPACING: Duration = Duration::from_millis(50);

/// One result of `ftpc time`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimeReport {
    /// The server asked.
    pub server: String,
    /// How far the server's clock is ahead of ours, in seconds (negative: behind).
    pub offset: f64,
    /// The offset is right within ± this many seconds (half the round trip).
    pub error: f64,
    /// Round-trip delay, in seconds.
    pub delay: f64,
    /// The server's stratum.
    pub stratum: u8,
    /// The server's reference ID as people read it.
    pub reference: String,
    /// Leap indicator, in words.
    pub leap: &'static str,
    /// The server's clock precision, log2 seconds.
    pub precision: i8,
    /// Samples that got a usable reply.
    pub samples: u32,
}

impl std::fmt::Display for TimeReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: offset {:+.6} s ± {:.6} s, delay {:.6} s, stratum {}, reference {}, leap {}, precision 2^{} s",
            self.server,
            self.offset,
            self.error,
            self.delay,
            self.stratum,
            crate::sanitize::for_terminal(&self.reference),
            self.leap,
            self.precision
        )
    }
}

fn leap_words(leap: u8) -> &'static str {
    match leap {
        0 => "none",
        1 => "61-second minute ahead",
        2 => "59-second minute ahead",
        _ => "unsynchronised",
    }
}

/// `host`, `host:port`, an IPv6 literal, with the time port when none is given.
///
/// # Errors
/// As [`crate::client::server_address`].
pub fn time_address(raw: &str) -> Result<String> {
    crate::client::address_with_default_port(raw, DEFAULT_TIME_PORT)
}

/// Asks `server` (`host:port`) `samples` times; the best sample.
///
/// # Errors
/// [`Error::Timeout`] when no usable reply came, [`Error::TimeRefused`] for a Kiss-o'-Death
/// or an unsynchronised server, I/O errors.
pub async fn query(server: &str, samples: u32) -> Result<TimeReport> {
    let addr: SocketAddr = tokio::net::lookup_host(server)
        .await?
        .next()
        .ok_or_else(|| Error::Usage(format!("{server}: no address")))?;
    let local: SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0".parse().unwrap_or(addr)
    } else {
        "[::]:0".parse().unwrap_or(addr)
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(addr).await?;
    let mut best: Option<(f64, f64, Packet)> = None;
    let mut usable = 0;
    let mut last_refusal = None;
    let mut port_closed = false;
    for sample in 0..samples.max(1) {
        if sample > 0 {
            tokio::time::sleep(SAMPLE_SPACING).await;
        }
        match one_sample(&socket).await {
            // An answer to us, but impossible: another sample may do.
            Ok(Err(reason)) => {
                last_refusal = Some(Error::TimeRefused(format!(
                    "the server's reply failed RFC 5905's sanity checks: {reason}"
                )));
            }
            Ok(Ok((offset, delay, reply))) => {
                usable += 1;
                if best.as_ref().is_none_or(|(_, d, _)| delay < *d) {
                    best = Some((offset, delay, reply));
                }
            }
            Err(Error::Timeout) => {}
            // Nothing listens there (ICMP port unreachable): say so, not "timed out".
            Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                port_closed = true;
            }
            // A Kiss-o'-Death says to back off: no more samples.
            Err(err @ Error::TimeRefused(_)) => {
                last_refusal = Some(err);
                break;
            }
            Err(err) => return Err(err),
        }
    }
    let Some((offset, delay, reply)) = best else {
        if port_closed && last_refusal.is_none() {
            return Err(Error::TimeRefused(format!(
                "no NTP server answers at {server} (port closed)"
            )));
        }
        return Err(last_refusal.unwrap_or(Error::Timeout));
    };
    Ok(TimeReport {
        server: server.to_owned(),
        offset,
        error: delay.max(0.0) / 2.0,
        delay,
        stratum: reply.stratum,
        reference: reply.reference_name(),
        leap: leap_words(reply.leap),
        precision: reply.precision,
        samples: usable,
    })
}

/// A reply's root distance (its root delay / 2, its root dispersion and half our delay to
/// it) past which it is no clock to go by: RFC 5905's distance threshold, as ntpd sets it.
const MAX_DISTANCE: f64 = 1.5;

/// One request and its reply: offset, delay, the reply; or why the answer to us cannot be
/// right.
async fn one_sample(socket: &UdpSocket) -> Result<std::result::Result<(f64, f64, Packet), String>> {
    // The transmit field is random: only the server's echo of it proves a reply is ours.
    let cookie = Timestamp(rand::random::<u64>() | 1);
    let request = Packet::client_request(cookie);
    let t1 = Timestamp::now();
    socket.send(&request.encode()).await?;
    let deadline = tokio::time::Instant::now() + SAMPLE_TIMEOUT;
    let mut buf = [0u8; 1024];
    loop {
        let len = tokio::time::timeout_at(deadline, socket.recv(&mut buf))
            .await
            .map_err(|_| Error::Timeout)??;
        let t4 = Timestamp::now();
        let Ok(reply) = Packet::decode(&buf[..len]) else {
            continue;
        };
        // Not the answer to this request (late, spoofed, or not a server): ignore it.
        if reply.origin != cookie || reply.mode != MODE_SERVER {
            continue;
        }
        if let Some(code) = reply.kiss_code() {
            return Err(Error::TimeRefused(kiss_words(&code)));
        }
        if reply.leap == LEAP_UNSYNCHRONISED || !(1..=15).contains(&reply.stratum) {
            return Err(Error::TimeRefused(
                "the server says its clock is not synchronised".into(),
            ));
        }
        let (offset, delay) = ntp::offset_and_delay(t1, reply.receive, reply.transmit, t4);
        return Ok(sane(&reply, delay).map(|delay| (offset, delay, reply)));
    }
}

/// RFC 5905's checks of a reply that answers our request (section 8 and A.5.1.1, and the
/// distance threshold of A.5.5.2): both its timestamps set, a round trip that does not end
/// before it began, and a root distance within [`MAX_DISTANCE`]. The delay to use (one a
/// little below zero, within the server's precision, is zero), or what is wrong.
fn sane(reply: &Packet, delay: f64) -> std::result::Result<f64, String> {
    if reply.receive.is_zero() || reply.transmit.is_zero() {
        return Err("a receive or transmit timestamp of zero".into());
    }
    let precision = 2f64.powi(i32::from(reply.precision).clamp(-32, 0));
    if delay < -precision {
        return Err(format!(
            "a round trip of {delay:.6} s: it would have ended before it began"
        ));
    }
    let delay = delay.max(0.0);
    let distance = ntp::from_short_format(reply.root_delay) / 2.0
        + ntp::from_short_format(reply.root_dispersion)
        + delay / 2.0;
    if distance > MAX_DISTANCE {
        return Err(format!(
            "a root distance of {distance:.3} s, over the {MAX_DISTANCE} s a clock may be off \
             and still be used"
        ));
    }
    Ok(delay)
}

/// A Kiss-o'-Death code in words.
fn kiss_words(code: &str) -> String {
    let code = crate::sanitize::for_terminal(code.trim_end_matches('\0'));
    let meaning = match code.as_str() {
        "RATE" => "asks us to slow down (rate limit)",
        "DENY" | "RSTR" => "refuses to serve us",
        _ => "sent a Kiss-o'-Death",
    };
    format!("the server {meaning} (Kiss-o'-Death {code})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_addresses_take_the_time_port_unless_one_is_given() {
        assert_eq!(time_address("127.0.0.1").unwrap(), "127.0.0.1:1123");
        assert_eq!(time_address("localhost:123").unwrap(), "localhost:123");
        assert_eq!(time_address("::1").unwrap(), "[::1]:1123");
        assert_eq!(time_address("[::1]").unwrap(), "[::1]:1123");
        assert_eq!(time_address("[::1]:9123").unwrap(), "[::1]:9123");
        assert!(time_address("host:0").is_err());
    }

    /// A server that answers every request with `reply`, its origin set to the request's
    /// transmit time; `shift` moves its transmit time after its receive time.
    async fn serving(reply: Packet, shift: f64) -> String {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            while let Ok((len, from)) = socket.recv_from(&mut buf).await {
                let Ok(request) = Packet::decode(&buf[..len]) else {
                    continue;
                };
                let mut answer = reply;
                answer.origin = request.transmit;
                if answer.receive == Timestamp(1) {
                    answer.receive = Timestamp::now();
                }
                if answer.transmit == Timestamp(1) {
                    let at = std::time::SystemTime::now() + Duration::from_secs_f64(shift);
                    answer.transmit = Timestamp::from_system_time(at);
                }
                let _ = socket.send_to(&answer.encode(), from).await;
            }
        });
        addr
    }

    /// Issue 27.13: `ftpc time` took a negative delay, a receive time of 0 (an offset of
    /// 1.4e8 s) and a root distance of 65,536 s. Each is refused, saying why.
    #[tokio::test]
    async fn impossible_replies_are_refused_with_the_reason() {
        let good = Packet {
            leap: 0,
            version: 4,
            mode: MODE_SERVER,
            stratum: 2,
            precision: -20,
            reference_id: *b"GOOD",
            receive: Timestamp(1),
            transmit: Timestamp(1),
            ..Packet::default()
        };
        let report = query(&serving(good, 0.0).await, 1).await.unwrap();
        assert!(report.offset.abs() < 0.5, "{report}");
        let cases = [
            (
                Packet {
                    receive: Timestamp(0),
                    ..good
                },
                0.0,
                "timestamp of zero",
            ),
            (good, 10.0, "ended before it began"),
            (
                Packet {
                    root_dispersion: u32::MAX,
                    ..good
                },
                0.0,
                "root distance",
            ),
            (
                Packet {
                    root_delay: ntp::short_format(Duration::from_secs(4)),
                    ..good
                },
                0.0,
                "root distance",
            ),
        ];
        for (reply, shift, why) in cases {
            let err = query(&serving(reply, shift).await, 1).await.unwrap_err();
            assert!(matches!(err, Error::TimeRefused(_)), "{why}: {err}");
            let said = err.to_string();
            assert!(
                said.contains("sanity checks") && said.contains(why),
                "{said}"
            );
        }
    }
}
