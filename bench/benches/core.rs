//! Microbenchmarks of the core: the Engine.IO and Socket.IO codecs, and a broadcast to 10,000
//! sockets (encoded once, one shared frame per recipient). Run with `cargo bench -p sio-bench`.

use bytes::Bytes;
use bytestring::ByteString;
use divan::{Bencher, black_box};
use serde_json::json;
use sio_bench::Loaded;
use sio_core::engine::payload::{decode_payload, encode_payload};
use sio_core::engine::{Frame, Packet};
use sio_core::socket::packet::{Decoder, encode_event};
use sio_core::socket::{EmitOptions, Payload, Target};

fn main() {
    divan::main();
}

#[divan::bench]
fn engine_decode_message() -> Result<Packet, sio_core::engine::DecodeError> {
    Packet::decode_text(black_box(&ByteString::from_static("4hello world")))
}

#[divan::bench]
fn engine_payload_round_trip() -> usize {
    let frames = [
        Frame::text_message("42[\"chat message\",\"hello\"]"),
        Frame::Binary(Bytes::from_static(&[1, 2, 3, 4, 5, 6, 7, 8])),
        Frame::text_message("3"),
    ];
    let body = encode_payload(black_box(&frames));
    let text = ByteString::try_from(body).unwrap_or_default();
    decode_payload(&text).len()
}

#[divan::bench]
fn socketio_encode_event(bencher: Bencher) {
    let payload = Payload::from_args(&("hello", json!({ "user": "alice", "n": [1, 2, 3] })))
        .unwrap_or_default();
    bencher.bench(|| encode_event("/", black_box("chat message"), black_box(&payload), None));
}

#[divan::bench]
fn socketio_decode_event() -> bool {
    let mut decoder = Decoder::new(10);
    decoder
        .decode_text(black_box(
            "2[\"chat message\",\"hello\",{\"user\":\"alice\",\"n\":[1,2,3]}]",
        ))
        .is_ok()
}

#[divan::bench]
fn socketio_decode_binary_event() -> bool {
    let mut decoder = Decoder::new(10);
    let _ = decoder.decode_text(black_box(
        "51-[\"upload\",{\"_placeholder\":true,\"num\":0}]",
    ));
    decoder
        .decode_binary(black_box(Bytes::from_static(&[0; 64])))
        .is_ok()
}

#[divan::bench(args = [1_000, 10_000], sample_count = 20)]
fn broadcast_to_sockets(bencher: Bencher, sockets: usize) {
    let mut loaded = Loaded::new(sockets);
    let nsp = loaded
        .server
        .find_namespace("/")
        .unwrap_or_else(|| loaded.server.namespace("/"));
    let target = Target::Rooms {
        nsp,
        rooms: vec![],
        except: vec![],
    };
    let payload = Payload::from_args(&("news", 1)).unwrap_or_default();
    bencher.bench_local(|| {
        let now = loaded.now;
        let _ = loaded
            .server
            .emit(now, &target, "broadcast", &payload, EmitOptions::default());
        assert_eq!(loaded.drain(), sockets);
    });
}
