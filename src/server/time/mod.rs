//! The time service: an NTP server (RFC 5905, the server side of §14's SNTP) on UDP, so a
//! lab that runs `ftpd` has its time server too, for chrony, ntpd and systemd-timesyncd.
//!
//! It answers well-formed client requests (mode 3, version 3 or 4, at least 48 bytes) and
//! nothing else: no control or private modes, never a reply larger than the request, extension
//! fields never echoed. Each address is rate-limited as chrony's `ratelimit` does (interval,
//! burst, leak) in a table of fixed size; some excess gets a Kiss-o'-Death `RATE`, the rest
//! is dropped. It is honest about the host clock: synchronised (the kernel says so), it
//! serves at the configured stratum; not synchronised, it answers with leap indicator 3 so
//! no client trusts it, unless the admin asked for a local stratum (`LOCL`).

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use std::net::UdpSocket;

use self::datagrams::Datagrams;
use crate::server::budget::Budget;

use std::os::fd::AsRawFd;

use crate::ntp::{self, LEAP_UNSYNCHRONISED, MODE_CLIENT, MODE_SERVER, Packet, Timestamp};

mod datagrams;

/// Where the time service listens by default (port 123 needs privileges).
pub const DEFAULT_TIME_LISTEN: &str = "127.0.0.1:1123";

/// Addresses the rate limiter remembers; memory stays the same whatever arrives.
const RATE_SLOTS: usize = 4096;

/// How the host clock stands, as the kernel reports it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClockStatus {
    /// Synchronised to something (chrony, ntpd, timesyncd said so to the kernel).
    pub synchronised: bool,
    /// The kernel's estimated error.
    pub estimated_error: Duration,
    /// The kernel's maximum error.
    pub maximum_error: Duration,
}

/// Reads the kernel's view of the clock (`adjtimex` with no change requested).
pub fn kernel_clock_status() -> ClockStatus {
    // SAFETY: a zeroed timex with modes 0 only asks; adjtimex fills it in.
    let mut timex: libc::timex = unsafe { std::mem::zeroed() };
    // SAFETY: timex is a valid, writable struct of the right type.
    let state = unsafe { libc::adjtimex(&mut timex) };
    let micros = |v: libc::c_long| Duration::from_micros(u64::try_from(v).unwrap_or(0));
    ClockStatus {
        synchronised: state >= 0
            && state != libc::TIME_ERROR
            && timex.status & libc::STA_UNSYNC == 0,
        estimated_error: micros(timex.esterror),
        maximum_error: micros(timex.maxerror),
    }
}

/// chrony's `ratelimit`: per address, at most one reply per 2^`interval` seconds on
/// average, `burst` at once; of the excess, one in 2^`leak` gets a `RATE` Kiss-o'-Death.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// log2 of the seconds between replies an address earns.
    pub interval: i8,
    /// Replies an address may have in a row.
    pub burst: u32,
    /// log2 of how many excess requests share one KoD.
    pub leak: u32,
}

impl Default for RateLimit {
    /// chrony's defaults: interval 3 (8 s), burst 8, leak 2.
    fn default() -> Self {
        RateLimit {
            interval: 3,
            burst: 8,
            leak: 2,
        }
    }
}

/// What the time service serves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimeSettings {
    /// The stratum served while the host clock is synchronised.
    pub stratum: u8,
    /// Serve the local clock at this stratum when it is not synchronised (chrony's `local
    /// stratum N`); `None` answers with leap indicator 3 then.
    pub local_stratum: Option<u8>,
    /// Per-address limits; `None` answers every request (for benchmarks, or behind a
    /// firewall that limits already).
    pub rate: Option<RateLimit>,
}

impl Default for TimeSettings {
    fn default() -> Self {
        TimeSettings {
            stratum: 3,
            local_stratum: None,
            rate: Some(RateLimit::default()),
        }
    }
}

