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
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use crate::ntp::{self, LEAP_UNSYNCHRONISED, MODE_CLIENT, MODE_SERVER, Packet, Timestamp};

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
struct Slot {
    addr: IpAddr,
    tokens: f64,
    last: Instant,
    excess: u64,
}

/// What to do with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Answer,
    Kiss,
    Drop,
}

/// The rate limiter's fixed table: one slot per hash of the address (a new address takes
/// over a slot, so an attacker with many addresses only ever fills the same table).
struct RateTable {
    slots: Vec<Option<Slot>>,
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

    fn check(&mut self, addr: IpAddr, now: Instant) -> Verdict {
        let index = (self.hasher.hash_one(addr) as usize) % RATE_SLOTS;
        let burst = f64::from(self.limit.burst.max(1));
        let interval = 2f64.powi(i32::from(self.limit.interval));
        let slot = match &mut self.slots[index] {
            Some(slot) if slot.addr == addr => slot,
            other => other.insert(Slot {
                addr,
                tokens: burst,
                last: now,
                excess: 0,
            }),
        };
        let earned = now.duration_since(slot.last).as_secs_f64() / interval;
        slot.tokens = (slot.tokens + earned).min(burst);
        slot.last = now;
        if slot.tokens >= 1.0 {
            slot.tokens -= 1.0;
            return Verdict::Answer;
        }
        slot.excess = slot.excess.wrapping_add(1);
        if slot.excess % (1u64 << self.limit.leak.min(16)) == 0 {
            Verdict::Kiss
        } else {
            Verdict::Drop
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

/// Datagrams handled per wakeup before the task yields.
const DATAGRAMS_PER_WAKEUP: usize = 64;

/// One datagram if one is there (`WouldBlock` if not): its length, sender, and the kernel's
/// arrival stamp when there is one.
fn try_receive(
    socket: &UdpSocket,
    buf: &mut [u8],
    kernel_stamps: bool,
) -> std::io::Result<(usize, SocketAddr, Option<Timestamp>)> {
    if kernel_stamps {
        socket.try_io(tokio::io::Interest::READABLE, || recv_stamped(socket, buf))
    } else {
        socket
            .try_recv_from(buf)
            .map(|(len, peer)| (len, peer, None))
    }
}

/// `recvmsg` with room for the `SCM_TIMESTAMPNS` control message.
fn recv_stamped(
    socket: &UdpSocket,
    buf: &mut [u8],
) -> std::io::Result<(usize, SocketAddr, Option<Timestamp>)> {
    use std::os::fd::AsRawFd;
    // SAFETY: every pointer handed to recvmsg points into a live, large enough local value
    // or `buf`; the control messages are read only within the length the kernel reports.
    unsafe {
        let mut addr: libc::sockaddr_storage = std::mem::zeroed();
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let mut control = [0u64; 16];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_name = (&mut addr as *mut libc::sockaddr_storage).cast();
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        let len = libc::recvmsg(socket.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT);
        if len < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let peer = match i32::from(addr.ss_family) {
            libc::AF_INET => {
                let v4 = &*(&addr as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>();
                SocketAddr::from((
                    std::net::Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr)),
                    u16::from_be(v4.sin_port),
                ))
            }
            libc::AF_INET6 => {
                let v6 = &*(&addr as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>();
                SocketAddr::from((
                    std::net::Ipv6Addr::from(v6.sin6_addr.s6_addr),
                    u16::from_be(v6.sin6_port),
                ))
            }
            _ => {
                return Err(std::io::Error::other(
                    "a datagram from an unknown address family",
                ));
            }
        };
        let mut stamp = None;
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS
            {
                let ts = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::timespec>());
                let when = std::time::UNIX_EPOCH
                    + Duration::new(
                        u64::try_from(ts.tv_sec).unwrap_or(0),
                        u32::try_from(ts.tv_nsec).unwrap_or(0),
                    );
                stamp = Some(Timestamp::from_system_time(when));
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
        Ok((len as usize, peer, stamp))
    }
}

/// The NTP server of `ftpd serve`.
pub struct TimeServer {
    socket: UdpSocket,
    settings: TimeSettings,
    precision: i8,
    clock: Arc<dyn Fn() -> ClockStatus + Send + Sync>,
    clock_cache: Mutex<Option<(ClockStatus, Instant)>>,
    limiter: Option<Mutex<RateTable>>,
    counters: Arc<TimeCounters>,
}

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
            clock_cache: Mutex::new(None),
            limiter: settings.rate.map(|rate| Mutex::new(RateTable::new(rate))),
            counters: Arc::default(),
        }
    }

    /// The address it answers on.
    ///
    /// # Errors
    /// The socket's address cannot be read.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// What happened so far.
    pub fn counters(&self) -> Arc<TimeCounters> {
        Arc::clone(&self.counters)
    }

