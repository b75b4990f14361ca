//! Hot paths in memory: path matching, datagram encoding per format, the WebSocket frame codec,
//! the cross-shard ring.

use bytes::BytesMut;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use router::pubsub::path;
use router::wire::datagram::{Datagram, DatagramId};
use router::wire::format::{Envelope, Format, Formats};
use router_benches::{datagram, registry};

fn path_matching(c: &mut Criterion) {
    let mut g = c.benchmark_group("path");
    g.bench_function("validate", |b| {
        b.iter(|| path::validate(black_box("/app/room17/chat/thread/42")))
    });
    for tunnels in [1_000u32, 100_000] {
        let r = registry(tunnels, 100);
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(BenchmarkId::new("match_fanout", tunnels), &r, |b, r| {
            b.iter(|| {
                let mut n = 0u32;
                r.for_each_match(black_box("/app/room7/chat"), |slot| {
                    black_box(slot);
                    n += 1
                });
                n
            })
        });
    }
    g.finish();
}

fn encoding(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    let formats = Formats::default();
    let env = Envelope {
        cb: "parent.tunnel",
        tunnel: "0-1-0123456789abcdef",
    };
    g.bench_function("datagram_256B", |b| {
        b.iter(|| {
            Datagram::encode(
                DatagramId { shard: 1, seq: 99 },
                black_box("/app/room1/chat"),
                black_box(&[b'1'; 256][..]),
                black_box(0),
            )
        })
    });
    let d = datagram(256);
    for name in ["sse", "nul", "ndjson", "iframe"] {
        let format: Format = formats.get(name).expect("built-in");
        g.throughput(Throughput::Bytes(d.len() as u64));
        g.bench_function(BenchmarkId::new("envelope", name), |b| {
            let mut out = BytesMut::with_capacity(4096);
            b.iter(|| {
                out.clear();
                format.put_datagram(&mut out, d.json(), Some(d.id()), &env);
                out.len()
            })
        });
    }
    g.finish();
}

fn websocket(c: &mut Criterion) {
    use router::wire::websocket::decoder::{Decoder, Role};
    use router::wire::websocket::frame::{put_frame, put_masked_frame};
    use router::wire::websocket::mask::apply_mask;
    use router::wire::websocket::{Limits, OpCode};
    let mut g = c.benchmark_group("websocket");
    let payload = vec![b'x'; 1024];
    g.throughput(Throughput::Bytes(payload.len() as u64));
    g.bench_function("encode_text_1KiB", |b| {
        let mut out = BytesMut::with_capacity(2048);
        b.iter(|| {
            out.clear();
            put_frame(&mut out, OpCode::Text, true, false, black_box(&payload));
            out.len()
        })
    });
    g.bench_function("mask_1KiB", |b| {
        let mut data = payload.clone();
        b.iter(|| apply_mask(black_box(&mut data), [1, 2, 3, 4], 0))
    });
    let mut frame = BytesMut::new();
    put_masked_frame(
        &mut frame,
        OpCode::Text,
        true,
        false,
        [9, 8, 7, 6],
        &payload,
    );
    let limits = Limits {
        frame_bytes_max: 1 << 20,
        message_bytes_max: 1 << 20,
    };
    g.bench_function("decode_masked_text_1KiB", |b| {
        let mut decoder = Decoder::new(Role::Server, limits, None);
        b.iter(|| {
            let mut buf = frame.clone();
            decoder.decode(black_box(&mut buf)).ok()
        })
    });
    g.finish();
}

fn ring(c: &mut Criterion) {
    let mut g = c.benchmark_group("ring");
    g.throughput(Throughput::Elements(1));
    let d = datagram(64);
    g.bench_function("spsc_push_pop", |b| {
        let (mut tx, mut rx) = rtrb::RingBuffer::new(1024);
        b.iter(|| {
            let _ = tx.push(d.clone());
            rx.pop().ok()
        })
    });
    g.finish();
}

criterion_group!(benches, path_matching, encoding, websocket, ring);
criterion_main!(benches);
