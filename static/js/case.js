/* Case page: batch upload in chunks with progress, live analysis results, heatmap toggle.
   Vanilla JS, no dependencies. Without JS the upload form still posts normally. */
(function () {
  "use strict";

  var root = document.getElementById("case-root");
  if (!root) return;

  // The page of image cards shown (?page=N) is the page status.json sends back.
  var PAGE = new URLSearchParams(window.location.search).get("page");
  var STATUS_URL = root.dataset.statusUrl + (PAGE ? "?page=" + encodeURIComponent(PAGE) : "");
  var CHUNK_FILES = 50;                 // files per request: progress shows, no request is huge
  var CHUNK_BYTES = 40 * 1024 * 1024;   // ...and a chunk of large field photos stays moderate
  var POLL_MS = 2000;
  var view = "original";
  var pollTimer = null;

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function percent(x, digits) {
    return x === null || x === undefined ? "—" : (x * 100).toFixed(digits) + " %";
  }

  /* ---------------------------------------------------------------- upload */

  function chunksOf(files) {
    var chunks = [], current = [], bytes = 0;
    files.forEach(function (file) {
      if (current.length && (current.length >= CHUNK_FILES || bytes + file.size > CHUNK_BYTES)) {
        chunks.push(current);
        current = [];
        bytes = 0;
      }
      current.push(file);
      bytes += file.size;
    });
    if (current.length) chunks.push(current);
    return chunks;
  }

  function postChunk(url, form, chunk, onBytes) {
    return new Promise(function (resolve) {
      var data = new FormData();
      data.append("csrfmiddlewaretoken", form.querySelector("[name=csrfmiddlewaretoken]").value);
      data.append("kind", form.querySelector("[name=kind]").value);
      chunk.forEach(function (file) { data.append("files", file, file.name); });
      var xhr = new XMLHttpRequest();
      xhr.open("POST", url);
      xhr.setRequestHeader("Accept", "application/json");
      xhr.upload.onprogress = function (e) { if (e.lengthComputable) onBytes(e.loaded / e.total); };
      xhr.onload = function () {
        var body = null;
        try { body = JSON.parse(xhr.responseText); } catch (err) { body = null; }
        resolve({ status: xhr.status, body: body });
      };
      xhr.onerror = function () { resolve({ status: 0, body: null }); };
      xhr.send(data);
    });
  }

  function setupUpload(form) {
    var input = document.getElementById("upload-files");
    var dropzone = document.getElementById("dropzone");
    var selection = document.getElementById("selection");
    var button = document.getElementById("upload-button");
    var block = document.getElementById("upload-progress");
    var bar = document.getElementById("upload-bar");
    var text = document.getElementById("upload-text");
    var errors = document.getElementById("upload-errors");
    var dropped = [];

    function chosen() { return dropped.length ? dropped : Array.prototype.slice.call(input.files); }
    function describe() {
      var n = chosen().length;
      selection.textContent = n ? n + " file(s) selected" : "No files selected";
    }
    function problem(message, className) {
      var li = el("li", className || "", message);
      errors.appendChild(li);
    }

    input.addEventListener("change", function () { dropped = []; describe(); });
    ["dragenter", "dragover"].forEach(function (name) {
      dropzone.addEventListener(name, function (e) { e.preventDefault(); dropzone.classList.add("is-over"); });
    });
    ["dragleave", "drop"].forEach(function (name) {
      dropzone.addEventListener(name, function (e) { e.preventDefault(); dropzone.classList.remove("is-over"); });
    });
    dropzone.addEventListener("drop", function (e) {
      dropped = Array.prototype.slice.call(e.dataTransfer.files);
      input.required = false;  // dropped files are not in the input; the form is still valid
      describe();
    });

    form.addEventListener("submit", async function (e) {
      e.preventDefault();
      var files = chosen();
      if (!files.length) { selection.textContent = "Choose at least one file."; return; }
      var total = files.length, sent = 0, stored = 0, duplicates = 0, refused = 0;
      errors.textContent = "";
      block.hidden = false;
      button.disabled = true;
      bar.max = total;
      bar.value = 0;
      text.textContent = "Uploading 0/" + total + "…";
      var chunks = chunksOf(files);
      for (var i = 0; i < chunks.length; i++) {
        var chunk = chunks[i];
        var result = await postChunk(form.action, form, chunk, function (fraction) {
          bar.value = sent + fraction * chunk.length;
        });
        sent += chunk.length;
        bar.value = sent;
        if (result.status === 200 && result.body) {
          stored += result.body.stored.length;
          result.body.duplicates.forEach(function (name) {
            duplicates++;
            problem(name + ": already in this case", "duplicate");
          });
          result.body.rejected.forEach(function (r) {
            refused++;
            problem(r.name + ": " + r.reason);
          });
        } else {
          var why = result.body && result.body.error ? result.body.error
            : result.status === 200 ? "the session may have expired: reload the page and log in"
            : result.status === 413 ? "the request was too large"
            : result.status ? "the server answered HTTP " + result.status : "the connection failed";
          refused += chunk.length;
          chunk.forEach(function (file) { problem(file.name + ": not uploaded (" + why + ")"); });
        }
        text.textContent = "Uploaded " + sent + "/" + total + " — " + stored + " stored, " +
          duplicates + " already in this case, " + refused + " refused";
        if (stored) startPolling(0);
      }
      text.textContent = "Done: uploaded " + sent + "/" + total + " — " + stored + " stored, " +
        duplicates + " already in this case, " + refused + " refused.";
      button.disabled = false;
      dropped = [];
      input.value = "";
      input.required = true;
      describe();
    });
  }

  var uploadForm = document.getElementById("upload-form");
  if (uploadForm) setupUpload(uploadForm);

  /* ---------------------------------------------------------------- live results */

  function imageUrl(li) {
    var url = view === "overlay" ? li.dataset.heatmapUrl : view === "raw" ? li.dataset.heatmapRawUrl : "";
    return url || li.dataset.fileUrl;  // no heatmap yet: show the original
  }

  function applyView(li) {
    var img = li.querySelector("img");
    var url = imageUrl(li);
    if (img.getAttribute("src") !== url) img.setAttribute("src", url);
  }

  function makeCard(image) {
    var li = el("li", "image-card");
    li.dataset.id = image.id;
    var figure = el("figure");
    var thumb = el("div", "thumb");
    var img = el("img");
    img.alt = image.name;
    img.loading = "lazy";
    img.width = 150;
    img.height = 150;
    thumb.appendChild(img);
    var caption = el("figcaption");
    // Like the server's {% image_name %}: the distinguishing end of a long name stays whole.
    var name = el("span", "image-name");
    var cut = Math.max(0, image.name.length - 18);
    name.appendChild(el("span", "name-head", image.name.slice(0, cut)));
    name.appendChild(el("span", "name-tail", image.name.slice(cut)));
    name.title = image.name;
    caption.appendChild(name);
    var status = el("span", "badge");
    status.dataset.role = "status";
    caption.appendChild(status);
    ["result", "flags"].forEach(function (role) {
      var span = el("span", role);
      span.dataset.role = role;
      caption.appendChild(span);
    });
    var error = el("span", "error");
    error.dataset.role = "error";
    caption.appendChild(error);
    var kind = image.kind === "field" ? "whole field" : "cell";
    if (image.parent_id) kind += " · from field #" + image.parent_id;
    caption.appendChild(el("span", "muted kind", kind));
    figure.appendChild(thumb);
    figure.appendChild(caption);
    li.appendChild(figure);
    return li;
  }

  function updateCard(li, image) {
    li.dataset.fileUrl = image.file_url;
    li.dataset.heatmapUrl = image.heatmap_url || "";
    li.dataset.heatmapRawUrl = image.heatmap_raw_url || "";
    var status = li.querySelector("[data-role=status]");
    status.className = "badge status-" + image.status;
    status.textContent = image.status_label;
    var result = li.querySelector("[data-role=result]");
    result.textContent = "";
    if (image.label) {
      result.appendChild(el("span", "label label-" + image.label,
        image.label.charAt(0).toUpperCase() + image.label.slice(1)));
      result.appendChild(document.createTextNode(" "));
      result.appendChild(el("span", "prob", "p = " + image.probability.toFixed(3)));
    }
    var flags = li.querySelector("[data-role=flags]");
    flags.textContent = "";
    if (image.on_border || image.removed) {
      var out = el("span", "flag flag-quality",
        image.on_border ? "✂ at the field's edge: not counted" : "removed: not a cell");
      out.title = "Shown, never counted";
      flags.appendChild(out);
    }
    if (image.near_threshold) {
      var near = el("span", "flag flag-uncertain", "⚑ near threshold");
      near.title = "Probability within the uncertainty margin of the threshold";
      flags.appendChild(near);
    }
    if (image.quality_ok === false) {
      var reasons = (image.quality_flags || []).join(", ") || "flagged";
      var quality = el("span", "flag flag-quality", "⚠ quality: " + reasons);
      quality.title = "Kept out of counts by the quality gate";
      flags.appendChild(quality);
    }
    li.querySelector("[data-role=error]").textContent = image.error || "";
    li.classList.toggle("is-near", !!image.near_threshold);
    li.classList.toggle("is-positive",
      image.label === "parasitized" && image.quality_ok !== false && image.counted_cell);
    li.classList.toggle("is-not-counted", image.kind === "cell" && !image.counted_cell);
    applyView(li);
  }

  // The same words as the server's heading: field photographs and counted cells, never "images".
  function imageWords(s) {
    var plural = function (n, word) { return n + " " + word + (n === 1 ? "" : "s"); };
    var words = plural(s.cells, "cell");
    return s.field_photographs ? plural(s.field_photographs, "field photograph") + " · " + words : words;
  }

  function setText(role, value) {
    var node = document.querySelector("#summary [data-role=" + role + "]");
    if (node) node.textContent = value;
  }

  function render(data) {
    var badge = document.getElementById("case-status");
    badge.className = "badge big status-" + data.status;
    badge.textContent = data.status_label;
    var s = data.summary, c = data.counts;
    var headline = document.getElementById("case-headline");
    headline.className = "headline headline-" + data.headline.state;
    headline.textContent = data.headline.text;
    var call = document.querySelector("#summary [data-role=call]");
    call.className = "call call-" + s.call;
    call.textContent = s.call_label;
    setText("counted", s.counted + " of " + s.predicted + " cells with a result");
    setText("parasitized", s.parasitized);
    setText("uninfected", s.uninfected);
    setText("fraction", percent(s.parasitized_fraction, 2));
    setText("ci", s.ci95 ? percent(s.ci95[0], 2) + " – " + percent(s.ci95[1], 2) : "—");
    setText("near", s.near_threshold);
    setText("flagged", s.quality_flagged);
    setText("progress", c.done + " done, " + c.failed + " failed, " + (c.queued + c.processing) +
      " waiting, of " + c.total);
    document.getElementById("image-count").textContent = "(" + imageWords(s) + ")";
    var grid = document.getElementById("image-grid");
    var cards = {};
    Array.prototype.forEach.call(grid.children, function (li) { cards[li.dataset.id] = li; });
    data.images.forEach(function (image) {
      var li = cards[String(image.id)];
      if (!li) {
        li = makeCard(image);
        grid.appendChild(li);
      }
      updateCard(li, image);
    });
    var none = document.getElementById("no-images");
    if (none && data.images.length) none.remove();
  }

  async function poll() {
    pollTimer = null;
    var response;
    try {
      response = await fetch(STATUS_URL, { headers: { Accept: "application/json" }, credentials: "same-origin" });
    } catch (err) {
      startPolling(POLL_MS * 2);  // network blip: try again, a little later
      return;
    }
    if (response.status === 403 || response.status === 404) return;  // logged out or gone
    if (!response.ok) { startPolling(POLL_MS * 2); return; }
    var data = await response.json();
    render(data);
    if (!data.done) startPolling(POLL_MS);
    else refreshServerSections();
  }

  // The AI/reviewer counts and the history are rendered by the server: when analysis ends,
  // fetch the page once and swap those sections in, without reloading what the user looks at.
  async function refreshServerSections() {
    var response = await fetch(window.location.href, { credentials: "same-origin" });
    if (!response.ok) return;
    var fresh = new DOMParser().parseFromString(await response.text(), "text/html");
    document.querySelectorAll("[data-refresh]").forEach(function (section) {
      var replacement = fresh.querySelector('[data-refresh="' + section.dataset.refresh + '"]');
      if (replacement) section.replaceWith(replacement);
    });
  }

  function startPolling(delay) {
    if (pollTimer !== null) return;
    pollTimer = window.setTimeout(poll, delay);
  }

  document.querySelectorAll("#view-toggle input[name=view]").forEach(function (radio) {
    radio.addEventListener("change", function () {
      view = radio.value;
      document.querySelectorAll("#image-grid .image-card").forEach(applyView);
    });
  });

  if (root.dataset.done === "false") startPolling(POLL_MS);
})();
