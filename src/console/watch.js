// The live stream: GET /api/v1/watch read with a streamed fetch (the token goes in the
// Authorization header, never in a URL), parsed as Server-Sent Events. After a drop, a cut
// (the client fell behind) or a shutdown (the replica drains), it resumes after the last
// sequence number it saw, with Last-Event-ID, after the server's `retry` time. A 429 (the
// replica serves as many streams as it may) pauses live updates: it tries again after
// Retry-After, waiting twice as long each time it is refused again (at most a minute).
import * as api from "./api.js";

export class Watch {
  // onRecord(record): one outbox record (as an item of GET /api/v1/events);
  // onStatus(text, live): the stream's state, for the page's live indicator.
  constructor(onRecord, onStatus) {
    this.onRecord = onRecord;
    this.onStatus = onStatus;
    this.lastId = null;
    this.retryMs = 2000;
    this.refusals = 0;  // 429s in a row
    this.stopped = true;
    this.controller = null;
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    this.loop();
  }

  stop() {
    this.stopped = true;
    if (this.controller) this.controller.abort();
  }

  async loop() {
    while (!this.stopped) {
      let wait = this.retryMs;
      let status = "reconnecting…";
      try {
        await this.once();
      } catch (e) {
        if (this.stopped) return;
        if (e.status === 429) {
          this.refusals++;
          const backoff = Math.min(60000, this.retryMs * 2 ** (this.refusals - 1));
          wait = Math.max(backoff, (e.retryAfter || 0) * 1000);
          status = "live updates paused: too many watchers, retrying";
        } else if (e.status === 401) {
          status = "reconnecting… (not signed in)";
        }
      }
      if (this.stopped) return;
      this.onStatus(status, false);
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }

  // One connection; returns why it ended.
  async once() {
    this.controller = new AbortController();
    const headers = api.headers({ Accept: "text/event-stream" });
    if (this.lastId !== null) headers["Last-Event-ID"] = String(this.lastId);
    const response = await fetch("/api/v1/watch", { headers, signal: this.controller.signal, cache: "no-store" });
    if (!response.ok) {
      const problem = await response.json().catch(() => ({}));
      const error = new api.ApiError(response.status, problem);
      error.retryAfter = Number(response.headers.get("Retry-After")) || 0;
      throw error;
    }
    this.refusals = 0;
    this.onStatus("live", true);
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return "the stream ended";
      buffer += value.replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const ended = this.dispatch(block);
        if (ended) {
          this.controller.abort();
          return ended;
        }
      }
    }
  }

  // Handles one SSE block; returns why the stream ends, or null.
  dispatch(block) {
    let event = "message";
    let id = null;
    const data = [];
    for (const line of block.split("\n")) {
      if (!line || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") event = value;
      else if (field === "data") data.push(value);
      else if (field === "id") id = value;
      else if (field === "retry" && /^\d+$/.test(value)) this.retryMs = Number(value);
    }
    if (event === "cut") {
      const cut = JSON.parse(data.join("\n") || "{}");
      if (cut.resume_after !== undefined) this.lastId = cut.resume_after;
      return "fell behind";
    }
    if (event === "shutdown") return "the server is restarting";
    if (!data.length) return null;
    if (id !== null) this.lastId = id;
    try {
      this.onRecord(JSON.parse(data.join("\n")));
    } catch (e) {
      console.error("watch: a record the page cannot read", e);
    }
    return null;
  }
}
