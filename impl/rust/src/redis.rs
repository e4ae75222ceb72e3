//! The two Redis commands the client needs (BLPOP, RPUSH), spoken in RESP over one TCP connection.

use anyhow::{anyhow, bail, Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::Instant;

pub struct Conn {
    stream: BufReader<TcpStream>,
}

enum Reply {
    Simple(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Conn {
    pub async fn connect(addr: &str) -> Result<Self> {
        // Redis may come up after us: retry until the caller's deadline.
        loop {
            match TcpStream::connect(addr).await {
                Ok(s) => {
                    s.set_nodelay(true).ok();
                    return Ok(Self { stream: BufReader::new(s) });
                }
                Err(e) => {
                    tracing::warn!(%addr, "Redis not reachable yet: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
            }
        }
    }

    /// BLPOP `key`, waiting at most until `deadline`; returns the popped value.
    pub async fn blpop(&mut self, key: &str, deadline: Instant) -> Result<String> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now()).as_secs();
            if left == 0 {
                bail!("timed out (BLPOP {key})");
            }
            // BLPOP's timeout 0 means forever: always give at least one second.
            match self.command(&["BLPOP", key, &left.max(1).to_string()]).await? {
                Reply::Array(Some(items)) if items.len() == 2 => match &items[1] {
                    Reply::Bulk(Some(v)) => return String::from_utf8(v.clone()).context("BLPOP value is not UTF-8"),
                    _ => bail!("unexpected BLPOP reply"),
                },
                Reply::Array(None) | Reply::Bulk(None) => continue, // timed out on the server side
                _ => bail!("unexpected BLPOP reply"),
            }
        }
    }

    /// RPUSH `value` onto `key`; returns the new length of the list.
    pub async fn rpush(&mut self, key: &str, value: &str) -> Result<i64> {
        match self.command(&["RPUSH", key, value]).await? {
            Reply::Integer(n) => Ok(n),
            _ => bail!("unexpected RPUSH reply"),
        }
    }

    async fn command(&mut self, args: &[&str]) -> Result<Reply> {
        let mut buf = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            buf.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            buf.extend_from_slice(a.as_bytes());
            buf.extend_from_slice(b"\r\n");
        }
        self.stream.get_mut().write_all(&buf).await.context("write to Redis")?;
        match self.reply().await? {
            Reply::Simple(s) if s.starts_with('-') => Err(anyhow!("Redis error: {}", &s[1..])),
            r => Ok(r),
        }
    }

    async fn line(&mut self) -> Result<String> {
        let mut line = String::new();
        if self.stream.read_line(&mut line).await.context("read from Redis")? == 0 {
            bail!("Redis closed the connection");
        }
        Ok(line.trim_end_matches(['\r', '\n']).to_string())
    }

    fn reply(&mut self) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Reply>> + '_>> {
        Box::pin(async move {
            let line = self.line().await?;
            let (kind, rest) = line.split_at(line.len().min(1));
            Ok(match kind {
                "+" => Reply::Simple(rest.to_string()),
                "-" => Reply::Simple(line.clone()),
                ":" => Reply::Integer(rest.parse().context("bad Redis integer")?),
                "$" => {
                    let n: i64 = rest.parse().context("bad Redis bulk length")?;
                    if n < 0 {
                        Reply::Bulk(None)
                    } else {
                        let mut v = vec![0u8; n as usize + 2];
                        self.stream.read_exact(&mut v).await.context("read from Redis")?;
                        v.truncate(n as usize);
                        Reply::Bulk(Some(v))
                    }
                }
                "*" => {
                    let n: i64 = rest.parse().context("bad Redis array length")?;
                    if n < 0 {
                        Reply::Array(None)
                    } else {
                        let mut items = Vec::with_capacity(n as usize);
                        for _ in 0..n {
                            items.push(self.reply().await?);
                        }
                        Reply::Array(Some(items))
                    }
                }
                _ => bail!("unexpected Redis reply {line:?}"),
            })
        })
    }
}
