/* Browser side of the dashboard: sound for high-priority alarms (only after the user enables it), the overview
   renderer, and loud notes when the dashboard server stops answering or this station's login has ended. */
(function () {
  "use strict";
  var audio = null;
  var lastBurst = 0;
  // IEC 60601-1-8 style high-priority burst: two groups of five pulses; repeated while an alarm sounds.
  var BURST = [0, 0.15, 0.3, 0.6, 0.75, 1.2, 1.35, 1.5, 1.8, 1.95];
  var REPEAT_MS = 6000;

  function context() {
    if (!audio) {
      var Ctx = window.AudioContext || window.webkitAudioContext;
      if (!Ctx) { return null; }
      audio = new Ctx();
    }
    if (audio.state === "suspended") { audio.resume(); }
    return audio;
  }

  function maybeBurst() {
    if (Date.now() - lastBurst > REPEAT_MS) {
      lastBurst = Date.now();
      burst();
    }
  }

  function soundEnabled() {
    try { return window.localStorage.getItem("sound-enabled") === "true"; } catch (e) { return false; }
  }

  function burst() {
    var ctx = context();
    if (!ctx) { return; }
    var t0 = ctx.currentTime + 0.05;
    BURST.forEach(function (offset) {
      var osc = ctx.createOscillator();
      var gain = ctx.createGain();
      osc.type = "square";
      osc.frequency.value = 880;
      gain.gain.setValueAtTime(0.0001, t0 + offset);
      gain.gain.exponentialRampToValueAtTime(0.25, t0 + offset + 0.01);
      gain.gain.exponentialRampToValueAtTime(0.0001, t0 + offset + 0.12);
      osc.connect(gain).connect(ctx.destination);
      osc.start(t0 + offset);
      osc.stop(t0 + offset + 0.13);
    });
  }


  // ---- Overview tiles, rendered here rather than by React: at 48 chairs Dash's renderer spent more than a
  // second of script time per second re-walking the component tree. The server sends compact JSON (see
  // dashboard/components.py tile_data); only changed text and classes touch the DOM, so the CSS flashing
  // of alarm colours runs on undisturbed. Text goes in through textContent only: nothing is parsed as HTML.
  var tiles = {};

  function el(tag, cls, parent) {
    var node = document.createElement(tag);
    if (cls) { node.className = cls; }
    if (parent) { parent.appendChild(node); }
    return node;
  }
  function setText(node, text) { if (node.textContent !== text) { node.textContent = text; } }
  function setClass(node, cls) { if (node.className !== cls) { node.className = cls; } }
  function setAttr(node, name, value) { if (node.getAttribute(name) !== value) { node.setAttribute(name, value); } }

  function navigate(ev) {
    if (ev.defaultPrevented || ev.button !== 0 || ev.ctrlKey || ev.metaKey || ev.shiftKey || ev.altKey) { return; }
    ev.preventDefault();
    window.history.pushState({}, "", this.getAttribute("href"));
    window.dispatchEvent(new CustomEvent("_dashprivate_pushstate"));
    window.scrollTo(0, 0);
  }

  function buildTile(t) {
    var link = el("a", "tile-link");
    link.addEventListener("click", navigate);
    var tile = el("div", "tile", link);
    tile.id = t.id;
    var head = el("div", "tile-head", tile);
    var chair = el("span", "tile-chair", head);
    var badge = el("span", "badge", head);
    var alarm = el("div", "tile-alarm", tile);
    var nums = el("div", "tile-nums", tile);
    var numParts = t.nums.map(function () {
      var box = el("div", "num", nums);
      var nh = el("div", "num-head", box);
      return { box: box, label: el("span", "num-label", nh), unit: el("span", "num-unit", nh),
               value: el("div", "num-value", box), age: el("div", "num-age", box) };
    });
    var cuff = el("div", "tile-cuff", tile);
    setText(el("span", "num-label", cuff), "NIBP");
    var cuffValue = el("span", "cuff-value", cuff);
    var cuffAge = el("span", "cuff-age", cuff);
    var session = el("div", "tile-session", tile);
    var sessionText = el("span", "session-text", session);
    var elapsed = el("span", "session-elapsed", session);
    var record = el("div", "tile-record", tile);
    var spark = el("img", "spark", tile);
    spark.alt = "last 15 minutes of HR and SpO2";
    var p = { link: link, tile: tile, chair: chair, badge: badge, alarm: alarm, alarmKey: null, nums: numParts,
              cuffValue: cuffValue, cuffAge: cuffAge, session: session, sessionText: sessionText, elapsed: elapsed,
              record: record, spark: spark, visible: !observer, sparkWanted: null, sparkShown: null };
    link.__tile = p;
    if (observer) { observer.observe(link); }
    return p;
  }

  // Sparklines (SVG images) are set only on tiles on or near the screen: at 2,000 chairs, decoding every
  // tile's new image each 5 s kept the page's main thread busy. A tile scrolled into view gets its latest one.
  var observer = window.IntersectionObserver ? new IntersectionObserver(function (entries) {
    entries.forEach(function (entry) {
      var p = entry.target.__tile;
      if (!p) { return; }
      p.visible = entry.isIntersecting;
      showSpark(p);
    });
  }, { rootMargin: "300px" }) : null;

  function showSpark(p) {
    if (p.visible && p.sparkWanted && p.sparkWanted !== p.sparkShown) {
      p.spark.setAttribute("src", p.sparkWanted);
      p.sparkShown = p.sparkWanted;
    }
  }

  function updateTile(p, t, toLocal) {
    p.t = t;
    // Deadlines on this browser's clock: the server's, shifted by (arrival here - server's "now").
    p.cls = t.cls;
    p.liveUntil = t.liveUntil == null ? null : toLocal(t.liveUntil);
    p.staleAt = t.nums.map(function (n) { return n[6] == null ? null : toLocal(n[6]); });
    setAttr(p.link, "href", t.href);
    setClass(p.tile, t.cls);
    setAttr(p.tile, "data-chair", t.chair);
    setAttr(p.tile, "data-site", t.site);
    setAttr(p.tile, "data-mode", t.mode);
    setAttr(p.tile, "data-alarm", t.alarmPrio);
    var chairKey = t.chair + "|" + (t.showSite ? t.site : "");
    if (p.chairKey !== chairKey) {
      p.chairKey = chairKey;
      p.chair.textContent = t.chair;
      if (t.showSite) { setText(el("small", "tile-site", p.chair), " " + t.site); }
    }
    var badgeKey = t.badge.join("|");
    if (p.badgeKey !== badgeKey) {
      p.badgeKey = badgeKey;
      p.badge.className = t.badge[2];
      p.badge.textContent = t.badge[0];
      if (t.badge[1]) { setText(el("small", "", p.badge), t.badge[1]); }
    }
    var alarmKey = JSON.stringify(t.alarm);
    if (p.alarmKey !== alarmKey) {
      p.alarmKey = alarmKey;
      p.alarm.textContent = "";
      if (!t.alarm) {
        p.alarm.className = "tile-alarm tile-alarm-none";
        p.alarm.textContent = "no alarms";
      } else {
        p.alarm.className = t.alarm.cls;
        if (t.alarm.prio) { setText(el("span", "alarm-prio", p.alarm), t.alarm.prio); }
        setText(el("span", "alarm-text", p.alarm), t.alarm.text);
        t.alarm.tags.forEach(function (tag) { setText(el("span", "alarm-tag", p.alarm), tag); });
      }
    }
    t.nums.forEach(function (n, i) {
      var q = p.nums[i];
      if (!q) { return; }
      setClass(q.box, n[5]);
      setText(q.label, n[1]);
      setText(q.unit, n[2]);
      setText(q.value, n[3]);
      setText(q.age, n[4]);
    });
    setText(p.cuffValue, t.cuff[0]);
    setText(p.cuffAge, t.cuff[1]);
    setClass(p.cuffAge, t.cuff[2]);
    setClass(p.session, t.session[2]);
    setText(p.sessionText, t.session[0]);
    setText(p.elapsed, t.session[1]);
    setText(p.record, t.record ? t.record[0] : "");
    setClass(p.record, "tile-record " + (t.record ? t.record[1] : "rec-tile-empty"));
    if (t.spark) { p.sparkWanted = t.spark; }
    showSpark(p);
  }

  function renderSummary(s) {
    var box = document.getElementById("overview-summary");
    if (!box || !s) { return; }
    var key = s.join("|");
    if (box.getAttribute("data-key") === key) { return; }
    box.setAttribute("data-key", key);
    box.textContent = "";
    setText(el("span", "sum-item", box), s[0] + " chairs");
    setText(el("span", "sum-item", box), s[1] + " live");
    setText(el("span", "sum-item" + (s[2] ? " sum-warn" : ""), box), s[2] + " not live");
    setText(el("span", "sum-item" + (s[3] ? " sum-alarm" : ""), box), s[3] + " with alarms");
  }

  // The server clock of the newest data shown: a poll answer older than a pushed event never undoes it.
  var lastNow = 0;
  var noDataMs = 15000;

  function renderOverview(data, fromPush) {
    var grid = document.getElementById("overview-grid");
    if (!grid || !data) { return window.dash_clientside.no_update; }
    var box = grid.querySelector(":scope > .tiles");
    // A change event needs the tiles it changes: before the page's first data is drawn, it waits for that.
    if (data.full === false && !box) { return window.dash_clientside.no_update; }
    if (box && data.now < lastNow) { return window.dash_clientside.no_update; }
    if (!box) {
      box = el("div", "tiles", grid);
      tiles = {};
    }
    lastNow = data.now || lastNow;
    noDataMs = data.noDataMs || noDataMs;
    var received = Date.now();
    var toLocal = function (ms) { return ms - data.now + received; };
    renderSummary(data.summary);
    setClass(box, "tiles " + data.density);
    if (data.full === false) {  // a pushed event with the tiles that changed
      // Each tile as its id and the fields that changed: merged over what it showed.
      data.tiles.forEach(function (t) {
        var p = tiles[t.id];
        if (p) { updateTile(p, Object.assign({}, p.t, t), toLocal); }
      });
      return String(Object.keys(tiles).length);
    }
    if (!fromPush) {
      openPush();
      if (pushing) { setPoll(false); }  // the page came back to the overview while its stream ran on
    }
    var keep = {};
    var previous = null;
    data.tiles.forEach(function (t) {
      var p = tiles[t.id];
      if (!p || !box.contains(p.link)) { p = tiles[t.id] = buildTile(t); }
      updateTile(p, t, toLocal);
      keep[t.id] = true;
      var wanted = previous ? previous.nextSibling : box.firstChild;
      if (wanted !== p.link) { box.insertBefore(p.link, wanted); }
      previous = p.link;
    });
    Object.keys(tiles).forEach(function (id) {
      if (!keep[id]) {
        if (observer) { observer.unobserve(tiles[id].link); }
        tiles[id].link.remove();
        delete tiles[id];
      }
    });
    var empty = document.getElementById("overview-empty");
    if (empty) { empty.style.display = data.tiles.length ? "none" : "block"; }
    return String(data.tiles.length);
  }

  // ---- Deadlines kept by the browser itself: a value turns grey, and a live tile turns NO DATA, when its
  // server-given deadline passes without an update, even if no push or poll arrives any more (duty of care:
  // never a stale value shown as current). The server does the same on its next event.
  function ageText(ms) {
    var s = Math.max(0, Math.floor(ms / 1000));
    if (s < 60) { return s + " s ago"; }
    if (s < 3600) { return Math.floor(s / 60) + " min ago"; }
    return Math.floor(s / 3600) + " h ago";
  }

  function expireTiles() {
    var now = Date.now();
    Object.keys(tiles).forEach(function (id) {
      var p = tiles[id];
      var newest = null;
      (p.staleAt || []).forEach(function (at, i) {
        if (at === null || now <= at) { return; }
        var q = p.nums[i];
        if (q && q.box.className.indexOf(" stale") === -1) { q.box.className = q.box.className.replace(" big", " stale big"); }
        if (q) { setText(q.age, ageText(now - at + noDataMs)); }
      });
      if (p.liveUntil === null || p.liveUntil === undefined || now <= p.liveUntil) { return; }
      newest = now - p.liveUntil + noDataMs;
      setClass(p.tile, p.cls.replace("mode-live", "mode-nodata"));
      setAttr(p.tile, "data-mode", "nodata");
      p.badgeKey = "expired here";  // the next event from the server draws its own badge again
      p.badge.className = "badge badge-nodata";
      p.badge.textContent = "NO DATA";
      setText(el("small", "", p.badge), " · last " + ageText(newest));
      p.nums.forEach(function (q) {
        if (q.box.className.indexOf(" stale") === -1) { q.box.className = q.box.className.replace(" big", " stale big"); }
      });
    });
  }
  setInterval(expireTiles, 250);

  // ---- Push: the server sends the tiles as they change (dashboard/push.py, server-sent events). While it
  // delivers, the overview's one-second poll is off; when it breaks or is refused, the poll is on again.
  var stream = null;
  var pushing = false;
  var pushRetryAt = 0;

  function setPoll(enabled) {
    document.body.setAttribute("data-updates", enabled ? "poll" : "push");  // which path delivers (tests, support)
  }

  function closePush() {
    if (stream) { stream.close(); stream = null; }
    pushing = false;
  }

  function openPush() {
    var overview = document.getElementById("overview");
    var url = overview && overview.getAttribute("data-push");
    if (!url || stream || !window.EventSource || Date.now() < pushRetryAt || sessionEndedAt) { return; }
    stream = new EventSource(url);
    stream.addEventListener("tiles", function (ev) {
      lastOk = Date.now();
      var data;
      try { data = JSON.parse(ev.data); } catch (e) { return; }
      if (!pushing) { pushing = true; setPoll(false); }
      renderOverview(data, true);
    });
    stream.addEventListener("ended", function () {
      closePush();
      setPoll(true);  // its answer (401) shows the signed-out note, as for every callback
    });
    stream.onerror = function () {
      if (pushing) { pushing = false; setPoll(true); }
      // CLOSED: refused (no login, all push streams taken, push off): poll, and try again later.
      // Otherwise the browser reconnects by itself after the server's retry delay.
      if (stream && stream.readyState === 2) { stream = null; pushRetryAt = Date.now() + 30000; }
    };
  }

  window.dash_clientside = Object.assign({}, window.dash_clientside, {
    vitals: {
      renderOverview: renderOverview,
      // The overview's fallback poll goes to the server only while the push channel is not delivering.
      pollGate: function (n) { return pushing ? window.dash_clientside.no_update : n; },
      toggleSound: function (clicks, enabled) {
        var next = !enabled;
        if (next) { context(); }
        return next;
      },
      soundLabel: function (enabled) {
        return enabled ? "Sound on" : "Sound off";
      },
      sound: function (state, enabled) {
        var n = (state && state.sounding) || 0;
        var lost = Boolean(state && state.brokerLost);
        if (enabled && (n > 0 || lost)) { maybeBurst(); }
        var what = lost ? "broker connection lost" + (n > 0 ? ", " : "") : "";
        if (n > 0) { what += n + " high alarm(s)"; }
        if (!what) { return ""; }
        return what + (enabled ? " sounding" : ", sound off");
      }
    }
  });

  // If the dashboard server stops answering, the page would keep showing its last values: grey them out
  // and say so once no update has arrived for this long.
  var SERVER_LOST_MS = 5000;
  var lastOk = Date.now();
  // Set when a callback answers 401: this station's login ended (expired, signed out in another tab, user
  // removed). The page stays, greyed under a red note, and never silently leaves for the sign-in form: a
  // station that left would stop showing alarms without anyone noticing.
  var sessionEndedAt = 0;

  function note(id) {
    var node = document.getElementById(id);
    if (!node) {
      node = document.createElement("div");
      node.id = id;
      node.className = id;
      node.setAttribute("role", "alert");
      document.body.appendChild(node);
    }
    return node;
  }

  function showSessionEnded() {
    document.body.classList.add("session-ended");
    var node = note("session-ended-note");
    if (!node.firstChild) {
      el("div", "session-ended-title", node).textContent = "SIGNED OUT: THIS STATION SHOWS NO ALARMS";
      el("div", "session-ended-why", node);
      var link = el("a", "", node);
      link.id = "session-ended-signin";
      link.textContent = "Sign in again";
    }
    node.childNodes[1].textContent = "Its login ended " + Math.round((Date.now() - sessionEndedAt) / 1000) +
      " s ago (the shift's login expired, someone signed out, or the user was removed).";
    node.lastChild.setAttribute("href", "/login?next=" + encodeURIComponent(window.location.pathname));
    node.style.display = "block";
  }

  setInterval(function () {
    if (stream && !document.getElementById("overview")) { closePush(); }  // left the overview
    var ended = sessionEndedAt > 0;
    var lost = !ended && Date.now() - lastOk > SERVER_LOST_MS;
    document.body.classList.toggle("server-lost", lost);
    document.body.classList.toggle("session-ended", ended);
    // Losing the dashboard server or the login is a communication failure of the alarm display: it sounds
    // like a high alarm.
    if ((lost || ended) && soundEnabled()) { maybeBurst(); }
    if (ended) { showSessionEnded(); }
    var lostNote = document.getElementById("server-lost-note");
    if (lost && !lostNote) { lostNote = note("server-lost-note"); }
    if (lostNote) {
      lostNote.textContent = lost ? "NO UPDATES FROM THE DASHBOARD SERVER for " +
        Math.round((Date.now() - lastOk) / 1000) + " s: values shown are NOT current." : "";
      lostNote.style.display = lost ? "block" : "none";
    }
  }, 1000);

  var originalFetch = window.fetch;
  window.fetch = function () {
    return originalFetch.apply(this, arguments).then(function (response) {
      if (response.ok && String(response.url).indexOf("/_dash-update-component") !== -1) {
        lastOk = Date.now();
      }
      if (response.status === 401 && String(response.url).indexOf("/_dash-") !== -1 && !sessionEndedAt) {
        sessionEndedAt = Date.now();
        showSessionEnded();
      }
      return response;
    });
  };
})();
