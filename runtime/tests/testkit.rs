//! The test kit runs real handlers against in-memory clients in virtual time.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use sio_runtime::testkit::{Refused, TestKit};
use sio_runtime::{AckError, ConnectError, DisconnectReason, ListenerId, Payload, ServerConfig};

type Log = Arc<Mutex<Vec<String>>>;

fn kit_with_handlers() -> (TestKit, Log) {
    let kit = TestKit::new(ServerConfig::default());
    let log: Log = Arc::default();
    let on_connect = log.clone();
    let io = kit.io().clone();
    kit.io().on_connection(move |socket| {
        let log = on_connect.clone();
        let io = io.clone();
        socket.on_disconnect(move |socket, reason| {
            log.lock()
                .unwrap()
                .push(format!("{} {reason}", socket.id()));
        });
        socket.on("join", |socket, room: String| {
            socket.join(&room);
            let _ = socket.ack(&socket.rooms().len());
        });
        socket.on("shout", |socket, (room, text): (String, String)| {
            let _ = socket.to(room).emit("heard", &text);
        });
        socket.on("ask", |socket, timeout_ms: u64| {
            let id = socket.id().to_owned();
            let _ = socket
                .timeout(Duration::from_millis(timeout_ms))
                .emit_with_ack("question", &(), move |io, result| {
                    let answer = match result {
                        Ok(reply) => json!(reply),
                        Err(AckError::Timeout) => json!("timeout"),
                        Err(other) => json!(other.to_string()),
                    };
                    if let Some(mut socket) = io.socket("/", &id) {
                        let _ = socket.emit("answer", &answer);
                    }
                });
        });
        socket.on("store", move |socket, n: u32| {
            let Some(ack) = socket.ack_later() else {
                return;
            };
            // Taken: nothing is left to answer here.
            assert!(!socket.wants_ack());
            assert!(!socket.ack(&"now").unwrap());
            io.runtime().spawn(Box::pin(async move {
                let _ = ack.send(&(n + 1)).await;
            }));
        });
        socket.on_async("later", |socket, n: u32, ack| async move {
            let _ = socket.emit("async", &(n * 2)).await;
            if let Some(ack) = ack {
                let _ = ack.send(&"done").await;
            }
        });
    });
    kit.io()
        .of("/private")
        .use_(|_socket, auth| match auth.get("key") {
            Some(Value::String(key)) if key == "k" => Ok(()),
            _ => Err(ConnectError::new("denied").with_data(json!({ "need": "key" }))),
        });
    (kit, log)
}

#[test]
fn rooms_reach_members_only() {
    let (mut kit, _) = kit_with_handlers();
    let a = kit.connect("/", json!({})).unwrap();
    let b = kit.connect("/", json!({})).unwrap();
    let c = kit.connect("/", json!({})).unwrap();
    // Own room plus "r".
    for client in [a, b] {
        let reply = kit.emit_with_ack(client, "join", &"r").unwrap();
        assert_eq!(reply.args, vec![json!(2)]);
    }
    kit.emit(a, "shout", &("r", "hi"));
    let heard = kit.received(b);
    assert_eq!(heard.len(), 1);
    assert_eq!(
        (heard[0].event.as_str(), &heard[0].args.args),
        ("heard", &vec![json!("hi")])
    );
    assert!(kit.received(a).is_empty(), "not the sender");
    assert!(kit.received(c).is_empty(), "not a non-member");
}

#[test]
fn middleware_refusal_carries_message_and_data() {
    let (mut kit, _) = kit_with_handlers();
    let refused = kit.connect("/private", json!({ "key": "nope" }));
    assert_eq!(
        refused,
        Err(Refused(
            json!({ "message": "denied", "data": { "need": "key" } })
        ))
    );
    assert!(kit.connect("/private", json!({ "key": "k" })).is_ok());
}

