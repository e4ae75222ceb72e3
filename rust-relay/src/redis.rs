//! A minimal Redis client: enough RESP2 for SET / GET / DEL / PING (the relay publishes two keys
//! once at start-up; pulling in a full Redis crate is not worth its build time).

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A reply from Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The reply as text (simple strings and bulk strings); `None` for a nil bulk string.
    pub fn text(&self) -> Result<Option<String>> {
        match self {
            Reply::Simple(s) => Ok(Some(s.clone())),
            Reply::Bulk(None) => Ok(None),
            Reply::Bulk(Some(b)) => Ok(Some(String::from_utf8(b.clone()).context("reply is not UTF-8")?)),
            Reply::Error(e) => bail!("redis error: {e}"),
            other => bail!("unexpected reply {other:?}"),
        }
    }
}

/// Encodes a command as a RESP array of bulk strings.
pub fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R) -> Result<String> {
    let mut line = Vec::new();
    let n = r.read_until(b'\n', &mut line).await?;
    if n == 0 {
        bail!("redis closed the connection");
    }
    if !line.ends_with(b"\r\n") {
        bail!("malformed reply line {:?}", String::from_utf8_lossy(&line));
    }
    line.truncate(line.len() - 2);
    String::from_utf8(line).context("reply line is not UTF-8")
}

async fn read_bulk<R: AsyncBufRead + Unpin>(r: &mut R, len: i64) -> Result<Option<Vec<u8>>> {
    if len < 0 {
        return Ok(None);
    }
    let mut buf = vec![0u8; len as usize + 2];
    r.read_exact(&mut buf).await?;
    if !buf.ends_with(b"\r\n") {
        bail!("bulk string without CRLF");
    }
    buf.truncate(len as usize);
    Ok(Some(buf))
}

/// Reads one reply. Arrays may hold scalars (one level deep), which is all BLPOP/LRANGE give.
pub async fn read_reply<R: AsyncBufRead + Unpin>(r: &mut R) -> Result<Reply> {
    let line = read_line(r).await?;
    let (kind, rest) = line.split_at(1.min(line.len()));
    let num = || rest.parse::<i64>().with_context(|| format!("bad length/integer {rest:?}"));
    Ok(match kind {
        "+" => Reply::Simple(rest.to_string()),
        "-" => Reply::Error(rest.to_string()),
        ":" => Reply::Int(num()?),
        "$" => Reply::Bulk(read_bulk(r, num()?).await?),
        "*" => {
            let n = num()?;
            if n < 0 {
                Reply::Array(None)
            } else {
                let mut items = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    let l = read_line(r).await?;
                    let (k, v) = l.split_at(1.min(l.len()));
                    let v_num = || v.parse::<i64>().with_context(|| format!("bad length/integer {v:?}"));
                    items.push(match k {
                        "+" => Reply::Simple(v.to_string()),
                        "-" => Reply::Error(v.to_string()),
                        ":" => Reply::Int(v_num()?),
                        "$" => Reply::Bulk(read_bulk(r, v_num()?).await?),
                        _ => bail!("unsupported nested reply {l:?}"),
                    });
                }
                Reply::Array(Some(items))
            }
        }
        _ => bail!("unknown reply type {line:?}"),
    })
}

/// One connection to Redis.
pub struct Client {
    stream: BufReader<TcpStream>,
}

impl Client {
    pub async fn connect(host_port: &str) -> Result<Client> {
        let addrs = crate::resolve(host_port).await?;
        let stream =
            TcpStream::connect(&addrs[..]).await.with_context(|| format!("connecting to redis at {host_port}"))?;
        stream.set_nodelay(true).ok();
        Ok(Client { stream: BufReader::new(stream) })
    }

