//! The classification table, boundary by boundary, then properties over random addresses.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn range_of(s: &str) -> Option<Range> {
    forbidden(ip(s)).map(|f| f.range)
}

/// Every rule, with its first and last address and the neighbours just outside.
#[test]
fn ipv4_table() {
    use Range::*;
    let table: &[(&str, Option<Range>)] = &[
        ("0.0.0.0", Some(Unspecified)),
        ("0.255.255.255", Some(Unspecified)),
        ("1.0.0.0", None),
        ("1.1.1.1", None),
        ("8.8.8.8", None),
        ("9.255.255.255", None),
        ("10.0.0.0", Some(Private)),
        ("10.0.0.5", Some(Private)),
        ("10.255.255.255", Some(Private)),
        ("11.0.0.0", None),
        ("100.63.255.255", None),
        ("100.64.0.0", Some(Cgnat)),
        ("100.100.100.199", Some(Cgnat)),
        ("100.100.100.200", Some(CloudMetadata)),
        ("100.127.255.255", Some(Cgnat)),
        ("100.128.0.0", None),
        ("126.255.255.255", None),
        ("127.0.0.0", Some(Loopback)),
        ("127.0.0.1", Some(Loopback)),
        ("127.1.2.3", Some(Loopback)),
        ("127.255.255.255", Some(Loopback)),
        ("128.0.0.0", None),
        ("169.253.255.255", None),
        ("169.254.0.0", Some(LinkLocal)),
        ("169.254.169.253", Some(LinkLocal)),
        ("169.254.169.254", Some(CloudMetadata)),
        ("169.254.169.255", Some(LinkLocal)),
        ("169.254.170.2", Some(CloudMetadata)),
        ("169.254.170.23", Some(CloudMetadata)),
        ("169.254.255.255", Some(LinkLocal)),
        ("169.255.0.0", None),
        ("172.15.255.255", None),
        ("172.16.0.0", Some(Private)),
        ("172.31.255.255", Some(Private)),
        ("172.32.0.0", None),
        ("191.255.255.255", None),
        ("192.0.0.0", Some(IetfProtocol)),
        ("192.0.0.255", Some(IetfProtocol)),
        ("192.0.1.0", None),
        ("192.0.2.0", Some(Documentation)),
        ("192.0.2.255", Some(Documentation)),
        ("192.0.3.0", None),
        ("192.88.98.255", None),
        ("192.88.99.1", Some(Reserved)),
        ("192.88.100.0", None),
        ("192.167.255.255", None),
        ("192.168.0.0", Some(Private)),
        ("192.168.1.1", Some(Private)),
        ("192.168.255.255", Some(Private)),
        ("192.169.0.0", None),
        ("198.17.255.255", None),
        ("198.18.0.0", Some(Benchmarking)),
        ("198.19.255.255", Some(Benchmarking)),
        ("198.20.0.0", None),
        ("198.51.99.255", None),
        ("198.51.100.0", Some(Documentation)),
        ("198.51.100.255", Some(Documentation)),
        ("198.51.101.0", None),
        ("203.0.112.255", None),
        ("203.0.113.0", Some(Documentation)),
        ("203.0.113.255", Some(Documentation)),
        ("203.0.114.0", None),
        ("223.255.255.255", None),
        ("224.0.0.0", Some(Multicast)),
        ("239.255.255.255", Some(Multicast)),
        ("240.0.0.0", Some(Reserved)),
        ("254.255.255.255", Some(Reserved)),
        ("255.255.255.254", Some(Reserved)),
        ("255.255.255.255", Some(Broadcast)),
    ];
    for (addr, want) in table {
        assert_eq!(range_of(addr), *want, "{addr}");
    }
}

