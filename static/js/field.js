// The field view: the photograph with every cell's outline, zoom (wheel, buttons, + − 0 1 keys)
// and pan (drag, arrow keys); a click on a cell shows its crop and Grad-CAM. A reviewer working
// the case can add a missed cell (add mode, then click its centre) or remove a false detection.
(function () {
  "use strict";
  const root = document.getElementById("field-root");
  if (!root) return;
  const SVG_NS = "http://www.w3.org/2000/svg";
  const canEdit = root.dataset.canEdit === "true";
  const csrf = root.dataset.csrf;
  const viewport = document.getElementById("field-viewport");
  const stage = document.getElementById("field-stage");
  const svg = document.getElementById("field-svg");
  const panel = document.getElementById("cell-panel");
  const errorBox = document.getElementById("field-error");
  const messageBox = document.getElementById("field-message");
  const zoomText = document.getElementById("zoom-level");
  const showRemoved = document.getElementById("show-removed");
  const addButton = root.querySelector('[data-action="add-mode"]');
  const CLICK_SLOP_PX = 5;
  const MIN_SCALE = 0.05;
  const MAX_SCALE = 8;
  const POLL_MS = 2500;

  let data = JSON.parse(document.getElementById("field-data").textContent);
  const W = data.field.width;
  const H = data.field.height;
  // Sized here, not by a style attribute: the Content-Security-Policy allows no inline style.
  stage.style.width = `${W}px`;
  stage.style.height = `${H}px`;
  let scale = 1;
  let tx = 0;
  let ty = 0;
  let selected = null;
  let addMode = false;
  let pollTimer = null;

  // --- Colour: blue (0) → orange (0.5) → red (1); grey while the cell awaits its result. ------
  const STOPS = [
    [0, [44, 123, 182]],
    [0.5, [253, 174, 97]],
    [1, [215, 25, 28]],
  ];
  function colour(p) {
    if (p === null || p === undefined) return "#8a8a8a";
    for (let i = 1; i < STOPS.length; i++) {
      const [p1, c1] = STOPS[i];
      const [p0, c0] = STOPS[i - 1];
      if (p <= p1) {
        const t = (p - p0) / (p1 - p0);
        const c = c0.map((v, k) => Math.round(v + t * (c1[k] - v)));
        return `rgb(${c[0]}, ${c[1]}, ${c[2]})`;
      }
    }
    return "rgb(215, 25, 28)";
  }

  // --- Drawing ------------------------------------------------------------------------------
  function describe(cell) {
    const parts = [`Cell ${cell.id}`];
    if (cell.probability !== null) parts.push(`probability ${cell.probability.toFixed(2)}`);
    else parts.push(cell.status_label.toLowerCase());
    if (cell.on_border) parts.push("cut by the edge, not counted");
    if (cell.removed) parts.push("removed");
    if (cell.added) parts.push("added by a reviewer");
    return parts.join(", ");
  }

  function draw() {
    svg.replaceChildren();
    for (const cell of data.cells) {
      const b = cell.bbox;
      if (!b) continue;
      const shape = document.createElementNS(SVG_NS, "ellipse");
      shape.setAttribute("cx", b.x + b.w / 2);
      shape.setAttribute("cy", b.y + b.h / 2);
      shape.setAttribute("rx", Math.max(1, b.w / 2));
      shape.setAttribute("ry", Math.max(1, b.h / 2));
      shape.setAttribute("stroke", cell.removed ? "#666" : colour(cell.probability));
      shape.setAttribute("vector-effect", "non-scaling-stroke");
      shape.setAttribute("tabindex", "0");
      shape.setAttribute("role", "button");
      shape.setAttribute("aria-label", describe(cell));
      shape.dataset.cell = cell.id;
      const classes = ["cell-outline"];
      if (cell.status === "queued" || cell.status === "processing") classes.push("is-pending");
      if (cell.on_border) classes.push("is-border");
      if (cell.removed) classes.push("is-removed");
      if (cell.added) classes.push("is-added");
      if (cell.quality_ok === false) classes.push("is-flagged");
      if (selected === cell.id) classes.push("is-selected");
      shape.setAttribute("class", classes.join(" "));
      if (cell.removed && !showRemoved.checked) shape.setAttribute("display", "none");
      const title = document.createElementNS(SVG_NS, "title");
      title.textContent = describe(cell);
      shape.appendChild(title);
      svg.appendChild(shape);
    }
  }

  // --- Zoom and pan -------------------------------------------------------------------------
  function apply() {
    stage.style.transform = `translate(${tx}px, ${ty}px) scale(${scale})`;
    zoomText.textContent = `${Math.round(scale * 100)} %`;
  }

  function zoomAt(factor, mx, my) {
    const next = Math.min(MAX_SCALE, Math.max(MIN_SCALE, scale * factor));
    tx = mx - (mx - tx) * (next / scale);
    ty = my - (my - ty) * (next / scale);
    scale = next;
    apply();
  }

  function centre() {
    return [viewport.clientWidth / 2, viewport.clientHeight / 2];
  }

  function fit() {
    scale = Math.min(viewport.clientWidth / W, viewport.clientHeight / H);
    tx = (viewport.clientWidth - W * scale) / 2;
    ty = (viewport.clientHeight - H * scale) / 2;
    apply();
  }

  function focusCell(cell) {
    const b = cell.bbox;
    scale = Math.min(MAX_SCALE, Math.max(scale, viewport.clientWidth / (8 * Math.max(b.w, b.h))));
    const [cx, cy] = centre();
    tx = cx - (b.x + b.w / 2) * scale;
    ty = cy - (b.y + b.h / 2) * scale;
    apply();
  }

  function toField(event) {
    const rect = viewport.getBoundingClientRect();
    return [(event.clientX - rect.left - tx) / scale, (event.clientY - rect.top - ty) / scale];
  }

  viewport.addEventListener(
    "wheel",
    (event) => {
      event.preventDefault();
      const rect = viewport.getBoundingClientRect();
      zoomAt(Math.exp(-event.deltaY * 0.0015), event.clientX - rect.left, event.clientY - rect.top);
    },
    { passive: false },
  );

  let drag = null;
  viewport.addEventListener("pointerdown", (event) => {
    if (event.button !== 0) return;
    const target = event.target.closest ? event.target.closest("[data-cell]") : null;
    drag = { x: event.clientX, y: event.clientY, tx, ty, moved: false, target, id: event.pointerId };
  });
  viewport.addEventListener("pointermove", (event) => {
    if (!drag || event.pointerId !== drag.id) return;
    const dx = event.clientX - drag.x;
    const dy = event.clientY - drag.y;
    if (!drag.moved && Math.hypot(dx, dy) < CLICK_SLOP_PX) return;
    if (!drag.moved) {
      drag.moved = true;
      viewport.setPointerCapture(event.pointerId);
      viewport.classList.add("is-dragging");
    }
    tx = drag.tx + dx;
    ty = drag.ty + dy;
    apply();
  });
  function endDrag(event) {
    if (!drag || event.pointerId !== drag.id) return;
    const was = drag;
    drag = null;
    viewport.classList.remove("is-dragging");
    if (was.moved || event.type === "pointercancel") return;
    if (addMode) {
      const [x, y] = toField(event);
      addCell(x, y);
    } else if (was.target) {
      select(Number(was.target.dataset.cell));
    }
  }
  viewport.addEventListener("pointerup", endDrag);
  viewport.addEventListener("pointercancel", endDrag);

  root.querySelector('[data-action="zoom-in"]').addEventListener("click", () => zoomAt(1.25, ...centre()));
  root.querySelector('[data-action="zoom-out"]').addEventListener("click", () => zoomAt(0.8, ...centre()));
  root.querySelector('[data-action="fit"]').addEventListener("click", fit);
  root.querySelector('[data-action="actual"]').addEventListener("click", () => zoomAt(1 / scale, ...centre()));
  showRemoved.addEventListener("change", draw);

  // --- The selected cell --------------------------------------------------------------------
  const part = (name) => panel.querySelector(`[data-cell="${name}"]`);

  function select(id, { focus = false } = {}) {
    const cell = data.cells.find((c) => c.id === id);
    selected = cell ? cell.id : null;
    draw();
    part("empty").hidden = Boolean(cell);
    part("body").hidden = !cell;
    if (!cell) {
      part("name").textContent = "";
      return;
    }
    if (focus) focusCell(cell);
    part("name").textContent = `#${cell.id}`;
    part("crop").src = cell.file_url;
    const heatmap = part("heatmap");
    heatmap.hidden = !cell.heatmap_url;
    if (cell.heatmap_url) heatmap.src = cell.heatmap_url;
    else heatmap.removeAttribute("src");
    part("heatmap-caption").textContent = cell.heatmap_url ? "Grad-CAM" : "Grad-CAM: not yet";
    part("status").textContent = cell.status_label;
    part("prob").textContent = cell.probability === null ? "—" : cell.probability.toFixed(3);
    part("label").textContent = cell.label ? cell.label[0].toUpperCase() + cell.label.slice(1) : "—";
    let counted = cell.counted ? "yes" : "no";
    if (cell.removed) counted = "no: removed by a reviewer";
    else if (cell.on_border) counted = "no: cut by the photograph's edge";
    else if (cell.quality_ok === false) counted = `no: quality (${cell.quality_flags.join(", ") || "flagged"})`;
    else if (cell.probability === null) counted = "not yet: awaiting analysis";
    part("counted").textContent = counted;
    part("detection").textContent = cell.added
      ? "added by a reviewer"
      : cell.detection_score === null
        ? "segmented"
        : `detector score ${cell.detection_score.toFixed(2)}`;
    if (canEdit) {
      panel.querySelector('[data-action="remove"]').hidden = cell.removed;
      panel.querySelector('[data-action="restore"]').hidden = !cell.removed;
    }
    history.replaceState(null, "", `?cell=${cell.id}`);
  }

  svg.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" && event.key !== " ") return;
    const target = event.target.closest("[data-cell]");
    if (!target) return;
    event.preventDefault();
    select(Number(target.dataset.cell));
  });

  // --- Corrections --------------------------------------------------------------------------
  function say(message, isError) {
    errorBox.textContent = isError ? message : "";
    messageBox.hidden = isError || !message;
    messageBox.textContent = isError ? "" : message;
  }

  async function post(url, fields) {
    const body = new FormData();
    for (const [k, v] of Object.entries(fields)) body.append(k, v);
    root.classList.add("is-busy");
    try {
      const response = await fetch(url, {
        method: "POST",
        body,
        headers: { Accept: "application/json", "X-CSRFToken": csrf },
        credentials: "same-origin",
      });
      const answer = await response.json();
      if (!response.ok) {
        say(answer.error || `Not saved (${response.status}).`, true);
        return null;
      }
      say(answer.message, false);
      return answer;
    } catch (error) {
      say(`Not saved: ${error.message}`, true);
      return null;
    } finally {
      root.classList.remove("is-busy");
    }
  }

  function update(answer) {
    data = answer;
    draw();
    if (selected !== null) select(selected);
    refreshCounts();
    if (!data.done) startPolling();
  }

  function setAddMode(on) {
    addMode = on;
    viewport.classList.toggle("is-adding", on);
    if (addButton) addButton.setAttribute("aria-pressed", on ? "true" : "false");
  }

  async function addCell(x, y) {
    const answer = await post(data.field.add_url, { x: x.toFixed(1), y: y.toFixed(1) });
    if (!answer) return;
    const known = new Set(data.cells.map((c) => c.id));
    update(answer);
    const added = answer.cells.find((c) => !known.has(c.id));
    if (added) select(added.id);
  }

  if (canEdit) {
    addButton.addEventListener("click", () => setAddMode(!addMode));
    for (const action of ["remove", "restore"]) {
      panel.querySelector(`[data-action="${action}"]`).addEventListener("click", async () => {
        const cell = data.cells.find((c) => c.id === selected);
        if (!cell) return;
        const answer = await post(action === "remove" ? cell.remove_url : cell.restore_url, {});
        if (answer) update(answer);
      });
    }
  }

  // The counts are rendered by the server: fetch the page and swap that section in.
  async function refreshCounts() {
    const response = await fetch(window.location.href, { credentials: "same-origin" });
    if (!response.ok) return;
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
    for (const section of document.querySelectorAll("[data-refresh]")) {
      const replacement = fresh.querySelector(`[data-refresh="${section.dataset.refresh}"]`);
      if (replacement) section.replaceWith(replacement);
    }
  }

  // Added cells are analysed by a worker: follow them until every cell has its result.
  function startPolling() {
    if (pollTimer !== null) return;
    pollTimer = window.setTimeout(async () => {
      pollTimer = null;
      const response = await fetch(data.field.data_url, {
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      });
      if (!response.ok) return;
      update(await response.json());
    }, POLL_MS);
  }

  document.addEventListener("keydown", (event) => {
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    if (/^(INPUT|TEXTAREA|SELECT)$/.test(event.target.tagName)) return;
    const step = 60;
    const keys = {
      "+": () => zoomAt(1.25, ...centre()),
      "=": () => zoomAt(1.25, ...centre()),
      "-": () => zoomAt(0.8, ...centre()),
      0: fit,
      1: () => zoomAt(1 / scale, ...centre()),
      ArrowLeft: () => { tx += step; apply(); },
      ArrowRight: () => { tx -= step; apply(); },
      ArrowUp: () => { ty += step; apply(); },
      ArrowDown: () => { ty -= step; apply(); },
      Escape: () => setAddMode(false),
      a: () => canEdit && setAddMode(!addMode),
    };
    const action = keys[event.key];
    if (!action) return;
    if (event.key.startsWith("Arrow") && document.activeElement !== viewport) return;
    event.preventDefault();
    action();
  });

  fit();
  draw();
  const wanted = Number(new URLSearchParams(window.location.search).get("cell"));
  if (wanted) select(wanted, { focus: true });
  if (!data.done) startPolling();
  window.addEventListener("resize", () => (selected === null ? fit() : apply()));
})();
