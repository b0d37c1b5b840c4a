// The InvarLock pages inside the Airflow UI: take the UI's colours, fonts and timezone from the
// frame around them (same origin), follow its theme switch, and copy commands on request.
// Served as a static file whose sha256 the pages' Content-Security-Policy names: nothing else runs.
(function () {
  "use strict";
  var root = document.documentElement;
  var shell = null;
  try {
    if (window.parent !== window && window.parent.document) shell = window.parent.document.documentElement;
  } catch (error) {
    shell = null;
  }
  var COLOURS = {
    "--il-bg": "--chakra-colors-bg",
    "--il-surface": "--chakra-colors-bg-panel",
    "--il-subtle": "--chakra-colors-bg-subtle",
    "--il-muted-bg": "--chakra-colors-bg-muted",
    "--il-fg": "--chakra-colors-fg",
    "--il-muted": "--chakra-colors-fg-muted",
    "--il-border": "--chakra-colors-border",
    "--il-pass": "--chakra-colors-fg-success",
    "--il-fail": "--chakra-colors-fg-error",
    "--il-warn": "--chakra-colors-fg-warning",
    "--il-accent": "--chakra-colors-fg-info",
    "--il-font": "--chakra-fonts-body",
    "--il-mono": "--chakra-fonts-mono"
  };

  function storedTheme() {
    try {
      var theme = window.localStorage.getItem("theme");
      if (theme === "light" || theme === "dark") return theme;
    } catch (error) {
      return null;
    }
    return null;
  }

  function follow() {
    var theme = null;
    if (shell) {
      theme = shell.classList.contains("dark") ? "dark" : shell.classList.contains("light") ? "light" : null;
      var style = window.getComputedStyle(shell);
      Object.keys(COLOURS).forEach(function (ours) {
        var value = style.getPropertyValue(COLOURS[ours]).trim();
        if (value) root.style.setProperty(ours, value);
        else root.style.removeProperty(ours);
      });
    }
    theme = theme || storedTheme();
    if (theme) root.setAttribute("data-theme", theme);
  }

  function followTimezone() {
    var wanted = null;
    try {
      var raw = window.localStorage.getItem("timezone");
      wanted = raw ? JSON.parse(raw) : null;
    } catch (error) {
      wanted = null;
    }
    wanted = wanted || Intl.DateTimeFormat().resolvedOptions().timeZone;
    var shown = root.getAttribute("data-tz");
    var cookie = "invarlock_tz=" + encodeURIComponent(wanted);
    if (!wanted || !shown || wanted === shown || document.cookie.indexOf(cookie) !== -1) return;
    document.cookie = cookie + "; path=" + (root.getAttribute("data-root") || "/") + "; SameSite=Strict";
    window.location.reload();
  }

  function copyOnClick(event) {
    var button = event.target.closest("button[data-copy]");
    if (!button) return;
    var source = document.getElementById(button.getAttribute("data-copy"));
    if (!source) return;
    var text = source.textContent;
    var done = function () {
      button.textContent = "Copied";
      window.setTimeout(function () { button.textContent = "Copy"; }, 1500);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { selectAndCopy(source, done); });
    } else {
      selectAndCopy(source, done);
    }
  }

  function selectAndCopy(source, done) {
    var range = document.createRange();
    range.selectNodeContents(source);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    if (document.execCommand("copy")) done();
  }

  follow();
  if (shell) new MutationObserver(follow).observe(shell, { attributes: true, attributeFilter: ["class", "style"] });
  followTimezone();
  document.addEventListener("click", copyOnClick);
  document.querySelectorAll("button[data-copy]").forEach(function (button) { button.hidden = false; });
})();
