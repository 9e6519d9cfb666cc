//! The egress (SSRF) guard's rules, shared by `ferry validate` and the delivery side.
//!
//! [`forbidden`] classifies an address: public addresses pass; loopback, private,
//! link-local, CGNAT, cloud-metadata, multicast and reserved ranges (IPv4 and IPv6) are
//! refused. IPv6 forms that carry an IPv4 address (IPv4-mapped, NAT64, 6to4) are judged by
//! that IPv4 address. An [`EgressPolicy`] adds the operator's allow-list: an address is
//! allowed when it is public, inside an allowed network, or the URL's host is an allowed
//! host name.
//!
//! The delivery side enforces the policy on the *resolved* addresses at connect time (so
//! DNS rebinding cannot slip past it); `ferry validate` uses [`EgressPolicy::static_refusal`]
//! to catch URLs whose host is an address literal or `localhost` before the hub starts.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use crate::resilience::EgressAllow;

/// Why an address is refused: the range it falls in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Range {
    /// `0.0.0.0/8`, `::`: "this network", the unspecified address.
    Unspecified,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// `10.0.0.0/8`, `172.16.0.0/12`, `192.168.0.0/16`.
    Private,
    /// `100.64.0.0/10`: carrier-grade NAT shared space.
    Cgnat,
    /// `169.254.0.0/16`, `fe80::/10`.
    LinkLocal,
    /// The instance metadata services of the big clouds: `169.254.169.254` (AWS, GCP,
    /// Azure, OCI...), `169.254.170.2` and `169.254.170.23` (AWS ECS / EKS credentials),
    /// `100.100.100.200` (Alibaba), `fd00:ec2::254` (AWS IPv6).
    CloudMetadata,
    /// `192.0.0.0/24`: IETF protocol assignments.
    IetfProtocol,
    /// `192.0.2.0/24`, `198.51.100.0/24`, `203.0.113.0/24`, `2001:db8::/32`, `3fff::/20`.
    Documentation,
    /// `198.18.0.0/15`, `2001:2::/48`: benchmarking networks.
    Benchmarking,
    /// `224.0.0.0/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// `240.0.0.0/4`, `192.88.99.0/24` (old 6to4 relays), `100::/64` (discard),
    /// `64:ff9b:1::/48` (local-use NAT64), `2001:10::/28` and `2001:20::/28` (ORCHID),
    /// deprecated IPv4-compatible `::a.b.c.d`, and all IPv6 space outside `2000::/3` that
    /// no rule above names.
    Reserved,
    /// `fc00::/7`: unique local addresses (IPv6's private networks).
    UniqueLocal,
    /// `fec0::/10`: deprecated site-local addresses.
    SiteLocal,
    /// `2001::/32`: Teredo tunnels (the real destination is hidden in the address).
    Teredo,
}

impl Range {
    /// A short human description, e.g. `private network`.
    pub fn describe(self) -> &'static str {
        match self {
            Range::Unspecified => "unspecified address",
            Range::Loopback => "loopback",
            Range::Private => "private network",
            Range::Cgnat => "carrier-grade NAT",
            Range::LinkLocal => "link-local",
            Range::CloudMetadata => "cloud metadata service",
            Range::IetfProtocol => "IETF protocol assignments",
            Range::Documentation => "documentation range",
            Range::Benchmarking => "benchmarking network",
            Range::Multicast => "multicast",
            Range::Broadcast => "broadcast",
            Range::Reserved => "reserved range",
            Range::UniqueLocal => "IPv6 unique local",
            Range::SiteLocal => "IPv6 site-local",
            Range::Teredo => "Teredo tunnel",
        }
    }
}

/// How an IPv6 address carries the IPv4 address it was judged by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Embedding {
    /// `::ffff:a.b.c.d`.
    Ipv4Mapped,
    /// `64:ff9b::a.b.c.d` (well-known NAT64 prefix).
    Nat64,
    /// `2002:aabb:ccdd::/48` (6to4).
    SixToFour,
}

/// A refused address's classification: its range and, for IPv6 addresses judged by an
/// embedded IPv4 address, how it was embedded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Forbidden {
    /// The range that refuses the address.
    pub range: Range,
    /// Set when an IPv6 address was judged by the IPv4 address inside it.
    pub via: Option<(Embedding, Ipv4Addr)>,
}

