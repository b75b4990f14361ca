//! Direct, non-blocking socket writes and reads for attached tunnels.
//!
//! An attached connection keeps one readiness poll on its socket armed for as long as it is
//! attached, to notice the peer closing or sending. monoio's reads and writes borrow the stream
//! mutably, so awaiting one means dropping that poll, and an io_uring poll dropped while armed
//! is cancelled in the kernel: a cancel and a new poll per delivery, whose lookup among the
//! shard's thousands of armed polls was the router's largest kernel cost under load.
//!
//! So attached connections write and read through a shared reference instead: `send(2)` and
//! `recv(2)` with `MSG_DONTWAIT`, which take what the socket has room or data for at once, and
//! monoio's readiness waits (`writable`, `readable`), which take `&self`, when it has none.

use crate::limits::RECV_CHUNK_BYTES;
use bytes::{Buf, BytesMut};
use monoio::net::TcpStream;
use std::io;
use std::os::fd::AsRawFd;

/// Sends what the socket takes now; `WouldBlock` when its buffer is full.
pub fn send_now(stream: &TcpStream, bytes: &[u8]) -> io::Result<usize> {
    // SAFETY: the pointer and length describe `bytes`, alive for the call; the descriptor is
    // `stream`'s, open while it is borrowed.
    let sent = unsafe {
        libc::send(
            stream.as_raw_fd(),
            bytes.as_ptr().cast(),
            bytes.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sent as usize)
}

/// Writes all of `out`, waiting for room when the socket buffer is full. False when the peer
/// is gone.
pub async fn send_all(stream: &TcpStream, mut out: BytesMut) -> bool {
    while !out.is_empty() {
        match send_now(stream, &out) {
            Ok(sent) => out.advance(sent),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if stream.writable(false).await.is_err() {
                    return false;
                }
            }
            Err(_) => return false,
        }
    }
    true
}

/// Reads what has arrived into `buf`'s spare room (made at least [`RECV_CHUNK_BYTES`] first):
/// the bytes read, `Ok(0)` at the end of the stream, `WouldBlock` when nothing is there.
pub fn recv_now(stream: &TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
    if buf.capacity() - buf.len() < RECV_CHUNK_BYTES / 2 {
        buf.reserve(RECV_CHUNK_BYTES);
    }
    let spare = buf.spare_capacity_mut();
    // SAFETY: the kernel writes at most `spare.len()` bytes into `spare`, which `buf` owns; the
    // descriptor is `stream`'s, open while it is borrowed.
    let read = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            spare.as_mut_ptr().cast(),
            spare.len(),
            libc::MSG_DONTWAIT,
        )
    };
    if read < 0 {
        return Err(io::Error::last_os_error());
    }
    let read = read as usize;
    // SAFETY: the kernel initialised the first `read` bytes of the spare room.
    unsafe { buf.set_len(buf.len() + read) };
    Ok(read)
}

/// Reads at least one byte into `buf`, waiting for the socket to become readable. `Ok(0)` at
/// the end of the stream.
/// True when the peer has sent bytes the kernel holds and nobody read: closing the socket then
/// makes the kernel answer with a reset, which may destroy what was written last.
pub fn has_unread(stream: &TcpStream) -> bool {
    let mut byte = 0u8;
    // SAFETY: the kernel writes at most one byte into `byte`; the descriptor is `stream`'s, open
    // while it is borrowed. MSG_PEEK leaves the byte in the socket.
    let read = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            std::ptr::from_mut(&mut byte).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    read > 0
}

pub async fn recv(stream: &TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
    loop {
        match recv_now(stream, buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => stream.readable(false).await?,
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use monoio::io::{AsyncReadRent, AsyncWriteRentExt};

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .enable_timer()
            .build()
            .expect("runtime")
            .block_on(future)
    }

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = monoio::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = TcpStream::connect(addr).await.expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        (client, server)
    }

    #[test]
    fn sends_everything_even_past_a_full_socket_buffer() {
        block_on(async {
            let (mut client, server) = pair().await;
            // Far more than the socket buffers hold, so the sender must wait for room.
            let total = 8 * 1024 * 1024;
            let payload: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
            let expected = payload.clone();
            let sender = monoio::spawn(async move {
                let sent = send_all(&server, BytesMut::from(&payload[..])).await;
                (sent, server)
            });
            let mut received = Vec::with_capacity(total);
            while received.len() < total {
                let (n, chunk) = client.read(vec![0u8; 65536]).await;
                let n = n.expect("read");
                assert!(n > 0, "sender closed early");
                received.extend_from_slice(&chunk[..n]);
            }
            let (sent, _server) = sender.await;
            assert!(sent);
            assert_eq!(received, expected);
        });
    }

    #[test]
    fn reads_what_arrived_then_would_block_then_sees_the_end() {
        block_on(async {
            let (mut client, server) = pair().await;
            let mut buf = BytesMut::new();
            let nothing = recv_now(&server, &mut buf).expect_err("nothing sent yet");
            assert_eq!(nothing.kind(), io::ErrorKind::WouldBlock);
            let (written, _) = client.write_all(b"hello".to_vec()).await;
            written.expect("write");
            assert_eq!(recv(&server, &mut buf).await.expect("recv"), 5);
            assert_eq!(&buf[..], b"hello");
            drop(client);
            assert_eq!(
                recv(&server, &mut buf).await.expect("recv"),
                0,
                "end of stream"
            );
        });
    }

    #[test]
    fn sending_to_a_closed_peer_fails_instead_of_raising_sigpipe() {
        block_on(async {
            let (client, server) = pair().await;
            drop(client);
            // The first send may still be taken (the reset arrives in answer to it).
            let mut failed = false;
            for _ in 0..100 {
                if !send_all(&server, BytesMut::from(&b"x"[..])).await {
                    failed = true;
                    break;
                }
                monoio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            assert!(failed, "sends to a closed peer keep succeeding");
        });
    }
}
