"""examples/conformance and examples/echo driven by the official python-socketio client."""

import queue
import threading

import pytest
import socketio

TRANSPORTS = [["polling"], ["websocket"], ["polling", "websocket"]]


class Recorder:
    """Collects events into queues, to wait for them with a timeout."""

    def __init__(self):
        self.queues = {}
        self.lock = threading.Lock()

    def queue(self, name):
        with self.lock:
            return self.queues.setdefault(name, queue.Queue())

    def put(self, name, *args):
        self.queue(name).put(args)

    def get(self, name, timeout=5):
        return self.queue(name).get(timeout=timeout)


def client(recorder, namespaces=("/",)):
    sio = socketio.Client(reconnection=False)
    for nsp in namespaces:
        for event in ("auth", "message-back", "answer", "welcome", "room-message", "broadcast"):
            sio.on(event, lambda *args, event=event, nsp=nsp: recorder.put((nsp, event), *args), namespace=nsp)
        sio.on("connect_error", lambda data, nsp=nsp: recorder.put((nsp, "connect_error"), data), namespace=nsp)
        sio.on("disconnect", lambda reason=None, nsp=nsp: recorder.put((nsp, "disconnect"), reason), namespace=nsp)
    return sio


@pytest.mark.parametrize("transports", TRANSPORTS, ids=["polling", "websocket", "upgrade"])
def test_connect_events_binary_and_acks(conformance, transports):
    rec = Recorder()
    sio = client(rec)
    sio.connect(conformance.url, transports=transports, auth={"token": "abc", "n": [1, 2]}, wait_timeout=5)
    try:
        assert rec.get(("/", "auth")) == ({"token": "abc", "n": [1, 2]},)
        assert len(sio.get_sid()) == 20
        sio.emit("message", (1, "2", {"3": [False]}, b"\x01\x02\x03"))
        assert rec.get(("/", "message-back")) == (1, "2", {"3": [False]}, b"\x01\x02\x03")
        reply = sio.call("message-with-ack", ("a", {"b": b"\x09"}), timeout=5)
        assert reply == ("a", {"b": b"\x09"})
        if len(transports) == 2:
            assert sio.transport() == "websocket"
    finally:
        sio.disconnect()


def test_custom_namespace_with_auth(conformance):
    rec = Recorder()
    sio = client(rec, namespaces=("/", "/custom"))
    sio.connect(conformance.url, namespaces=["/", "/custom"], auth={"k": "v"}, transports=["websocket"], wait_timeout=5)
    try:
        assert rec.get(("/custom", "auth")) == ({"k": "v"},)
        assert rec.get(("/", "auth")) == ({"k": "v"},)
        sio.emit("message", "only custom", namespace="/custom")
        assert rec.get(("/custom", "message-back")) == ("only custom",)
        assert sio.get_sid("/") != sio.get_sid("/custom")
    finally:
        sio.disconnect()


def test_middleware_refusal_has_message_and_data(echo):
    rec = Recorder()
    sio = client(rec, namespaces=("/secure",))
    with pytest.raises(socketio.exceptions.ConnectionError):
        sio.connect(echo.url, namespaces=["/secure"], auth={"token": "wrong"}, wait_timeout=5)
    (data,) = rec.get(("/secure", "connect_error"))
    assert data == {"message": "not authorized", "data": {"reason": "a token is required"}}

    ok = client(rec, namespaces=("/secure",))
    ok.connect(echo.url, namespaces=["/secure"], auth={"token": "secret"}, wait_timeout=5)
    try:
        assert rec.get(("/secure", "welcome")) == (ok.get_sid("/secure"),)
    finally:
        ok.disconnect()


def test_server_acks_answer_and_timeout(echo):
    rec = Recorder()
    sio = client(rec)
    answers = iter([("pong!",), None])

    @sio.on("question")
    def question(text):
        assert text == "ping?"
        answer = next(answers)
        if answer is None:
            # No return value is still an ack; to let the server time out, block past it.
            threading.Event().wait(0.5)
        return answer

    sio.connect(echo.url, transports=["websocket"], wait_timeout=5)
    try:
        sio.emit("ask", 2000)
        assert rec.get(("/", "answer")) == ({"answer": ["pong!"]},)
        sio.emit("ask", 200)
        assert rec.get(("/", "answer")) == ({"error": "operation has timed out"},)
    finally:
        sio.disconnect()


