//! What a token check costs: verifying a token when a tunnel opens (HS256, ES256, EdDSA), and
//! a re-attach (the token found in the request head, verified, its user compared with the
//! tunnel's), without and with the shard's token cache. The keys below are throwaway keys made
//! for this benchmark only.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use router::auth::{Auth, TokenCache};
use router::config::{AuthConfig, AuthMode};
use router::wire::http1::{parse_head, Limits, Status};
use router::wire::query::Params;

const HS256_SECRET: &str = "bench-secret-0123456789abcdef-0123456789";
const ES256_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgXcu4FhR4pJc4oGop
g/WapufsF03xRGsrPjbkOZ6cd5+hRANCAASXFt4OMJf8lp8yL6nnI8Ex18iioUVR
mFPo050cV4hKZ+nysZegON8mO0dexZpUvtsQR5R0Jc2D/QrkBicuB6HP
-----END PRIVATE KEY-----
";
const ES256_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAElxbeDjCX/JafMi+p5yPBMdfIoqFF
UZhT6NOdHFeISmfp8rGXoDjfJjtHXsWaVL7bEEeUdCXNg/0K5AYnLgehzw==
-----END PUBLIC KEY-----
";
const ED25519_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIHNRm34dyX3HOgkRTqaw98M7ATaX/d/mzFYpYl/Ie+Eh
-----END PRIVATE KEY-----
";
const ED25519_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAL3NiymKaiQo/zRORVINAATOszY81rO7PCpVCEXsi1KA=
-----END PUBLIC KEY-----
";

fn auth() -> Auth {
    let dir = std::env::temp_dir().join(format!("router-bench-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("key file");
        path.to_str().expect("utf-8 path").to_owned()
    };
    let config = AuthConfig {
        mode: AuthMode::Jwt,
        hs256_secret_file: write("hs256", HS256_SECRET),
        public_key_files: vec![
            write("es256.pem", ES256_PUBLIC),
            write("ed.pem", ED25519_PUBLIC),
        ],
        audience: "router".into(),
        ..AuthConfig::default()
    };
    let auth = Auth::load(&config).expect("keys load");
    let _ = std::fs::remove_dir_all(&dir);
    auth
}

/// A token as a backend would mint it: a user, a few patterns, an hour of validity.
fn token(algorithm: Algorithm, key: &EncodingKey) -> String {
    let claims = serde_json::json!({
        "sub": "user-1234567",
        "aud": "router",
        "exp": jsonwebtoken::get_current_timestamp() + 3600,
        "subscribe": ["/chat/*", "/news", "/users/1234567/*"],
        "publish": ["/chat/*"],
    });
    encode(&Header::new(algorithm), &claims, key).expect("token")
}

fn verify(c: &mut Criterion) {
    let auth = auth();
    let hs = token(
        Algorithm::HS256,
        &EncodingKey::from_secret(HS256_SECRET.as_bytes()).expect("key"),
    );
    let es = token(
        Algorithm::ES256,
        &EncodingKey::from_ec_pem(ES256_PRIVATE.as_bytes()).expect("key"),
    );
    let ed = token(
        Algorithm::EdDSA,
        &EncodingKey::from_ed_pem(ED25519_PRIVATE.as_bytes()).expect("key"),
    );
    let mut g = c.benchmark_group("auth");
    for (name, token) in [("hs256", &hs), ("es256", &es), ("eddsa", &ed)] {
        assert!(auth.verify(token).is_ok(), "{name} verifies");
        g.bench_function(format!("open/{name}"), |b| {
            b.iter(|| auth.verify(black_box(token)))
        });
    }
    // A re-attach: the head is parsed anyway; the token is found, verified, and its user
    // compared with the tunnel's.
    let raw = format!(
        "GET /tunnel?format=sse&id=1-17-0123456789abcdef&last=1-9 HTTP/1.1\r\nHost: r\r\n\
         Authorization: Bearer {es}\r\nAccept: text/event-stream\r\n\r\n"
    );
    let limits = Limits {
        header_bytes_max: 8192,
        header_count_max: 64,
        body_bytes_max: 65536,
    };
    let Ok(Status::Complete(head)) = parse_head(raw.as_bytes(), &limits) else {
        panic!("the head parses");
    };
    let params = Params::parse(head.query()).expect("query");
    let owner: Box<str> = "user-1234567".into();
    g.bench_function("reattach/es256", |b| {
        b.iter(|| {
            let grant = auth.check_request(black_box(&head), &params);
            matches!(grant, Ok(Some(g)) if g.sub == owner)
        })
    });
    // The same re-attach on a shard that verified the token before (its token cache).
    let mut cache = TokenCache::new(16_384);
    let now_s = jsonwebtoken::get_current_timestamp();
    g.bench_function("reattach/es256_cached", |b| {
        b.iter(|| {
            let token = Auth::token_of(black_box(&head), &params).expect("token");
            matches!(cache.verify(&auth, token, now_s), Ok(g) if g.sub == owner)
        })
    });
    g.finish();
}

criterion_group!(benches, verify);
criterion_main!(benches);
