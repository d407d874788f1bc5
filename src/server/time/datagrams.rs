//! Datagrams in a batch at a time (`recvmmsg`): under load the time service spends its time
//! in system calls, and one call that takes what has come saves a read per request. It waits
//! for the socket to be readable (`poll`) and then reads without waiting, as chronyd does;
//! that measured a little faster than a read that waits for its first datagram. Each
//! received datagram carries the kernel's arrival stamp (`SO_TIMESTAMPNS`) when it was asked
//! for.

use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::RawFd;
use std::time::Duration;

use crate::ntp::Timestamp;

/// Datagrams taken per system call (chronyd's figure; 32 measured no better).
pub(super) const BATCH: usize = 16;

/// The largest request read whole; longer ones are truncated (and so refused: a request
/// must be well formed as a whole, and no client sends extension fields this long).
pub(super) const MAX_DATAGRAM: usize = 1024;

/// Room for the timestamp control message, aligned as `cmsghdr` wants.
const CONTROL_WORDS: usize = 8;

/// One datagram received: where it is in its buffer, who sent it, when it arrived.
#[derive(Debug, Clone, Copy)]
pub(super) struct Arrival {
    pub len: usize,
    pub truncated: bool,
    /// `None` for a sender of an address family we do not know (it gets nothing).
    pub peer: Option<SocketAddr>,
    pub stamp: Option<Timestamp>,
}

/// Buffers for one batch, kept between calls (plain data, so the task stays `Send`).
pub(super) struct Datagrams {
    buffers: Vec<[u8; MAX_DATAGRAM]>,
    received: Vec<Arrival>,
}

impl Default for Datagrams {
    fn default() -> Self {
        Datagrams {
            buffers: vec![[0; MAX_DATAGRAM]; BATCH],
            received: Vec::with_capacity(BATCH),
        }
    }
}

impl Datagrams {
    /// The datagrams of the last batch, each with its bytes.
    pub fn datagrams(&self) -> impl Iterator<Item = (&[u8], &Arrival)> {
        self.received
            .iter()
            .zip(&self.buffers)
            .map(|(got, buf)| (&buf[..got.len], got))
    }

    /// Waits for a datagram (until the socket is shut for reading: then `Ok(0)`), then
    /// takes it and whatever else is waiting, up to [`BATCH`].
    pub fn receive(&mut self, fd: RawFd) -> std::io::Result<usize> {
        self.received.clear();
        // SAFETY: every header points into live local arrays or `self.buffers`, each of the
        // length it claims; recvmmsg writes within them, and only the first `count` entries,
        // which the kernel filled, are read back (control messages within the length it set).
        unsafe {
            let mut addrs: [libc::sockaddr_storage; BATCH] = zeroed();
            let mut controls = [[0u64; CONTROL_WORDS]; BATCH];
            let mut iovs: [libc::iovec; BATCH] = zeroed();
            let mut headers: [libc::mmsghdr; BATCH] = zeroed();
            for i in 0..BATCH {
                iovs[i] = libc::iovec {
                    iov_base: self.buffers[i].as_mut_ptr().cast(),
                    iov_len: MAX_DATAGRAM,
                };
                let msg = &mut headers[i].msg_hdr;
                msg.msg_name = (&raw mut addrs[i]).cast();
                msg.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                msg.msg_iov = &raw mut iovs[i];
                msg.msg_iovlen = 1;
                msg.msg_control = controls[i].as_mut_ptr().cast();
                msg.msg_controllen = size_of::<[u64; CONTROL_WORDS]>() as _;
            }
            let mut ready = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            if libc::poll(&raw mut ready, 1, -1) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let count = libc::recvmmsg(
                fd,
                headers.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            );
            if count < 0 {
                return Err(std::io::Error::last_os_error());
            }
            for (header, addr) in headers.iter().zip(&addrs).take(count as usize) {
                let msg = &header.msg_hdr;
                self.received.push(Arrival {
                    len: (header.msg_len as usize).min(MAX_DATAGRAM),
                    truncated: msg.msg_flags & libc::MSG_TRUNC != 0,
                    peer: socket_addr(addr),
                    stamp: arrival_stamp(msg),
                });
            }
            Ok(self.received.len())
        }
    }
}

/// The kernel's `SCM_TIMESTAMPNS` of a received message, if it has one.
///
/// # Safety
/// `msg` is a header recvmmsg/recvmsg filled in, its control buffer still live.
unsafe fn arrival_stamp(msg: &libc::msghdr) -> Option<Timestamp> {
    let mut stamp = None;
    // SAFETY: the CMSG_* walk stays within msg_controllen, as the caller promises it is valid.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
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
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
    }
    stamp
}

/// The address in a `sockaddr_storage` the kernel filled in.
fn socket_addr(addr: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(addr.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, which it is big enough for.
            let v4 = unsafe { &*(&raw const *addr).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::from((
                Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr)),
                u16::from_be(v4.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let v6 = unsafe { &*(&raw const *addr).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::from((
                Ipv6Addr::from(v6.sin6_addr.s6_addr),
                u16::from_be(v6.sin6_port),
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    /// A batch comes in whole, each datagram with its sender, length and arrival stamp.
    #[test]
    fn a_batch_comes_in_whole() {
        let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(super::super::enable_receive_timestamps(&server));
        let clients: Vec<_> = (0..3)
            .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        let before = Timestamp::now();
        for (i, client) in clients.iter().enumerate() {
            client
                .send_to(&vec![i as u8; 48 + i], server.local_addr().unwrap())
                .unwrap();
        }
        clients[0]
            .send_to(&[9u8; MAX_DATAGRAM + 100], server.local_addr().unwrap())
            .unwrap();
        let mut inbox = Datagrams::default();
        let mut got = Vec::new();
        while got.len() < 4 {
            match inbox.receive(server.as_raw_fd()) {
                Ok(_) => got.extend(inbox.datagrams().map(|(b, r)| (b.to_vec(), *r))),
                Err(e) => panic!("{e}"),
            }
        }
        let after = Timestamp::now();
        for (i, (bytes, received)) in got.iter().take(3).enumerate() {
            assert_eq!(bytes, &vec![i as u8; 48 + i]);
            assert!(!received.truncated);
            assert_eq!(received.peer, Some(clients[i].local_addr().unwrap()));
            let stamp = received.stamp.expect("a kernel timestamp");
            assert!(stamp >= before && stamp <= after);
        }
        assert!(got[3].1.truncated, "a datagram larger than the buffer");
        assert_eq!(got[3].0.len(), MAX_DATAGRAM);
    }
}