    /// Connects, retrying every 250 ms until `deadline` has passed since the first try.
    pub async fn connect_with_deadline(host_port: &str, deadline: Duration) -> Result<Client> {
        let start = Instant::now();
        let mut last_err;
        loop {
            match Client::connect(host_port).await {
                Ok(mut c) => match c.command(&["PING"]).await {
                    Ok(Reply::Simple(_)) => return Ok(c),
                    Ok(other) => last_err = anyhow!("PING answered {other:?}"),
                    Err(e) => last_err = e,
                },
                Err(e) => last_err = e,
            }
            if start.elapsed() >= deadline {
                return Err(last_err.context(format!("redis at {host_port} not reachable within {deadline:?}")));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    pub async fn command(&mut self, args: &[&str]) -> Result<Reply> {
        let raw: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.stream.get_mut().write_all(&encode(&raw)).await?;
        read_reply(&mut self.stream).await
    }

    pub async fn set(&mut self, key: &str, value: &str) -> Result<()> {
        match self.command(&["SET", key, value]).await? {
            Reply::Simple(s) if s == "OK" => Ok(()),
            other => bail!("SET {key} answered {other:?}"),
        }
    }

    pub async fn get(&mut self, key: &str) -> Result<Option<String>> {
        self.command(&["GET", key]).await?.text()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(bytes: &[u8]) -> Result<Reply> {
        let mut r = BufReader::new(bytes);
        read_reply(&mut r).await
    }

    #[test]
    fn encodes_commands() {
        assert_eq!(
            encode(&[b"SET", b"k", b"/ip4/1.2.3.4"]),
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$12\r\n/ip4/1.2.3.4\r\n".to_vec()
        );
    }

    #[tokio::test]
    async fn parses_replies() {
        assert_eq!(parse(b"+OK\r\n").await.unwrap(), Reply::Simple("OK".into()));
        assert_eq!(parse(b"-ERR no\r\n").await.unwrap(), Reply::Error("ERR no".into()));
        assert_eq!(parse(b":42\r\n").await.unwrap(), Reply::Int(42));
        assert_eq!(parse(b"$-1\r\n").await.unwrap(), Reply::Bulk(None));
        assert_eq!(parse(b"$5\r\na\r\nbc\r\n").await.unwrap(), Reply::Bulk(Some(b"a\r\nbc".to_vec())));
        assert_eq!(
            parse(b"*2\r\n$1\r\nk\r\n$1\r\nv\r\n").await.unwrap(),
            Reply::Array(Some(vec![Reply::Bulk(Some(b"k".to_vec())), Reply::Bulk(Some(b"v".to_vec()))]))
        );
        assert_eq!(parse(b"*-1\r\n").await.unwrap(), Reply::Array(None));
        assert!(parse(b"+OK").await.is_err());
        assert!(parse(b"").await.is_err());
        assert!(parse(b"?x\r\n").await.is_err());
    }

    /// A fake Redis on loopback: answers PING and SET, and records what was set.
    #[tokio::test]
    async fn client_talks_to_a_server() {
        use tokio::net::TcpListener;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(async move {
            let (sock, _) = listener.accept().await.unwrap();
            let mut r = BufReader::new(sock);
            let mut seen = Vec::new();
            loop {
                let n = match read_reply(&mut r).await {
                    Ok(Reply::Array(Some(items))) => items,
                    _ => break,
                };
                let words: Vec<String> = n.iter().map(|i| i.text().unwrap().unwrap()).collect();
                let answer: &[u8] = match words[0].as_str() {
                    "PING" => b"+PONG\r\n",
                    "SET" => b"+OK\r\n",
                    _ => b"-ERR unknown\r\n",
                };
                seen.push(words);
                r.get_mut().write_all(answer).await.unwrap();
            }
            seen
        });
        let mut c = Client::connect_with_deadline(&addr, Duration::from_secs(5)).await.unwrap();
        c.set("RELAY_TCP_ADDRESS", "/ip4/11.11.0.3/tcp/4001").await.unwrap();
        assert!(c.get("x").await.is_err());
        drop(c);
        let seen = server.await.unwrap();
        assert_eq!(seen[1], vec!["SET", "RELAY_TCP_ADDRESS", "/ip4/11.11.0.3/tcp/4001"]);
    }

    #[tokio::test]
    async fn connect_gives_up_at_the_deadline() {
        // Port 1 on loopback: connection refused at once, so this returns after ~the deadline.
        let t = Instant::now();
        let r = Client::connect_with_deadline("127.0.0.1:1", Duration::from_millis(600)).await;
        assert!(r.is_err());
        assert!(t.elapsed() >= Duration::from_millis(600) && t.elapsed() < Duration::from_secs(5));
    }
}
