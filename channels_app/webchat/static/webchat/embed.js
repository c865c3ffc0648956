/* Parley chat launcher. A website includes it with one tag:
     <script src="https://parley.example/chat/<service>/embed.js" defer></script>
   and gets a floating button that opens the chat in a frame. The server
   fills in the configuration below. Styles are set through the CSSOM, which
   a strict Content-Security-Policy on the host page allows. */
(function (config) {
  "use strict";
  if (!config || !config.frameUrl || !document.createElement) {
    return;
  }
  var marker = "data-parley-chat-" + config.service;
  if (document.documentElement.hasAttribute(marker)) {
    return;
  }
  document.documentElement.setAttribute(marker, "");

  var SVG = "http://www.w3.org/2000/svg";
  var frameId = "parley-chat-frame-" + config.service;
  var open = false;
  var frame = null;
  var button = null;

  function css(node, rules) {
    Object.keys(rules).forEach(function (name) {
      node.style.setProperty(name, rules[name]);
    });
  }

  function icon(kind) {
    var svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("width", "28");
    svg.setAttribute("height", "28");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    var path = document.createElementNS(SVG, "path");
    path.setAttribute("fill", "currentColor");
    path.setAttribute(
      "d",
      kind === "close"
        ? "M18.3 5.71 12 12.01l-6.3-6.3-1.41 1.41 6.3 6.3-6.3 6.3 1.41 1.41 6.3-6.3 6.3 6.3 1.41-1.41-6.3-6.3 6.3-6.3z"
        : "M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H8l-4 4V6a2 2 0 0 1 2-2z"
    );
    svg.appendChild(path);
    return svg;
  }

  function frameUrl() {
    var lang = (document.documentElement.getAttribute("lang") || "").trim();
    return config.frameUrl + (lang ? "&lang=" + encodeURIComponent(lang) : "");
  }

  function tellFrame() {
    if (frame && frame.contentWindow) {
      frame.contentWindow.postMessage({ parley: "chat-visibility", open: open }, config.origin);
    }
  }

  function createFrame() {
    frame = document.createElement("iframe");
    frame.id = frameId;
    frame.src = frameUrl();
    frame.title = config.title;
    frame.setAttribute("data-parley-chat-frame", config.service);
    css(frame, {
      position: "fixed",
      right: "20px",
      bottom: "92px",
      width: "min(380px, calc(100vw - 40px))",
      height: "min(600px, calc(100vh - 120px))",
      border: "1px solid #d5d9e0",
      "border-radius": "12px",
      "box-shadow": "0 8px 32px rgba(0, 0, 0, 0.25)",
      background: "#ffffff",
      "z-index": "2147483000",
      display: "none"
    });
    frame.addEventListener("load", tellFrame);
    document.body.appendChild(frame);
    button.setAttribute("aria-controls", frameId);
  }

  function setOpen(value) {
    open = value;
    if (open && !frame) {
      createFrame();
    }
    if (frame) {
      frame.style.setProperty("display", open ? "block" : "none");
    }
    button.setAttribute("aria-expanded", open ? "true" : "false");
    button.setAttribute("aria-label", open ? config.close : config.open);
    button.title = open ? config.close : config.open;
    button.replaceChild(icon(open ? "close" : "open"), button.firstChild);
    tellFrame();
    if (open && frame) {
      frame.focus();
    }
  }

  function mount() {
    button = document.createElement("button");
    button.type = "button";
    button.setAttribute("data-parley-chat-launcher", config.service);
    button.setAttribute("aria-expanded", "false");
    button.setAttribute("aria-label", config.open);
    button.title = config.open;
    button.appendChild(icon("open"));
    css(button, {
      position: "fixed",
      right: "20px",
      bottom: "20px",
      width: "60px",
      height: "60px",
      padding: "0",
      margin: "0",
      border: "2px solid #ffffff",
      "border-radius": "50%",
      background: "#1f5fbf",
      color: "#ffffff",
      cursor: "pointer",
      display: "flex",
      "align-items": "center",
      "justify-content": "center",
      "box-shadow": "0 4px 16px rgba(0, 0, 0, 0.3)",
      "z-index": "2147483001"
    });
    button.addEventListener("click", function () {
      setOpen(!open);
    });
    document.addEventListener("keydown", function (event) {
      if (event.key === "Escape" && open) {
        setOpen(false);
        button.focus();
      }
    });
    document.body.appendChild(button);
  }

  if (document.body) {
    mount();
  } else {
    document.addEventListener("DOMContentLoaded", mount);
  }
})(__PARLEY_CHAT_CONFIG__);
