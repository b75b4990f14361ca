//! Loading the verification keys named by `[auth]`: an HS256 secret, PEM public keys and a JWKS
//! document. Each key carries the one algorithm it may verify (never `none`, never a family),
//! so a token cannot pick a weaker algorithm than its key was made for.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};

use crate::config::AuthConfig;

/// Largest key file read: a JWKS of a few dozen RSA keys fits many times over.
const KEY_FILE_BYTES_MAX: u64 = 1024 * 1024;
/// An HS256 secret shorter than the hash (RFC 7518 §3.2) is refused.
const HS256_SECRET_BYTES_MIN: usize = 32;

/// One verification key.
pub struct Key {
    /// The JWKS `kid`, when the key came from one.
    pub kid: Option<String>,
    pub algorithm: Algorithm,
    pub key: DecodingKey,
    /// Where it came from, for start-up messages.
    pub source: String,
}

/// Why the keys could not be loaded; names the config key and the file (if any).
#[derive(Debug, thiserror::Error)]
#[error("{key}: {}{message}", if file.is_empty() { String::new() } else { format!("{file}: ") })]
pub struct KeyError {
    pub key: &'static str,
    pub file: String,
    pub message: String,
}

fn read(key: &'static str, file: &str) -> Result<Vec<u8>, KeyError> {
    let error = |message: String| KeyError {
        key,
        file: file.to_owned(),
        message,
    };
    let meta = std::fs::metadata(file).map_err(|e| error(e.to_string()))?;
    if meta.len() > KEY_FILE_BYTES_MAX {
        return Err(error(format!(
            "larger than {KEY_FILE_BYTES_MAX} bytes: not a key file"
        )));
    }
    std::fs::read(file).map_err(|e| error(e.to_string()))
}

/// Every key `config` names, in the order named.
pub fn load(config: &AuthConfig) -> Result<Vec<Key>, KeyError> {
    let mut keys = Vec::new();
    if !config.hs256_secret_file.is_empty() {
        let file = &config.hs256_secret_file;
        let mut secret = read("auth.hs256_secret_file", file)?;
        while secret.last().is_some_and(|b| matches!(b, b'\n' | b'\r')) {
            secret.pop();
        }
        if secret.len() < HS256_SECRET_BYTES_MIN {
            return Err(KeyError {
                key: "auth.hs256_secret_file",
                file: file.clone(),
                message: format!(
                    "the secret has {} bytes; HS256 needs at least {HS256_SECRET_BYTES_MIN}",
                    secret.len()
                ),
            });
        }
        keys.push(Key {
            kid: None,
            algorithm: Algorithm::HS256,
            key: DecodingKey::from_secret(&secret).map_err(|e| KeyError {
                key: "auth.hs256_secret_file",
                file: file.clone(),
                message: e.to_string(),
            })?,
            source: "hs256_secret_file".to_owned(),
        });
    }
    for file in &config.public_key_files {
        let pem = read("auth.public_key_files", file)?;
        keys.push(pem_key(&pem, file)?);
    }
    if !config.jwks_file.is_empty() {
        let file = &config.jwks_file;
        let text = read("auth.jwks_file", file)?;
        let set: JwkSet = serde_json::from_slice(&text).map_err(|e| KeyError {
            key: "auth.jwks_file",
            file: file.clone(),
            message: format!("not a JWKS document: {e}"),
        })?;
        for (i, jwk) in set.keys.iter().enumerate() {
            let error = |message: String| KeyError {
                key: "auth.jwks_file",
                file: file.clone(),
                message: format!("key {i}: {message}"),
            };
            let algorithm = jwk_algorithm(&jwk.algorithm, jwk.common.key_algorithm)
                .map_err(|m| error(m.to_owned()))?;
            let key = DecodingKey::from_jwk(jwk).map_err(|e| error(e.to_string()))?;
            keys.push(Key {
                kid: jwk.common.key_id.clone(),
                algorithm,
                key,
                source: format!("jwks_file key {i}"),
            });
        }
    }
    Ok(keys)
}

/// A PEM public key: RSA (RS256), P-256 (ES256) or Ed25519 (EdDSA).
fn pem_key(pem: &[u8], file: &str) -> Result<Key, KeyError> {
    let found = |algorithm, key| Key {
        kid: None,
        algorithm,
        key,
        source: file.to_owned(),
    };
    if let Ok(key) = DecodingKey::from_ec_pem(pem) {
        return Ok(found(Algorithm::ES256, key));
    }
    if let Ok(key) = DecodingKey::from_ed_pem(pem) {
        return Ok(found(Algorithm::EdDSA, key));
    }
    if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
        return Ok(found(Algorithm::RS256, key));
    }
    Err(KeyError {
        key: "auth.public_key_files",
        file: file.to_owned(),
        message: "not a PEM public key (RSA, P-256 or Ed25519)".to_owned(),
    })
}

/// The algorithm a JWK verifies: its `alg` when given (one of the supported ones), else the one
/// its key type implies.
fn jwk_algorithm(
    params: &AlgorithmParameters,
    alg: Option<KeyAlgorithm>,
) -> Result<Algorithm, &'static str> {
    let implied = match params {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
        AlgorithmParameters::EllipticCurve(_) => return Err("only the P-256 curve is supported"),
        AlgorithmParameters::OctetKeyPair(_) => Algorithm::EdDSA,
        AlgorithmParameters::OctetKey(_) => Algorithm::HS256,
        _ => return Err("unsupported key type"),
    };
    let named = match alg {
        None => return Ok(implied),
        Some(KeyAlgorithm::RS256) => Algorithm::RS256,
        Some(KeyAlgorithm::ES256) => Algorithm::ES256,
        Some(KeyAlgorithm::EdDSA) => Algorithm::EdDSA,
        Some(KeyAlgorithm::HS256) => Algorithm::HS256,
        Some(_) => return Err("unsupported alg (RS256, ES256, EdDSA or HS256)"),
    };
    if named != implied {
        return Err("alg does not fit the key type");
    }
    Ok(named)
}
