//! The bytes waiting to be written to one WebSocket, shared by the driver (which queues frames) and
//! the connection's task (which owns the connection).
//!
//! Once the connection is upgraded, and when its listener lends the socket ([`SocketWriter`]), the
//! driver writes the frames itself at the end of each batch of inputs: a message to 10,000 sockets
//! then costs 10,000 `send` calls (a vectored `sendmsg` when the frames queued for one socket are
//! large) and no task wake-up. The task takes over whenever the socket is full, and for everything
//! else (the frames queued before the 101, the task's pongs and close frames, connections
//! without a lent socket), so that there is always one writer and the bytes go out in order. The
//! queue takes memory only while bytes wait; an emptied one goes to a short list the thread keeps
//! for the next outbox that needs one.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::{Buf, Bytes};
use futures_io::AsyncWrite;
use sio_core::engine::Frame;

use crate::SocketWriter;
use crate::ws::{header_bits, opcode};

/// The queue is full: the client reads slower than the server writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Full;

/// What the driver has to do after queueing a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// Nothing: the frame waits for a write already planned, or was dropped after the close.
    Queued,
    /// Call [`Outbox::write_direct`] (or [`Outbox::hand_over`]) once the batch of inputs is
    /// done.
    WriteLater,
}

/// Slices handed to one vectored write.
const MAX_SLICES: usize = 64;
/// Up to this many queued chunks are written from a small array of slices.
const FEW_CHUNKS: usize = 4;
/// The longest header of an unmasked frame.
const MAX_HEADER: usize = 10;

/// The control frames the connection's task writes (RFC 6455 5.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Control {
    Close = opcode::CLOSE as isize,
    Pong = opcode::PONG as isize,
}

/// Queued bytes: one frame, a header and its payload.
struct Chunk {
    head: [u8; MAX_HEADER],
    head_start: u8,
    head_end: u8,
    body: Bytes,
}

impl Chunk {
    /// A final, unmasked data frame carrying `frame`.
    fn frame(frame: Frame) -> Chunk {
        match frame {
            Frame::Text(text) => Chunk::new(opcode::TEXT, text.into_bytes()),
            Frame::Binary(data) => Chunk::new(opcode::BINARY, data),
        }
    }

    /// A final, unmasked frame of `opcode` carrying `body`.
    fn new(opcode: u8, body: Bytes) -> Chunk {
        let mut head = [0; MAX_HEADER];
        // RFC 6455 5.2: FIN and the opcode, then the length in 7 bits, or 126 and 16 bits, or 127
        // and 64 bits, big-endian; a server's frames carry no mask.
        head[0] = header_bits::FIN | opcode;
        let len = body.len();
        let head_end = if len < 126 {
            head[1] = len as u8;
            2
        } else if let Ok(len) = u16::try_from(len) {
            head[1] = 126;
            head[2..4].copy_from_slice(&len.to_be_bytes());
            4
        } else {
            head[1] = 127;
            head[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            10
        };
        Chunk {
            head,
            head_start: 0,
            head_end,
            body,
        }
    }

    fn head(&self) -> &[u8] {
        &self.head[usize::from(self.head_start)..usize::from(self.head_end)]
    }

    /// Drops the first `n` bytes; returns what is left of `n` past this chunk.
    fn consume(&mut self, n: usize) -> usize {
        let head = self.head().len();
        if n < head {
            self.head_start += n as u8;
            return 0;
        }
        self.head_start = self.head_end;
        let body = (n - head).min(self.body.len());
        self.body.advance(body);
        n - head - body
    }

    fn is_empty(&self) -> bool {
        self.head_start == self.head_end && self.body.is_empty()
    }
}

/// The queue of chunks. The front one is held inline: a connection with one frame at a time to
/// write (a reply, an echo) allocates nothing for it, and an idle one keeps no queue memory.
#[derive(Default)]
struct Chunks {
    /// `None` only when the queue is empty.
    front: Option<Chunk>,
    rest: VecDeque<Chunk>,
}

impl Chunks {
    fn len(&self) -> usize {
        usize::from(self.front.is_some()) + self.rest.len()
    }

