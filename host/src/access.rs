//! From the `[driver_loxilb]` TLS and credential keys to the LoxiLB client's [`Access`]: files read once,
//! at start, with errors naming the key and the file but never a secret.

use std::path::Path;

use anyhow::{anyhow, bail, Result};
use loxilb_api::{Access, Credentials, Secret, TlsFiles};

use crate::config::{ApiAccess, Config};

pub fn access(config: &Config) -> Result<Access> {
    let a = &config.api_access;
    let files = TlsFiles {
        ca_file: a.ca_file.clone(),
        client_cert_file: a.client_cert_file.clone(),
        client_key_file: a.client_key_file.clone(),
        insecure: a.tls_insecure,
    };
    let tls = files.load().map_err(|e| anyhow!("[driver_loxilb] TLS to LoxiLB (api_ca_file, api_client_cert_file, api_client_key_file): {e}"))?;
    if a.tls_insecure {
        tracing::warn!(
            "[driver_loxilb] api_tls_insecure = true: LoxiLB's certificate is not checked, anyone on the path can read and change what the host sends"
        );
    }
    Ok(Access { timeout: config.api_timeout, tls, credentials: credentials(a)? })
}

fn credentials(a: &ApiAccess) -> Result<Credentials> {
    if let Some(token) = secret(&a.token, a.token_file.as_deref(), "api_token_file")? {
        return Ok(Credentials::Token(token));
    }
    match (&a.username, secret(&a.password, a.password_file.as_deref(), "api_password_file")?) {
        (Some(username), Some(password)) => Ok(Credentials::Login { username: username.clone(), password }),
        _ => Ok(Credentials::None),
    }
}

/// The value of a secret key, or the content of its file (trimmed, as LoxiLB trims its token file).
fn secret(value: &Option<Secret>, file: Option<&Path>, key: &str) -> Result<Option<Secret>> {
    let Some(file) = file else { return Ok(value.clone()) };
    let text = std::fs::read_to_string(file).map_err(|e| anyhow!("[driver_loxilb] {key} {}: {e}", file.display()))?;
    let text = text.trim();
    if text.is_empty() {
        bail!("[driver_loxilb] {key} {} is empty", file.display());
    }
    Ok(Some(Secret::new(text)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_come_from_their_files_trimmed_and_file_errors_name_the_key() {
        let dir = std::env::temp_dir().join(format!("loxilb-access-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let token = dir.join("token");
        std::fs::write(&token, "t0k3n\n").unwrap();
        let c = Config::parse(&format!("[driver_loxilb]\napi_token_file = {}\n", token.display())).unwrap();
        assert_eq!(access(&c).unwrap().credentials, Credentials::Token(Secret::new("t0k3n")));
        let password = dir.join("password");
        std::fs::write(&password, "pw\n").unwrap();
        let c = Config::parse(&format!("[driver_loxilb]\napi_username = admin\napi_password_file = {}\n", password.display())).unwrap();
        assert_eq!(access(&c).unwrap().credentials, Credentials::Login { username: "admin".into(), password: Secret::new("pw") });
        let c = Config::parse("[driver_loxilb]\napi_token_file = /nonexistent/token\n").unwrap();
        assert!(access(&c).unwrap_err().to_string().contains("api_token_file /nonexistent/token"));
        let c = Config::parse("[driver_loxilb]\napi_ca_file = /nonexistent/ca.pem\n").unwrap();
        assert!(access(&c).unwrap_err().to_string().contains("/nonexistent/ca.pem"));
        assert_eq!(access(&Config::parse("[driver_loxilb]\n").unwrap()).unwrap().credentials, Credentials::None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
