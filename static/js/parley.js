/* Parley client glue: timers, connection status, the live agent desktop.
   No inline script anywhere (CSP); everything lives here.

   The server pushes HTML partials over the agent websocket (htmx ws extension)
   and returns the same partials to htmx requests. This file adds what HTML
   cannot say by itself:
   - re-sync after every (re)connect: the client sends the conversation it shows
     and the last timeline entry id it has, the server back-fills from the database;
   - timeline entries are inserted once, in id order, whichever path brings them;
   - a region whose data-swap-key is unchanged is left alone (drafts survive);
   - read marks, typing signals, canned responses, offer chime and announcements,
     keyboard shortcuts. */
(function () {
  "use strict";

  var htmx = window.htmx;
  if (htmx) {
    // Regions nest (timeline inside workspace); only top-level OOB elements swap.
    htmx.config.allowNestedOobSwaps = false;
    // The desktop is live state, not history: going back reloads it from the server.
    htmx.config.historyCacheSize = 0;
    htmx.config.refreshOnHistoryMiss = true;
  }

  var OVERDUE_CLASS = "is-overdue";
  var TYPING_REPEAT_MS = 3000;
  var TYPING_IDLE_MS = 4000;
  var TYPING_SHOWN_MS = 10000;

  // --- timers -------------------------------------------------------------------------

  function formatElapsed(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    var h = Math.floor(seconds / 3600);
    var m = Math.floor((seconds % 3600) / 60);
    var s = seconds % 60;
    var mm = h > 0 && m < 10 ? "0" + m : String(m);
    var ss = s < 10 ? "0" + s : String(s);
    return h > 0 ? h + ":" + mm + ":" + ss : mm + ":" + ss;
  }

  function tickTimers() {
    var now = Date.now();
    document.querySelectorAll("[data-since]").forEach(function (el) {
      var since = Date.parse(el.getAttribute("data-since"));
      if (isNaN(since)) {
        return;
      }
      var elapsed = (now - since) / 1000;
      el.textContent = formatElapsed(elapsed);
      var limit = el.getAttribute("data-overdue-after");
      if (limit !== null) {
        var overdue = elapsed >= Number(limit);
        el.classList.toggle(OVERDUE_CLASS, overdue);
        var holder = el.closest(".acl-waiting");
        if (holder) {
          holder.classList.toggle(OVERDUE_CLASS, overdue);
        }
      }
    });
    document.querySelectorAll("[data-until]").forEach(function (el) {
      var until = Date.parse(el.getAttribute("data-until"));
      if (!isNaN(until)) {
        el.textContent = formatElapsed((until - now) / 1000);
      }
    });
  }

  // --- the socket ----------------------------------------------------------------------

  var socket = null;
  // Whether the socket is open now (the wrapper queues frames while it is not; replies must not queue there).
  var socketOpen = false;
  var unloading = false;
  var reconnectAttempts = 0;

  function setConnected(connected) {
    var el = document.getElementById("connection-status");
    if (el) {
      el.setAttribute("data-connected", connected ? "true" : "false");
    }
  }

  function sendFrame(frame) {
    if (socket) {
      socket.send(JSON.stringify(frame));
    }
  }

  function workspace() {
    return document.getElementById("workspace");
  }

  function currentConversation() {
    var ws = workspace();
    return ws ? ws.getAttribute("data-conversation") || "" : "";
  }

  function currentTimeline() {
    var conversation = currentConversation();
    return conversation ? document.getElementById("timeline-" + conversation) : null;
  }

  function lastEntryId(timeline) {
    var last = 0;
    if (timeline) {
      timeline.querySelectorAll("[data-entry-id]").forEach(function (el) {
        last = Math.max(last, Number(el.getAttribute("data-entry-id")) || 0);
      });
    }
    return last;
  }

  var syncedConversation = null;

  function resync() {
    syncedConversation = currentConversation();
    sendFrame({ action: "resync", conversation: syncedConversation, after: lastEntryId(currentTimeline()) });
  }

  // A push may name a region this tab no longer shows (another conversation is
  // open, or it just closed): drop it instead of letting htmx log a missing target.
  function oobTargetExists(element) {
    var oob = element.getAttribute("hx-swap-oob");
    if (oob === null) {
      return true;
    }
    if (oob === "true" || oob.indexOf(":") < 0) {
      return !element.id || Boolean(document.getElementById(element.id));
    }
    try {
      return Boolean(document.querySelector(oob.slice(oob.indexOf(":") + 1)));
    } catch (e) {
      return true;
    }
  }

  if (htmx) {
    htmx.defineExtension("parley", {
      transformResponse: function (text, xhr) {
        if (xhr || typeof text !== "string" || text.indexOf("hx-swap-oob") < 0) {
          return text;
        }
        var template = document.createElement("template");
        template.innerHTML = text;
        var changed = false;
        Array.prototype.slice.call(template.content.children).forEach(function (child) {
          if (!oobTargetExists(child)) {
            child.remove();
            changed = true;
          }
        });
        return changed ? template.innerHTML : text;
      },
    });
  }

  var inSocketMessage = false;
  var focusMemo = null;

  document.addEventListener("htmx:wsOpen", function (evt) {
    socket = evt.detail.socketWrapper;
    socketOpen = true;
    reconnectAttempts = 0;
    setConnected(true);
    resync();
    resendReplies();
  });

  document.addEventListener("htmx:wsClose", function (evt) {
    socketOpen = false;
    setConnected(false);
    var code = evt.detail && evt.detail.event ? evt.detail.event.code : 0;
    if (unloading || code === 4403) {
      return;
    }
    if (code === 4401) {
      // The session ended: the page itself leads to the login.
      var last = Number(window.sessionStorage.getItem("parley-reload") || 0);
      if (Date.now() - last > 30000) {
        window.sessionStorage.setItem("parley-reload", String(Date.now()));
        window.location.reload();
      }
      return;
    }
    // The extension retries abnormal closes itself; a server that went away
    // politely (restart, 1000/1001) is retried here, with back-off.
    if ([1006, 1011, 1012, 1013].indexOf(code) < 0 && evt.detail.socketWrapper) {
      var delay = Math.min(30000, 1000 * Math.pow(2, reconnectAttempts)) * (0.5 + Math.random() / 2);
      reconnectAttempts += 1;
      window.setTimeout(function () {
        evt.detail.socketWrapper.reconnect();
      }, delay);
    }
  });

  window.addEventListener("pagehide", function () {
    unloading = true;
  });

  document.addEventListener("htmx:wsBeforeMessage", function (evt) {
    var message = evt.detail.message;
    if (typeof message === "string" && message.charAt(0) === "{") {
      // JSON frames answer a reply sent over the socket, or report an error; they are not HTML.
      evt.preventDefault();
      var frame = null;
      try {
        frame = JSON.parse(message);
      } catch (e) {
        /* not ours */
      }
      if (frame && (frame.sent || frame.client_id)) {
        replyAnswered(frame);
      } else if (frame && frame.error && window.console) {
        window.console.info("parley: " + frame.error);
      }
      return;
    }
    inSocketMessage = true;
    var active = document.activeElement;
    focusMemo = null;
    if (active && active.id && active !== document.body) {
      focusMemo = { id: active.id, start: null, end: null };
      try {
        focusMemo.start = active.selectionStart;
        focusMemo.end = active.selectionEnd;
      } catch (e) {
        /* not a text field */
      }
    }
  });

  document.addEventListener("htmx:wsAfterMessage", function () {
    inSocketMessage = false;
    // Pushed regions replace elements; keep the keyboard where it was.
    if (focusMemo) {
      var el = document.getElementById(focusMemo.id);
      var active = document.activeElement;
      if (el && el !== active && (!active || active === document.body)) {
        el.focus({ preventScroll: true });
        if (typeof focusMemo.start === "number") {
          try {
            el.setSelectionRange(focusMemo.start, focusMemo.end);
          } catch (e) {
            /* not a text field */
          }
        }
      }
    }
    focusMemo = null;
    scheduleAfterSwaps();
  });

  // --- swapping ------------------------------------------------------------------------------

  function nearBottom(el) {
    return el.scrollHeight - el.scrollTop - el.clientHeight < 80;
  }

  function scrollToEnd(el) {
    if (el) {
      el.scrollTop = el.scrollHeight;
    }
  }

  function insertEntries(timeline, holder) {
    var updateOnly = holder.getAttribute && holder.getAttribute("data-update-only") === "true";
    var stick = nearBottom(timeline);
    var oldHeight = timeline.scrollHeight;
    var olderAdded = false;
    var mine = false;
    var announcements = [];
    Array.prototype.slice.call(holder.children).forEach(function (node) {
      if (!node.id) {
        return;
      }
      var existing = document.getElementById(node.id);
      if (existing) {
        existing.replaceWith(node);
        htmx.process(node);
        return;
      }
      if (updateOnly) {
        return;
      }
      var id = Number(node.getAttribute("data-entry-id")) || 0;
      var entries = timeline.querySelectorAll(":scope > [data-entry-id]");
      var after = null;
      for (var i = entries.length - 1; i >= 0; i--) {
        if ((Number(entries[i].getAttribute("data-entry-id")) || 0) < id) {
          after = entries[i];
          break;
        }
      }
      if (after) {
        after.after(node);
      } else if (entries.length) {
        entries[0].before(node);
        olderAdded = true;
      } else {
        timeline.appendChild(node);
      }
      htmx.process(node);
      if (node.getAttribute("data-announce") && !node.nextElementSibling) {
        announcements.push(node.getAttribute("data-announce"));
      }
      if (node.classList.contains("from-agent") || node.classList.contains("entry-note")) {
        mine = true;
      }
    });
    if (stick || mine) {
      scrollToEnd(timeline);
    } else if (olderAdded) {
      timeline.scrollTop += timeline.scrollHeight - oldHeight;
    }
    if (announcements.length) {
      announce("polite", announcements[announcements.length - 1]);
    }
  }

  document.addEventListener("htmx:oobBeforeSwap", function (evt) {
    var detail = evt.detail;
    var target = detail.target;
    if (!target || !target.classList) {
      return;
    }
    if (target.classList.contains("timeline")) {
      detail.shouldSwap = false;
      insertEntries(target, detail.fragment);
      return;
    }
    var pushed = detail.fragment.firstElementChild || detail.fragment;
    var onlyIf = pushed.getAttribute && pushed.getAttribute("data-only-if-showing");
    if (onlyIf && onlyIf !== currentConversation()) {
      // Meant to clear a conversation this tab has already moved away from.
      detail.shouldSwap = false;
      return;
    }
    if (target.hasAttribute("data-swap-key")) {
      var incoming = detail.fragment.firstElementChild || detail.fragment;
      var sameKey = incoming.getAttribute && incoming.getAttribute("data-swap-key") === target.getAttribute("data-swap-key");
      if (inSocketMessage && sameKey) {
        detail.shouldSwap = false;
        return;
      }
      // The header or composer changes size: a timeline read to the end stays at the end.
      var timeline = currentTimeline();
      keepTimelineAtEnd = keepTimelineAtEnd || Boolean(timeline && nearBottom(timeline));
      // A new composer (a channel became available, wrap-up began) keeps what the agent has entered
      // (a draft, a chosen disposition, wrap-up notes, the channel) and the focus.
      if (incoming.querySelector) {
        carryEnteredValues(target, incoming);
      }
    }
  });

  function formKey(el) {
    var form = el.form || el.closest("form");
    return (form && form.classList.length ? form.classList[0] : "") + " " + el.name;
  }

  function counterpart(el, fresh) {
    var key = formKey(el);
    var found = null;
    fresh.querySelectorAll("[name]").forEach(function (candidate) {
      if (found || formKey(candidate) !== key || candidate.disabled || candidate.type === "hidden") {
        return;
      }
      if (el.type === "radio" || el.type === "checkbox") {
        if (candidate.value === el.value) {
          found = candidate;
        }
      } else if (candidate.tagName === el.tagName) {
        found = candidate;
      }
    });
    return found;
  }

  function carryEnteredValues(target, fresh) {
    target.querySelectorAll("input[name], select[name], textarea[name]").forEach(function (el) {
      if (el.type === "hidden" || el.type === "file" || el.disabled) {
        return;
      }
      var other;
      if (el.type === "radio" || el.type === "checkbox") {
        if (el.checked === el.defaultChecked || !(other = counterpart(el, fresh))) {
          return;
        }
        fresh.querySelectorAll("[name='" + CSS.escape(el.name) + "']").forEach(function (sibling) {
          if (formKey(sibling) === formKey(el) && el.type === "radio") {
            sibling.removeAttribute("checked");
          }
        });
        other.toggleAttribute("checked", el.checked);
        if (el.name === "channel") {
          channelChangedBySwap = other;
        }
      } else if (el.tagName === "SELECT") {
        var chosen = Array.prototype.some.call(el.options, function (option) {
          return option.selected !== option.defaultSelected;
        });
        other = counterpart(el, fresh);
        if (!chosen || !other || !other.querySelector("option[value='" + CSS.escape(el.value) + "']")) {
          return;
        }
        Array.prototype.forEach.call(other.options, function (option) {
          option.toggleAttribute("selected", option.value === el.value);
        });
      } else {
        if (!el.value || el.value === el.defaultValue || !(other = counterpart(el, fresh))) {
          return;
        }
        if (other.tagName === "TEXTAREA") {
          other.textContent = el.value;
        } else {
          other.setAttribute("value", el.value);
        }
      }
    });
    var focused = document.activeElement;
    if (focused && focused.id && target.contains(focused) && fresh.querySelector("[id='" + focused.id + "']")) {
      refocusAfterSwap = focused.id;
    }
  }

  var channelChangedBySwap = null;

  var refocusAfterSwap = "";

  document.addEventListener("htmx:oobAfterSwap", function () {
    if (channelChangedBySwap) {
      // The composer's channel fields follow the restored channel, as if the agent had chosen it again.
      var radio = channelChangedBySwap;
      channelChangedBySwap = null;
      if (radio.isConnected) {
        radio.dispatchEvent(new Event("change", { bubbles: true }));
      }
    }
    if (refocusAfterSwap) {
      var again = document.getElementById(refocusAfterSwap);
      refocusAfterSwap = "";
      if (again) {
        again.focus();
        if (again.tagName === "TEXTAREA") {
          again.setSelectionRange(again.value.length, again.value.length);
        }
      }
    }
  });

  var keepTimelineAtEnd = false;

  var afterSwapsPending = false;

  function scheduleAfterSwaps() {
    if (!afterSwapsPending) {
      afterSwapsPending = true;
      window.setTimeout(afterSwaps, 0);
    }
  }

  function afterSwaps() {
    afterSwapsPending = false;
    tickTimers();
    var conversation = currentConversation();
    if (conversation !== syncedConversation) {
      // Another conversation is shown: tell the server, and get what arrived meanwhile.
      stopTyping();
      if (socket) {
        resync();
      } else {
        syncedConversation = conversation;
      }
      scrollToEnd(currentTimeline());
    }
    if (focusComposerNext && document.querySelector("#workspace [data-composer-text]")) {
      focusComposerNext = false;
      focusComposer();
    }
    if (keepTimelineAtEnd) {
      keepTimelineAtEnd = false;
      scrollToEnd(currentTimeline());
    }
    restoreDraft();
    dropDraftsOfClosedConversations();
    markAclSelection();
    detectNewOffers();
    detectAclChanges();
    expireTypingIndicator();
    markRead();
  }

  document.addEventListener("htmx:afterSettle", scheduleAfterSwaps);
  document.addEventListener("htmx:oobAfterSwap", scheduleAfterSwaps);

  // --- read marks -----------------------------------------------------------------------------

  var readSent = {};

  function markRead() {
    if (document.visibilityState !== "visible" || !socket) {
      return;
    }
    var conversation = currentConversation();
    var upto = lastEntryId(currentTimeline());
    if (conversation && upto > (readSent[conversation] || 0)) {
      readSent[conversation] = upto;
      sendFrame({ action: "read", conversation: conversation, upto: upto });
    }
  }

  document.addEventListener("visibilitychange", markRead);

  // --- announcements, offers, the list ----------------------------------------------------

  function announce(kind, text) {
    var el = document.getElementById(kind === "assertive" ? "sr-assertive" : "sr-polite");
    if (!el || !text) {
      return;
    }
    el.textContent = "";
    window.setTimeout(function () {
      el.textContent = text;
    }, 50);
  }

  var knownOffers = {};
  var chime = null;

  function playChime(url) {
    if (!url) {
      return;
    }
    document.body.setAttribute("data-offer-chimes", String(Number(document.body.getAttribute("data-offer-chimes") || 0) + 1));
    try {
      if (!chime) {
        chime = new Audio(url);
      }
      chime.currentTime = 0;
      var played = chime.play();
      if (played && played.catch) {
        played.catch(function () {
          /* autoplay blocked until the agent interacts with the page */
        });
      }
    } catch (e) {
      /* no audio output */
    }
  }

  function detectNewOffers() {
    var box = document.getElementById("offers");
    if (!box) {
      return;
    }
    var seen = {};
    var fresh = [];
    box.querySelectorAll("[data-offer-id]").forEach(function (el) {
      var id = el.getAttribute("data-offer-id");
      seen[id] = true;
      if (!knownOffers[id]) {
        fresh.push(el.getAttribute("data-announce"));
      }
    });
    knownOffers = seen;
    if (fresh.length) {
      playChime(box.getAttribute("data-sound"));
      announce("assertive", fresh.join(". "));
    }
  }

  var knownUnread = null;

  function detectAclChanges() {
    var open = currentConversation();
    var counts = {};
    var news = [];
    document.querySelectorAll("#active-conversations [data-conversation]").forEach(function (row) {
      var id = row.getAttribute("data-conversation");
      var unread = Number(row.getAttribute("data-unread") || 0);
      counts[id] = unread;
      if (knownUnread && id !== open && unread > (knownUnread[id] || 0)) {
        news.push(row.getAttribute("data-announce"));
      }
    });
    knownUnread = counts;
    if (news.length) {
      announce("polite", news.join(". "));
    }
  }

  function markAclSelection() {
    var open = currentConversation();
    document.querySelectorAll("#active-conversations .acl-row").forEach(function (row) {
      var selected = row.getAttribute("data-conversation") === open;
      row.classList.toggle("is-selected", selected);
      var link = row.querySelector(".acl-link");
      if (link) {
        if (selected) {
          link.setAttribute("aria-current", "true");
        } else {
          link.removeAttribute("aria-current");
        }
      }
    });
  }

  var typingShownAt = 0;

  function expireTypingIndicator() {
    var indicator = document.querySelector("#workspace .typing[data-typing='true']");
    if (!indicator) {
      return;
    }
    var shownAt = Date.now();
    typingShownAt = shownAt;
    window.setTimeout(function () {
      // The customer's "stopped typing" may have been lost: hide it anyway.
      if (typingShownAt === shownAt && indicator.isConnected) {
        indicator.textContent = "";
        indicator.setAttribute("data-typing", "false");
      }
    }, TYPING_SHOWN_MS);
  }

  // --- the composer -------------------------------------------------------------------------

  var typing = { conversation: "", on: false, sentAt: 0, timer: null };

  function composerChannel(form) {
    // A choice of channels is radio buttons; a composer with one channel names it in a hidden field.
    var checked =
      form.querySelector("input[name='channel']:checked") || form.querySelector("input[type='hidden'][name='channel']");
    return checked ? checked.value : "chat";
  }

  function stopTyping() {
    window.clearTimeout(typing.timer);
    if (typing.on) {
      sendFrame({ action: "typing", conversation: typing.conversation, typing: false });
    }
    typing.on = false;
  }

  function noteTyping(textarea) {
    var form = textarea.form;
    if (!form || composerChannel(form) !== "chat") {
      return;
    }
    var conversation = form.getAttribute("data-conversation");
    var now = Date.now();
    if (!typing.on || typing.conversation !== conversation || now - typing.sentAt > TYPING_REPEAT_MS) {
      typing.conversation = conversation;
      typing.on = true;
      typing.sentAt = now;
      sendFrame({ action: "typing", conversation: conversation, typing: true });
    }
    window.clearTimeout(typing.timer);
    typing.timer = window.setTimeout(stopTyping, TYPING_IDLE_MS);
  }

  function cannedList(textarea) {
    var id = textarea.getAttribute("aria-controls");
    return id ? document.getElementById(id) : null;
  }

  function closeCanned(textarea) {
    var list = cannedList(textarea);
    if (list) {
      list.hidden = true;
      list.innerHTML = "";
    }
    textarea.removeAttribute("aria-activedescendant");
  }

  function cannedToken(textarea) {
    var before = textarea.value.slice(0, textarea.selectionStart);
    var match = /(^|\s)\/([\w-]*)$/.exec(before);
    return match ? { query: match[2], start: before.length - match[2].length - 1 } : null;
  }

  function cannedOptions(list) {
    return Array.prototype.slice.call(list.querySelectorAll("[role='option'][data-body]"));
  }

  function activateOption(textarea, list, index) {
    var options = cannedOptions(list);
    if (!options.length) {
      textarea.removeAttribute("aria-activedescendant");
      return;
    }
    index = (index + options.length) % options.length;
    options.forEach(function (option, i) {
      option.setAttribute("aria-selected", i === index ? "true" : "false");
      option.classList.toggle("is-active", i === index);
    });
    textarea.setAttribute("aria-activedescendant", options[index].id);
    options[index].scrollIntoView({ block: "nearest" });
  }

  function activeOptionIndex(list) {
    return cannedOptions(list).findIndex(function (option) {
      return option.getAttribute("aria-selected") === "true";
    });
  }

  function insertCanned(textarea, option) {
    var token = cannedToken(textarea);
    var body = option.getAttribute("data-body") || "";
    var start = token ? token.start : textarea.selectionStart;
    var end = textarea.selectionStart;
    textarea.value = textarea.value.slice(0, start) + body + textarea.value.slice(end);
    store(DRAFT + textarea.form.getAttribute("data-conversation"), textarea.value);
    var caret = start + body.length;
    textarea.setSelectionRange(caret, caret);
    closeCanned(textarea);
    textarea.focus();
  }

  var cannedRequest = 0;

  function suggestCanned(textarea) {
    var token = cannedToken(textarea);
    var list = cannedList(textarea);
    var form = textarea.form;
    if (!token || !list || !form) {
      closeCanned(textarea);
      return;
    }
    var request = ++cannedRequest;
    var url =
      form.getAttribute("data-canned-url") +
      "?q=" + encodeURIComponent(token.query) +
      "&conversation=" + encodeURIComponent(form.getAttribute("data-conversation") || "");
    window
      .fetch(url, { credentials: "same-origin", headers: { "HX-Request": "true" } })
      .then(function (response) {
        return response.ok ? response.text() : "";
      })
      .then(function (html) {
        if (request !== cannedRequest || !cannedToken(textarea)) {
          return;
        }
        list.innerHTML = html;
        list.hidden = false;
        activateOption(textarea, list, 0);
      })
      .catch(function () {
        closeCanned(textarea);
      });
  }

  function composerKeydown(evt) {
    var textarea = evt.target;
    var list = cannedList(textarea);
    if (list && !list.hidden) {
      var index = activeOptionIndex(list);
      if (evt.key === "ArrowDown" || evt.key === "ArrowUp") {
        activateOption(textarea, list, index + (evt.key === "ArrowDown" ? 1 : -1));
        evt.preventDefault();
        return;
      }
      if ((evt.key === "Enter" || evt.key === "Tab") && index >= 0) {
        insertCanned(textarea, cannedOptions(list)[index]);
        evt.preventDefault();
        return;
      }
      if (evt.key === "Escape") {
        closeCanned(textarea);
        evt.preventDefault();
        return;
      }
    }
    if (evt.key === "Enter" && !evt.shiftKey && !evt.altKey && !evt.ctrlKey && !evt.metaKey && !evt.isComposing) {
      evt.preventDefault();
      if (textarea.value.trim() && textarea.form) {
        stopTyping();
        textarea.form.requestSubmit();
      }
    }
  }

  document.addEventListener("input", function (evt) {
    var el = evt.target;
    if (el.matches && el.matches("[data-composer-text]")) {
      noteTyping(el);
      suggestCanned(el);
    }
  });

  document.addEventListener("change", function (evt) {
    var el = evt.target;
    if (el.matches && el.matches("form[data-composer] input[name='channel']")) {
      var form = el.form;
      var channel = composerChannel(form);
      var note = channel === "note";
      form.classList.toggle("is-note", note);
      form.setAttribute("data-channel", channel);
      // Each channel's own fields (an email's subject, the SMS segment counter) show only while it is chosen.
      form.querySelectorAll("[data-channel-fields]").forEach(function (fields) {
        var other = fields.getAttribute("data-channel-fields") !== channel;
        fields.hidden = other;
        fields.disabled = other;
      });
      var textarea = form.querySelector("[data-composer-text]");
      if (textarea) {
        textarea.placeholder =
          textarea.getAttribute("data-placeholder-" + channel) ||
          textarea.getAttribute(note ? "data-placeholder-note" : "data-placeholder-chat") ||
          "";
        if (channel !== "chat") {
          stopTyping();
        }
      }
      form.dispatchEvent(new CustomEvent("parley:channel", { bubbles: true, detail: { channel: channel } }));
    }
  });

  document.addEventListener("mousedown", function (evt) {
    var option = evt.target.closest && evt.target.closest(".canned-suggestions [role='option'][data-body]");
    if (option) {
      evt.preventDefault();
      var list = option.closest(".canned-suggestions");
      var textarea = document.querySelector("[aria-controls='" + list.id + "']");
      if (textarea) {
        insertCanned(textarea, option);
      }
    }
  });

  document.addEventListener("focusout", function (evt) {
    if (evt.target.matches && evt.target.matches("[data-composer-text]")) {
      var textarea = evt.target;
      window.setTimeout(function () {
        if (document.activeElement !== textarea) {
          closeCanned(textarea);
        }
      }, 150);
    }
  });

  // --- drafts -------------------------------------------------------------------------------------
  // What the agent has written and not sent stays with its conversation (in this tab's sessionStorage, so
  // a reload keeps it too) when they move to another one, and is back in the composer when they return.
  // A reply refused after they moved on goes back into that draft, and the reason is shown on return.
  // Drafts of conversations that have left the list are dropped.
  var DRAFT = "parley.draft.";
  var DRAFT_REFUSED = "parley.draft-refused.";

  function stored(key) {
    try {
      return window.sessionStorage.getItem(key) || "";
    } catch (e) {
      return "";
    }
  }

  function store(key, value) {
    try {
      if (value) {
        window.sessionStorage.setItem(key, value);
      } else {
        window.sessionStorage.removeItem(key);
      }
    } catch (e) {
      /* storage blocked or full: the draft lives as long as the composer */
    }
  }

  function composerTextFor(conversation) {
    var textarea = document.getElementById("composer-text-" + conversation);
    return textarea && textarea.closest("form[data-composer]") ? textarea : null;
  }

  // Text that did not go out goes back before what the agent has written since.
  function withReturned(text, current) {
    if (!current) {
      return text;
    }
    return current.indexOf(text) < 0 ? text + "\n" + current : current;
  }

  function returnUnsent(conversation, text, reason) {
    var textarea = composerTextFor(conversation);
    if (textarea) {
      textarea.value = withReturned(text, textarea.value);
      store(DRAFT + conversation, textarea.value);
      var error = document.getElementById("composer-error-" + conversation);
      if (error && reason) {
        error.textContent = reason;
      }
      return;
    }
    store(DRAFT + conversation, withReturned(text, stored(DRAFT + conversation)));
    if (reason) {
      store(DRAFT_REFUSED + conversation, reason);
    }
  }

  document.addEventListener("input", function (evt) {
    var target = evt.target;
    if (target.matches && target.matches("[data-composer-text]")) {
      var form = target.closest("form[data-composer]");
      if (form) {
        store(DRAFT + form.getAttribute("data-conversation"), target.value);
      }
    }
  });

  function restoreDraft() {
    var conversation = currentConversation();
    var textarea = conversation ? composerTextFor(conversation) : null;
    if (!textarea) {
      return;
    }
    var draft = stored(DRAFT + conversation);
    if (draft && !textarea.value) {
      textarea.value = draft;
    }
    var refused = stored(DRAFT_REFUSED + conversation);
    if (refused) {
      var error = document.getElementById("composer-error-" + conversation);
      if (error) {
        error.textContent = refused;
      }
      store(DRAFT_REFUSED + conversation, "");
    }
  }

  function dropDraftsOfClosedConversations() {
    if (!document.getElementById("active-conversations")) {
      return;
    }
    var keys = [];
    try {
      for (var i = 0; i < window.sessionStorage.length; i++) {
        keys.push(window.sessionStorage.key(i));
      }
    } catch (e) {
      return;
    }
    var open = currentConversation();
    keys.forEach(function (key) {
      var prefix = key.indexOf(DRAFT) === 0 ? DRAFT : key.indexOf(DRAFT_REFUSED) === 0 ? DRAFT_REFUSED : null;
      if (!prefix) {
        return;
      }
      var conversation = key.slice(prefix.length);
      if (conversation !== open && !document.getElementById("acl-" + conversation)) {
        store(key, "");
      }
    });
  }

  // --- chat replies over the socket ---------------------------------------------------------------
  // While the socket is open a chat reply goes over it, not by HTTP: one hop less for every message.
  // Each reply carries an id made here. Until the server answers "sent" its text is kept and sent again
  // with the same id (after a reconnect, or when no answer came), and the server stores it once. A refusal
  // puts the text back in the composer with the reason, as a failed POST does.
  var REPLY_RETRY_MS = 5000;
  var BUSY_RETRY_MS = 1000;
  var pendingReplies = {};

  function newClientId() {
    if (window.crypto && window.crypto.randomUUID) {
      return window.crypto.randomUUID();
    }
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return Array.prototype.map
      .call(bytes, function (b) {
        return (b + 256).toString(16).slice(1);
      })
      .join("");
  }

  function transmitReply(id, delay) {
    var pending = pendingReplies[id];
    if (!pending) {
      return;
    }
    window.clearTimeout(pending.timer);
    if (!delay && socket && socketOpen) {
      socket.send(
        JSON.stringify({ action: "send", conversation: pending.conversation, text: pending.text, client_id: id })
      );
    }
    pending.timer = window.setTimeout(function () {
      transmitReply(id, 0);
    }, delay || REPLY_RETRY_MS);
  }

  function resendReplies() {
    Object.keys(pendingReplies).forEach(function (id) {
      transmitReply(id, 0);
    });
  }

  function replyAnswered(frame) {
    var id = frame.sent || frame.client_id;
    var pending = pendingReplies[id];
    if (!pending) {
      return;
    }
    if (frame.error === "busy") {
      transmitReply(id, BUSY_RETRY_MS);
      return;
    }
    window.clearTimeout(pending.timer);
    delete pendingReplies[id];
    var error = document.getElementById("composer-error-" + pending.conversation);
    if (frame.sent) {
      if (error) {
        error.textContent = "";
      }
      return;
    }
    returnUnsent(pending.conversation, pending.text, String(frame.message || frame.error));
  }

  var sentTexts = new WeakMap();

  // The composer empties as soon as its text is on its way, so the agent can
  // type the next message at once; a send that fails puts the text back.
  // (A submit made while one is in flight is queued by htmx and reads the
  // form when it runs: an empty composer then sends nothing.)
  document.addEventListener("htmx:configRequest", function (evt) {
    var elt = evt.detail.elt;
    if (!elt || !elt.matches || !elt.matches("form[data-composer]")) {
      return;
    }
    var text = String(evt.detail.parameters.text || "");
    if (!text.trim()) {
      evt.preventDefault();
      return;
    }
    var textarea = elt.querySelector("[data-composer-text]");
    if (textarea) {
      textarea.value = "";
      closeCanned(textarea);
    }
    store(DRAFT + elt.getAttribute("data-conversation"), "");
    if (composerChannel(elt) === "chat" && socket && socketOpen) {
      evt.preventDefault();
      var id = newClientId();
      pendingReplies[id] = { conversation: elt.getAttribute("data-conversation"), text: text, timer: null };
      transmitReply(id, 0);
      return;
    }
    sentTexts.set(evt.detail, text);
  });

  function refusalIn(xhr, conversation) {
    try {
      var page = new DOMParser().parseFromString(xhr.responseText, "text/html");
      var error = page.getElementById("composer-error-" + conversation);
      return error ? error.textContent.trim() : "";
    } catch (e) {
      return "";
    }
  }

  document.addEventListener("htmx:afterRequest", function (evt) {
    var elt = evt.detail.elt;
    if (elt && elt.matches && elt.matches("form[data-composer]") && !evt.detail.successful) {
      var sent = evt.detail.requestConfig ? sentTexts.get(evt.detail.requestConfig) : null;
      if (sent && document.contains(elt)) {
        // The reason comes as the composer's error region, swapped in by the response.
        returnUnsent(elt.getAttribute("data-conversation"), sent, "");
      }
    }
  });

  // If the agent has moved on before the answer, the form has left the page and htmx's events fire on it
  // alone, so they never reach the document: the request itself is watched, and a refusal's text and
  // reason are kept for that conversation's return.
  document.addEventListener("htmx:beforeSend", function (evt) {
    var elt = evt.detail.elt;
    var xhr = evt.detail.xhr;
    if (!xhr || !elt || !elt.matches || !elt.matches("form[data-composer]")) {
      return;
    }
    var sent = evt.detail.requestConfig ? sentTexts.get(evt.detail.requestConfig) : null;
    if (!sent) {
      return;
    }
    xhr.addEventListener("loadend", function () {
      if (document.contains(elt) || (xhr.status >= 200 && xhr.status < 300)) {
        return;
      }
      var conversation = elt.getAttribute("data-conversation");
      returnUnsent(conversation, sent, refusalIn(xhr, conversation));
    });
  });

  document.addEventListener("htmx:afterRequest", function (evt) {
    var elt = evt.detail.elt;
    if (!evt.detail.successful || !elt || !elt.matches) {
      return;
    }
    if (elt.matches("form.attach-form")) {
      elt.reset();
    }
  });

  // An accepted offer opens its conversation: the agent writes next. The button
  // is gone by the time the request ends, so remember it when it starts.
  var focusComposerNext = false;

  document.addEventListener("htmx:beforeRequest", function (evt) {
    var elt = evt.detail.elt;
    if (elt && elt.matches && elt.matches("[data-offer-accept]")) {
      focusComposerNext = true;
    }
  });

  // --- keyboard -------------------------------------------------------------------------------

  function focusComposer() {
    var textarea = document.querySelector("#workspace [data-composer-text]");
    if (textarea) {
      textarea.focus();
    }
  }

  function moveConversation(step) {
    var links = Array.prototype.slice.call(document.querySelectorAll("#active-conversations .acl-link"));
    if (!links.length) {
      return;
    }
    var open = currentConversation();
    var index = links.indexOf(document.activeElement);
    if (index < 0) {
      index = links.findIndex(function (link) {
        return link.closest(".acl-row").getAttribute("data-conversation") === open;
      });
    }
    var next = index < 0 ? (step > 0 ? 0 : links.length - 1) : Math.min(links.length - 1, Math.max(0, index + step));
    var link = links[next];
    link.focus();
    if (link.closest(".acl-row").getAttribute("data-conversation") !== open) {
      link.click();
    }
  }

  document.addEventListener("keydown", function (evt) {
    if (evt.target.matches && evt.target.matches("[data-composer-text]") && !evt.altKey) {
      composerKeydown(evt);
      return;
    }
    if (!evt.altKey || evt.ctrlKey || evt.metaKey) {
      return;
    }
    if (evt.key === "ArrowDown" || evt.key === "ArrowUp") {
      moveConversation(evt.key === "ArrowDown" ? 1 : -1);
      evt.preventDefault();
    } else if (evt.code === "KeyC") {
      focusComposer();
      evt.preventDefault();
    } else if (evt.code === "KeyA") {
      var accept = document.querySelector("#offers [data-offer-accept]");
      if (accept) {
        accept.click();
      }
      evt.preventDefault();
    } else if (evt.code === "KeyS") {
      var select = document.getElementById("state-choice");
      if (select) {
        select.focus();
        evt.preventDefault();
      }
    }
  });

  // --- start --------------------------------------------------------------------------------------

  document.addEventListener("DOMContentLoaded", function () {
    tickTimers();
    window.setInterval(tickTimers, 1000);

    document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
      select.addEventListener("change", function () {
        select.form.submit();
      });
    });

    syncedConversation = currentConversation();
    scrollToEnd(currentTimeline());
    afterSwaps();
  });
})();
