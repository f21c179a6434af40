// The soft-labels widget (st.components.v2): sliders for T and α, and charts that follow them *while* the slider
// moves, computed here by kd.js. Only a released value goes to the server (setStateValue), which then updates the
// URL and its own tables. Streamlit calls the default export again whenever `data` changes: one Widget per mount
// point keeps the DOM, the local T and α, and the focus; only a new structure (classes, panels, mode) rebuilds.

const CONTROL_LABELS = {
  temperature: ["Temperature T", "Temperature T (log scale; T = 1 is the ordinary softmax)"],
  alpha: ["α, the weight of the soft loss", "α, the weight of the soft loss (total = α·T²·KL + (1 − α)·CE)"],
};
const TILES = [
  ["hard_cross_entropy", "hard CE", "Cross-entropy of the student's softmax at T = 1 with the one-hot label: the hard term."],
  ["kl", "KL at T", "KL(teacher ‖ student) between the softmaxes at T."],
  ["t2_kl", "T²·KL", "The soft term of the KD loss (Hinton et al. 2015, §2)."],
  ["soft_cross_entropy", "soft CE at T", "Soft cross-entropy −Σ p_i log q_i at T = KL + the teacher's entropy."],
  ["total", "total", "α · T²·KL + (1 − α) · CE."],
];
const SLIDE = { width: 1920, height: 1080, caption: 70, margin: 40 };
const instances = new WeakMap();

function html(parent, tag, attrs = {}, text) {
  const el = document.createElement(tag);
  for (const name in attrs) el.setAttribute(name, attrs[name]);
  if (text !== undefined) el.textContent = text;
  if (parent) parent.appendChild(el);
  return el;
}

function nearestIndex(values, value) {
  let best = 0;
  values.forEach((v, i) => {
    if (Math.abs(Math.log(v / value)) < Math.abs(Math.log(values[best] / value))) best = i;
  });
  return best;
}

// Everything the charts show at one T and α, from kd.js (the mirror of kdviz.core.kd).
function computeView(data, temperature, alpha) {
  return {
    temperature, alpha,
    hardLabel: data.classes.map((_, c) => (c === data.label ? 1 : 0)),
    teacherP: softmax(data.teacher, temperature),
    studentP: softmax(data.student, temperature),
    losses: lossTerms(data.teacher, data.student, data.label, temperature, alpha),
    // -∂(T²·KL)/∂z = T (p − q): > 0 means the next step pushes the student's logit up
    update: softGradient(data.teacher, data.student, temperature, true).map((g) => -g),
    teacherH: entropy(data.teacher, temperature),
    studentH: entropy(data.student, temperature),
  };
}

class Widget {
  constructor(parent, key) {
    this.parent = parent;
    this.key = key;
    this.sent = []; // released values not yet echoed back by the server, oldest first
    this.pointerDown = false;
    this.root = html(null, "div", { class: "kdviz-sl" });
    parent.appendChild(this.root);
    this.onFollow = (event) => this.follow(event.detail || {});
    this.onPointerUp = () => { this.pointerDown = false; };
    window.addEventListener("kdviz:follow", this.onFollow);
    window.addEventListener("pointerup", this.onPointerUp);
    window.addEventListener("pointercancel", this.onPointerUp);
    this.resizer = new ResizeObserver(() => this.relayout());
    this.resizer.observe(this.root);
  }

  destroy() {
    window.removeEventListener("kdviz:follow", this.onFollow);
    window.removeEventListener("pointerup", this.onPointerUp);
    window.removeEventListener("pointercancel", this.onPointerUp);
    this.resizer.disconnect();
    this.root.remove();
  }

  // New data from the server: its T and α win unless they are the echo of what this browser released (the slider
  // may have moved on since) or the user is holding a slider.
  receive(data) {
    const echo = this.sent.indexOf(`${data.temperature}|${data.alpha}`);
    if (echo >= 0) this.sent.splice(0, echo + 1);
    if (!this.state || (echo < 0 && !this.pointerDown)) {
      this.state = { temperature: data.temperature, alpha: data.alpha };
    }
    this.data = data;
    const structure = JSON.stringify({ ...data, temperature: 0, alpha: 0, caption: "" });
    if (structure !== this.structure) {
      this.structure = structure;
      this.build();
    }
    this.redraw();
  }

  follow(detail) {
    if (detail.key !== undefined && detail.key !== this.key) return;
    const temperature = Number(detail.temperature), alpha = Number(detail.alpha);
    if (Number.isFinite(temperature) && temperature > 0) this.state.temperature = temperature;
    if (Number.isFinite(alpha) && alpha >= 0 && alpha <= 1) this.state.alpha = alpha;
    this.redraw(); // no setStateValue: the lecturer's state is the server's already
  }

