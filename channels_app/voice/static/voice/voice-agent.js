/* Parley voice, the agent's side: call controls in the workspace header, ringing, WebRTC.

   The header's controls are server-rendered (voice/workspace_call.html) and
   re-rendered on every call state change; this script handles their buttons
   by event delegation, keeps media and the mute/device choices in the page,
   and talks to /ws/voice/. The database is the source of truth: on every
   (re)connect the socket sends the agent's live calls. */
(function () {
  "use strict";

  var script = document.currentScript;
  var base = script ? script.src.replace(/[^/]*$/, "") : "/static/voice/";

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

  var state = {
    signalling: null,
    iceServers: [],
    calls: {},      // id -> call data from the server
    media: {},      // id -> ParleyVoiceRTC.Call
    ring: null,
    ringing: null,
    micId: null,
    speakerId: null,
    audio: null,
    toast: null,
    pendingReady: {}
  };

  function send(frame) {
    return state.signalling && state.signalling.send(frame);
  }

  function remoteAudio() {
    if (!state.audio) {
      state.audio = document.createElement("audio");
      state.audio.id = "voice-remote-audio";
      state.audio.autoplay = true;
      state.audio.hidden = true;
      document.body.appendChild(state.audio);
    }
    return state.audio;
  }

  function ringSrc() {
    return base + "ring.wav";
  }

  function startRing(id) {
    if (state.ringing === id) {
      return;
    }
    stopRing();
    state.ringing = id;
    state.ring = window.ParleyVoiceRTC.playRing(ringSrc());
  }

  function stopRing() {
    if (state.ring) {
      state.ring.stop();
    }
    state.ring = null;
    state.ringing = null;
  }

  /* A ringing call the agent must answer is shown wherever they are, not only in its conversation. */
  function showToast(call) {
    hideToast();
    var box = document.createElement("div");
    box.className = "voice-toast";
    box.setAttribute("role", "alertdialog");
    box.setAttribute("aria-live", "assertive");
    box.setAttribute("data-call", String(call.id));
    var text = document.createElement("p");
    text.textContent = (document.documentElement.lang === "de" ? "Anruf: " : "Incoming call: ") + String(call.contact || "");
    var accept = document.createElement("button");
    accept.type = "button";
    accept.className = "primary";
    accept.setAttribute("data-voice-action", "accept");
    accept.setAttribute("data-call", String(call.id));
    accept.textContent = document.documentElement.lang === "de" ? "Annehmen" : "Accept";
    var reject = document.createElement("button");
    reject.type = "button";
    reject.className = "danger";
    reject.setAttribute("data-voice-action", "reject");
    reject.setAttribute("data-call", String(call.id));
    reject.textContent = document.documentElement.lang === "de" ? "Ablehnen" : "Reject";
    box.appendChild(text);
    box.appendChild(accept);
    box.appendChild(reject);
    document.body.appendChild(box);
    state.toast = box;
  }

  function hideToast() {
    if (state.toast) {
      state.toast.remove();
      state.toast = null;
    }
  }

  function mediaFor(call) {
    var existing = state.media[call.id];
    if (existing) {
      return existing;
    }
    var media = new window.ParleyVoiceRTC.Call({
      id: call.id,
      polite: false,
      iceServers: state.iceServers,
      audioDeviceId: state.micId,
      send: send,
      onRemoteTrack: function (track, stream) {
        var audio = remoteAudio();
        if (track.kind === "audio") {
          audio.srcObject = stream || new MediaStream([track]);
          if (state.speakerId && audio.setSinkId) {
            audio.setSinkId(state.speakerId).catch(function () {});
          }
        } else if (track.kind === "video") {
          showRemoteVideo(call.id, stream || new MediaStream([track]));
        }
      },
      onState: function (iceState) {
        document.body.setAttribute("data-voice-ice", iceState);
        refreshControls();
      }
    });
    state.media[call.id] = media;
    return media;
  }

  function showRemoteVideo(id, stream) {
    var video = document.getElementById("voice-remote-video");
    if (!video) {
      video = document.createElement("video");
      video.id = "voice-remote-video";
      video.className = "voice-remote-video";
      video.autoplay = true;
      video.playsInline = true;
      video.muted = true;
      document.body.appendChild(video);
    }
    video.srcObject = stream;
    video.hidden = false;
  }

  function dropMedia(id) {
    var media = state.media[id];
    if (!media) {
      return;
    }
    delete state.media[id];
    // The figures are stored with the call, then the connection closes.
    media.stats().then(function (stats) {
      if (stats) {
        send({ type: "stats", call: id, stats: stats });
      }
    }).catch(function () {}).then(function () {
      media.close();
    });
    var video = document.getElementById("voice-remote-video");
    if (video) {
      video.hidden = true;
      video.srcObject = null;
    }
    document.body.removeAttribute("data-voice-ice");
  }

  function applyCall(call) {
    var previous = state.calls[call.id];
    var live = call.state === "ringing" || call.state === "queued" || call.state === "active" || call.state === "on_hold";
    if (!live) {
      delete state.calls[call.id];
      if (state.ringing === call.id) {
        stopRing();
        hideToast();
      }
      dropMedia(call.id);
      refreshControls();
      return;
    }
    state.calls[call.id] = call;
    if (call.state === "ringing" && call.incoming) {
      startRing(call.id);
      showToast(call);
    } else if (state.ringing === call.id) {
      stopRing();
      hideToast();
    }
    if (call.state === "ringing" && !call.incoming) {
      // The agent is calling: microphone, connection and offer are made now and sent once the customer answers.
      mediaFor(call).prepare().catch(function () {});
    }
    if (call.state === "active" || call.state === "on_hold") {
      var media = mediaFor(call);
      if (media.holding) {
        media.release();
      } else if (!media.pc && !media.starting) {
        // The agent offers as soon as the call is answered; "ready" from the customer restarts it (a reload).
        media.starting = true;
        media.start().catch(function () {}).then(function () { media.starting = false; });
      }
      media.setHeld(call.state === "on_hold");
      var audio = remoteAudio();
      audio.muted = call.state === "on_hold";
    }
    if (previous && previous.state === "on_hold" && call.state === "active") {
      remoteAudio().muted = false;
    }
    if (state.pendingReady[call.id] && call.state === "active") {
      startFor(call);
    }
    refreshControls();
  }

  /* The header is re-rendered by the server; pressed states that live in the page are put back. */
  function refreshControls() {
    document.querySelectorAll('[data-voice-action="mute"]').forEach(function (button) {
      var media = state.media[Number(button.getAttribute("data-call"))];
      var on = Boolean(media && media.muted);
      button.setAttribute("aria-pressed", on ? "true" : "false");
      button.textContent = button.getAttribute(on ? "data-label-on" : "data-label-off");
    });
    // Mute flags do not change the header's swap key, so the page shows the customer's from the socket.
    document.querySelectorAll("[data-voice-remote-muted]").forEach(function (node) {
      var call = state.calls[Number(node.getAttribute("data-call"))];
      node.hidden = !(call && call.muted && call.muted.customer);
    });
    document.querySelectorAll("[data-voice-media]").forEach(function (node) {
      var box = node.closest("[data-call]");
      var media = box && state.media[Number(box.getAttribute("data-call"))];
      var ice = media && media.pc ? media.pc.iceConnectionState : "";
      node.hidden = !ice;
      node.textContent = ice;
      node.setAttribute("data-ice", ice);
    });
    fillDevices();
  }

  function fillDevices() {
    var selects = document.querySelectorAll("select[data-voice-device]");
    if (!selects.length || !navigator.mediaDevices || !navigator.mediaDevices.enumerateDevices) {
      return;
    }
    navigator.mediaDevices.enumerateDevices().then(function (devices) {
      selects.forEach(function (select) {
        var kind = select.getAttribute("data-voice-device");
        if (select.options.length) {
          return;
        }
        var chosen = kind === "audioinput" ? state.micId : state.speakerId;
        devices.filter(function (d) { return d.kind === kind; }).forEach(function (device, index) {
          var option = document.createElement("option");
          option.value = device.deviceId;
          option.textContent = device.label || kind + " " + (index + 1);
          option.selected = device.deviceId === chosen;
          select.appendChild(option);
        });
      });
    }).catch(function () {});
  }

  /* The customer (re)joined: a fresh connection, so a reloaded page also gets media again. */
  function startFor(call) {
    delete state.pendingReady[call.id];
    var media = mediaFor(call);
    (media.pc ? media.restart() : media.start()).catch(function () {});
  }

  function onFrame(frame) {
    var media;
    switch (frame.type) {
      case "hello":
        state.iceServers = frame.ice_servers || [];
        break;
      case "calls":
        var seen = {};
        (frame.calls || []).forEach(function (call) {
          seen[call.id] = true;
          applyCall(call);
        });
        Object.keys(state.calls).forEach(function (id) {
          if (!seen[id]) {
            applyCall({ id: Number(id), state: "ended" });
          }
        });
        break;
      case "call":
        applyCall(frame.call);
        break;
      case "ready":
        if (!state.calls[frame.call] || state.calls[frame.call].state !== "active") {
          // The customer heard of the answer first (another group, another socket): catch up, then offer.
          state.pendingReady[frame.call] = true;
          send({ type: "sync" });
          break;
        }
        startFor(state.calls[frame.call]);
        break;
      case "offer":
        media = state.media[frame.call];
        if (media) {
          media.onOffer(frame.sdp, frame.fresh === true).catch(function () {});
        }
        break;
      case "answer":
        media = state.media[frame.call];
        if (media) {
          media.onAnswer(frame.sdp);
        }
        break;
      case "ice":
        media = state.media[frame.call];
        if (media) {
          media.onCandidate(frame.candidate);
        }
        break;
      case "error":
        window.console && window.console.warn("voice:", frame.code, frame.message);
        break;
      default:
        break;
    }
  }

  function onClick(event) {
    var button = event.target.closest("[data-voice-action]");
    if (!button) {
      return;
    }
    var action = button.getAttribute("data-voice-action");
    var id = Number(button.getAttribute("data-call"));
    var media = state.media[id];
    event.preventDefault();
    if (action === "call") {
      send({ type: "call", conversation: button.getAttribute("data-conversation"),
             video: button.getAttribute("data-video") === "true" });
    } else if (action === "accept") {
      stopRing();
      hideToast();
      send({ type: "accept", call: id });
      if (state.calls[id]) {
        mediaFor(state.calls[id]).media().catch(function () {});
      }
    } else if (action === "reject") {
      stopRing();
      hideToast();
      send({ type: "reject", call: id });
    } else if (action === "hangup") {
      send({ type: "hangup", call: id });
    } else if (action === "hold") {
      send({ type: "hold", call: id, on: true });
    } else if (action === "resume") {
      send({ type: "hold", call: id, on: false });
    } else if (action === "mute" && media) {
      media.setMuted(!media.muted);
      send({ type: "mute", call: id, on: media.muted });
      refreshControls();
    } else if (action === "video" && media) {
      var on = button.getAttribute("aria-pressed") !== "true";
      media.setVideo(on).then(function () {
        send({ type: "video", call: id, on: on });
      }).catch(function () {});
    }
  }

  function onDeviceChange(event) {
    var select = event.target.closest("select[data-voice-device]");
    if (!select) {
      return;
    }
    if (select.getAttribute("data-voice-device") === "audioinput") {
      state.micId = select.value;
      Object.keys(state.media).forEach(function (id) { state.media[id].useMicrophone(select.value).catch(function () {}); });
    } else {
      state.speakerId = select.value;
      var audio = remoteAudio();
      if (audio.setSinkId) {
        audio.setSinkId(select.value).catch(function () {});
      }
    }
  }

  function init() {
    if (!document.body.classList.contains("desktop")) {
      return;
    }
    whenRtc(function () {
      window.ParleyVoiceRTC.loadCss(base + "voice.css");
      state.signalling = new window.ParleyVoiceRTC.Signalling("/ws/voice/", {
        frame: onFrame,
        open: function () { send({ type: "sync" }); }
      });
      state.signalling.connect();
    });
    document.addEventListener("click", onClick);
    document.addEventListener("change", onDeviceChange);
    // Header swaps put server-rendered controls back; restore what only the page knows.
    document.body.addEventListener("htmx:afterSettle", refreshControls);
    document.body.addEventListener("htmx:wsAfterMessage", refreshControls);
    window.addEventListener("beforeunload", function () {
      Object.keys(state.media).forEach(function (id) { dropMedia(Number(id)); });
    });
  }

  // For tests and the bench: the media of the agent's calls.
  window.parleyVoice = {
    calls: function () { return state.calls; },
    inboundBytes: function () {
      var ids = Object.keys(state.media);
      return ids.length ? state.media[ids[0]].inboundBytes() : Promise.resolve(0);
    },
    iceState: function () {
      var ids = Object.keys(state.media);
      return ids.length && state.media[ids[0]].pc ? state.media[ids[0]].pc.iceConnectionState : "";
    },
    timings: function () {
      var ids = Object.keys(state.media);
      var media = ids.length ? state.media[ids[0]] : null;
      return media ? { started: media.startedAt, connected: media.connectedAt } : null;
    }
  };

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
