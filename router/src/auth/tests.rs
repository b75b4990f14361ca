//! Token checks on tokens signed here with HS256 (the black-box tests in `tests/auth.rs` use
//! tokens minted by PyJWT, with ES256 too).

use super::*;
use crate::config::{AuthConfig, AuthMode};
use crate::wire::http1::{parse_head, Limits, Status};
use jsonwebtoken::{encode, EncodingKey, Header};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

fn now_s() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn auth_with(tweak: impl FnOnce(&mut AuthConfig)) -> Auth {
    let dir = std::env::temp_dir().join(format!(
        "router-auth-test-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dir.join("secret");
    std::fs::write(&secret, [SECRET, b"\n"].concat()).unwrap();
    let mut config = AuthConfig {
        mode: AuthMode::Jwt,
        hs256_secret_file: secret.to_str().unwrap().to_owned(),
        ..AuthConfig::default()
    };
    tweak(&mut config);
    let auth = Auth::load(&config).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    auth
}

fn sign(claims: serde_json::Value) -> String {
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET).unwrap(),
    )
    .unwrap()
}

#[test]
fn a_valid_token_yields_its_grant() {
    let auth = auth_with(|_| {});
    let token = sign(serde_json::json!({
        "sub": "alice", "exp": now_s() + 60,
        "subscribe": ["/chat/*", "/news"], "publish": ["/chat/*"], "tunnels_max": 3
    }));
    let grant = auth.verify(&token).unwrap();
    assert_eq!(&*grant.sub, "alice");
    assert_eq!(grant.tunnels_max, 3);
    assert!(grant.may_subscribe(&Pattern::parse("/chat/*").unwrap()));
    assert!(grant.may_subscribe(&Pattern::parse("/chat/room1").unwrap()));
    assert!(grant.may_subscribe(&Pattern::parse("/chat/room1/*").unwrap()));
    assert!(grant.may_subscribe(&Pattern::parse("/news").unwrap()));
    assert!(!grant.may_subscribe(&Pattern::parse("/news/*").unwrap()));
    assert!(!grant.may_subscribe(&Pattern::parse("/*").unwrap()));
    assert!(!grant.may_subscribe(&Pattern::parse("/chatter").unwrap()));
    assert!(grant.may_publish("/chat/room1"));
    assert!(!grant.may_publish("/news"));
}

#[test]
fn the_default_allowance_applies_without_a_claim() {
    let auth = auth_with(|c| c.tunnels_per_sub_max = 7);
    let token = sign(serde_json::json!({"sub": "bob", "exp": now_s() + 60}));
    let grant = auth.verify(&token).unwrap();
    assert_eq!(grant.tunnels_max, 7);
    assert!(grant.subscribe.is_empty() && grant.publish.is_empty());
}

#[test]
fn bad_tokens_are_refused_and_expiry_is_told_apart() {
    let auth = auth_with(|c| c.leeway_s = 0);
    let exp = now_s() + 60;
    assert_eq!(auth.verify("garbage"), Err(TokenError::Invalid));
    assert_eq!(auth.verify(""), Err(TokenError::Invalid));
    // Another secret.
    let forged = encode(
        &Header::default(),
        &serde_json::json!({"sub": "a", "exp": exp}),
        &EncodingKey::from_secret(b"another secret, 32 bytes long!!!").unwrap(),
    )
    .unwrap();
    assert_eq!(auth.verify(&forged), Err(TokenError::Invalid));
    // `alg: none`, hand-made (no library signs it).
    let b64 = |s: &str| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    };
    let none = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"JWT"}"#),
        b64(&format!(r#"{{"sub":"a","exp":{exp}}}"#))
    );
    assert_eq!(auth.verify(&none), Err(TokenError::Invalid));
    // Expired, missing sub, missing exp.
    let expired = sign(serde_json::json!({"sub": "a", "exp": now_s() - 10}));
    assert_eq!(auth.verify(&expired), Err(TokenError::Expired));
    let no_sub = sign(serde_json::json!({"exp": exp}));
    assert_eq!(auth.verify(&no_sub), Err(TokenError::Invalid));
    let no_exp = sign(serde_json::json!({"sub": "a"}));
    assert_eq!(auth.verify(&no_exp), Err(TokenError::Invalid));
    // Not yet valid.
    let early = sign(serde_json::json!({"sub": "a", "exp": exp, "nbf": now_s() + 30}));
    assert_eq!(auth.verify(&early), Err(TokenError::Invalid));
    // A pattern that is not one, too many patterns, an allowance out of range.
    let bad_pattern = sign(serde_json::json!({"sub": "a", "exp": exp, "subscribe": ["chat"]}));
    assert_eq!(auth.verify(&bad_pattern), Err(TokenError::Invalid));
    let many: Vec<String> = (0..=GRANT_PATTERNS_MAX).map(|i| format!("/p{i}")).collect();
    let too_many = sign(serde_json::json!({"sub": "a", "exp": exp, "publish": many}));
    assert_eq!(auth.verify(&too_many), Err(TokenError::Invalid));
    let zero = sign(serde_json::json!({"sub": "a", "exp": exp, "tunnels_max": 0}));
    assert_eq!(auth.verify(&zero), Err(TokenError::Invalid));
}

