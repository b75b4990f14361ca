//! `loadgen grip-origin`: a fast GRIP origin for Pushpin (<https://pushpin.org/docs/>).
//!
//! `GET /sub/<channel>` answers an empty `200` with `Grip-Hold: stream` and
//! `Grip-Channel: <channel>`: Pushpin then holds its client's connection open as an SSE
//! stream and pushes whatever is published to the channel. Everything else gets `404`.
//! Connections are keep-alive (Pushpin reaches the origin through zurl, which reuses them)
//! and may pipeline; one thread per connection with blocking I/O.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};

use router::wire::http1::{BodyKind, Method};

use crate::baseline::{park_forever, spawn_accept_loops, valid_channel, Conn, Fail};

/// `loadgen grip-origin`'s command line.
#[derive(clap::Args, Debug)]
pub struct GripOriginArgs {
    /// Where to listen.
    #[arg(long, value_name = "IP:PORT")]
    pub listen: SocketAddr,
}

/// Starts the origin and serves until killed.
///
/// # Errors
/// The listening socket cannot be set up.
pub fn run(args: &GripOriginArgs) -> Result<(), String> {
    let listen = args.listen;
    let addr = start(listen).map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    eprintln!("loadgen grip-origin: listening on {addr}");
    park_forever()
}

/// Binds `listen`, serves in the background and returns the bound address (useful with
/// port 0).
pub fn start(listen: SocketAddr) -> io::Result<SocketAddr> {
    spawn_accept_loops(listen, 1, "grip", serve_connection)
}

fn serve_connection(stream: TcpStream) {
    let mut conn = Conn::new(stream);
    let mut answer = Vec::with_capacity(256);
    match serve_requests(&mut conn, &mut answer) {
        Ok(()) => {}
        Err(fail) => conn.refuse(fail),
    }
}

/// Answers requests until the client closes the connection or asks to.
fn serve_requests(conn: &mut Conn, answer: &mut Vec<u8>) -> Result<(), Fail> {
    while let Some(head) = conn.next_head()? {
        // A chunked body would have to be decoded to find the next request; Content-Length
        // ones are read and ignored so the next request starts in the right place.
        if head.body == BodyKind::Chunked {
            return Err(Fail::Status(400));
        }
        conn.body(&head)?;
        conn.consume(&head);
        answer.clear();
        let channel = match head.method {
            Method::Get => head
                .path()
                .strip_prefix("/sub/")
                .filter(|channel| valid_channel(channel)),
            _ => None,
        };
        match channel {
            Some(channel) => write!(
                answer,
                "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
                 Cache-Control: no-cache\r\nGrip-Hold: stream\r\nGrip-Channel: {channel}\r\n\
                 Content-Length: 0\r\n"
            )?,
            None => answer.extend_from_slice(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n"),
        }
        if !head.keep_alive {
            answer.extend_from_slice(b"Connection: close\r\n");
        }
        answer.extend_from_slice(b"\r\n");
        conn.stream().write_all(answer)?;
        if !head.keep_alive {
            return Ok(());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baseline::tests::{assert_silent, connect, read_response};

    fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
        head.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    fn assert_holds(head: &str, channel: &str) {
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert_eq!(header(head, "Grip-Hold"), Some("stream"), "{head}");
        assert_eq!(header(head, "Grip-Channel"), Some(channel), "{head}");
        assert_eq!(
            header(head, "Content-Type"),
            Some("text/event-stream"),
            "{head}"
        );
    }

    #[test]
    fn holds_subscriptions_and_404s_the_rest_on_one_connection() {
        let addr = start("127.0.0.1:0".parse().unwrap()).expect("start");
        let mut client = connect(addr);

        // Two requests one after the other on a keep-alive connection.
        client
            .write_all(b"GET /sub/abc HTTP/1.1\r\nHost: origin\r\nGrip-Sig: x\r\n\r\n")
            .expect("write");
        let (head, body) = read_response(&mut client);
        assert_holds(&head, "abc");
        assert!(body.is_empty());
        client
            .write_all(b"GET /elsewhere HTTP/1.1\r\nHost: origin\r\n\r\n")
            .expect("write");
        let (head, _) = read_response(&mut client);
        assert!(head.starts_with("HTTP/1.1 404 "), "{head}");

        // Then three pipelined in one write, one of them with a body to skip.
        client
            .write_all(
                b"POST /sub/abc HTTP/1.1\r\nHost: origin\r\nContent-Length: 3\r\n\r\nxyz\
                  GET /sub/a_b HTTP/1.1\r\nHost: origin\r\n\r\n\
                  GET /sub/bad-name HTTP/1.1\r\nHost: origin\r\n\r\n",
            )
            .expect("write");
        let (head, _) = read_response(&mut client);
        assert!(head.starts_with("HTTP/1.1 404 "), "{head}");
        let (head, _) = read_response(&mut client);
        assert_holds(&head, "a_b");
        let (head, _) = read_response(&mut client);
        assert!(head.starts_with("HTTP/1.1 404 "), "{head}");
        assert_silent(&mut client);
    }

    #[test]
    fn refuses_garbage_and_keeps_serving() {
        let addr = start("127.0.0.1:0".parse().unwrap()).expect("start");
        let mut bad = connect(addr);
        bad.write_all(b"\x00garbage\r\n\r\n").expect("write");
        let (head, _) = read_response(&mut bad);
        assert!(head.starts_with("HTTP/1.1 400 "), "{head}");

        // A chunked body cannot be skipped; a request without Host is not HTTP/1.1.
        for request in [
            &b"POST /sub/c HTTP/1.1\r\nHost: origin\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                [..],
            b"GET /sub/c HTTP/1.1\r\n\r\n",
        ] {
            let mut bad = connect(addr);
            bad.write_all(request).expect("write");
            let (head, _) = read_response(&mut bad);
            assert!(head.starts_with("HTTP/1.1 400 "), "{head}");
        }

        let mut good = connect(addr);
        good.write_all(b"GET /sub/c HTTP/1.1\r\nHost: origin\r\n\r\n")
            .expect("write");
        let (head, _) = read_response(&mut good);
        assert_holds(&head, "c");
        // HTTP/1.0 may leave Host out, and is answered and closed.
        let mut old = connect(addr);
        old.write_all(b"GET /sub/d HTTP/1.0\r\n\r\n")
            .expect("write");
        let (head, _) = read_response(&mut old);
        assert_holds(&head, "d");
        assert_eq!(header(&head, "Connection"), Some("close"), "{head}");
    }
}
