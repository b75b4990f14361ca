//! The `[auth]` section: who may open tunnels, subscribe and publish (docs/protocol.md,
//! "Authentication"). Only the settings and their validation live here; the key files are read
//! and the tokens checked by the `auth` module.

use serde::{Deserialize, Serialize};

use super::validate::invalid;
use super::ConfigError;

/// Longest accepted `leeway_s`: a clock skew of more than five minutes is a broken clock.
const LEEWAY_S_MAX: u64 = 300;
/// Most tunnels one user may hold on a node, whatever a token claims.
pub const TUNNELS_PER_SUB_CEILING: u32 = 1_000_000;
/// Most entries of `origins_allowed`: each request's Origin is compared with every one.
const ORIGINS_ALLOWED_MAX: usize = 64;

/// How tunnels are authorised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Anyone may open a tunnel (the embedded default, logged as a warning at start-up).
    None,
    /// A JSON Web Token is needed to open, re-attach, subscribe and publish.
    Jwt,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub mode: AuthMode,
    /// A file holding the HS256 secret (its bytes, trailing newline trimmed); "" for none.
    pub hs256_secret_file: String,
    /// PEM public keys (RSA for RS256, P-256 for ES256, Ed25519 for EdDSA); several for rotation.
    pub public_key_files: Vec<String>,
    /// A JWKS document (`{"keys":[...]}`); a token's `kid` picks its key; "" for none.
    pub jwks_file: String,
    /// When set, a token's `aud` must name it.
    pub audience: String,
    /// When set, a token's `iss` must be it.
    pub issuer: String,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway_s: u64,
    /// Tunnels one user (`sub`) may hold on this node when the token has no `tunnels_max`.
    pub tunnels_per_sub_max: u32,
    /// Exact origins (`https://app.example`) allowed to open tunnels and send events; empty:
    /// any Origin.
    pub origins_allowed: Vec<String>,
    /// A file of bearer keys for `POST /publish`, one per line; "" for none (then only loopback
    /// peers without an `Origin` may publish).
    pub publish_keys_file: String,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            mode: AuthMode::None,
            hs256_secret_file: String::new(),
            public_key_files: Vec::new(),
            jwks_file: String::new(),
            audience: String::new(),
            issuer: String::new(),
            leeway_s: 5,
            tunnels_per_sub_max: 16,
            origins_allowed: Vec::new(),
            publish_keys_file: String::new(),
        }
    }
}

impl AuthConfig {
    /// True when tokens are required.
    pub fn tokens_required(&self) -> bool {
        self.mode == AuthMode::Jwt
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let has_key = !self.hs256_secret_file.is_empty()
            || !self.public_key_files.is_empty()
            || !self.jwks_file.is_empty();
        if self.mode == AuthMode::Jwt && !has_key {
            return Err(invalid(
                "auth.mode",
                "\"jwt\" needs a key: set auth.hs256_secret_file, auth.public_key_files or \
                 auth.jwks_file"
                    .into(),
            ));
        }
        if self.leeway_s > LEEWAY_S_MAX {
            return Err(invalid(
                "auth.leeway_s",
                format!("must be at most {LEEWAY_S_MAX} seconds"),
            ));
        }
        if !(1..=TUNNELS_PER_SUB_CEILING).contains(&self.tunnels_per_sub_max) {
            return Err(invalid(
                "auth.tunnels_per_sub_max",
                format!("must be a whole number from 1 to {TUNNELS_PER_SUB_CEILING}"),
            ));
        }
        if self.origins_allowed.len() > ORIGINS_ALLOWED_MAX {
            return Err(invalid(
                "auth.origins_allowed",
                format!("at most {ORIGINS_ALLOWED_MAX} origins"),
            ));
        }
        for origin in &self.origins_allowed {
            if !origin_valid(origin) {
                return Err(invalid(
                    "auth.origins_allowed",
                    format!(
                        "{origin:?} is not an origin: write scheme://host[:port] with no path, \
                         as a browser sends it (e.g. \"https://app.example\")"
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// `http(s)://host[:port]`, lowercase scheme, no path, query, user or trailing slash: the form a
/// browser's `Origin` header takes, so that comparing bytes is comparing origins.
fn origin_valid(origin: &str) -> bool {
    let Some(rest) = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
    else {
        return false;
    };
    // An IPv6 host is bracketed, and its colons are not the port's.
    let (host, port) = match rest.find(']') {
        Some(end) => {
            let (host, after) = rest.split_at(end + 1);
            match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None if after.is_empty() => (host, None),
                None => return false,
            }
        }
        None => match rest.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        },
    };
    let host_byte_ok = |b: u8| {
        b.is_ascii_lowercase()
            || b.is_ascii_digit()
            || matches!(b, b'.' | b'-' | b'[' | b']' | b':')
    };
    let host_ok = !host.is_empty() && host.bytes().all(host_byte_ok);
    let port_ok =
        port.is_none_or(|p| (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
    host_ok && port_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_checked_in_the_form_browsers_send() {
        for good in [
            "https://app.example",
            "http://localhost:8080",
            "http://127.0.0.1:3000",
            "https://[::1]:8443",
        ] {
            assert!(origin_valid(good), "{good}");
        }
        for bad in [
            "app.example",
            "https://app.example/",
            "https://App.example",
            "https://app.example/path",
            "ftp://app.example",
            "https://",
            "https://app.example:",
            "https://app.example:123456",
            "*",
            "null",
        ] {
            assert!(!origin_valid(bad), "{bad}");
        }
    }

    #[test]
    fn jwt_needs_a_key_and_bounds_hold() {
        let mut c = AuthConfig {
            mode: AuthMode::Jwt,
            ..AuthConfig::default()
        };
        assert!(c.validate().is_err());
        c.hs256_secret_file = "secret".into();
        assert!(c.validate().is_ok());
        c.tunnels_per_sub_max = 0;
        assert!(c.validate().is_err());
        c.tunnels_per_sub_max = 1;
        c.leeway_s = 301;
        assert!(c.validate().is_err());
        assert!(AuthConfig::default().validate().is_ok());
    }
}
