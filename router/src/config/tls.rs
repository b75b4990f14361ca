//! The `[tls]` section: the router terminating TLS itself on a second listener
//! (docs/operations.md, "TLS"). Only the settings and their validation live here; the
//! certificate is loaded by the server.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::validate::invalid;
use super::ConfigError;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Where the TLS listener listens (`IP:PORT`, beside `listen`); "" for no TLS.
    pub listen: String,
    /// The certificate chain, PEM, leaf first.
    pub cert_file: String,
    /// The certificate's private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key_file: String,
}

impl TlsConfig {
    /// True when the router terminates TLS.
    pub fn enabled(&self) -> bool {
        !self.listen.is_empty()
    }

    /// The TLS listener's address. Call after `validate`, which guarantees it parses when TLS
    /// is on.
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.listen.parse().ok()
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !self.enabled() {
            if !self.cert_file.is_empty() || !self.key_file.is_empty() {
                return Err(invalid(
                    "tls.listen",
                    "tls.cert_file and tls.key_file are set but tls.listen is not: set the \
                     address of the TLS listener (e.g. \"0.0.0.0:8443\")"
                        .into(),
                ));
            }
            return Ok(());
        }
        if self.listen.parse::<SocketAddr>().is_err() {
            return Err(invalid(
                "tls.listen",
                format!(
                    "must be a socket address such as 0.0.0.0:8443, got {:?}",
                    self.listen
                ),
            ));
        }
        if self.cert_file.is_empty() || self.key_file.is_empty() {
            return Err(invalid(
                "tls.cert_file",
                "a TLS listener needs tls.cert_file and tls.key_file".into(),
            ));
        }
        Ok(())
    }
}
