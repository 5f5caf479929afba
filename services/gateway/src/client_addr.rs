//! Who the client is, for the per-address limit: the TCP peer, unless the peer is a trusted reverse proxy
//! (`gateway.trusted_proxies`), in which case the right-most `X-Forwarded-For` entry that is not itself a
//! trusted proxy.
//!
//! Right-most, not left-most: every proxy appends the address it received the request from, so the entries a
//! trusted proxy wrote are at the right end, and anything to the left of the first untrusted one was written by
//! the client and can be forged.

use actix_web::http::header::HeaderMap;
use ipnet::IpNet;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

const X_FORWARDED_FOR: &str = "x-forwarded-for";

#[derive(Debug, Clone, Default)]
pub struct ClientAddr {
    trusted: Vec<IpNet>,
}

impl ClientAddr {
    pub fn new(trusted: Vec<IpNet>) -> Self {
        Self { trusted }
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// The client's address as seen through the trusted proxies, or `None` without a peer (not over TCP).
    pub fn of(&self, peer: Option<SocketAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let peer = canonical(peer?.ip());
        if !self.is_trusted(peer) {
            return Some(peer);
        }
        // Several X-Forwarded-For lines are one list in order (RFC 9110 5.3); walk it from the right.
        let entries: Vec<&str> = headers
            .get_all(X_FORWARDED_FOR)
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .collect();
        let mut nearest = peer;
        for entry in entries.iter().rev() {
            // An entry that is not an address ends the walk: the client is then the last hop we can name.
            let Some(ip) = parse_entry(entry) else {
                return Some(nearest);
            };
            if !self.is_trusted(ip) {
                return Some(ip);
            }
            nearest = ip;
        }
        // Every hop trusted (a request from inside the proxy network): the left-most one is the client.
        Some(nearest)
    }
}

/// `203.0.113.7`, `2001:db8::1`, and the forms some proxies write with a port: `203.0.113.7:4711`,
/// `[2001:db8::1]:4711`.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(canonical)
}

/// An IPv4 client reaching an IPv6 socket shows as `::ffff:a.b.c.d`: the same client as `a.b.c.d`.
fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// The key of a client's bucket: an IPv4 address, or the /64 an IPv6 address is in. One IPv6 host normally
/// holds a whole /64 (SLAAC, privacy addresses), so limiting single IPv6 addresses would limit nobody.
pub fn bucket_key(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !(u128::from(u64::MAX));
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn peer(s: &str) -> Option<SocketAddr> {
        Some(SocketAddr::new(ip(s), 40_000))
    }

    fn xff(lines: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for line in lines {
            map.append(
                HeaderName::from_static(X_FORWARDED_FOR),
                HeaderValue::from_str(line).expect("header"),
            );
        }
        map
    }

    fn trusting(nets: &[&str]) -> ClientAddr {
        ClientAddr::new(nets.iter().map(|n| n.parse().expect("net")).collect())
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let c = trusting(&["10.0.0.0/8"]);
        let forged = xff(&["198.51.100.1"]);
        assert_eq!(c.of(peer("192.0.2.9"), &forged), Some(ip("192.0.2.9")));
        assert_eq!(
            ClientAddr::default().of(peer("127.0.0.1"), &forged),
            Some(ip("127.0.0.1"))
        );
    }

    #[test]
    fn behind_trusted_proxies_the_right_most_untrusted_entry_is_the_client() {
        let c = trusting(&["10.0.0.0/8"]);
        // The client forged the first entry; the edge proxy appended the real one, an inner proxy its own.
        let h = xff(&["6.6.6.6, 203.0.113.7", "10.1.2.3"]);
        assert_eq!(c.of(peer("10.9.9.9"), &h), Some(ip("203.0.113.7")));
        let h = xff(&["6.6.6.6, 203.0.113.7:4711, 10.1.2.3"]);
        assert_eq!(c.of(peer("10.9.9.9"), &h), Some(ip("203.0.113.7")));
        let h = xff(&["[2001:db8::1]:4711"]);
        assert_eq!(c.of(peer("10.9.9.9"), &h), Some(ip("2001:db8::1")));
    }

    #[test]
    fn without_a_usable_header_the_nearest_named_hop_is_the_client() {
        let c = trusting(&["10.0.0.0/8"]);
        assert_eq!(c.of(peer("10.9.9.9"), &xff(&[])), Some(ip("10.9.9.9")));
        let h = xff(&["203.0.113.7, garbage, 10.1.2.3"]);
        assert_eq!(c.of(peer("10.9.9.9"), &h), Some(ip("10.1.2.3")));
        let h = xff(&["10.4.4.4, 10.1.2.3"]);
        assert_eq!(c.of(peer("10.9.9.9"), &h), Some(ip("10.4.4.4")));
        assert_eq!(c.of(None, &h), None);
    }

    #[test]
    fn mapped_ipv4_is_ipv4_and_ipv6_clients_share_their_64() {
        let c = trusting(&["127.0.0.1/32"]);
        assert_eq!(
            c.of(peer("::ffff:127.0.0.1"), &xff(&["203.0.113.7"])),
            Some(ip("203.0.113.7"))
        );
        assert_eq!(bucket_key(ip("203.0.113.7")), ip("203.0.113.7"));
        assert_eq!(
            bucket_key(ip("2001:db8:1:2:aaaa::1")),
            bucket_key(ip("2001:db8:1:2:bbbb::2"))
        );
        assert_ne!(
            bucket_key(ip("2001:db8:1:2::1")),
            bucket_key(ip("2001:db8:1:3::1"))
        );
    }
}