/// What happened to requests, for the log (no line per request).
#[derive(Debug, Default)]
pub struct TimeCounters {
    /// Replies with the time.
    pub answered: AtomicU64,
    /// Kiss-o'-Death replies.
    pub kissed: AtomicU64,
    /// Excess requests dropped without a reply.
    pub dropped: AtomicU64,
    /// Datagrams that were not client requests (short, other modes, other versions).
    pub ignored: AtomicU64,
}

/// One address's budget.
#[derive(Debug, Clone, Copy)]
struct AddressBudget {
    addr: IpAddr,
    budget: Budget,
    excess: u64,
}

/// What to do with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Answer,
    Kiss,
    Drop,
}

/// The rate limiter's fixed table: one slot per hash of the address (a new address takes
/// over a slot, so an attacker with many addresses only ever fills the same table).
struct RateTable {
    slots: Vec<Option<AddressBudget>>,
    hasher: RandomState,
    limit: RateLimit,
}

impl RateTable {
    fn new(limit: RateLimit) -> Self {
        RateTable {
            slots: vec![None; RATE_SLOTS],
            hasher: RandomState::new(),
            limit,
        }
    }

    fn check(&mut self, addr: IpAddr, now: Instant) -> Decision {
        let index = (self.hasher.hash_one(addr) as usize) % RATE_SLOTS;
        let burst = f64::from(self.limit.burst.max(1));
        // One reply per 2^interval seconds.
        let rate = 2f64.powi(-i32::from(self.limit.interval));
        let slot = match &mut self.slots[index] {
            Some(slot) if slot.addr == addr => slot,
            other => other.insert(AddressBudget {
                addr,
                budget: Budget::new(rate, burst, now),
                excess: 0,
            }),
        };
        if slot.budget.take(now) {
            return Decision::Answer;
        }
        slot.excess = slot.excess.wrapping_add(1);
        if slot.excess % (1u64 << self.limit.leak.min(16)) == 0 {
            Decision::Kiss
        } else {
            Decision::Drop
        }
    }
}

/// The precision of the system clock, log2 seconds: the smallest step seen between readings.
pub fn measure_precision() -> i8 {
    let mut smallest = Duration::from_secs(1);
    for _ in 0..64 {
        let first = SystemTime::now();
        let mut next = SystemTime::now();
        while next == first {
            next = SystemTime::now();
        }
        if let Ok(step) = next.duration_since(first) {
            smallest = smallest.min(step);
        }
    }
    let log2 = smallest.as_secs_f64().max(1e-9).log2().floor();
    log2.clamp(-30.0, 0.0) as i8
}

/// Asks the kernel to stamp each datagram's arrival (`SO_TIMESTAMPNS`); false where it
/// cannot, and the time service then reads the clock itself.
fn enable_receive_timestamps(socket: &UdpSocket) -> bool {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: setsockopt reads an int of the size given from a live value.
    let set = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    set == 0
}

/// The NTP server of `ftpd serve`.
pub struct TimeServer {
    socket: UdpSocket,
    settings: TimeSettings,
    precision: i8,
    clock: Arc<dyn Fn() -> ClockStatus + Send + Sync>,
    clock_cache: Option<(ClockStatus, Instant)>,
    limiter: Option<RateTable>,
    counters: Arc<TimeCounters>,
}

/// A running time service: its address, its counters, and the way to stop it.
pub struct TimeService {
    addr: SocketAddr,
    /// The service's socket, to wake it from its wait when it should stop.
    socket: UdpSocket,
    counters: Arc<TimeCounters>,
    stopping: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TimeService {
    /// The address it answers on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// What happened so far.
    pub fn counters(&self) -> Arc<TimeCounters> {
        Arc::clone(&self.counters)
    }

    /// Stops it and waits until it has logged what it did.
    pub fn stop(mut self) {
        self.wake_to_stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    /// Tells the thread to stop and ends its wait: a socket shut for reading returns from a
    /// blocked receive at once (no timer per wait, no datagram to ourselves).
    fn wake_to_stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        // SAFETY: shutdown on a descriptor this value owns, alive for the call.
        unsafe { libc::shutdown(self.socket.as_raw_fd(), libc::SHUT_RD) };
    }
}

impl Drop for TimeService {
    /// Dropped without [`TimeService::stop`], it still stops (without waiting).
    fn drop(&mut self) {
        self.wake_to_stop();
    }
}

/// How long a reply may wait for room in the socket's buffer before it is dropped.
const SEND_TIMEOUT: Duration = Duration::from_millis(100);

impl TimeServer {
    /// Serves on `socket` with the kernel's clock status.
    pub fn new(socket: UdpSocket, settings: TimeSettings) -> Self {
        Self::with_clock(socket, settings, Arc::new(kernel_clock_status))
    }

