/**
 * The board page's script: plain browser JavaScript, served as `board.js` (no build step). Every element it makes is
 * built with `createElement` and `textContent`: data from the outbox never becomes markup (the page's CSP allows no
 * inline script either). It reads the API under the page's `<base>`, pages the table with `nextCursor`, confirms
 * every write in a dialog, and follows `api/events` (Server-Sent Events) when the board runs in the gateway.
 */
export const script = String.raw`"use strict";
(function () {
  var $ = function (id) { return document.getElementById(id); };
  var view = { info: null, channels: [], cursors: [], cursor: null, next: null, filters: {}, stats: null, open: null };

  /** An element with attributes and children; strings become text nodes, never markup. */
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      var v = attrs[k];
      if (v === null || v === undefined || v === false) return;
      if (k === "text") node.textContent = String(v);
      else if (k === "className") node.className = v;
      else if (k.indexOf("on") === 0) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    });
    (children || []).forEach(function (c) { if (c !== null && c !== undefined) node.append(c); });
    return node;
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }

  function duration(ms) {
    var a = Math.abs(ms), s = Math.floor(a / 1000);
    if (a < 1000) return Math.round(a) + " ms";
    if (s < 60) return (a / 1000).toFixed(1) + " s";
    if (s < 3600) return Math.floor(s / 60) + "m " + String(s % 60).padStart(2, "0") + "s";
    if (s < 86400) return Math.floor(s / 3600) + "h " + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + "m";
    return Math.floor(s / 86400) + "d " + Math.floor((s % 86400) / 3600) + "h";
  }
  function when(t) {
    if (t === null || t === undefined) return "-";
    var d = Date.now() - t;
    return new Date(t).toISOString().replace("T", " ").slice(0, 19) + "Z (" + (d >= 0 ? duration(d) + " ago" : "in " + duration(-d)) + ")";
  }

  function ApiError(status, body) {
    this.status = status;
    this.message = body && body.message ? body.message : "HTTP " + status;
    if (body && body.issues) this.message = body.issues.map(function (i) { return i.path.join(".") + ": " + i.message; }).join("; ");
  }
  function api(path, init) {
    init = init || {};
    var headers = { accept: "application/json" };
    if (init.body !== undefined) headers["content-type"] = "application/json";
    return fetch(path, { method: init.method || "GET", headers: headers, body: init.body, credentials: "same-origin" })
      .then(function (res) {
        return res.text().then(function (text) {
          var body = null;
          try { body = text === "" ? null : JSON.parse(text); } catch (e) { body = null; }
          if (res.status === 401) showLogin();
          if (!res.ok) throw new ApiError(res.status, body);
          return body;
        });
      });
  }
  function fail(error) { $("error").textContent = error && error.message ? error.message : String(error); }
  function ok() { $("error").textContent = ""; }

  function confirmDialog(text, action) {
    return new Promise(function (resolve) {
      var dialog = $("confirm");
      $("confirm-text").textContent = text;
      $("confirm-ok").textContent = action;
      dialog.returnValue = "";
      dialog.addEventListener("close", function done() {
        dialog.removeEventListener("close", done);
        resolve(dialog.returnValue === "ok");
      });
      dialog.showModal();
    });
  }

  function showLogin() {
    $("board").hidden = true;
    $("login").hidden = false;
    $("token").focus();
  }
  function login(event) {
    event.preventDefault();
    api("api/session", { method: "POST", body: JSON.stringify({ token: $("token").value }) })
      .then(function () { $("token").value = ""; $("login-error").textContent = ""; start(); })
      .catch(function (e) { $("login-error").textContent = e.status === 401 ? "That is not the board's token." : e.message; });
  }

  // ---------------------------------------------------------------------------------------------- counts

  var CARDS = [
    ["pending", "pending", "warn", null],
    ["oldest", "oldest pending", "warn", null],
    ["failed_retryable", "retrying", "warn", "failed_retryable"],
    ["failed_terminal", "failed for good", "bad", "failed_terminal"],
    ["expired", "expired", "bad", "expired"],
    ["delivered", "delivered (kept)", "ok", "delivered"]
  ];
  var STATES = ["queued", "in_flight", "failed_retryable", "failed_terminal", "expired", "delivered"];
  var SHORT = { queued: "queued", in_flight: "in flight", failed_retryable: "retrying", failed_terminal: "failed", expired: "expired", delivered: "delivered" };

  function renderStats(stats) {
    view.stats = stats;
    var cards = clear($("cards"));
    CARDS.forEach(function (c) {
      var value = c[0] === "pending" ? stats.pending : c[0] === "oldest"
        ? (stats.oldestPendingAgeMs === null ? "-" : duration(stats.oldestPendingAgeMs)) : stats.byState[c[0]];
      var quiet = value === 0 || value === "-";
      cards.append(el("button", {
        type: "button", className: "card" + (quiet ? "" : " " + c[2]), "data-card": c[0],
        onclick: function () { if (c[3]) setFilters({ state: c[3] }); }
      }, [el("span", { className: "n", text: value }), el("span", { className: "l", text: c[1] })]));
    });
    var table = clear($("channels"));
    var names = Object.keys(stats.byChannel).sort();
    view.channels = names;
    table.append(el("thead", {}, [el("tr", {}, [el("th", { text: "channel" })].concat(
      STATES.map(function (s) { return el("th", { className: "num", title: s, text: SHORT[s] }); })))]));
    var body = el("tbody");
    names.forEach(function (name) {
      body.append(el("tr", { "data-channel": name }, [el("td", { text: name })].concat(STATES.map(function (s) {
        var n = stats.byChannel[name][s];
        return el("td", { className: "num" }, [n === 0 ? el("span", { className: "muted", text: "0" })
          : el("button", { type: "button", className: "link", text: n, onclick: function () { setFilters({ state: s, channel: name }); } })]);
      }))));
    });
    table.append(body);
    var list = clear($("channel-names"));
    names.forEach(function (n) { list.append(el("option", { value: n })); });
    $("asof").textContent = "counted " + duration(Date.now() - stats.asOf) + " ago";
  }

  function renderActivity(activity) {
    var box = clear($("spark"));
    var ns = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(ns, "svg");
    var n = activity.buckets.length;
    svg.setAttribute("viewBox", "0 0 " + (n * 10) + " 100");
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("role", "img");
    var max = 1, delivered = 0, failed = 0;
    activity.buckets.forEach(function (b) {
      var bad = b.failed + b.retrying + b.expired;
      max = Math.max(max, b.delivered, bad);
      delivered += b.delivered; failed += bad;
    });
    activity.buckets.forEach(function (b, i) {
      var bad = b.failed + b.retrying + b.expired;
      [[b.delivered, "bar-ok", 1], [bad, "bar-bad", 5.5]].forEach(function (bar) {
        if (bar[0] === 0) return;
        var h = Math.max(2, (bar[0] / max) * 96);
        var r = document.createElementNS(ns, "rect");
        r.setAttribute("x", String(i * 10 + bar[2])); r.setAttribute("width", "3.5");
        r.setAttribute("y", String(100 - h)); r.setAttribute("height", String(h));
        r.setAttribute("class", bar[1]);
        var title = document.createElementNS(ns, "title");
        title.textContent = new Date(b.start).toISOString().slice(11, 16) + "Z: " + b.delivered + " delivered, "
          + b.failed + " failed, " + b.retrying + " retrying, " + b.expired + " expired";
        r.append(title);
        svg.append(r);
      });
    });
    svg.setAttribute("aria-label", delivered + " delivered and " + failed + " failures in the last hour");
    box.append(svg);
    $("spark-note").textContent = delivered + " delivered, " + failed + " failed, retrying or expired in the last hour, "
      + "per minute (from the database: rows by the state they are in now)";
  }

  function refreshCounts() {
    return Promise.all([api("api/stats").then(renderStats), api("api/activity").then(renderActivity)]);
  }
` + String.raw`
  // ---------------------------------------------------------------------------------------------- entries

  function query(cursor) {
    var p = new URLSearchParams();
    var f = view.filters;
    if (f.state) p.set("state", f.state);
    if (f.channel) p.set("channel", f.channel);
    if (f.conversation) p.set("conversation", f.conversation);
    if (cursor) p.set("before", cursor);
    p.set("limit", "50");
    return "api/entries?" + p.toString();
  }

  function loadEntries() {
    return api(query(view.cursor)).then(function (page) {
      view.next = page.nextCursor;
      var body = clear($("entries").tBodies[0]);
      page.entries.forEach(function (e) {
        body.append(el("tr", { "data-id": e.id, "data-state": e.state, tabindex: "0",
          onclick: function () { openEntry(e.id); },
          onkeydown: function (k) { if (k.key === "Enter") openEntry(e.id); } }, [
          el("td", { className: "age", title: new Date(e.enqueuedAt).toISOString(), text: duration(Date.now() - e.enqueuedAt) }),
          el("td", { className: "st" }, [el("span", { className: "state " + e.state, text: e.state })]),
          el("td", { className: "ch", text: e.channel }),
          el("td", { className: "to", text: e.to + (e.threadId ? " / " + e.threadId : "") }),
          el("td", { className: "kind", text: e.kind }),
          el("td", { className: "tries num", text: e.attemptCount }),
          el("td", { className: "reply", title: e.preview, text: e.preview }),
          el("td", { className: "err", title: e.lastError || "", text: e.lastError || "" })
        ]));
      });
      $("entries-empty").hidden = page.entries.length > 0;
      $("older").disabled = view.next === null;
      $("newer").disabled = view.cursors.length === 0;
      $("newest").disabled = view.cursor === null;
      var f = view.filters;
      $("retry-all").hidden = view.info.readOnly || (f.state !== "failed_terminal" && f.state !== "expired");
    });
  }

  function setFilters(f) {
    view.filters = { state: f.state || "", channel: f.channel || "", conversation: f.conversation || "" };
    $("f-state").value = view.filters.state;
    $("f-channel").value = view.filters.channel;
    $("f-conversation").value = view.filters.conversation;
    view.cursor = null; view.cursors = [];
    loadEntries().then(ok, fail);
  }

  function retryAll() {
    var f = view.filters;
    var filter = { state: f.state };
    if (f.channel) filter.channel = f.channel;
    if (f.conversation) filter.conversation = f.conversation;
    api("api/retry", { method: "POST", body: JSON.stringify(Object.assign({ dryRun: true }, filter)) }).then(function (dry) {
      if (dry.requeued.length === 0) { fail(new Error("Nothing to retry: no " + f.state + " entry matches that can be retried.")); return; }
      var text = "Requeue " + dry.requeued.length + " " + f.state + " entr" + (dry.requeued.length === 1 ? "y" : "ies")
        + (f.channel ? " of " + f.channel : "") + (f.conversation ? " to " + f.conversation : "")
        + "? Attempts are reset and the gateway sends them again."
        + (dry.skipped.length > 0 ? " " + dry.skipped.length + " progress or quarantined entries are left as they are." : "");
      return confirmDialog(text, "Requeue " + dry.requeued.length).then(function (yes) {
        if (!yes) return;
        return api("api/retry", { method: "POST", body: JSON.stringify(filter) }).then(function (done) {
          $("error").textContent = "";
          return Promise.all([refreshCounts(), loadEntries()]).then(function () {
            $("asof").textContent = "requeued " + done.requeued.length;
          });
        });
      });
    }).catch(fail);
  }

  function prune() {
    confirmDialog("Delete delivered entries past their retention (24 h by default) and failed or expired ones past theirs (7 days)? They cannot be retried afterwards.", "Prune").then(function (yes) {
      if (!yes) return;
      return api("api/prune", { method: "POST" }).then(function (r) {
        $("asof").textContent = "pruned " + r.pruned;
        return Promise.all([refreshCounts(), loadEntries()]);
      });
    }).catch(fail);
  }
` + String.raw`
  // ---------------------------------------------------------------------------------------------- one entry

  function field(dl, name, value) { dl.append(el("dt", { text: name }), el("dd", { text: value })); }

  function openEntry(id) {
    api("api/entries/" + encodeURIComponent(id)).then(function (d) {
      view.open = d;
      var e = d.entry;
      $("entry-title").textContent = "Entry " + e.id;
      var body = clear($("entry-body"));
      var dl = el("dl", { className: "fields" });
      field(dl, "state", e.state + (e.terminalReason ? " (" + e.terminalReason + ")" : ""));
      field(dl, "channel", e.channel + (e.accountId ? " / account " + e.accountId : ""));
      field(dl, "to", e.to + (e.threadId ? " / thread " + e.threadId : ""));
      field(dl, "kind", e.kind + (e.bestEffort ? ", best effort" : ""));
      field(dl, "attempts", String(e.attemptCount));
      field(dl, "parts delivered", e.partsDelivered + " of " + d.parts.length + (d.planExact ? "" : " (plan estimated: this process has no adapter for " + e.channel + ")"));
      field(dl, "enqueued", when(e.enqueuedAt));
      field(dl, "next attempt", when(e.nextAttemptAt));
      field(dl, "lease", e.leaseOwner ? e.leaseOwner + " until " + when(e.leaseExpiresAt) : "-");
      field(dl, "idempotency key", e.idempotencyKey || "-");
      body.append(dl);
      if (e.lastError) body.append(el("h3", { text: "Last error" }), el("pre", { className: "text error", "data-testid": "last-error", text: e.lastError }));
      body.append(el("h3", { text: "Parts" }));
      d.parts.forEach(function (p) {
        body.append(el("div", { className: "part" + (p.delivered ? " done" : ""), "data-part": p.index }, [
          el("span", { className: "mark", text: (p.delivered ? "✓ delivered" : "not delivered") + " · part " + (p.index + 1) + " · " + p.kind }),
          p.mediaUrl ? el("div", { className: "small muted", text: p.mediaUrl }) : null,
          p.text !== null ? el("pre", { className: "text", text: p.text }) : null
        ]));
      });
      if (e.metadata) body.append(el("h3", { text: "Metadata" }), el("pre", { className: "text", text: JSON.stringify(e.metadata, null, 2) }));
      body.append(el("h3", { text: "Timeline" }));
      var ol = el("ol", { className: "timeline" });
      d.timeline.forEach(function (t) {
        ol.append(el("li", {}, [el("span", { text: when(t.at) + " · " + t.event }),
          t.detail ? el("span", { className: "muted", text: " — " + t.detail }) : null,
          t.source === "events" ? el("span", { className: "pill small", text: "live" }) : null]));
      });
      body.append(ol);
      if (!d.retry.allowed && d.retry.reason && (e.state === "failed_terminal" || e.state === "expired")) {
        body.append(el("p", { className: "muted small", text: "Not retryable: " + d.retry.reason }));
      }
      $("entry-retry").hidden = view.info.readOnly || !d.retry.allowed;
      $("entry").hidden = false;
    }).catch(fail);
  }

  function retryOpen() {
    var e = view.open && view.open.entry;
    if (!e) return;
    confirmDialog("Requeue entry " + e.id + " (" + e.state + ") to " + e.to + "? Its attempts are reset and the gateway sends it again.", "Requeue")
      .then(function (yes) {
        if (!yes) return;
        return api("api/entries/" + encodeURIComponent(e.id) + "/retry", { method: "POST" }).then(function () {
          openEntry(e.id);
          return Promise.all([refreshCounts(), loadEntries()]);
        });
      }).catch(fail);
  }

  // ---------------------------------------------------------------------------------------------- live feed

  var pendingRefresh = null;
  function follow() {
    var feed = $("feed");
    var source = new EventSource("api/events");
    source.addEventListener("outbox", function (m) {
      var e = JSON.parse(m.data);
      feed.prepend(el("li", { "data-type": e.type }, [
        el("span", { className: "muted", text: new Date(e.at).toISOString().slice(11, 19) }),
        el("span", { className: "state " + (e.type === "delivered" ? "delivered" : e.type === "terminal" ? "failed_terminal" : e.type === "retry_scheduled" ? "failed_retryable" : "queued"), text: e.type }),
        el("button", { type: "button", className: "link", text: e.entryId, onclick: function () { openEntry(e.entryId); } }),
        e.detail ? el("span", { text: e.detail }) : null
      ]));
      while (feed.children.length > 200) feed.removeChild(feed.lastChild);
      if (pendingRefresh === null) pendingRefresh = setTimeout(function () { pendingRefresh = null; refreshCounts().catch(fail); if (view.cursor === null) loadEntries().catch(fail); }, 2000);
    });
  }

  // ---------------------------------------------------------------------------------------------- start

  function start() {
    api("api/stats").then(function (stats) {
      $("login").hidden = true;
      $("board").hidden = false;
      $("logout").hidden = !view.info.authRequired;
      $("prune").hidden = view.info.readOnly;
      renderStats(stats);
      return Promise.all([api("api/activity").then(renderActivity), loadEntries()]);
    }).then(function () {
      if (view.info.live && !view.following) { view.following = true; $("feed-panel").hidden = false; follow(); }
    }).catch(function (e) { if (e.status !== 401) fail(e); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    $("login-form").addEventListener("submit", login);
    $("filters").addEventListener("submit", function (ev) {
      ev.preventDefault();
      setFilters({ state: $("f-state").value, channel: $("f-channel").value.trim(), conversation: $("f-conversation").value.trim() });
    });
    $("f-reset").addEventListener("click", function () { setFilters({}); });
    $("older").addEventListener("click", function () { if (view.next) { view.cursors.push(view.cursor); view.cursor = view.next; loadEntries().catch(fail); } });
    $("newer").addEventListener("click", function () { if (view.cursors.length) { view.cursor = view.cursors.pop(); loadEntries().catch(fail); } });
    $("newest").addEventListener("click", function () { view.cursor = null; view.cursors = []; loadEntries().catch(fail); });
    $("retry-all").addEventListener("click", retryAll);
    $("prune").addEventListener("click", prune);
    $("entry-close").addEventListener("click", function () { $("entry").hidden = true; view.open = null; });
    $("entry-retry").addEventListener("click", retryOpen);
    $("refresh").addEventListener("click", function () { Promise.all([refreshCounts(), loadEntries()]).then(ok, fail); });
    $("logout").addEventListener("click", function () { api("api/session", { method: "DELETE" }).then(showLogin, fail); });
    document.addEventListener("keydown", function (k) { if (k.key === "Escape") $("entry").hidden = true; });
    api("api/info").then(function (info) {
      view.info = info;
      $("mode").textContent = (info.live ? "inside the gateway · live" : "beside the gateway") + (info.readOnly ? " · read-only" : "");
      view.filters = { state: "", channel: "", conversation: "" };
      start();
      setInterval(function () { if (!$("board").hidden) refreshCounts().catch(fail); }, Math.max(5000, info.statsMaxAgeMs));
    }).catch(fail);
  });
})();
`
