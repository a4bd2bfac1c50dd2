// node_client.cjs - send one message with npm's node-hl7-client and print
// its ACK as JSON: {"raw": "...", "msa1": "AA", "msa2": "..."}.
// Usage: node node_client.cjs PORT CONTROL_ID [PACKAGE_DIR]
// PACKAGE_DIR under node_modules: node-hl7-client (3.x, the default) or
// node-hl7-client-v1 (1.1.3, the one that runs on Node 18).
"use strict";
const path = require("path");
let lib;
try {
  lib = require(path.join(__dirname, "node_modules", process.argv[4] || "node-hl7-client"));
} catch (e) {
  console.log(JSON.stringify({ skip: "node-hl7-client is not installed (run npm ci in tests/integration)" }));
  process.exit(0);
}
const { Client, Message } = lib;
const port = Number(process.argv[2]);
const ctl = process.argv[3];
const text =
  "MSH|^~\\&|NODEAPP|NODEFAC|EHR|SOUTH|20260101120000||ADT^A04^ADT_A01|" + ctl + "|P|2.5\r" +
  "EVN|A04|20260101120000\r" +
  "PID|1||777^^^HOSP^MR||ZZTESTPATIENT^QUINTESSA||19800101|M\r";

const timer = setTimeout(() => {
  console.log(JSON.stringify({ error: "no ACK within 10 s" }));
  process.exit(1);
}, 10000);

async function main() {
  const client = new Client({ host: "127.0.0.1", ipv4: true });
  // 3.x calls it createConnection, 1.x createOutbound; same arguments.
  const create = (client.createConnection || client.createOutbound).bind(client);
  const conn = create({ port, waitAck: true }, async (res) => {
    let msg = res.getMessage();
    let raw = msg.toString();
    if (!client.createConnection) {
      // 1.1.3 cannot read a message whose last segment ends with a CR (as
      // every HL7 segment does; 3.x can): read the ACK it received again
      // without the final CR.
      raw = String(msg._opt.text);
      msg = new Message({ text: raw.replace(/\r+$/, "") });
    }
    const out = {
      raw,
      msa1: msg.get("MSA.1").toString(),
      msa2: msg.get("MSA.2").toString(),
      msh9: msg.get("MSH.9").toString(),
      msh3: msg.get("MSH.3").toString(),
      msh5: msg.get("MSH.5").toString(),
    };
    console.log(JSON.stringify(out));
    clearTimeout(timer);
    await conn.close();
    process.exit(0);
  });
  conn.on("error", (e) => {
    console.log(JSON.stringify({ error: String(e) }));
    process.exit(1);
  });
  await conn.sendMessage(new Message({ text }));
}
main().catch((e) => {
  console.log(JSON.stringify({ error: String(e && e.stack ? e.stack : e) }));
  process.exit(1);
});
