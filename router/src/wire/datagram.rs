//! Datagrams: the JSON object every transport carries, built once per publish and shared.

use bytes::{BufMut, Bytes, BytesMut};
use std::fmt;

/// A datagram id: the publishing shard and its publish sequence. Unique for the router's lifetime
/// because each shard's sequence only grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatagramId {
    pub shard: u16,
    pub seq: u64,
}

impl fmt::Display for DatagramId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.shard, self.seq)
    }
}

const ID_PREFIX: &[u8] = br#"{"id":""#;
const PATH_PREFIX: &[u8] = br#"","path":""#;
const DATA_PREFIX: &[u8] = br#"","data":"#;
const BINARY_PREFIX: &[u8] = br#"","binary":""#;

/// Bytes of the publish time that ends every datagram's buffer (nanoseconds, little-endian).
pub const PUBLISHED_NS_BYTES: usize = 8;

/// One published datagram, `{"id":"<id>","path":"<path>","data":<json>}`, or for binary data
/// `{"id":..,"path":..,"binary":"<base64>"}` followed (in the same buffer) by the raw bytes that
/// WebSocket subscribers receive as a binary frame. Cloning shares the bytes, so a publish to
/// many tunnels holds one copy of the payload.
///
/// The buffer ends with the publish time (8 bytes, [`PUBLISHED_NS_BYTES`]), which the
/// publish-to-write latency histogram reads when a tunnel writes the datagram. The struct itself
/// has no room for it (two bytes of padding), and growing it would grow every replay-buffer
/// entry; in the shared buffer it costs 8 bytes per publish, whatever the fan-out.
#[derive(Clone, PartialEq, Eq)]
pub struct Datagram {
    bytes: Bytes,
    json_len: u32,
    id_len: u8,
    path_len: u8,
}

impl fmt::Debug for Datagram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Datagram")
            .field("json", &String::from_utf8_lossy(self.json()))
            .finish()
    }
}

impl Datagram {
    /// Encodes a datagram. `path` must be a validated path (no byte of it needs JSON escaping) and
    /// `data_json` one compact, valid JSON value; `published_ns` is the publish time on the
    /// process's monotonic clock (`metrics::monotonic_ns`).
    pub fn encode(id: DatagramId, path: &str, data_json: &[u8], published_ns: u64) -> Datagram {
        Datagram::build(id, path, [DATA_PREFIX, data_json, b"}"], b"", published_ns)
    }

    /// Encodes a binary datagram: base64 in the JSON for text transports, the raw bytes for
    /// WebSocket subscribers.
    pub fn encode_binary(id: DatagramId, path: &str, raw: &[u8], published_ns: u64) -> Datagram {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
        let value = [BINARY_PREFIX, b64.as_bytes(), b"\"}"];
        Datagram::build(id, path, value, raw, published_ns)
    }

    /// `value` is the value's prefix, the value and the object's end.
    fn build(
        id: DatagramId,
        path: &str,
        [value_prefix, value, suffix]: [&[u8]; 3],
        raw: &[u8],
        published_ns: u64,
    ) -> Datagram {
        let id_string = id.to_string();
        let id_text = id_string.as_bytes();
        let json_len = ID_PREFIX.len()
            + id_text.len()
            + PATH_PREFIX.len()
            + path.len()
            + value_prefix.len()
            + value.len()
            + suffix.len();
        let mut bytes = BytesMut::with_capacity(json_len + raw.len() + PUBLISHED_NS_BYTES);
        bytes.put_slice(ID_PREFIX);
        bytes.put_slice(id_text);
        bytes.put_slice(PATH_PREFIX);
        bytes.put_slice(path.as_bytes());
        bytes.put_slice(value_prefix);
        bytes.put_slice(value);
        bytes.put_slice(suffix);
        bytes.put_slice(raw);
        bytes.put_u64_le(published_ns);
        debug_assert!(
            path.len() <= u8::MAX as usize,
            "paths are at most 255 bytes"
        );
        Datagram {
            bytes: bytes.freeze(),
            json_len: json_len as u32,
            id_len: id_text.len() as u8,
            path_len: path.len() as u8,
        }
    }

    /// The encoded JSON object.
    pub fn json(&self) -> &[u8] {
        self.bytes.get(..self.json_len as usize).unwrap_or_default()
    }

    /// The raw bytes of a binary datagram.
    pub fn binary(&self) -> Option<&[u8]> {
        self.bytes
            .get(self.json_len as usize..self.len())
            .filter(|_| {
                self.json()
                    .get(self.value_start()..)
                    .is_some_and(|v| v.starts_with(BINARY_PREFIX))
            })
    }

    /// The payload as it was published: the raw bytes of a binary datagram, otherwise the JSON
    /// text of its `data` value.
    pub fn data(&self) -> &[u8] {
        if let Some(raw) = self.binary() {
            return raw;
        }
        let json = self.json();
        let start = self.value_start() + DATA_PREFIX.len();
        json.get(start..json.len().saturating_sub(1))
            .unwrap_or_default()
    }

