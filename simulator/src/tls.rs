//! HTTPS in front of the simulator, as LoxiLB serves its API with `--tls` (and a client CA when it
//! verifies clients): a TLS listener that relays each connection's plaintext to the plain HTTP server
//! on a loopback port of its own. The certificates are the test's.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use anyhow::{anyhow, Context};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection};

/// The server's certificate chain and key (PEM), and the CA its clients' certificates must chain to
/// (none: clients present no certificate).
#[derive(Debug, Clone)]
pub struct TlsIdentity {
    pub cert_pem: String,
    pub key_pem: String,
    pub client_ca_pem: Option<String>,
}

pub(crate) fn server_config(id: &TlsIdentity) -> anyhow::Result<Arc<ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certs(&id.cert_pem).context("server certificate")?;
    let key = PrivateKeyDer::from_pem_slice(id.key_pem.as_bytes()).map_err(|e| anyhow!("server key: {e}"))?;
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider)).with_safe_default_protocol_versions()?;
    let builder = match &id.client_ca_pem {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in certs(ca).context("client CA")? {
                roots.add(cert)?;
            }
            builder.with_client_cert_verifier(WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build()?)
        }
    };
    Ok(Arc::new(builder.with_single_cert(chain, key)?))
}

fn certs(pem: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes()).collect::<Result<Vec<_>, _>>().map_err(|e| anyhow!("{e}"))?;
    anyhow::ensure!(!certs.is_empty(), "no PEM certificate");
    Ok(certs)
}

/// The TLS listener's thread; stops when `stop` is set and the listener is woken.
pub(crate) struct Front {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Front {
    pub(crate) fn start(addr: &str, inner: SocketAddr, config: Arc<ServerConfig>) -> anyhow::Result<Front> {
        let listener = TcpListener::bind(addr).map_err(|e| anyhow!("binding {addr}: {e}"))?;
        let local = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::Builder::new().name("loxilb-sim-tls".into()).spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let config = Arc::clone(&config);
                std::thread::spawn(move || {
                    let _ = relay(stream, inner, config);
                });
            }
        })?;
        Ok(Front { addr: local, stop, thread: Some(thread) })
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One client connection: the handshake, then plaintext both ways until either side closes.
fn relay(mut client: TcpStream, inner: SocketAddr, config: Arc<ServerConfig>) -> std::io::Result<()> {
    let _ = client.set_nodelay(true);
    let mut tls = ServerConnection::new(config).map_err(std::io::Error::other)?;
    while tls.is_handshaking() {
        if let Err(e) = tls.complete_io(&mut client) {
            // The alert saying why (unknown CA, no client certificate) goes out before the close.
            let _ = tls.write_tls(&mut client);
            return Err(e);
        }
    }
    let upstream = TcpStream::connect(inner)?;
    let _ = upstream.set_nodelay(true);
    let tls = Arc::new(Mutex::new(tls));
    let back = {
        let (tls, mut client, mut upstream) = (Arc::clone(&tls), client.try_clone()?, upstream.try_clone()?);
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 16 * 1024];
            while let Ok(n @ 1..) = upstream.read(&mut buf) {
                let mut tls = tls.lock().unwrap_or_else(|e| e.into_inner());
                if tls.writer().write_all(&buf[..n]).is_err() {
                    break;
                }
                while tls.wants_write() {
                    if tls.write_tls(&mut client).is_err() {
                        return;
                    }
                }
            }
            let _ = client.shutdown(std::net::Shutdown::Both);
        })
    };
    let mut upstream = upstream;
    let mut buf = vec![0u8; 16 * 1024];
    // The handshake's last reads may already hold the first request (a client sends it right behind its
    // Finished): what is decrypted goes upstream before the next read.
    let mut records: Vec<u8> = Vec::new();
    loop {
        let mut plain = Vec::new();
        {
            let mut tls = tls.lock().unwrap_or_else(|e| e.into_inner());
            let mut pending = records.as_slice();
            while !pending.is_empty() {
                tls.read_tls(&mut pending)?;
                tls.process_new_packets().map_err(std::io::Error::other)?;
            }
            match tls.reader().read_to_end(&mut plain) {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            while tls.wants_write() {
                tls.write_tls(&mut client)?;
            }
        }
        upstream.write_all(&plain)?;
        let n = client.read(&mut buf)?;
        if n == 0 {
            break;
        }
        records = buf[..n].to_vec();
    }
    let _ = upstream.shutdown(std::net::Shutdown::Both);
    let _ = back.join();
    Ok(())
}