#[test]
fn server_acks_answer_or_time_out_in_virtual_time() {
    let (mut kit, _) = kit_with_handlers();
    let client = kit.connect("/", json!({})).unwrap();
    kit.emit(client, "ask", &1000);
    let question = kit.received(client).remove(0);
    assert_eq!(question.event, "question");
    kit.ack(client, "/", question.ack.unwrap(), &"yes");
    assert_eq!(kit.received(client)[0].args.args, vec![json!(["yes"])]);

    kit.emit(client, "ask", &1000);
    assert_eq!(kit.received(client)[0].event, "question");
    kit.advance(Duration::from_millis(999));
    assert!(kit.received(client).is_empty());
    kit.advance(Duration::from_millis(1));
    assert_eq!(kit.received(client)[0].args.args, vec![json!("timeout")]);
}

#[test]
fn async_handlers_run_to_completion() {
    let (mut kit, _) = kit_with_handlers();
    let client = kit.connect("/", json!({})).unwrap();
    let reply = kit.emit_with_ack(client, "later", &21);
    assert_eq!(reply, Some(Payload::from_args(&"done").unwrap()));
    let received = kit.received(client);
    assert_eq!(received[0].event, "async");
    assert_eq!(received[0].args.args, vec![json!(42)]);
}

#[test]
fn an_ack_taken_for_later_is_answered_from_a_task() {
    let (mut kit, _) = kit_with_handlers();
    let client = kit.connect("/", json!({})).unwrap();
    let reply = kit.emit_with_ack(client, "store", &41);
    assert_eq!(reply, Some(Payload::from_args(&42).unwrap()));
    // No other packet: the handler's own `ack` found nothing to answer.
    assert!(kit.received(client).is_empty());
}

#[test]
fn disconnect_reasons() {
    let (mut kit, log) = kit_with_handlers();
    let a = kit.connect("/", json!({})).unwrap();
    let a_id = kit.sid(a, "/").unwrap().to_owned();
    kit.leave(a, "/");
    let b = kit.connect("/", json!({})).unwrap();
    let b_id = kit.sid(b, "/").unwrap().to_owned();
    kit.drop_connection(b);
    let c = kit.connect("/", json!({})).unwrap();
    let c_id = kit.sid(c, "/").unwrap().to_owned();
    kit.set_silent(c, true);
    kit.advance(Duration::from_secs(45));
    assert!(kit.is_closed(c));
    assert_eq!(
        *log.lock().unwrap(),
        vec![
            format!("{a_id} {}", DisconnectReason::ClientNamespaceDisconnect),
            format!("{b_id} {}", DisconnectReason::TransportClose),
            format!("{c_id} {}", DisconnectReason::PingTimeout),
        ]
    );
}

#[test]
fn recovered_sockets_get_their_id_rooms_and_data_back() {
    let config = ServerConfig {
        connection_state_recovery: Some(sio_runtime::RecoveryConfig::default()),
        ..ServerConfig::default()
    };
    let mut kit = TestKit::new(config);
    kit.io().on_connection(|socket| {
        if !socket.recovered() {
            socket.set_data(7u32);
            socket.join("room");
        }
        let state = (
            socket.recovered(),
            socket.data::<u32>().copied(),
            socket.rooms().len(),
        );
        let _ = socket.emit("state", &state);
        socket.on("ping", |socket, ()| {
            let _ = socket.emit("pong", &());
        });
    });
    let a = kit.connect("/", json!({})).unwrap();
    let first = kit.received(a);
    assert_eq!(first[0].event, "state");
    // The offset comes last in every logged event.
    assert_eq!(first[0].args.args[..3], [json!(false), json!(7), json!(2)]);
    let (sid, pid) = (
        kit.sid(a, "/").unwrap().to_owned(),
        kit.pid(a, "/").unwrap().to_owned(),
    );
    kit.emit(a, "ping", &());
    let pong = kit.received(a).remove(0);
    let offset = pong.args.args.last().cloned().unwrap();
    kit.drop_connection(a);
    let b = kit
        .connect("/", json!({ "pid": pid, "offset": offset }))
        .unwrap();
    assert_eq!(kit.sid(b, "/"), Some(sid.as_str()));
    let state = kit.received(b).remove(0);
    assert_eq!(state.args.args[..3], [json!(true), json!(7), json!(2)]);
}