    fn value_start(&self) -> usize {
        ID_PREFIX.len() + self.id_len as usize + PATH_PREFIX.len() + self.path_len as usize
    }

    /// The datagram id as text.
    pub fn id(&self) -> &[u8] {
        let start = ID_PREFIX.len();
        self.bytes
            .get(start..start + self.id_len as usize)
            .unwrap_or_default()
    }

    /// The path it was published on.
    pub fn path(&self) -> &str {
        let start = ID_PREFIX.len() + self.id_len as usize + PATH_PREFIX.len();
        self.bytes
            .get(start..start + self.path_len as usize)
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or_default()
    }

    /// The same datagram in memory of its own. A shard that fans a datagram out from another
    /// shard takes a copy first: every queued reference counts on the shared bytes, and counting
    /// from two cores at once makes that counter's cache line bounce between them.
    pub fn copied(&self) -> Datagram {
        Datagram {
            bytes: Bytes::copy_from_slice(&self.bytes),
            ..*self
        }
    }

    /// When it was published, on the process's monotonic clock (nanoseconds).
    pub fn published_ns(&self) -> u64 {
        let mut ns = [0u8; PUBLISHED_NS_BYTES];
        if let Some(tail) = self.bytes.get(self.len()..) {
            if tail.len() == PUBLISHED_NS_BYTES {
                ns.copy_from_slice(tail);
            }
        }
        u64::from_le_bytes(ns)
    }

    /// Encoded size in bytes (the publish time not included), what replay and send-queue
    /// limits count.
    pub fn len(&self) -> usize {
        self.bytes.len().saturating_sub(PUBLISHED_NS_BYTES)
    }

    /// Never true: a datagram always has an id and a path.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// The control datagram every attachment receives first.
pub fn tunnel_control(tunnel_id: &str, new: bool, keepalive_ms: u64) -> Bytes {
    Bytes::from(format!(
        r#"{{"type":"tunnel","tunnel":"{tunnel_id}","new":{new},"keepalive_ms":{keepalive_ms}}}"#
    ))
}

/// Keepalive control datagram.
pub const KEEPALIVE: &[u8] = br#"{"type":"keepalive"}"#;
/// Sent before a replay when the requested `last` id is no longer in the replay buffer.
pub const GAP: &[u8] = br#"{"type":"gap"}"#;
/// Control datagram sent before a connection is closed because its tunnel's token expired.
pub const TOKEN_EXPIRED: &[u8] = br#"{"type":"error","error":"token expired"}"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_is_equal_but_shares_no_memory() {
        let id = DatagramId { shard: 0, seq: 7 };
        for d in [
            Datagram::encode(id, "/a/b", b"[1,2]", 5),
            Datagram::encode_binary(id, "/a/b", &[0, 255, 3], 6),
        ] {
            let copy = d.copied();
            assert_eq!(copy, d);
            assert_eq!((copy.id(), copy.path()), (d.id(), d.path()));
            assert_eq!(copy.binary(), d.binary());
            assert_eq!(copy.published_ns(), d.published_ns());
            assert_ne!(copy.bytes.as_ptr(), d.bytes.as_ptr());
        }
    }

    #[test]
    fn encodes_and_exposes_fields() {
        let d = Datagram::encode(
            DatagramId { shard: 1, seq: 42 },
            "/chat/room1",
            br#"{"a":1}"#,
            u64::MAX - 1,
        );
        assert_eq!(
            d.json(),
            br#"{"id":"1-42","path":"/chat/room1","data":{"a":1}}"#
        );
        assert_eq!(d.id(), b"1-42");
        assert_eq!(d.path(), "/chat/room1");
        assert_eq!(d.len(), d.json().len());
        assert_eq!(d.binary(), None);
        assert_eq!(d.data(), br#"{"a":1}"#);
        assert_eq!(d.published_ns(), u64::MAX - 1);
        let clone = d.clone();
        assert_eq!(
            clone.json().as_ptr(),
            d.json().as_ptr(),
            "clones share bytes"
        );
    }

    #[test]
    fn binary_datagrams_keep_their_bytes_apart_from_the_publish_time() {
        let raw = [0u8, 1, 2, 255];
        let d = Datagram::encode_binary(DatagramId { shard: 2, seq: 3 }, "/b", &raw, 77);
        assert_eq!(d.binary(), Some(&raw[..]));
        assert_eq!(d.data(), &raw[..]);
        assert_eq!(d.json(), br#"{"id":"2-3","path":"/b","binary":"AAEC/w=="}"#);
        assert_eq!(d.len(), d.json().len() + raw.len());
        assert_eq!(d.published_ns(), 77);
    }

    #[test]
    fn control_datagrams() {
        assert_eq!(
            &tunnel_control("0-1-ab", true, 15000)[..],
            br#"{"type":"tunnel","tunnel":"0-1-ab","new":true,"keepalive_ms":15000}"#
        );
    }
}
