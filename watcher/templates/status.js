// The status page's live half: follows /events and renders the view again from /api/status.
// Every value is put in the page as text (never as HTML); links only when they are http(s).
(() => {
  "use strict";
  const body = document.body;
  const REFRESH = Number(body.dataset.refresh || 15) * 1000;
  const TYPES = (body.dataset.types || "").split(" ").filter(Boolean);
  const MAX_EVENTS = 50;
  const REMEMBERED = 200;
  const MARKS = ["stuck", "missed"]; // the rules' findings an agent is marked with
  const $ = (id) => document.getElementById(id);

  let view = JSON.parse($("view").textContent);
  let loadedAt = Date.now(); // when `view` was generated, on this browser's clock
  let behind = 0; // ms the server's clock is ahead of that estimate (seen in event times)
  const recent = []; // the latest live events, applied again after a refresh when newer
  const seen = new Set(); // ids of the events listed
  const byKey = new Map(); // "source agent" → its entry in view.agents
  const key = (source, agent) => `${source}\u0000${agent}`;

  // --- building blocks: the same markup as status.html --------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value !== null && value !== undefined) node.setAttribute(key, value);
    }
    for (const child of children) {
      if (child !== null && child !== undefined) node.append(child);
    }
    return node;
  }
  const td = (label, ...children) => el("td", { "data-label": label }, ...children);
  const tdc = (label, cls, ...children) =>
    el("td", { "data-label": label, class: cls }, ...children);
  const cssName = (value) => String(value).toLowerCase().replace(/[^a-z0-9_-]/g, "-");
  const when = (value) => (value ? value.replace("T", " ").slice(0, 19) + "Z" : "");
  const time = (value) => (value ? el("time", { datetime: value }, when(value)) : "—");
  const badge = (kind, value) =>
    el("span", { class: `badge ${kind}-${cssName(value)}` }, String(value));
  const safeLink = (url) => (typeof url === "string" && /^https?:\/\//i.test(url) ? url : null);
  const orNull = (value) => (value === undefined ? null : value);
  const orDash = (value) => (value === null || value === undefined || value === "" ? "—" : String(value));

  function roundHalfEven(x) {
    const r = Math.round(x);
    return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
  }

  function duration(seconds) { // as watcher.durations.duration_of
    if (seconds === null || seconds === undefined) return "";
    const total = roundHalfEven(seconds);
    const days = Math.floor(total / 86400);
    const hours = Math.floor((total % 86400) / 3600);
    const minutes = Math.floor((total % 3600) / 60);
    const secs = total % 60;
    if (days) return `${days}d ${hours}h`;
    if (hours) return `${hours}h ${minutes}m`;
    if (minutes) return `${minutes}m ${secs}s`;
    return `${secs}s`;
  }

  function budget(b) {
    if (!b.per_minute) return "no limit";
    const spent = b.spent === null || b.spent === undefined ? "?" : b.spent;
    const rate = b.rate === null || b.rate === undefined ? b.per_minute : b.rate;
    const lowered = b.rate !== null && b.rate !== undefined && b.rate < b.per_minute;
    return `${spent} of ${rate}/min` + (lowered ? ` (lowered from ${b.per_minute})` : "");
  }

  // --- rows ---------------------------------------------------------------------------------

  function sourceRow(s) {
    const health = [badge("h", s.health)];
    if (s.stale) health.push(" ", el("span", { class: "badge stale" }, "stale"));
    return el("tr", { "data-source": s.name },
      td("Source", el("b", null, s.name), " ", el("small", null, s.kind)),
      td("Health", ...health),
      td("Last success", time(s.last_success)),
      td("Failing since", time(s.failing_since)),
      tdc("Last error", "msg", orDash(s.last_error)),
      td("Agents", String(s.agents)),
      td("Requests", budget(s.budget)),
      td("Mode", orDash(s.mode)));
  }

  function agentRow(a) {
    const outcome = [badge("s", a.state)];
    for (const m of a.marks || []) outcome.push(" ", markBadge(m, a));
    const link = safeLink(a.url);
    const run = link
      ? el("a", { href: link, rel: "noopener noreferrer", target: "_blank" }, String(a.run_id))
      : orDash(a.run_id);
    return el("tr", { "data-source": a.source, "data-agent": a.agent_id },
      td("Agent", el("b", null, a.name || a.agent_id), " ", el("small", null, a.agent_id)),
      td("Source", a.source),
      td("Outcome", ...outcome),
      td("Run", run, " ", el("small", null, a.status || "")),
      td("Ended", time(a.ended_at)),
      tdc("In a row", a.failures_in_a_row ? "bad" : "", String(a.failures_in_a_row)),
      td("Failing since", time(a.failing_since)),
      td("Last success", time(a.last_success)),
      tdc("Message", "msg", orDash(a.message)));
  }

  function markBadge(m, a) { // a rule's finding that still holds (see marks in status.html)
    const attrs = { class: `badge m-${cssName(m.mark)}`, title: m.message || null };
    if (m.mark === "missed") return el("span", attrs, "missed ", time(m.expected_at));
    if (m.run_id !== a.run_id) return el("span", attrs, `stuck · run ${m.run_id}`);
    return el("span", attrs, String(m.mark));
  }

  function eventItem(e) {
    let who = e.source;
    if (e.agent_id) who += " · " + (e.agent_name || e.agent_id);
    if (e.run_id) who += " · run " + e.run_id;
    const item = el("li", { "data-id": e.id },
      time(e.ts), " ", badge("t", e.type), " ", el("span", { class: "who" }, who));
    if (e.outcome) item.append(" ", badge("s", e.outcome));
    if (e.message) item.append(" ", el("span", { class: "msg" }, e.message));
    return item;
  }

  const outboxRow = (t) => el("tr", null,
    td("Channel", t.channel),
    td("Waiting", String(t.depth)),
    td("Oldest", duration(t.oldest_age_s)),
    td("Attempts", String(t.attempts)),
    tdc("Last error", "msg", orDash(t.last_error)));

  const heldRow = (h) => el("tr", null,
    td("Channel", h.channel),
    td("Held", String(h.count)),
    td("Why", h.reason),
    td("Until", time(h.until)));

  const silenceRow = (s) => el("tr", null,
    td("Matchers", String(s.matchers)),
    td("Ends", time(s.ends_at)),
    td("Comment", orDash(s.comment)),
    td("By", orDash(s.created_by)));

  // --- rendering ----------------------------------------------------------------------------

  const serverNow = () => Date.parse(view.generated_at) + (Date.now() - loadedAt) + behind;

  function humanize(root) { // moments relative to the server's clock: "5m 2s ago"
    const now = serverNow();
    for (const node of root.querySelectorAll("time[datetime]")) {
      const at = Date.parse(node.getAttribute("datetime"));
      if (Number.isNaN(at)) continue;
      const ago = (now - at) / 1000;
      node.title = when(node.getAttribute("datetime"));
      node.textContent = Math.abs(ago) < 2 ? "just now"
        : ago > 0 ? `${duration(ago)} ago` : `in ${duration(-ago)}`;
    }
  }

  function renderTotals() {
    const t = view.totals;
    t.agents = view.agents.length;
    t.failing_agents = view.agents.filter((a) => a.failures_in_a_row).length;
    t.failing_sources = view.sources.filter((s) => s.health === "failing").length;
    $("totals").textContent = `${t.agents} agents · ${t.failing_agents} failing · ` +
      `${t.failing_sources} sources failing · ${t.outbox} waiting`;
  }

  function renderAll() {
    $("version").textContent = view.version;
    $("generated").replaceChildren(time(view.generated_at));
    $("sources").replaceChildren(...view.sources.map(sourceRow));
    $("agents").replaceChildren(...view.agents.map(agentRow));
    $("events").replaceChildren(...view.events.map(eventItem));
    $("outbox").replaceChildren(...view.outbox.map(outboxRow));
    $("outbox-table").hidden = view.outbox.length === 0;
    $("outbox-empty").hidden = view.outbox.length > 0;
    $("silences").replaceChildren(...view.silences.map(silenceRow));
    $("silences-section").hidden = view.silences.length === 0;
    $("held").replaceChildren(...view.held.map(heldRow));
    $("held-section").hidden = view.held.length === 0;
    index();
    renderTotals();
    humanize(document);
    filter();
  }

  // --- the agents filter --------------------------------------------------------------------

  function filter() {
    const text = $("filter-name").value.trim().toLowerCase();
    const state = $("filter-state").value;
    let shown = 0;
    const rows = $("agents").rows;
    for (const row of rows) {
      const a = agentOf(row);
      const named = !text || [a.name, a.agent_id, a.source]
        .some((v) => v && String(v).toLowerCase().includes(text));
      const stated = !state || (state === "failing" ? a.failures_in_a_row > 0
        : MARKS.includes(state) ? (a.marks || []).some((m) => m.mark === state)
        : a.state === state);
      row.hidden = !(named && stated);
      if (!row.hidden) shown += 1;
    }
    $("shown").textContent = text || state ? `${shown} of ${rows.length} shown` : "";
  }

  function agentOf(row) {
    return byKey.get(key(row.dataset.source, row.dataset.agent)) || {};
  }

  function index() {
    seen.clear();
    for (const e of view.events) seen.add(e.id);
    byKey.clear();
    for (const a of view.agents) byKey.set(key(a.source, a.agent_id), a);
  }

  function rowOf(body, match) {
    return Array.from(body.rows).find(match) || null;
  }

  // --- live events --------------------------------------------------------------------------

  function summary(e) {
    const keys = ["id", "type", "ts", "source", "agent_id", "agent_name", "run_id", "status",
      "outcome", "message", "url", "failures_in_a_row"];
    const out = {};
    for (const key of keys) out[key] = e[key] === undefined ? null : e[key];
    out.url = safeLink(out.url);
    return out;
  }

  function flash(node) {
    node.classList.remove("flash");
    void node.offsetWidth; // restart the animation
    node.classList.add("flash");
  }

  function updateAgent(e) {
    let a = byKey.get(key(e.source, e.agent_id));
    if (!a) {
      a = { source: e.source, agent_id: e.agent_id, name: e.agent_name, run_id: null,
        state: "none", failures_in_a_row: 0, failing_since: null, last_success: null,
        marks: [] };
      view.agents.push(a);
      byKey.set(key(a.source, a.agent_id), a);
    }
    const ofRun = e.phase && (e.type === "run.discovered" || a.run_id === null ||
      e.run_id === a.run_id); // what the diff says of a run (a rule's event has no phase)
    if (ofRun) {
      Object.assign(a, { run_id: e.run_id, status: e.status, phase: e.phase,
        outcome: e.outcome, started_at: e.started_at, ended_at: e.ended_at,
        message: e.message, url: safeLink(e.url) });
      a.state = e.outcome || e.phase || "none";
      if (e.agent_name) a.name = e.agent_name;
    }
    if (e.type === "run.finished") {
      if (e.failures_in_a_row !== undefined) a.failures_in_a_row = e.failures_in_a_row;
      if (e.failing_since !== undefined) a.failing_since = e.failing_since;
      if (e.last_success !== undefined) a.last_success = e.last_success;
      a.last_outcome = e.outcome;
    }
    a.marks = marked(a.marks || [], e);
    const row = agentRow(a);
    const old = rowOf($("agents"),
      (r) => r.dataset.source === a.source && r.dataset.agent === a.agent_id);
    if (old) old.replaceWith(row); else $("agents").append(row);
    flash(row);
  }

  // A mark holds while it is true, as the server's view says: "stuck" until its run finishes,
  // "missed" (the latest slot) until a run of the agent starts at or after that slot.
  function marked(marks, e) {
    let stuck = marks.filter((m) => m.mark === "stuck");
    let missed = marks.filter((m) => m.mark === "missed");
    if (e.type === "run.stuck") {
      stuck = stuck.filter((m) => m.run_id !== e.run_id)
        .concat([{ mark: "stuck", since: e.ts, run_id: e.run_id, message: orNull(e.message) }]);
    } else if (e.type === "run.finished") {
      stuck = stuck.filter((m) => m.run_id !== e.run_id);
    } else if (e.type === "agent.missed_schedule") {
      const later = missed.every((m) => Date.parse(e.expected_at) >= Date.parse(m.expected_at));
      if (later) missed = [{ mark: "missed", since: e.ts, expected_at: e.expected_at,
        schedule: orNull(e.schedule), message: orNull(e.message) }];
    } else if (e.type === "run.discovered") {
      const started = Date.parse(e.started_at || e.ts);
      missed = missed.filter((m) => started < Date.parse(m.expected_at));
    }
    return stuck.concat(missed);
  }

  function updateSource(e) {
    const s = view.sources.find((x) => x.name === e.source);
    if (!s) return;
    if (e.type === "source.failed") {
      Object.assign(s, { health: "failing", failing_since: e.ts, last_error: e.message });
    } else {
      Object.assign(s, { health: "ok", failing_since: null, last_error: null,
        last_success: e.ts, stale: false });
    }
    const row = sourceRow(s);
    const old = rowOf($("sources"), (r) => r.dataset.source === s.name);
    if (old) old.replaceWith(row);
    flash(row);
  }

  function apply(event) {
    if (seen.has(event.id)) return;
    seen.add(event.id);
    const e = summary(event);
    view.events.unshift(e);
    view.events.length = Math.min(view.events.length, MAX_EVENTS);
    const list = $("events");
    const item = eventItem(e);
    list.prepend(item);
    flash(item);
    while (list.children.length > MAX_EVENTS) list.lastElementChild.remove();
    const aboutAgent = event.type.startsWith("run.") || event.type === "agent.missed_schedule";
    if (aboutAgent && event.agent_id) updateAgent(event);
    if (event.type === "source.failed" || event.type === "source.recovered") updateSource(event);
    if (event.type === "source.baselined") setTimeout(refresh, 0); // its agents, all at once
    renderTotals();
    humanize(document);
    filter();
  }

  function received(message) {
    let event;
    try {
      event = JSON.parse(message.data);
    } catch {
      return;
    }
    recent.push(event);
    if (recent.length > REMEMBERED) recent.shift();
    const at = Date.parse(event.ts);
    if (at > serverNow()) behind += at - serverNow(); // no event is from the future

    apply(event);
  }

  function setLive(on) {
    const live = $("live");
    live.className = "live " + (on ? "on" : "off");
    live.textContent = on ? "live" : "reconnecting…";
  }

  function connect() {
    const newest = view.events.length ? view.events[0].id : "";
    const stream = new EventSource("/events" + (newest ? "?after=" + encodeURIComponent(newest) : ""));
    stream.addEventListener("open", () => setLive(true));
    stream.addEventListener("error", () => {
      setLive(false);
      if (stream.readyState === EventSource.CLOSED) { // refused (503): try again later
        setTimeout(connect, REFRESH);
      }
    });
    for (const type of TYPES) stream.addEventListener(type, received);
  }

  // --- the whole view, every REFRESH ms -----------------------------------------------------

  async function refresh() {
    try {
      const response = await fetch("/api/status", { cache: "no-store" });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      view = await response.json();
      loadedAt = Date.now();
      behind = 0;
      renderAll();
      const newest = view.events.length ? view.events[0].id : null;
      const at = newest ? recent.findIndex((e) => e.id === newest) : -1;
      if (at >= 0) for (const e of recent.slice(at + 1)) apply(e);
      body.dataset.refreshed = String(Number(body.dataset.refreshed || 0) + 1);
    } catch (err) {
      $("live").textContent = `refresh failed (${err.message})`;
    }
  }

  $("filter-name").addEventListener("input", filter);
  $("filter-state").addEventListener("change", filter);
  $("filters").addEventListener("submit", (e) => e.preventDefault());
  $("refresh").addEventListener("click", refresh);
  index();
  humanize(document);
  filter();
  connect();
  setInterval(refresh, REFRESH);
})();
