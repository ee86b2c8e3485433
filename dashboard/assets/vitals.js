/* Browser side of the dashboard: sound for high-priority alarms (only after the user enables it), and a
   redirect to the login page when the session has ended (callbacks then answer 401). */
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

  window.dash_clientside = Object.assign({}, window.dash_clientside, {
    vitals: {
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
        if (enabled && n > 0 && Date.now() - lastBurst > REPEAT_MS) {
          lastBurst = Date.now();
          burst();
        }
        if (!enabled) { return n > 0 ? n + " high alarm(s), sound off" : ""; }
        return n > 0 ? n + " high alarm(s) sounding" : "";
      }
    }
  });

  // If the dashboard server stops answering, the page would keep showing its last values: grey them out
  // and say so once no update has arrived for this long.
  var SERVER_LOST_MS = 5000;
  var lastOk = Date.now();
  setInterval(function () {
    var lost = Date.now() - lastOk > SERVER_LOST_MS;
    document.body.classList.toggle("server-lost", lost);
    var note = document.getElementById("server-lost-note");
    if (lost && !note) {
      note = document.createElement("div");
      note.id = "server-lost-note";
      note.className = "server-lost-note";
      note.setAttribute("role", "alert");
      document.body.appendChild(note);
    }
    if (note) {
      note.textContent = lost ? "NO UPDATES FROM THE DASHBOARD SERVER for " +
        Math.round((Date.now() - lastOk) / 1000) + " s: values shown are NOT current." : "";
      note.style.display = lost ? "block" : "none";
    }
  }, 1000);

  // A callback answered 401: the login ended. Go to the login page instead of showing stale values.
  var originalFetch = window.fetch;
  window.fetch = function () {
    return originalFetch.apply(this, arguments).then(function (response) {
      if (response.ok && String(response.url).indexOf("/_dash-update-component") !== -1) {
        lastOk = Date.now();
      }
      if (response.status === 401 && String(response.url).indexOf("/_dash-") !== -1) {
        window.location.assign("/login?next=" + encodeURIComponent(window.location.pathname));
      }
      return response;
    });
  };
})();