def test_rooms_and_broadcast(echo):
    rec = [Recorder() for _ in range(10)]
    clients = [client(r) for r in rec]
    for c in clients:
        c.connect(echo.url, transports=["websocket"], wait_timeout=5)
    try:
        for c in clients[:5]:
            assert "a" in c.call("join", "a", timeout=5)
        clients[0].emit("to-room", ("a", {"x": 1}))
        clients[0].emit("broadcast", "all")
        for i, r in enumerate(rec):
            if i == 0:
                continue
            if i < 5:
                assert r.get(("/", "room-message")) == ({"x": 1},)
            assert r.get(("/", "broadcast")) == ("all",)
        # Each connection is ordered and the room message was sent before the broadcast: once the
        # broadcast is in, no other room message can be on its way.
        for r in rec:
            assert r.queue(("/", "room-message")).qsize() == 0
        assert rec[0].queue(("/", "broadcast")).qsize() == 0
    finally:
        for c in clients:
            c.disconnect()


def test_server_disconnect_reason(echo):
    rec = Recorder()
    sio = client(rec)
    sio.connect(echo.url, transports=["websocket"], wait_timeout=5)
    sid = sio.get_sid()
    sio.emit("disconnect-me", False)
    (reason,) = rec.get(("/", "disconnect"))
    assert reason == socketio.Client.reason.SERVER_DISCONNECT
    echo.wait_for_line(rf"^{sid} disconnected: server namespace disconnect$")

    other = client(rec)
    other.connect(echo.url, transports=["polling"], wait_timeout=5)
    sid = other.get_sid()
    # python-engineio's polling writer leaves its loop without sending what is queued if the
    # client starts disconnecting while a POST (here the namespace CONNECT) is still in flight:
    # wait until every queued packet has been posted, so the DISCONNECT is not lost client-side.
    other.eio.queue.join()
    other.disconnect()
    echo.wait_for_line(rf"^{sid} disconnected: client namespace disconnect$")


def test_allow_request_refusal_and_dynamic_namespaces(echo):
    rec = Recorder()
    refused = client(rec)
    with pytest.raises(socketio.exceptions.ConnectionError):
        refused.connect(f"{echo.url}?banned=1", transports=["polling"], wait_timeout=5)
    echo.wait_for_line(r"^connection error: 4 banned$")

    team = client(rec, namespaces=("/team-py",))
    team.on("news", lambda text: rec.put(("/team-py", "news"), text), namespace="/team-py")
    team.connect(echo.url, namespaces=["/team-py"], transports=["websocket"], wait_timeout=5)
    try:
        team.emit("all-teams", "from python", namespace="/team-py")
        assert rec.get(("/team-py", "news")) == ("from python",)
    finally:
        team.disconnect()
    with pytest.raises(socketio.exceptions.ConnectionError):
        client(rec, namespaces=("/other",)).connect(
            echo.url, namespaces=["/other"], transports=["websocket"], wait_timeout=5
        )


def test_disconnect_sockets_of_a_room(echo):
    rec = [Recorder(), Recorder()]
    members = [client(r) for r in rec]
    for member in members:
        member.connect(echo.url, transports=["websocket"], wait_timeout=5)
        member.call("join", "py-room", timeout=5)
    ids = sorted(m.get_sid() for m in members)
    caller = client(Recorder())
    caller.connect(echo.url, transports=["websocket"], wait_timeout=5)
    try:
        assert caller.call("fetch", "py-room", timeout=5) == ids
        caller.emit("kick", "py-room")
        for r in rec:
            (reason,) = r.get(("/", "disconnect"))
            assert reason == socketio.Client.reason.SERVER_DISCONNECT
        assert caller.call("fetch", "py-room", timeout=5) == []
    finally:
        caller.disconnect()