impl fmt::Display for Forbidden {
    /// `private network`, or `loopback via IPv4-mapped 127.0.0.1`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.range.describe())?;
        match self.via {
            None => Ok(()),
            Some((how, v4)) => {
                let how = match how {
                    Embedding::Ipv4Mapped => "IPv4-mapped",
                    Embedding::Nat64 => "NAT64",
                    Embedding::SixToFour => "6to4",
                };
                write!(f, " via {how} {v4}")
            }
        }
    }
}

/// IPv4 rules, most specific first: `(network, prefix length, range)`.
const V4_RULES: &[([u8; 4], u8, Range)] = &[
    ([169, 254, 169, 254], 32, Range::CloudMetadata),
    ([169, 254, 170, 2], 32, Range::CloudMetadata),
    ([169, 254, 170, 23], 32, Range::CloudMetadata),
    ([100, 100, 100, 200], 32, Range::CloudMetadata),
    ([255, 255, 255, 255], 32, Range::Broadcast),
    ([0, 0, 0, 0], 8, Range::Unspecified),
    ([10, 0, 0, 0], 8, Range::Private),
    ([100, 64, 0, 0], 10, Range::Cgnat),
    ([127, 0, 0, 0], 8, Range::Loopback),
    ([169, 254, 0, 0], 16, Range::LinkLocal),
    ([172, 16, 0, 0], 12, Range::Private),
    ([192, 0, 0, 0], 24, Range::IetfProtocol),
    ([192, 0, 2, 0], 24, Range::Documentation),
    ([192, 88, 99, 0], 24, Range::Reserved),
    ([192, 168, 0, 0], 16, Range::Private),
    ([198, 18, 0, 0], 15, Range::Benchmarking),
    ([198, 51, 100, 0], 24, Range::Documentation),
    ([203, 0, 113, 0], 24, Range::Documentation),
    ([224, 0, 0, 0], 4, Range::Multicast),
    ([240, 0, 0, 0], 4, Range::Reserved),
];

/// IPv6 rules that are not judged by an embedded IPv4 address, most specific first.
/// Space outside `2000::/3` that none of these name is [`Range::Reserved`].
const V6_RULES: &[(u128, u8, Range)] = &[
    (
        0xfd00_0ec2_0000_0000_0000_0000_0000_0254,
        128,
        Range::CloudMetadata,
    ),
    (0, 128, Range::Unspecified),
    (1, 128, Range::Loopback),
    (
        0x0064_ff9b_0001_0000_0000_0000_0000_0000,
        48,
        Range::Reserved,
    ),
    (
        0x0100_0000_0000_0000_0000_0000_0000_0000,
        64,
        Range::Reserved,
    ),
    (0x2001_0000_0000_0000_0000_0000_0000_0000, 32, Range::Teredo),
    (
        0x2001_0002_0000_0000_0000_0000_0000_0000,
        48,
        Range::Benchmarking,
    ),
    (
        0x2001_0010_0000_0000_0000_0000_0000_0000,
        28,
        Range::Reserved,
    ),
    (
        0x2001_0020_0000_0000_0000_0000_0000_0000,
        28,
        Range::Reserved,
    ),
    (
        0x2001_0db8_0000_0000_0000_0000_0000_0000,
        32,
        Range::Documentation,
    ),
    (
        0x3fff_0000_0000_0000_0000_0000_0000_0000,
        20,
        Range::Documentation,
    ),
    (
        0xfc00_0000_0000_0000_0000_0000_0000_0000,
        7,
        Range::UniqueLocal,
    ),
    (
        0xfe80_0000_0000_0000_0000_0000_0000_0000,
        10,
        Range::LinkLocal,
    ),
    (
        0xfec0_0000_0000_0000_0000_0000_0000_0000,
        10,
        Range::SiteLocal,
    ),
    (
        0xff00_0000_0000_0000_0000_0000_0000_0000,
        8,
        Range::Multicast,
    ),
];

const fn mask32(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    }
}

const fn mask128(prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - prefix)
    }
}

fn in_v6(bits: u128, net: u128, prefix: u8) -> bool {
    bits & mask128(prefix) == net
}