  build() {
    const active = this.parent.activeElement ?? document.activeElement; // a slider keeps the keyboard focus
    const focused = active && this.root.contains(active) ? active.dataset.control : undefined;
    const { data, root } = this;
    root.replaceChildren();
    for (const [name, size] of Object.entries(data.fonts)) root.style.setProperty(`--kdviz-${name}`, `${size}px`);
    root.classList.toggle("kdviz-lecture", data.lecture);
    root.classList.toggle("kdviz-readonly", data.readonly);
    this.controls = this.buildControls(html(root, "div", { class: "kdviz-controls" }));
    const grid = html(root, "div", { class: "kdviz-grid" });
    const charts = data.panels.filter((panel) => panel !== "losses");
    this.panels = data.panels.map((panel) => {
      const wide = panel === "losses" || (charts.length % 2 === 1 && panel === charts[charts.length - 1]);
      const el = html(grid, "div", { class: `kdviz-panel${wide ? " kdviz-wide" : ""}`, "data-panel": panel });
      return { panel, el, width: 0 };
    });
    this.losses = data.panels.includes("losses") ? this.buildLosses(this.panels.find((p) => p.panel === "losses").el)
      : null;
    this.layoutCharts();
    if (focused && this.controls[focused]) this.controls[focused].input.focus();
  }

  buildControls(box) {
    const { data } = this, controls = {};
    for (const name of data.controls) {
      const [shown, aria] = CONTROL_LABELS[name];
      const wrap = html(box, "div", { class: "kdviz-control", "data-control": name });
      const id = `kdviz-${name}-${Math.random().toString(36).slice(2)}`;
      const label = html(wrap, "label", { for: id, class: "kdviz-control-label" }, `${shown} = `);
      const value = html(label, "output", { class: "kdviz-control-value" });
      const input = html(wrap, "input", { type: "range", id, min: 0, step: 1, "aria-label": aria,
                                          max: name === "temperature" ? data.temperatures.length - 1 : 100,
                                          "data-control": name });
      input.disabled = data.readonly;
      const ends = html(wrap, "div", { class: "kdviz-control-ends", "aria-hidden": "true" });
      const [low, high] = name === "temperature" ? [data.temperatures[0], data.temperatures.at(-1)] : [0, 1];
      html(ends, "span", {}, formatG(low));
      html(ends, "span", {}, formatG(high));
      input.addEventListener("pointerdown", () => { this.pointerDown = true; });
      input.addEventListener("input", () => this.moved(name, Number(input.value)));
      input.addEventListener("change", () => this.released(name));
      controls[name] = { input, value };
    }
    if (data.readonly && data.controls.length) {
      html(box, "p", { class: "kdviz-note" }, "T and α follow the presenter.");
    }
    return controls;
  }

  moved(name, index) {
    if (name === "temperature") this.state.temperature = this.data.temperatures[index];
    else this.state.alpha = index / 100;
    this.redraw();
  }

  released(name) {
    this.pointerDown = false;
    if (this.data.readonly || !this.setStateValue) return;
    this.sent.push(`${this.state.temperature}|${this.state.alpha}`);
    this.setStateValue(name, this.state[name]);
  }

  buildLosses(el) {
    const tiles = html(el, "div", { class: "kdviz-tiles" });
    const values = {};
    for (const [term, label, help] of TILES) {
      const tile = html(tiles, "div", { class: "kdviz-tile", "data-term": term });
      html(tile, "div", { class: "kdviz-tile-label" }, label);
      values[term] = { tile, help, value: html(tile, "div", { class: "kdviz-tile-value" }) };
    }
    return { values, formula: html(el, "p", { class: "kdviz-formula" }), note: html(el, "p", { class: "kdviz-note" }) };
  }

  // (Re)build each chart for its panel's width: on a new structure and when the widget is resized.
  layoutCharts() {
    const height = this.data.chart_height;
    this.charts = [];
    for (const p of this.panels) {
      if (p.panel === "losses") continue;
      p.width = Math.max(Math.floor(p.el.clientWidth), 260);
      const chart = CHARTS[p.panel]({ data: this.data, width: p.width, height: Math.min(height, Math.max(300, p.width * 0.85)),
                                      fonts: this.data.fonts });
      p.el.replaceChildren(chart.svg);
      this.exportButtons(p.el, p.panel);
      this.charts.push(chart);
    }
  }

  relayout() {
    if (!this.panels || this.pending) return;
    this.pending = requestAnimationFrame(() => {
      this.pending = 0;
      if (this.panels.some((p) => p.panel !== "losses" && Math.abs(p.el.clientWidth - p.width) > 1)) {
        this.layoutCharts();
        this.redraw();
      }
    });
  }

  redraw() {
    const { data, state } = this;
    const view = computeView(data, state.temperature, state.alpha);
    for (const chart of this.charts) chart.update(view);
    if (this.losses) this.updateLosses(view);
    for (const [name, { input, value }] of Object.entries(this.controls)) {
      const index = name === "temperature" ? nearestIndex(data.temperatures, state.temperature)
        : Math.round(state.alpha * 100);
      const text = formatG(state[name]);
      if (Number(input.value) !== index) input.value = String(index);
      input.setAttribute("aria-valuetext", text);
      setText(value, text);
    }
    this.root.dataset.temperature = formatG(state.temperature);
    this.root.dataset.alpha = formatG(state.alpha);
    this.view = view;
    window.kdvizSoftLabelsRedraws = (window.kdvizSoftLabelsRedraws || 0) + 1;
  }

