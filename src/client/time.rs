//! `ftpc time`: asks an NTP server (an `ftpd`, chrony, ntpd ...) how far this machine's
//! clock is off. It never changes the clock.
//!
//! Each request carries a random transmit timestamp; only a reply that echoes it (origin
//! check), in mode 4, from a synchronised server (stratum 1-15, leap indicator not 3) with
//! a transmit time counts. Of several samples, the one with the lowest delay is reported
//! (RFC 5905's clock filter in its simplest form): its offset is right within ± delay/2.
//!
//! `--watch` polls as chrony does: never faster than an `ftpd` or a chronyd answers one
//! address by default (once per 8 s), one request a poll after the first, and twice as
//! slowly after each `RATE` Kiss-o'-Death; `DENY` or `RSTR` stops the polling of that server.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;
use tokio::net::UdpSocket;

use super::failure::{CommandError, failed};
use crate::error::{Error, Result};
use crate::ntp::{self, LEAP_UNSYNCHRONISED, MODE_SERVER, Packet, Timestamp};

/// The time port `ftpd` serves on by default.
pub const DEFAULT_TIME_PORT: u16 = 1123;

/// The port of every other NTP server.
pub const NTP_PORT: u16 = 123;

/// The shortest `--watch` interval: the rate `ftpd` and chronyd answer one address at by
/// default (`ratelimit interval 3`).
pub const MIN_WATCH: Duration = Duration::from_secs(8);

/// The longest interval a `RATE` Kiss-o'-Death can slow polling to (chrony's `maxpoll`).
pub const MAX_WATCH: Duration = Duration::from_secs(1024);

/// Most samples a report takes (`-n`).
pub const MAX_SAMPLES: u32 = 8;

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
    /// The server's round trip to its reference clock, in seconds.
    pub root_delay: f64,
    /// How far off the server may be from its reference clock, in seconds.
    pub root_dispersion: f64,
    /// When the server's clock was last set or corrected (UTC, RFC 3339), if it says.
    pub reference_time: Option<String>,
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
        )?;
        // `{:#}` (`-v`): how good the server's own time is, as chronyc shows it.
        if f.alternate() {
            write!(
                f,
                ", root delay {:.6} s, root dispersion {:.6} s, reference time {}",
                self.root_delay,
                self.root_dispersion,
                self.reference_time.as_deref().unwrap_or("unset")
            )?;
        }
        Ok(())
    }
}