#[test]
fn ipv6_table() {
    use Range::*;
    let table: &[(&str, Option<Range>)] = &[
        ("::", Some(Unspecified)),
        ("::1", Some(Loopback)),
        ("::2", Some(Reserved)),
        ("::a00:1", Some(Reserved)), // IPv4-compatible ::10.0.0.1, deprecated
        ("::808:808", Some(Reserved)), // IPv4-compatible ::8.8.8.8, deprecated
        ("::1:0:0:0", Some(Reserved)), // outside 2000::/3
        ("100::", Some(Reserved)),
        ("100::ffff:ffff:ffff:ffff", Some(Reserved)),
        ("64:ff9b:1::1", Some(Reserved)),
        ("1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some(Reserved)),
        ("2000::", None),
        ("2001::", Some(Teredo)),
        ("2001:0:ffff:ffff:ffff:ffff:ffff:ffff", Some(Teredo)),
        ("2001:1::1", None),
        ("2001:2::", Some(Benchmarking)),
        ("2001:2:0:ffff::1", Some(Benchmarking)),
        ("2001:2:1::", None),
        ("2001:10::1", Some(Reserved)),
        ("2001:20::1", Some(Reserved)),
        ("2001:2f:ffff::1", Some(Reserved)),
        ("2001:30::1", None),
        ("2001:db7:ffff::", None),
        ("2001:db8::", Some(Documentation)),
        (
            "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
            Some(Documentation),
        ),
        ("2001:db9::", None),
        ("2001:4860:4860::8888", None),
        ("2606:4700:4700::1111", None),
        ("2a00:1450:4001:80b::200e", None),
        ("3ffe:ffff::", None),
        ("3fff::", Some(Documentation)),
        ("3fff:fff:ffff::", Some(Documentation)),
        ("3fff:1000::", None),
        ("3fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", None),
        ("4000::", Some(Reserved)),
        ("fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some(Reserved)),
        ("fc00::", Some(UniqueLocal)),
        ("fd00::1", Some(UniqueLocal)),
        ("fd00:ec2::253", Some(UniqueLocal)),
        ("fd00:ec2::254", Some(CloudMetadata)),
        ("fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some(UniqueLocal)),
        ("fe00::", Some(Reserved)),
        ("fe80::", Some(LinkLocal)),
        ("fe80::1", Some(LinkLocal)),
        ("febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some(LinkLocal)),
        ("fec0::", Some(SiteLocal)),
        ("feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some(SiteLocal)),
        ("ff00::", Some(Multicast)),
        ("ff02::1", Some(Multicast)),
        ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some(Multicast)),
    ];
    for (addr, want) in table {
        assert_eq!(range_of(addr), *want, "{addr}");
    }
}

/// IPv4-mapped, NAT64 and 6to4 addresses are judged by the IPv4 address inside.
#[test]
fn embedded_ipv4_is_judged() {
    type Case<'a> = (&'a str, Option<(Range, Embedding, &'a str)>);
    let cases: &[Case] = &[
        (
            "::ffff:127.0.0.1",
            Some((Range::Loopback, Embedding::Ipv4Mapped, "127.0.0.1")),
        ),
        (
            "::ffff:10.1.2.3",
            Some((Range::Private, Embedding::Ipv4Mapped, "10.1.2.3")),
        ),
        (
            "::ffff:169.254.169.254",
            Some((
                Range::CloudMetadata,
                Embedding::Ipv4Mapped,
                "169.254.169.254",
            )),
        ),
        (
            "::ffff:0.0.0.0",
            Some((Range::Unspecified, Embedding::Ipv4Mapped, "0.0.0.0")),
        ),
        ("::ffff:8.8.8.8", None),
        (
            "64:ff9b::7f00:1",
            Some((Range::Loopback, Embedding::Nat64, "127.0.0.1")),
        ),
        (
            "64:ff9b::192.168.0.1",
            Some((Range::Private, Embedding::Nat64, "192.168.0.1")),
        ),
        ("64:ff9b::8.8.8.8", None),
        (
            "2002:7f00:1::",
            Some((Range::Loopback, Embedding::SixToFour, "127.0.0.1")),
        ),
        (
            "2002:a9fe:a9fe::1",
            Some((
                Range::CloudMetadata,
                Embedding::SixToFour,
                "169.254.169.254",
            )),
        ),
        (
            "2002:c0a8:101:1::5",
            Some((Range::Private, Embedding::SixToFour, "192.168.1.1")),
        ),
        ("2002:808:808::", None),
    ];
    for (addr, want) in cases {
        let got = forbidden(ip(addr));
        let want = want.map(|(range, how, v4)| Forbidden {
            range,
            via: Some((how, v4.parse().expect("v4"))),
        });
        assert_eq!(got, want, "{addr}");
    }
}

#[test]
fn forbidden_displays_its_rule_and_embedding() {
    assert_eq!(
        forbidden(ip("10.0.0.5")).map(|f| f.to_string()).as_deref(),
        Some("private network")
    );
    assert_eq!(
        forbidden(ip("::ffff:127.0.0.1"))
            .map(|f| f.to_string())
            .as_deref(),
        Some("loopback via IPv4-mapped 127.0.0.1")
    );
}

fn policy(entries: &[&str]) -> EgressPolicy {
    EgressPolicy::from_entries(entries).expect("entries")
}

#[test]
fn policy_allows_public_listed_networks_and_listed_hosts() {
    let strict = EgressPolicy::new();
    assert_eq!(strict.refuses(None, ip("93.184.216.34")), None);
    assert_eq!(
        strict.refuses(Some("example.com"), ip("2606:4700::1")),
        None
    );
    assert!(strict.refuses(Some("localhost"), ip("127.0.0.1")).is_some());
    assert!(strict.refuses(None, ip("::1")).is_some());

    let nets = policy(&["127.0.0.0/8", "10.1.2.3", "fd00::/8"]);
    assert_eq!(nets.refuses(None, ip("127.9.9.9")), None);
    assert_eq!(nets.refuses(None, ip("::ffff:127.0.0.1")), None, "mapped");
    assert_eq!(nets.refuses(None, ip("10.1.2.3")), None);
    assert!(nets.refuses(None, ip("10.1.2.4")).is_some());
    assert!(
        nets.refuses(None, ip("::1")).is_some(),
        "v6 loopback not listed"
    );
    assert_eq!(
        nets.refuses(None, ip("fd00:ec2::254")),
        None,
        "inside fd00::/8"
    );
    assert!(nets.refuses(None, ip("fc00::1")).is_some());

    let hosts = policy(&["Hooks.Internal.Example", "localhost"]);
    assert_eq!(
        hosts.refuses(Some("hooks.internal.example"), ip("10.0.0.1")),
        None
    );
    assert_eq!(
        hosts.refuses(Some("HOOKS.internal.example."), ip("10.0.0.1")),
        None
    );
    assert_eq!(hosts.refuses(Some("localhost"), ip("::1")), None);
    assert!(
        hosts
            .refuses(Some("other.example"), ip("10.0.0.1"))
            .is_some()
    );
    assert!(
        hosts.refuses(None, ip("10.0.0.1")).is_some(),
        "a literal is no host"
    );

    assert!(EgressPolicy::from_entries(["not a host!"]).is_err());
    let merged = policy(&["localhost"]).merged(&policy(&["10.0.0.0/8", "localhost"]));
    assert_eq!(merged.hosts(), ["localhost"]);
    assert_eq!(merged.networks().len(), 1);
}

#[test]
fn literal_urls_are_judged_without_dns() {
    let strict = EgressPolicy::new();
    let url = |s: &str| url::Url::parse(s).expect("url");
    for refused in [
        "http://127.0.0.1:9101/x",
        "http://10.0.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:8080/",
        "http://[::ffff:7f00:1]/",
        "http://[fd00:ec2::254]/",
        "http://0x7f.1/",     // the URL parser normalises this to 127.0.0.1
        "http://2130706433/", // and this
        "http://0/",          // and this to 0.0.0.0
    ] {
        let err = strict.check_literal(&url(refused)).expect_err(refused);
        assert!(err.literal, "{refused}");
    }
    for passed in [
        "https://example.com/x",
        "http://localhost/",
        "http://8.8.8.8/",
    ] {
        assert_eq!(strict.check_literal(&url(passed)), Ok(()), "{passed}");
    }
    let err = strict
        .check_literal(&url("http://169.254.169.254/"))
        .expect_err("metadata");
    assert_eq!(
        err.to_string(),
        "destination address 169.254.169.254 (cloud metadata service) is not public; allow it with `egress_allow`"
    );
    assert_eq!(err.suggestion(), "169.254.169.254");
}

#[test]
fn static_refusal_covers_localhost_names() {
    let strict = EgressPolicy::new();
    for refused in [
        "http://localhost:9101/x",
        "http://LOCALHOST./x",
        "http://api.localhost/",
        "http://10.0.0.1/",
    ] {
        assert!(strict.static_refusal(refused).is_err(), "{refused}");
    }
    let err = strict
        .static_refusal("http://localhost/")
        .expect_err("localhost");
    assert_eq!(
        err.to_string(),
        "destination host `localhost` resolves only to 127.0.0.1 (loopback), ::1 (loopback); allow it with `egress_allow`"
    );
    assert_eq!(err.suggestion(), "localhost");
    for passed in [
        "https://example.com/",
        "not a url",
        "http://localhostx/",
        "http://10.0.0.1.nip.io/",
    ] {
        assert_eq!(strict.static_refusal(passed), Ok(()), "{passed}");
    }
    for allowed in [&["localhost"][..], &["127.0.0.0/8"], &["::1"]] {
        assert_eq!(
            policy(allowed).static_refusal("http://localhost:1/"),
            Ok(()),
            "{allowed:?}"
        );
    }
}

#[test]
fn long_refusals_are_shortened() {
    let refused = (1..=6)
        .map(|i| {
            let a = IpAddr::V4(Ipv4Addr::new(10, 0, 0, i));
            (a, forbidden(a).expect("private"))
        })
        .collect();
    let text = EgressRefused::resolved("many.example", refused).to_string();
    assert!(
        text.contains("10.0.0.4 (private network) and 2 more;"),
        "{text}"
    );
}

/// The rules written as CIDR strings and matched with `ipnet`: an oracle independent of
/// the bit arithmetic above. Order matters (first match wins), as in the tables.
fn oracle(ip: IpAddr) -> Option<Range> {
    use Range::*;
    let v4_rules: &[(&str, Range)] = &[
        ("169.254.169.254/32", CloudMetadata),
        ("169.254.170.2/32", CloudMetadata),
        ("169.254.170.23/32", CloudMetadata),
        ("100.100.100.200/32", CloudMetadata),
        ("255.255.255.255/32", Broadcast),
        ("0.0.0.0/8", Unspecified),
        ("10.0.0.0/8", Private),
        ("100.64.0.0/10", Cgnat),
        ("127.0.0.0/8", Loopback),
        ("169.254.0.0/16", LinkLocal),
        ("172.16.0.0/12", Private),
        ("192.0.0.0/24", IetfProtocol),
        ("192.0.2.0/24", Documentation),
        ("192.88.99.0/24", Reserved),
        ("192.168.0.0/16", Private),
        ("198.18.0.0/15", Benchmarking),
        ("198.51.100.0/24", Documentation),
        ("203.0.113.0/24", Documentation),
        ("224.0.0.0/4", Multicast),
        ("240.0.0.0/4", Reserved),
    ];
    let v6_rules: &[(&str, Range)] = &[
        ("fd00:ec2::254/128", CloudMetadata),
        ("::/128", Unspecified),
        ("::1/128", Loopback),
        ("64:ff9b:1::/48", Reserved),
        ("100::/64", Reserved),
        ("2001::/32", Teredo),
        ("2001:2::/48", Benchmarking),
        ("2001:10::/28", Reserved),
        ("2001:20::/28", Reserved),
        ("2001:db8::/32", Documentation),
        ("3fff::/20", Documentation),
        ("fc00::/7", UniqueLocal),
        ("fe80::/10", LinkLocal),
        ("fec0::/10", SiteLocal),
        ("ff00::/8", Multicast),
        ("::/96", Reserved),
    ];
    let find = |rules: &[(&str, Range)], ip: IpAddr| {
        rules
            .iter()
            .find(|(net, _)| net.parse::<IpNet>().expect("rule").contains(&ip))
            .map(|(_, r)| *r)
    };
    match ip {
        IpAddr::V4(_) => find(v4_rules, ip),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let v4 = |hi: u16, lo: u16| {
                IpAddr::V4(Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo)))
            };
            if s[..6] == [0, 0, 0, 0, 0, 0xffff] || s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                return find(v4_rules, v4(s[6], s[7]));
            }
            if s[0] == 0x2002 {
                return find(v4_rules, v4(s[1], s[2]));
            }
            find(v6_rules, ip).or_else(|| {
                let global: IpNet = "2000::/3".parse().expect("net");
                (!global.contains(&ip)).then_some(Reserved)
            })
        }
    }
}

/// Addresses biased towards the interesting ranges, plus uniform ones.
fn any_v4() -> impl Strategy<Value = Ipv4Addr> {
    prop_oneof![
        any::<u32>().prop_map(Ipv4Addr::from),
        (
            prop::sample::select(vec![
                0u8, 10, 100, 127, 169, 172, 192, 198, 203, 224, 240, 255
            ]),
            any::<[u8; 3]>()
        )
            .prop_map(|(a, [b, c, d])| Ipv4Addr::new(a, b, c, d)),
    ]
}

fn any_v6() -> impl Strategy<Value = Ipv6Addr> {
    prop_oneof![
        any::<u128>().prop_map(Ipv6Addr::from),
        (
            prop::sample::select(vec![
                0u16, 0x64, 0x100, 0x2001, 0x2002, 0x3fff, 0xfc00, 0xfd00, 0xfe80, 0xfec0, 0xff02
            ]),
            any::<u128>()
        )
            .prop_map(|(top, rest)| Ipv6Addr::from((u128::from(top) << 112) | (rest >> 16))),
        any_v4().prop_map(|v4| v4.to_ipv6_mapped()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn v4_matches_the_oracle(v4 in any_v4()) {
        let ip = IpAddr::V4(v4);
        prop_assert_eq!(forbidden(ip).map(|f| f.range), oracle(ip));
    }

    #[test]
    fn v6_matches_the_oracle(v6 in any_v6()) {
        let ip = IpAddr::V6(v6);
        prop_assert_eq!(forbidden(ip).map(|f| f.range), oracle(ip));
    }

    /// Whatever the standard library calls special is refused.
    #[test]
    fn std_special_addresses_are_refused(v4 in any_v4(), v6 in any_v6()) {
        if v4.is_private() || v4.is_loopback() || v4.is_link_local() || v4.is_multicast()
            || v4.is_broadcast() || v4.is_documentation() || v4.is_unspecified()
        {
            prop_assert!(forbidden(IpAddr::V4(v4)).is_some(), "{}", v4);
        }
        if v6.is_loopback() || v6.is_unspecified() || v6.is_multicast()
            || v6.is_unique_local() || v6.is_unicast_link_local()
        {
            prop_assert!(forbidden(IpAddr::V6(v6)).is_some(), "{}", v6);
        }
    }

    /// The IPv6 forms that carry an IPv4 address get the IPv4 address's verdict.
    #[test]
    fn embeddings_inherit_the_ipv4_verdict(v4 in any_v4()) {
        let bits = u128::from(u32::from(v4));
        let want = forbidden(IpAddr::V4(v4)).map(|f| f.range);
        let mapped = Ipv6Addr::from(0xffff_0000_0000u128 | bits);
        let nat64 = Ipv6Addr::from(0x0064_ff9b_0000_0000_0000_0000_0000_0000u128 | bits);
        let six_to_four = Ipv6Addr::from((0x2002u128 << 112) | (bits << 80) | 0xbeef);
        for v6 in [mapped, nat64, six_to_four] {
            prop_assert_eq!(forbidden(IpAddr::V6(v6)).map(|f| f.range), want, "{}", v6);
        }
    }

    /// An address inside an allowed network is always allowed; a listed host allows any
    /// address; the strict policy refuses exactly what `forbidden` refuses.
    #[test]
    fn policy_invariants(v6 in any_v6(), v4 in any_v4(), prefix in 0u8..=32) {
        for ip in [IpAddr::V4(v4), IpAddr::V6(v6)] {
            prop_assert_eq!(EgressPolicy::new().refuses(None, ip), forbidden(ip));
            prop_assert_eq!(policy(&["h.example"]).refuses(Some("h.example"), ip), None);
            let net = IpNet::new(ip, prefix).expect("prefix").trunc();
            let allowed = EgressPolicy::new().allowing(EgressAllow::Network(net));
            prop_assert_eq!(allowed.refuses(None, ip), None);
            prop_assert_eq!(allowed.refuses(Some("other.example"), ip), None);
        }
    }
}
