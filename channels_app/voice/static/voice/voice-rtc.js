/* Parley voice: the WebRTC and signalling part both parties share (window.ParleyVoiceRTC).

   One signalling socket (/ws/voice/) per page; one RTCPeerConnection per call.
   Negotiation follows the "perfect negotiation" pattern: the agent is the
   impolite peer, the customer the polite one, so either side can add or drop
   video at any time without offer collisions breaking the call. */
(function () {
  "use strict";

  function Signalling(path, handlers) {
    this.path = path;
    this.handlers = handlers;
    this.socket = null;
    this.delay = 1000;
    this.timer = null;
    this.closedForGood = false;
  }

  Signalling.prototype.connect = function () {
    var self = this;
    if (self.socket || self.closedForGood) {
      return;
    }
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + window.location.host + self.path);
    self.socket = socket;
    socket.addEventListener("open", function () {
      self.delay = 1000;
      if (self.handlers.open) {
        self.handlers.open();
      }
    });
    socket.addEventListener("message", function (event) {
      var frame;
      try {
        frame = JSON.parse(event.data);
      } catch (e) {
        return;
      }
      if (frame && typeof frame === "object" && frame.type !== "ice") {
        mark("in:" + frame.type + (frame.call && frame.call.state ? ":" + frame.call.state : ""));
      }
      if (frame && typeof frame === "object" && self.handlers.frame) {
        self.handlers.frame(frame);
      }
    });
    socket.addEventListener("close", function (event) {
      if (self.socket !== socket) {
        return;
      }
      self.socket = null;
      if (event.code === 4403 || event.code === 4401) {
        self.closedForGood = event.code === 4403;
      }
      if (!self.closedForGood) {
        var wait = self.delay * (0.75 + Math.random() * 0.5);
        self.delay = Math.min(self.delay * 2, 30000);
        self.timer = window.setTimeout(function () { self.connect(); }, wait);
      }
    });
  };

  Signalling.prototype.send = function (frame) {
    if (frame.type !== "ice") {
      mark("out:" + frame.type);
    }
    if (this.socket && this.socket.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify(frame));
      return true;
    }
    return false;
  };

  // A DTLS certificate made once per page, ahead of the first call: creating it inside the call setup costs time.
  var certificate = null;
  if (window.RTCPeerConnection && RTCPeerConnection.generateCertificate) {
    RTCPeerConnection.generateCertificate({ name: "ECDSA", namedCurve: "P-256" }).then(function (made) {
      certificate = made;
    }).catch(function () {});
  }

  /* One call's media: local tracks, the peer connection, the remote stream. */
  function Call(options) {
    this.id = options.id;
    this.polite = options.polite;
    this.send = options.send;
    this.iceServers = options.iceServers || [];
    this.onRemoteTrack = options.onRemoteTrack || function () {};
    this.onState = options.onState || function () {};
    this.pc = null;
    this.local = null;
    this.videoTrack = null;
    this.makingOffer = false;
    this.ignoreOffer = false;
    this.muted = false;
    this.held = false;
    this.audioDeviceId = options.audioDeviceId || null;
    this.startedAt = 0;
    this.connectedAt = 0;
    // While the call still rings, the offer and candidates are made but kept back (see prepare/release).
    this.holding = false;
    this.held_frames = [];
  }

  Call.prototype.out = function (frame) {
    if (this.holding) {
      this.held_frames.push(frame);
    } else {
      this.send(frame);
    }
  };

  /* Ringing: open the microphone and make the offer now, so answering costs only the relay and ICE checks. */
  Call.prototype.prepare = function () {
    if (this.pc || this.starting) {
      return Promise.resolve();
    }
    this.holding = true;
    return this.start();
  };

  Call.prototype.release = function () {
    var frames = this.held_frames;
    this.holding = false;
    this.held_frames = [];
    var self = this;
    frames.forEach(function (frame) { self.send(frame); });
  };

  Call.prototype.media = function () {
    var self = this;
    if (self.local) {
      return Promise.resolve(self.local);
    }
    if (self.pendingMedia) {
      return self.pendingMedia;
    }
    var audio = self.audioDeviceId ? { deviceId: { exact: self.audioDeviceId } } : true;
    self.pendingMedia = navigator.mediaDevices.getUserMedia({ audio: audio, video: false }).then(function (stream) {
      self.pendingMedia = null;
      if (self.closed) {
        stream.getTracks().forEach(function (track) { track.stop(); });
        throw new Error("call closed");
      }
      self.local = stream;
      self.applyEnabled();
      return stream;
    }, function (error) {
      self.pendingMedia = null;
      throw error;
    });
    return self.pendingMedia;
  };

  Call.prototype.ensurePeer = function () {
    var self = this;
    if (self.pc) {
      return self.pc;
    }
    var config = { iceServers: self.iceServers };
    if (certificate && certificate.expires > Date.now() + 60000) {
      config.certificates = [certificate];
    }
    var pc = new RTCPeerConnection(config);
    self.pc = pc;
    self.startedAt = Date.now();
    pc.addEventListener("icecandidate", function (event) {
      self.out({ type: "ice", call: self.id, candidate: event.candidate ? event.candidate.toJSON() : null });
    });
    var first = true;
    pc.addEventListener("negotiationneeded", function () {
      self.makingOffer = true;
      pc.setLocalDescription().then(function () {
        // "fresh": the first offer of a new connection; the other side then drops any old one.
        self.out({ type: "offer", call: self.id, sdp: pc.localDescription.sdp, fresh: first });
        first = false;
      }).catch(function () {}).then(function () {
        self.makingOffer = false;
      });
    });
    pc.addEventListener("track", function (event) {
      self.onRemoteTrack(event.track, event.streams && event.streams[0]);
    });
    pc.addEventListener("iceconnectionstatechange", function () {
      if ((pc.iceConnectionState === "connected" || pc.iceConnectionState === "completed") && !self.connectedAt) {
        self.connectedAt = Date.now();
      }
      self.onState(pc.iceConnectionState);
    });
    return pc;
  };

  Call.prototype.addLocalTracks = function () {
    var self = this;
    var pc = self.ensurePeer();
    var senders = pc.getSenders();
    self.local.getTracks().forEach(function (track) {
      var has = senders.some(function (sender) { return sender.track === track; });
      if (!has) {
        pc.addTrack(track, self.local);
      }
    });
  };

  /* The impolite side starts: once the other party is ready, tracks go in and negotiation begins. */
  Call.prototype.start = function () {
    var self = this;
    return self.media().then(function () {
      self.addLocalTracks();
    });
  };

  Call.prototype.restart = function () {
    this.closePeer();
    return this.start();
  };

  Call.prototype.onOffer = function (sdp, fresh) {
    var self = this;
    if (fresh && self.pc && self.pc.signalingState !== "stable" && !self.makingOffer) {
      self.closePeer();
    } else if (fresh && self.pc && self.pc.remoteDescription) {
      // The other side started over (a reload, a restart): a new connection, not a renegotiation.
      self.closePeer();
    }
    var pc = self.ensurePeer();
    var collision = self.makingOffer || pc.signalingState !== "stable";
    self.ignoreOffer = !self.polite && collision;
    if (self.ignoreOffer) {
      return Promise.resolve();
    }
    return pc.setRemoteDescription({ type: "offer", sdp: sdp }).then(function () {
      return self.media().then(function () { self.addLocalTracks(); }, function () {});
    }).then(function () {
      return pc.setLocalDescription();
    }).then(function () {
      self.send({ type: "answer", call: self.id, sdp: pc.localDescription.sdp });
    });
  };

  Call.prototype.onAnswer = function (sdp) {
    if (!this.pc) {
      return Promise.resolve();
    }
    return this.pc.setRemoteDescription({ type: "answer", sdp: sdp }).catch(function () {});
  };

  Call.prototype.onCandidate = function (candidate) {
    if (!this.pc) {
      return Promise.resolve();
    }
    var self = this;
    return this.pc.addIceCandidate(candidate || null).catch(function (error) {
      if (!self.ignoreOffer) {
        window.console && window.console.warn("ICE candidate refused", error);
      }
    });
  };

  Call.prototype.applyEnabled = function () {
    var self = this;
    if (!self.local) {
      return;
    }
    self.local.getAudioTracks().forEach(function (track) { track.enabled = !self.muted && !self.held; });
    self.local.getVideoTracks().forEach(function (track) { track.enabled = !self.held; });
  };

  Call.prototype.setMuted = function (muted) {
    this.muted = muted;
    this.applyEnabled();
  };

  Call.prototype.setHeld = function (held) {
    this.held = held;
    this.applyEnabled();
  };

  Call.prototype.setVideo = function (on) {
    var self = this;
    if (on) {
      return navigator.mediaDevices.getUserMedia({ video: true }).then(function (stream) {
        self.videoTrack = stream.getVideoTracks()[0];
        self.media().then(function (local) {
          local.addTrack(self.videoTrack);
          self.applyEnabled();
          if (self.pc) {
            self.pc.addTrack(self.videoTrack, local);
          }
        });
        return self.videoTrack;
      });
    }
    if (self.videoTrack) {
      var track = self.videoTrack;
      self.videoTrack = null;
      if (self.pc) {
        self.pc.getSenders().forEach(function (sender) {
          if (sender.track === track) {
            self.pc.removeTrack(sender);
          }
        });
      }
      if (self.local) {
        self.local.removeTrack(track);
      }
      track.stop();
    }
    return Promise.resolve(null);
  };

  Call.prototype.useMicrophone = function (deviceId) {
    var self = this;
    self.audioDeviceId = deviceId;
    if (!self.local) {
      return Promise.resolve();
    }
    return navigator.mediaDevices.getUserMedia({ audio: { deviceId: { exact: deviceId } } }).then(function (stream) {
      var fresh = stream.getAudioTracks()[0];
      var old = self.local.getAudioTracks()[0];
      if (old) {
        self.local.removeTrack(old);
        old.stop();
      }
      self.local.addTrack(fresh);
      self.applyEnabled();
      if (self.pc) {
        self.pc.getSenders().forEach(function (sender) {
          if (sender.track && sender.track.kind === "audio") {
            sender.replaceTrack(fresh);
          }
        });
      }
    });
  };

  /* Figures stored with the call: round-trip time, jitter, loss and bytes, from getStats(). */
  Call.prototype.stats = function () {
    if (!this.pc) {
      return Promise.resolve(null);
    }
    return this.pc.getStats().then(function (report) {
      var out = { packets_lost: 0, packets_received: 0, bytes_received: 0 };
      var jitter = null;
      report.forEach(function (stat) {
        if (stat.type === "inbound-rtp" && stat.kind === "audio") {
          out.packets_lost += Math.max(0, stat.packetsLost || 0);
          out.packets_received += stat.packetsReceived || 0;
          out.bytes_received += stat.bytesReceived || 0;
          if (typeof stat.jitter === "number") {
            jitter = stat.jitter * 1000;
          }
        }
        if (stat.type === "candidate-pair" && stat.nominated && typeof stat.currentRoundTripTime === "number") {
          out.rtt_ms = stat.currentRoundTripTime * 1000;
        }
      });
      if (jitter !== null) {
        out.jitter_ms = jitter;
      }
      var total = out.packets_lost + out.packets_received;
      out.loss_percent = total ? (100 * out.packets_lost) / total : 0;
      return out;
    });
  };

  /* Audio bytes received so far (tests and the connection indicator). */
  Call.prototype.inboundBytes = function () {
    if (!this.pc) {
      return Promise.resolve(0);
    }
    return this.pc.getStats().then(function (report) {
      var bytes = 0;
      report.forEach(function (stat) {
        if (stat.type === "inbound-rtp" && stat.kind === "audio") {
          bytes += stat.bytesReceived || 0;
        }
      });
      return bytes;
    });
  };

  Call.prototype.closePeer = function () {
    this.holding = false;
    this.held_frames = [];
    if (this.pc) {
      this.pc.close();
      this.pc = null;
    }
    this.connectedAt = 0;
  };

  Call.prototype.close = function () {
    this.closed = true;
    this.closePeer();
    if (this.local) {
      this.local.getTracks().forEach(function (track) { track.stop(); });
      this.local = null;
    }
    this.videoTrack = null;
  };

  function playRing(src) {
    var audio = new Audio(src);
    audio.loop = true;
    var playing = audio.play();
    if (playing && playing.catch) {
      // Autoplay may be refused before the first click on the page; the visual ring still shows.
      playing.catch(function () {});
    }
    return {
      stop: function () {
        audio.pause();
        audio.currentTime = 0;
      }
    };
  }

  function loadCss(href) {
    if (!href || document.querySelector('link[data-voice-css]')) {
      return;
    }
    var link = document.createElement("link");
    link.rel = "stylesheet";
    link.href = href;
    link.setAttribute("data-voice-css", "");
    document.head.appendChild(link);
  }

  // The last few signalling moments, for the benchmark's and a developer's eyes (bounded).
  var marks = [];
  function mark(name) {
    marks.push([name, Date.now()]);
    if (marks.length > 40) {
      marks.shift();
    }
  }

  window.ParleyVoiceRTC = {
    Signalling: Signalling, Call: Call, playRing: playRing, loadCss: loadCss, mark: mark,
    marks: function () { return marks.slice(); }
  };
})();
