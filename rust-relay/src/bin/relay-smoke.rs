//! relay-smoke: checks a running holepunch relay end to end.
//!
//! For each relay address (given with `--relay`, else read from Redis keys RELAY_TCP_ADDRESS and
//! RELAY_QUIC_ADDRESS at `--redis` / $REDIS_ADDR), and for each of `--rounds` rounds, with fresh
//! identities: a "listener" connects to the relay and reserves (listens on `<relay>/p2p-circuit`),
//! a "dialer" dials `<relay>/p2p-circuit/p2p/<listener>` and pings the listener over the circuit.
//! Prints one line per round, exits 0 when all passed, 1 otherwise.
//!
//! With `--hold`: reserve on the first relay address and keep the reservation until stopped.
//!
//! usage: relay-smoke [--redis HOST:PORT] [--relay MULTIADDR]... [--rounds N] [--timeout SECS] [--hold]

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use holepunch_relay::node::{reserve_and_hold, smoke_round};
use holepunch_relay::{redis, KEY_QUIC, KEY_TCP};
use libp2p::Multiaddr;

struct Args {
    redis: Option<String>,
    relays: Vec<Multiaddr>,
    rounds: u32,
    timeout: Duration,
    hold: bool,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        redis: std::env::var("REDIS_ADDR").ok(),
        relays: vec![],
        rounds: 1,
        timeout: Duration::from_secs(20),
        hold: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or_else(|| anyhow!("{flag} needs a value"));
        match flag.as_str() {
            "--redis" => a.redis = Some(val()?),
            "--relay" => a.relays.push(val()?.parse().context("--relay")?),
            "--rounds" => a.rounds = val()?.parse().context("--rounds")?,
            "--hold" => a.hold = true,
            "--timeout" => a.timeout = Duration::from_secs(val()?.parse().context("--timeout")?),
            "-h" | "--help" => {
                println!("usage: relay-smoke [--redis HOST:PORT] [--relay MULTIADDR]... [--rounds N] [--timeout SECS] [--hold]");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}"),
        }
    }
    Ok(a)
}

async fn main_async(args: Args) -> Result<bool> {
    let mut relays = args.relays;
    if relays.is_empty() {
        let redis_addr = args.redis.ok_or_else(|| anyhow!("give --relay or --redis / REDIS_ADDR"))?;
        let mut c = redis::Client::connect_with_deadline(&redis_addr, Duration::from_secs(10)).await?;
        for key in [KEY_TCP, KEY_QUIC] {
            let v = c.get(key).await?.ok_or_else(|| anyhow!("redis has no {key}"))?;
            println!("{key} = {v}");
            relays.push(v.parse().with_context(|| format!("{key} = {v:?}"))?);
        }
    }
    if args.hold {
        reserve_and_hold(&relays[0]).await?;
    }
    let mut all_ok = true;
    for relay_addr in &relays {
        for i in 1..=args.rounds {
            match smoke_round(relay_addr, args.timeout).await {
                Ok(msg) => println!("ok   {relay_addr} round {i}: {msg}"),
                Err(e) => {
                    all_ok = false;
                    println!("FAIL {relay_addr} round {i}: {e:#}");
                }
            }
        }
    }
    Ok(all_ok)
}

fn main() -> ExitCode {
    // RELAY_SMOKE_LOG (not RUST_LOG, which the relay image sets to info) picks the log level.
    let filter = tracing_subscriber::EnvFilter::try_from_env("RELAY_SMOKE_LOG").unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_ansi(false).with_env_filter(filter).init();
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("relay-smoke: {e:#}");
            return ExitCode::from(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    match rt.block_on(main_async(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("relay-smoke: {e:#}");
            ExitCode::FAILURE
        }
    }
}