/// The range that refuses `ip`, or `None` when `ip` is a public address.
pub fn forbidden(ip: IpAddr) -> Option<Forbidden> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4).map(|range| Forbidden { range, via: None }),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<Range> {
    let bits = u32::from(ip);
    V4_RULES
        .iter()
        .find(|(net, prefix, _)| bits & mask32(*prefix) == u32::from_be_bytes(*net))
        .map(|(_, _, range)| *range)
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<Forbidden> {
    let bits = u128::from(ip);
    let embedded = |how: Embedding, v4: u32| {
        let v4 = Ipv4Addr::from(v4);
        forbidden_v4(v4).map(|range| Forbidden {
            range,
            via: Some((how, v4)),
        })
    };
    // Forms that reach an IPv4 address: judged by that address.
    if in_v6(bits, 0xffff_0000_0000, 96) {
        return embedded(Embedding::Ipv4Mapped, bits as u32);
    }
    if in_v6(bits, 0x0064_ff9b_0000_0000_0000_0000_0000_0000, 96) {
        return embedded(Embedding::Nat64, bits as u32);
    }
    if in_v6(bits, 0x2002_0000_0000_0000_0000_0000_0000_0000, 16) {
        return embedded(Embedding::SixToFour, (bits >> 80) as u32);
    }
    if let Some((_, _, range)) = V6_RULES
        .iter()
        .find(|(net, prefix, _)| in_v6(bits, *net, *prefix))
    {
        return Some(Forbidden {
            range: *range,
            via: None,
        });
    }
    // Deprecated IPv4-compatible `::a.b.c.d` (:: and ::1 are matched above), and anything
    // outside global unicast 2000::/3.
    if in_v6(bits, 0, 96) || !in_v6(bits, 0x2000_0000_0000_0000_0000_0000_0000_0000, 3) {
        return Some(Forbidden {
            range: Range::Reserved,
            via: None,
        });
    }
    None
}

/// The operator's exceptions to the guard: networks and host names that may be called even
/// though they are not public. The default policy allows nothing but public addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    networks: Vec<IpNet>,
    hosts: Vec<String>,
}

impl EgressPolicy {
    /// The strict policy: public addresses only.
    pub fn new() -> Self {
        Self::default()
    }

    /// A policy from allow-list entries as written in the config (`10.0.0.0/8`, `::1`,
    /// `hooks.internal.example`). Fails on the first entry that does not parse.
    pub fn from_entries<I, S>(entries: I) -> Result<Self, String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut policy = Self::new();
        for entry in entries {
            policy.allow(entry.as_ref().parse()?);
        }
        Ok(policy)
    }

    /// Add one allow-list entry.
    pub fn allow(&mut self, entry: EgressAllow) {
        match entry {
            EgressAllow::Network(net) => {
                if !self.networks.contains(&net) {
                    self.networks.push(net);
                }
            }
            EgressAllow::Host(host) => {
                let host = normalize_host(&host);
                if !self.hosts.contains(&host) {
                    self.hosts.push(host);
                }
            }
        }
    }

    /// This policy with `entry` added.
    pub fn allowing(mut self, entry: EgressAllow) -> Self {
        self.allow(entry);
        self
    }

    /// This policy plus every entry of `other`.
    pub fn merged(mut self, other: &EgressPolicy) -> Self {
        for net in &other.networks {
            self.allow(EgressAllow::Network(*net));
        }
        for host in &other.hosts {
            self.allow(EgressAllow::Host(host.clone()));
        }
        self
    }

    /// The allowed networks.
    pub fn networks(&self) -> &[IpNet] {
        &self.networks
    }

    /// The allowed host names (lower-case, without a trailing dot).
    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }

    /// Whether the host name `host` (any case, trailing dot or not) is allow-listed.
    pub fn host_allowed(&self, host: &str) -> bool {
        self.hosts.contains(&normalize_host(host))
    }

    /// Whether `ip` is inside an allowed network. An IPv4-mapped IPv6 address also matches
    /// the networks of the IPv4 address it maps.
    pub fn network_allowed(&self, ip: IpAddr) -> bool {
        let canonical = ip.to_canonical();
        self.networks
            .iter()
            .any(|net| net.contains(&ip) || net.contains(&canonical))
    }

    /// Judge a connection to `ip` for a URL whose host is `host` (a name, or `None` for an
    /// address literal): `None` when allowed, else the range that refuses it.
    pub fn refuses(&self, host: Option<&str>, ip: IpAddr) -> Option<Forbidden> {
        let rule = forbidden(ip)?;
        if self.network_allowed(ip) || host.is_some_and(|h| self.host_allowed(h)) {
            None
        } else {
            Some(rule)
        }
    }

    /// Judge a URL host that is an address literal (`10.0.0.5`, `[::1]`, in any form the
    /// URL parser accepts): `Err` when it is refused. Host names pass: they are judged when
    /// resolved.
    pub fn check_literal(&self, url: &url::Url) -> Result<(), EgressRefused> {
        let ip = match url.host() {
            Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
            Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
            _ => return Ok(()),
        };
        match self.refuses(None, ip) {
            None => Ok(()),
            Some(rule) => Err(EgressRefused::literal(ip, rule)),
        }
    }

    /// What can be told without DNS: an address-literal host, or `localhost` /
    /// `*.localhost` (always loopback, RFC 6761), that this policy refuses. `Ok` for URLs
    /// that do not parse or whose host must be resolved to be judged.
    pub fn static_refusal(&self, raw_url: &str) -> Result<(), EgressRefused> {
        let Ok(url) = url::Url::parse(raw_url) else {
            return Ok(());
        };
        self.check_literal(&url)?;
        let Some(url::Host::Domain(host)) = url.host() else {
            return Ok(());
        };
        let name = normalize_host(host);
        if name == "localhost" || name.ends_with(".localhost") {
            let loopback = [
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(Ipv6Addr::LOCALHOST),
            ];
            let refused: Vec<(IpAddr, Forbidden)> = loopback
                .iter()
                .filter_map(|ip| self.refuses(Some(&name), *ip).map(|rule| (*ip, rule)))
                .collect();
            if refused.len() == loopback.len() {
                return Err(EgressRefused::resolved(&name, refused));
            }
        }
        Ok(())
    }
}