    /// Serves on `socket`, asking `clock` how the host clock stands (tests pretend).
    pub fn with_clock(
        socket: UdpSocket,
        settings: TimeSettings,
        clock: Arc<dyn Fn() -> ClockStatus + Send + Sync>,
    ) -> Self {
        TimeServer {
            socket,
            settings,
            precision: measure_precision(),
            clock,
            clock_cache: None,
            limiter: settings.rate.map(RateTable::new),
            counters: Arc::default(),
        }
    }

    /// Starts answering on a thread of its own: a request never waits behind the file
    /// service, and the thread waits in the kernel until datagrams arrive, reads a batch and
    /// answers it (no event loop between). One thread: two on this two-core machine answered
    /// twice chronyd's rate at light load but tripled the p99 delay at saturation
    /// (BENCHMARKS.md).
    ///
    /// # Errors
    /// The socket cannot be set up (its address, timeouts) or the thread cannot start.
    pub fn start(self) -> std::io::Result<TimeService> {
        let addr = self.socket.local_addr()?;
        self.socket.set_nonblocking(false)?;
        // A reply that cannot go soon is dropped (UDP: the client asks again).
        self.socket.set_write_timeout(Some(SEND_TIMEOUT))?;
        let socket = self.socket.try_clone()?;
        let counters = self.counters();
        let stopping = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&stopping);
        let thread = std::thread::Builder::new()
            .name("ftpd-time".into())
            .spawn(move || self.serve(&stop))?;
        Ok(TimeService {
            addr,
            socket,
            counters,
            stopping,
            thread: Some(thread),
        })
    }

    /// What happened so far.
    pub fn counters(&self) -> Arc<TimeCounters> {
        Arc::clone(&self.counters)
    }

