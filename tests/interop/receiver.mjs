// A sink built on the official CloudEvents SDK (serve_cloudevents.mjs): prints one JSON line
// per event it accepts and one {"error": ...} line per request it cannot parse.
// Usage: node receiver.mjs PORT
import { serveCloudEvents } from "./serve_cloudevents.mjs";

serveCloudEvents(
  Number(process.argv[2]),
  "receiver",
  (events) => {
    for (const e of events)
      console.log(JSON.stringify({ id: e.id, type: e.type, subject: e.subject, specversion: e.specversion }));
  },
  (error) => console.log(JSON.stringify({ error })),
);
