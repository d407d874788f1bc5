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
            Ok((offset, delay, reply)) => {
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

/// One request and its reply: offset, delay, the reply.
async fn one_sample(socket: &UdpSocket) -> Result<(f64, f64, Packet)> {
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
        if reply.transmit.is_zero() {
            continue;
        }
        let (offset, delay) = ntp::offset_and_delay(t1, reply.receive, reply.transmit, t4);
        return Ok((offset, delay, reply));
    }
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
}