    /// Answers requests until `shutdown` is cancelled; then logs what it did.
    pub async fn run(self, shutdown: CancellationToken) {
        if let Ok(addr) = self.socket.local_addr() {
            tracing::info!(%addr, "time service (NTP) answering");
        }
        // The kernel stamps each datagram as it arrives: the earliest receive time there is.
        let kernel_stamps = enable_receive_timestamps(&self.socket);
        let mut buf = [0u8; 1024];
        loop {
            tokio::select! {
                ready = self.socket.readable() => if ready.is_err() { continue },
                () = shutdown.cancelled() => break,
            }
            // What has arrived, without a trip through the scheduler per datagram; a
            // bounded number, so shutdown and the other tasks get their turn.
            for _ in 0..DATAGRAMS_PER_WAKEUP {
                let (len, peer, stamped) = match try_receive(&self.socket, &mut buf, kernel_stamps)
                {
                    Ok(got) => got,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    // ICMP errors from earlier replies and the like: go on.
                    Err(_) => continue,
                };
                // Else as early as we can: right after the datagram was read.
                let received = stamped.unwrap_or_else(Timestamp::now);
                if let Some(reply) = self.reply_to(&buf[..len], peer.ip(), received) {
                    self.send(reply, peer).await;
                }
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

    /// Sends a reply, its transmit time written in as late as we can.
    async fn send(&self, reply: Packet, peer: SocketAddr) {
        let mut bytes = reply.encode();
        let transmit = Timestamp::now();
        bytes[40..48].copy_from_slice(&transmit.0.to_be_bytes());
        // A UDP send rarely has to wait; when it would, wait for room then.
        if let Err(e) = self.socket.try_send_to(&bytes, peer)
            && e.kind() == std::io::ErrorKind::WouldBlock
        {
            let _ = self.socket.send_to(&bytes, peer).await;
        }
    }

    /// How the host clock stands, asked of the kernel at most once a second (the answer
    /// changes slowly; a system call per request would not).
    fn clock_status(&self) -> ClockStatus {
        let mut cached = self.clock_cache.lock().unwrap_or_else(|p| p.into_inner());
        match *cached {
            Some((status, at)) if at.elapsed() < Duration::from_secs(1) => status,
            _ => {
                let status = (self.clock)();
                *cached = Some((status, Instant::now()));
                status
            }
        }
    }

    /// The reply to one datagram, if it gets one.
    fn reply_to(&self, datagram: &[u8], from: IpAddr, received: Timestamp) -> Option<Packet> {
        let request = match Packet::decode(datagram) {
            Ok(request) if request.mode == MODE_CLIENT && (3..=4).contains(&request.version) => {
                request
            }
            _ => {
                self.counters.ignored.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        };
        let verdict = match &self.limiter {
            Some(limiter) => limiter
                .lock()
                .map(|mut table| table.check(from, Instant::now()))
                .unwrap_or(Verdict::Drop),
            None => Verdict::Answer,
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
            Verdict::Drop => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            Verdict::Kiss => {
                self.counters.kissed.fetch_add(1, Ordering::Relaxed);
                reply.leap = LEAP_UNSYNCHRONISED;
                reply.stratum = 0;
                reply.reference_id = *b"RATE";
                return Some(reply);
            }
            Verdict::Answer => {}
        }
        let clock = self.clock_status();
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
        assert_eq!(&verdicts[..4], &[Verdict::Answer; 4]);
        assert_eq!(
            &verdicts[4..],
            &[Verdict::Drop, Verdict::Kiss, Verdict::Drop, Verdict::Kiss]
        );
        // One interval (1 s) later, one more reply is earned.
        assert_eq!(
            table.check(addr, now + Duration::from_secs(1)),
            Verdict::Answer
        );
        // Another address has its own budget.
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!(table.check(other, now), Verdict::Answer);
        assert_eq!(table.slots.len(), RATE_SLOTS);
    }

    /// The receive timestamp comes from the kernel, stamped on arrival, with the sender.
    #[tokio::test]
    async fn datagrams_carry_the_kernels_arrival_time() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        assert!(enable_receive_timestamps(&server));
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let before = Timestamp::now();
        client
            .send_to(b"hello", server.local_addr().unwrap())
            .await
            .unwrap();
        let mut buf = [0u8; 64];
        server.readable().await.unwrap();
        let (len, peer, stamp) = try_receive(&server, &mut buf, true).unwrap();
        assert_eq!(&buf[..len], b"hello");
        assert_eq!(peer, client.local_addr().unwrap());
        let stamp = stamp.expect("a kernel timestamp");
        let after = Timestamp::now();
        assert!(
            stamp >= before && stamp <= after,
            "{stamp:?} not in {before:?}..{after:?}"
        );
    }

    #[test]
    fn precision_is_a_plausible_power_of_two() {
        let precision = measure_precision();
        assert!((-30..=-6).contains(&precision), "{precision}");
    }
}
