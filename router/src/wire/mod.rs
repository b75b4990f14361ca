//! Sans-IO codecs: HTTP/1.1, query strings, JSON fields, datagrams, tunnel formats, templates.

pub mod datagram;
pub mod format;
pub mod http1;
pub mod json;
pub mod query;
pub mod template;
pub mod websocket;
