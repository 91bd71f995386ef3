// node bus.js SOCKET: list the machines, ask the lamp, and work as "node-worker".
const grpc = require("@grpc/grpc-js");
const loader = require("@grpc/proto-loader");

const path = require("path");
const proto = process.env.PROTO || path.join(__dirname, "../../../proto/interstate.proto");
const { interstate } = grpc.loadPackageDefinition(
  loader.loadSync(proto, { keepCase: true, longs: Number, defaults: true }));
// As with grpcio: a plain authority, not the socket's path.
const bus = new interstate.v1.Bus(`unix:${process.argv[2]}`, grpc.credentials.createInsecure(),
  { "grpc.default_authority": "localhost" });

bus.ListMachines({}, (err, list) => {
  if (err) throw err;
  console.log("on the bus:", list.machines.map((m) => m.id).join(", "));
  bus.Request({ to: "lamp", event: "PING", data: Buffer.from('{"n":1}'), timeout_ms: 2000 },
    (err, reply) => {
      if (err) return console.error(`request failed: ${grpc.status[err.code]}: ${err.details}`);
      console.log(`${reply.from} answered ${reply.event} ${reply.data}`);
      work();
    });
});

// Receive as "node-worker": acknowledge every event; the lamp's answer to our own Send comes here.
function work() {
  const stream = bus.Receive();
  stream.write({ register: { ids: ["node-worker"] } });
  stream.on("data", (m) => {
    if (m.registered) {
      bus.Send({ to: "lamp", event: "PING", data: Buffer.from('{"n":2}'), from: "node-worker" },
        (err) => err && console.error(err.details));
    } else if (m.event) {
      const e = m.event;
      console.log(`node-worker got ${e.event} ${e.data} from ${e.from}`);
      stream.write({ ack: { delivery: e.delivery } });
      stream.end();
      bus.close();
    }
  });
  stream.on("error", (err) => console.error(`${grpc.status[err.code]}: ${err.details}`));
}
