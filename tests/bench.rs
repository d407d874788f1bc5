//! The load generator against a real TLS server: it logs in over and over with cached keys,
//! runs its command mix, counts everything and leaves nothing behind.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{TestServer, names_in};
use ftprep::client::bench::{self, BenchOptions, LiveCounts, Mix};
use ftprep::client::{SavedLogin, Transport};
use ftprep::username::Username;

async fn saved_login(server: &TestServer) -> SavedLogin {
    let keys = server.try_login("alice", "pw").await.unwrap();
    SavedLogin {
        server: server.addr.to_string(),
        user: Username::parse("alice").unwrap(),
        keys,
        transport: Transport::Tls,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_generator_measures_without_errors_and_cleans_up() {
    let server = TestServer::start_tls(&[("alice", "pw")]).await;
    let login = saved_login(&server).await;
    for mix in [Mix::Commands, Mix::Transfer] {
        let options = BenchOptions {
            clients: 4,
            duration: Duration::from_millis(500),
            mix,
            file_size: 10_000,
        };
        let live = Arc::new(LiveCounts::default());
        let report = bench::run(&login, &server.security, &options, Arc::clone(&live))
            .await
            .unwrap();
        assert_eq!(report.error_count(), 0, "{:?}", report.errors);
        assert!(report.logins.count >= 4, "{report:?}");
        assert_eq!(report.commands.count % 3, 0, "three steps per login");
        assert!(report.commands.count >= report.logins.count * 3 - 3 * 4);
        assert!(report.logins.p50 <= report.logins.p99 && report.logins.p99 <= report.logins.max);
        assert!(report.logins_per_sec() > 0.0);
        assert_eq!(
            live.logins.load(std::sync::atomic::Ordering::Relaxed),
            report.logins.count as u64
        );
    }
    assert!(names_in(&server.root.join("alice")).is_empty());
}

#[tokio::test]
async fn the_load_generator_reports_every_error() {
    // One session per user allowed: concurrent clients are refused, and the report says so.
    let mut limits = common::fast_limits();
    limits.max_sessions_per_user = 1;
    let server = TestServer::start_with(&[("alice", "pw")], limits).await;
    let login = saved_login(&server).await;
    let options = BenchOptions {
        clients: 3,
        duration: Duration::from_millis(300),
        ..BenchOptions::default()
    };
    let report = bench::run(&login, &server.security, &options, Arc::default())
        .await
        .unwrap();
    assert!(report.error_count() > 0);
    assert!(
        report.errors.keys().any(|e| e.contains("sessions open")),
        "{:?}",
        report.errors
    );
}
