//! Certificates for the TLS tests, made afresh by each test: a private CA, a server certificate for
//! 127.0.0.1 and a client certificate it signs, as PEM files in a directory of their own.

use std::path::PathBuf;

use loxilb_sim::TlsIdentity;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};

pub struct Pki {
    pub dir: PathBuf,
    /// The CA's certificate.
    pub ca: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    server_cert: String,
    server_key: String,
    ca_pem: String,
}

impl Pki {
    pub fn new(name: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("loxilb-pki-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, format!("{name} test CA"));
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let leaf = |purpose: ExtendedKeyUsagePurpose, names: Vec<String>| {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(names).unwrap();
            params.extended_key_usages = vec![purpose];
            params.distinguished_name.push(DnType::CommonName, format!("{name} leaf"));
            (params.signed_by(&key, &ca).unwrap().pem(), key.serialize_pem())
        };
        let (server_cert, server_key) = leaf(ExtendedKeyUsagePurpose::ServerAuth, vec!["127.0.0.1".into(), "localhost".into()]);
        let (client_pem, client_key_pem) = leaf(ExtendedKeyUsagePurpose::ClientAuth, vec!["loxilb-octavia".into()]);
        let write = |file: &str, text: &str| {
            let path = dir.join(file);
            std::fs::write(&path, text).unwrap();
            path
        };
        Pki {
            ca: write("ca.pem", &ca.pem()),
            client_cert: write("client.pem", &client_pem),
            client_key: write("client-key.pem", &client_key_pem),
            ca_pem: ca.pem(),
            server_cert,
            server_key,
            dir,
        }
    }

    /// What the simulator serves with; `verify_clients`: it asks for a client certificate signed by
    /// this CA and refuses connections without one.
    pub fn server(&self, verify_clients: bool) -> TlsIdentity {
        TlsIdentity { cert_pem: self.server_cert.clone(), key_pem: self.server_key.clone(), client_ca_pem: verify_clients.then(|| self.ca_pem.clone()) }
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
