// The chat page's "Email me a transcript" form: shown once the chat has ended, posted with the chat's token.
(function () {
  "use strict";
  var form = document.getElementById("chat-transcript");
  var configEl = document.getElementById("chat-config");
  if (!form || !configEl) { return; }
  var config = JSON.parse(configEl.textContent);
  var key = "parley.chat." + config.service + ".token";
  var status = document.getElementById("chat-transcript-status");

  function token() {
    try { return window.localStorage.getItem(key); } catch (e) { return null; }
  }

  // The chat's own script shows "Start a new chat" when the chat has ended: offer the transcript then.
  var newChat = document.getElementById("new-chat");
  function sync() { form.hidden = !(newChat && !newChat.hidden && token()); }
  if (newChat) { new MutationObserver(sync).observe(newChat, { attributes: true, attributeFilter: ["hidden"] }); }
  sync();

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var body = new FormData(form);
    var button = form.querySelector("button");
    button.disabled = true;
    fetch(form.getAttribute("data-url"), {
      method: "POST", body: body, credentials: "same-origin",
      headers: { "X-Parley-Chat-Token": token() || "" }
    }).then(function (response) {
      return response.json().then(function (data) { return { ok: response.ok, data: data }; });
    }).then(function (result) {
      status.textContent = result.ok ? result.data.message : result.data.error;
      button.disabled = result.ok;
    }).catch(function () {
      status.textContent = form.getAttribute("data-error") || "";
      button.disabled = false;
    });
  });
})();
