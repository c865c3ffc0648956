// The SMS composer's characters/segments counter: GSM-7 160 (153 per part when concatenated),
// UCS-2 70 (67 per part) as soon as one character is outside GSM 03.38. Mirrors sms_segments() in services.py.
(function () {
  "use strict";

  var BASIC =
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿" +
    "abcdefghijklmnopqrstuvwxyzäöñüà";
  var EXTENDED = "^{}\\[~]|€\f";

  function segments(text) {
    var gsm = true;
    var septets = 0;
    for (var i = 0; i < text.length; i++) {
      var ch = text.charAt(i);
      if (BASIC.indexOf(ch) >= 0) {
        septets += 1;
      } else if (EXTENDED.indexOf(ch) >= 0) {
        septets += 2;
      } else {
        gsm = false;
        break;
      }
    }
    var units = gsm ? septets : text.length; // JS strings are UTF-16 code units, as UCS-2 counts them
    var single = gsm ? 160 : 70;
    var multi = gsm ? 153 : 67;
    var parts = units === 0 ? 0 : units <= single ? 1 : Math.ceil(units / multi);
    return { gsm: gsm, units: units, segments: parts };
  }

  function update(form) {
    var counter = form.querySelector("[data-sms-counter]");
    var textarea = form.querySelector("[data-composer-text]");
    if (!counter || !textarea) {
      return;
    }
    var result = segments(textarea.value);
    counter.textContent = (counter.getAttribute("data-template") || "{chars} · {segments}")
      .replace("{chars}", String(result.units))
      .replace("{segments}", String(result.segments))
      .replace("{encoding}", counter.getAttribute(result.gsm ? "data-label-gsm" : "data-label-ucs") || "");
    counter.setAttribute("data-segments", String(result.segments));
    counter.setAttribute("data-encoding", result.gsm ? "GSM-7" : "UCS-2");
  }

  document.addEventListener("input", function (evt) {
    var el = evt.target;
    if (el.matches && el.matches("form[data-composer] [data-composer-text]") && el.form) {
      update(el.form);
    }
  });
  document.addEventListener("parley:channel", function (evt) {
    if (evt.target && evt.target.matches && evt.target.matches("form[data-composer]")) {
      update(evt.target);
    }
  });
  document.addEventListener("htmx:load", function (evt) {
    var forms = evt.target.querySelectorAll ? evt.target.querySelectorAll("form[data-composer]") : [];
    forms.forEach(update);
  });

  window.ParleySms = { segments: segments };
})();