    fn is_empty(&self) -> bool {
        self.front.is_none()
    }

    fn iter(&self) -> impl Iterator<Item = &Chunk> {
        self.front.iter().chain(self.rest.iter())
    }

    fn front_mut(&mut self) -> Option<&mut Chunk> {
        self.front.as_mut()
    }

    fn push_back(&mut self, chunk: Chunk) {
        if self.front.is_none() {
            self.front = Some(chunk);
        } else {
            if self.rest.capacity() == 0 {
                self.rest = spare_queue();
            }
            self.rest.push_back(chunk);
        }
    }

    fn pop_front(&mut self) {
        self.front = self.rest.pop_front();
        if self.rest.is_empty() && self.rest.capacity() > 0 {
            keep_spare_queue(std::mem::take(&mut self.rest));
        }
    }
}

/// How many emptied queues a thread keeps for reuse, and up to which capacity.
const SPARE_QUEUES: usize = 256;
const SPARE_QUEUE_CAPACITY: usize = 8;

thread_local! {
    /// Emptied chunk queues, kept for the next outbox that needs one. A broadcast fills and
    /// empties the queues of all its recipients together, far more than the allocator's
    /// per-thread cache holds, so without these each would be a slow allocation and free.
    static SPARE: std::cell::RefCell<Vec<VecDeque<Chunk>>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// An empty queue, with room from an earlier one when the thread kept any.
fn spare_queue() -> VecDeque<Chunk> {
    SPARE
        .try_with(|spare| spare.borrow_mut().pop())
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Keeps an emptied queue for reuse, unless the thread keeps enough already or it is large.
fn keep_spare_queue(queue: VecDeque<Chunk>) {
    if queue.capacity() > SPARE_QUEUE_CAPACITY {
        return;
    }
    let _ = SPARE.try_with(|spare| {
        let mut spare = spare.borrow_mut();
        if spare.len() < SPARE_QUEUES {
            spare.push(queue);
        }
    });
}

#[derive(Default)]
struct Inner {
    chunks: Chunks,
    /// The driver queues nothing more; the task writes what is queued, then closes.
    closed: bool,
    /// The socket the driver may write to; set once the connection is upgraded.
    writer: Option<Arc<dyn SocketWriter>>,
    /// The task writes the queue (the socket was full, or bytes of its own wait).
    task_writes: bool,
    /// The driver has planned a `write_direct`.
    planned: bool,
    waker: Option<Waker>,
}

impl Inner {
    /// Whether the driver leaves the writing to the task.
    fn task_writes(&self) -> bool {
        self.task_writes || self.writer.is_none()
    }

    /// Puts the queue's front into `slices`, a head and a body per chunk, up to `MAX_SLICES / 2`
    /// chunks or as many as fit; returns how many slices it filled.
    fn fill_slices<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> usize {
        let mut count = 0;
        for chunk in self.chunks.iter().take(MAX_SLICES / 2) {
            if count + 2 > slices.len() {
                break;
            }
            for part in [chunk.head(), &chunk.body[..]] {
                if !part.is_empty() {
                    slices[count] = IoSlice::new(part);
                    count += 1;
                }
            }
        }
        count
    }

    /// Drops the first `written` bytes of the queue.
    fn consume(&mut self, written: usize) {
        let mut left = written;
        while let Some(front) = self.chunks.front_mut() {
            left = front.consume(left);
            if !front.is_empty() {
                break;
            }
            self.chunks.pop_front();
        }
    }

    /// A vectored write of the queue's front, through `write` (small writes coalesced into one
    /// slice); consumes what was written.
    fn write_with(
        &mut self,
        write: impl FnMut(&[IoSlice<'_>]) -> Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        // One chunk (a reply, an echo) needs two slices, a few (the messages of a busy room) a few
        // more: filling 64 would cost more than writing them.
        let mut one = [IoSlice::new(&[]); 2];
        let mut few;
        let mut many;
        let slices: &mut [IoSlice<'_>] = match self.chunks.len() {
            1 => &mut one,
            2..=FEW_CHUNKS => {
                few = [IoSlice::new(&[]); 2 * FEW_CHUNKS];
                &mut few
            }
            _ => {
                many = [IoSlice::new(&[]); MAX_SLICES];
                &mut many
            }
        };
        let count = self.fill_slices(slices);
        let slices = &slices[..count];
        let written = std::task::ready!(crate::io::write_joined(slices, write))?;
        if written == 0 && count > 0 {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        self.consume(written);
        Poll::Ready(Ok(written))
    }

    fn wake(&mut self) {
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }
}

/// One WebSocket's outgoing bytes.
pub(crate) struct Outbox {
    inner: Mutex<Inner>,
    limit: usize,
}

impl Outbox {
    /// An empty outbox holding at most `limit` frames.
    pub fn new(limit: usize) -> Arc<Outbox> {
        Arc::new(Outbox {
            inner: Mutex::new(Inner::default()),
            limit: limit.max(1),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        crate::lock(&self.inner)
    }

    /// Queues `frame` (the driver). Frames pushed after `close` are dropped.
    pub fn push(&self, frame: Frame) -> Result<Pushed, Full> {
        let mut inner = self.lock();
        if inner.closed {
            return Ok(Pushed::Queued);
        }
        if inner.chunks.len() >= self.limit {
            return Err(Full);
        }
        inner.chunks.push_back(Chunk::frame(frame));
        if inner.task_writes() {
            inner.wake();
            Ok(Pushed::Queued)
        } else if inner.planned {
            Ok(Pushed::Queued)
        } else {
            inner.planned = true;
            Ok(Pushed::WriteLater)
        }
    }

    /// Writes what is queued straight to the socket, without waiting (the driver, after
    /// [`Pushed::WriteLater`]). When the socket takes less, or fails, the task takes over: it
    /// waits until the socket is writable, or reports the error.
    pub fn write_direct(&self) {
        let mut inner = self.lock();
        inner.planned = false;
        if inner.task_writes() {
            return;
        }
        let Some(writer) = inner.writer.clone() else {
            return;
        };
        while !inner.chunks.is_empty() {
            let mut full = false;
            let written = inner.write_with(|slices| match writer.try_write_vectored(slices) {
                Ok(n) => {
                    let total: usize = slices.iter().map(|s| s.len()).sum();
                    full = n < total;
                    Poll::Ready(Ok(n))
                }
                Err(e) => Poll::Ready(Err(e)),
            });
            if full || !matches!(written, Poll::Ready(Ok(_))) {
                inner.task_writes = true;
                inner.wake();
                return;
            }
        }
    }

    /// Leaves the writing of what is queued to the task (the driver, instead of
    /// [`Outbox::write_direct`]).
    pub fn hand_over(&self) {
        let mut inner = self.lock();
        inner.planned = false;
        if !inner.task_writes() && !inner.chunks.is_empty() {
            inner.task_writes = true;
            inner.wake();
        }
    }

    /// No more frames: the task writes what is queued, then closes the connection.
    pub fn close(&self) {
        let mut inner = self.lock();
        inner.closed = true;
        inner.task_writes = true;
        inner.wake();
    }

    /// The connection is upgraded (the task): from now on the driver may write to `writer`,
    /// once the task has written what waits.
    pub fn open(&self, writer: Option<Arc<dyn SocketWriter>>) {
        let mut inner = self.lock();
        inner.writer = writer;
        inner.task_writes = true;
    }

    /// The task is gone: nothing more is queued or written, and the socket is let go.
    pub fn detach(&self) {
        *self.lock() = Inner {
            closed: true,
            ..Inner::default()
        };
    }

    /// Writes `head` (the 101 that accepted the WebSocket) and what is queued behind it (the open
    /// packet) in one call of `write`: one system call and one TCP segment instead of two, and
    /// the client reads both at once. Consumes what of the queue was written and returns how much
    /// of `head` was. Only before [`Outbox::open`]: until then nothing else writes the queue.
    pub fn write_behind(
        &self,
        head: &[IoSlice<'_>],
        write: impl FnMut(&[IoSlice<'_>]) -> Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        let mut inner = self.lock();
        let head_len: usize = head.iter().map(|s| s.len()).sum();
        if inner.writer.is_some() || head.len() > MAX_SLICES / 2 {
            return crate::io::write_joined(head, write);
        }
        let mut slices = [IoSlice::new(&[]); MAX_SLICES];
        slices[..head.len()].copy_from_slice(head);
        let count = head.len() + inner.fill_slices(&mut slices[head.len()..]);
        let written = std::task::ready!(crate::io::write_joined(&slices[..count], write))?;
        inner.consume(written.saturating_sub(head_len));
        Poll::Ready(Ok(written.min(head_len)))
    }

    /// Queues a control frame the task writes itself (a pong, a close). They count against the
    /// limit too, so that a client sending pings without reading cannot grow the queue.
    pub fn push_control(&self, control: Control, payload: Bytes) -> Result<(), Full> {
        let mut inner = self.lock();
        if inner.chunks.len() >= self.limit {
            return Err(Full);
        }
        inner.chunks.push_back(Chunk::new(control as u8, payload));
        inner.task_writes = true;
        Ok(())
    }

    /// The task's side: writes what it has to, then waits for more. Ready with `Ok` once the
    /// outbox is closed and everything is written, with the error of a failed write. `closed`
    /// tells whether the driver closed the outbox, so that the task can bound how long it waits
    /// for a socket that takes nothing.
    pub fn poll_serve<W: AsyncWrite + ?Sized>(
        &self,
        cx: &mut Context<'_>,
        io: Pin<&mut W>,
        closed: &mut bool,
    ) -> Poll<io::Result<()>> {
        let mut inner = self.lock();
        *closed = inner.closed;
        std::task::ready!(flush(&mut inner, cx, io))?;
        if inner.closed && inner.chunks.is_empty() {
            return Poll::Ready(Ok(()));
        }
        crate::register_waker(&mut inner.waker, cx);
        Poll::Pending
    }
}

/// Writes the queue through `io` if the task is the writer; hands the writing back to the driver
/// once the queue is empty.
fn flush<W: AsyncWrite + ?Sized>(
    inner: &mut Inner,
    cx: &mut Context<'_>,
    mut io: Pin<&mut W>,
) -> Poll<io::Result<()>> {
    if !inner.task_writes() {
        return Poll::Ready(Ok(()));
    }
    while !inner.chunks.is_empty() {
        std::task::ready!(inner.write_with(|slices| io.as_mut().poll_write_vectored(cx, slices)))?;
    }
    std::task::ready!(io.as_mut().poll_flush(cx))?;
    if inner.writer.is_some() && !inner.closed {
        inner.task_writes = false;
    }
    Poll::Ready(Ok(()))
}

/// The driver's end of an outbox: dropping it closes the outbox, so that the connection's task
/// never waits for a driver that is gone.
pub(crate) struct OutboxHandle(pub Arc<Outbox>);

impl Drop for OutboxHandle {
    fn drop(&mut self) {
        self.0.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_waker::CountingWaker;
    use bytestring::ByteString;

    fn text(s: &'static str) -> Frame {
        Frame::Text(ByteString::from_static(s))
    }

    /// A chunk of binary frame carrying `body`.
    fn chunk(body: &'static [u8]) -> Chunk {
        Chunk::new(opcode::BINARY, Bytes::from_static(body))
    }

    #[test]
    fn the_queue_keeps_order_and_gives_back_what_it_allocated() {
        let bodies =
            |chunks: &Chunks| -> Vec<Bytes> { chunks.iter().map(|c| c.body.clone()).collect() };
        let spare = || SPARE.with(|spare| spare.borrow().len());
        assert_eq!(spare(), 0);
        let mut chunks = Chunks::default();
        chunks.push_back(chunk(b"a"));
        assert_eq!((chunks.len(), chunks.rest.capacity()), (1, 0));
        chunks.push_back(chunk(b"b"));
        chunks.push_back(chunk(b"c"));
        assert_eq!(bodies(&chunks), ["a", "b", "c"]);
        assert_eq!(chunks.len(), 3);
        chunks.pop_front();
        assert_eq!(bodies(&chunks), ["b", "c"]);
        chunks.pop_front();
        assert_eq!(bodies(&chunks), ["c"]);
        // The emptied queue is kept for the thread's next one, not freed.
        assert_eq!(chunks.rest.capacity(), 0);
        assert_eq!(spare(), 1);
        chunks.pop_front();
        assert!(chunks.is_empty());
        assert_eq!(chunks.len(), 0);
        let mut other = Chunks::default();
        other.push_back(chunk(b"d"));
        other.push_back(chunk(b"e"));
        assert_eq!(spare(), 0);
        assert_eq!(bodies(&other), ["d", "e"]);
        assert!(other.rest.capacity() > 0);
        // A queue grown large is freed rather than kept.
        for _ in 0..SPARE_QUEUE_CAPACITY {
            other.push_back(chunk(b"f"));
        }
        while !other.is_empty() {
            other.pop_front();
        }
        assert_eq!(spare(), 0);
    }

    /// A socket that takes at most `room` bytes, then reports `WouldBlock`.
    #[derive(Default)]
    struct Socket {
        written: Mutex<Vec<u8>>,
        room: Mutex<usize>,
        writes: Mutex<usize>,
        /// The number of slices of each write.
        slices: Mutex<Vec<usize>>,
    }

    impl Socket {
        fn with_room(room: usize) -> Arc<Socket> {
            let socket = Socket::default();
            *socket.room.lock().unwrap() = room;
            Arc::new(socket)
        }

        fn take(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            *self.writes.lock().unwrap() += 1;
            self.slices.lock().unwrap().push(bufs.len());
            let mut room = self.room.lock().unwrap();
            if *room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let mut written = self.written.lock().unwrap();
            let mut n = 0;
            for buf in bufs {
                let take = buf.len().min(*room - n);
                written.extend_from_slice(&buf[..take]);
                n += take;
            }
            *room -= n;
            Ok(n)
        }

        fn written(&self) -> Vec<u8> {
            std::mem::take(&mut *self.written.lock().unwrap())
        }
    }

    impl SocketWriter for Socket {
        fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            self.take(bufs)
        }
    }

    /// The task's end of the same socket.
    struct TaskIo(Arc<Socket>);

    impl AsyncWrite for TaskIo {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.poll_write_vectored_inner(&[IoSlice::new(buf)])
        }

        fn poll_write_vectored(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            self.poll_write_vectored_inner(bufs)
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    impl TaskIo {
        fn poll_write_vectored_inner(&self, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
            match self.0.take(bufs) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Poll::Pending,
                other => Poll::Ready(other),
            }
        }
    }

    fn serve(outbox: &Outbox, io: &mut TaskIo, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        outbox.poll_serve(cx, Pin::new(io), &mut false)
    }

    #[test]
    fn before_the_upgrade_the_task_writes_with_one_wake_per_batch_then_closes() {
        let outbox = Outbox::new(3);
        let socket = Socket::with_room(usize::MAX);
        let mut io = TaskIo(socket.clone());
        let (counter, waker) = CountingWaker::new();
        let mut cx = Context::from_waker(&waker);
        assert!(serve(&outbox, &mut io, &mut cx).is_pending());
        assert_eq!(outbox.push(text("a")), Ok(Pushed::Queued));
        assert_eq!(outbox.push(text("b")), Ok(Pushed::Queued));
        assert_eq!(outbox.push(text("c")), Ok(Pushed::Queued));
        assert_eq!(outbox.push(text("d")), Err(Full));
        assert_eq!(counter.count(), 1);
        assert!(serve(&outbox, &mut io, &mut cx).is_pending());
        assert_eq!(socket.written(), b"\x81\x01a\x81\x01b\x81\x01c");
        assert_eq!(
            *socket.writes.lock().unwrap(),
            1,
            "one writev for the batch"
        );
        outbox.push(text("e")).unwrap();
        drop(OutboxHandle(outbox.clone()));
        assert_eq!(outbox.push(text("dropped after close")), Ok(Pushed::Queued));
        // Queued frames are written before the close.
        assert!(matches!(
            serve(&outbox, &mut io, &mut cx),
            Poll::Ready(Ok(()))
        ));
        assert_eq!(socket.written(), b"\x81\x01e");
    }

    #[test]
    fn once_open_the_driver_writes_and_the_task_takes_over_when_the_socket_is_full() {
        let outbox = Outbox::new(8);
        let socket = Socket::with_room(usize::MAX);
        let mut io = TaskIo(socket.clone());
        let (counter, waker) = CountingWaker::new();
        let mut cx = Context::from_waker(&waker);
        // The open packet was queued before the 101: the task writes it, then hands over.
        outbox.push(text("0")).unwrap();
        outbox.open(Some(socket.clone()));
        assert!(serve(&outbox, &mut io, &mut cx).is_pending());
        assert_eq!(socket.written(), b"\x81\x010");
        let wakes = counter.count();

        // Two frames in one batch of the driver: one writev, no wake-up of the task.
        assert_eq!(outbox.push(text("a")), Ok(Pushed::WriteLater));
        assert_eq!(
            outbox.push(Frame::Binary(Bytes::from_static(b"b"))),
            Ok(Pushed::Queued)
        );
        outbox.write_direct();
        assert_eq!(socket.written(), b"\x81\x01a\x82\x01b");
        assert_eq!(counter.count(), wakes);

        // The socket takes three bytes of five: the task is woken and writes the rest.
        *socket.room.lock().unwrap() = 3;
        assert_eq!(outbox.push(text("cd")), Ok(Pushed::WriteLater));
        outbox.write_direct();
        assert_eq!(socket.written(), b"\x81\x02c");
        assert_eq!(counter.count(), wakes + 1);
        // While the task writes, the driver only queues.
        assert_eq!(outbox.push(text("e")), Ok(Pushed::Queued));
        assert!(serve(&outbox, &mut io, &mut cx).is_pending());
        assert_eq!(socket.written(), b"");
        *socket.room.lock().unwrap() = usize::MAX;
        assert!(serve(&outbox, &mut io, &mut cx).is_pending());
        assert_eq!(socket.written(), b"d\x81\x01e");
        // Written out: the driver writes again.
        assert_eq!(outbox.push(text("f")), Ok(Pushed::WriteLater));
        outbox.write_direct();
        assert_eq!(socket.written(), b"\x81\x01f");
    }

    #[test]
    fn a_frame_handed_over_is_written_by_the_task() {
        let outbox = Outbox::new(8);
        let socket = Socket::with_room(usize::MAX);
        let mut io = TaskIo(socket.clone());
        let (counter, waker) = CountingWaker::new();
        let mut cx = Context::from_waker(&waker);
        outbox.open(Some(socket.clone()));
        assert!(serve(&outbox, &mut io, &mut cx).is_pending());
        assert_eq!(outbox.push(text("a")), Ok(Pushed::WriteLater));
        outbox.hand_over();
        assert_eq!(counter.count(), 1);
        assert_eq!(socket.written(), b"");
        assert!(serve(&outbox, &mut io, &mut cx).is_pending());
        assert_eq!(socket.written(), b"\x81\x01a");
        // Written out: the next frame is the driver's again.
        assert_eq!(outbox.push(text("b")), Ok(Pushed::WriteLater));
    }

    #[test]
    fn bytes_of_the_task_go_out_in_order_and_count_against_the_limit() {
        let outbox = Outbox::new(2);
        let socket = Socket::with_room(usize::MAX);
        let mut io = TaskIo(socket.clone());
        let (_counter, waker) = CountingWaker::new();
        let mut cx = Context::from_waker(&waker);
        outbox.open(Some(socket.clone()));
        assert!(serve(&outbox, &mut io, &mut cx).is_pending());
        // A frame planned for the driver, then a pong of the task: the task writes both, in
        // order, and the driver finds nothing left.
        assert_eq!(outbox.push(text("a")), Ok(Pushed::WriteLater));
        outbox.push_control(Control::Pong, Bytes::new()).unwrap();
        assert_eq!(outbox.push_control(Control::Pong, Bytes::new()), Err(Full));
        assert!(serve(&outbox, &mut io, &mut cx).is_pending());
        outbox.write_direct();
        assert_eq!(socket.written(), b"\x81\x01a\x8a\x00");
        assert_eq!(*socket.writes.lock().unwrap(), 1);
    }

    #[test]
    fn a_frame_header_has_the_length_of_its_payload() {
        let long = "x".repeat(300);
        let chunk = Chunk::frame(Frame::Text(ByteString::from(long)));
        assert_eq!(chunk.head(), [0x81, 126, 1, 44]);
        let huge = Chunk::frame(Frame::Binary(Bytes::from(vec![0; 70_000])));
        assert_eq!(huge.head(), [0x82, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]);
        // The edges of each length encoding.
        let binary = |len| Chunk::frame(Frame::Binary(Bytes::from(vec![0; len])));
        assert_eq!(binary(0).head(), [0x82, 0]);
        assert_eq!(binary(125).head(), [0x82, 125]);
        assert_eq!(binary(126).head(), [0x82, 126, 0, 126]);
        assert_eq!(binary(65_535).head(), [0x82, 126, 0xff, 0xff]);
        assert_eq!(binary(65_536).head(), [0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
    }

    #[test]
    fn small_frames_go_out_as_one_slice_and_large_ones_as_their_pieces() {
        let join = crate::io::JOIN_BYTES;
        let large = "x".repeat(join);
        let outbox = Outbox::new(8);
        // Room for the two small frames and the first two bytes of the large one's header.
        let socket = Socket::with_room(9);
        let mut io = TaskIo(socket.clone());
        let (_counter, waker) = CountingWaker::new();
        let mut cx = Context::from_waker(&waker);
        outbox.open(Some(socket.clone()));
        // Nothing was queued before the 101: the task hands the writing over at once.
        assert!(serve(&outbox, &mut io, &mut cx).is_pending());
        assert_eq!(outbox.push(text("ab")), Ok(Pushed::WriteLater));
        outbox.push(text("c")).unwrap();
        outbox.push(Frame::Text(large.clone().into())).unwrap();
        outbox.write_direct();
        // The three frames are over the limit together: header and payload slices, cut short.
        assert_eq!(*socket.slices.lock().unwrap(), [6]);
        assert_eq!(socket.written(), b"\x81\x02ab\x81\x01c\x81\x7e");
        *socket.room.lock().unwrap() = usize::MAX;
        socket.slices.lock().unwrap().clear();
        assert!(serve(&outbox, &mut io, &mut cx).is_pending());
        // What is left is over the limit: the rest of the header and the payload, not a copy.
        assert_eq!(*socket.slices.lock().unwrap(), [2]);
        let mut want = vec![0x10, 0x00];
        want.extend_from_slice(large.as_bytes());
        assert_eq!(socket.written(), want);

        // The task handed the writing back to the driver. Two small frames: one slice, copied,
        // and cut short inside the second frame's header; the task writes the rest.
        socket.slices.lock().unwrap().clear();
        *socket.room.lock().unwrap() = 5;
        assert_eq!(outbox.push(text("d")), Ok(Pushed::WriteLater));
        outbox.push(text("e")).unwrap();
        outbox.write_direct();
        assert_eq!(*socket.slices.lock().unwrap(), [1]);
        assert_eq!(socket.written(), b"\x81\x01d\x81\x01");
        *socket.room.lock().unwrap() = usize::MAX;
        assert!(serve(&outbox, &mut io, &mut cx).is_pending());
        assert_eq!(socket.written(), b"e");

        // A frame of exactly the limit, header included, is still joined.
        socket.slices.lock().unwrap().clear();
        let payload = "y".repeat(join - 4);
        assert_eq!(
            outbox.push(Frame::Text(payload.clone().into())),
            Ok(Pushed::WriteLater)
        );
        outbox.write_direct();
        assert_eq!(*socket.slices.lock().unwrap(), [1]);
        let written = socket.written();
        assert_eq!(written.len(), join);
        assert_eq!(&written[4..], payload.as_bytes());
    }
}