#[test]
fn audience_and_issuer_are_required_once_configured() {
    let auth = auth_with(|c| {
        c.audience = "router".into();
        c.issuer = "https://id.example".into();
    });
    let exp = now_s() + 60;
    let good = sign(serde_json::json!({
        "sub": "a", "exp": exp, "aud": "router", "iss": "https://id.example"
    }));
    assert!(auth.verify(&good).is_ok());
    let wrong_aud = sign(serde_json::json!({
        "sub": "a", "exp": exp, "aud": "other", "iss": "https://id.example"
    }));
    assert_eq!(auth.verify(&wrong_aud), Err(TokenError::Invalid));
    let no_aud = sign(serde_json::json!({"sub": "a", "exp": exp, "iss": "https://id.example"}));
    assert_eq!(auth.verify(&no_aud), Err(TokenError::Invalid));
    let wrong_iss = sign(serde_json::json!({"sub": "a", "exp": exp, "aud": "router", "iss": "x"}));
    assert_eq!(auth.verify(&wrong_iss), Err(TokenError::Invalid));
    // Without a configured audience, a token's `aud` is not held against it.
    let open = auth_with(|_| {});
    let with_aud = sign(serde_json::json!({"sub": "a", "exp": exp, "aud": "whoever"}));
    assert!(open.verify(&with_aud).is_ok());
}

fn head(raw: &str) -> crate::wire::http1::RequestHead {
    let limits = Limits {
        header_bytes_max: 8192,
        header_count_max: 64,
        body_bytes_max: 1 << 20,
    };
    match parse_head(raw.as_bytes(), &limits).unwrap() {
        Status::Complete(head) => head,
        Status::Partial => panic!("partial head"),
    }
}

#[test]
fn a_token_comes_from_the_header_the_cookie_or_the_query() {
    let h = head("GET /tunnel?token=q HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer  hdr \r\nCookie: a=1; router_token=c\r\n\r\n");
    let params = Params::parse("token=q").unwrap();
    assert_eq!(Auth::token_of(&h, &params), Some("hdr"));
    let h = head(
        "GET /tunnel HTTP/1.1\r\nHost: x\r\nCookie: a=1\r\nCookie: router_token=c; b=2\r\n\r\n",
    );
    assert_eq!(Auth::token_of(&h, &params), Some("c"));
    let h = head("GET /tunnel HTTP/1.1\r\nHost: x\r\nAuthorization: Basic abc\r\n\r\n");
    assert_eq!(Auth::token_of(&h, &params), Some("q"));
    let none = Params::parse("").unwrap();
    assert_eq!(Auth::token_of(&h, &none), None);
}

