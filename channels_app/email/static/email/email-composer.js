// The email channel in the workspace composer: the subject is required only while email is the chosen channel
// (the fieldset is disabled otherwise, so the browser skips it), and the file input is cleared after a send.
(function () {
  "use strict";
  // The fields load when email is first chosen (see email/composer_fields.html).
  document.addEventListener("parley:channel", function (event) {
    if (!event.detail || event.detail.channel !== "email" || !window.htmx) { return; }
    var pending = event.target.querySelector(".email-fields-pending");
    if (pending) {
      pending.classList.remove("email-fields-pending");
      window.htmx.trigger(pending, "parley-email-fields");
    }
  });
  document.addEventListener("htmx:afterRequest", function (event) {
    var form = event.detail.elt;
    if (!form || !form.matches || !form.matches("form[data-composer]") || !event.detail.successful) { return; }
    if (form.getAttribute("data-channel") !== "email") { return; }
    var files = form.querySelector("input[name='email_attachments']");
    if (files) { files.value = ""; }
  });
})();
