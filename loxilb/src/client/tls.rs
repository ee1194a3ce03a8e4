//! How the client trusts LoxiLB's certificate and proves its own: the CA and client-certificate files
//! read once, into the TLS settings every node's connections use.

use std::path::PathBuf;

use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};

/// The TLS files, as configured. Without `ca_file` LoxiLB's certificate is checked against the system's
/// trust store (`SSL_CERT_FILE` and `SSL_CERT_DIR` are honoured); with it, against that file only, so a
/// private CA needs nothing installed system-wide.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TlsFiles {
    pub ca_file: Option<PathBuf>,
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
    /// Accept any certificate: for a test bed only, and only when asked for by name.
    pub insecure: bool,
}

/// TLS settings ready for connections, and what the server's certificate is checked against (for
/// messages).
#[derive(Clone, Debug)]
pub struct Tls {
    pub(crate) config: TlsConfig,
    pub(crate) trust: String,
}

impl Default for Tls {
    fn default() -> Self {
        TlsFiles::default().load().expect("no files to read")
    }
}

impl TlsFiles {
    /// Reads the files now, so that a missing or unreadable one stops the start rather than every request.
    /// Errors name the file (never its content).
    pub fn load(&self) -> Result<Tls, String> {
        let client_cert = match (&self.client_cert_file, &self.client_key_file) {
            (None, None) => None,
            (Some(_), None) | (None, Some(_)) => return Err("a client certificate needs both its certificate file and its key file".into()),
            (Some(cert), Some(key)) => {
                let chain = certificates(cert)?;
                let pem = read(key)?;
                let key = PrivateKey::from_pem(&pem).map_err(|e| format!("{}: no PEM private key ({e})", key.display()))?;
                Some(ClientCert::new_with_certs(&chain, key))
            }
        };
        let (roots, trust) = if self.insecure {
            (RootCerts::WebPki, "nothing (verification is off)".to_string())
        } else if let Some(ca) = &self.ca_file {
            (RootCerts::new_with_certs(&certificates(ca)?), format!("the CA file {}", ca.display()))
        } else {
            system_roots()
        };
        let config = TlsConfig::builder().root_certs(roots).client_cert(client_cert).disable_verification(self.insecure).build();
        Ok(Tls { config, trust })
    }
}

fn read(path: &PathBuf) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Every certificate of a PEM file; a file with none is an error (it would trust nothing, silently).
fn certificates(path: &PathBuf) -> Result<Vec<Certificate<'static>>, String> {
    let pem = read(path)?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item.map_err(|e| format!("{}: {e}", path.display()))? {
            PemItem::Certificate(c) => certs.push(c),
            _ => continue,
        }
    }
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate in it", path.display()));
    }
    Ok(certs)
}

/// The system's trust store, as OpenSSL would find it; where it has none, the Mozilla roots built in.
/// Read once per process: every node and every plain client shares it.
fn system_roots() -> (RootCerts, String) {
    static ROOTS: std::sync::OnceLock<(RootCerts, String)> = std::sync::OnceLock::new();
    ROOTS.get_or_init(read_system_roots).clone()
}

fn read_system_roots() -> (RootCerts, String) {
    let found = rustls_native_certs::load_native_certs();
    let certs: Vec<Certificate<'static>> = found.certs.iter().map(|der| Certificate::from_der(der.as_ref()).to_owned()).collect();
    if certs.is_empty() {
        (RootCerts::WebPki, "the built-in Mozilla roots (no system trust store was found)".into())
    } else {
        (RootCerts::new_with_certs(&certs), "the system trust store".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_read_at_load_and_errors_name_them() {
        let missing = TlsFiles { ca_file: Some("/nonexistent/ca.pem".into()), ..Default::default() };
        assert!(missing.load().unwrap_err().contains("/nonexistent/ca.pem"));
        let half = TlsFiles { client_cert_file: Some("/x.pem".into()), ..Default::default() };
        assert!(half.load().unwrap_err().contains("both"));
        let dir = std::env::temp_dir().join(format!("loxilb-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = TlsFiles { ca_file: Some(empty.clone()), ..Default::default() }.load().unwrap_err();
        assert!(err.contains("no PEM certificate") && err.contains("empty.pem"), "{err}");
        assert!(TlsFiles::default().load().is_ok());
        assert!(TlsFiles { insecure: true, ..Default::default() }.load().unwrap().trust.contains("verification is off"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
