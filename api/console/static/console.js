// chute console: the theme switch and the live parts of each page. Hand-written, no
// library; the pages work without it (they just do not refresh themselves).
(function () {
  "use strict";
  var root = document.documentElement;
  var chosen = localStorage.getItem("chute-theme");
  if (chosen === "light" || chosen === "dark") root.dataset.theme = chosen;

  var POLL_MS = 5000;

  function current() {
    if (root.dataset.theme) return root.dataset.theme;
    return matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
  }

  // Each element marked data-live (with an id) is replaced by its copy in a fresh
  // fetch of the same page; one that holds the keyboard focus is left for later.
  function refresh() {
    if (document.hidden) return;
    fetch(location.href, {credentials: "same-origin", headers: {"Accept": "text/html"}})
      .then(function (answer) { return answer.ok ? answer.text() : null; })
      .then(function (html) {
        if (!html) return;
        var fresh = new DOMParser().parseFromString(html, "text/html");
        document.querySelectorAll("[data-live][id]").forEach(function (old) {
          var next = fresh.getElementById(old.id);
          if (!next || old.contains(document.activeElement)) return;
          if (next.innerHTML !== old.innerHTML) old.replaceWith(document.importNode(next, true));
        });
      })
      .catch(function () { /* the server is away: try again at the next tick */ });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var button = document.getElementById("theme");
    if (button) {
      button.addEventListener("click", function () {
        var next = current() === "dark" ? "light" : "dark";
        root.dataset.theme = next;
        localStorage.setItem("chute-theme", next);
      });
    }
    if (document.querySelector("[data-live][id]")) setInterval(refresh, POLL_MS);
  });
})();
