//! Opens N logged-in sessions to a server (with the cached login of `ftpc login`) and holds
//! them until standard input closes, so `scripts/bench.sh` can read the server's memory.
//!
//! Usage: `cargo run --release --example idle_sessions -- N`; prints "ready N" when all are
//! open.

use std::io::Read;

use ftprep::client::{Client, CredentialStore, KnownHosts, UnknownServer};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let count: usize = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "10000".into())
        .parse()?;
    let login = CredentialStore::default_location()?
        .find(None)?
        .ok_or_else(|| anyhow::anyhow!("run ftpc login first"))?;
    let security = login
        .transport
        .security(KnownHosts::default_location()?, UnknownServer::Refuse);
    let mut sessions = Vec::with_capacity(count);
    // 100 logins in flight at a time.
    while sessions.len() < count {
        let batch = (count - sessions.len()).min(100);
        let mut pending = tokio::task::JoinSet::new();
        for _ in 0..batch {
            let (login, security) = (login.clone(), security.clone());
            pending.spawn(async move {
                let mut client = Client::connect(&login.server, &security).await?;
                client.login_with_keys(&login.user, &login.keys).await?;
                anyhow::Ok(client)
            });
        }
        while let Some(client) = pending.join_next().await {
            sessions.push(client??);
        }
        if sessions.len() % 1000 == 0 {
            eprintln!("idle_sessions: {} open", sessions.len());
        }
    }
    println!("ready {}", sessions.len());
    // Hold them until told to stop.
    let mut sink = Vec::new();
    tokio::task::spawn_blocking(move || std::io::stdin().read_to_end(&mut sink)).await??;
    drop(sessions);
    Ok(())
}
