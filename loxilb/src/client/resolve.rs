//! Where a node's URL points: a literal address is its own answer.
//!
//! ureq resolves the URL's host before every request, kept-alive connection or not, and with a timeout
//! set (ours always is) its resolver bounds the lookup by doing it on a new thread — a thread created and
//! torn down per LoxiLB request even for `http://10.0.0.2:11111`. LoxiLB nodes are nearly always given
//! by address; a name is still resolved by ureq's resolver, within the request's timeout.

use std::net::{IpAddr, SocketAddr};

use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

#[derive(Debug, Default)]
pub struct LiteralFirst<R = DefaultResolver> {
    names: R,
}

/// The socket address a URL names by a literal IP address (with its scheme's default port).
fn literal(uri: &Uri) -> Option<SocketAddr> {
    let authority = uri.authority()?;
    let host = authority.host();
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    let ip: IpAddr = host.parse().ok()?;
    let port = authority.port_u16().or(match uri.scheme_str()? {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    })?;
    Some(SocketAddr::new(ip, port))
}

impl<R: Resolver> Resolver for LiteralFirst<R> {
    fn resolve(&self, uri: &Uri, config: &Config, timeout: NextTimeout) -> Result<ResolvedSocketAddrs, ureq::Error> {
        match literal(uri) {
            Some(addr) => {
                let mut addrs = self.empty();
                addrs.push(addr);
                Ok(addrs)
            }
            None => self.names.resolve(uri, config, timeout),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;
    use ureq::unversioned::transport::time::Duration as Budget;
    use ureq::Timeout;

    /// Counts what reaches the name resolver and answers one address.
    #[derive(Debug, Default)]
    struct Names(AtomicUsize);
    impl Resolver for Names {
        fn resolve(&self, _: &Uri, _: &Config, _: NextTimeout) -> Result<ResolvedSocketAddrs, ureq::Error> {
            self.0.fetch_add(1, Ordering::SeqCst);
            let mut addrs = self.empty();
            addrs.push("192.0.2.1:1".parse().unwrap());
            Ok(addrs)
        }
    }

    fn resolve(resolver: &LiteralFirst<Names>, url: &str) -> Vec<SocketAddr> {
        let timeout = NextTimeout { after: Budget::from(Duration::from_secs(5)), reason: Timeout::Resolve, ..NextTimeout::default() };
        resolver.resolve(&url.parse().unwrap(), &Config::default(), timeout).unwrap().iter().copied().collect()
    }

    #[test]
    fn a_literal_address_is_answered_without_a_lookup() {
        let resolver = LiteralFirst { names: Names::default() };
        assert_eq!(resolve(&resolver, "http://10.0.0.2:11111/netlox/v1/config/loadbalancer/all"), ["10.0.0.2:11111".parse().unwrap()]);
        assert_eq!(resolve(&resolver, "https://[fd00::2]:8091/x"), ["[fd00::2]:8091".parse().unwrap()]);
        assert_eq!(resolve(&resolver, "https://10.0.0.3/x"), ["10.0.0.3:443".parse().unwrap()]);
        assert_eq!(resolve(&resolver, "http://[::1]/x"), ["[::1]:80".parse().unwrap()]);
        assert_eq!(resolver.names.0.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_name_is_left_to_the_name_resolver() {
        let resolver = LiteralFirst { names: Names::default() };
        assert_eq!(resolve(&resolver, "http://loxilb.example:11111/x"), ["192.0.2.1:1".parse().unwrap()]);
        assert_eq!(resolve(&resolver, "http://localhost:11111/x").len(), 1);
        assert_eq!(resolver.names.0.load(Ordering::SeqCst), 2);
    }
}
