//! The physical limit for a transfer on this machine: the same bytes read from a file, sent
//! over a plain TCP connection on loopback and written to a file (fsync at the end), with
//! buffers the size of ftprep's data chunks. `scripts/bench.sh` runs it beside `ftpc put`/`get`.
//!
//! Usage: `cargo run --release --example tcp_copy -- SOURCE DESTINATION`; prints seconds.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

use ftprep::commands::MAX_CHUNK;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(source), Some(destination)) = (args.next(), args.next()) else {
        eprintln!("usage: tcp_copy SOURCE DESTINATION");
        std::process::exit(2);
    };
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let started = Instant::now();
    let receiver = std::thread::spawn(move || -> std::io::Result<u64> {
        let (mut socket, _) = listener.accept()?;
        let mut out = std::fs::File::create(destination)?;
        let mut buf = vec![0u8; MAX_CHUNK];
        let mut total = 0u64;
        loop {
            let n = socket.read(&mut buf)?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n])?;
            total += n as u64;
        }
        out.sync_all()?;
        Ok(total)
    });
    let mut socket = TcpStream::connect(addr)?;
    let mut input = std::fs::File::open(source)?;
    let mut buf = vec![0u8; MAX_CHUNK];
    loop {
        let n = input.read(&mut buf)?;
        if n == 0 {
            break;
        }
        socket.write_all(&buf[..n])?;
    }
    drop(socket);
    let total = receiver
        .join()
        .map_err(|_| std::io::Error::other("receiver panicked"))??;
    let secs = started.elapsed().as_secs_f64();
    println!("{secs:.3}");
    eprintln!("tcp_copy: {total} bytes in {secs:.3} s");
    Ok(())
}
