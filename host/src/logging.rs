//! Log lines on stderr, as an operator's tooling expects them: no colour escapes unless stderr is a
//! terminal (and `NO_COLOR` is unset), text or one JSON object a line (`log_format`), debug level with
//! oslo's `[DEFAULT] debug = true`. `LOXILB_LOG` (an env-filter such as `host=debug,warn`) overrides the level.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Whether log lines may carry ANSI colour codes.
pub fn colour_allowed(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// `quiet`: a one-shot command (demo, tools), whose own output is the point: warnings and errors only.
pub fn init(debug: bool, format: LogFormat, quiet: bool) {
    let level = match (debug, quiet) {
        (true, _) => "debug",
        (false, true) => "warn",
        (false, false) => "info",
    };
    let filter = EnvFilter::try_from_env("LOXILB_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    let ansi = colour_allowed(std::io::stderr().is_terminal(), std::env::var_os("NO_COLOR").as_deref());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour_allowed(true, None));
        assert!(!colour_allowed(false, None));
        assert!(!colour_allowed(true, Some(std::ffi::OsStr::new("1"))));
        assert!(colour_allowed(true, Some(std::ffi::OsStr::new(""))));
    }
}
