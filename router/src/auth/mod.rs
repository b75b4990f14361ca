//! Who may open, re-attach, subscribe and publish: JSON Web Tokens checked against the keys of
//! `[auth]`, the grant a token carries (its user, the paths it may subscribe to and publish
//! on, its tunnel allowance), the Origin allow-list and the publisher keys. Pure checks, no
//! I/O once loaded: the handlers decide when to call them.

pub mod cache;
pub mod keys;

use std::collections::HashSet;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{decode, decode_header, Validation};
use serde::Deserialize;

use crate::config::{AuthConfig, TUNNELS_PER_SUB_CEILING};
use crate::pubsub::Pattern;
use crate::wire::http1::RequestHead;
use crate::wire::query::Params;

pub use cache::TokenCache;
pub use keys::KeyError;

/// Name of the cookie a token may come in.
pub const TOKEN_COOKIE: &str = "router_token";
/// Most patterns a token may list under `subscribe` or under `publish`.
pub const GRANT_PATTERNS_MAX: usize = 64;
/// Longest `sub` accepted: it is kept per user and compared at every re-attach.
pub const SUB_BYTES_MAX: usize = 255;

/// Seconds since the Unix epoch, the clock of a token's `exp`.
pub fn unix_now_s() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// No token in the request.
    Missing,
    /// Malformed, badly signed, signed with no key we hold, or with claims we cannot accept.
    Invalid,
    /// Signed well, but past its `exp` (and the leeway).
    Expired,
}

impl TokenError {
    pub fn message(self) -> &'static str {
        match self {
            TokenError::Missing => "a token is required",
            TokenError::Invalid => "invalid token",
            TokenError::Expired => "token expired",
        }
    }
}

/// What a valid token allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The user.
    pub sub: Box<str>,
    /// Patterns the tunnel may subscribe to (a requested pattern must lie inside one).
    pub subscribe: Vec<Pattern>,
    /// Patterns the tunnel may publish on.
    pub publish: Vec<Pattern>,
    /// Tunnels this user may hold on the node.
    pub tunnels_max: u32,
    /// When the token expires, in seconds since the Unix epoch.
    pub exp_s: u64,
}

impl Grant {
    /// True when every path `pattern` reaches is one the grant's `subscribe` reaches.
    pub fn may_subscribe(&self, pattern: &Pattern) -> bool {
        self.subscribe.iter().any(|g| covers(g, pattern))
    }

    /// True when the grant's `publish` reaches `path`.
    pub fn may_publish(&self, path: &str) -> bool {
        self.publish.iter().any(|g| g.matches(path))
    }
}

/// True when `outer` reaches every path `inner` reaches.
fn covers(outer: &Pattern, inner: &Pattern) -> bool {
    match (outer, inner) {
        (Pattern::Exact(o), Pattern::Exact(i)) => o == i,
        (Pattern::Exact(_), Pattern::Subtree(_)) => false,
        (Pattern::Subtree(_), inner) => outer.matches(inner.key()),
    }
}

/// The claims we read; unknown ones are ignored.
#[derive(Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    #[serde(default)]
    subscribe: Vec<String>,
    #[serde(default)]
    publish: Vec<String>,
    #[serde(default)]
    tunnels_max: Option<u32>,
}

/// The checks of `[auth]`, built once at start-up.
pub struct Auth {
    tokens_required: bool,
    keys: Vec<keys::Key>,
    audience: Option<String>,
    issuer: Option<String>,
    leeway_s: u64,
    tunnels_per_sub_max: u32,
    origins_allowed: Vec<String>,
    publish_keys: Vec<Vec<u8>>,
}

impl Auth {
    /// Reads the key files `config` names.
    pub fn load(config: &AuthConfig) -> Result<Auth, KeyError> {
        let keys = if config.tokens_required() {
            keys::load(config)?
        } else {
            Vec::new()
        };
        if config.tokens_required() && keys.is_empty() {
            return Err(KeyError {
                key: "auth.mode",
                file: String::new(),
                message: "\"jwt\" needs at least one key".to_owned(),
            });
        }
        let publish_keys = if config.publish_keys_file.is_empty() {
            Vec::new()
        } else {
            read_publish_keys(&config.publish_keys_file)?
        };
        let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        Ok(Auth {
            tokens_required: config.tokens_required(),
            keys,
            audience: non_empty(&config.audience),
            issuer: non_empty(&config.issuer),
            leeway_s: config.leeway_s,
            tunnels_per_sub_max: config.tunnels_per_sub_max,
            origins_allowed: config.origins_allowed.clone(),
            publish_keys,
        })
    }

