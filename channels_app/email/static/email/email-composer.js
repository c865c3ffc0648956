// The email channel in the workspace composer: the subject is required only while email is the chosen channel
// (the fieldset is disabled otherwise, so the browser skips it), and the file input is cleared after a send.
(function () {
  "use strict";
  document.addEventListener("htmx:afterRequest", function (event) {
    var form = event.detail.elt;
    if (!form || !form.matches || !form.matches("form[data-composer]") || !event.detail.successful) { return; }
    if (form.getAttribute("data-channel") !== "email") { return; }
    var files = form.querySelector("input[name='email_attachments']");
    if (files) { files.value = ""; }
  });
})();
