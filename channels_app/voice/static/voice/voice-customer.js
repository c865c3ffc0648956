/* Parley voice, the customer's side: accept the agent's call, ask for one, mute, video, hang up.

   The chat page (chat.js) announces its session token with a "parley:chat-session"
   event (and window.parleyChatSession); this script then opens /ws/voice/ and
   authenticates with that token. The agent makes the WebRTC offer; this side
   answers (the polite peer) and can add or drop video at any time. */
(function () {
  "use strict";

  var script = document.currentScript;
  var base = script ? script.src.replace(/[^/]*$/, "") : "/static/voice/";

  var el = {};
  var S = {};
  var state = {
    token: null,
    signalling: null,
    iceServers: [],
    call: null,
    media: null,
    readySent: {},
    ring: null,
    timer: null,
    chatState: null,
    callFirst: false,
    callToken: null
  };

  function $(id) {
    return document.getElementById(id);
  }

  function show(node, visible) {
    if (node) {
      node.hidden = !visible;
    }
  }

  function whenRtc(callback) {
    if (window.ParleyVoiceRTC) {
      callback();
      return;
    }
    var existing = document.querySelector('script[data-voice-rtc]');
    var tag = existing || document.createElement("script");
    tag.addEventListener("load", callback);
    if (!existing) {
      tag.src = base + "voice-rtc.js";
      tag.setAttribute("data-voice-rtc", "");
      document.head.appendChild(tag);
    }
  }

  function send(frame) {
    return state.signalling && state.signalling.send(frame);
  }

  function setError(message) {
    el.error.textContent = message || "";
    show(el.error, Boolean(message));
  }

  function formatElapsed(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    var m = Math.floor(seconds / 60);
    var s = seconds % 60;
    return m + ":" + (s < 10 ? "0" : "") + s;
  }

  function tick() {
    var call = state.call;
    if (call && call.answered_at && (call.state === "active" || call.state === "on_hold")) {
      el.timer.textContent = formatElapsed((Date.now() - Date.parse(call.answered_at)) / 1000);
      show(el.timer, true);
    } else {
      show(el.timer, false);
    }
  }

  function mediaFor(call) {
    if (state.media && state.media.id === call.id) {
      return state.media;
    }
    if (state.media) {
      state.media.close();
    }
    state.media = new window.ParleyVoiceRTC.Call({
      id: call.id,
      polite: true,
      iceServers: state.iceServers,
      send: send,
      onRemoteTrack: function (track, stream) {
        if (track.kind === "audio") {
          el.remoteAudio.srcObject = stream || new MediaStream([track]);
        } else {
          el.remoteVideo.srcObject = stream || new MediaStream([track]);
          show(el.videos, true);
        }
      },
      onState: function (iceState) {
        el.widget.setAttribute("data-ice", iceState);
      }
    });
    return state.media;
  }

  function dropMedia() {
    var media = state.media;
    state.media = null;
    if (!media) {
      return;
    }
    media.stats().then(function (stats) {
      if (stats) {
        send({ type: "stats", call: media.id, stats: stats });
      }
    }).catch(function () {}).then(function () {
      media.close();
    });
    el.remoteAudio.srcObject = null;
    el.remoteVideo.srcObject = null;
    el.localVideo.srcObject = null;
    show(el.videos, false);
    el.widget.removeAttribute("data-ice");
  }

  function stopRing() {
    if (state.ring) {
      state.ring.stop();
      state.ring = null;
    }
  }

  function render() {
    var call = state.call;
    var callState = call ? call.state : "none";
    el.widget.setAttribute("data-call-state", callState);
    var live = callState === "ringing" || callState === "queued" || callState === "active" || callState === "on_hold";
    show(el.request, Boolean(state.token) && !live && state.chatState === "active");
    show(el.panel, live || callState === "ended" || callState === "missed");
    var incoming = callState === "ringing" && call.incoming;
    show(el.accept, incoming);
    show(el.reject, incoming);
    var talking = callState === "active" || callState === "on_hold";
    show(el.mute, talking);
    show(el.video, talking);
    show(el.hangup, live && !incoming);
    var text = "";
    if (incoming) {
      text = S.ringing;
    } else if (callState === "ringing") {
      text = S.calling;
    } else if (callState === "queued") {
      text = S.queued;
    } else if (callState === "on_hold") {
      text = S.on_hold;
    } else if (callState === "active") {
      var ice = el.widget.getAttribute("data-ice");
      text = ice === "connected" || ice === "completed" ? S.active : S.connecting;
      if (call.muted && call.muted.agent) {
        text += " · " + S.agentMuted;
      }
    } else if (callState === "ended") {
      text = S.ended;
    } else if (callState === "missed" || callState === "abandoned") {
      text = S.missed;
      show(el.panel, true);
    }
    el.status.textContent = text;
    var muted = Boolean(state.media && state.media.muted);
    el.mute.setAttribute("aria-pressed", muted ? "true" : "false");
    el.mute.textContent = muted ? S.unmute : S.mute;
    var video = Boolean(state.media && state.media.videoTrack);
    el.video.setAttribute("aria-pressed", video ? "true" : "false");
    el.video.textContent = video ? S.videoOff : S.videoOn;
    if (incoming && !state.ring) {
      state.ring = window.ParleyVoiceRTC.playRing(el.widget.getAttribute("data-ring-src"));
    } else if (!incoming) {
      stopRing();
    }
    tick();
  }

  function applyCall(call) {
    var live = call.state === "ringing" || call.state === "queued" || call.state === "active" || call.state === "on_hold";
    if (!live) {
      if (state.call && state.call.id === call.id) {
        dropMedia();
        state.call = call;
        render();
        if (state.callFirst) {
          // The call-first call is over: the form is offered again for a chat or another call.
          remember(null);
          state.callToken = null;
          if (state.signalling) {
            state.signalling.closedForGood = true;
          }
          window.setTimeout(function () {
            showCallFirst(false);
            var prechat = $("prechat");
            if (prechat) {
              prechat.appendChild(el.widget);
            }
          }, 0);
        }
      }
      return;
    }
    state.call = call;
    if (call.state === "active" || call.state === "on_hold") {
      var media = mediaFor(call);
      media.setHeld(call.state === "on_hold");
      el.remoteAudio.muted = call.state === "on_hold";
      if (!state.readySent[call.id]) {
        state.readySent[call.id] = true;
        media.media().catch(function () {
          setError(S.noMic);
        });
        // The agent offers when the call is answered. A page that missed that offer (reloaded, or
        // opened after the answer) says it is ready, and the agent starts the connection over.
        window.setTimeout(function () {
          if (state.media === media && !media.pc) {
            send({ type: "ready", call: call.id });
          }
        }, 1500);
      }
    }
    render();
  }

  function onFrame(frame) {
    switch (frame.type) {
      case "session":
        state.callToken = String(frame.call_token || "");
        remember(state.callToken);
        break;
      case "hello":
        state.iceServers = frame.ice_servers || [];
        state.readySent = {};
        break;
      case "calls":
        if (!(frame.calls || []).length && state.call) {
          applyCall({ id: state.call.id, state: "ended" });
        }
        (frame.calls || []).forEach(applyCall);
        render();
        break;
      case "call":
        applyCall(frame.call);
        break;
      case "offer":
        // The offer may overtake this page's own news of the answer (another group, another socket).
        if (state.call && state.call.id === frame.call) {
          mediaFor(state.call).onOffer(frame.sdp, frame.fresh === true).catch(function () {});
        }
        break;
      case "answer":
        if (state.media && state.media.id === frame.call) {
          state.media.onAnswer(frame.sdp);
        }
        break;
      case "ice":
        if (state.media && state.media.id === frame.call) {
          state.media.onCandidate(frame.candidate);
        }
        break;
      case "error":
        if (frame.code === "invalid_session" && state.callFirst) {
          remember(null);
          state.callToken = null;
          showCallFirst(false);
        }
        if (state.callFirst && !state.callToken && (frame.code === "invalid" || frame.code === "rejected")) {
          // The form's details were refused: back to the form, with the reason.
          showCallFirst(false);
          var formError = $("prechat-error");
          if (formError) {
            formError.textContent = String(frame.message || "");
            formError.hidden = false;
          }
          if (state.signalling) {
            state.signalling.closedForGood = true;
            if (state.signalling.socket) {
              state.signalling.socket.close(1000);
            }
          }
          break;
        }
        if (frame.code !== "not_connected") {
          setError(String(frame.message || ""));
        }
        break;
      default:
        break;
    }
  }

  function connect(token) {
    if (!token || token === state.token) {
      return;
    }
    state.token = token;
    if (state.signalling) {
      state.signalling.closedForGood = true;
      if (state.signalling.socket) {
        state.signalling.socket.close(1000);
      }
    }
    whenRtc(function () {
      state.signalling = new window.ParleyVoiceRTC.Signalling(el.widget.getAttribute("data-ws-path"), {
        open: function () {
          send({ type: "hello", token: state.token, lang: document.documentElement.lang });
        },
        frame: onFrame
      });
      state.signalling.connect();
      render();
    });
  }

  // --- call-first: "Call us" on the pre-chat form ------------------------------------------------------------

  function serviceSlug() {
    var config = $("chat-config");
    try {
      return config ? JSON.parse(config.textContent).service : "";
    } catch (e) {
      return "";
    }
  }

  function storageKey() {
    return "parley.voice." + serviceSlug() + ".call";
  }

  function remember(token) {
    try {
      if (token) {
        window.localStorage.setItem(storageKey(), token);
      } else {
        window.localStorage.removeItem(storageKey());
      }
    } catch (e) {
      // Storage blocked: the call still works until the page is closed.
    }
  }

  function remembered() {
    try {
      return window.localStorage.getItem(storageKey());
    } catch (e) {
      return null;
    }
  }

  /* The call happens on the pre-chat section: the widget moves there and the form steps aside. */
  function showCallFirst(on) {
    var prechat = $("prechat");
    var form = $("prechat-form");
    var conversation = $("conversation");
    if (!prechat || !form) {
      return;
    }
    if (on) {
      prechat.appendChild(el.widget);
    } else if (conversation && el.widget.parentNode !== conversation) {
      conversation.insertBefore(el.widget, conversation.firstChild.nextSibling);
    }
    form.hidden = on;
    var first = $("voice-call-first");
    if (first) {
      first.closest(".voice-call-first").hidden = on;
    }
    state.callFirst = on;
  }

  function openCallFirst(firstFrame) {
    if (state.signalling) {
      state.signalling.closedForGood = true;
      if (state.signalling.socket) {
        state.signalling.socket.close(1000);
      }
    }
    var pending = firstFrame;
    whenRtc(function () {
      state.signalling = new window.ParleyVoiceRTC.Signalling(el.widget.getAttribute("data-ws-path"), {
        open: function () {
          if (state.callToken) {
            send({ type: "hello", call_token: state.callToken, lang: document.documentElement.lang });
          } else if (pending) {
            send(pending);
            pending = null;
          }
        },
        frame: onFrame
      });
      state.signalling.connect();
    });
  }

  function startCallFirst() {
    var form = $("prechat-form");
    var fields = {};
    if (form) {
      form.querySelectorAll("[data-mode]").forEach(function (input) {
        if (input.value.trim()) {
          fields[input.name] = input.value.trim();
        }
      });
    }
    setError("");
    var visitor = null;
    try {
      visitor = window.localStorage.getItem("parley.chat." + serviceSlug() + ".visitor");
    } catch (e) {
      visitor = null;
    }
    showCallFirst(true);
    show(el.panel, true);
    el.status.textContent = S.queued;
    openCallFirst({ type: "start_call", service: serviceSlug(), fields: fields, visitor: visitor,
                    lang: document.documentElement.lang });
  }

  function init() {
    el.widget = $("voice-widget");
    if (!el.widget) {
      return;
    }
    ["request", "panel", "status", "timer", "videos", "remote-video", "local-video", "remote-audio", "accept",
     "reject", "mute", "video", "hangup", "error"].forEach(function (name) {
      el[name.replace(/-(\w)/g, function (m, c) { return c.toUpperCase(); })] = $("voice-" + name);
    });
    el.widget.querySelectorAll("[data-voice-string]").forEach(function (node) {
      S[node.getAttribute("data-voice-string")] = node.textContent;
    });
    whenRtc(function () {
      window.ParleyVoiceRTC.loadCss(el.widget.getAttribute("data-css"));
    });
    var callFirst = $("voice-call-first");
    if (callFirst) {
      callFirst.addEventListener("click", startCallFirst);
    }

    el.request.addEventListener("click", function () {
      setError("");
      send({ type: "call", video: false });
    });
    el.accept.addEventListener("click", function () {
      var call = state.call;
      stopRing();
      setError("");
      // The microphone is asked for on the click (a user gesture) while the answer travels.
      send({ type: "accept", call: call.id });
      mediaFor(call).media().catch(function () { setError(S.noMic); });
    });
    el.reject.addEventListener("click", function () {
      stopRing();
      send({ type: "reject", call: state.call.id });
    });
    el.hangup.addEventListener("click", function () {
      var call = state.call;
      var media = state.media;
      var stats = media ? media.stats().catch(function () { return null; }) : Promise.resolve(null);
      stats.then(function (figures) {
        if (figures) {
          send({ type: "stats", call: call.id, stats: figures });
        }
        send({ type: "hangup", call: call.id });
      });
    });
    el.mute.addEventListener("click", function () {
      if (!state.media) {
        return;
      }
      state.media.setMuted(!state.media.muted);
      send({ type: "mute", call: state.call.id, on: state.media.muted });
      render();
    });
    el.video.addEventListener("click", function () {
      if (!state.media) {
        return;
      }
      var on = !state.media.videoTrack;
      state.media.setVideo(on).then(function (track) {
        if (track) {
          el.localVideo.srcObject = new MediaStream([track]);
          show(el.videos, true);
        } else {
          el.localVideo.srcObject = null;
        }
        send({ type: "video", call: state.call.id, on: on });
        render();
      }).catch(function () { setError(S.noMic); });
    });

    var chat = $("chat");
    if (chat && window.MutationObserver) {
      new MutationObserver(function () {
        state.chatState = chat.getAttribute("data-chat-state");
        render();
      }).observe(chat, { attributes: true, attributeFilter: ["data-chat-state"] });
      state.chatState = chat.getAttribute("data-chat-state");
    }
    document.addEventListener("parley:chat-session", function (event) {
      connect(event.detail && event.detail.token);
    });
    if (window.parleyChatSession && window.parleyChatSession.token) {
      connect(window.parleyChatSession.token);
    } else if (remembered()) {
      // A reload during a call-first call resumes it.
      state.callToken = remembered();
      showCallFirst(true);
      openCallFirst(null);
    }
    window.setInterval(tick, 1000);
    window.setInterval(render, 2000);
  }

  // For tests and the bench.
  window.parleyVoice = {
    call: function () { return state.call; },
    inboundBytes: function () { return state.media ? state.media.inboundBytes() : Promise.resolve(0); },
    iceState: function () { return state.media && state.media.pc ? state.media.pc.iceConnectionState : ""; },
    timings: function () {
      return state.media ? { started: state.media.startedAt, connected: state.media.connectedAt } : null;
    }
  };

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
