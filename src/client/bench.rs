//! The load generator behind `ftpc bench`: N concurrent clients for a while, each looping
//! over connect + login (with the cached keys, as every `ftpc` command does) and a mix of
//! commands, timing every step. Every error is counted and reported, none hidden.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::transfer::{NoProgress, TransferOptions};
use super::{Client, SavedLogin, Security};
use crate::error::Result;

/// What each client does after logging in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Mix {
    /// mkdir, ls, rmdir.
    #[default]
    Commands,
    /// put and get of a small file, then rm.
    Transfer,
}

/// How hard and how long to push.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Concurrent clients.
    pub clients: usize,
    /// How long to run.
    pub duration: Duration,
    /// What to do per iteration.
    pub mix: Mix,
    /// Size of the file the transfer mix moves.
    pub file_size: usize,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            clients: 64,
            duration: Duration::from_secs(10),
            mix: Mix::Commands,
            file_size: 64 * 1024,
        }
    }
}

/// Latency figures of one kind of step.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Latency {
    /// How many were timed.
    pub count: usize,
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Slowest.
    pub max: Duration,
}

impl Latency {
    fn of(mut samples: Vec<Duration>) -> Self {
        if samples.is_empty() {
            return Latency::default();
        }
        samples.sort_unstable();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        Latency {
            count: samples.len(),
            p50: at(0.50),
            p99: at(0.99),
            max: samples[samples.len() - 1],
        }
    }
}

/// What a run measured.
#[derive(Debug, Clone, Default)]
pub struct BenchReport {
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Connect + hello + login, each.
    pub logins: Latency,
    /// Each command after login.
    pub commands: Latency,
    /// Errors by message, with how often each happened.
    pub errors: BTreeMap<String, u64>,
    /// Logins whose TLS handshake resumed an earlier session.
    pub resumed: u64,
}

impl BenchReport {
    /// Logins per second.
    pub fn logins_per_sec(&self) -> f64 {
        self.logins.count as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    /// Commands per second.
    pub fn commands_per_sec(&self) -> f64 {
        self.commands.count as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    /// All errors.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// Counters the caller can read while the run goes on (for a progress line).
#[derive(Debug, Default)]
pub struct LiveCounts {
    /// Logins so far.
    pub logins: AtomicU64,
    /// Commands so far.
    pub commands: AtomicU64,
    /// Errors so far.
    pub errors: AtomicU64,
}

#[derive(Default)]
struct ClientLog {
    logins: Vec<Duration>,
    commands: Vec<Duration>,
    errors: BTreeMap<String, u64>,
    resumed: u64,
}

impl ClientLog {
    fn error(&mut self, live: &LiveCounts, err: impl std::fmt::Display) {
        *self.errors.entry(err.to_string()).or_default() += 1;
        live.errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// Runs the load: every client uses `login`'s server, user and cached keys.
///
/// # Errors
/// Only if the transfer mix cannot write its local file; everything that goes wrong with the
/// server is counted in the report.
pub async fn run(
    login: &SavedLogin,
    security: &Security,
    options: &BenchOptions,
    live: Arc<LiveCounts>,
) -> Result<BenchReport> {
    let scratch = tempfile::tempdir()?;
    let payload = scratch.path().join("payload");
    std::fs::write(&payload, vec![0x5a; options.file_size])?;
    let started = Instant::now();
    let deadline = started + options.duration;
    let tasks: Vec<_> = (0..options.clients.max(1))
        .map(|id| {
            let (login, security, live) = (login.clone(), security.clone(), Arc::clone(&live));
            let (mix, payload) = (options.mix, payload.clone());
            tokio::spawn(async move {
                client_loop(id, login, security, mix, payload, deadline, live).await
            })
        })
        .collect();
    let mut total = ClientLog::default();
    for task in tasks {
        match task.await {
            Ok(log) => {
                total.logins.extend(log.logins);
                total.commands.extend(log.commands);
                total.resumed += log.resumed;
                for (message, count) in log.errors {
                    *total.errors.entry(message).or_default() += count;
                }
            }
            Err(err) => {
                *total
                    .errors
                    .entry(format!("client task failed: {err}"))
                    .or_default() += 1
            }
        }
    }
    Ok(BenchReport {
        elapsed: started.elapsed(),
        logins: Latency::of(total.logins),
        commands: Latency::of(total.commands),
        errors: total.errors,
        resumed: total.resumed,
    })
}

async fn client_loop(
    id: usize,
    login: SavedLogin,
    security: Security,
    mix: Mix,
    payload: PathBuf,
    deadline: Instant,
    live: Arc<LiveCounts>,
) -> ClientLog {
    let mut log = ClientLog::default();
    let mut round = 0u64;
    while Instant::now() < deadline {
        round += 1;
        let started = Instant::now();
        let connected = async {
            let mut client = Client::connect(&login.server, &security).await?;
            client.login_with_keys(&login.user, &login.keys).await?;
            Ok::<_, crate::Error>(client)
        }
        .await;
        let mut client = match connected {
            Ok(client) => client,
            Err(err) => {
                log.error(&live, err);
                // Do not spin on a refusing server.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        log.logins.push(started.elapsed());
        log.resumed += u64::from(client.is_resumed());
        live.logins.fetch_add(1, Ordering::Relaxed);
        let name = format!("bench-{}-{id}-{round}", std::process::id());
        let steps: Vec<Step> = match mix {
            Mix::Commands => vec![Step::Mkdir, Step::List, Step::Rmdir],
            Mix::Transfer => vec![Step::Put, Step::Get, Step::Remove],
        };
        for step in steps {
            let started = Instant::now();
            let result = match step {
                Step::Mkdir => client.mkdir(&name, false).await,
                Step::List => client.list("").await.map(drop),
                Step::Rmdir => client.rmdir(&name).await,
                Step::Put => client
                    .put_file(&payload, &name, TransferOptions::default(), &NoProgress)
                    .await
                    .map(drop),
                Step::Get => {
                    let target = payload.with_file_name(&name);
                    let got = client
                        .get_file(&name, &target, TransferOptions::default(), &NoProgress)
                        .await
                        .map(drop);
                    let _ = std::fs::remove_file(&target);
                    got
                }
                Step::Remove => client.remove(&name, false).await,
            };
            match result {
                Ok(()) => {
                    log.commands.push(started.elapsed());
                    live.commands.fetch_add(1, Ordering::Relaxed);
                }
                Err(err) => log.error(&live, err),
            }
        }
        if let Err(err) = client.close().await {
            log.error(&live, err);
        }
    }
    log
}

#[derive(Debug, Clone, Copy)]
enum Step {
    Mkdir,
    List,
    Rmdir,
    Put,
    Get,
    Remove,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let samples: Vec<_> = (1..=100).map(Duration::from_millis).collect();
        let latency = Latency::of(samples);
        assert_eq!(latency.count, 100);
        assert_eq!(latency.p50, Duration::from_millis(51));
        assert_eq!(latency.p99, Duration::from_millis(99));
        assert_eq!(latency.max, Duration::from_millis(100));
        assert_eq!(Latency::of(Vec::new()), Latency::default());
    }
}
