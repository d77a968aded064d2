// An HTTP server that reads each request as CloudEvents with the official SDK (HTTP.toEvent,
// then validate on every event, so that the spec's rules are checked) and answers 202, or 400
// when the request is not valid CloudEvents. `onEvents(events)` gets the events of an accepted
// request; `onError(message)` the reason a request was refused. Stops on SIGTERM.
import http from "node:http";
import { HTTP } from "cloudevents";

export function serveCloudEvents(port, name, onEvents, onError) {
  http
    .createServer((req, res) => {
      const chunks = [];
      req.on("data", (c) => chunks.push(c));
      req.on("end", () => {
        try {
          const parsed = HTTP.toEvent({ headers: req.headers, body: Buffer.concat(chunks).toString("utf8") });
          const events = Array.isArray(parsed) ? parsed : [parsed];
          for (const e of events) e.validate();
          onEvents(events);
          res.writeHead(202).end();
        } catch (err) {
          const message = String(err && err.message ? err.message : err);
          onError(message);
          res.writeHead(400).end(message);
        }
      });
    })
    .listen(port, "127.0.0.1", () => console.error(`${name} on ${port}`));
  process.on("SIGTERM", () => process.exit(0));
}
