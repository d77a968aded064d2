// The reference for ccm's receive path in bench/compare.sh: what a user might write instead,
// on the official CloudEvents SDK. Parses and validates every event (HTTP.toEvent, validate),
// drops a repeated (source, id) with an in-memory set (lost on restart: not durable), and
// answers 202. Usage: node reference_receiver.mjs PORT
import http from "node:http";
import { HTTP } from "cloudevents";

const seen = new Set();
const port = Number(process.argv[2]);
http
  .createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      try {
        const parsed = HTTP.toEvent({ headers: req.headers, body: Buffer.concat(chunks).toString("utf8") });
        for (const e of Array.isArray(parsed) ? parsed : [parsed]) {
          e.validate();
          seen.add(`${e.source}\n${e.id}`);
        }
        res.writeHead(202).end();
      } catch (err) {
        res.writeHead(400).end(String(err && err.message ? err.message : err));
      }
    });
  })
  .listen(port, "127.0.0.1", () => console.error(`reference receiver on ${port}`));
process.on("SIGTERM", () => process.exit(0));
