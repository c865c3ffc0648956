/* Parley web chat, the customer's side.

   No inline script (CSP). Text from people is only ever placed with
   textContent or createTextNode; links are built with DOM APIs and only for
   http(s) URLs. The session token lives in localStorage per service, so a
   reload resumes the chat; the last entry id seen is sent on every
   reconnect and the server back-fills whatever was missed. */
(function () {
  "use strict";

  var configEl = document.getElementById("chat-config");
  if (!configEl) {
    return;
  }
  var config = JSON.parse(configEl.textContent);
  var S = config.strings;
  var KEY = "parley.chat." + config.service + ".";
  // A socket resuming the chat that has not been answered with the session by then is given up and
  // another one made: a handshake can hang on a bad network, and only the browser's own timeout (minutes)
  // would end it.
  var RESUME_TIMEOUT_MS = 10000;
  var URL_RE = /\bhttps?:\/\/[^\s<>"'`]+/gi;
  var TRAILING_RE = /[.,;:!?'"\]}]$/;

  var storage = (function () {
    try {
      var probe = "parley.chat.probe";
      window.localStorage.setItem(probe, "1");
      window.localStorage.removeItem(probe);
      return window.localStorage;
    } catch (e) {
      // Storage blocked (e.g. third-party frame): the chat still works until the page is closed.
      var memory = {};
      return {
        getItem: function (k) { return Object.prototype.hasOwnProperty.call(memory, k) ? memory[k] : null; },
        setItem: function (k, v) { memory[k] = String(v); },
        removeItem: function (k) { delete memory[k]; }
      };
    }
  })();

  var state = {
    socket: null,
    token: storage.getItem(KEY + "token"),
    visitor: storage.getItem(KEY + "visitor"),
    lastId: 0,
    synced: false,
    reconnectDelay: 1000,
    reconnectTimer: null,
    resumeTimer: null,
    pendingStart: null,
    chatState: null,
    rendered: {},
    readUpto: 0,
    lastAgentId: 0,
    deliveredSent: 0,
    readSent: 0,
    widgetOpen: true,
    pending: {},
    typingSentAt: 0,
    typingTimer: null,
    agentTypingTimer: null,
    inactivityEndsAt: null,
    inactivityTimer: null,
    pingTimer: null
  };

  var el = {};

  function $(id) {
    return document.getElementById(id);
  }

  function fmt(template, values) {
    return String(template).replace(/%\((\w+)\)s/g, function (match, name) {
      return Object.prototype.hasOwnProperty.call(values, name) ? String(values[name]) : match;
    });
  }

  function clientId() {
    if (window.crypto && typeof window.crypto.randomUUID === "function") {
      return window.crypto.randomUUID();
    }
    return "c" + Date.now().toString(36) + Math.random().toString(36).slice(2);
  }

  function show(node, visible) {
    if (node) {
      node.hidden = !visible;
    }
  }

  function setText(node, text) {
    if (node && node.textContent !== text) {
      node.textContent = text;
    }
  }

  function setView(view) {
    el.chat.setAttribute("data-view", view);
    show(el.prechat, view === "form");
    show(el.conversation, view === "chat" || view === "loading");
  }

  // --- safe rendering --------------------------------------------------------------------------

  function safeHttpUrl(text) {
    try {
      var url = new URL(text);
      if (url.protocol === "http:" || url.protocol === "https:") {
        return url.href;
      }
    } catch (e) {
      return null;
    }
    return null;
  }

  function appendLinkified(parent, text) {
    var last = 0;
    var match;
    URL_RE.lastIndex = 0;
    while ((match = URL_RE.exec(text)) !== null) {
      var candidate = match[0];
      var trailing = "";
      while (candidate.length && (TRAILING_RE.test(candidate) ||
             (candidate.charAt(candidate.length - 1) === ")" && candidate.indexOf("(") === -1))) {
        trailing = candidate.charAt(candidate.length - 1) + trailing;
        candidate = candidate.slice(0, -1);
      }
      parent.appendChild(document.createTextNode(text.slice(last, match.index)));
      var href = safeHttpUrl(candidate);
      if (href) {
        var link = document.createElement("a");
        link.href = href;
        link.textContent = candidate;
        link.rel = "noopener noreferrer nofollow";
        link.target = "_blank";
        parent.appendChild(link);
      } else {
        parent.appendChild(document.createTextNode(candidate));
      }
      if (trailing) {
        parent.appendChild(document.createTextNode(trailing));
      }
      last = match.index + match[0].length;
    }
    parent.appendChild(document.createTextNode(text.slice(last)));
  }

  function formatSize(bytes) {
    if (bytes >= 1024 * 1024) {
      return (bytes / (1024 * 1024)).toFixed(1) + " MB";
    }
    if (bytes >= 1024) {
      return Math.round(bytes / 1024) + " KB";
    }
    return bytes + " B";
  }

  function formatTime(iso) {
    var date = new Date(iso);
    if (isNaN(date.getTime())) {
      return "";
    }
    try {
      return date.toLocaleTimeString(config.lang, { hour: "2-digit", minute: "2-digit" });
    } catch (e) {
      return date.toTimeString().slice(0, 5);
    }
  }

  function isOwnPath(url) {
    return typeof url === "string" && url.charAt(0) === "/" && url.charAt(1) !== "/" && url.indexOf("\\") === -1;
  }

  function renderAttachments(entry) {
    var list = document.createElement("ul");
    list.className = "entry-attachments";
    (entry.attachments || []).forEach(function (file) {
      if (!isOwnPath(file.url)) {
        return;
      }
      var item = document.createElement("li");
      var link = document.createElement("a");
      link.href = file.url;
      link.rel = "noopener noreferrer";
      link.target = "_blank";
      if (String(file.content_type).indexOf("image/") === 0) {
        var image = document.createElement("img");
        image.src = file.url;
        image.alt = String(file.name);
        image.className = "entry-image";
        image.loading = "lazy";
        link.appendChild(image);
      }
      var label = document.createElement("span");
      label.className = "entry-file";
      label.textContent = String(file.name) + " (" + formatSize(Number(file.size) || 0) + ")";
      link.appendChild(label);
      item.appendChild(link);
      list.appendChild(item);
    });
    return list;
  }

  function receiptFor(entry) {
    var read = entry.id <= state.readUpto || entry.status === "read";
    var mark = document.createElement("span");
    mark.className = "entry-receipt" + (read ? " is-read" : "");
    mark.setAttribute("data-receipt", read ? "read" : "delivered");
    var ticks = document.createElement("span");
    ticks.setAttribute("aria-hidden", "true");
    ticks.textContent = read ? "✓✓" : "✓";
    var label = document.createElement("span");
    label.className = "visually-hidden";
    label.textContent = read ? S.read : S.delivered;
    mark.title = read ? S.read : S.delivered;
    mark.appendChild(ticks);
    mark.appendChild(label);
    return mark;
  }

  function renderEntry(entry) {
    var item = document.createElement("li");
    var author = entry.author === "customer" || entry.author === "agent" ? entry.author : "system";
    item.className = "chat-entry is-" + author;
    item.setAttribute("data-id", String(entry.id));
    item.setAttribute("data-author", author);
    if (author === "system") {
      var note = document.createElement("p");
      note.className = "entry-text";
      note.textContent = String(entry.text || "");
      item.appendChild(note);
      return item;
    }
    var meta = document.createElement("p");
    meta.className = "entry-meta";
    var who = document.createElement("span");
    who.className = "entry-author";
    who.textContent = author === "customer" ? S.you : S.agent;
    var time = document.createElement("time");
    time.dateTime = String(entry.at || "");
    time.textContent = formatTime(entry.at);
    meta.appendChild(who);
    meta.appendChild(document.createTextNode(" · "));
    meta.appendChild(time);
    item.appendChild(meta);

    var bubble = document.createElement("div");
    bubble.className = "entry-bubble";
    if (entry.text) {
      var text = document.createElement("p");
      text.className = "entry-text";
      appendLinkified(text, String(entry.text));
      bubble.appendChild(text);
    }
    if (entry.attachments && entry.attachments.length) {
      bubble.appendChild(renderAttachments(entry));
    }
    item.appendChild(bubble);
    if (author === "customer") {
      item.appendChild(receiptFor(entry));
    }
    return item;
  }

  function insertEntry(entry) {
    if (typeof entry.id !== "number" || state.rendered[entry.id]) {
      return false;
    }
    var node = renderEntry(entry);
    state.rendered[entry.id] = { node: node, entry: entry };
    // Usually appended; an entry committed late is put in its place.
    var children = el.log.children;
    var before = null;
    for (var i = children.length - 1; i >= 0; i--) {
      if (Number(children[i].getAttribute("data-id")) > entry.id) {
        before = children[i];
      } else {
        break;
      }
    }
    el.log.insertBefore(node, before);
    return true;
  }

  function refreshReceipts() {
    Object.keys(state.rendered).forEach(function (id) {
      var item = state.rendered[id];
      if (item.entry.author !== "customer") {
        return;
      }
      var old = item.node.querySelector(".entry-receipt");
      var wantRead = item.entry.id <= state.readUpto || item.entry.status === "read";
      if (old && (old.getAttribute("data-receipt") === "read") !== wantRead) {
        item.node.replaceChild(receiptFor(item.entry), old);
      }
    });
  }

  function scrollToEnd() {
    el.log.scrollTop = el.log.scrollHeight;
  }

  // --- the socket --------------------------------------------------------------------------------------

  function send(frame) {
    if (state.socket && state.socket.readyState === WebSocket.OPEN) {
      state.socket.send(JSON.stringify(frame));
      return true;
    }
    return false;
  }

  function setConnection(status) {
    el.connection.setAttribute("data-connected", status);
    if (status === "true" || !state.token) {
      setText(el.connection, "");
    } else {
      setText(el.connection, status === "connecting" ? S.connecting : S.offline);
    }
  }

  function connect() {
    if (state.socket) {
      return;
    }
    window.clearTimeout(state.reconnectTimer);
    state.reconnectTimer = null;
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + window.location.host + config.wsPath);
    state.socket = socket;
    state.synced = false;
    setConnection("connecting");
    window.clearTimeout(state.resumeTimer);
    if (state.token) {
      state.resumeTimer = window.setTimeout(function () {
        if (state.socket === socket) {
          socket.close();
          lost(socket, 0);
        }
      }, RESUME_TIMEOUT_MS);
    }
    socket.addEventListener("open", function () {
      if (state.token) {
        send({ type: "resume", token: state.token, after: state.lastId, lang: config.lang });
      } else if (state.pendingStart) {
        send(state.pendingStart);
      }
      window.clearInterval(state.pingTimer);
      state.pingTimer = window.setInterval(function () { send({ type: "ping" }); }, 25000);
    });
    socket.addEventListener("message", function (event) {
      var frame;
      try {
        frame = JSON.parse(event.data);
      } catch (e) {
        return;
      }
      if (frame && typeof frame === "object") {
        handle(frame);
      }
    });
    socket.addEventListener("close", function (event) {
      lost(socket, event.code);
    });
    // A socket the browser refuses before it reaches the network (the page's connect-src, say) may fire
    // "error" and never "close".
    socket.addEventListener("error", function () {
      if (socket.readyState === WebSocket.CLOSED) {
        lost(socket, 1006);
      }
    });
  }

  // The page's socket is gone (closed, failed, or given up): say so and, for a started chat, try again.
  function lost(socket, code) {
    if (state.socket !== socket) {
      return;
    }
    state.socket = null;
    window.clearInterval(state.pingTimer);
    window.clearTimeout(state.resumeTimer);
    setConnection("false");
    if (state.pendingStart && !state.token) {
      el.prechatSubmit.disabled = false;
    }
    // A refused session (4403) is not retried; an unstarted socket (4401) reconnects on the next submit.
    if (state.token && code !== 4403) {
      scheduleReconnect();
    }
  }

  function scheduleReconnect() {
    if (state.reconnectTimer) {
      return;
    }
    var delay = state.reconnectDelay * (0.75 + Math.random() * 0.5);
    state.reconnectDelay = Math.min(state.reconnectDelay * 2, 30000);
    state.reconnectTimer = window.setTimeout(function () {
      state.reconnectTimer = null;
      connect();
    }, delay);
  }

  function disconnect() {
    var socket = state.socket;
    state.socket = null;
    window.clearInterval(state.pingTimer);
    window.clearTimeout(state.reconnectTimer);
    window.clearTimeout(state.resumeTimer);
    state.reconnectTimer = null;
    if (socket) {
      socket.close(1000);
    }
  }

  // --- frames from the server ------------------------------------------------------------------------------

  var handlers = {
    session: function (frame) {
      state.token = String(frame.token);
      storage.setItem(KEY + "token", state.token);
      if (frame.visitor) {
        state.visitor = String(frame.visitor);
        storage.setItem(KEY + "visitor", state.visitor);
      }
      // The call controls (voice-customer.js) authenticate their own socket with the same token.
      window.parleyChatSession = { token: state.token, conversation: String(frame.conversation || "") };
      document.dispatchEvent(new CustomEvent("parley:chat-session", { detail: window.parleyChatSession }));
      window.clearTimeout(state.resumeTimer);
      state.pendingStart = null;
      state.reconnectDelay = 1000;
      el.prechatSubmit.disabled = false;
      setConnection("true");
      var wasForm = el.chat.getAttribute("data-view") !== "chat";
      setView("chat");
      if (wasForm && state.chatState !== "ended") {
        el.composerText.focus();
      }
    },
    status: function (frame) {
      state.chatState = frame.state;
      var text;
      if (frame.state === "queued") {
        text = frame.position ? fmt(S.queuedPosition, { position: frame.position }) : S.queued;
      } else if (frame.state === "offered") {
        text = S.offered;
      } else if (frame.state === "active") {
        text = frame.agent ? fmt(S.active, { agent: frame.agent }) : S.activeNoName;
      } else {
        text = S.ended;
      }
      setText(el.status, text);
      el.chat.setAttribute("data-chat-state", String(frame.state));
      var ended = frame.state === "ended";
      el.composerText.disabled = ended;
      el.sendButton.disabled = ended;
      el.attachButton.disabled = ended;
      show(el.endChat, !ended);
      show(el.newChat, ended);
      if (ended) {
        showTyping(false);
        setInactivity(null);
      }
    },
    entries: function (frame) {
      var added = false;
      var announce = state.synced;
      (frame.entries || []).forEach(function (entry) {
        if (entry.client_id) {
          delete state.pending[entry.client_id];
        }
        if (insertEntry(entry)) {
          added = true;
          if (entry.author === "agent") {
            state.lastAgentId = Math.max(state.lastAgentId, entry.id);
            showTyping(false);
            if (announce) {
              setText(el.announcer, fmt(S.newMessage, { text: entry.text || ((entry.attachments || [])[0] || {}).name || "" }));
            }
          }
        }
        if (typeof entry.id === "number") {
          state.lastId = Math.max(state.lastId, entry.id);
        }
      });
      state.synced = true;
      if (added) {
        scrollToEnd();
      }
      if (state.lastAgentId > state.deliveredSent && send({ type: "delivered", upto: state.lastAgentId })) {
        state.deliveredSent = state.lastAgentId;
      }
      maybeRead();
    },
    receipts: function (frame) {
      var upto = Number(frame.read_upto) || 0;
      if (upto > state.readUpto) {
        state.readUpto = upto;
        refreshReceipts();
      }
    },
    typing: function (frame) {
      if (frame.who === "agent") {
        showTyping(Boolean(frame.typing));
      }
    },
    inactivity: function (frame) {
      var endsAt = Date.parse(frame.ends_at);
      setInactivity(isNaN(endsAt) ? null : endsAt);
    },
    error: function (frame) {
      handleError(frame);
    },
    pong: function () {}
  };

  function handle(frame) {
    var handler = handlers[frame.type];
    if (handler) {
      handler(frame);
    }
  }

  function handleError(frame) {
    var message = String(frame.message || S.error);
    if (frame.code === "invalid_session") {
      forgetSession();
      setView("form");
      showFormError(S.sessionLost);
      return;
    }
    if (frame.code === "invalid" || frame.code === "unknown_service" || frame.code === "unavailable" ||
        (frame.code === "rate_limited" && !state.token)) {
      el.prechatSubmit.disabled = false;
      state.pendingStart = null;
      showFieldErrors(frame.fields || {});
      showFormError(message);
      return;
    }
    if (frame.client_id && Object.prototype.hasOwnProperty.call(state.pending, frame.client_id)) {
      if (!el.composerText.value) {
        el.composerText.value = state.pending[frame.client_id];
      }
      delete state.pending[frame.client_id];
    }
    if (el.chat.getAttribute("data-view") === "form") {
      el.prechatSubmit.disabled = false;
      showFormError(message);
    } else {
      showComposerError(message);
    }
  }

  // --- receipts, typing, inactivity ---------------------------------------------------------------------------

  function visible() {
    return document.visibilityState === "visible" && state.widgetOpen && el.chat.getAttribute("data-view") === "chat";
  }

  function maybeRead() {
    if (visible() && state.lastAgentId > state.readSent && send({ type: "read", upto: state.lastAgentId })) {
      state.readSent = state.lastAgentId;
    }
  }

  function showTyping(on) {
    window.clearTimeout(state.agentTypingTimer);
    setText(el.typing, on ? S.typing : "");
    show(el.typing, on);
    if (on) {
      // A lost "stopped typing" must not leave the indicator on for ever.
      state.agentTypingTimer = window.setTimeout(function () { showTyping(false); }, 15000);
    }
  }

  function typed() {
    var now = Date.now();
    if (now - state.typingSentAt > 3000 && el.composerText.value) {
      if (send({ type: "typing", typing: true })) {
        state.typingSentAt = now;
      }
    }
    window.clearTimeout(state.typingTimer);
    state.typingTimer = window.setTimeout(stoppedTyping, 4000);
  }

  function stoppedTyping() {
    window.clearTimeout(state.typingTimer);
    if (state.typingSentAt) {
      send({ type: "typing", typing: false });
      state.typingSentAt = 0;
    }
  }

  function setInactivity(endsAt) {
    state.inactivityEndsAt = endsAt;
    window.clearInterval(state.inactivityTimer);
    if (endsAt === null) {
      show(el.inactivity, false);
      return;
    }
    var tick = function () {
      var seconds = Math.max(0, Math.round((state.inactivityEndsAt - Date.now()) / 1000));
      var time = Math.floor(seconds / 60) + ":" + (seconds % 60 < 10 ? "0" : "") + (seconds % 60);
      setText(el.inactivity, fmt(S.inactivity, { time: time }));
    };
    tick();
    show(el.inactivity, true);
    state.inactivityTimer = window.setInterval(tick, 1000);
  }

  // --- forms ------------------------------------------------------------------------------------------------

  function showFormError(message) {
    setText(el.prechatError, message || "");
    show(el.prechatError, Boolean(message));
  }

  function showComposerError(message) {
    setText(el.composerError, message || "");
    show(el.composerError, Boolean(message));
  }

  function showFieldErrors(errors) {
    var first = null;
    el.prechatForm.querySelectorAll("[data-mode]").forEach(function (input) {
      var error = $(input.id + "-error");
      var message = errors[input.name] ? String(errors[input.name]) : "";
      setText(error, message);
      show(error, Boolean(message));
      if (message) {
        input.setAttribute("aria-invalid", "true");
        first = first || input;
      } else {
        input.removeAttribute("aria-invalid");
      }
    });
    if (first) {
      first.focus();
    }
  }

  function submitPrechat(event) {
    event.preventDefault();
    var fields = {};
    var errors = {};
    el.prechatForm.querySelectorAll("[data-mode]").forEach(function (input) {
      var value = input.value.trim();
      if (value) {
        fields[input.name] = value;
      } else if (input.getAttribute("data-mode") === "required") {
        errors[input.name] = S.required;
      }
    });
    showFieldErrors(errors);
    showFormError("");
    if (Object.keys(errors).length) {
      return;
    }
    state.pendingStart = {
      type: "start",
      service: config.service,
      visitor: state.visitor || null,
      fields: fields,
      lang: config.lang
    };
    el.prechatSubmit.disabled = true;
    if (!send(state.pendingStart)) {
      connect();
    }
  }

  function submitMessage(event) {
    event.preventDefault();
    var text = el.composerText.value;
    if (!text.trim() || state.chatState === "ended") {
      return;
    }
    if (text.trim().length > config.maxChars) {
      showComposerError(S.tooLong);
      return;
    }
    var id = clientId();
    if (!send({ type: "message", text: text, client_id: id })) {
      showComposerError(S.offline);
      return;
    }
    state.pending[id] = text;
    el.composerText.value = "";
    showComposerError("");
    stoppedTyping();
    setInactivity(null);
  }

  function composerKeydown(event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      el.composer.requestSubmit ? el.composer.requestSubmit() : submitMessage(event);
    }
  }

  function sendFile() {
    var file = el.fileInput.files && el.fileInput.files[0];
    el.fileInput.value = "";
    if (!file || !state.token) {
      return;
    }
    if (file.size > config.maxBytes) {
      showComposerError(S.fileTooLarge);
      return;
    }
    if (file.type && config.fileTypes.indexOf(file.type) === -1) {
      showComposerError(S.fileType);
      return;
    }
    var body = new FormData();
    body.append("file", file, file.name);
    showComposerError("");
    setText(el.announcer, fmt(S.uploading, { name: file.name }));
    el.attachButton.disabled = true;
    window.fetch(config.uploadUrl, {
      method: "POST",
      body: body,
      headers: { "X-Parley-Chat-Token": state.token },
      credentials: "omit"
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        if (!response.ok) {
          showComposerError(data && data.error ? String(data.error) : S.uploadFailed);
        }
        setInactivity(null);
      });
    }).catch(function () {
      showComposerError(S.uploadFailed);
    }).then(function () {
      el.attachButton.disabled = state.chatState === "ended";
    });
  }

  function forgetSession() {
    storage.removeItem(KEY + "token");
    state.token = null;
    state.lastId = 0;
    state.readUpto = 0;
    state.lastAgentId = 0;
    state.deliveredSent = 0;
    state.readSent = 0;
    state.rendered = {};
    state.pending = {};
    state.chatState = null;
    while (el.log.firstChild) {
      el.log.removeChild(el.log.firstChild);
    }
    setText(el.status, "");
    showTyping(false);
    setInactivity(null);
  }

  function newChat() {
    disconnect();
    forgetSession();
    var question = $("prechat-question");
    if (question) {
      question.value = "";
    }
    showFormError("");
    setConnection("true");
    setView("form");
    var first = el.prechatForm.querySelector("input, textarea");
    if (first) {
      first.focus();
    }
  }

  // --- start ---------------------------------------------------------------------------------------------------

  function init() {
    el.chat = $("chat");
    el.prechat = $("prechat");
    el.prechatForm = $("prechat-form");
    el.prechatSubmit = $("prechat-submit");
    el.prechatError = $("prechat-error");
    el.conversation = $("conversation");
    el.status = $("chat-status");
    el.inactivity = $("chat-inactivity");
    el.log = $("chat-log");
    el.announcer = $("chat-announcer");
    el.typing = $("chat-typing");
    el.composer = $("composer");
    el.composerText = $("composer-text");
    el.composerError = $("composer-error");
    el.sendButton = $("send-button");
    el.attachButton = $("attach-button");
    el.fileInput = $("composer-file");
    el.endChat = $("end-chat");
    el.newChat = $("new-chat");
    el.connection = $("chat-connection");

    el.prechatForm.addEventListener("submit", submitPrechat);
    el.composer.addEventListener("submit", submitMessage);
    el.composerText.addEventListener("keydown", composerKeydown);
    el.composerText.addEventListener("input", typed);
    el.composerText.addEventListener("blur", stoppedTyping);
    el.attachButton.addEventListener("click", function () { el.fileInput.click(); });
    el.fileInput.addEventListener("change", sendFile);
    el.endChat.addEventListener("click", function () {
      if (!send({ type: "end" })) {
        showComposerError(S.offline);
      }
    });
    el.newChat.addEventListener("click", newChat);
    document.addEventListener("visibilitychange", maybeRead);
    window.addEventListener("focus", maybeRead);
    window.addEventListener("online", function () {
      if (!state.token) {
        return;
      }
      state.reconnectDelay = 1000;
      if (state.socket && state.socket.readyState !== WebSocket.OPEN) {
        // An attempt made while offline may fail late, and its back-off after it later still: the network
        // is back, so give it up and connect afresh now.
        var stale = state.socket;
        state.socket = null;
        stale.close();
      }
      if (!state.socket) {
        connect();
      }
    });
    // The embedding page's launcher says whether the chat is open (read receipts only when it is).
    window.addEventListener("message", function (event) {
      var data = event.data;
      if (event.source === window.parent && data && typeof data === "object" && data.parley === "chat-visibility") {
        state.widgetOpen = Boolean(data.open);
        maybeRead();
      }
    });

    if (state.token) {
      setView("loading");
      connect();
    } else {
      setView("form");
      setConnection("true");
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
