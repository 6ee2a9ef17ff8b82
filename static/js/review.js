// The review page: move through the cells and decide each one from the keyboard.
// j / → next · k / ← previous · n next pending · c confirm · o (letter) override · 1–5 reason ·
// Ctrl+Enter in the override saves it · Esc cancel.
// Without JavaScript the page still works: thumbnails are links and the forms post normally.
(function () {
  "use strict";
  const root = document.getElementById("review-root");
  if (!root) return;
  const detail = document.getElementById("review-detail");
  const grid = document.getElementById("review-grid");
  const thumbs = Array.from(grid.querySelectorAll(".review-thumb"));
  const canDecide = root.dataset.canDecide === "true";
  const confirmForm = detail.querySelector('[data-form="confirm"]');
  const overrideForm = detail.querySelector('[data-form="override"]');
  const field = (name) => detail.querySelector(`[data-field="${name}"]`);
  const LABELS = { parasitized: "Parasitized", uninfected: "Uninfected" };
  const other = (label) => (label === "parasitized" ? "uninfected" : "parasitized");
  let current = thumbs.find((t) => t.classList.contains("is-current")) || thumbs[0];

  function visible() {
    return thumbs.filter((t) => !t.hidden);
  }

  // A cell cut from a field photograph is shown in its field, linked to the field view.
  function showFieldContext(d) {
    const context = field("context");
    if (!context) return;
    context.hidden = !d.contextUrl;
    if (!d.contextUrl) return;
    const [w, h] = d.contextSize.split(" ");
    const [x, y, bw, bh] = d.contextBox.split(" ");
    context.querySelectorAll('[data-field="context-link"]').forEach((a) => (a.href = d.contextUrl));
    field("context-svg").setAttribute("viewBox", d.contextViewbox);
    const image = field("context-image");
    image.setAttribute("href", d.contextFile);
    image.setAttribute("width", w);
    image.setAttribute("height", h);
    const box = field("context-box");
    Object.entries({ x, y, width: bw, height: bh }).forEach(([k, v]) => box.setAttribute(k, v));
  }

  function select(thumb, { scroll = true } = {}) {
    if (!thumb) return;
    if (current) current.classList.remove("is-current");
    current = thumb;
    thumb.classList.add("is-current");
    const d = thumb.dataset;
    detail.dataset.id = d.id;
    field("name").textContent = `#${d.id} ${d.name}`;
    field("file").src = d.file;
    const heatmap = field("heatmap");
    heatmap.hidden = !d.heatmap;
    if (d.heatmap) heatmap.src = d.heatmap;
    const label = field("label");
    label.textContent = LABELS[d.label];
    label.className = `label label-${d.label}`;
    field("prob").textContent = d.prob;
    field("threshold").textContent = d.threshold;
    const flags = [];
    if (d.near) flags.push('<span class="flag flag-uncertain">near threshold</span>');
    if (!d.quality) {
      const span = document.createElement("span");
      span.className = "flag flag-quality";
      span.textContent = `quality: ${d.qualityFlags || "flagged"}`;
      flags.push(span.outerHTML);
    }
    field("flags").innerHTML = flags.join(" ") || "—";
    field("review").textContent = d.review || "not reviewed";
    showFieldContext(d);
    if (canDecide) {
      confirmForm.action = d.decide;
      overrideForm.action = d.decide;
      overrideForm.elements.label.value = other(d.label);
      field("confirm-label").textContent = LABELS[d.label].toLowerCase();
      field("override-label").textContent = other(d.label);
      overrideForm.reset();
      overrideForm.elements.label.value = other(d.label);
      field("error").textContent = "";
    }
    if (scroll) thumb.scrollIntoView({ block: "nearest" });
    history.replaceState(null, "", `?image=${d.id}`);
  }

  function step(delta) {
    const list = visible();
    const at = list.indexOf(current);
    select(list[Math.min(list.length - 1, Math.max(0, at + delta))]);
  }

  function nextPending() {
    const at = thumbs.indexOf(current);
    const order = thumbs.slice(at + 1).concat(thumbs.slice(0, at));
    const found = order.find((t) => !t.classList.contains("is-reviewed") && !t.hidden);
    select(found || current);
  }

  function setProgress(progress) {
    document.getElementById("reviewed-count").textContent = progress.reviewed;
    document.getElementById("cell-count").textContent = progress.cells;
    document.getElementById("unreviewed-count").textContent = progress.unreviewed;
  }

  // "Confirm all N remaining (P parasitized)": keep N and P true as cells are decided one by one
  // (the same rule as the server's: not reviewed, quality passed, not near the threshold).
  function countBulk(thumb) {
    const bulk = document.getElementById("confirm-remaining");
    const d = thumb.dataset;
    if (!bulk || thumb.classList.contains("is-reviewed") || !d.quality || d.near) return;
    const n = Number(bulk.dataset.count) - 1;
    const p = Number(bulk.dataset.positive) - (d.label === "parasitized" ? 1 : 0);
    bulk.dataset.count = n;
    bulk.dataset.positive = p;
    bulk.textContent = `Confirm all ${n} remaining high-confidence result${n === 1 ? "" : "s"} (${p} parasitized)…`;
    bulk.disabled = n === 0;
  }

  async function submit(form) {
    const thumb = current;
    detail.classList.add("is-busy");
    field("error").textContent = "";
    try {
      const response = await fetch(form.action, {
        method: "POST",
        body: new FormData(form),
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      });
      const data = await response.json();
      if (!response.ok) {
        field("error").textContent = data.error || `Not saved (${response.status}).`;
        return;
      }
      countBulk(thumb);
      const r = data.review;
      const text = `${r.decision === "override" ? "Override" : "Confirm"}: ${LABELS[r.label]}${r.reason ? ` (${r.reason})` : ""}`;
      thumb.dataset.review = text;
      thumb.classList.add("is-reviewed");
      thumb.classList.toggle("is-override", r.decision === "override");
      const rev = thumb.querySelector(".rev");
      rev.innerHTML = ` → <b class="label-${r.label}">${r.label === "parasitized" ? "P" : "U"}</b>`;
      setProgress(data.progress);
      applyFilter();
      nextPending();
    } catch (error) {
      field("error").textContent = `Not saved: ${error.message}`;
    } finally {
      detail.classList.remove("is-busy");
    }
  }

  function applyFilter() {
    const choice = document.querySelector('input[name="grid-filter"]:checked').value;
    for (const t of thumbs) {
      const c = t.classList;
      if (choice === "pending") t.hidden = c.contains("is-reviewed") && t !== current;
      else if (choice === "attention")
        t.hidden = !(c.contains("is-near") || c.contains("is-flagged") || c.contains("is-positive"));
      else t.hidden = false;
    }
  }

  grid.addEventListener("click", (event) => {
    const thumb = event.target.closest(".review-thumb");
    if (!thumb) return;
    event.preventDefault();
    select(thumb, { scroll: false });
  });
  document.querySelectorAll('input[name="grid-filter"]').forEach((radio) =>
    radio.addEventListener("change", applyFilter),
  );
  if (canDecide) {
    for (const form of [confirmForm, overrideForm]) {
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        if (form.reportValidity()) submit(form);
      });
    }
  }

  document.addEventListener("keydown", (event) => {
    // Ctrl+Enter (Cmd+Enter) in the override's details saves it: no reach for the mouse.
    if (
      canDecide &&
      (event.ctrlKey || event.metaKey) &&
      event.key === "Enter" &&
      overrideForm.contains(event.target)
    ) {
      event.preventDefault();
      if (overrideForm.reportValidity()) submit(overrideForm);
      return;
    }
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    const typing = /^(INPUT|TEXTAREA|SELECT)$/.test(event.target.tagName);
    if (event.key === "Escape") {
      if (canDecide) overrideForm.reset();
      if (typing) event.target.blur();
      return;
    }
    if (typing) return;
    const key = event.key.toLowerCase();
    if (key === "j" || key === "arrowright") step(1);
    else if (key === "k" || key === "arrowleft") step(-1);
    else if (key === "n") nextPending();
    else if (canDecide && key === "c") submit(confirmForm);
    else if (canDecide && key === "o") overrideForm.elements.reason_code.focus();
    else if (canDecide && /^[1-5]$/.test(key)) {
      const select_ = overrideForm.elements.reason_code;
      select_.selectedIndex = Number(key);
      overrideForm.elements.reason_text.focus();
    } else return;
    event.preventDefault();
  });

  if (current) current.scrollIntoView({ block: "nearest" });
})();
