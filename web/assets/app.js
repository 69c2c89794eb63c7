// metalbed dashboard: the live parts, over server-sent events. The server
// renders every fragment; this only swaps them in. No polling.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const gen = document.body.dataset.gen;
  const open = (url) => {
    const es = new EventSource(url + (url.includes("?") ? "&" : "?") + "gen=" + gen);
    es.addEventListener("reload", () => location.reload());
    return es;
  };

  const fleet = document.getElementById("fleet");
  if (fleet) {
    open(fleet.dataset.live).addEventListener("row", (ev) => {
      const d = JSON.parse(ev.data);
      const t = document.createElement("tbody");
      t.innerHTML = d.html;
      const row = t.firstElementChild;
      const old = document.getElementById("row-" + d.name);
      if (old) old.replaceWith(row); else fleet.tBodies[0].appendChild(row);
    });
  }

  const live = document.getElementById("live");
  if (live) {
    open(live.dataset.live).addEventListener("live", (ev) => {
      const wasOpen = live.querySelector("details")?.open;
      live.innerHTML = JSON.parse(ev.data).html;
      const d = live.querySelector("details");
      if (d && wasOpen) d.open = true;
    });
  }

  const con = document.getElementById("console");
  if (con) {
    const es = new EventSource(con.dataset.live);
    es.onmessage = (ev) => {
      const stick = con.scrollTop + con.clientHeight >= con.scrollHeight - 4;
      con.append(ev.data + "\n");
      if (con.childNodes.length > 4000) {
        while (con.childNodes.length > 3000) con.removeChild(con.firstChild);
      }
      if (stick) con.scrollTop = con.scrollHeight;
    };
  }
});
