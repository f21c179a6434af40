// Small SVG helpers for the soft-labels widget: build elements once, then only set attributes and text (a changed
// value only: the browser re-lays out nothing else), scales, ticks and axes.
const SVG_NS = "http://www.w3.org/2000/svg";
const INK = "#1F2937", GRID = "#E5E7EB", AXIS = "#9CA3AF", ZERO = "#111827";
const FONT_FAMILY = '"Source Sans Pro", "Source Sans 3", Inter, Helvetica, Arial, sans-serif';

function svgEl(parent, tag, attrs = {}, text) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  if (text !== undefined) el.textContent = text;
  if (parent) parent.appendChild(el);
  return el;
}

function setAttrs(el, attrs) {
  const cache = el.__kdviz || (el.__kdviz = {});
  for (const name in attrs) {
    const value = String(attrs[name]);
    if (cache[name] !== value) {
      cache[name] = value;
      el.setAttribute(name, value);
    }
  }
}

function setText(el, text) {
  if (el.__kdvizText !== text) {
    el.__kdvizText = text;
    el.textContent = text;
  }
}

// Text width without asking the browser (no layout per frame): average glyph widths of a sans-serif font.
function textWidth(text, size) {
  let em = 0;
  for (const ch of String(text)) em += /[0-9]/.test(ch) ? 0.56 : /[ .,:·-]/.test(ch) ? 0.3 : /[A-Zmw]/.test(ch) ? 0.7 : 0.52;
  return em * size;
}

function linearScale(d0, d1, r0, r1) {
  const k = (r1 - r0) / (d1 - d0);
  return (v) => r0 + (v - d0) * k;
}

function logScale(d0, d1, r0, r1) {
  const inner = linearScale(Math.log10(d0), Math.log10(d1), r0, r1);
  return (v) => inner(Math.log10(v));
}

// About `count` round ticks (1, 2, 5 × 10^k apart) in [lo, hi].
function niceTicks(lo, hi, count) {
  const raw = (hi - lo) / Math.max(count, 1);
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) || 10 * power;
  const ticks = [];
  for (let i = Math.ceil(lo / step); i * step <= hi + step * 1e-9; i++) ticks.push(Number((i * step).toPrecision(12)));
  return ticks;
}

const SUPERSCRIPT = { "-": "⁻", 0: "⁰", 1: "¹", 2: "²", 3: "³", 4: "⁴", 5: "⁵", 6: "⁶", 7: "⁷", 8: "⁸", 9: "⁹" };
function powerOfTen(exponent) {
  return exponent === 0 ? "1" : exponent === 1 ? "10" : "10" + [...String(exponent)].map((c) => SUPERSCRIPT[c]).join("");
}

// A y axis drawn from a pool of tick elements: gridlines and labels, updated in place when the range changes.
function yAxis(layer, box, fonts, size = 14) {
  const pool = [];
  for (let i = 0; i < size; i++) {
    pool.push({
      line: svgEl(layer, "line", { x1: box.left, x2: box.right, stroke: GRID, "stroke-width": 1 }),
      label: svgEl(layer, "text", { x: box.left - 6, "text-anchor": "end", "dominant-baseline": "middle",
                                    "font-size": fonts.tick, fill: INK, class: "kdviz-tick" }),
    });
  }
  return (ticks, scale) => {
    pool.forEach((tick, i) => {
      const shown = i < ticks.length;
      setAttrs(tick.line, { visibility: shown ? "visible" : "hidden" });
      setAttrs(tick.label, { visibility: shown ? "visible" : "hidden" });
      if (!shown) return;
      const y = scale(ticks[i].value).toFixed(1);
      setAttrs(tick.line, { y1: y, y2: y });
      setAttrs(tick.label, { y });
      setText(tick.label, ticks[i].text);
    });
  };
}

function axisTitles(svg, box, fonts, xTitle, yTitle, xTitleY) {
  const midY = (box.top + box.bottom) / 2;
  svgEl(svg, "text", { x: box.left + box.width / 2, y: xTitleY, "text-anchor": "middle", "font-size": fonts.axis,
                       fill: INK }, xTitle);
  svgEl(svg, "text", { x: fonts.axis, y: midY, "text-anchor": "middle", "font-size": fonts.axis, fill: INK,
                       transform: `rotate(-90 ${fonts.axis} ${midY})` }, yTitle);
}

// Legend items [{name, color, kind: "bar" | "line", dash, width}] wrapped into rows of maxWidth: where each goes.
function legendLayout(items, maxWidth, size) {
  const rowHeight = size * 1.6, places = [];
  let x = 0, y = 0;
  for (const item of items) {
    const width = 30 + textWidth(item.name, size) + 18;
    if (x > 0 && x + width > maxWidth) {
      x = 0;
      y += rowHeight;
    }
    places.push({ x, y });
    x += width;
  }
  return { places, height: items.length ? y + rowHeight : 0 };
}

function drawLegend(svg, items, layout, x0, y0, size) {
  items.forEach((item, i) => {
    const x = x0 + layout.places[i].x, y = y0 + layout.places[i].y + size;
    if (item.kind === "line") {
      svgEl(svg, "line", { x1: x, x2: x + 24, y1: y - size * 0.32, y2: y - size * 0.32, stroke: item.color,
                           "stroke-width": item.width || 3, "stroke-dasharray": item.dash || "none" });
    } else {
      svgEl(svg, "rect", { x, y: y - size * 0.8, width: 22, height: size * 0.8, fill: item.color, rx: 2 });
    }
    svgEl(svg, "text", { x: x + 30, y, "font-size": size, fill: INK }, item.name);
  });
}

// Class names under a categorical axis: level when they fit their band, else turned 45° (long names cut).
function classAxisLayout(classes, band, size) {
  const texts = classes.map((name) => (name.length > 14 ? name.slice(0, 13) + "…" : name));
  const widest = Math.max(...texts.map((text) => textWidth(text, size)));
  const rotate = widest > band - 4;
  return { texts, rotate, height: rotate ? widest * 0.72 + size : size * 1.6 };
}

function drawClassAxis(svg, layout, centers, y, size) {
  layout.texts.forEach((text, i) => {
    const attrs = layout.rotate
      ? { x: centers[i], y: y + 8, "text-anchor": "end", "dominant-baseline": "middle",
          transform: `rotate(-45 ${centers[i]} ${y + 8})` }
      : { x: centers[i], y: y + size * 1.15, "text-anchor": "middle" };
    svgEl(svg, "text", { ...attrs, "font-size": size, fill: INK, class: "kdviz-class" }, text);
  });
}

// A value label at the end of a bar (over it, or under it when the bar points down): level when the bar is wide
// enough, else turned upright, and inside the bar when there is no room outside it.
function placeBarLabel(el, text, cx, yEnd, up, barWidth, room, size) {
  setText(el, text);
  const width = textWidth(text, size);
  if (width <= barWidth + 6) {
    setAttrs(el, { x: cx, y: up ? yEnd - 4 : yEnd + size, "text-anchor": "middle", "dominant-baseline": "auto",
                   transform: "", fill: INK });
    return;
  }
  const inside = width + 8 > room;
  // turned -90°, "start" runs up from y and "end" runs down to it: away from the bar outside, into it inside
  const y = up === inside ? yEnd + 4 : yEnd - 4;
  setAttrs(el, { x: cx, y, "text-anchor": up === inside ? "end" : "start", "dominant-baseline": "middle",
                 transform: `rotate(-90 ${cx} ${y})`, fill: inside ? "white" : INK });
}
