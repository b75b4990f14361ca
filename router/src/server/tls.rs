//! TLS termination on the second listener (`[tls]`): each connection's handshake is done here
//! with rustls, then its plaintext is pumped through a local socket pair whose other end is
//! served by the connection loop exactly like a plain TCP connection (the same requests,
//! attachments, handoffs and limits). The pump is the only TLS-aware code: the connection
//! loop, its non-blocking sends and its readiness polls stay as they are, and a plain
//! connection pays nothing for TLS existing.
//!
//! Costs of a TLS tunnel over a plain one: two more descriptors (the pair), the rustls state
//! and the pump's two read buffers (results/idle-memory/ has the measured figure).

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, Splitable};
use monoio::net::{TcpListener, TcpStream, UnixStream};
use monoio_rustls::{ServerTlsStream, TlsAcceptor};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

use crate::config::TlsConfig;
use crate::conn;
use crate::limits::{ACCEPT_RETRY_MS, CLOSE_WAIT_MS, TLS_PUMP_BUFFER_BYTES};
use crate::metrics::Metrics;
use crate::shard::mesh::Peer;
use crate::shard::Shard;

/// Why the certificate could not be loaded; names the config key and the file.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {file}: {message}")]
pub struct TlsError {
    pub key: &'static str,
    pub file: String,
    pub message: String,
}

/// The rustls configuration of `[tls]`, its files read; `None` when TLS is off.
pub fn load(config: &TlsConfig) -> Result<Option<Arc<ServerConfig>>, TlsError> {
    if !config.enabled() {
        return Ok(None);
    }
    let error = |key: &'static str, file: &str, message: String| TlsError {
        key,
        file: file.to_owned(),
        message,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&config.cert_file)
        .map_err(|e| error("tls.cert_file", &config.cert_file, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| error("tls.cert_file", &config.cert_file, e.to_string()))?;
    if certs.is_empty() {
        return Err(error(
            "tls.cert_file",
            &config.cert_file,
            "holds no PEM certificate".to_owned(),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&config.key_file)
        .map_err(|e| error("tls.key_file", &config.key_file, e.to_string()))?;
    #[allow(
        deprecated,
        reason = "ring has no post-quantum key exchange; aws-lc-rs, which has, needs cmake to build"
    )]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| error("tls", "", e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| error("tls.key_file", &config.key_file, e.to_string()))?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(Arc::new(server)))
}

/// Accepts TLS connections on `listener` for the shard.
pub async fn accept_loop(shard: Rc<Shard>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let Some(config) = shard.tls() else {
                    continue;
                };
                if super::refused_over_limit(&shard) {
                    continue;
                }
                let _ = stream.set_nodelay(true);
                monoio::spawn(serve(shard.clone(), stream, Peer::of(peer), config));
            }
            Err(e) => {
                tracing::warn!(shard = shard.id, error = %e, "TLS accept failed");
                monoio::time::sleep(Duration::from_millis(ACCEPT_RETRY_MS)).await;
            }
        }
    }
}

/// One TLS connection: the handshake (within `header_read_timeout_ms`), then the connection
/// loop on one end of a socket pair and the pump between the other end and the TLS stream.
async fn serve(shard: Rc<Shard>, tcp: TcpStream, peer: Peer, config: Arc<ServerConfig>) {
    let timeout = Duration::from_millis(shard.config().header_read_timeout_ms);
    let acceptor = TlsAcceptor::from(config);
    let tls = match monoio::time::timeout(timeout, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(_)) | Err(_) => {
            Metrics::add(&shard.metrics.tls_handshakes_failed, 1);
            return;
        }
    };
    Metrics::add(&shard.metrics.tls_handshakes, 1);
    // Counted until the pump ends, however it ends: a stopping shard waits for it, so the last
    // bytes the connection loop wrote (a drain's close frame) reach the client.
    let _pumping = Pumping::new(&shard);
    let (served, pumped) = match pair() {
        Ok(pair) => pair,
        Err(e) => {
            tracing::warn!(shard = shard.id, error = %e, "cannot make a socket pair for TLS");
            return;
        }
    };
    Metrics::add(&shard.metrics.connections_accepted, 1);
    monoio::spawn(conn::serve(
        shard.clone(),
        served,
        peer,
        None,
        BytesMut::new(),
    ));
    pump(tls, pumped).await;
}

/// Keeps `tls_connections_open` right however the pump ends.
struct Pumping<'a>(&'a Shard);

impl<'a> Pumping<'a> {
    fn new(shard: &'a Shard) -> Pumping<'a> {
        Metrics::add(&shard.metrics.tls_connections_open, 1);
        Pumping(shard)
    }
}

impl Drop for Pumping<'_> {
    fn drop(&mut self) {
        Metrics::sub(&self.0.metrics.tls_connections_open, 1);
    }
}

/// A connected pair of local stream sockets: the end the connection loop serves (typed as a
/// TCP stream, which it is to every call the loop makes: send, recv, readiness), and the end
/// the pump holds.
fn pair() -> io::Result<(TcpStream, UnixStream)> {
    let mut fds = [0i32; 2];
    // SAFETY: socketpair writes two descriptors into `fds`, which we then own.
    let made = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if made != 0 {
        return Err(io::Error::last_os_error());
    }
    let [served, pumped] = fds;
    // SAFETY: both descriptors were just made for us and nothing else owns them.
    let (served, pumped) = unsafe { (OwnedFd::from_raw_fd(served), OwnedFd::from_raw_fd(pumped)) };
    let served = TcpStream::from_std(std::net::TcpStream::from(served))?;
    let pumped = UnixStream::from_std(std::os::unix::net::UnixStream::from(pumped))?;
    Ok((served, pumped))
}

/// Moves bytes both ways until either side ends, then ends the other: a client's close ends
/// the served connection, and the router closing the connection sends the client a TLS
/// close_notify.
async fn pump(tls: ServerTlsStream<TcpStream>, local: UnixStream) {
    let (mut tls_in, mut tls_out) = tls.into_split();
    let (mut local_in, mut local_out) = local.into_split();
    let inbound = async {
        let mut buf = Vec::with_capacity(TLS_PUMP_BUFFER_BYTES);
        loop {
            let (read, back) = tls_in.read(buf).await;
            buf = back;
            match read {
                Ok(n) if n > 0 => {
                    let (written, back) = local_out.write_all(buf).await;
                    buf = back;
                    if written.is_err() {
                        break;
                    }
                    buf.clear();
                }
                _ => break,
            }
        }
        let _ = local_out.shutdown().await;
    };
    let outbound = async {
        let mut buf = Vec::with_capacity(TLS_PUMP_BUFFER_BYTES);
        loop {
            let (read, back) = local_in.read(buf).await;
            buf = back;
            match read {
                Ok(n) if n > 0 => {
                    let (written, back) = tls_out.write_all(buf).await;
                    buf = back;
                    if written.is_err() || tls_out.flush().await.is_err() {
                        break;
                    }
                    buf.clear();
                }
                _ => break,
            }
        }
        let _ = tls_out.shutdown().await;
    };
    // Once the router has closed its side (and a close_notify went out), the client gets a
    // bounded while to close its own: a client that never does cannot hold the pump.
    let (closed, closed_seen) = futures_channel::oneshot::channel::<()>();
    let outbound = async {
        outbound.await;
        let _ = closed.send(());
    };
    let inbound = async {
        monoio::select! {
            () = inbound => {},
            () = async {
                let _ = closed_seen.await;
                monoio::time::sleep(Duration::from_millis(CLOSE_WAIT_MS)).await;
            } => {},
        }
    };
    monoio::join!(inbound, outbound);
}
