// The console's only script: re-read the page's live part when the event
// stream says something changed; poll while the stream is down or the line's
// data cannot be read; tick timers.
//
// What a read of the live part answers decides what the page does:
// - 200: show it;
// - a redirect (to the sign-in page), 401 or 403: the sign-in is over or no longer
//   allows this page, so reload it (the server then shows the sign-in page, or why not);
// - anything else (503 while Redis or the database is down, another 5xx, a lost
//   or timed-out read): keep the page as it is, say that the live data is
//   unavailable, and read again every 3 seconds until a read answers. Never a
//   reload: an error page would have no live part to come back with.
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
  var POLL_MS = 3000;
  // The stream says "alive" every 5 seconds while Redis answers (stream.py,
  // HEARTBEAT_SECONDS); after three beats of silence it is taken for dead (a
  // frozen Redis or server, a proxy holding a dead connection), dropped and opened again.
  var STREAM_SILENCE_MS = 15000;
  // A stream the server refused (all its streams taken, or the line's data down)
  // is asked for again after this long; sooner once the data is back.
  var STREAM_RETRY_MS = 30000;

  var events = null;       // the EventSource, while one is open or opening
  var streaming = false;   // the stream is open and heard from lately
  var dataDown = false;    // the last read of the live part failed
  var silence = null;      // the timer that gives a silent stream up
  var retryTimer = null;   // the timer that opens a refused stream again

  function show() {
    var poll = !streaming || dataDown;
    if (poll && !pollTimer) { pollTimer = setInterval(refresh, POLL_MS); }
    if (!poll && pollTimer) { clearInterval(pollTimer); pollTimer = null; }
    document.body.dataset.live = dataDown ? "unavailable" : (streaming ? "stream" : "polling");
    live.classList.toggle("stale", dataDown);
    live.setAttribute("aria-busy", dataDown ? "true" : "false");
    if (status) {
      status.textContent = dataDown
        ? "Live data unavailable: caseline cannot reach the line's data just now, so what is shown may be out of date. Trying again every 3 seconds."
        : (streaming ? "" : "Live updates paused: checking every 3 seconds.");
    }
  }

  function readFailed() {
    dataDown = true;
    show();
  }

  function readAnswered() {
    if (!dataDown) { return; }
    dataDown = false;
    show();
    // The data is back: a stream refused while it was down may be opened now.
    if (!events && retryTimer) { clearTimeout(retryTimer); retryTimer = null; listen(); }
  }

  function refresh() {
    if (inFlight) { changedMeanwhile = true; return; }
    inFlight = true;
    var abort = window.AbortController ? new AbortController() : null;
    var giveUp = abort && setTimeout(function () { abort.abort(); }, READ_TIMEOUT_MS);
    fetch(live.dataset.liveUrl, { credentials: "same-origin", cache: "no-store",
                                  signal: abort ? abort.signal : undefined })
      .then(function (answer) {
        if (answer.redirected || answer.status === 401 || answer.status === 403) {
          window.location.reload();  // signed out (or no longer allowed): the server says where to
          return null;
        }
        if (!answer.ok) { readFailed(); return null; }
        return answer.text();
      })
      .then(function (html) {
        if (html !== null) { live.innerHTML = html; readAnswered(); }
      })
      .catch(function () {
        // Lost or given up: what it was to show has not been shown; the 3-second
        // poll reads again.
        readFailed();
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
    heard();
    if (ignored.indexOf(event.data) < 0) { soon(); }
  }

  function heard() {
    if (silence) { clearTimeout(silence); }
    silence = setTimeout(silent, STREAM_SILENCE_MS);
  }

  function silent() {
    // Nothing from the stream (not even its heartbeat) for too long: poll, and open it again.
    silence = null;
    drop();
    listen();
  }

  function drop() {
    if (events) { events.close(); events = null; }
    if (silence) { clearTimeout(silence); silence = null; }
    streaming = false;
    show();
  }

  function listen() {
    retryTimer = null;
    var source = new EventSource(live.dataset.eventsUrl);
    events = source;
    heard();  // an opening that never answers counts as silence too
    source.addEventListener("change", changed);
    source.addEventListener("alive", heard);
    source.onopen = function () {
      heard();
      streaming = true;
      show();
      refresh();
    };
    source.onerror = function () {
      if (events !== source) { return; }
      streaming = false;
      show();
      // Refused (the server's streams are all taken, or the line's data is down)
      // rather than dropped: the browser will not retry by itself, so try again
      // later and poll meanwhile. Dropped, the browser reconnects by itself.
      if (source.readyState === EventSource.CLOSED) {
        drop();
        retryTimer = setTimeout(listen, STREAM_RETRY_MS);
      }
    };
  }

  // Opening the stream takes a moment: the page was just read, so nothing is said
  // and nothing polled meanwhile (an opening that never answers is silence: polling).
  if (window.EventSource) { listen(); } else { show(); }

  setInterval(function () {
    var clocks = live.querySelectorAll("[data-seconds]");
    for (var i = 0; i < clocks.length; i++) {
      var s = parseInt(clocks[i].dataset.seconds, 10) + 1;
      clocks[i].dataset.seconds = s;
      clocks[i].textContent = Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
    }
  }, 1000);
})();
