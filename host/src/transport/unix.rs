//! The Unix-socket transport: one request and one reply per connection, framed like the driver-agent
//! sockets. Casts are answered once queued; calls once answered.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{json, Value};

use crate::octavia::agent::{read_frame, write_frame};
use crate::service::{Failure, Service};

pub struct UnixServer {
    pub path: PathBuf,
}

fn reply(result: Result<Value, Failure>) -> Value {
    match result {
        Ok(v) => json!({"result": v}),
        Err(f) => json!({"failure": {"class": f.class, "message": f.message}}),
    }
}

fn serve_one(service: &Service, mut stream: UnixStream) -> Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let request = read_frame(&mut stream)?;
    let method = request.get("method").and_then(Value::as_str).unwrap_or_default().to_string();
    let args = request.get("args").cloned().unwrap_or(Value::Null);
    let answer = match request.get("type").and_then(Value::as_str) {
        Some("call") => reply(service.call(&method, &args)),
        Some("cast") => reply(service.cast(&method, args).map(|()| Value::Null)),
        other => reply(Err(Failure::driver(format!("request type {other:?} is neither call nor cast")))),
    };
    write_frame(&mut stream, &answer)
}

impl UnixServer {
    /// Binds the socket (replacing a stale one) with mode 0660 and serves each connection on a thread.
    pub fn start(path: &Path, service: Arc<Service>) -> Result<UnixServer> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
        std::thread::Builder::new().name("unix-transport".into()).spawn(move || {
            for stream in listener.incoming().flatten() {
                let service = Arc::clone(&service);
                std::thread::spawn(move || {
                    if let Err(e) = serve_one(&service, stream) {
                        tracing::warn!("provider connection: {e:#}");
                    }
                });
            }
        })?;
        Ok(UnixServer { path: path.to_path_buf() })
    }
}

/// The provider's side of the socket (the demo and tests use it as the Python provider would).
pub fn request(path: &Path, kind: &str, method: &str, args: Value) -> Result<Result<Value, (String, String)>> {
    let reply = crate::octavia::agent::exchange(path, &json!({"type": kind, "method": method, "args": args}), Duration::from_secs(30))?;
    Ok(match reply.get("failure") {
        Some(f) => Err((
            f.get("class").and_then(Value::as_str).unwrap_or_default().to_string(),
            f.get("message").and_then(Value::as_str).unwrap_or_default().to_string(),
        )),
        None => Ok(reply.get("result").cloned().unwrap_or(Value::Null)),
    })
}
