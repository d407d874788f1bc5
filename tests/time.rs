//! The time service against real UDP on 127.0.0.1: our client and our server, a spoofed
//! reply, a Kiss-o'-Death, an unsynchronised clock, hostile datagrams and a flood.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ftprep::Error;
use ftprep::client::time::query;
use ftprep::ntp::{MODE_CLIENT, MODE_SERVER, Packet, Timestamp};
use ftprep::server::time::{
    ClockStatus, RateLimit, TimeCounters, TimeServer, TimeService, TimeSettings,
};
use tokio::net::UdpSocket;

/// A host clock that says it is synchronised, or not.
fn clock(synchronised: bool) -> Arc<dyn Fn() -> ClockStatus + Send + Sync> {
    Arc::new(move || ClockStatus {
        synchronised,
        estimated_error: Duration::from_micros(20),
        maximum_error: Duration::from_micros(500),
    })
}

/// Our server on 127.0.0.1:0; its address, counters, and the running service (dropped, it
/// stops).
async fn start(
    settings: TimeSettings,
    synchronised: bool,
) -> (String, Arc<TimeCounters>, TimeService) {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let service = TimeServer::with_clock(socket, settings, clock(synchronised))
        .start()
        .unwrap();
    let addr = service.local_addr().to_string();
    (addr, service.counters(), service)
}

fn request(transmit: u64) -> Packet {
    Packet::client_request(Timestamp(transmit))
}

#[tokio::test]
async fn our_client_and_our_server_agree_within_a_millisecond() {
    let (addr, counters, stop) = start(TimeSettings::default(), true).await;
    let report = query(&addr, 4).await.unwrap();
    assert!(report.offset.abs() < 0.001, "{report}");
    assert!(report.delay >= 0.0 && report.delay < 0.05, "{report}");
    assert_eq!(report.stratum, 3);
    assert_eq!(report.leap, "none");
    assert_eq!(report.samples, 4);
    assert!((-30..=-6).contains(&report.precision));
    assert_eq!(counters.answered.load(Ordering::Relaxed), 4);
    stop.stop();
}

#[tokio::test]
async fn an_unsynchronised_clock_is_refused_unless_served_as_a_local_stratum() {
    let (addr, _, stop) = start(TimeSettings::default(), false).await;
    let err = query(&addr, 2).await.unwrap_err();
    assert!(matches!(err, Error::TimeRefused(_)), "{err}");
    assert!(err.to_string().contains("not synchronised"), "{err}");
    stop.stop();

    let local = TimeSettings {
        local_stratum: Some(8),
        ..TimeSettings::default()
    };
    let (addr, _, stop) = start(local, false).await;
    let report = query(&addr, 2).await.unwrap();
    assert_eq!((report.stratum, report.reference.as_str()), (8, "LOCL"));
    stop.stop();
}

