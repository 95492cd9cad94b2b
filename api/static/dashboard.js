/* The Cluster Management page: fills the server-rendered shell from the v1 API and keeps it
 * live. Plain JavaScript, no build step, no dependency.
 *
 * Live updates: the event stream (SSE over fetch, because EventSource cannot send the bearer
 * header) tells us something changed; we then re-read /api/v1/cluster, which is the only source
 * of what is shown. Without the stream we poll. Staleness needs no event: the page also re-reads
 * the view when the earliest heartbeat deadline passes.
 */
(function () {
  "use strict";

  var TOKEN_KEY = "clustermon.token";
  var POLL_SECONDS = 5;
  var RECONNECT_MAX_SECONDS = 30;
  var MAX_AUDIT_DAYS = 400;
  var COMPONENT_LABEL = { web: "Web", service: "Service" };
  var HEALTH_LABEL = { ok: "OK", warning: "Warning", error: "Error", unknown: "Unknown" };

  var $ = function (id) { return document.getElementById(id); };

  var state = {
    token: null,
    principal: null,
    live: true,
    at: null,              // Date of the past view
    view: null,
    received: 0,           // Date.now() when the view arrived
    attempted: 0,          // Date.now() of the last read of the live view
    clockOffset: 0,        // server time - client time, from the view's as_of.time
    range: { first: null, last: null },
    travelSeq: 0,
    refreshing: false,
    refreshAgain: false,
    refreshTimer: null,
    deadlineTimer: null,
    stream: { controller: null, connected: false, after: 0, retryTimer: null, retries: 0,
              reason: "" },
    poll: { timer: null, nextAt: 0 },
    auditTimer: null,
    auditAvailable: true,
    history: null,         // the component whose history dialog is open
    historyTimer: null,
    dirty: {},
    removeTarget: null
  };

  // --- formatting -----------------------------------------------------------------------------

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  function utc(value) {
    if (!value) { return "–"; }
    var d = value instanceof Date ? value : new Date(value);
    return d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate()) +
      " " + pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + ":" + pad(d.getUTCSeconds());
  }

  function duration(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    if (seconds < 120) { return seconds + " s"; }
    if (seconds < 7200) { return Math.floor(seconds / 60) + " min"; }
    if (seconds < 172800) {
      return Math.floor(seconds / 3600) + " h " + Math.floor((seconds % 3600) / 60) + " min";
    }
    return Math.floor(seconds / 86400) + " days";
  }

  function localInputValue(d) { return d.toISOString().slice(0, 19); }

  function parseInputValue(value) {
    if (!value) { return null; }
    var withSeconds = value.length === 16 ? value + ":00" : value;
    var d = new Date(withSeconds + "Z");
    return isNaN(d.getTime()) ? null : d;
  }

  // --- the API --------------------------------------------------------------------------------

  function ApiError(status, message, problem) {
    this.status = status;
    this.message = message;
    this.problem = problem;
  }

  function api(path, options) {
    options = options || {};
    var headers = { "Accept": "application/json", "Authorization": "Bearer " + state.token };
    var init = { method: options.method || "GET", headers: headers, cache: "no-store" };
    if (options.body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(options.body);
    }
    return fetch(path, init).then(function (response) {
      var type = response.headers.get("Content-Type") || "";
      var parsed = type.indexOf("json") >= 0 ? response.json() : Promise.resolve(null);
      return parsed.then(function (data) {
        if (!response.ok) {
          var message = (data && (data.detail || data.title)) || ("HTTP " + response.status);
          if (response.status === 401 && state.principal) {
            signOut("Your token is no longer accepted (" + message + "). Sign in again.");
          }
          throw new ApiError(response.status, message, data);
        }
        return data;
      });
    });
  }

  function announce(text) { $("announce").textContent = text; }

  // --- icons ----------------------------------------------------------------------------------

  var SVG = "http://www.w3.org/2000/svg";

  function icon(kind, label, title) {
    var svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("class", "icon icon-" + kind);
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", label);
    var t = document.createElementNS(SVG, "title");
    t.textContent = title || label;
    svg.appendChild(t);
    var use = document.createElementNS(SVG, "use");
    use.setAttribute("href", "#i-" + kind);
    svg.appendChild(use);
    return svg;
  }

  function setIcon(slot, kind, label, title) {
    var key = kind + "|" + label + "|" + (title || "");
    if (slot.dataset.key === key) { return; }
    slot.dataset.key = key;
    slot.replaceChildren(icon(kind, label, title));
  }

  function setReasons(details, reasons) {
    var list = details.querySelector("ul");
    var text = reasons.join("\n");
    if (details.dataset.text !== text) {
      details.dataset.text = text;
      list.replaceChildren.apply(list, reasons.map(function (r) {
        var li = document.createElement("li");
        li.textContent = r;
        return li;
      }));
    }
    // The summary keeps its place when empty, so a row never changes height on an update.
    details.classList.toggle("empty", reasons.length === 0);
    details.querySelector("summary").setAttribute("aria-hidden", reasons.length ? "false" : "true");
    details.querySelector("summary").tabIndex = reasons.length ? 0 : -1;
    if (!reasons.length) { details.open = false; }
    details.title = text;
  }

  // --- rendering ------------------------------------------------------------------------------

  function render(view) {
    state.view = view;
    state.received = Date.now();
    if (view.as_of && view.as_of.time) {
      state.clockOffset = new Date(view.as_of.time).getTime() - state.received;
    }
    renderConfiguration(view);
    renderServers(view);
    renderMode();
    scheduleDeadlineRefresh(view);
  }

  function renderMode() {
    var view = state.view;
    var mode = $("mode");
    var position = view && view.as_of ? view.as_of.position : 0;
    mode.dataset.mode = state.live ? "live" : "past";
    document.body.classList.toggle("past", !state.live);
    $("tt-live").disabled = state.live;
    var use = mode.querySelector("use");
    if (state.live) {
      use.setAttribute("href", "#i-ok");
      $("mode-text").textContent = "Live view: the cluster now (log position " + position + ")";
      $("as-of").textContent = "Servers now, as of log position " + position;
    } else {
      use.setAttribute("href", "#i-warning");
      $("mode-text").textContent = "Past view: the cluster as it was at " + utc(state.at) +
        " UTC (log position " + position + "). Live updates are paused; choose Back to live" +
        " to return.";
      $("as-of").textContent = "Servers as they were at " + utc(state.at) + " UTC";
    }
  }

  function renderConfiguration(view) {
    var config = view.configuration || {};
    $("server-count").textContent = String(view.server_count);
    var editable = isAdmin() && state.live;
    Array.prototype.forEach.call($("config-form").elements, function (input) {
      if (!input.name || !(input.name in config)) { return; }
      input.disabled = !editable;
      if (state.dirty[input.name] && state.live) { return; }  // never overwrite typing
      if (input.type === "checkbox") {
        input.checked = !!config[input.name];
      } else {
        input.value = String(config[input.name]);
      }
    });
    $("config-save").disabled = !editable;
  }

  function renderServers(view) {
    var body = $("servers-body");
    var existing = {};
    Array.prototype.forEach.call(body.rows, function (row) { existing[row.dataset.server] = row; });
    view.servers.forEach(function (server, index) {
      var row = existing[server.name];
      if (row) {
        delete existing[server.name];
      } else {
        row = $("row-template").content.firstElementChild.cloneNode(true);
        row.dataset.server = server.name;
      }
      fillRow(row, server);
      if (body.rows[index] !== row) { body.insertBefore(row, body.rows[index] || null); }
    });
    Object.keys(existing).forEach(function (name) { existing[name].remove(); });
    $("no-servers").hidden = view.servers.length > 0;
  }

  function fillRow(row, server) {
    row.dataset.health = server.health;
    row.querySelector(".name").textContent = server.name;
    var reasons = server.reasons || [];
    setIcon(row.querySelector(".server-cell .icon-slot"), server.health,
            "Server " + HEALTH_LABEL[server.health], reasons.join("\n"));
    setReasons(row.querySelector(".server-cell .reasons"), reasons);
    setText(row.querySelector(".os"), [server.os, server.os_version].filter(Boolean).join(" ") ||
            "–");
    setText(row.querySelector(".ip"), server.ip || "–");
    ["web", "service"].forEach(function (name) {
      var cell = row.querySelector('.component[data-component="' + name + '"]');
      var component = (server.components || []).filter(function (c) {
        return c.name === name;
      })[0];
      fillComponent(cell, server, name, component);
    });
    fillSync(row.querySelector('[data-sync="version"]'), server.version_in_sync, "warning",
             "Software version");
    fillSync(row.querySelector('[data-sync="key"]'), server.encryption_key_in_sync, "error",
             "Encryption key");
  }

  function setText(node, text) { if (node.textContent !== text) { node.textContent = text; } }

  function fillSync(cell, value, badKind, what) {
    var kind = value === true ? "ok" : value === false ? badKind : "unknown";
    var text = value === true ? "In sync" : value === false ? "Out of sync" : "Not reported";
    var slot = cell.querySelector(".icon-slot");
    if (!slot) {
      var inner = document.createElement("span");
      inner.className = "sync-inner";
      slot = document.createElement("span");
      slot.className = "icon-slot";
      var label = document.createElement("span");
      label.className = "sync-text";
      inner.append(slot, label);
      cell.replaceChildren(inner);
    }
    cell.dataset.value = String(value);
    setIcon(slot, kind, what + ": " + text);
    setText(cell.querySelector(".sync-text"), text);
  }

  function fillComponent(cell, server, name, component) {
    cell.dataset.state = component ? component.heartbeat.state : "absent";
    cell.dataset.health = component ? component.health : "absent";
    if (!component) {
      if (!cell.querySelector(".absent")) {
        cell.replaceChildren($("absent-template").content.firstElementChild.cloneNode(true));
        setIcon(cell.querySelector(".icon-slot"), "unknown",
                COMPONENT_LABEL[name] + " component not in the cluster");
      }
      return;
    }
    var box = cell.querySelector(".comp");
    if (!box) {
      box = $("component-template").content.firstElementChild.cloneNode(true);
      cell.replaceChildren(box);
      box.querySelector(".history").setAttribute(
        "aria-label", "History of the " + COMPONENT_LABEL[name] + " component of " + server.name);
      box.querySelector(".remove").setAttribute(
        "aria-label", "Remove the " + COMPONENT_LABEL[name] + " component of " + server.name);
      box.querySelector(".history").dataset.server = server.name;
      box.querySelector(".remove").dataset.server = server.name;
      box.querySelector(".history").dataset.component = name;
      box.querySelector(".remove").dataset.component = name;
    }
    var reasons = component.reasons || [];
    var title = reasons.length ? reasons.join("\n") : "Healthy";
    setIcon(box.querySelector(".icon-slot"), component.health,
            COMPONENT_LABEL[name] + " " + HEALTH_LABEL[component.health], title);
    setText(box.querySelector(".comp-status"),
            (component.status || "no status") + " · " + (component.verification || "unverified"));
    box.querySelector(".comp-status").title = "status · verification";
    setText(box.querySelector(".comp-version"),
            [component.product, component.product_version].filter(Boolean).join(" ") || "–");
    var beat = component.heartbeat || {};
    var badge = box.querySelector(".beat-state");
    setText(badge, beat.state === "stale" ? "stale" : "current");
    badge.dataset.state = beat.state;
    badge.title = beat.state === "stale" && beat.stale_since ?
      "stale since " + utc(beat.stale_since) + " UTC" :
      (beat.deadline ? "current until " + utc(beat.deadline) + " UTC" : "");
    var age = box.querySelector(".beat-age");
    age.dataset.age = beat.age_seconds === null || beat.age_seconds === undefined ?
      "" : String(beat.age_seconds);
    age.title = beat.last_at ? "last heartbeat " + utc(beat.last_at) + " UTC" : "";
    updateAge(age);
    setReasons(box.querySelector(".reasons"), reasons);
  }

  function updateAge(node) {
    var base = node.dataset.age;
    if (base === "" || base === undefined) { setText(node, "never"); return; }
    var seconds = parseFloat(base);
    if (state.live) { seconds += (Date.now() - state.received) / 1000; }
    setText(node, duration(seconds) + " ago");
  }

  function tick() {
    if (!state.view) { return; }
    // A quiet cluster sends no event: re-read now and then so the reasons' numbers keep up.
    if (state.live && Date.now() - Math.max(state.received, state.attempted) > 15000) {
      requestRefresh();
    }
    Array.prototype.forEach.call(document.querySelectorAll(".beat-age"), updateAge);
    if (state.live) {
      Array.prototype.forEach.call(document.querySelectorAll("td.running"), updateRunning);
    }
    renderLive();
  }

  // Re-read the view when the earliest current deadline passes: the page turns a component
  // stale on time even when no event arrives (no scheduler, or a lost stream).
  function scheduleDeadlineRefresh(view) {
    clearTimeout(state.deadlineTimer);
    if (!state.live) { return; }
    var earliest = null;
    view.servers.forEach(function (server) {
      server.components.forEach(function (c) {
        if (c.heartbeat && c.heartbeat.state === "current" && c.heartbeat.deadline) {
          var t = new Date(c.heartbeat.deadline).getTime();
          if (earliest === null || t < earliest) { earliest = t; }
        }
      });
    });
    if (earliest === null) { return; }
    var wait = earliest - (Date.now() + state.clockOffset) + 300;
    state.deadlineTimer = setTimeout(requestRefresh, Math.min(Math.max(wait, 300), 2147483000));
  }

  // --- live: refresh, stream, polling ---------------------------------------------------------

  function refresh() {
    if (!state.live || !state.token) { return Promise.resolve(); }
    if (state.refreshing) { state.refreshAgain = true; return Promise.resolve(); }
    state.refreshing = true;
    state.attempted = Date.now();
    var seq = state.travelSeq;
    return api("/api/v1/cluster").then(function (view) {
      if (state.live && seq === state.travelSeq) {
        render(view);
        extendRange(null, view.as_of.position);
      }
    }).catch(function (err) {
      if (err.status !== 401) { announce("Could not read the cluster: " + err.message); }
    }).then(function () {
      state.refreshing = false;
      if (state.refreshAgain) {
        state.refreshAgain = false;
        requestRefresh();
      }
    });
  }

  function requestRefresh() {
    if (state.refreshTimer) { return; }
    state.refreshTimer = setTimeout(function () {
      state.refreshTimer = null;
      refresh();
    }, 150);
  }

  function startStream() {
    stopStream();
    if (!state.token) { return; }
    var controller = new AbortController();
    state.stream.controller = controller;
    fetch("/api/v1/events/stream?after=" + state.stream.after, {
      headers: { "Authorization": "Bearer " + state.token, "Accept": "text/event-stream" },
      cache: "no-store",
      signal: controller.signal
    }).then(function (response) {
      if (!response.ok || !response.body) {
        throw new Error("the stream answered HTTP " + response.status);
      }
      setConnected(true);
      var reader = response.body.getReader();
      var decoder = new TextDecoder();
      var buffer = "";
      function pump() {
        return reader.read().then(function (chunk) {
          if (chunk.done) { throw new Error("the stream ended"); }
          buffer += decoder.decode(chunk.value, { stream: true }).replace(/\r\n?/g, "\n");
          var cut;
          while ((cut = buffer.indexOf("\n\n")) >= 0) {
            handleBlock(buffer.slice(0, cut));
            buffer = buffer.slice(cut + 2);
          }
          return pump();
        });
      }
      return pump();
    }).catch(function (err) {
      if (controller.signal.aborted) { return; }
      state.stream.controller = null;
      setConnected(false, err && err.message ? err.message : String(err));
      scheduleReconnect();
    });
  }

  function stopStream() {
    if (state.stream.controller) { state.stream.controller.abort(); }
    state.stream.controller = null;
    clearTimeout(state.stream.retryTimer);
  }

  function handleBlock(block) {
    var id = null, type = "message", data = "";
    block.split("\n").forEach(function (line) {
      if (!line || line.charAt(0) === ":") { return; }
      var colon = line.indexOf(":");
      var field = colon < 0 ? line : line.slice(0, colon);
      var value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "id") { id = value; }
      else if (field === "event") { type = value; }
      else if (field === "data") { data += (data ? "\n" : "") + value; }
    });
    if (id === null) { return; }
    state.stream.after = parseInt(id, 10);
    var event = null;
    try { event = JSON.parse(data); } catch (e) { event = null; }
    extendRange(event && event.recorded_at ? new Date(event.recorded_at) : null, state.stream.after);
    if (state.live) { requestRefresh(); }
    if (/TimedOut|Recovered|Removed|MonitorResumed/.test(type)) { scheduleAudit(); }
    var open = state.history;
    if (open && event && event.stream === open.server + "/" + open.component &&
        $("history-dialog").open) {
      if (!state.historyTimer) {  // at most one reload a second, however fast it beats
        state.historyTimer = setTimeout(function () {
          state.historyTimer = null;
          if ($("history-dialog").open) { loadHistory(open.server, open.component); }
        }, 1000);
      }
    }
  }

  function setConnected(connected, reason) {
    state.stream.connected = connected;
    state.stream.reason = reason || "";
    if (connected) {
      state.stream.retries = 0;
      stopPolling();
      requestRefresh();  // catch up on what happened while we were away
    } else {
      startPolling();
    }
    renderLive();
  }

  function scheduleReconnect() {
    clearTimeout(state.stream.retryTimer);
    var seconds = Math.min(RECONNECT_MAX_SECONDS, 2 * Math.pow(2, state.stream.retries));
    state.stream.retries += 1;
    state.stream.retryTimer = setTimeout(startStream, seconds * 1000);
  }

  function startPolling() {
    if (state.poll.timer) { return; }
    state.poll.nextAt = Date.now() + POLL_SECONDS * 1000;
    state.poll.timer = setInterval(function () {
      state.poll.nextAt = Date.now() + POLL_SECONDS * 1000;
      refresh();
    }, POLL_SECONDS * 1000);
  }

  function stopPolling() {
    clearInterval(state.poll.timer);
    state.poll.timer = null;
  }

  function renderLive() {
    var live = $("live");
    var text, next = "";
    if (!state.token) {
      live.dataset.state = "off";
      text = "Not connected";
    } else if (state.stream.connected) {
      live.dataset.state = "connected";
      text = "Live updates: connected";
    } else {
      live.dataset.state = "polling";
      var seconds = Math.max(0, Math.ceil((state.poll.nextAt - Date.now()) / 1000));
      text = "Live updates: disconnected — polling every " + POLL_SECONDS + " s";
      next = "(next in " + seconds + " s)";
      live.title = state.stream.reason ? "stream: " + state.stream.reason : "";
    }
    setText($("live-text"), text);
    setText($("live-next"), next);
  }

  // --- time travel ----------------------------------------------------------------------------

  function loadRange() {
    return api("/api/v1/events?limit=1").then(function (page) {
      var first = page.events[0];
      state.range.first = first ? new Date(first.recorded_at) : null;
      state.range.last = state.range.first;
      renderRange();
    });
  }

  // The last event's time: from a stream event directly, else read it by its position.
  function extendRange(time, position) {
    if (time) {
      if (!state.range.first) { state.range.first = time; }
      if (!state.range.last || time > state.range.last) { state.range.last = time; }
      renderRange();
      return;
    }
    if (!position || position === state.range.lastPosition) { return; }
    state.range.lastPosition = position;
    api("/api/v1/events?limit=1&after=" + (position - 1)).then(function (page) {
      var e = page.events[0];
      if (e) { extendRange(new Date(e.recorded_at), null); }
      else if (!state.range.first) { loadRange(); }
    }).catch(function () { /* the range only refines the slider */ });
  }

  function renderRange() {
    var slider = $("tt-slider");
    var first = state.range.first, last = state.range.last;
    var disabled = !first;
    slider.disabled = disabled;
    $("tt-time").disabled = disabled;
    if (disabled) { return; }
    var span = Math.max(0, Math.ceil((last - first) / 1000));
    slider.max = String(span);
    $("tt-first").textContent = "first event " + utc(first) + " UTC";
    $("tt-last").textContent = "last event " + utc(last) + " UTC";
    var min = localInputValue(new Date(Math.floor(first / 1000) * 1000));
    $("tt-time").min = min;
    if (state.live) {
      slider.value = String(span);
      slider.setAttribute("aria-valuetext", "now (live)");
      if (document.activeElement !== $("tt-time")) { $("tt-time").value = localInputValue(last); }
    }
  }

  function sliderTime() {
    var seconds = parseInt($("tt-slider").value, 10) || 0;
    return new Date(Math.floor(state.range.first.getTime() / 1000) * 1000 + seconds * 1000 + 999);
  }

  function travel(at) {
    var seq = ++state.travelSeq;
    $("tt-error").textContent = "";
    $("tt-time").removeAttribute("aria-invalid");
    return api("/api/v1/cluster?at=" + encodeURIComponent(at.toISOString())).then(function (view) {
      if (seq !== state.travelSeq) { return; }
      state.live = false;
      state.at = at;
      clearTimeout(state.deadlineTimer);
      render(view);
      $("tt-time").value = localInputValue(at);
      if (state.range.first) {
        var seconds = Math.floor((at - Math.floor(state.range.first / 1000) * 1000) / 1000);
        $("tt-slider").value = String(Math.max(0, seconds));
        $("tt-slider").setAttribute("aria-valuetext", utc(at) + " UTC");
      }
      announce("Showing the cluster as it was at " + utc(at) + " UTC");
      loadAudit();
    }).catch(function (err) {
      if (seq !== state.travelSeq) { return; }
      $("tt-error").textContent = err.message;
      $("tt-time").setAttribute("aria-invalid", "true");
    });
  }

  function backToLive() {
    state.travelSeq += 1;
    state.live = true;
    state.at = null;
    $("tt-error").textContent = "";
    renderRange();
    announce("Back to the live view");
    return refresh().then(loadAudit);
  }

  // --- configuration --------------------------------------------------------------------------

  function clearConfigErrors() {
    Array.prototype.forEach.call(document.querySelectorAll("#config-form .field-error"),
                                 function (p) { p.textContent = ""; });
    Array.prototype.forEach.call(document.querySelectorAll("#config-form [aria-invalid]"),
                                 function (i) { i.removeAttribute("aria-invalid"); });
  }

  function saveConfiguration(event) {
    event.preventDefault();
    if (!isAdmin() || !state.live || !state.view) { return; }
    clearConfigErrors();
    var config = state.view.configuration;
    var changes = {};
    Array.prototype.forEach.call($("config-form").elements, function (input) {
      if (!input.name || !(input.name in config)) { return; }
      var value = input.type === "checkbox" ? input.checked :
        (input.value.trim() === "" ? null : Number(input.value));
      if (value !== config[input.name]) { changes[input.name] = value; }
    });
    if (!Object.keys(changes).length) {
      $("config-status").textContent = "Nothing changed.";
      return;
    }
    $("config-status").textContent = "Saving…";
    api("/api/v1/cluster/configuration", { method: "PUT", body: changes }).then(function () {
      state.dirty = {};
      $("config-status").textContent = "Saved.";
      return refresh();
    }).catch(function (err) {
      $("config-status").textContent = "";
      var errors = (err.problem && err.problem.errors) || {};
      var first = null;
      Object.keys(errors).forEach(function (field) {
        var messages = [].concat(errors[field]).join(" ");
        var slot = $("error-" + field);
        var input = $("cfg-" + field);
        if (slot && input) {
          slot.textContent = messages;
          input.setAttribute("aria-invalid", "true");
          first = first || input;
        } else {
          $("config-error").textContent += messages + " ";
        }
      });
      if (!Object.keys(errors).length) { $("config-error").textContent = err.message; }
      if (first) { first.focus(); }
    });
  }

  // --- removal --------------------------------------------------------------------------------

  function askRemove(server, component) {
    state.removeTarget = { server: server, component: component };
    var label = COMPONENT_LABEL[component];
    $("confirm-title").textContent = "Remove the " + label + " component of " + server + "?";
    $("confirm-text").textContent = "The " + label + " component of server " + server +
      " will be removed from the cluster. It disappears from this table until it sends a " +
      "heartbeat again; its history stays in the log.";
    $("confirm-ok").textContent = "Remove " + label + " of " + server;
    $("confirm-error").textContent = "";
    $("confirm-remove").showModal();
  }

  function confirmRemove() {
    var target = state.removeTarget;
    if (!target) { return; }
    var path = "/api/v1/servers/" + encodeURIComponent(target.server) + "/components/" +
      encodeURIComponent(target.component);
    $("confirm-ok").disabled = true;
    api(path, { method: "DELETE" }).then(function () {
      $("confirm-remove").close();
      announce("Removed the " + COMPONENT_LABEL[target.component] + " component of " +
               target.server);
      requestRefresh();
    }).catch(function (err) {
      $("confirm-error").textContent = err.message;
    }).then(function () {
      $("confirm-ok").disabled = false;
    });
  }

  // --- history --------------------------------------------------------------------------------

  function showHistory(server, component) {
    var label = COMPONENT_LABEL[component];
    $("history-title").textContent = "History of the " + label + " component of " + server;
    $("history-note").textContent = "Loading…";
    $("history-body").replaceChildren();
    $("history-dialog").showModal();
    state.history = { server: server, component: component };
    loadHistory(server, component);
  }

  // While the dialog is open, the component's own events reload it: its history is live too.
  function loadHistory(server, component) {
    var path = "/api/v1/servers/" + encodeURIComponent(server) + "/components/" +
      encodeURIComponent(component) + "/history";
    api(path).then(function (data) {
      var rows = data.transitions.slice().reverse();
      $("history-note").textContent = rows.length +
        (rows.length === 1 ? " transition" : " transitions") + ", newest first." +
        (state.live ? "" : " Rows after the past view's time are marked “later”.");
      $("history-body").replaceChildren.apply($("history-body"), rows.map(function (t) {
        var tr = document.createElement("tr");
        var later = !state.live && new Date(t.at) > state.at;
        if (later) { tr.className = "later"; }
        [utc(t.at) + (later ? " (later)" : ""), t.event, t.state, t.health || "–", t.reason]
          .forEach(function (text, i) {
            var cell = document.createElement(i === 0 ? "th" : "td");
            if (i === 0) { cell.scope = "row"; }
            cell.textContent = text;
            tr.appendChild(cell);
          });
        return tr;
      }));
    }).catch(function (err) {
      $("history-note").textContent = err.message;
    });
  }

  // --- audit ----------------------------------------------------------------------------------

  function scheduleAudit() {
    if (state.auditTimer || !state.live) { return; }
    state.auditTimer = setTimeout(function () { state.auditTimer = null; loadAudit(); }, 2000);
  }

  function auditPeriod() {
    var until = state.live ? new Date(Date.now() + state.clockOffset) : state.at;
    var since = state.range.first;
    var floor = new Date(until.getTime() - MAX_AUDIT_DAYS * 86400000);
    if (!since || since < floor) { since = floor; }
    return { since: since, until: until };
  }

  function loadAudit() {
    if (!state.auditAvailable || !state.token) { return Promise.resolve(); }
    var period = auditPeriod();
    if (!(period.since < period.until)) { return Promise.resolve(); }
    var query = "?since=" + encodeURIComponent(period.since.toISOString()) +
      (state.live ? "" : "&until=" + encodeURIComponent(period.until.toISOString()));
    return Promise.all([
      api("/api/v1/audit/failovers" + query),
      api("/api/v1/audit/outages" + query)
    ]).then(function (answers) {
      renderAudit(period, answers[0], answers[1]);
    }).catch(function (err) {
      if (err.status === 404) {
        state.auditAvailable = false;
        $("audit-period").textContent = "This server does not offer the audit endpoints.";
        $("audit-body").replaceChildren();
      } else {
        $("audit-period").textContent = "Could not read the audit: " + err.message;
      }
    });
  }

  function table(caption, headers, rows) {
    var t = document.createElement("table");
    t.className = "audit-table";
    var c = document.createElement("caption");
    c.textContent = caption;
    t.appendChild(c);
    var head = t.createTHead().insertRow();
    headers.forEach(function (h) {
      var th = document.createElement("th");
      th.scope = "col";
      th.textContent = h;
      head.appendChild(th);
    });
    var body = t.createTBody();
    rows.forEach(function (cells) {
      var tr = body.insertRow();
      cells.forEach(function (value, i) {
        var cell = document.createElement(i === 0 ? "th" : "td");
        if (i === 0) { cell.scope = "row"; }
        if (value && value.since) {
          cell.className = "running";  // an ongoing duration: the tick keeps it growing
          cell.dataset.since = value.since;
          cell.textContent = value.text;
        } else {
          cell.textContent = value;
        }
        tr.appendChild(cell);
      });
    });
    var wrap = document.createElement("div");
    wrap.className = "audit-scroll";
    wrap.appendChild(t);
    return wrap;
  }

  function renderAudit(period, failovers, outages) {
    $("audit-period").textContent = "From " + utc(period.since) + " to " +
      (state.live ? "now" : utc(period.until)) + " UTC (from the log).";
    var parts = [];
    var outageRows = (outages.outages || []).map(function (o) {
      return [o.server + " " + COMPONENT_LABEL[o.component], o.cause || "–", utc(o.start),
              o.ongoing ? "ongoing" : utc(o.end), ongoing(o.ongoing, o.start, o.duration_seconds)];
    });
    parts.push(outageRows.length ?
      table("Outages (" + outageRows.length + ")",
            ["Component", "Cause", "Start (UTC)", "End (UTC)", "Duration"], outageRows) :
      paragraph("No outage in this period."));
    var failoverRows = (failovers.failovers || []).map(function (f) {
      return [utc(f.at), f.server + " " + COMPONENT_LABEL[f.component],
              (f.taken_over_by || []).join(", ") || "–",
              f.recovered_at ? utc(f.recovered_at) : "not yet",
              ongoing(!f.recovered_at, f.at, f.outage_seconds)];
    });
    parts.push(failoverRows.length ?
      table("Failovers (" + failoverRows.length + ")",
            ["When (UTC)", "Service that failed", "Work taken over by", "Recovered (UTC)",
             "Outage"], failoverRows) :
      paragraph("No failover in this period."));
    var clusterRows = (failovers.cluster_outages || []).map(function (o) {
      return [utc(o.start), o.ongoing ? "ongoing" : utc(o.end),
              ongoing(o.ongoing, o.start, o.duration_seconds),
              (o.components || []).map(function (c) { return c.server; }).join(", ")];
    });
    if (clusterRows.length) {
      parts.push(table("Cluster outages: no Service component was current (" +
                       clusterRows.length + ")",
                       ["Start (UTC)", "End (UTC)", "Duration", "Services down"], clusterRows));
    }
    $("audit-body").replaceChildren.apply($("audit-body"), parts);
  }

  function ongoing(running, start, seconds) {
    if (!running || !state.live) { return duration(seconds); }
    return { text: duration(seconds), since: start };
  }

  function updateRunning(node) {
    var seconds = (Date.now() + state.clockOffset - new Date(node.dataset.since)) / 1000;
    setText(node, duration(seconds));
  }

  function paragraph(text) {
    var p = document.createElement("p");
    p.className = "help";
    p.textContent = text;
    return p;
  }

  // --- sign in / out --------------------------------------------------------------------------

  function isAdmin() { return !!(state.principal && state.principal.admin); }

  function signIn(token) {
    state.token = token;
    $("token-error").textContent = "";
    return api("/dashboard/whoami").then(function (principal) {
      if (principal.role === "agent") {
        throw new ApiError(403, "An agent token may only send heartbeats: sign in with a " +
                           "viewer or admin token.");
      }
      state.principal = principal;
      try { sessionStorage.setItem(TOKEN_KEY, token); } catch (e) { /* private mode */ }
      $("who-name").textContent = principal.name;
      $("who-role").textContent = principal.role;
      $("who").hidden = false;
      $("sign-in").hidden = true;
      $("app").hidden = false;
      document.body.classList.toggle("admin", principal.admin);
      state.live = true;
      return loadRange().then(refresh).then(function () {
        state.stream.after = state.view ? state.view.as_of.position : 0;
        startStream();
        renderLive();
        loadAudit();
      });
    }).catch(function (err) {
      state.token = null;
      state.principal = null;
      try { sessionStorage.removeItem(TOKEN_KEY); } catch (e) { /* nothing stored */ }
      $("token-error").textContent = err.status === 401 ?
        "This token is not known or was revoked." : err.message;
      $("token").setAttribute("aria-invalid", "true");
      $("token").focus();
    });
  }

  function signOut(message) {
    stopStream();
    stopPolling();
    clearTimeout(state.deadlineTimer);
    state.token = null;
    state.principal = null;
    state.view = null;
    state.stream.connected = false;
    state.stream.after = 0;
    state.auditAvailable = true;
    state.dirty = {};
    try { sessionStorage.removeItem(TOKEN_KEY); } catch (e) { /* nothing stored */ }
    document.body.classList.remove("admin", "past");
    $("servers-body").replaceChildren();
    $("app").hidden = true;
    $("who").hidden = true;
    $("sign-in").hidden = false;
    $("token").value = "";
    $("token-error").textContent = message || "";
    renderLive();
  }

  // --- wiring ---------------------------------------------------------------------------------

  document.addEventListener("DOMContentLoaded", function () {
    $("sign-in-form").addEventListener("submit", function (event) {
      event.preventDefault();
      var token = $("token").value.trim();
      if (!token) {
        $("token-error").textContent = "Enter a token.";
        return;
      }
      signIn(token);
    });
    $("sign-out").addEventListener("click", function () { signOut(""); });
    $("config-form").addEventListener("submit", saveConfiguration);
    $("config-form").addEventListener("input", function (event) {
      if (event.target.name) {
        state.dirty[event.target.name] = true;
        $("config-status").textContent = "";
      }
    });
    $("tt-form").addEventListener("submit", function (event) {
      event.preventDefault();
      var at = parseInputValue($("tt-time").value);
      if (!at) {
        $("tt-error").textContent = "Enter a date and time (UTC).";
        return;
      }
      travel(at);
    });
    $("tt-live").addEventListener("click", backToLive);
    var sliderTimer = null;
    $("tt-slider").addEventListener("input", function () {
      if (!state.range.first) { return; }
      var at = sliderTime();
      $("tt-time").value = localInputValue(at);
      $("tt-slider").setAttribute("aria-valuetext", utc(at) + " UTC");
      clearTimeout(sliderTimer);
      sliderTimer = setTimeout(function () { travel(at); }, 250);
    });
    $("servers-body").addEventListener("click", function (event) {
      var button = event.target.closest("button");
      if (!button) { return; }
      if (button.classList.contains("remove")) {
        askRemove(button.dataset.server, button.dataset.component);
      } else if (button.classList.contains("history")) {
        showHistory(button.dataset.server, button.dataset.component);
      }
    });
    $("confirm-ok").addEventListener("click", confirmRemove);
    setInterval(tick, 1000);
    // Ongoing outages grow: re-read the audit now and then even when nothing happens.
    setInterval(function () { if (state.live && state.view) { scheduleAudit(); } }, 30000);
    var saved = null;
    try { saved = sessionStorage.getItem(TOKEN_KEY); } catch (e) { saved = null; }
    if (saved) { signIn(saved); } else { $("token").focus(); }
  });
}());