/// Lower-case, without the trailing dot of a fully qualified name.
fn normalize_host(host: &str) -> String {
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

/// The most refused addresses an [`EgressRefused`] message lists.
const MAX_LISTED: usize = 4;

/// A refused outbound call: the host and every address that was refused, with the rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EgressRefused {
    /// The URL's host (a name, or the address literal).
    pub host: String,
    /// Whether the host was an address literal rather than a name.
    pub literal: bool,
    /// Each refused address and why.
    pub refused: Vec<(IpAddr, Forbidden)>,
}

impl EgressRefused {
    /// A refused address-literal host.
    pub fn literal(ip: IpAddr, rule: Forbidden) -> Self {
        Self {
            host: ip.to_string(),
            literal: true,
            refused: vec![(ip, rule)],
        }
    }

    /// A host name whose addresses were all refused.
    pub fn resolved(host: &str, refused: Vec<(IpAddr, Forbidden)>) -> Self {
        Self {
            host: host.to_string(),
            literal: false,
            refused,
        }
    }

    /// An allow-list entry that would admit the first refused address: the host name, or
    /// the address itself.
    pub fn suggestion(&self) -> String {
        if !self.literal {
            return self.host.clone();
        }
        match self.refused.first() {
            Some((ip, _)) => ip.to_string(),
            None => self.host.clone(),
        }
    }
}

impl fmt::Display for EgressRefused {
    /// `destination host `x` resolves only to 10.0.0.5 (private network); allow it with
    /// `egress_allow``, or for a literal `destination address 10.0.0.5 is refused (private
    /// network); ...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |f: &mut fmt::Formatter<'_>| -> fmt::Result {
            for (i, (ip, rule)) in self.refused.iter().take(MAX_LISTED).enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{ip} ({rule})")?;
            }
            if self.refused.len() > MAX_LISTED {
                write!(f, " and {} more", self.refused.len() - MAX_LISTED)?;
            }
            Ok(())
        };
        if self.literal {
            write!(f, "destination address ")?;
            list(f)?;
            write!(f, " is not public")?;
        } else {
            write!(f, "destination host `{}` resolves only to ", self.host)?;
            list(f)?;
        }
        f.write_str("; allow it with `egress_allow`")
    }
}

impl std::error::Error for EgressRefused {}

#[cfg(test)]
mod tests;
