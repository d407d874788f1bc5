//! The limit for the object-store back-end: a file copied straight into (`put`) or out of
//! (`get`) an S3 server with `object_store`, the client library ftpd uses, with its own
//! multipart writer (parts uploaded concurrently). Settings from the `AWS_*` variables.
//!
//! `cargo run --release --example s3_copy -- put FILE s3://BUCKET/KEY`
//! `cargo run --release --example s3_copy -- get s3://BUCKET/KEY FILE`

use std::time::Instant;

use anyhow::{Context, bail};
use futures_util::StreamExt;
use object_store::ObjectStoreExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{WriteMultipart, path::Path as KeyPath};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Bytes read from the file per write into the multipart writer.
const READ_SIZE: usize = 1 << 20;

fn store_and_key(url: &str) -> anyhow::Result<(AmazonS3, Path)> {
    let rest = url
        .strip_prefix("s3://")
        .context("expected s3://BUCKET/KEY")?;
    let (bucket, key) = rest.split_once('/').context("expected s3://BUCKET/KEY")?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let store = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .build()?;
    Ok((store, KeyPath::from(key)))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let started = Instant::now();
    let bytes = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["put", file, url] => {
            let (store, key) = store_and_key(url)?;
            let mut source = tokio::fs::File::open(file).await?;
            let mut upload = WriteMultipart::new(store.put_multipart(&key).await?);
            let mut buffer = vec![0; READ_SIZE];
            let mut total = 0u64;
            loop {
                let n = source.read(&mut buffer).await?;
                if n == 0 {
                    break;
                }
                upload.wait_for_capacity(8).await?;
                upload.write(&buffer[..n]);
                total += n as u64;
            }
            upload.finish().await?;
            total
        }
        ["get", url, file] => {
            let (store, key) = store_and_key(url)?;
            let mut body = store.get(&key).await?.into_stream();
            let mut target = tokio::fs::File::create(file).await?;
            let mut total = 0u64;
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                total += chunk.len() as u64;
                target.write_all(&chunk).await?;
            }
            target.flush().await?;
            total
        }
        _ => bail!("usage: s3_copy put FILE s3://BUCKET/KEY | get s3://BUCKET/KEY FILE"),
    };
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{bytes} bytes in {seconds:.3} s: {:.0} MB/s",
        bytes as f64 / seconds / 1e6
    );
    Ok(())
}
