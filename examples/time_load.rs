//! Load on an NTP server (ours, chronyd, or the UDP echo below as the physical limit):
//! SOCKETS client sockets on loopback, each in a closed loop (send a request, wait for its
//! reply), for SECS seconds. Prints requests answered per second and the round trip at
//! p50/p99, as seen by the clients.
//!
//! Usage: `time_load ADDR [SOCKETS] [SECS]`, or `time_load --echo ADDR` to run a UDP echo
//! server that answers every datagram with 48 bytes at once.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ftprep::ntp::{Packet, Timestamp};
use tokio::net::UdpSocket;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--echo") {
        let addr: SocketAddr = args.get(1).map_or("127.0.0.1:0", String::as_str).parse()?;
        return echo(addr).await;
    }
    let target: SocketAddr = args
        .first()
        .ok_or_else(|| anyhow::anyhow!("usage: time_load ADDR [SOCKETS] [SECS] | --echo ADDR"))?
        .parse()?;
    let sockets: usize = args.get(1).map_or(Ok(32), |s| s.parse())?;
    let secs: f64 = args.get(2).map_or(Ok(5.0), |s| s.parse())?;
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for _ in 0..sockets {
        tasks.push(tokio::spawn(client(target, until)));
    }
    let mut delays: Vec<Duration> = Vec::new();
    let mut lost = 0u64;
    for task in tasks {
        let (mut got, missing) = task.await??;
        delays.append(&mut got);
        lost += missing;
    }
    delays.sort();
    let at = |q: f64| {
        delays
            .get(((delays.len() as f64 - 1.0) * q).round() as usize)
            .map_or(0.0, |d| d.as_secs_f64() * 1e6)
    };
    println!(
        "{:.0} replies/s, p50 {:.1} us, p99 {:.1} us, {} lost",
        delays.len() as f64 / secs,
        at(0.50),
        at(0.99),
        lost
    );
    Ok(())
}

/// One socket's closed loop: its round trips, and the requests that got no reply.
async fn client(target: SocketAddr, until: Instant) -> anyhow::Result<(Vec<Duration>, u64)> {
    let socket = UdpSocket::bind("127.0.0.1:0").await?;
    socket.connect(target).await?;
    let mut delays = Vec::new();
    let mut lost = 0;
    let mut buf = [0u8; 1024];
    while Instant::now() < until {
        let cookie = Timestamp(rand::random::<u64>() | 1);
        let request = Packet::client_request(cookie);
        let sent = Instant::now();
        socket.send(&request.encode()).await?;
        match tokio::time::timeout(Duration::from_millis(200), socket.recv(&mut buf)).await {
            Ok(Ok(_)) => delays.push(sent.elapsed()),
            _ => lost += 1,
        }
    }
    Ok((delays, lost))
}

/// Answers every datagram with 48 bytes, at once, from a plain blocking loop (no event
/// loop, no parsing): the least any server here must do per request.
async fn echo(addr: SocketAddr) -> anyhow::Result<()> {
    let socket = std::net::UdpSocket::bind(addr)?;
    eprintln!("echo listening on {}", socket.local_addr()?);
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let mut buf = [0u8; 1024];
        loop {
            let (len, peer) = socket.recv_from(&mut buf)?;
            let _ = socket.send_to(&buf[..len.min(48)], peer);
        }
    })
    .await?
}