#[test]
fn utility_methods_act_on_every_socket_a_broadcast_reaches() {
    let mut kit = TestKit::new(ServerConfig::default());
    kit.io().on_connection(|socket| {
        socket.on("join", |socket, room: String| {
            socket.join(&room);
            let _ = socket.ack(&());
        });
        socket.set_data(json!({ "joined_at": 1 }));
        socket.on("fetch", |socket, room: String| {
            let fetched = socket.io().to(room).fetch_sockets().unwrap();
            assert!(fetched.iter().all(|f| f.data == json!({ "joined_at": 1 })));
            let mut ids: Vec<String> = fetched.into_iter().map(|f| f.id).collect();
            ids.sort();
            let _ = socket.ack(&ids);
        });
        socket.on("move", |socket, (from, to): (String, String)| {
            let _ = socket.io().to(from.clone()).sockets_join(&to);
            let _ = socket.io().to(from.clone()).sockets_leave(&from);
            let _ = socket.ack(&());
        });
        socket.on("kick", |socket, room: String| {
            let _ = socket.io().to(room).disconnect_sockets(false);
        });
    });
    let clients: Vec<_> = (0..3)
        .map(|_| kit.connect("/", json!({})).unwrap())
        .collect();
    let mut ids: Vec<String> = clients
        .iter()
        .map(|c| kit.sid(*c, "/").unwrap().to_owned())
        .collect();
    for client in &clients[..2] {
        kit.emit_with_ack(*client, "join", &"a").unwrap();
    }
    ids.truncate(2);
    ids.sort();
    let fetched = kit.emit_with_ack(clients[2], "fetch", &"a").unwrap();
    assert_eq!(fetched.args, vec![json!(ids)]);
    kit.emit_with_ack(clients[2], "move", &("a", "b")).unwrap();
    assert_eq!(
        kit.emit_with_ack(clients[2], "fetch", &"a").unwrap().args,
        vec![json!([])]
    );
    assert_eq!(
        kit.emit_with_ack(clients[2], "fetch", &"b").unwrap().args,
        vec![json!(ids)]
    );
    kit.emit(clients[2], "kick", &"b");
    assert_eq!(kit.sid(clients[0], "/"), None, "disconnected by the server");
    assert_eq!(kit.sid(clients[1], "/"), None);
    assert!(kit.sid(clients[2], "/").is_some());
}

#[test]
fn dynamic_namespaces_copy_the_parent_and_broadcast_through_it() {
    let mut kit = TestKit::new(ServerConfig::default());
    let created: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = created.clone();
    kit.io()
        .on_new_namespace(move |name| seen.lock().unwrap().push(name.to_owned()));
    kit.io().cleanup_empty_child_namespaces(true);
    let parent = kit.io().of_dynamic(|name, auth| {
        name.starts_with("/team-") && auth.get("member") == Some(&json!(true))
    });
    parent.use_(|socket, _auth| {
        socket.set_data(socket.nsp().to_owned());
        Ok(())
    });
    parent.on_connection(|socket| {
        let nsp = socket.data::<String>().cloned().unwrap_or_default();
        let _ = socket.emit("welcome", &nsp);
        socket.on("shout", |socket, text: String| {
            let nsp = socket.nsp().to_owned();
            let _ = socket.io().of(&nsp).emit("heard", &text);
        });
    });
    let a = kit.connect("/team-a", json!({ "member": true })).unwrap();
    let b = kit.connect("/team-b", json!({ "member": true })).unwrap();
    assert_eq!(
        kit.connect("/team-c", json!({ "member": false })),
        Err(Refused(json!({ "message": "Invalid namespace" })))
    );
    assert_eq!(
        kit.connect("/other", json!({ "member": true })),
        Err(Refused(json!({ "message": "Invalid namespace" })))
    );
    assert_eq!(*created.lock().unwrap(), vec!["/team-a", "/team-b"]);
    // The children inherited the parent's middleware and connection handler.
    assert_eq!(kit.received(a)[0].args.args, vec![json!("/team-a")]);
    assert_eq!(kit.received(b)[0].args.args, vec![json!("/team-b")]);
    kit.emit_to(a, "/team-a", "shout", &"hi a", None);
    assert_eq!(kit.received(a)[0].args.args, vec![json!("hi a")]);
    assert!(kit.received(b).is_empty(), "namespaces stay apart");
    // Leaving the only socket removes the child; asking again creates it anew.
    kit.leave(a, "/team-a");
    assert!(kit.join(a, "/team-a", json!({ "member": true })).is_ok());
    assert_eq!(
        *created.lock().unwrap(),
        vec!["/team-a", "/team-b", "/team-a"]
    );
}

