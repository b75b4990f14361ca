//! Start-up: the router refuses a port that another listener already holds, rather than
//! silently sharing it through SO_REUSEPORT.

use router::config::Config;

#[test]
fn refuses_a_port_already_in_use() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = holder.local_addr().unwrap().to_string();
    let config = Config::from_args(["--listen", addr.as_str(), "--shards", "2"].map(String::from))
        .expect("valid config");
    let err = match router::server::start(config) {
        Ok(_) => panic!("the router started on a port in use"),
        Err(e) => e,
    };
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    assert!(err.to_string().contains(&addr), "{err}");
}
