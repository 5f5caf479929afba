//! The gateway's edge settings that need more than a range check: trusted proxy networks and CORS origins.
//! Parsed here so that a bad value stops the service at start with the setting named.

use super::GatewaySettings;
use actix_web::http::Uri;
use ipnet::IpNet;
use std::net::IpAddr;

impl GatewaySettings {
    /// `gateway.trusted_proxies` as networks; a bare address is a network of one.
    pub fn trusted_proxy_networks(&self) -> anyhow::Result<Vec<IpNet>> {
        self.trusted_proxies
            .iter()
            .map(|entry| {
                let text = entry.trim();
                text.parse::<IpNet>()
                    .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        anyhow::anyhow!(
                            "gateway.trusted_proxies: {entry:?} is not a CIDR network (e.g. \"10.0.0.0/8\", \
                             \"fd00::/8\") or an IP address"
                        )
                    })
            })
            .collect()
    }

    pub(super) fn validate_edge(&self) -> anyhow::Result<()> {
        self.trusted_proxy_networks()?;
        check_origins("gateway.cors_allowed_origins", &self.cors_allowed_origins)?;
        let payment = &self.storefront.payment_url;
        anyhow::ensure!(
            is_origin(payment),
            "gateway.storefront.payment_url: {payment:?} is not an origin: write scheme://host[:port] as the \
             buyer's browser reaches the payment service (http or https, no path, no trailing slash)"
        );
        Ok(())
    }
}

/// Each entry of the list setting `name` must be an exact origin.
pub(crate) fn check_origins(name: &str, origins: &[String]) -> anyhow::Result<()> {
    for origin in origins {
        anyhow::ensure!(
            is_origin(origin),
            "{name}: {origin:?} is not an origin: write scheme://host[:port] exactly as a browser sends it in the \
             Origin header (http or https, no path, no trailing slash, no wildcard)"
        );
    }
    Ok(())
}

/// A browser's `Origin` value: `http(s)://host[:port]` and nothing else. The Origin header is compared as a
/// string, so anything else (a path, a trailing slash, upper case scheme) could never match.
pub fn is_origin(text: &str) -> bool {
    let Ok(uri) = text.parse::<Uri>() else {
        return false;
    };
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return false;
    };
    ["http", "https"].contains(&scheme)
        && !authority.as_str().contains(['@', '*'])
        && text == format!("{scheme}://{authority}")
}

#[cfg(test)]
mod tests {
    use crate::Settings;

    fn gateway(change: impl FnOnce(&mut super::GatewaySettings)) -> anyhow::Result<()> {
        let mut s = Settings::defaults().expect("defaults");
        change(&mut s.gateway);
        s.validate()
    }

    #[test]
    fn trusted_proxies_take_networks_and_addresses_and_name_the_setting_when_wrong() {
        let mut s = Settings::defaults().expect("defaults");
        s.gateway.trusted_proxies = vec!["10.0.0.0/8".into(), "::1".into(), "192.0.2.7".into()];
        let nets = s.gateway.trusted_proxy_networks().expect("valid");
        assert_eq!(nets.len(), 3);
        assert!(nets[2].contains(&"192.0.2.7".parse::<std::net::IpAddr>().expect("ip")));
        for bad in ["10.0.0.0/33", "10.0.0", "proxy.internal", ""] {
            let err = gateway(|g| g.trusted_proxies = vec![bad.into()]).expect_err(bad);
            assert!(
                format!("{err:#}").contains("gateway.trusted_proxies"),
                "{err:#}"
            );
        }
    }

    #[test]
    fn cors_origins_must_be_exact_origins() {
        for good in [
            "https://shop.example",
            "http://localhost:3000",
            "https://[::1]:8443",
        ] {
            gateway(|g| g.cors_allowed_origins = vec![good.into()]).expect(good);
        }
        for bad in [
            "https://shop.example/",
            "https://shop.example/path",
            "shop.example",
            "*",
            "https://*.shop.example",
            "ftp://shop.example",
            "",
        ] {
            let err = gateway(|g| g.cors_allowed_origins = vec![bad.into()]).expect_err(bad);
            assert!(
                format!("{err:#}").contains("gateway.cors_allowed_origins"),
                "{err:#}"
            );
        }
    }
}