#[test]
fn server_side_emit_reaches_no_other_server_and_refuses_reserved_names() {
    let mut kit = TestKit::new(ServerConfig::default());
    kit.io().on_server_side("ping", |_io, _args| {
        panic!("no other server sends anything")
    });
    let io = kit.io().clone();
    assert_eq!(kit.block_on(io.server_count()), 1);
    assert!(kit.block_on(io.server_side_emit("ping", &1)).is_ok());
    let answers = kit.block_on(io.server_side_emit_with_ack("ping", &1, Duration::from_secs(1)));
    assert_eq!(answers.unwrap(), Vec::<Payload>::new());
    for reserved in ["connect", "connection", "new_namespace"] {
        let refused = kit.block_on(io.server_side_emit(reserved, &()));
        assert!(
            matches!(&refused, Err(sio_runtime::EmitError::Command(e)) if e.to_string().contains(reserved)),
            "{refused:?}"
        );
    }
    // The async API works through the kit too: a broadcast to a room.
    let client = kit.connect("/", json!({})).unwrap();
    kit.block_on(io.emit("hello", &"everyone")).unwrap();
    assert_eq!(kit.received(client)[0].event, "hello");
}

#[test]
fn async_namespace_matchers_see_the_auth_and_keep_registration_order() {
    let mut kit = TestKit::new(ServerConfig::default());
    // The first parent decides asynchronously; the second would take any name.
    let first = kit.io().of_dynamic_async(|name, auth| async move {
        name.starts_with("/vip-") && auth.get("ticket").is_some()
    });
    first.on_connection(|socket| {
        let _ = socket.emit("parent", &"vip");
    });
    let second = kit.io().of_dynamic(|_name, _auth| true);
    second.on_connection(|socket| {
        let _ = socket.emit("parent", &"any");
    });
    let vip = kit.connect("/vip-1", json!({ "ticket": 1 })).unwrap();
    assert_eq!(kit.received(vip)[0].args.args, vec![json!("vip")]);
    let other = kit.connect("/vip-2", json!({})).unwrap();
    assert_eq!(kit.received(other)[0].args.args, vec![json!("any")]);
}

