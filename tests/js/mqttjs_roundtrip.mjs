// MQTT.js against the station's broker: subscribe at QoS 2, publish at QoS 0, 1 and 2, and
// print what came back as JSON. Then the ACL: a subscription to a denied topic and a publish
// to it (the station's test config denies interop/denied/#). Exits non-zero on any failure or
// after 15 s. URL may be mqtt://, mqtts://, ws:// or wss://.
// usage: node mqttjs_roundtrip.mjs URL PROTOCOL_VERSION(4|5) [CA_FILE]
import fs from "node:fs";
import mqtt from "mqtt";

const [url, version, ca] = process.argv.slice(2);
const timer = setTimeout(() => {
  console.error("timed out");
  process.exit(2);
}, 15000);
const opts = {
  protocolVersion: Number(version),
  clientId: `mqttjs-${version}-${process.pid}`,
  clean: true,
  reconnectPeriod: 0,
  connectTimeout: 10000,
};
if (ca) opts.ca = fs.readFileSync(ca);
const client = await mqtt.connectAsync(url, opts);
const topic = `interop/mqttjs/${version}`;
const got = [];
const done = new Promise((resolve) => {
  client.on("message", (t, payload, packet) => {
    got.push({ topic: t, payload: payload.toString(), qos: packet.qos });
    if (got.filter((m) => m.topic === topic).length === 3) resolve();
  });
});
const granted = await client.subscribeAsync(topic, { qos: 2 });
// Also listens on the whole interop tree: the denied topic must not come through it.
await client.subscribeAsync("interop/#", { qos: 1 });
for (const qos of [0, 1, 2]) {
  await client.publishAsync(topic, `q${qos}`, { qos });
}
await done;
// MQTT.js rejects a refused subscription, with the SUBACK attached.
const denied = await client
  .subscribeAsync("interop/denied/x", { qos: 1 })
  .then((g) => g.map((x) => x.qos))
  .catch((e) => e.packet?.granted ?? String(e));
let publishDenied = null;
try {
  await client.publishAsync("interop/denied/x", "must not arrive", { qos: 1 });
} catch (e) {
  publishDenied = e.code ?? String(e);
}
// Anything sent twice, or let through, would arrive within this pause.
await new Promise((r) => setTimeout(r, 500));
console.log(
  JSON.stringify({
    granted: granted.map((g) => g.qos),
    denied,
    publishDenied,
    got,
  }),
);
await client.endAsync();
clearTimeout(timer);
