//! TLS to RabbitMQ, configured as oslo.messaging's rabbit driver is: `[oslo_messaging_rabbit] ssl`,
//! `ssl_ca_file`, `ssl_cert_file`, `ssl_key_file` and `ssl_version`, each of which the `transport_url`'s
//! query can override by name (`rabbit://…/?ssl=1&ssl_ca_file=/etc/ssl/rabbit-ca.pem`), as oslo's
//! `ConfigOptsProxy` does. The port stays 5672 unless the URL names one, as in oslo.
//!
//! One difference, on purpose: oslo verifies the broker's certificate only when `ssl_ca_file` is set;
//! the host always verifies it, against `ssl_ca_file` and the system's trust store, and checks the
//! broker's name — a TLS connection that accepts any certificate protects nothing.

use anyhow::{bail, Context, Result};
use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};

/// `[oslo_messaging_rabbit]`'s TLS keys as the configuration file sets them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RabbitTlsOptions {
    pub ssl: bool,
    pub ssl_ca_file: String,
    pub ssl_cert_file: String,
    pub ssl_key_file: String,
    pub ssl_version: String,
}

/// The TLS keys a `transport_url` query may override.
pub const QUERY_KEYS: &[&str] = &["ssl", "ssl_ca_file", "ssl_cert_file", "ssl_key_file", "ssl_version"];

fn parse_bool(key: &str, v: &str) -> Result<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => bail!("{key} = {v:?}: expected true or false"),
    }
}

impl RabbitTlsOptions {
    /// These options with the query's `key=value` pairs (already percent-decoded) applied over them.
    pub fn overridden_by(&self, query: &[(String, String)]) -> Result<RabbitTlsOptions> {
        let mut out = self.clone();
        for (key, value) in query {
            match key.as_str() {
                "ssl" => out.ssl = parse_bool("transport_url ssl", value)?,
                "ssl_ca_file" => out.ssl_ca_file = value.clone(),
                "ssl_cert_file" => out.ssl_cert_file = value.clone(),
                "ssl_key_file" => out.ssl_key_file = value.clone(),
                "ssl_version" => out.ssl_version = value.clone(),
                _ => {}
            }
        }
        Ok(out)
    }

    /// The TLS settings to connect with, files read now (a missing file stops the start, not every
    /// connection attempt); `None` without `ssl`.
    pub fn load(&self) -> Result<Option<OwnedTLSConfig>> {
        if !self.ssl {
            return Ok(None);
        }
        // rustls speaks TLS 1.2 and 1.3 only; oslo's names for older protocols cannot be honoured.
        match self.ssl_version.to_ascii_lowercase().as_str() {
            "" | "tlsv1_2" | "tlsv1_3" | "sslv23" | "tls" => {}
            other => bail!("[oslo_messaging_rabbit] ssl_version = {other:?}: the host speaks TLS 1.2 and 1.3 only (leave it empty, or TLSv1_2)"),
        }
        let read = |what: &str, path: &str| std::fs::read(path).with_context(|| format!("[oslo_messaging_rabbit] {what} {path}"));
        let cert_chain = match self.ssl_ca_file.as_str() {
            "" => None,
            path => Some(String::from_utf8(read("ssl_ca_file", path)?).with_context(|| format!("ssl_ca_file {path} is not PEM text"))?),
        };
        let identity = match (self.ssl_cert_file.as_str(), self.ssl_key_file.as_str()) {
            ("", "") => None,
            ("", _) | (_, "") => bail!("[oslo_messaging_rabbit] ssl_cert_file and ssl_key_file go together (a client certificate needs both)"),
            (cert, key) => Some(OwnedIdentity::PKCS8 { pem: read("ssl_cert_file", cert)?, key: read("ssl_key_file", key)? }),
        };
        Ok(Some(OwnedTLSConfig { identity, cert_chain }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn the_query_overrides_the_section_by_name() {
        let section = RabbitTlsOptions { ssl_ca_file: "/etc/section-ca.pem".into(), ..Default::default() };
        let opts = section.overridden_by(&pairs(&[("ssl", "1"), ("heartbeat", "60")])).unwrap();
        assert!(opts.ssl);
        assert_eq!(opts.ssl_ca_file, "/etc/section-ca.pem");
        let opts = section.overridden_by(&pairs(&[("ssl", "true"), ("ssl_ca_file", "/q.pem")])).unwrap();
        assert_eq!(opts.ssl_ca_file, "/q.pem");
        assert!(section.overridden_by(&pairs(&[("ssl", "maybe")])).is_err());
    }

    #[test]
    fn files_are_read_at_start_and_errors_name_them() {
        assert!(RabbitTlsOptions::default().load().unwrap().is_none());
        let missing = RabbitTlsOptions { ssl: true, ssl_ca_file: "/nonexistent/ca.pem".into(), ..Default::default() };
        let err = format!("{:#}", missing.load().unwrap_err());
        assert!(err.contains("ssl_ca_file /nonexistent/ca.pem"), "{err}");
        let half = RabbitTlsOptions { ssl: true, ssl_cert_file: "/x.pem".into(), ..Default::default() };
        assert!(format!("{:#}", half.load().unwrap_err()).contains("go together"));
        let old = RabbitTlsOptions { ssl: true, ssl_version: "SSLv3".into(), ..Default::default() };
        assert!(format!("{:#}", old.load().unwrap_err()).contains("TLS 1.2 and 1.3"));
        let plain = RabbitTlsOptions { ssl: true, ..Default::default() };
        let loaded = plain.load().unwrap().unwrap();
        assert!(loaded.cert_chain.is_none() && loaded.identity.is_none());
    }
}