/// Hostile datagrams get nothing (short, control mode 6, private mode 7, server mode,
/// version 2, longer than 1,024 bytes), and the one good request after them gets the only
/// reply, never larger than itself; a request with extension fields is answered with 48
/// bytes.
#[tokio::test]
async fn only_well_formed_client_requests_are_answered() {
    let (addr, counters, stop) = start(TimeSettings::default(), true).await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.connect(&addr).await.unwrap();
    let mut bad = vec![vec![0x23u8; 47], vec![0u8; 0]];
    for (version, mode) in [
        (2u8, 6u8),
        (2, 7),
        (4, 6),
        (4, 7),
        (4, MODE_SERVER),
        (2, MODE_CLIENT),
    ] {
        let mut packet = request(7);
        packet.version = version;
        packet.mode = mode;
        bad.push(packet.encode().to_vec());
    }
    // Longer than any request read whole (1,024 bytes): it would be judged by a part.
    let mut too_long = request(8).encode().to_vec();
    too_long.extend_from_slice(&[0xCD; 1100]);
    bad.push(too_long);
    for datagram in &bad {
        socket.send(datagram).await.unwrap();
    }
    let mut oversized = request(42).encode().to_vec();
    oversized.extend_from_slice(&[0xAB; 400]);
    socket.send(&oversized).await.unwrap();
    let mut buf = [0u8; 2048];
    let len = tokio::time::timeout(Duration::from_secs(10), socket.recv(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(len, 48, "extension fields are not echoed");
    let reply = Packet::decode(&buf[..len]).unwrap();
    assert_eq!(
        reply.origin,
        Timestamp(42),
        "the first reply is to the good request"
    );
    assert_eq!((reply.mode, reply.version), (MODE_SERVER, 4));
    assert_eq!(counters.ignored.load(Ordering::Relaxed), bad.len() as u64);
    // Version 3 is answered in version 3.
    let mut v3 = request(43);
    v3.version = 3;
    socket.send(&v3.encode()).await.unwrap();
    let len = socket.recv(&mut buf).await.unwrap();
    assert_eq!(Packet::decode(&buf[..len]).unwrap().version, 3);
    stop.stop();
}

/// A flood from one address: the burst is answered, some excess gets a `RATE`
/// Kiss-o'-Death, the rest nothing; our client reports the KoD in words and backs off.
#[tokio::test]
async fn a_flood_is_answered_in_bounds_and_the_client_hears_the_kiss_of_death() {
    let settings = TimeSettings {
        rate: Some(RateLimit {
            interval: 6,
            burst: 4,
            leak: 1,
        }),
        ..TimeSettings::default()
    };
    let (addr, counters, stop) = start(settings, true).await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.connect(&addr).await.unwrap();
    for i in 0..20u64 {
        socket.send(&request(1000 + i).encode()).await.unwrap();
    }
    // The last request's fate is known once a later probe is answered... by counters.
    let done = async {
        while counters.answered.load(Ordering::Relaxed)
            + counters.kissed.load(Ordering::Relaxed)
            + counters.dropped.load(Ordering::Relaxed)
            < 20
        {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), done)
        .await
        .unwrap();
    assert_eq!(counters.answered.load(Ordering::Relaxed), 4);
    assert_eq!(counters.kissed.load(Ordering::Relaxed), 8);
    assert_eq!(counters.dropped.load(Ordering::Relaxed), 8);
    let mut kisses = 0;
    let mut buf = [0u8; 128];
    for _ in 0..12 {
        let len = socket.recv(&mut buf).await.unwrap();
        let reply = Packet::decode(&buf[..len]).unwrap();
        if reply.kiss_code().as_deref() == Some("RATE") {
            kisses += 1;
        }
    }
    assert_eq!(kisses, 8);
    // The same address, through our client: the KoD in words.
    let err = query(&addr, 4).await.unwrap_err();
    assert!(err.to_string().contains("Kiss-o'-Death RATE"), "{err}");
    stop.stop();
}

/// A reply that does not echo our request's transmit timestamp (a spoofed or stale one)
/// is ignored; the genuine one after it counts.
#[tokio::test]
async fn a_reply_with_the_wrong_origin_is_ignored() {
    let fake = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = fake.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let mut buf = [0u8; 128];
        loop {
            let Ok((len, peer)) = fake.recv_from(&mut buf).await else {
                return;
            };
            let asked = Packet::decode(&buf[..len]).unwrap();
            let now = Timestamp::now();
            let genuine = Packet {
                version: 4,
                mode: MODE_SERVER,
                stratum: 2,
                reference_id: [192, 0, 2, 1],
                origin: asked.transmit,
                receive: now,
                transmit: now,
                ..Packet::default()
            };
            // First a spoof claiming the clock is an hour ahead.
            let spoof = Packet {
                origin: Timestamp(asked.transmit.0 ^ 1),
                receive: Timestamp(now.0 + (3600 << 32)),
                transmit: Timestamp(now.0 + (3600 << 32)),
                ..genuine
            };
            let _ = fake.send_to(&spoof.encode(), peer).await;
            let _ = fake.send_to(&genuine.encode(), peer).await;
        }
    });
    let report = query(&addr, 2).await.unwrap();
    assert!(
        report.offset.abs() < 0.001,
        "the spoof was ignored: {report}"
    );
    assert_eq!(report.reference, "192.0.2.1");
}

/// `stop` wakes the service from its wait at once (no polling timer), waits for it to end,
/// and the port answers no more.
#[tokio::test]
async fn a_stopped_service_ends_at_once_and_answers_no_more() {
    let (addr, counters, service) = start(TimeSettings::default(), true).await;
    query(&addr, 1).await.unwrap();
    let (done, stopped) = std::sync::mpsc::channel();
    let stopping = std::thread::spawn(move || {
        service.stop();
        let _ = done.send(());
    });
    stopped
        .recv_timeout(Duration::from_secs(10))
        .expect("stop returned");
    stopping.join().unwrap();
    let err = query(&addr, 1).await.unwrap_err();
    assert!(err.to_string().contains("no NTP server answers"), "{err}");
    assert_eq!(counters.answered.load(Ordering::Relaxed), 1);
}
