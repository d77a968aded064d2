// The live stream: GET /api/v1/watch read with a streamed fetch (the token goes in the
// Authorization header, never in a URL), parsed as Server-Sent Events. After a drop, a cut
// (the client fell behind) or a shutdown (the replica drains), it resumes after the last
// sequence number it saw, with Last-Event-ID, after the server's `retry` time. A ccm without
// the stream (404) is followed by reading GET /api/v1/events after that number every 2 s.
import * as api from "./api.js";

export class Watch {
  // onRecord(record): one outbox record (as an item of GET /api/v1/events);
  // onStatus(text, live): the stream's state, for the page's live indicator.
  constructor(onRecord, onStatus) {
    this.onRecord = onRecord;
    this.onStatus = onStatus;
    this.lastId = null;
    this.retryMs = 2000;
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
      let reason = "disconnected";
      let wait = this.retryMs;
      try {
        reason = await this.once();
      } catch (e) {
        if (this.stopped) return;
        reason = e.status === 401 ? "not signed in" : e.message || "disconnected";
        // 429: this replica serves as many streams as it may; it says when to try again.
        if (e.retryAfter) wait = Math.max(wait, e.retryAfter * 1000);
      }
      if (this.stopped) return;
      this.onStatus(`reconnecting (${reason})`, false);
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }

  // One connection; returns why it ended.
  async once() {
    this.controller = new AbortController();
    const headers = api.headers({ Accept: "text/event-stream" });
    if (this.lastId !== null) headers["Last-Event-ID"] = String(this.lastId);
    const response = await fetch("/api/v1/watch", { headers, signal: this.controller.signal, cache: "no-store" });
    if (response.status === 404) return this.poll();
    if (!response.ok) {
      const problem = await response.json().catch(() => ({}));
      const error = new api.ApiError(response.status, problem);
      error.retryAfter = Number(response.headers.get("Retry-After")) || 0;
      throw error;
    }
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

  // Follows the outbox by paging GET /api/v1/events; returns when a call fails.
  async poll() {
    if (this.lastId === null) {
      // From now on: skip what is there already.
      let after = "";
      for (;;) {
        const page = await api.get(`/api/v1/events?limit=500${after ? `&after=${after}` : ""}`);
        if (page.items.length) this.lastId = page.items[page.items.length - 1].seq;
        if (!page.next) break;
        after = page.next;
      }
      if (this.lastId === null) this.lastId = 0;
    }
    this.onStatus("live (polling)", true);
    while (!this.stopped) {
      const page = await api.get(`/api/v1/events?limit=500&after=${this.lastId}`);
      for (const record of page.items) {
        this.lastId = record.seq;
        this.onRecord(record);
      }
      if (!page.next) await new Promise((resolve) => setTimeout(resolve, 2000));
    }
    return "stopped";
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
