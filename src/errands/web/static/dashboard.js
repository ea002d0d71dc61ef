// errands dashboard: confirmation of destructive actions, live refresh of the numbers and
// tables, a banner when the data goes stale, the 503 page that retries by itself, selection
// checkboxes and the local-time toggle. Loaded from the package (CSP: script-src 'self'); no
// inline script anywhere.
(function () {
  "use strict";

  function store(key, value) {
    try {
      if (value === undefined) {
        return window.localStorage.getItem(key);
      }
      window.localStorage.setItem(key, value);
    } catch (e) { /* storage may be disabled */ }
    return null;
  }

  // -- confirmations and selections --------------------------------------------------------
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var message = form.getAttribute("data-confirm");
    var submitter = event.submitter;
    if (form.id === "bulk") {
      var picked = document.querySelectorAll('input[name="ids"][form="bulk"]:checked').length;
      if (picked === 0) {
        event.preventDefault();
        window.alert("Select jobs first (the boxes at the start of the rows).");
        return;
      }
      if (submitter && submitter.value === "delete") {
        message = "Delete the " + picked + " selected jobs?";
      }
    }
    if (message && !window.confirm(message)) {
      event.preventDefault();
    }
  });

  document.addEventListener("change", function (event) {
    var box = event.target;
    if (box.id === "pick-all") {
      document.querySelectorAll('input[name="ids"][form="bulk"]').forEach(function (b) {
        b.checked = box.checked;
      });
    }
  });

  // -- times: UTC or this browser's zone ---------------------------------------------------
  var TIME_KEY = "errands-localtime";
  function pad(n) {
    return (n < 10 ? "0" : "") + n;
  }
  function zoneName(d) {
    try {
      var parts = new Intl.DateTimeFormat([], { timeZoneName: "short" }).formatToParts(d);
      for (var i = 0; i < parts.length; i++) {
        if (parts[i].type === "timeZoneName") {
          return parts[i].value;
        }
      }
    } catch (e) { /* old browser */ }
    return "local";
  }
  function localText(d) {
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
      pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds()) + " " + zoneName(d);
  }
  function applyTimes(root) {
    var local = store(TIME_KEY) === "on";
    root.querySelectorAll("time[datetime]").forEach(function (t) {
      if (!t.hasAttribute("data-utc")) {
        t.setAttribute("data-utc", t.classList.contains("abs") ? t.textContent : (t.getAttribute("title") || ""));
      }
      var utc = t.getAttribute("data-utc");
      var shown = local ? localText(new Date(t.getAttribute("datetime"))) : utc;
      if (t.classList.contains("abs")) {
        t.textContent = shown;
        t.setAttribute("title", local ? utc : localText(new Date(t.getAttribute("datetime"))));
      } else {
        t.setAttribute("title", shown);
      }
    });
  }
  var timeToggle = document.getElementById("localtime");
  if (timeToggle) {
    timeToggle.checked = store(TIME_KEY) === "on";
    timeToggle.addEventListener("change", function () {
      store(TIME_KEY, timeToggle.checked ? "on" : "off");
      applyTimes(document);
    });
  }
  applyTimes(document);

  var period = parseFloat(document.body.getAttribute("data-refresh") || "0");

  // -- the 503 page: try again until the server answers, then reload -----------------------
  var retry = parseFloat(document.body.getAttribute("data-retry") || "0");
  if (retry > 0) {
    window.setInterval(function () {
      fetch(window.location.href, { credentials: "same-origin", headers: { "X-Requested-With": "refresh" } })
        .then(function (response) {
          if (response.status !== 503) {
            window.location.reload();
          }
        })
        .catch(function () { /* still down */ });
    }, retry * 1000);
  }

  // -- live refresh of the [data-live] regions ----------------------------------------------
  var toggle = document.getElementById("live");
  if (!toggle || !(period > 0)) {
    return;
  }
  var KEY = "errands-live";
  toggle.checked = store(KEY) !== "off";
  toggle.addEventListener("change", function () {
    store(KEY, toggle.checked ? "on" : "off");
    if (!toggle.checked) {
      stale(null);
    }
  });

  var lastGood = Date.now();
  var banner = document.getElementById("stale");
  function stale(reason) {
    if (!banner) {
      return;
    }
    if (!reason) {
      banner.hidden = true;
      banner.textContent = "";
      document.body.removeAttribute("data-stale");
      return;
    }
    var since = new Date(lastGood);
    banner.textContent = reason + " The figures below are from " + pad(since.getHours()) + ":" +
      pad(since.getMinutes()) + ":" + pad(since.getSeconds()) + " (this browser's time); retrying every " +
      period + " s.";
    banner.hidden = false;
    document.body.setAttribute("data-stale", "1");
  }

  function selecting() {
    var selection = window.getSelection ? window.getSelection() : null;
    return Boolean(selection && String(selection).length > 0);
  }

  // replace one region by its fresh copy, keeping what the user did inside it
  function swap(current, fresh) {
    if (current.innerHTML === fresh.innerHTML) {
      return;
    }
    var active = document.activeElement;
    if (active && active !== document.body && current.contains(active)) {
      return; // the user is working there: next time
    }
    var checked = {};
    current.querySelectorAll("input[type=checkbox]:checked").forEach(function (b) {
      checked[b.name + "=" + b.value + "#" + b.id] = true;
    });
    var opened = [];
    current.querySelectorAll("details").forEach(function (d) {
      opened.push(d.open);
    });
    var copy = document.importNode(fresh, true);
    copy.querySelectorAll("input[type=checkbox]").forEach(function (b) {
      b.checked = Boolean(checked[b.name + "=" + b.value + "#" + b.id]);
    });
    copy.querySelectorAll("details").forEach(function (d, i) {
      if (i < opened.length) {
        d.open = opened[i];
      }
    });
    applyTimes(copy);
    current.replaceWith(copy);
  }

  var inflight = false;
  function refresh() {
    if (!toggle.checked || document.hidden || inflight || selecting()) {
      return;
    }
    inflight = true;
    fetch(window.location.href, { credentials: "same-origin", headers: { "X-Requested-With": "refresh" } })
      .then(function (response) {
        if (response.status === 503) {
          stale("Redis is unavailable.");
          return null;
        }
        if (!response.ok) {
          stale("The dashboard answered " + response.status + ".");
          return null;
        }
        return response.text();
      })
      .then(function (html) {
        if (!html) {
          return;
        }
        var doc = new DOMParser().parseFromString(html, "text/html");
        document.querySelectorAll("[data-live]").forEach(function (current) {
          var key = current.getAttribute("data-live");
          var fresh = doc.querySelector('[data-live="' + key + '"]');
          if (fresh) {
            swap(current, fresh);
          }
        });
        lastGood = Date.now();
        stale(null);
        document.body.setAttribute("data-refreshed", String(lastGood));
      })
      .catch(function () {
        stale("The dashboard server cannot be reached.");
      })
      .then(function () {
        inflight = false;
      });
  }

  window.setInterval(refresh, period * 1000);
})();
