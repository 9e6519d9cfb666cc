//! Fixed ports for servers that go away and come back (a killed hub, a receiver in an
//! outage).
//!
//! While nothing listens on a loopback port inside the kernel's ephemeral range, a client
//! connecting to it can be handed that very port as its own source port and connect to
//! itself (TCP simultaneous open). The self-connected socket then holds the port and the
//! server cannot bind it again. So a server that restarts on the same port gets one below
//! the ephemeral range.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};

use anyhow::Context as _;
use rand::Rng as _;

const RANGE_FILE: &str = "/proc/sys/net/ipv4/ip_local_port_range";
/// Lowest port considered: below it live well-known services.
const LOWEST: u16 = 10_000;

/// The kernel's ephemeral port range; Linux's default if unknown.
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string(RANGE_FILE)
        .ok()
        .and_then(|s| parse_range(&s))
        .unwrap_or((32_768, 60_999))
}

fn parse_range(s: &str) -> Option<(u16, u16)> {
    let mut it = s.split_whitespace().map(str::parse::<u16>);
    let lo = it.next()?.ok()?;
    let hi = it.next()?.ok()?;
    (lo <= hi).then_some((lo, hi))
}

/// The ports a restartable server may use: below the ephemeral range if there is room,
/// else above it.
fn candidates((lo, hi): (u16, u16)) -> Option<(u16, u16)> {
    if lo > LOWEST.saturating_add(100) {
        Some((LOWEST, lo - 1))
    } else if hi < u16::MAX - 100 {
        Some((hi + 1, u16::MAX))
    } else {
        None
    }
}

/// A free loopback address outside the ephemeral port range (free when checked).
pub fn stable_loopback() -> anyhow::Result<SocketAddr> {
    let (from, to) = candidates(ephemeral_range())
        .context("the ephemeral port range leaves no room for a fixed port")?;
    let mut rng = rand::rng();
    for _ in 0..500 {
        let port = rng.random_range(from..=to);
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        if TcpListener::bind(addr).is_ok() {
            return Ok(addr);
        }
    }
    anyhow::bail!("no free port found between {from} and {to}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_outside_the_ephemeral_range() {
        assert_eq!(parse_range("32768\t60999\n"), Some((32_768, 60_999)));
        assert_eq!(parse_range("x"), None);
        assert_eq!(candidates((32_768, 60_999)), Some((10_000, 32_767)));
        assert_eq!(candidates((1_024, 40_000)), Some((40_001, 65_535)));
        assert_eq!(candidates((1_024, 65_535)), None);
        let a = stable_loopback().unwrap();
        let (lo, hi) = ephemeral_range();
        assert!(a.port() < lo || a.port() > hi);
    }
}
