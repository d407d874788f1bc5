//! The time service against a real peer: chrony (`scripts/test.sh` installs Debian's package and
//! never starts its service). `chronyd -Q` asks our server and prints the offset without
//! touching the clock; a throw-away `chronyd -x` (never controls the clock) serves a
//! `local stratum` on a loopback port for our client.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ftprep::client::time::query;
use ftprep::server::time::{ClockStatus, TimeServer, TimeSettings};

/// chronyd, from `PATH` or where Debian puts it.
fn chronyd() -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("chronyd"))
        .find(|candidate| candidate.is_file());
    found.expect("chronyd is not installed: apt-get install chrony (scripts/test.sh does)")
}

#[tokio::test]
async fn chronyd_accepts_our_server_within_a_millisecond() {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    // This machine's clock may be unsynchronised: serve it as a local stratum, as an admin
    // of an isolated lab would.
    let settings = TimeSettings {
        local_stratum: Some(5),
        ..TimeSettings::default()
    };
    let unsynchronised = Arc::new(|| ClockStatus {
        synchronised: false,
        estimated_error: Duration::ZERO,
        maximum_error: Duration::ZERO,
    });
    let server = TimeServer::with_clock(socket, settings, unsynchronised);
    let service = server.start().unwrap();
    let output = tokio::process::Command::new(chronyd())
        .args(["-Q", "-t", "20", "-f", "/dev/null", "-u", "root"])
        .arg(format!("server 127.0.0.1 port {port} iburst maxsamples 4"))
        .output()
        .await
        .unwrap();
    service.stop();
    let log = String::from_utf8_lossy(&output.stderr).into_owned()
        + &String::from_utf8_lossy(&output.stdout);
    let offset: f64 = log
        .split("System clock wrong by ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("chronyd reported no offset: {log}"));
    assert!(offset.abs() < 0.001, "{log}");
}

#[tokio::test]
async fn our_client_reads_a_chronyd_within_a_millisecond() {
    // A free loopback port for chronyd.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("chrony.conf");
    std::fs::write(
        &conf,
        format!(
            "local stratum 8\nallow 127.0.0.1\nport {port}\ncmdport 0\npidfile {}\n",
            dir.path().join("chronyd.pid").display()
        ),
    )
    .unwrap();
    let mut chrony = tokio::process::Command::new(chronyd())
        .args(["-x", "-d", "-u", "root", "-f"])
        .arg(&conf)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Ready when it answers: until then the port is closed and the query fails at once.
    let addr = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let report = loop {
        match query(&addr, 4).await {
            Ok(report) => break report,
            Err(err) => assert!(Instant::now() < deadline, "chronyd never answered: {err}"),
        }
    };
    let _ = chrony.kill().await;
    assert_eq!(report.stratum, 8, "{report}");
    assert!(report.offset.abs() < 0.001, "{report}");
}
