//! `ftpc time` against the time service of `ftpd`.

use super::*;

/// `ftpc time` against the time service of a running `ftpd serve`: by default the host of
/// the most recent login; `--json`; a closed port is an error (exit 4) that says so.
#[test]
fn ftpc_time_asks_the_servers_time_service() {
    let sb = Sandbox::new();
    sb.adduser("alice", "pw");
    let server = RunningServer::start_with(
        &sb,
        &[
            "--listen",
            "127.0.0.1:0",
            "--time-listen",
            "127.0.0.1:0",
            "--time-local-stratum",
            "6",
        ],
    );
    let time_addr = server.time_address();
    let out = sb.ftpc(&["time", &time_addr], "");
    assert_success(&out);
    let line = text(&out.stdout);
    assert!(
        line.contains("stratum 6, reference LOCL, leap none"),
        "{line}"
    );
    let out = sb.ftpc(&["time", &time_addr, "--json", "-n", "2"], "");
    assert_success(&out);
    let report: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    assert!(report["offset"].as_f64().unwrap().abs() < 0.001, "{report}");
    assert_eq!(report["stratum"], 6);
    assert_eq!(report["samples"], 2);
    // Nothing listens: exit 4, in words.
    let closed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let out = sb.ftpc(&["time", &format!("127.0.0.1:{port}"), "-n", "1"], "");
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("no NTP server answers"),
        "{}",
        text(&out.stderr)
    );
    // Issue 28: several servers, a line each in the order given (the failure in its place,
    // on stderr); -v adds the server's root delay, dispersion and reference time.
    let closed = format!("127.0.0.1:{port}");
    let out = sb.ftpc(
        &["time", "-v", "-n", "1", &time_addr, &closed, &time_addr],
        "",
    );
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    let lines: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    for line in &lines {
        assert!(line.starts_with(&format!("{time_addr}: offset")), "{line}");
        assert!(
            line.contains("root delay 0.000000 s, root dispersion")
                && line.contains("reference time 20"),
            "{line}"
        );
    }
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("time {closed}: no NTP server answers")),
        "{stderr}"
    );
    assert!(
        stderr.contains("1 of 3 servers gave no usable time"),
        "{stderr}"
    );
}

/// ftpd's time service on a loopback port of its own, its clock told synchronised or not;
/// its address, and the service (it stops when dropped).
fn time_service(synchronised: bool) -> (String, ftprep::server::time::TimeService) {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap().to_string();
    let service = ftprep::server::time::TimeServer::with_clock(
        socket,
        ftprep::server::time::TimeSettings::default(),
        std::sync::Arc::new(move || ftprep::server::time::ClockStatus {
            synchronised,
            estimated_error: Duration::ZERO,
            maximum_error: Duration::ZERO,
        }),
    )
    .start()
    .unwrap();
    (addr, service)
}

/// `ftpc time --watch` polls, a line each, until Ctrl-C, which ends it with success, also while a poll is waiting for a reply that does not come (a press then was
/// lost, and the watch went on).
#[test]
fn ctrl_c_ends_ftpc_time_watch_cleanly() {
    let sb = Sandbox::new();
    // A server that answers: ours, on its own thread.
    let (ours, service) = time_service(true);
    let mut term = Terminal::spawn(&sb, &["time", &ours, "-n", "1", "--watch", "8"]);
    wait_until("a poll", || term.screen().contains("stratum 3"));
    term.type_keys("\x03");
    let screen = term.screen();
    let status = term.exit_status();
    assert!(status.success(), "{status:?}: {screen}");
    assert!(
        service
            .counters()
            .answered
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );

    // A server that never answers: Ctrl-C while the poll waits (4 samples, 2 s each).
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    let mut term = Terminal::spawn(&sb, &["time", &silent_addr, "--watch", "60"]);
    let mut buf = [0u8; 64];
    silent
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    silent.recv_from(&mut buf).expect("the first request");
    let pressed = Instant::now();
    term.type_keys("\x03");
    let screen = term.screen();
    let status = term.exit_status();
    assert!(status.success(), "{status:?}: {screen}");
    assert!(
        pressed.elapsed() < ftprep::client::time::SAMPLE_TIMEOUT,
        "it waited for the poll to time out: {:?}",
        pressed.elapsed()
    );
}

/// Issue 28: on a host whose clock is not synchronised, `ftpc time` failed with no word of
/// what to do; `--watch 1` tripped the server's rate limit. The refusal names the admin's
/// option; `--watch` under 8 s and `-n 0` are refused as usage errors; a `RATE` kiss makes
/// the watch twice as slow, and says so.
#[test]
fn ftpc_time_says_what_to_do_and_never_polls_faster_than_allowed() {
    let sb = Sandbox::new();
    // An ftpd on a host it is told is unsynchronised: leap indicator 3.
    let (addr, _service) = time_service(false);
    let out = sb.ftpc(&["time", &addr, "-n", "1"], "");
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("ftpd serve --time-local-stratum"),
        "{}",
        text(&out.stderr)
    );
    for args in [
        ["--watch", "0.5"],
        ["--watch", "7.9"],
        ["-n", "0"],
        ["-n", "9"],
    ] {
        let out = sb.ftpc(&["time", &addr, args[0], args[1]], "");
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }

    // A server that answers only with Kiss-o'-Death RATE.
    let kisser = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let kisser_addr = kisser.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let mut buf = [0u8; 128];
        while let Ok((len, from)) = kisser.recv_from(&mut buf) {
            let Ok(request) = ftprep::ntp::Packet::decode(&buf[..len]) else {
                continue;
            };
            let kiss = ftprep::ntp::Packet {
                version: 4,
                mode: ftprep::ntp::MODE_SERVER,
                stratum: 0,
                reference_id: *b"RATE",
                origin: request.transmit,
                ..Default::default()
            };
            let _ = kisser.send_to(&kiss.encode(), from);
        }
    });
    let mut term = Terminal::spawn(&sb, &["time", &kisser_addr, "--watch", "8"]);
    term.wait_for("asking every 16 s now");
    term.type_keys("\x03");
    let screen = term.screen();
    let status = term.exit_status();
    assert!(status.success(), "{status:?}: {screen}");
    assert!(screen.contains("Kiss-o'-Death RATE"), "{screen}");
}
