//! Load on a chat server: ours (QUIC), an IRC server (PRIVMSG between the same pairs), or
//! a raw UDP datagram from one socket to another (the physical limit), with one generator.
//! PAIRS pairs of clients; each sender keeps at most WINDOW messages in flight (closed loop)
//! or, with `--rate`, sends at its share of RATE messages a second (open loop). Prints
//! messages delivered a second and the end-to-end latency (send to receipt) at p50/p99.
//!
//! Usage:
//!   chat_load ftprep TCP_ADDR CHAT_ADDR [--pairs N] [--secs S] [--window W] [--rate R]
//!   chat_load irc ADDR [same options]
//!   chat_load udp [same options]
//!   chat_load idle TCP_ADDR CHAT_ADDR --clients M --users U   (connects M idle clients,
//!     prints "ready", and holds them until stdin closes)
//! Users are b0, b1, ... with the password "pw" (`ftpd adduser` them first).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ftprep::chat::ChatEvent;
use ftprep::client::chat::ChatClient;
use ftprep::client::{Client, KnownHosts, Security, UnknownServer};
use ftprep::username::Username;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::Semaphore;

struct Options {
    pairs: usize,
    secs: f64,
    window: usize,
    rate: Option<f64>,
    clients: usize,
    users: usize,
}

fn options(args: &[String]) -> anyhow::Result<Options> {
    let mut o = Options {
        pairs: 16,
        secs: 5.0,
        window: 4,
        rate: None,
        clients: 1000,
        users: 100,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().context("a value after each option")?;
        match flag.as_str() {
            "--pairs" => o.pairs = value.parse()?,
            "--secs" => o.secs = value.parse()?,
            "--window" => o.window = value.parse()?,
            "--rate" => o.rate = Some(value.parse()?),
            "--clients" => o.clients = value.parse()?,
            "--users" => o.users = value.parse()?,
            other => bail!("unknown option {other}"),
        }
    }
    Ok(o)
}

/// Messages one sender has posted and not yet seen stored, at most.
const MAX_POSTED: usize = 64;

/// What every pair shares: the clock the latencies are measured on, and the end.
#[derive(Clone)]
struct Run {
    base: Instant,
    until: Instant,
    window: usize,
    /// Seconds between one sender's messages, open loop.
    interval: Option<Duration>,
    /// Where in each interval this sender's ticks fall (its share of it), open loop.
    phase: u64,
}

impl Run {
    fn stamp(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }
    fn latency(&self, stamp: &str) -> Option<Duration> {
        let sent: u64 = stamp.trim().parse().ok()?;
        Some(Duration::from_nanos(self.stamp().saturating_sub(sent)))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args
        .first()
        .context("usage: chat_load ftprep|irc|udp|idle ...")?;
    let (targets, rest): (Vec<&String>, Vec<String>) = {
        let n = match mode.as_str() {
            "ftprep" | "idle" => 2,
            "irc" => 1,
            _ => 0,
        };
        (args[1..=n].iter().collect(), args[n + 1..].to_vec())
    };
    let o = options(&rest)?;
    if mode == "idle" {
        return idle(targets[0], targets[1], &o).await;
    }
    let run = Run {
        base: Instant::now(),
        until: Instant::now() + Duration::from_secs_f64(o.secs) + Duration::from_secs(30),
        window: o.window,
        interval: o
            .rate
            .map(|rate| Duration::from_secs_f64(o.pairs as f64 / rate)),
        phase: 0,
    };
    let mut pairs = Vec::new();
    for i in 0..o.pairs {
        let (a, b) = (format!("b{}", 2 * i), format!("b{}", 2 * i + 1));
        pairs.push(match mode.as_str() {
            "ftprep" => Pair::Ftprep(
                Box::new(chat_client(targets[0], targets[1], &a).await?),
                Box::new(chat_client(targets[0], targets[1], &b).await?),
            ),
            "irc" => Pair::Irc(
                irc_client(targets[0], &a).await?,
                irc_client(targets[0], &b).await?,
            ),
            "udp" => {
                let a = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
                let b = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
                a.connect(b.local_addr()?).await?;
                Pair::Udp(a, b)
            }
            other => bail!("unknown mode {other}"),
        });
    }
    if let Some(Pair::Ftprep(..)) = pairs.first() {
        for pair in &mut pairs {
            if let Pair::Ftprep(a, b) = pair {
                let b_name = b.user().to_string();
                let a_name = a.user().to_string();
                a.add(&b_name).await?;
                b.add(&a_name).await?;
            }
        }
    }
    // Everyone connected and introduced: the clock starts now.
    let started = Instant::now();
    let run = Run {
        until: started + Duration::from_secs_f64(o.secs),
        ..run
    };
    let mut tasks = Vec::new();
    let count = pairs.len() as u64;
    for (i, pair) in pairs.into_iter().enumerate() {
        let step = run.interval.map_or(0, |d| d.as_nanos() as u64);
        let run = Run {
            phase: step * i as u64 / count.max(1),
            ..run.clone()
        };
        tasks.push(tokio::spawn(pair.drive(run)));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    let elapsed = started.elapsed().as_secs_f64().min(o.secs).max(1e-9);
    latencies.sort();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * q).round() as usize)
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    println!(
        "{:.0} messages/s, p50 {:.3} ms, p99 {:.3} ms ({} messages)",
        latencies.len() as f64 / elapsed,
        at(0.50),
        at(0.99),
        latencies.len()
    );
    Ok(())
}

