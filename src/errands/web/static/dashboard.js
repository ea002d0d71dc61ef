// errands dashboard: confirmation of destructive actions and live refresh of the page content.
// Loaded from the package (CSP: script-src 'self'); no inline script anywhere.
(function () {
  "use strict";

  document.addEventListener("submit", function (event) {
    var message = event.target.getAttribute("data-confirm");
    if (message && !window.confirm(message)) {
      event.preventDefault();
    }
  });

  var period = parseFloat(document.body.getAttribute("data-refresh") || "0");
  var toggle = document.getElementById("live");
  if (!toggle || !(period > 0)) {
    return;
  }
  var KEY = "errands-live";
  try {
    toggle.checked = window.localStorage.getItem(KEY) !== "off";
  } catch (e) { /* storage may be disabled */ }
  toggle.addEventListener("change", function () {
    try {
      window.localStorage.setItem(KEY, toggle.checked ? "on" : "off");
    } catch (e) { /* ignore */ }
  });

  function busy(content) {
    var active = document.activeElement;
    if (active && content.contains(active) && /^(INPUT|SELECT|TEXTAREA)$/.test(active.tagName)) {
      return true;
    }
    var selection = window.getSelection ? window.getSelection() : null;
    return Boolean(selection && String(selection).length > 0);
  }

  var inflight = false;
  function refresh() {
    var content = document.getElementById("content");
    if (!content || !toggle.checked || document.hidden || inflight || busy(content)) {
      return;
    }
    inflight = true;
    fetch(window.location.href, { credentials: "same-origin", headers: { "X-Requested-With": "refresh" } })
      .then(function (response) {
        return response.ok ? response.text() : null;
      })
      .then(function (html) {
        if (!html) {
          return;
        }
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("content");
        var current = document.getElementById("content");
        if (fresh && current && !busy(current)) {
          current.replaceWith(document.importNode(fresh, true));
          document.body.setAttribute("data-refreshed", String(Date.now()));
        }
        var flash = document.getElementById("flash");
        if (flash) {
          flash.remove();
        }
      })
      .catch(function () { /* offline for a moment: try again next time */ })
      .then(function () {
        inflight = false;
      });
  }

  window.setInterval(refresh, period * 1000);
})();
