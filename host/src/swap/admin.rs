//! How operators reach a running host: the admin socket (`[driver_loxilb] admin_socket_path`, mode
//! 0600, one request and one reply per connection, framed like the driver-agent sockets) and SIGHUP,
//! which swaps to the configured `policy_path` again (after the file there was replaced).
//!
//! Requests: `{"command": "swap-policy", "path": "/abs/x.wasm", "dry_run": false}`,
//! `{"command": "check-policy", "path": …}`, `{"command": "policy-info"}`, `{"command": "metrics"}`. Replies:
//! `{"ok": true, "text": "…"}` or `{"ok": false, "error": "…"}`.

use std::io::Read;
use std::os::fd::FromRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

use crate::config::Config;
use crate::octavia::agent::{exchange, read_frame, write_frame};
use crate::service::Service;

/// A swap runs the conformance scenarios first: allow it far more than a socket round trip.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(600);

pub struct Admin {
    pub path: PathBuf,
}

/// Binds the admin socket and arranges for SIGHUP to swap to the configured policy again.
pub fn start_admin(config: &Config, service: Arc<Service>) -> Result<Admin> {
    let path = config.admin_socket_path.clone();
    let listener = bind_private(&path)?;
    watch_sighup(&service, crate::app::policy_path(config))?;
    std::thread::Builder::new().name("admin".into()).spawn(move || {
        for stream in listener.incoming().flatten() {
            let service = Arc::clone(&service);
            std::thread::spawn(move || {
                if let Err(e) = serve_one(&service, stream) {
                    tracing::warn!("admin connection: {e:#}");
                }
            });
        }
    })?;
    Ok(Admin { path })
}

/// Binds under a temporary name, restricts it to the owner, then renames it into place, so the socket
/// is never reachable with wider permissions.
fn bind_private(path: &Path) -> Result<UnixListener> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let staging = dir.join(format!(".{}.{}", path.file_name().and_then(|n| n.to_str()).unwrap_or("admin.sock"), std::process::id()));
    let _ = std::fs::remove_file(&staging);
    let listener = UnixListener::bind(&staging).with_context(|| format!("binding {}", staging.display()))?;
    std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o600))?;
    std::fs::rename(&staging, path).with_context(|| format!("moving the admin socket to {}", path.display()))?;
    Ok(listener)
}

fn serve_one(service: &Service, mut stream: UnixStream) -> Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let request = read_frame(&mut stream)?;
    let reply = match answer(service, &request) {
        Ok(text) => json!({"ok": true, "text": text}),
        Err(e) => json!({"ok": false, "error": format!("{e:#}")}),
    };
    write_frame(&mut stream, &reply)
}

fn answer(service: &Service, request: &Value) -> Result<String> {
    let path = || -> Result<PathBuf> { request.get("path").and_then(Value::as_str).map(PathBuf::from).ok_or_else(|| anyhow!("the request has no \"path\"")) };
    match request.get("command").and_then(Value::as_str) {
        Some("swap-policy") if request.get("dry_run").and_then(Value::as_bool).unwrap_or(false) => Ok(super::preview::preview(service, &path()?)?.render()),
        Some("swap-policy") => Ok(super::swap(service, &path()?)?.render()),
        Some("check-policy") => {
            let limits = service.sandbox.lock().unwrap().limits().clone();
            let policy = crate::runtime::load(&path()?)?;
            Ok(crate::conformance::run(&policy, &limits)?.render())
        }
        Some("policy-info") => {
            let sandbox = service.sandbox.lock().unwrap();
            Ok(format!(
                "{} {} ({}, WIT {}, sha256 {}): {}\n",
                sandbox.info.name,
                sandbox.info.version,
                sandbox.policy.path.display(),
                sandbox.policy.wit_version,
                sandbox.policy.digest,
                sandbox.info.description
            ))
        }
        Some("metrics") => Ok(crate::metrics::render()),
        other => bail!("unknown admin command {other:?} (swap-policy, check-policy, policy-info, metrics)"),
    }
}

