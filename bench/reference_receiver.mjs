// The reference for ccm's receive path in bench/compare.sh: what a user might write instead,
// on the official CloudEvents SDK (tests/interop/serve_cloudevents.mjs: parse and validate
// every event, 202 or 400). Drops a repeated (source, id) with an in-memory set (lost on
// restart: not durable). Usage: node reference_receiver.mjs PORT
import { serveCloudEvents } from "./serve_cloudevents.mjs";

const seen = new Set();
serveCloudEvents(
  Number(process.argv[2]),
  "reference receiver",
  (events) => {
    for (const e of events) seen.add(`${e.source}\n${e.id}`);
  },
  () => {},
);
