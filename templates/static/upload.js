/* The province upload page's progress bar. The form works without it: this only sends the same
   form with XMLHttpRequest to show how much is uploaded, then follows the server's answer (the
   delivery's page) or shows its message. Served as a file: the page's CSP allows 'self' only. */
(function () {
  "use strict";
  var form = document.getElementById("upload-form");
  if (!form || !window.XMLHttpRequest || !window.FormData) { return; }
  var bar = document.getElementById("upload-progress");
  var status = document.getElementById("upload-status");
  var button = document.getElementById("upload-submit");

  function say(text) { status.textContent = text; }

  function mb(n) { return (n / 1048576).toFixed(1) + " MB"; }

  function showError(html) {
    // The answer is the upload page with its message (or an error page, e.g. a stale form):
    // take the message, keep this page and the files chosen.
    var doc = new DOMParser().parseFromString(html, "text/html");
    var fresh = doc.getElementById("upload-error");
    var page = doc.querySelector("section.error");
    var old = document.getElementById("upload-error");
    if (old) { old.remove(); }
    if (!fresh && page) {
      fresh = document.createElement("div");
      fresh.className = "alert";
      fresh.id = "upload-error";
      fresh.setAttribute("role", "alert");
      fresh.dataset.code = page.dataset.code || "";
      fresh.textContent = (page.querySelector(".message") || page).textContent + " (" + fresh.dataset.code + ")";
    }
    if (fresh) {
      form.closest("section").before(document.importNode(fresh, true));
      say("");
    } else {
      say(status.dataset.failed);
    }
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    xhr.upload.addEventListener("progress", function (e) {
      if (e.lengthComputable) {
        bar.max = e.total;
        bar.value = e.loaded;
        say(status.dataset.sending + " " + mb(e.loaded) + " / " + mb(e.total));
      }
    });
    xhr.upload.addEventListener("load", function () { say(status.dataset.done); });
    xhr.addEventListener("load", function () {
      // Received: the server sent us on to the delivery's page (or, signed out meanwhile, to sign in).
      if (xhr.status >= 200 && xhr.status < 300 && xhr.responseURL && xhr.responseURL !== form.action) {
        window.location.assign(xhr.responseURL);
        return;
      }
      button.disabled = false;
      bar.hidden = true;
      showError(xhr.responseText);
    });
    xhr.addEventListener("error", function () {
      button.disabled = false;
      bar.hidden = true;
      say(status.dataset.failed);
    });
    button.disabled = true;
    bar.hidden = false;
    bar.value = 0;
    say(status.dataset.sending);
    xhr.send(new FormData(form));
  });
}());
