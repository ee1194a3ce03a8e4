//! The capabilities a policy may use, behind a trait so the same code runs inside the component (through
//! the WIT imports) and natively (tests, benches) against fakes.

pub enum Level {
    Debug,
    Info,
    Warning,
    Error,
}

pub struct HttpResponse {
    pub status: u16,
    pub body: String,
}

pub trait Caps {
    /// One LoxiLB API exchange; `Err` only when LoxiLB could not be reached.
    fn request(&mut self, method: &str, path: &str, body: Option<&str>) -> Result<HttpResponse, String>;
    fn read_snapshot(&mut self) -> Result<Option<Vec<u8>>, String>;
    fn write_snapshot(&mut self, data: &[u8]) -> Result<(), String>;
    fn append_journal(&mut self, record: &[u8]) -> Result<(), String>;
    fn replay_journal(&mut self) -> Result<Vec<Vec<u8>>, String>;
    fn journal_length(&mut self) -> u32;
    fn log(&mut self, level: Level, message: &str);
    fn now_ms(&mut self) -> u64;
}

/// The WIT imports.
#[cfg(target_arch = "wasm32")]
pub struct Wasm;

#[cfg(target_arch = "wasm32")]
impl Caps for Wasm {
    fn request(&mut self, method: &str, path: &str, body: Option<&str>) -> Result<HttpResponse, String> {
        crate::bindings::loxilb::octavia::loxilb::request(method, path, body).map(|r| HttpResponse { status: r.status, body: r.body })
    }
    fn read_snapshot(&mut self) -> Result<Option<Vec<u8>>, String> {
        crate::bindings::loxilb::octavia::storage::read_snapshot()
    }
    fn write_snapshot(&mut self, data: &[u8]) -> Result<(), String> {
        crate::bindings::loxilb::octavia::storage::write_snapshot(data)
    }
    fn append_journal(&mut self, record: &[u8]) -> Result<(), String> {
        crate::bindings::loxilb::octavia::storage::append_journal(record)
    }
    fn replay_journal(&mut self) -> Result<Vec<Vec<u8>>, String> {
        crate::bindings::loxilb::octavia::storage::replay_journal()
    }
    fn journal_length(&mut self) -> u32 {
        crate::bindings::loxilb::octavia::storage::journal_length()
    }
    fn log(&mut self, level: Level, message: &str) {
        use crate::bindings::loxilb::octavia::log::{log, Level as L};
        let level = match level {
            Level::Debug => L::Debug,
            Level::Info => L::Info,
            Level::Warning => L::Warning,
            Level::Error => L::Error,
        };
        log(level, message)
    }
    fn now_ms(&mut self) -> u64 {
        crate::bindings::loxilb::octavia::clock::now_ms()
    }
}
