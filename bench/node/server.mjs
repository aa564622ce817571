// The Node reference server of the load benchmarks: socket.io 4.8.x with default options and the
// same handlers as bench/src/bin/sio-bench-server.rs. Listens on 127.0.0.1 at PORT (default 0)
// and prints `listening on <addr>`.
import { createServer } from "node:http";
import { Server } from "socket.io";

const httpServer = createServer();
const io = new Server(httpServer);

io.on("connection", (socket) => {
  socket.on("echo", (...args) => socket.emit("echo", ...args));
  socket.on("echo-ack", (...args) => {
    const ack = args.pop();
    ack(...args);
  });
  socket.on("join", (room, ack) => {
    socket.join(room);
    ack();
  });
  socket.on("broadcast", (...args) => io.to("bench").emit("broadcast", ...args));
});

httpServer.listen(Number(process.env.PORT ?? 0), "127.0.0.1", () => {
  const { address, port } = httpServer.address();
  console.log(`listening on ${address}:${port}`);
});