#[test]
fn origins_and_publisher_keys() {
    let dir = std::env::temp_dir().join(format!("router-auth-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let keys = dir.join("keys");
    std::fs::write(
        &keys,
        "# backends\nkey-number-one-0123456789\n\nkey-number-two-0123456789\n",
    )
    .unwrap();
    let auth = Auth::load(&AuthConfig {
        origins_allowed: vec!["https://app.example".into()],
        publish_keys_file: keys.to_str().unwrap().to_owned(),
        ..AuthConfig::default()
    })
    .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(!auth.tokens_required());
    let with = |extra: &str| {
        head(&format!(
            "POST /publish/a HTTP/1.1\r\nHost: x\r\n{extra}\r\n"
        ))
    };
    assert!(auth.origin_allowed(&with("")));
    assert!(auth.origin_allowed(&with("Origin: https://app.example\r\n")));
    assert!(!auth.origin_allowed(&with("Origin: https://evil.example\r\n")));
    assert!(!auth.origin_allowed(&with("Origin: https://app.example.evil\r\n")));
    assert!(auth.has_publish_keys());
    assert!(auth.publish_key_valid(&with("Authorization: Bearer key-number-two-0123456789\r\n")));
    assert!(!auth.publish_key_valid(&with("Authorization: Bearer key-number-two-012345678\r\n")));
    assert!(!auth.publish_key_valid(&with("")));
    assert!(Auth::open().origin_allowed(&with("Origin: https://evil.example\r\n")));
}

#[test]
fn key_files_are_checked_at_load() {
    let dir = std::env::temp_dir().join(format!("router-auth-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let short = dir.join("short");
    std::fs::write(&short, "too short").unwrap();
    let not_pem = dir.join("not.pem");
    std::fs::write(
        &not_pem,
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
    )
    .unwrap();
    let jwt = |c: AuthConfig| {
        Auth::load(&AuthConfig {
            mode: AuthMode::Jwt,
            ..c
        })
    };
    let e = jwt(AuthConfig {
        hs256_secret_file: short.to_str().unwrap().into(),
        ..AuthConfig::default()
    })
    .err()
    .unwrap();
    assert!(e.to_string().contains("at least 32"), "{e}");
    let e = jwt(AuthConfig {
        public_key_files: vec![not_pem.to_str().unwrap().into()],
        ..AuthConfig::default()
    })
    .err()
    .unwrap();
    assert!(e.to_string().contains("not a PEM public key"), "{e}");
    let e = jwt(AuthConfig {
        jwks_file: dir.join("missing").to_str().unwrap().into(),
        ..AuthConfig::default()
    })
    .err()
    .unwrap();
    assert!(e.to_string().starts_with("auth.jwks_file"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_cache_serves_a_verified_token_until_it_expires() {
    let auth = auth_with(|c| c.leeway_s = 0);
    let mut cache = TokenCache::new(2);
    let now = now_s();
    let token = sign(serde_json::json!({"sub": "a", "exp": now + 60}));
    let first = cache.verify(&auth, &token, now).unwrap();
    let again = cache.verify(&auth, &token, now).unwrap();
    assert!(std::rc::Rc::ptr_eq(&first, &again), "served from the cache");
    // Past its exp, the cached grant is not served: the token is verified again (by the
    // library, on the real clock, where it is still valid, so a new grant comes back).
    let later = cache.verify(&auth, &token, now + 61).unwrap();
    assert!(!std::rc::Rc::ptr_eq(&first, &later), "verified anew");
    let expired = sign(serde_json::json!({"sub": "a", "exp": now - 10}));
    assert_eq!(
        cache.verify(&auth, &expired, now).map(|_| ()),
        Err(TokenError::Expired)
    );
    // A refused token is never cached; the oldest entry goes when the cache is full.
    assert_eq!(
        cache.verify(&auth, "garbage", now).map(|_| ()),
        Err(TokenError::Invalid)
    );
    let tokens: Vec<String> = (0..3)
        .map(|i| sign(serde_json::json!({"sub": format!("u{i}"), "exp": now + 60})))
        .collect();
    let grants: Vec<_> = tokens
        .iter()
        .map(|t| cache.verify(&auth, t, now).unwrap())
        .collect();
    assert_eq!(cache.len(), 2);
    let newest = cache.verify(&auth, &tokens[2], now).unwrap();
    assert!(std::rc::Rc::ptr_eq(&newest, &grants[2]));
    let oldest = cache.verify(&auth, &tokens[0], now).unwrap();
    assert!(
        !std::rc::Rc::ptr_eq(&oldest, &grants[0]),
        "evicted, verified anew"
    );
}