    /// No tokens, no origin list, no publisher keys: what `Config::default()` gives.
    pub fn open() -> Auth {
        Auth {
            tokens_required: false,
            keys: Vec::new(),
            audience: None,
            issuer: None,
            leeway_s: 0,
            tunnels_per_sub_max: TUNNELS_PER_SUB_CEILING,
            origins_allowed: Vec::new(),
            publish_keys: Vec::new(),
        }
    }

    pub fn tokens_required(&self) -> bool {
        self.tokens_required
    }

    /// How many keys were loaded, for the start-up report.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// True when `[auth]` names files (keys), which a reload reads again.
    pub fn reads_files(&self) -> bool {
        self.tokens_required || !self.publish_keys.is_empty()
    }

    /// The grant of `token`, checked against our keys and `[auth]`'s claims rules.
    pub fn verify(&self, token: &str) -> Result<Grant, TokenError> {
        let header = decode_header(token).map_err(|_| TokenError::Invalid)?;
        // A `kid` picks its key; without one, every key made for the token's algorithm is tried.
        let candidates = self
            .keys
            .iter()
            .filter(|k| k.algorithm == header.alg && (header.kid.is_none() || k.kid == header.kid));
        let mut outcome = Err(TokenError::Invalid);
        for key in candidates {
            match decode::<Claims>(token, &key.key, &self.validation(key.algorithm)) {
                Ok(data) => {
                    outcome = self.grant(data.claims);
                    break;
                }
                Err(e) if *e.kind() == ErrorKind::ExpiredSignature => {
                    // The signature was checked before the claims: this key made the token.
                    outcome = Err(TokenError::Expired);
                    break;
                }
                Err(_) => {}
            }
        }
        outcome
    }

    fn validation(&self, algorithm: jsonwebtoken::Algorithm) -> Validation {
        let mut v = Validation::new(algorithm);
        v.leeway = self.leeway_s;
        v.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        match &self.audience {
            Some(aud) => {
                v.set_audience(&[aud]);
                required.push("aud");
            }
            // We are nobody's audience: a token's `aud` cannot be checked against anything.
            None => v.validate_aud = false,
        }
        if let Some(iss) = &self.issuer {
            v.set_issuer(&[iss]);
            required.push("iss");
        }
        v.required_spec_claims = required
            .into_iter()
            .map(str::to_owned)
            .collect::<HashSet<_>>();
        v
    }

    fn grant(&self, claims: Claims) -> Result<Grant, TokenError> {
        if claims.sub.is_empty() || claims.sub.len() > SUB_BYTES_MAX {
            return Err(TokenError::Invalid);
        }
        let patterns = |texts: Vec<String>| -> Result<Vec<Pattern>, TokenError> {
            if texts.len() > GRANT_PATTERNS_MAX {
                return Err(TokenError::Invalid);
            }
            texts
                .iter()
                .map(|t| Pattern::parse(t).map_err(|_| TokenError::Invalid))
                .collect()
        };
        let tunnels_max = match claims.tunnels_max {
            None => self.tunnels_per_sub_max,
            Some(n) if (1..=TUNNELS_PER_SUB_CEILING).contains(&n) => n,
            Some(_) => return Err(TokenError::Invalid),
        };
        Ok(Grant {
            sub: claims.sub.into_boxed_str(),
            subscribe: patterns(claims.subscribe)?,
            publish: patterns(claims.publish)?,
            tunnels_max,
            exp_s: claims.exp,
        })
    }

