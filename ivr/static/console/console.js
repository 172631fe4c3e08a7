// The console's only script: re-read the page's live part when the event
// stream says something changed; poll while the stream is down; tick timers.
(function () {
  "use strict";
  var live = document.getElementById("live");
  var status = document.getElementById("live-status");
  if (!live) { return; }
  var pollTimer = null;
  var pending = false;
  var inFlight = false;
  var changedMeanwhile = false;
  var lastChangeRead = 0;
  // In an outage storm the queues change a hundred times a second: a page
  // re-reads its live part for changes at most every 750 ms and never twice at
  // once, so the console cannot take the line's CPU from the calls, and a change
  // still shows within a second. The first change after a quiet spell is read at once.
  var MIN_GAP_MS = 750;
  // Kinds of change this page does not show (an advisor's page shows no queue).
  var ignored = (live.dataset.ignoreChanges || "").split(" ");
  // A read that has not answered by then is given up and made again: never two
  // at once must not become never again, when the network loses one.
  var READ_TIMEOUT_MS = 10000;

  function refresh() {
    if (inFlight) { changedMeanwhile = true; return; }
    inFlight = true;
    var abort = window.AbortController ? new AbortController() : null;
    var giveUp = abort && setTimeout(function () { abort.abort(); }, READ_TIMEOUT_MS);
    fetch(live.dataset.liveUrl, { credentials: "same-origin", cache: "no-store",
                                  signal: abort ? abort.signal : undefined })
      .then(function (answer) {
        if (answer.redirected || !answer.ok) { window.location.reload(); return null; }
        return answer.text();
      })
      .then(function (html) { if (html !== null) { live.innerHTML = html; } })
      .catch(function () {
        // Lost or given up: what it was to show has not been shown; read again (while
        // the stream is down, the 3-second poll does, not a retry every 750 ms).
        if (!pollTimer) { changedMeanwhile = true; }
      })
      .then(function () {
        if (giveUp) { clearTimeout(giveUp); }
        inFlight = false;
        if (changedMeanwhile) { changedMeanwhile = false; soon(); }
      });
  }

  function soon() {
    if (pending) { return; }
    pending = true;
    var wait = Math.max(50, lastChangeRead + MIN_GAP_MS - Date.now());
    setTimeout(function () { pending = false; lastChangeRead = Date.now(); refresh(); }, wait);
  }

  function changed(event) {
    if (ignored.indexOf(event.data) < 0) { soon(); }
  }

  function polling(on) {
    document.body.dataset.live = on ? "polling" : "stream";
    if (status) { status.textContent = on ? "Live updates paused: checking every 3 seconds." : ""; }
    if (on && !pollTimer) { pollTimer = setInterval(refresh, 3000); }
    if (!on && pollTimer) { clearInterval(pollTimer); pollTimer = null; }
  }

  function listen() {
    var events = new EventSource(live.dataset.eventsUrl);
    events.addEventListener("change", changed);
    events.onopen = function () { polling(false); refresh(); };
    events.onerror = function () {
      polling(true);
      // Refused (the server's streams are all taken) rather than dropped: the browser
      // will not retry by itself, so try again later and poll meanwhile.
      if (events.readyState === EventSource.CLOSED) { setTimeout(listen, 30000); }
    };
  }

  if (window.EventSource) { listen(); } else { polling(true); }

  setInterval(function () {
    var clocks = live.querySelectorAll("[data-seconds]");
    for (var i = 0; i < clocks.length; i++) {
      var s = parseInt(clocks[i].dataset.seconds, 10) + 1;
      clocks[i].dataset.seconds = s;
      clocks[i].textContent = Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
    }
  }, 1000);
})();
