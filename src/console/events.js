// Events: the live stream as it arrives, and the dead letters an admin replays.
import * as api from "./api.js";
import { h, replace, table, time, short } from "./dom.js";

const SHOWN = 100;

function subjectLink(e) {
  if (!e.subject) return "—";
  return e.type.startsWith("ccm.lablet.instance.") ? h("a", { href: `#/lablets/${e.subject}`, title: e.subject }, short(e.subject)) : h("span", { title: e.subject }, short(e.subject));
}

export async function render(main, ctx) {
  const live = h("div", { id: "live-events" });
  const dead = h("div", { id: "dead-letters" });
  const count = h("p", { class: "muted", "aria-live": "polite" });
  let seen = 0;

  function drawLive() {
    const rows = ctx.recent.slice(-SHOWN).reverse();
    count.textContent = `${seen} new since this page opened; the last ${rows.length} shown.`;
    replace(live, table("Live stream, newest first", ["Seq", "Type", "Subject", "Time", "Delivery"],
      rows.map((e) => [String(e.seq), h("span", { class: "mono" }, e.type), subjectLink(e), time(e.time), e.state]),
      { empty: "Nothing has happened since the page opened." }));
  }

  async function drawDead() {
    const letters = await api.all("/api/v1/events/dead-letters");
    const admin = ctx.user?.admin;
    const columns = ["Seq", "Type", "Subject", "Dead since", "Attempts", "Last error"];
    if (admin) columns.push("Actions");
    replace(
      dead,
      admin && letters.length
        ? h("p", {}, h("button", { type: "button", id: "replay-all", class: "secondary", onclick: () =>
            ctx.act("Replay every dead letter", () => api.post("/api/v1/events/dead-letters/replay")).then(drawDead) }, `Replay all ${letters.length}`))
        : null,
      table("Dead letters: events the sink never took", columns,
        letters.map((e) => {
          const row = [String(e.seq), h("span", { class: "mono" }, e.type), subjectLink(e), time(e.dead_at), String(e.attempts), e.last_error || "—"];
          if (admin)
            row.push(h("button", { type: "button", class: "replay", "data-seq": e.seq, "aria-label": `Replay event ${e.seq}`, onclick: () =>
              ctx.act(`Replay event ${e.seq}`, () => api.post(`/api/v1/events/dead-letters/${encodeURIComponent(e.id)}/replay`)).then(drawDead) }, "Replay"));
          return row;
        }),
        { empty: "No dead letter." }),
    );
  }

  replace(
    main,
    h("h1", {}, "Events"),
    h("section", { "aria-labelledby": "s-dead" }, h("h2", { id: "s-dead" }, "Dead letters"), dead),
    h("section", { "aria-labelledby": "s-live" }, h("h2", { id: "s-live" }, "Live stream"), count, live),
  );
  drawLive();
  await drawDead();
  let timer = 0;
  const unsubscribe = ctx.subscribe((record) => {
    seen++;
    drawLive();
    if (!timer && record.state === "dead") timer = setTimeout(() => { timer = 0; drawDead().catch(() => {}); }, 300);
  });
  const poll = setInterval(() => drawDead().catch(() => {}), 5000);
  return () => {
    unsubscribe();
    clearTimeout(timer);
    clearInterval(poll);
  };
}
