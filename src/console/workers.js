// Workers: capacity and port use, their lablets, and (an admin) drain.
import * as api from "./api.js";
import { h, replace, table, short, badge, confirmDialog } from "./dom.js";

function used(w, key) {
  return `${w.allocated?.[key] ?? 0} / ${w.capacity?.[key] ?? 0}`;
}

function portsUsed(w) {
  const size = w.port_range ? w.port_range.end - w.port_range.start + 1 : 0;
  let n = 0;
  for (const ports of Object.values(w.port_allocations || {})) n += Object.keys(ports).length;
  return `${n} / ${size}` + (w.port_range ? ` (${w.port_range.start}–${w.port_range.end})` : "");
}

export async function render(main, ctx) {
  const region = h("div", { id: "workers-table" });

  async function drain(w) {
    if (!(await confirmDialog(`Drain worker ${w.name}? It takes no new lablets; those on it run to their end.`, "Drain")))
      return;
    await ctx.act(`Drain ${w.name}`, () =>
      api.post(`/api/internal/workers/${encodeURIComponent(w.id)}/transition`, {
        to: "DRAINING", reason: `drained from the console by ${ctx.user?.name || "an admin"}`, expected_version: w.version,
      }));
    await draw();
  }

  async function draw() {
    const workers = (await api.all("/api/v1/workers")).filter((w) => w.state !== "TERMINATED" || w.scaled_up);
    const columns = ["Worker", "State", "Licence", "CPU cores", "Memory (GB)", "Nodes", "Ports", "Lablets"];
    if (ctx.user?.admin) columns.push("Actions");
    replace(
      region,
      table(
        "Workers: resources used of their capacity",
        columns,
        workers.map((w) => {
          const lablets = Object.keys(w.reservations || {}).length;
          const row = [
            h("span", { title: w.id }, w.name, h("br"), h("span", { class: "muted mono" }, short(w.id))),
            badge(w.state),
            w.license_type,
            used(w, "cpu_cores"),
            used(w, "memory_gb"),
            `${w.allocated?.nodes ?? 0} / ${w.capacity?.max_nodes ?? 0}`,
            portsUsed(w),
            h("a", { href: `#/lablets?worker=${w.id}`, "aria-label": `${lablets} lablets on ${w.name}` }, String(lablets)),
          ];
          if (ctx.user?.admin)
            row.push(w.state === "RUNNING"
              ? h("button", { type: "button", class: "secondary", "aria-label": `Drain ${w.name}`, onclick: () => drain(w) }, "Drain")
              : "—");
          return row;
        }),
        { empty: "No worker is registered." },
      ),
    );
  }

  replace(main, h("h1", {}, "Workers"), region);
  await draw();
  let timer = 0;
  const unsubscribe = ctx.subscribe((record) => {
    // Workers change with their own events and with every lablet placed on or taken off them.
    if (!timer && record.type && (record.type.startsWith("ccm.worker.") || record.type.startsWith("ccm.lablet.instance.")))
      timer = setTimeout(() => { timer = 0; draw().catch(() => {}); }, 500);
  });
  return () => {
    unsubscribe();
    clearTimeout(timer);
  };
}
