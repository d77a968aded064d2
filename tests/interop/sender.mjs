// Sends one CloudEvent built and encoded by the official CloudEvents SDK.
// Usage: node sender.mjs URL MODE TYPE ID DATA_JSON   (MODE: binary or structured)
// Prints the HTTP status and body; exits 0 on 202.
import { CloudEvent, HTTP } from "cloudevents";

const [url, mode, type, id, data] = process.argv.slice(2);
const event = new CloudEvent({ type, source: "/assessment-platform", id, data: JSON.parse(data) });
const message = mode === "binary" ? HTTP.binary(event) : HTTP.structured(event);
const response = await fetch(url, { method: "POST", headers: message.headers, body: message.body });
const text = await response.text();
console.log(response.status, text);
process.exit(response.status === 202 ? 0 : 1);