/// The wall-clock time of an NTP timestamp, read in the era nearest now.
fn utc(timestamp: Timestamp) -> Option<String> {
    if timestamp.is_zero() {
        return None;
    }
    let age = Timestamp::now().seconds_since(timestamp);
    let at = chrono::Utc::now() - chrono::Duration::milliseconds((age * 1000.0) as i64);
    Some(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

fn leap_words(leap: u8) -> &'static str {
    match leap {
        0 => "none",
        1 => "61-second minute ahead",
        2 => "59-second minute ahead",
        _ => "unsynchronised",
    }
}

/// `host`, `host:port`, an IPv6 literal, with a port when none is given: `ftpd`'s time
/// port for the host of `login` (the server you are logged in to), NTP's 123 for any other.
///
/// # Errors
/// As [`crate::client::server_address`].
pub fn time_address(raw: &str, login: Option<&str>) -> Result<String> {
    let with_ntp_port = crate::client::address_with_default_port(raw, NTP_PORT)?;
    let login_host = login
        .and_then(|login| crate::client::address_with_default_port(login, NTP_PORT).ok())
        .and_then(|login| host_of(&login).map(str::to_owned));
    let same_host = login_host.is_some_and(|host| host_of(&with_ntp_port) == Some(&host));
    if same_host && !has_port(raw) {
        return crate::client::address_with_default_port(raw, DEFAULT_TIME_PORT);
    }
    Ok(with_ntp_port)
}

/// The host of `host:port` (brackets kept on an IPv6 literal).
fn host_of(address: &str) -> Option<&str> {
    address.rsplit_once(':').map(|(host, _)| host)
}

/// Whether an address as typed names a port.
fn has_port(raw: &str) -> bool {
    let raw = raw.trim();
    if raw.parse::<std::net::Ipv6Addr>().is_ok() {
        return false;
    }
    match raw.strip_prefix('[') {
        Some(rest) => rest
            .split_once(']')
            .is_some_and(|(_, after)| !after.is_empty()),
        None => raw.contains(':'),
    }
}

/// `ftpc time`'s arguments, the same on the command line and in the shell.
#[derive(Debug, Clone, clap::Args)]
pub struct TimeArgs {
    /// Time servers: HOST, HOST:PORT or an IPv6 literal, each reported on its line. A host
    /// without a port is asked at port 123, an ordinary NTP server, unless it is the host of
    /// your login (then ftpd's 1123). Default: the host of your most recent login, port
    /// 1123, or 127.0.0.1:1123.
    #[arg(value_name = "SERVER")]
    pub servers: Vec<String>,
    /// Requests to send (1 to 8); the one with the lowest delay is reported.
    #[arg(short = 'n', long, value_name = "SAMPLES", default_value_t = 4, value_parser = samples)]
    pub samples: u32,
    /// Keep asking every SECS seconds (8 or more: ftpd and chrony answer an address about
    /// once per 8 s), a line each time with the local time in front, until Ctrl-C; after
    /// the first report one request a time, and twice the interval (up to 1024 s) each
    /// time the server asks us to slow down (Kiss-o'-Death RATE), as chrony does.
    #[arg(long, value_name = "SECS", value_parser = watch_interval)]
    pub watch: Option<Duration>,
    /// Also show the server's root delay, root dispersion and reference time.
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// One JSON object per result.
    #[arg(long)]
    pub json: bool,
}

/// `-n`: 1 to [`MAX_SAMPLES`].
fn samples(typed: &str) -> std::result::Result<u32, String> {
    match typed.parse::<u32>() {
        Ok(n) if (1..=MAX_SAMPLES).contains(&n) => Ok(n),
        _ => Err(format!("a number of requests from 1 to {MAX_SAMPLES}")),
    }
}

/// `--watch`: seconds, at least [`MIN_WATCH`].
fn watch_interval(typed: &str) -> std::result::Result<Duration, String> {
    let too_fast = || {
        format!(
            "seconds, {} or more: ftpd and chrony answer one address about once per {} s, \
             and a client that asks faster is sent a Kiss-o'-Death",
            MIN_WATCH.as_secs(),
            MIN_WATCH.as_secs()
        )
    };
    match typed.parse::<f64>() {
        Ok(secs) if secs >= MIN_WATCH.as_secs_f64() => {
            Duration::try_from_secs_f64(secs).map_err(|_| too_fast())
        }
        _ => Err(too_fast()),
    }
}

impl TimeArgs {
    /// Asks (or, with `--watch`, keeps asking) the servers named, or that of `login` (the
    /// address of the saved login, if any), writing a line a result.
    ///
    /// # Errors
    /// [`CommandError`] naming the server that gave no time (or, of several, how many).
    pub async fn run(
        &self,
        login: Option<&str>,
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> std::result::Result<(), CommandError> {
        let servers = self.addresses(login).map_err(failed("time"))?;
        let outcome = match self.watch {
            Some(every) => self.keep_watching(&servers, every, out, err).await,
            None => self.report(&servers, out, err).await,
        };
        let context = match servers.as_slice() {
            [one] => format!("time {one}"),
            _ => "time".into(),
        };
        outcome.map_err(failed(context))
    }

    /// The addresses to ask, with `login` the address of the saved login, if any.
    ///
    /// # Errors
    /// [`Error::Usage`] for an address that cannot be one.
    pub fn addresses(&self, login: Option<&str>) -> Result<Vec<String>> {
        if self.servers.is_empty() {
            let login = login.unwrap_or(crate::client::DEFAULT_SERVER);
            let host = host_of(login).unwrap_or(login);
            return Ok(vec![time_address(host, Some(login))?]);
        }
        self.servers
            .iter()
            .map(|raw| time_address(raw, login))
            .collect()
    }

    fn write(&self, out: &mut dyn Write, report: &TimeReport, at: Option<&str>) -> Result<()> {
        if self.json {
            let line = serde_json::to_string(report)
                .map_err(|e| Error::Usage(format!("cannot write JSON: {e}")))?;
            writeln!(out, "{line}")?;
            return Ok(());
        }
        if let Some(at) = at {
            write!(out, "{at} ")?;
        }
        if self.verbose {
            writeln!(out, "{report:#}")?;
        } else {
            writeln!(out, "{report}")?;
        }
        Ok(())
    }

    /// Asks each of `servers` (at once) and writes a line each, in the order given; a
    /// server that gave no time is reported on `err` in its place.
    ///
    /// # Errors
    /// With one server, why it gave no time; with several, how many gave none.
    pub async fn report(
        &self,
        servers: &[String],
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> Result<()> {
        let asked = servers.iter().map(|server| query(server, self.samples));
        let results = futures_util::future::join_all(asked).await;
        let mut failed = Vec::new();
        for (server, result) in servers.iter().zip(results) {
            match result {
                Ok(report) => self.write(out, &report, None)?,
                Err(error) if servers.len() == 1 => return Err(error),
                Err(error) => {
                    writeln!(err, "ftpc: time {server}: {error}")?;
                    failed.push(server);
                }
            }
        }
        match failed.len() {
            0 => Ok(()),
            n => Err(Error::TimeRefused(format!(
                "{n} of {} servers gave no usable time",
                servers.len()
            ))),
        }
    }

    /// Polls `servers` until the caller stops it (Ctrl-C) or every server has refused us
    /// for good (`DENY`, `RSTR`), a line a result; problems go to `err` and polling goes on.
    ///
    /// # Errors
    /// Only if the output cannot be written, or when every server refused to serve us.
    pub async fn keep_watching(
        &self,
        servers: &[String],
        every: Duration,
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> Result<()> {
        let every = every.max(MIN_WATCH);
        let start = tokio::time::Instant::now();
        let mut polls: Vec<Poll> = servers
            .iter()
            .map(|server| Poll {
                server: server.clone(),
                due: start,
                interval: every,
                first: true,
            })
            .collect();
        loop {
            let Some(next) = polls
                .iter_mut()
                .filter(|poll| poll.interval != Duration::MAX)
                .min_by_key(|poll| poll.due)
            else {
                return Err(Error::TimeRefused(
                    "every server refused to serve us (Kiss-o'-Death DENY or RSTR)".into(),
                ));
            };
            tokio::time::sleep_until(next.due).await;
            let samples = if next.first { self.samples } else { 1 };
            let result = query(&next.server, samples).await;
            let at = chrono::Local::now().format("%H:%M:%S").to_string();
            match result {
                Ok(report) => {
                    next.first = false;
                    self.write(out, &report, Some(&at))?;
                }
                Err(Error::KissOfDeath { code }) => {
                    let error = Error::KissOfDeath { code: code.clone() };
                    match after_kiss(next.interval, &code) {
                        Some(slower) => {
                            next.interval = slower;
                            writeln!(
                                err,
                                "{at} ftpc: time {}: {error}; asking every {} s now",
                                next.server,
                                slower.as_secs()
                            )?;
                        }
                        None => {
                            next.interval = Duration::MAX;
                            writeln!(
                                err,
                                "{at} ftpc: time {}: {error}; not asking it again",
                                next.server
                            )?;
                            continue;
                        }
                    }
                }
                Err(error) => writeln!(err, "{at} ftpc: time {}: {error}", next.server)?,
            }
            next.due += next.interval;
            // Behind (a slow poll, a suspended laptop): the next poll a whole interval on.
            let now = tokio::time::Instant::now();
            if next.due < now {
                next.due = now + next.interval;
            }
        }
    }
}

/// The interval after a Kiss-o'-Death with `code`: twice as long (up to [`MAX_WATCH`])
/// for `RATE`; none, polling no more, for `DENY` and `RSTR` (RFC 5905, section 7.4), and for
/// a code we do not know: no time comes with it either.
fn after_kiss(interval: Duration, code: &str) -> Option<Duration> {
    (code == "RATE").then(|| interval.saturating_mul(2).min(MAX_WATCH))
}

/// One server's polling in `--watch`.
struct Poll {
    server: String,
    due: tokio::time::Instant,
    /// `Duration::MAX` once the server refused us for good.
    interval: Duration,
    /// Its first report takes every sample; later ones one each.
    first: bool,
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
            Err(err @ Error::KissOfDeath { .. }) => {
                if best.is_none() {
                    return Err(err);
                }
                break;
            }
            // An unsynchronised server stays so for the next sample too.
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
        root_delay: ntp::from_short_format(reply.root_delay),
        root_dispersion: ntp::from_short_format(reply.root_dispersion),
        reference_time: utc(reply.reference),
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
            return Err(Error::KissOfDeath { code });
        }
        if reply.leap == LEAP_UNSYNCHRONISED || !(1..=15).contains(&reply.stratum) {
            return Err(Error::TimeRefused(
                "the server says its clock is not synchronised. Its admin can synchronise it \
                 (chrony, ntpd, systemd-timesyncd) or, for an ftpd in an isolated lab, serve \
                 the local clock anyway: ftpd serve --time-local-stratum 10"
                    .into(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_without_a_port_is_ntp_unless_it_is_the_login_server() {
        let login = Some("127.0.0.1:2121");
        assert_eq!(time_address("127.0.0.1", login).unwrap(), "127.0.0.1:1123");
        assert_eq!(
            time_address("127.0.0.1:123", login).unwrap(),
            "127.0.0.1:123"
        );
        assert_eq!(time_address("localhost", login).unwrap(), "localhost:123");
        assert_eq!(time_address("127.0.0.1", None).unwrap(), "127.0.0.1:123");
        let v6 = Some("[::1]:2121");
        assert_eq!(time_address("::1", v6).unwrap(), "[::1]:1123");
        assert_eq!(time_address("[::1]", v6).unwrap(), "[::1]:1123");
        assert_eq!(time_address("[::1]:9123", v6).unwrap(), "[::1]:9123");
        assert_eq!(time_address("::1", login).unwrap(), "[::1]:123");
        assert!(time_address("host:0", login).is_err());
    }

    /// `--watch` after a Kiss-o'-Death: RATE doubles the interval up to the ceiling,
    /// anything else stops the polling.
    #[test]
    fn a_rate_kiss_slows_polling_and_others_stop_it() {
        let eight = Duration::from_secs(8);
        assert_eq!(after_kiss(eight, "RATE"), Some(Duration::from_secs(16)));
        assert_eq!(
            after_kiss(Duration::from_secs(1000), "RATE"),
            Some(MAX_WATCH)
        );
        assert_eq!(after_kiss(eight, "DENY"), None);
        assert_eq!(after_kiss(eight, "RSTR"), None);
        assert_eq!(after_kiss(eight, "XYZW"), None);
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
