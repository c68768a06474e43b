//! Which reverse proxies' `X-Forwarded-For` to believe (`EMPORIUM_TRUSTED_PROXIES`), and the
//! client address that follows from it. Anyone can send the header, so it is read only from a
//! trusted peer, and then right to left: each trusted proxy appends the address it saw, so the
//! first address from the right that is not a trusted proxy is the client (anything to its left
//! was written by the client and proves nothing). With no trusted proxies (the default) the
//! header is ignored and the client is the connection's peer.

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;
use ipnet::IpNet;

/// The header a proxy appends the address it saw to.
pub const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// Addresses and networks whose `X-Forwarded-For` is believed. Empty by default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    networks: Vec<IpNet>,
}

// === impl TrustedProxies ===

impl TrustedProxies {
    /// Trusts no proxy: `X-Forwarded-For` is ignored.
    pub fn none() -> TrustedProxies {
        TrustedProxies::default()
    }

    /// A comma- or space-separated list of IP addresses and CIDR networks, e.g.
    /// `10.0.0.0/8, 192.168.1.7, fd00::/8`. An empty text trusts no one.
    pub fn parse(text: &str) -> Result<TrustedProxies, String> {
        let networks = text
            .split(|character: char| character == ',' || character.is_whitespace())
            .filter(|item| !item.is_empty())
            .map(|item| {
                item.parse::<IpNet>()
                    .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("{item:?} is not an IP address or a CIDR network"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TrustedProxies { networks })
    }

    pub fn is_empty(&self) -> bool {
        self.networks.is_empty()
    }

    /// Whether `address` is one of the trusted proxies.
    pub fn trusts(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        self.networks
            .iter()
            .any(|network| network.contains(&address))
    }

    /// The client's address for a request from `peer` carrying `headers`: `peer` itself unless it
    /// is a trusted proxy; otherwise the first address in `X-Forwarded-For`, read right to left,
    /// that is not a trusted proxy. An entry that is not an address stops the walk at the proxy
    /// that wrote it; a chain of trusted proxies only ends at its leftmost address.
    pub fn client_address(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.trusts(peer) {
            return peer;
        }
        let entries: Vec<&str> = headers
            .get_all(X_FORWARDED_FOR)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .collect();
        let mut nearest = peer;
        for entry in entries.iter().rev() {
            match forwarded_address(entry) {
                Some(address) if self.trusts(address) => nearest = address,
                Some(address) => return address,
                None => return nearest,
            }
        }
        nearest
    }
}

/// One `X-Forwarded-For` entry as an address: `203.0.113.7`, `2001:db8::1`, or with a port
/// (`203.0.113.7:4711`, `[2001:db8::1]:4711`) as some proxies write it.
fn forwarded_address(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    let address = entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|socket| socket.ip()))
        .or_else(|| {
            entry
                .strip_prefix('[')
                .and_then(|rest| rest.strip_suffix(']'))
                .and_then(|inner| inner.parse::<IpAddr>().ok())
        })?;
    Some(address.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(X_FORWARDED_FOR, value.parse().unwrap());
        }
        headers
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_header_is_ignored_from_an_untrusted_peer() {
        let proxies = TrustedProxies::parse("10.0.0.0/8").unwrap();

        let client = proxies.client_address(ip("198.51.100.9"), &headers(&["203.0.113.7"]));

        assert_eq!(client, ip("198.51.100.9"));
        assert_eq!(
            TrustedProxies::none().client_address(ip("10.0.0.1"), &headers(&["203.0.113.7"])),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn the_first_untrusted_address_from_the_right_is_the_client() {
        let proxies = TrustedProxies::parse("10.0.0.0/8, 192.168.1.7").unwrap();
        // The client forged the first entry; 192.168.1.7 is a trusted proxy in the chain.
        let forwarded = headers(&["1.1.1.1, 203.0.113.7", "192.168.1.7"]);

        let client = proxies.client_address(ip("10.1.2.3"), &forwarded);

        assert_eq!(client, ip("203.0.113.7"));
    }

    #[test]
    fn ports_brackets_and_mapped_addresses_are_understood() {
        let proxies = TrustedProxies::parse("::1 127.0.0.1").unwrap();

        assert_eq!(
            proxies.client_address(ip("::ffff:127.0.0.1"), &headers(&["203.0.113.7:4711"])),
            ip("203.0.113.7")
        );
        assert_eq!(
            proxies.client_address(ip("::1"), &headers(&["[2001:db8::1]:4711"])),
            ip("2001:db8::1")
        );
        assert_eq!(
            proxies.client_address(ip("::1"), &headers(&["[2001:db8::2]"])),
            ip("2001:db8::2")
        );
    }

    #[test]
    fn garbage_or_an_all_trusted_chain_ends_at_the_nearest_proxy() {
        let proxies = TrustedProxies::parse("10.0.0.0/8").unwrap();

        assert_eq!(
            proxies.client_address(
                ip("10.0.0.1"),
                &headers(&["203.0.113.7, unknown, 10.0.0.2"])
            ),
            ip("10.0.0.2")
        );
        assert_eq!(
            proxies.client_address(ip("10.0.0.1"), &headers(&["10.0.0.3, 10.0.0.2"])),
            ip("10.0.0.3")
        );
        assert_eq!(
            proxies.client_address(ip("10.0.0.1"), &HeaderMap::new()),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn a_bad_entry_in_the_setting_is_named() {
        let error = TrustedProxies::parse("10.0.0.0/8, gateway").unwrap_err();

        assert!(error.contains("\"gateway\""), "{error}");
        assert!(TrustedProxies::parse("").unwrap().is_empty());
    }
}