  updateLosses(view) {
    const { losses, alpha, temperature } = view, rules = this.data.formats;
    for (const [term, { tile, help, value }] of Object.entries(this.losses.values)) {
      setText(value, formatMetric(losses[term], rules));
      tile.title = `${help} In nats: ${formatValue(losses[term], rules)}.`;
    }
    setText(this.losses.formula, `L = α·T²·KL + (1 − α)·CE = ${formatG(alpha)} × ${formatValue(losses.t2_kl, rules)} + `
      + `${formatG(1 - alpha, 2)} × ${formatValue(losses.hard_cross_entropy, rules)} = ${formatValue(losses.total, rules)}`);
    setText(this.losses.note, `Soft cross-entropy − KL = ${formatValue(losses.soft_cross_entropy - losses.kl, rules)} `
      + `nats: exactly the teacher's entropy at T = ${formatG(temperature)}. It does not depend on the student, so both `
      + "losses have the same gradient, but only KL is 0 when the student matches the teacher.");
  }

  exportButtons(el, panel) {
    const bar = html(el, "div", { class: "kdviz-export" });
    for (const format of ["png", "svg"]) {
      const button = html(bar, "button", { type: "button", "data-format": format,
                                           "aria-label": `Download this chart as a 1920×1080 ${format.toUpperCase()}` },
                          format.toUpperCase());
      button.addEventListener("click", () => this.exportChart(panel, format));
    }
  }

  // A 16:9 slide of one chart at the T and α shown, with the payload's caption (and them) along the bottom.
  slide(panel) {
    const { data, view } = this, scale = Math.max(1, 26 / data.fonts.tick);
    const fonts = Object.fromEntries(Object.entries(data.fonts).map(([k, v]) => [k, Math.round(v * scale)]));
    const width = SLIDE.width - 2 * SLIDE.margin, height = SLIDE.height - SLIDE.caption - SLIDE.margin;
    const chart = CHARTS[panel]({ data: { ...data, marker_radius: data.marker_radius * 1.5,
                                          line_width: data.line_width * 1.5 },
                                  width, height, fonts, exporting: true });
    chart.update(view);
    setAttrs(chart.svg, { x: SLIDE.margin, y: SLIDE.margin });
    const svg = svgEl(null, "svg", { xmlns: SVG_NS, width: SLIDE.width, height: SLIDE.height,
                                     viewBox: `0 0 ${SLIDE.width} ${SLIDE.height}`, "font-family": FONT_FAMILY });
    svgEl(svg, "rect", { width: SLIDE.width, height: SLIDE.height, fill: "white" });
    svg.appendChild(chart.svg);
    const text = [data.caption || "kdviz · soft labels", `T = ${formatG(view.temperature)}, α = ${formatG(view.alpha)}`]
      .join(" · ");
    const size = Math.min(26, (SLIDE.width - 2 * SLIDE.margin) / textWidth(text, 1));
    svgEl(svg, "text", { x: SLIDE.margin, y: SLIDE.height - SLIDE.caption / 2 + size / 3, "font-size": size.toFixed(1),
                         fill: "#4B5563", class: "kdviz-caption" }, text);
    return new XMLSerializer().serializeToString(svg);
  }

  async exportChart(panel, format) {
    const text = this.slide(panel);
    const name = `kdviz-soft-labels-${panel}-T${formatG(this.view.temperature)}.${format}`;
    const svgBlob = new Blob([text], { type: "image/svg+xml" });
    if (format === "svg") return download(svgBlob, name);
    const url = URL.createObjectURL(svgBlob);
    try {
      const image = new Image();
      image.src = url;
      await image.decode();
      const canvas = html(null, "canvas", { width: SLIDE.width, height: SLIDE.height });
      canvas.getContext("2d").drawImage(image, 0, 0, SLIDE.width, SLIDE.height);
      download(await new Promise((resolve) => canvas.toBlob(resolve, "image/png")), name);
    } finally {
      URL.revokeObjectURL(url);
    }
  }
}

function download(blob, name) {
  const url = URL.createObjectURL(blob);
  const link = html(document.body, "a", { href: url, download: name });
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

export default function (component) {
  const { data, parentElement, setStateValue, key } = component;
  let widget = instances.get(parentElement);
  if (!widget) {
    widget = new Widget(parentElement, key);
    instances.set(parentElement, widget);
  }
  widget.setStateValue = setStateValue;
  widget.receive(data);
  // Streamlit also runs the cleanup of an older call that newer data overtook (both awaited this module): only a
  // mount point that has left the page ends the widget.
  return () => setTimeout(() => {
    if (!(parentElement.host || parentElement).isConnected && instances.get(parentElement) === widget) {
      widget.destroy();
      instances.delete(parentElement);
    }
  }, 0);
}