enum Pair {
    Ftprep(Box<ChatClient>, Box<ChatClient>),
    Irc(IrcClient, IrcClient),
    Udp(tokio::net::UdpSocket, tokio::net::UdpSocket),
}

impl Pair {
    /// Sends from the first to the second until the run ends; the latencies seen.
    async fn drive(self, run: Run) -> anyhow::Result<Vec<Duration>> {
        let permits = Arc::new(Semaphore::new(if run.interval.is_some() {
            Semaphore::MAX_PERMITS / 2
        } else {
            run.window
        }));
        match self {
            Pair::Ftprep(mut a, mut b) => {
                let to = b.user().to_string();
                let sender = {
                    let (run, permits) = (run.clone(), Arc::clone(&permits));
                    tokio::spawn(async move {
                        // Messages are posted without waiting for each to be stored (the
                        // client keeps up to MAX_POSTED in flight), their outcomes read as
                        // they come.
                        loop {
                            tokio::select! {
                                go = pace(&run, &permits), if a.in_flight() < MAX_POSTED => {
                                    if !go {
                                        break;
                                    }
                                    a.post(&to, &run.stamp().to_string()).await?;
                                }
                                stored = a.stored(), if a.in_flight() > 0 => {
                                    stored?;
                                }
                            }
                        }
                        while a.in_flight() > 0 {
                            a.stored().await?;
                        }
                        (*a).close().await;
                        anyhow::Ok(())
                    })
                };
                let mut latencies = Vec::new();
                let mut unacked = 0;
                while Instant::now() < run.until {
                    let event =
                        match tokio::time::timeout_at(run.until.into(), b.next_event()).await {
                            Ok(event) => event?,
                            Err(_) => break,
                        };
                    if let Some(ChatEvent::Message(message)) = event {
                        latencies.extend(run.latency(&message.text));
                        permits.add_permits(1);
                        unacked += 1;
                        if unacked >= 16 {
                            b.ack(message.id).await?;
                            unacked = 0;
                        }
                    }
                }
                permits.close();
                sender.await??;
                (*b).close().await;
                Ok(latencies)
            }
            Pair::Irc(mut a, mut b) => {
                let to = b.nick.clone();
                let sender = {
                    let (run, permits) = (run.clone(), Arc::clone(&permits));
                    tokio::spawn(async move {
                        while pace(&run, &permits).await {
                            let line = format!("PRIVMSG {to} :{}\r\n", run.stamp());
                            a.writer.write_all(line.as_bytes()).await?;
                        }
                        anyhow::Ok(())
                    })
                };
                let mut latencies = Vec::new();
                let mut line = String::new();
                while Instant::now() < run.until {
                    line.clear();
                    let read =
                        tokio::time::timeout_at(run.until.into(), b.reader.read_line(&mut line));
                    match read.await {
                        Ok(Ok(0)) => bail!("the IRC server closed the connection"),
                        Ok(read) => {
                            read?;
                        }
                        Err(_) => break,
                    }
                    if line.starts_with("PING") {
                        let pong = line.replacen("PING", "PONG", 1);
                        b.writer.write_all(pong.as_bytes()).await?;
                    } else if line.contains(" PRIVMSG ")
                        && let Some((_, text)) = line[1..].split_once(" :")
                    {
                        latencies.extend(run.latency(text));
                        permits.add_permits(1);
                    }
                }
                permits.close();
                sender.await??;
                Ok(latencies)
            }
            Pair::Udp(a, b) => {
                let sender = {
                    let (run, permits) = (run.clone(), Arc::clone(&permits));
                    tokio::spawn(async move {
                        while pace(&run, &permits).await {
                            a.send(run.stamp().to_string().as_bytes()).await?;
                        }
                        anyhow::Ok(())
                    })
                };
                let mut latencies = Vec::new();
                let mut buf = [0u8; 64];
                while Instant::now() < run.until {
                    match tokio::time::timeout_at(run.until.into(), b.recv(&mut buf)).await {
                        Ok(len) => {
                            let len = len?;
                            latencies.extend(run.latency(&String::from_utf8_lossy(&buf[..len])));
                            permits.add_permits(1);
                        }
                        Err(_) => break,
                    }
                }
                permits.close();
                sender.await??;
                Ok(latencies)
            }
        }
    }
}