    /// The token a request carries: `Authorization: Bearer`, then the `router_token` cookie,
    /// then the `token` query parameter (the only way for EventSource and JSONP across origins).
    pub fn token_of<'r>(head: &'r RequestHead, params: &'r Params<'_>) -> Option<&'r str> {
        bearer(head)
            .or_else(|| cookie(head, TOKEN_COOKIE))
            .or_else(|| params.get("token"))
            .filter(|t| !t.is_empty())
    }

    /// Clock skew allowed on `exp` and `nbf`.
    pub fn leeway_s(&self) -> u64 {
        self.leeway_s
    }

    /// The request's token when tokens are required (`Missing` without one); `Ok(None)` when
    /// they are not.
    pub fn request_token<'r>(
        &self,
        head: &'r RequestHead,
        params: &'r Params<'_>,
    ) -> Result<Option<&'r str>, TokenError> {
        if !self.tokens_required {
            return Ok(None);
        }
        Self::token_of(head, params)
            .ok_or(TokenError::Missing)
            .map(Some)
    }

    /// The grant of the request's token when tokens are required; `Ok(None)` when they are not.
    /// Uncached: a shard goes through its [`TokenCache`] instead.
    pub fn check_request(
        &self,
        head: &RequestHead,
        params: &Params<'_>,
    ) -> Result<Option<Grant>, TokenError> {
        if !self.tokens_required {
            return Ok(None);
        }
        let token = Self::token_of(head, params).ok_or(TokenError::Missing)?;
        self.verify(token).map(Some)
    }

    /// True when the request's `Origin` (if any) may use the tunnel API.
    pub fn origin_allowed(&self, head: &RequestHead) -> bool {
        if self.origins_allowed.is_empty() {
            return true;
        }
        match head.header("origin") {
            None => true,
            Some(origin) => self
                .origins_allowed
                .iter()
                .any(|allowed| allowed.as_bytes() == origin),
        }
    }

    /// `auth.origins_allowed`.
    pub fn origins_allowed(&self) -> &[String] {
        &self.origins_allowed
    }

    /// Where the request's `Origin` stands in `auth.origins_allowed`: `None` when the list is
    /// empty (anyone may read), `Some(None)` when the request names no allowed origin,
    /// `Some(Some(i))` for the i-th.
    pub fn origin_index(&self, head: &RequestHead) -> Option<Option<usize>> {
        if self.origins_allowed.is_empty() {
            return None;
        }
        let origin = head.header("origin");
        Some(origin.and_then(|o| self.origins_allowed.iter().position(|a| a.as_bytes() == o)))
    }

    /// True when publisher keys are configured.
    pub fn has_publish_keys(&self) -> bool {
        !self.publish_keys.is_empty()
    }

    /// True when the request's bearer is one of the publisher keys (compared in constant time).
    pub fn publish_key_valid(&self, head: &RequestHead) -> bool {
        let Some(presented) = bearer(head) else {
            return false;
        };
        let presented = presented.as_bytes();
        // Every key is compared, so the time taken does not say which one came close.
        self.publish_keys
            .iter()
            .fold(false, |found, key| found | constant_time_eq(key, presented))
    }
}

fn read_publish_keys(file: &str) -> Result<Vec<Vec<u8>>, KeyError> {
    let error = |message: String| KeyError {
        key: "auth.publish_keys_file",
        file: file.to_owned(),
        message,
    };
    let text = std::fs::read_to_string(file).map_err(|e| error(e.to_string()))?;
    let keys: Vec<Vec<u8>> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.as_bytes().to_vec())
        .collect();
    if keys.is_empty() {
        return Err(error("holds no key (one per line)".to_owned()));
    }
    if let Some(short) = keys.iter().find(|k| k.len() < 16) {
        return Err(error(format!(
            "a key of {} characters: publisher keys need at least 16",
            short.len()
        )));
    }
    Ok(keys)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token of `Authorization: Bearer <token>`.
fn bearer(head: &RequestHead) -> Option<&str> {
    let value = std::str::from_utf8(head.header("authorization")?).ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The value of cookie `name`, from any `Cookie` header (RFC 6265 §5.4: `a=1; b=2`).
fn cookie<'h>(head: &'h RequestHead, name: &str) -> Option<&'h str> {
    head.headers()
        .filter(|(n, _)| n.eq_ignore_ascii_case("cookie"))
        .filter_map(|(_, v)| std::str::from_utf8(v).ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.trim_matches('"'))
}

#[cfg(test)]
mod tests;