    /// Answers requests until `stopping`; then logs what it did.
    fn serve(mut self, stopping: &AtomicBool) {
        if let Ok(addr) = self.socket.local_addr() {
            tracing::info!(%addr, "time service (NTP) answering");
        }
        // The kernel stamps each datagram as it arrives: the earliest receive time there is.
        if !enable_receive_timestamps(&self.socket) {
            tracing::warn!("no kernel receive timestamps: the clock is read after each batch");
        }
        let fd = self.socket.as_raw_fd();
        let mut inbox = Datagrams::default();
        let mut replies = Vec::with_capacity(datagrams::BATCH);
        while !stopping.load(Ordering::Relaxed) {
            match inbox.receive(fd) {
                // Woken to stop (the socket was shut for reading): nothing to answer.
                Ok(_) if stopping.load(Ordering::Relaxed) => break,
                Ok(_) => {}
                // Woken to stop, an interrupted wait, ICMP errors from earlier replies and
                // the like: look at `stopping`, go on.
                Err(_) => continue,
            }
            let read_at = Timestamp::now();
            for (datagram, got) in inbox.datagrams() {
                let Some(peer) = got.peer.filter(|_| !got.truncated) else {
                    self.counters.ignored.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let received = got.stamp.unwrap_or(read_at);
                if let Some(reply) = self.reply_to(datagram, peer.ip(), received) {
                    replies.push((reply.encode(), peer));
                }
            }
            // The batch's replies go back to back once all are made (chronyd's order, which
            // measured faster than each as it is made: the clients wake fewer times), each
            // with its transmit time written in right before it goes.
            for (mut bytes, peer) in replies.drain(..) {
                bytes[40..48].copy_from_slice(&Timestamp::now().0.to_be_bytes());
                // One that cannot go within SEND_TIMEOUT is lost, as UDP may lose it.
                let _ = self.socket.send_to(&bytes, peer);
            }
        }
        let c = &self.counters;
        tracing::info!(
            answered = c.answered.load(Ordering::Relaxed),
            kiss_of_death = c.kissed.load(Ordering::Relaxed),
            dropped = c.dropped.load(Ordering::Relaxed),
            ignored = c.ignored.load(Ordering::Relaxed),
            "time service stopped"
        );
    }

    /// How the host clock stands, asked of the kernel at most once a second (the answer
    /// changes slowly; a system call per request would not).
    fn clock_status(&mut self, now: Instant) -> ClockStatus {
        match self.clock_cache {
            Some((status, at)) if now.duration_since(at) < Duration::from_secs(1) => status,
            _ => {
                let status = (self.clock)();
                self.clock_cache = Some((status, now));
                status
            }
        }
    }

    /// The reply to one datagram, if it gets one.
    fn reply_to(&mut self, datagram: &[u8], from: IpAddr, received: Timestamp) -> Option<Packet> {
        let request = match Packet::decode(datagram) {
            Ok(request) if request.mode == MODE_CLIENT && (3..=4).contains(&request.version) => {
                request
            }
            _ => {
                self.counters.ignored.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        };
        let now = Instant::now();
        let verdict = match &mut self.limiter {
            Some(table) => table.check(from, now),
            None => Decision::Answer,
        };
        let mut reply = Packet {
            version: request.version,
            mode: MODE_SERVER,
            poll: request.poll.clamp(4, 17),
            precision: self.precision,
            origin: request.transmit,
            receive: received,
            transmit: received,
            ..Packet::default()
        };
        match verdict {
            Decision::Drop => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            Decision::Kiss => {
                self.counters.kissed.fetch_add(1, Ordering::Relaxed);
                reply.leap = LEAP_UNSYNCHRONISED;
                reply.stratum = 0;
                reply.reference_id = *b"RATE";
                return Some(reply);
            }
            Decision::Answer => {}
        }
        let clock = self.clock_status(now);
        reply.root_delay = ntp::short_format(clock.estimated_error * 2);
        reply.root_dispersion = ntp::short_format(clock.maximum_error);
        reply.reference = received;
        match (clock.synchronised, self.settings.local_stratum) {
            (true, _) => reply.stratum = self.settings.stratum,
            (false, Some(local)) => {
                reply.stratum = local;
                reply.reference_id = *b"LOCL";
                reply.root_delay = 0;
                reply.root_dispersion = 0;
            }
            (false, None) => {
                reply.leap = LEAP_UNSYNCHRONISED;
                reply.stratum = self.settings.stratum;
            }
        }
        self.counters.answered.fetch_add(1, Ordering::Relaxed);
        Some(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_table_answers_a_burst_then_kisses_some_and_drops_the_rest() {
        let mut table = RateTable::new(RateLimit {
            interval: 0,
            burst: 4,
            leak: 1,
        });
        let now = Instant::now();
        let addr: IpAddr = "192.0.2.1".parse().unwrap();
        let verdicts: Vec<_> = (0..8).map(|_| table.check(addr, now)).collect();
        assert_eq!(&verdicts[..4], &[Decision::Answer; 4]);
        assert_eq!(
            &verdicts[4..],
            &[
                Decision::Drop,
                Decision::Kiss,
                Decision::Drop,
                Decision::Kiss
            ]
        );
        // One interval (1 s) later, one more reply is earned.
        assert_eq!(
            table.check(addr, now + Duration::from_secs(1)),
            Decision::Answer
        );
        // Another address has its own budget.
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!(table.check(other, now), Decision::Answer);
        assert_eq!(table.slots.len(), RATE_SLOTS);
    }

    #[test]
    fn precision_is_a_plausible_power_of_two() {
        let precision = measure_precision();
        assert!((-30..=-6).contains(&precision), "{precision}");
    }
}
