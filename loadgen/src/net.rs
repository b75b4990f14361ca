//! Sockets and clocks: connecting from a chosen source address, and the machine-wide
//! monotonic clock that lets processes compare timestamps.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{FromRawFd, OwnedFd};

use monoio::net::TcpStream;

/// Microseconds on `CLOCK_MONOTONIC`: one clock for every process of the machine, so a
/// publish time taken in one process can be compared with a receive time in another.
pub fn monotonic_us() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the struct we pass; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000 + (ts.tv_nsec as u64) / 1_000
}

/// Connects to `target`, from `source` when given. The source is bound with
/// `IP_BIND_ADDRESS_NO_PORT`, so the kernel picks the port at connect time from the
/// (source, target) pair's own ~28k ports instead of the source address's.
pub async fn connect(target: SocketAddr, source: Option<Ipv4Addr>) -> io::Result<TcpStream> {
    let Some(source) = source else {
        let stream = TcpStream::connect_addr(target).await?;
        let _ = stream.set_nodelay(true);
        return Ok(stream);
    };
    let SocketAddr::V4(_) = target else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "source addresses are IPv4; the target is IPv6",
        ));
    };
    let fd = bound_socket(source)?;
    // A loopback connect usually completes at once; otherwise wait for writability.
    let addr = sockaddr_in(match target {
        SocketAddr::V4(v4) => v4,
        SocketAddr::V6(_) => unreachable!("checked above"),
    });
    // SAFETY: `addr` is a valid sockaddr_in of the size given.
    let rc = unsafe {
        libc::connect(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            (&addr as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    let pending = if rc == 0 {
        false
    } else {
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINPROGRESS) {
            return Err(err);
        }
        true
    };
    let std_stream = std::net::TcpStream::from(fd);
    let stream = TcpStream::from_std(std_stream)?;
    if pending {
        stream.writable(false).await?;
        socket_error(&stream)?;
    }
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

fn sockaddr_in(addr: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*addr.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// A non-blocking TCP socket bound to `source` with the port left to connect time.
fn bound_socket(source: Ipv4Addr) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned right away.
    let raw = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let one: libc::c_int = 1;
    // SAFETY: the option value is a c_int of the size given.
    let rc = unsafe {
        libc::setsockopt(
            raw,
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let addr = sockaddr_in(SocketAddrV4::new(source, 0));
    // SAFETY: `addr` is a valid sockaddr_in of the size given.
    let rc = unsafe {
        libc::bind(
            raw,
            (&addr as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        let err = io::Error::last_os_error();
        return Err(io::Error::new(
            err.kind(),
            format!("bind to source {source}: {err}"),
        ));
    }
    Ok(fd)
}

/// The pending error of a socket whose connect finished (`SO_ERROR`).
fn socket_error(stream: &TcpStream) -> io::Result<()> {
    let mut err: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `err`.
    let rc = unsafe {
        libc::getsockopt(
            std::os::fd::AsRawFd::as_raw_fd(stream),
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut err as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if err != 0 {
        return Err(io::Error::from_raw_os_error(err));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connects_from_the_given_source_address() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let target = listener.local_addr().expect("addr");
        let mut runtime = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .enable_timer()
            .build()
            .expect("runtime");
        let source = Ipv4Addr::new(127, 0, 3, 7);
        let local = runtime.block_on(async move {
            let stream = connect(target, Some(source)).await.expect("connects");
            stream.local_addr().expect("local addr")
        });
        let (_, peer) = listener.accept().expect("accepted");
        assert_eq!(local.ip(), std::net::IpAddr::V4(source));
        assert_eq!(peer, local);
    }

    #[test]
    fn a_refused_connect_is_an_error_not_a_hang() {
        // Bind then drop: nothing listens on the port now.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let mut runtime = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .enable_timer()
            .build()
            .expect("runtime");
        let result = runtime.block_on(async move {
            connect(
                SocketAddr::from(([127, 0, 0, 1], port)),
                Some(Ipv4Addr::new(127, 0, 3, 8)),
            )
            .await
        });
        assert!(result.is_err());
    }

    #[test]
    fn the_monotonic_clock_moves_forward() {
        let a = monotonic_us();
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert!(monotonic_us() >= a + 2_000);
    }
}
