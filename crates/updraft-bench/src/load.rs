//! A minimal HTTP/1.1 keep-alive client over a plain TCP stream (no pooling, no TLS, no
//! allocation per request beyond the path), and an open-loop load generator on top of it: wrk
//! measures peak throughput, this measures latency at a fixed rate below the peak.

use std::io;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One keep-alive connection.
pub struct Conn {
    stream: TcpStream,
    /// Received bytes live in `buf[pos..end]`; the buffer is allocated (and zeroed) once.
    buf: Box<[u8]>,
    pos: usize,
    end: usize,
    req: Vec<u8>,
}

/// What a response was, without its body.
#[derive(Debug, Clone, Copy)]
pub struct Answer {
    pub status: u16,
    pub body_len: usize,
}

const BUF: usize = 64 * 1024;

impl Conn {
    pub async fn connect(addr: &str) -> io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn { stream, buf: vec![0; BUF].into_boxed_slice(), pos: 0, end: 0, req: Vec::with_capacity(512) })
    }

    /// Sends `GET path` and reads the whole answer (bodies are counted, not kept).
    pub async fn get(&mut self, path: &str) -> io::Result<Answer> {
        self.req.clear();
        self.req.extend_from_slice(b"GET ");
        self.req.extend_from_slice(path.as_bytes());
        self.req.extend_from_slice(b" HTTP/1.1\r\nHost: bench\r\n\r\n");
        self.stream.write_all(&self.req).await?;
        self.read_answer().await
    }

    async fn read_answer(&mut self) -> io::Result<Answer> {
        let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
        let head_len = loop {
            if let Some(i) = find_head_end(&self.buf[self.pos..self.end]) {
                break i;
            }
            if self.pos == 0 && self.end == BUF {
                return Err(bad("response head larger than the buffer"));
            }
            if self.fill().await? == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed before a response"));
            }
        };
        let head = &self.buf[self.pos..self.pos + head_len];
        // "HTTP/1.1 200 ..."
        let status = head.get(9..12).and_then(parse_u64).ok_or_else(|| bad("bad status line"))? as u16;
        let mut len = None;
        for line in head.split(|&b| b == b'\n').skip(1) {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
            let (name, value) = (&line[..colon], trim(&line[colon + 1..]));
            if name.eq_ignore_ascii_case(b"content-length") {
                len = Some(parse_u64(value).ok_or_else(|| bad("bad content-length"))? as usize);
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                return Err(bad("chunked answers are not supported by this client"));
            }
        }
        let body_len = match (len, status) {
            (Some(n), _) => n,
            (None, 204 | 304) => 0,
            (None, _) => return Err(bad("answer without content-length")),
        };
        // Consume the head and body, discarding body bytes as they arrive.
        let mut need = head_len + body_len;
        loop {
            let have = self.end - self.pos;
            if have >= need {
                self.pos += need;
                return Ok(Answer { status, body_len });
            }
            need -= have;
            self.pos = 0;
            self.end = 0;
            if self.fill().await? == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed in a body"));
            }
        }
    }

    /// Reads more bytes after `end`, first moving unread bytes to the front when needed.
    async fn fill(&mut self) -> io::Result<usize> {
        if self.pos == self.end {
            self.pos = 0;
            self.end = 0;
        } else if self.end == BUF {
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
        }
        let n = self.stream.read(&mut self.buf[self.end..]).await?;
        self.end += n;
        Ok(n)
    }
}

/// Length of the response head including its blank line, if it is complete.
fn find_head_end(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i + 3 < b.len() {
        if b[i + 3] == b'\n' && b[i + 2] == b'\r' && b[i + 1] == b'\n' && b[i] == b'\r' {
            return Some(i + 4);
        }
        i += 1;
    }
    None
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|c| !c.is_ascii_whitespace()).unwrap_or(b.len());
    let end = b.iter().rposition(|c| !c.is_ascii_whitespace()).map_or(start, |e| e + 1);
    &b[start..end]
}

