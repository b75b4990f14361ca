//! Datagrams (`wire::datagram`): what a publish builds from the path and the data a client sent.
//!
//! Input: a path, a newline, then the data. As `/publish/<path>` and `/events` do, the path is
//! validated and the data compacted as JSON before the datagram is encoded; the raw data is
//! also encoded as a binary datagram, as a WebSocket binary publish does. Each datagram must be
//! valid JSON naming the same id and path, and carry the same data back.
#![no_main]

use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use router::pubsub::path;
use router::wire::datagram::{Datagram, DatagramId};
use router::wire::json;
use router_fuzz::{json_depth_max, same_json};

fuzz_target!(|input: &[u8]| {
    let Some(newline) = input.iter().position(|&b| b == b'\n') else {
        return;
    };
    let (path_bytes, data) = (&input[..newline], &input[newline + 1..]);
    let Ok(path) = std::str::from_utf8(path_bytes) else {
        return;
    };
    if path::validate(path).is_err() {
        return;
    }
    let id = DatagramId {
        shard: u16::from(input[0]),
        seq: input.len() as u64,
    };

    // The publish time rides in the datagram's buffer after the JSON: any value must come back
    // and leave the JSON untouched.
    let published_ns = u64::from(input[0]).rotate_right(8) | input.len() as u64;
    if let Ok(data_json) = json::compact(data, json_depth_max()) {
        let datagram = Datagram::encode(id, path, &data_json, published_ns);
        check_fields(&datagram, id, path);
        assert_eq!(datagram.published_ns(), published_ns);
        assert_eq!(datagram.binary(), None);
        let fields = json::parse_fields(datagram.json(), json_depth_max() + 1)
            .expect("a datagram is a JSON object");
        let data_again = fields.data.expect("a datagram has data");
        assert!(
            same_json(&data_again, &data_json),
            "the data changed in the datagram"
        );
    }

    let datagram = Datagram::encode_binary(id, path, data, published_ns);
    check_fields(&datagram, id, path);
    assert_eq!(datagram.published_ns(), published_ns);
    assert_eq!(datagram.binary(), Some(data));
    let json = datagram.json();
    let b64 = json
        .strip_suffix(b"\"}")
        .and_then(|head| head.rsplit(|&b| b == b'"').next())
        .expect("a binary datagram ends with its base64 string");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("the binary field is base64");
    assert_eq!(decoded, data);
});

fn check_fields(datagram: &Datagram, id: DatagramId, path: &str) {
    assert_eq!(datagram.id(), id.to_string().as_bytes());
    assert_eq!(datagram.path(), path);
    assert!(!datagram.is_empty());
    assert_eq!(datagram.copied(), *datagram);
    let fields = json::parse_fields(datagram.json(), json_depth_max() + 1)
        .expect("a datagram is a JSON object");
    assert_eq!(fields.path.as_deref(), Some(path));
    let again =
        json::compact(datagram.json(), json_depth_max() + 1).expect("a datagram is valid JSON");
    assert!(same_json(&again, datagram.json()));
}