/// Waits for the sender's next turn: a free place in the window (closed loop) or its next
/// tick (open loop). False when the run is over.
async fn pace(run: &Run, permits: &Semaphore) -> bool {
    if Instant::now() >= run.until {
        return false;
    }
    match run.interval {
        Some(interval) => {
            // Each sender ticks at its own point of the interval (its phase), so the
            // senders do not all send at once and the load is even.
            let now = run.stamp();
            let step = interval.as_nanos().max(1) as u64;
            let next = (now.saturating_sub(run.phase) / step + 1) * step + run.phase;
            tokio::time::sleep(Duration::from_nanos(next - now)).await;
            Instant::now() < run.until
        }
        None => match tokio::time::timeout_at(run.until.into(), permits.acquire()).await {
            Ok(Ok(permit)) => {
                permit.forget();
                true
            }
            _ => false,
        },
    }
}

fn security() -> anyhow::Result<Security> {
    let dir = std::env::temp_dir().join(format!("chat_load-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(Security::Pinned {
        known_hosts: KnownHosts::at(dir.join("known_hosts")),
        unknown: UnknownServer::AcceptNew,
    })
}

async fn keys(tcp: &str, name: &str) -> anyhow::Result<ftprep::auth::ClientKeys> {
    let mut client = Client::connect(tcp, &security()?).await?;
    let keys = client
        .login_with_password(&Username::parse(name)?, "pw")
        .await?;
    let _ = client.close().await;
    Ok(keys)
}

/// A connected client with an empty inbox: what an earlier run left undelivered is taken
/// and acknowledged now, so it is neither timed nor counted (nor widens the window).
async fn chat_client(tcp: &str, chat: &str, name: &str) -> anyhow::Result<ChatClient> {
    let keys = keys(tcp, name).await?;
    let mut client =
        ChatClient::connect(chat, &security()?, &Username::parse(name)?, &keys).await?;
    if let Some(last) = client.inbox(Duration::ZERO).await?.messages.last() {
        client.ack(last.id).await?;
    }
    Ok(client)
}

struct IrcClient {
    nick: String,
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
}

async fn irc_client(addr: &str, nick: &str) -> anyhow::Result<IrcClient> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (read, mut writer) = stream.into_split();
    writer
        .write_all(format!("NICK {nick}\r\nUSER {nick} 0 * :{nick}\r\n").as_bytes())
        .await?;
    let mut reader = BufReader::new(read);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            bail!("the IRC server closed the connection during registration");
        }
        if line.starts_with("PING") {
            writer
                .write_all(line.replacen("PING", "PONG", 1).as_bytes())
                .await?;
        }
        if line.split_whitespace().nth(1) == Some("001") {
            break;
        }
    }
    Ok(IrcClient {
        nick: nick.to_owned(),
        reader,
        writer,
    })
}

/// M idle chat clients as U users, held until standard input closes.
async fn idle(tcp: &str, chat: &str, o: &Options) -> anyhow::Result<()> {
    let mut keys_of = Vec::new();
    for u in 0..o.users {
        let name = format!("b{u}");
        keys_of.push((Username::parse(&name)?, keys(tcp, &name).await?));
    }
    let security = security()?;
    let mut clients = Vec::new();
    for i in 0..o.clients {
        let (user, keys) = &keys_of[i % keys_of.len()];
        clients.push(ChatClient::connect(chat, &security, user, keys).await?);
    }
    println!("ready {}", clients.len());
    let mut line = String::new();
    let _ = BufReader::new(tokio::io::stdin())
        .read_line(&mut line)
        .await;
    Ok(())
}