fn parse_u64(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 19 {
        return None;
    }
    b.iter().try_fold(0u64, |n, &c| c.is_ascii_digit().then(|| n * 10 + u64::from(c - b'0')))
}

#[derive(Args, Clone)]
pub struct LoadArgs {
    /// host:port
    #[arg(long)]
    pub addr: String,
    /// Path and query; `&client=ID` is appended with a distinct id per request.
    #[arg(long)]
    pub path: String,
    /// Requests per second, spread evenly over the connections.
    #[arg(long)]
    pub rate: f64,
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
}

/// Latency summary of an open-loop run. Latency is from the moment a request is written to
/// the end of its answer.
#[derive(Debug, Clone)]
pub struct LoadResult {
    pub target_rate: f64,
    pub achieved_rate: f64,
    pub requests: usize,
    pub errors: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl LoadResult {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "target_rate": self.target_rate, "achieved_rate": self.achieved_rate, "requests": self.requests,
            "errors": self.errors, "p50_ms": self.p50_ms, "p90_ms": self.p90_ms, "p99_ms": self.p99_ms,
            "p999_ms": self.p999_ms, "max_ms": self.max_ms,
        })
    }
}

pub fn main(args: LoadArgs) -> anyhow::Result<()> {
    let result = open_loop(&args)?;
    println!("{}", result.to_json());
    Ok(())
}

/// Sends `rate` requests per second for `seconds`, each connection on its own schedule, on
/// one thread (the caller pins it to a core of its own).
pub fn open_loop(args: &LoadArgs) -> anyhow::Result<LoadResult> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let mut conns = Vec::new();
        for _ in 0..args.connections {
            conns.push(Conn::connect(&args.addr).await.with_context(|| format!("cannot connect to {}", args.addr))?);
        }
        let interval = Duration::from_secs_f64(args.connections as f64 / args.rate);
        let t0 = tokio::time::Instant::now() + Duration::from_millis(20);
        let end = t0 + Duration::from_secs_f64(args.seconds);
        let mut tasks = Vec::new();
        for (i, mut conn) in conns.into_iter().enumerate() {
            let path = args.path.clone();
            let first = t0 + interval.mul_f64(i as f64 / args.connections as f64);
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut errors = 0usize;
                let mut url = String::with_capacity(path.len() + 32);
                for k in 0u64.. {
                    let at = first + interval * u32::try_from(k).unwrap_or(u32::MAX);
                    if at >= end {
                        break;
                    }
                    tokio::time::sleep_until(at).await;
                    url.clear();
                    url.push_str(&path);
                    url.push_str(&format!("&client=L{i}x{k}"));
                    let sent = Instant::now();
                    match conn.get(&url).await {
                        Ok(a) if a.status < 400 => lat.push(sent.elapsed()),
                        Ok(_) => errors += 1,
                        Err(_) => {
                            errors += 1;
                            break;
                        }
                    }
                }
                (lat, errors)
            }));
        }
        let started = Instant::now();
        let mut all = Vec::new();
        let mut errors = 0;
        for t in tasks {
            let (lat, e) = t.await?;
            all.extend(lat);
            errors += e;
        }
        let elapsed = started.elapsed().as_secs_f64().max(args.seconds);
        all.sort_unstable();
        let pct = |p: f64| -> f64 {
            if all.is_empty() {
                return f64::NAN;
            }
            let i = ((p / 100.0) * (all.len() - 1) as f64).round() as usize;
            all[i].as_secs_f64() * 1000.0
        };
        Ok(LoadResult {
            target_rate: args.rate,
            achieved_rate: all.len() as f64 / elapsed,
            requests: all.len(),
            errors,
            p50_ms: pct(50.0),
            p90_ms: pct(90.0),
            p99_ms: pct(99.0),
            p999_ms: pct(99.9),
            max_ms: all.last().map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0),
        })
    })
}
