// A sink built on the official CloudEvents SDK: every request is parsed with HTTP.toEvent,
// which checks the event against the spec. Prints one JSON line per event it accepts and
// one {"error": ...} line per request it cannot parse. Usage: node receiver.mjs PORT
import http from "node:http";
import { HTTP } from "cloudevents";

const port = Number(process.argv[2]);
http
  .createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf8");
      try {
        const parsed = HTTP.toEvent({ headers: req.headers, body });
        for (const e of Array.isArray(parsed) ? parsed : [parsed]) {
          e.validate();
          console.log(JSON.stringify({ id: e.id, type: e.type, subject: e.subject, specversion: e.specversion }));
        }
        res.writeHead(202).end();
      } catch (err) {
        console.log(JSON.stringify({ error: String(err && err.message ? err.message : err) }));
        res.writeHead(400).end();
      }
    });
  })
  .listen(port, "127.0.0.1", () => console.error(`receiver on ${port}`));
process.on("SIGTERM", () => process.exit(0));
