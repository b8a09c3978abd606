// runwatch console: the live alert stream (server-sent events). Every value is set with
// textContent or as an attribute, never as markup.
"use strict";
(function () {
  const live = document.getElementById("live");
  const rows = document.getElementById("alert-rows");
  if (!live || !rows || !window.EventSource) { return; }
  const csrf = (document.querySelector('meta[name="csrf"]') || {}).content || "";
  const count = document.getElementById("alert-count");
  const total = document.getElementById("alert-total");
  const cell = (tr, text, cls) => {
    const td = document.createElement("td");
    if (cls) { td.className = cls; }
    td.textContent = text === null || text === undefined ? "-" : String(text);
    tr.appendChild(td);
    return td;
  };
  const src = new EventSource("/alerts/stream?after=" + encodeURIComponent(live.dataset.after || "0") +
                              (live.dataset.query || ""));
  src.addEventListener("open", () => { live.textContent = "live"; live.classList.add("on"); });
  src.addEventListener("error", () => { live.textContent = "live: reconnecting"; live.classList.remove("on"); });
  src.addEventListener("alert", (msg) => {
    const a = JSON.parse(msg.data);
    if (rows.querySelector('tr[data-id="' + CSS.escape(a.id) + '"]')) { return; }
    const tr = document.createElement("tr");
    tr.className = "alert fresh";
    tr.dataset.id = a.id;
    const first = document.createElement("td");
    const link = document.createElement("a");
    link.className = "evidence";
    link.href = a.href;
    link.textContent = a.time;
    first.appendChild(link);
    tr.appendChild(first);
    const sev = cell(tr, "");
    const tag = document.createElement("span");
    tag.className = "sev " + a.severity.replace(/[^a-z]/g, "");
    tag.textContent = a.severity;
    sev.appendChild(tag);
    cell(tr, a.rule);
    cell(tr, a.workload);
    cell(tr, a.tool);
    cell(tr, a.output, "m");
    const ack = cell(tr, "", "ack");
    const form = document.createElement("form");
    form.method = "post";
    form.action = a.href + "/ack";
    form.className = "ack-form";
    const hidden = document.createElement("input");
    hidden.type = "hidden";
    hidden.name = "csrf";
    hidden.value = csrf;
    const button = document.createElement("button");
    button.textContent = "Acknowledge";
    form.append(hidden, button);
    ack.appendChild(form);
    rows.insertBefore(tr, rows.firstChild);
    for (const el of [count, total]) {
      if (el) { el.textContent = String(Number(el.textContent) + 1); }
    }
  });
})();