#[test]
fn every_operation_on_a_target_goes_through_the_adapter_unless_local() {
    use sio_runtime::{Adapter, AdapterOp, EmitError};

    struct Recorder(Arc<Mutex<Vec<String>>>);
    impl Adapter for Recorder {
        fn server_count(&self) -> usize {
            2
        }
        fn publish(&mut self, op: &AdapterOp<'_>) {
            let line = match op {
                AdapterOp::Broadcast { target, event, .. } => {
                    format!("broadcast {} {:?} {event}", target.nsp, target.rooms)
                }
                AdapterOp::SocketsJoin { target, room } => {
                    format!("join {:?} {room}", target.rooms)
                }
                AdapterOp::SocketsLeave { target, room } => {
                    format!("leave {:?} {room}", target.rooms)
                }
                AdapterOp::DisconnectSockets { target, close } => {
                    format!("disconnect {:?} {close}", target.rooms)
                }
            };
            self.0.lock().unwrap().push(line);
        }
        fn server_side_emit(
            &mut self,
            _: &str,
            _: &Payload,
            _: Duration,
        ) -> Result<Vec<Payload>, EmitError> {
            Ok(vec![Payload::from_args(&"pong").unwrap()])
        }
    }

    let mut kit = TestKit::new(ServerConfig::default());
    let log: Log = Arc::default();
    kit.io().set_adapter(Recorder(log.clone()));
    kit.io().on_connection(|socket| {
        socket.on("go", |socket, ()| {
            let _ = socket.io().to("r").emit("news", &1);
            let _ = socket.io().to("r").local().emit("local news", &1);
            let _ = socket.io().to("r").sockets_join("s");
            let _ = socket.io().to("s").sockets_leave("r");
            let _ = socket.io().to("nobody").disconnect_sockets(true);
        });
    });
    let client = kit.connect("/", json!({})).unwrap();
    kit.emit(client, "go", &());
    assert_eq!(
        *log.lock().unwrap(),
        vec![
            "broadcast / [\"r\"] news",
            "join [\"r\"] s",
            "leave [\"s\"] r",
            "disconnect [\"nobody\"] true",
        ]
    );
    let io = kit.io().clone();
    assert_eq!(kit.block_on(io.server_count()), 2);
    let answers = kit
        .block_on(io.server_side_emit_with_ack("ping", &(), Duration::from_secs(1)))
        .unwrap();
    assert_eq!(answers, vec![Payload::from_args(&"pong").unwrap()]);
}

#[test]
fn outgoing_listeners_see_broadcasts_until_removed_or_disconnected() {
    let mut kit = TestKit::new(ServerConfig::default());
    let log: Log = Arc::default();
    let ids: Arc<Mutex<Vec<(String, ListenerId)>>> = Arc::default();
    let (watch_log, watch_ids) = (log.clone(), ids.clone());
    kit.io().on_connection(move |socket| {
        let (log, ids) = (watch_log.clone(), watch_ids.clone());
        socket.on("watch", move |socket, tag: String| {
            let log = log.clone();
            let label = tag.clone();
            let id = socket.on_any_outgoing(move |socket, event, payload| {
                let args = json!(payload.args);
                log.lock()
                    .unwrap()
                    .push(format!("{label} {} {event} {args}", socket.id()));
            });
            ids.lock().unwrap().push((tag, id));
            let _ = socket.ack(&());
        });
        let ids = watch_ids.clone();
        socket.on("unwatch", move |socket, tag: Option<String>| {
            let id = tag.map(|tag| {
                ids.lock()
                    .unwrap()
                    .iter()
                    .find(|(t, _)| *t == tag)
                    .unwrap()
                    .1
            });
            socket.off_any_outgoing(id);
            let _ = socket.ack(&());
        });
        socket.on("news", |socket, n: u32| {
            let _ = socket.io().emit("news", &n);
        });
        socket.on("bye", |socket, ()| socket.disconnect(false));
    });
    let a = kit.connect("/", json!({})).unwrap();
    let b = kit.connect("/", json!({})).unwrap();
    let sid_a = kit.sid(a, "/").unwrap().to_owned();
    let sid_b = kit.sid(b, "/").unwrap().to_owned();
    let take = |log: &Log| std::mem::take(&mut *log.lock().unwrap());

    kit.emit(a, "news", &1);
    assert!(take(&log).is_empty(), "no listener yet");

    kit.emit_with_ack(a, "watch", &"x").unwrap();
    kit.emit_with_ack(a, "watch", &"y").unwrap();
    kit.emit_with_ack(b, "watch", &"z").unwrap();
    kit.emit(b, "news", &2);
    assert_eq!(
        take(&log),
        vec![
            format!("x {sid_a} news [2]"),
            format!("y {sid_a} news [2]"),
            format!("z {sid_b} news [2]"),
        ]
    );

    // Removing one of two listeners keeps the other.
    kit.emit_with_ack(a, "unwatch", &"x").unwrap();
    kit.emit(a, "news", &3);
    assert_eq!(
        take(&log),
        vec![format!("y {sid_a} news [3]"), format!("z {sid_b} news [3]")]
    );

    // A listening socket that leaves does not silence the others.
    kit.emit(a, "bye", &());
    assert_eq!(kit.sid(a, "/"), None);
    kit.emit(b, "news", &4);
    assert_eq!(take(&log), vec![format!("z {sid_b} news [4]")]);

    kit.emit_with_ack(b, "unwatch", &Value::Null).unwrap();
    kit.emit(b, "news", &5);
    assert!(take(&log).is_empty(), "all removed");
    let news: Vec<Value> = kit
        .received(b)
        .into_iter()
        .map(|r| {
            assert_eq!(r.event, "news");
            r.args.args[0].clone()
        })
        .collect();
    assert_eq!(news, vec![json!(1), json!(2), json!(3), json!(4), json!(5)]);
}