/// Sends one admin request to a running host.
pub fn request(socket: &Path, request: &Value) -> Result<Result<String, String>> {
    let reply = exchange(socket, request, CLIENT_TIMEOUT).with_context(|| format!("talking to the host's admin socket {}", socket.display()))?;
    Ok(match reply.get("ok").and_then(Value::as_bool) {
        Some(true) => Ok(reply.get("text").and_then(Value::as_str).unwrap_or_default().to_string()),
        _ => Err(reply.get("error").and_then(Value::as_str).unwrap_or("the host gave no reason").to_string()),
    })
}

/// `swap-policy PATH [--dry-run] [--config FILE | --admin-socket PATH]`: asks the running host to swap
/// (or preview) and prints its answer. The exit code is 0 when the swap happened (or the preview ran).
pub fn cli_swap(path: &Path, dry_run: bool, config: Option<&Path>, admin_socket: Option<&Path>) -> Result<i32> {
    let socket = match (admin_socket, config) {
        (Some(socket), _) => socket.to_path_buf(),
        (None, Some(file)) => Config::load(file)?.admin_socket_path,
        (None, None) => Config::default().admin_socket_path,
    };
    // The host resolves the path in its own working directory.
    let path = if path == Path::new(crate::runtime::BUILTIN_POLICY_NAME) {
        path.to_path_buf()
    } else {
        std::fs::canonicalize(path).or_else(|_| std::path::absolute(path)).with_context(|| format!("resolving {}", path.display()))?
    };
    let command = json!({"command": "swap-policy", "path": path, "dry_run": dry_run});
    match request(&socket, &command)? {
        Ok(text) => {
            print!("{text}");
            Ok(0)
        }
        Err(why) => {
            eprintln!("{why}");
            Ok(1)
        }
    }
}

/// The write end of the SIGHUP self-pipe; the handler may only make async-signal-safe calls.
static HUP_PIPE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_sighup(_: libc::c_int) {
    let fd = HUP_PIPE.load(Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: write(2) is async-signal-safe; a full pipe (non-blocking) already holds a wake-up.
        unsafe { libc::write(fd, [1u8].as_ptr().cast(), 1) };
    }
}

/// Services to swap on SIGHUP, each with its configured policy path.
type Watchers = Mutex<Vec<(Weak<Service>, PathBuf)>>;

fn watchers() -> &'static Watchers {
    static WATCHERS: OnceLock<Watchers> = OnceLock::new();
    WATCHERS.get_or_init(Default::default)
}

fn watch_sighup(service: &Arc<Service>, policy_path: PathBuf) -> Result<()> {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    INSTALLED.get_or_init(install_sighup).clone().map_err(|e| anyhow!("installing the SIGHUP handler: {e}"))?;
    let mut list = watchers().lock().unwrap();
    list.retain(|(s, _)| s.strong_count() > 0);
    list.push((Arc::downgrade(service), policy_path));
    Ok(())
}

fn install_sighup() -> Result<(), String> {
    let mut fds = [0i32; 2];
    // SAFETY: plain syscalls on a local array; the handler only reads an atomic and writes a byte.
    unsafe {
        if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            return Err(std::io::Error::last_os_error().to_string());
        }
        let flags = libc::fcntl(fds[1], libc::F_GETFL);
        libc::fcntl(fds[1], libc::F_SETFL, flags | libc::O_NONBLOCK);
        HUP_PIPE.store(fds[1], Ordering::Relaxed);
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sighup as *const () as usize;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(libc::SIGHUP, &action, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error().to_string());
        }
    }
    // SAFETY: the read end is ours alone from here on.
    let mut wakeups = unsafe { std::fs::File::from_raw_fd(fds[0]) };
    std::thread::Builder::new()
        .name("sighup".into())
        .spawn(move || {
            let mut byte = [0u8; 64];
            while wakeups.read(&mut byte).is_ok_and(|n| n > 0) {
                let live: Vec<(Arc<Service>, PathBuf)> = watchers().lock().unwrap().iter().filter_map(|(s, p)| Some((s.upgrade()?, p.clone()))).collect();
                for (service, path) in live {
                    tracing::info!("SIGHUP: swapping to {}", path.display());
                    if let Err(e) = super::swap(&service, &path) {
                        tracing::error!("SIGHUP swap: {e:#}");
                    }
                }
            }
        })
        .map_err(|e| e.to_string())?;
    Ok(())
}