#[test]
fn a_second_handler_replaces_the_first_and_off_removes_it() {
    let mut kit = TestKit::new(ServerConfig::default());
    kit.io().on_connection(|socket| {
        socket.on("ping", |socket, _: Payload| {
            let _ = socket.emit("pong", &"first");
        });
        socket.on("other", |socket, _: Payload| {
            let _ = socket.emit("pong", &"other");
        });
        socket.on("ping", |socket, _: Payload| {
            let _ = socket.emit("pong", &"second");
        });
        socket.on("stop", |socket, event: String| {
            socket.off(&event);
        });
    });
    let client = kit.connect("/", json!({})).unwrap();
    // The answers to `events`, sent in order.
    let mut answers_to = |events: &[(&str, &str)]| -> Vec<Value> {
        for (event, arg) in events {
            kit.emit(client, event, arg);
        }
        kit.received(client)
            .into_iter()
            .flat_map(|m| m.args.args)
            .collect()
    };
    assert_eq!(
        answers_to(&[("ping", ""), ("other", "")]),
        vec![json!("second"), json!("other")]
    );
    assert_eq!(
        answers_to(&[("stop", "ping"), ("ping", ""), ("other", "")]),
        vec![json!("other")]
    );
}

#[test]
fn arguments_that_do_not_fit_the_handler_reach_the_error_listener_under_the_event_name() {
    let mut kit = TestKit::new(ServerConfig::default());
    kit.io().on_connection(|socket| {
        socket.on("count", |socket, n: u32| {
            let _ = socket.emit("counted", &n);
        });
        socket.on_async("count-later", |socket, n: u32, _| async move {
            let _ = socket.emit("counted", &n).await;
        });
        socket.on_error(|socket, error| {
            let _ = socket.emit("error-seen", &error.to_string());
        });
    });
    let client = kit.connect("/", json!({})).unwrap();
    kit.emit(client, "count", &"three");
    kit.emit(client, "count-later", &"x");
    kit.emit(client, "count", &3);
    let received: Vec<(String, Vec<Value>)> = kit
        .received(client)
        .into_iter()
        .map(|m| (m.event, m.args.args))
        .collect();
    assert_eq!(
        received,
        vec![
            (
                "error-seen".to_owned(),
                vec![json!(
                    "bad arguments for \"count\": invalid type: string \"three\", expected u32"
                )]
            ),
            (
                "error-seen".to_owned(),
                vec![json!(
                    "bad arguments for \"count-later\": invalid type: string \"x\", expected u32"
                )]
            ),
            ("counted".to_owned(), vec![json!(3)]),
        ]
    );
}
