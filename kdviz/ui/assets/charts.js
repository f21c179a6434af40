// The soft-labels widget's charts as plain SVG: each builds its elements once for a width, and update(view) only
// sets attributes and text as T and α move (plotly.js redraws 4 charts ~8 times a second here; this, 60).
// Titles, axes and colours are those of the Plotly charts they replace: one colour per role (kdviz.views.charts).

function seriesColor(data, id) {
  return id === "student" ? data.colors[data.student_role] : data.colors[id];
}

// The frame every chart shares: an <svg> as wide as its panel, a title, a legend (top or bottom), axis titles, and
// the plot box left inside. The height grows when turned class names need room.
function chartFrame(ctx, spec) {
  const { width, fonts } = ctx;
  const titleSize = Math.min(fonts.title, (width - 16) / textWidth(spec.longest, 1));
  let top = titleSize * 1.7;
  const legend = legendLayout(spec.legend || [], width - 16, fonts.legend);
  const legendTop = top;
  if (spec.legendAt === "top") top += legend.height + 4;
  const labelTop = top; // bar labels and T marks may use the band down to the plot
  top += spec.headroom || 0;
  // the log-T axis's last label ("100") is centred on the right edge of the plot
  const left = fonts.axis * 1.8 + spec.tickWidth + 10, right = width - Math.max(14, textWidth("100", fonts.tick) / 2 + 6);
  const classAxis = spec.classes
    ? classAxisLayout(spec.classes, (right - left) / spec.classes.length, fonts.class) : null;
  const xAxisHeight = classAxis ? classAxis.height : fonts.tick * 1.7;
  const below = xAxisHeight + fonts.axis * 1.9 + (spec.legendAt === "bottom" ? legend.height + 6 : 0) + 6;
  const height = ctx.exporting ? ctx.height : Math.max(ctx.height, top + below + 170);
  const svg = svgEl(null, "svg", { xmlns: SVG_NS, viewBox: `0 0 ${width} ${height}`, "font-family": FONT_FAMILY,
                                   class: "kdviz-chart", "data-panel": spec.panel, role: "img",
                                   "aria-label": spec.longest });
  setAttrs(svg, ctx.exporting ? { width, height } : { width: "100%" });
  svgEl(svg, "rect", { width, height, fill: "white" });
  const title = svgEl(svg, "text", { x: 8, y: (titleSize * 1.15).toFixed(1), "font-size": titleSize.toFixed(1),
                                     "font-weight": 600, fill: INK, class: "kdviz-title" });
  const bottom = height - below;
  const box = { left, right, top, bottom, width: right - left, height: bottom - top, labelTop };
  if (spec.legendAt === "top") drawLegend(svg, spec.legend, legend, 8, legendTop, fonts.legend);
  const xTitleY = bottom + xAxisHeight + fonts.axis * 1.3;
  axisTitles(svg, box, fonts, spec.xTitle, spec.yTitle, xTitleY);
  if (spec.legendAt === "bottom") drawLegend(svg, spec.legend, legend, 8, xTitleY + fonts.axis * 0.5, fonts.legend);
  return { svg, box, title, classAxis };
}

function xAxisLine(svg, box) {
  svgEl(svg, "line", { x1: box.left, x2: box.right, y1: box.bottom, y2: box.bottom, stroke: AXIS, "stroke-width": 1 });
}

// Grouped bars per class (series k of n at its place in the class's band): [series][class] rects and labels.
function groupedBars(svg, f, classes, shown, fonts, withLabels) {
  const band = f.box.width / classes.length, group = band * 0.76, bar = group / Math.max(shown.length, 1);
  const centers = classes.map((_, c) => f.box.left + band * (c + 0.5));
  drawClassAxis(svg, f.classAxis, centers, f.box.bottom, fonts.class);
  const x = (k, c) => centers[c] - group / 2 + k * bar;
  const rects = shown.map((s, k) => classes.map((name, c) => svgEl(svg, "rect", {
    x: (x(k, c) + 1).toFixed(2), width: Math.max(bar - 2, 1).toFixed(2), fill: s.color, class: "kdviz-bar",
    "data-series": s.id, "data-class": name })));
  const labels = shown.map((s) => (withLabels(s) ? classes.map((name) => svgEl(svg, "text", {
    "font-size": fonts.label, class: "kdviz-bar-label", "data-series": s.id, "data-class": name })) : null));
  return { rects, labels, width: bar - 2, center: (k, c) => x(k, c) + bar / 2 };
}

// The title says what the bars show: a tour step may draw only the hard label, or only the teacher beside it.
function barsTitle(series, temperature) {
  const at = `at T = ${formatG(temperature)}`;
  if (!series.includes("teacher") && !series.includes("student")) return "The hard label: one-hot";
  if (!series.includes("student")) return `Hard label vs the teacher's softmax ${at}`;
  if (!series.includes("teacher")) return `Hard label vs the student's softmax ${at}`;
  return `Hard label vs soft labels ${at}`;
}

function barsChart(ctx) {
  const { data, fonts } = ctx;
  const classes = data.classes, floor = data.log_floor, log = data.log_scale;
  const shown = data.series.map((id) => ({ id, name: data.names[id], color: seriesColor(data, id) }));
  const f = chartFrame(ctx, {
    panel: "bars", longest: barsTitle(data.series, 0.12), legendAt: "top", classes,
    legend: shown.map((s) => ({ name: s.name, color: s.color })), headroom: fonts.label * 0.5,
    tickWidth: textWidth(log ? powerOfTen(-12) : "0.75", fonts.tick), xTitle: "class",
    yTitle: log ? "probability (log scale)" : "probability" });
  const { svg, box } = f;
  const axis = yAxis(svg, box, fonts);
  xAxisLine(svg, box);
  // probabilities printed over the bars up to 6 classes (never on the hard label's 0 and 1)
  const bars = groupedBars(svg, f, classes, shown, fonts, (s) => classes.length <= 6 && s.id !== "label");
  // room over a bar of height 1 for a level label (an upright one goes inside a bar that tall)
  const room = bars.labels.some(Boolean) ? fonts.label * 1.2 + 8 : 0;
  const top = Math.min(Math.max(1.18, 1 / (1 - room / box.height)), 2);
  return {
    svg,
    update(view) {
      setText(f.title, barsTitle(data.series, view.temperature));
      let scale, ticks;
      if (log) {
        const drawn = [...view.teacherP, ...view.studentP].filter((v) => v >= floor);
        const lowest = Math.min(Math.max(10 ** Math.floor(Math.log10(Math.min(...drawn, 1))), floor), 1e-2);
        const low = Math.round(Math.log10(lowest)), every = Math.ceil((1 - low) / Math.max(box.height / (fonts.tick * 1.8), 2));
        const decades = -Math.log10(lowest), share = Math.min(room / box.height, 0.5);
        scale = logScale(lowest, 10 ** Math.max(0.35, (share * decades) / (1 - share)), box.bottom, box.top);
        ticks = [];
        for (let e = 0; e >= low; e -= every) ticks.push({ value: 10 ** e, text: powerOfTen(e) });
      } else {
        scale = linearScale(0, top, box.bottom, box.top);
        ticks = [0, 0.25, 0.5, 0.75, 1].map((value) => ({ value, text: formatG(value) }));
      }
      axis(ticks, scale);
      const values = { label: view.hardLabel, teacher: view.teacherP, student: view.studentP };
      shown.forEach((s, k) => classes.forEach((_, c) => {
        const value = values[s.id][c], visible = !log || value >= floor;
        const y = visible ? Math.min(scale(value), box.bottom) : box.bottom;
        setAttrs(bars.rects[k][c], { y: y.toFixed(2), height: (box.bottom - y).toFixed(2) });
        const label = bars.labels[k] && bars.labels[k][c];
        if (!label) return;
        setAttrs(label, { visibility: visible ? "visible" : "hidden" });
        placeBarLabel(label, formatProbability(value, data.formats), bars.center(k, c), y, true, bars.width,
                      y - box.labelTop, fonts.label);
      }));
    },
  };
}

function logitsChart(ctx) {
  const { data, fonts } = ctx;
  const classes = data.classes;
  const ids = data.series.filter((id) => id !== "label");
  const shown = (ids.length ? ids : ["teacher", "student"]).map((id) => ({ id, name: data.names[id],
                                                                           color: seriesColor(data, id) }));
  const all = shown.flatMap((s) => data[s.id]);
  const lo = Math.min(0, ...all), hi = Math.max(0, ...all), pad = (hi - lo) * 0.2 || 1;
  const ticks = niceTicks(lo - pad, hi + pad, 5).map((value) => ({ value, text: formatG(value) }));
  const f = chartFrame(ctx, {
    panel: "logits", longest: "Logits (before the softmax)", legendAt: "top", classes, headroom: fonts.label * 1.5,
    legend: shown.map((s) => ({ name: s.name, color: s.color })), xTitle: "class", yTitle: "logit z",
    tickWidth: Math.max(...ticks.map((t) => textWidth(t.text, fonts.tick))) });
  const { svg, box } = f;
  setText(f.title, "Logits (before the softmax)");
  const scale = linearScale(Math.min(lo - pad, ticks[0].value), Math.max(hi + pad, ticks[ticks.length - 1].value),
                            box.bottom, box.top);
  yAxis(svg, box, fonts, ticks.length)(ticks, scale);
  const bars = groupedBars(svg, f, classes, shown, fonts, () => classes.length <= 6);
  const zero = scale(0);
  svgEl(svg, "line", { x1: box.left, x2: box.right, y1: zero, y2: zero, stroke: ZERO, "stroke-width": 2 });
  shown.forEach((s, k) => classes.forEach((_, c) => { // T does not change logits: drawn once
    const value = data[s.id][c], y = scale(value);
    setAttrs(bars.rects[k][c], { y: Math.min(y, zero).toFixed(2), height: Math.abs(zero - y).toFixed(2) });
    if (bars.labels[k]) {
      placeBarLabel(bars.labels[k][c], formatG(value), bars.center(k, c), y, value >= 0, bars.width,
                    value >= 0 ? y - box.labelTop : box.bottom - y, fonts.label);
    }
  }));
  return { svg, update() {} };
}

// Vertical lines and labels at T = 1 and at the current T over a log-T axis (the labels never overlap: the smaller
// T's runs left, the larger's right, as kdviz's Plotly charts placed them).
function temperatureMarks(svg, box, ctx, x) {
  const { data, fonts } = ctx, width = data.lecture ? 3 : 2;
  const mark = (color, dash) => ({
    line: svgEl(svg, "line", { y1: box.top, y2: box.bottom, stroke: color, "stroke-width": width,
                               "stroke-dasharray": dash }),
    label: svgEl(svg, "text", { y: box.top - 6, "font-size": fonts.tick, fill: color, class: "kdviz-mark" }),
  });
  const one = mark(data.mark_colors.one, "2,5"), current = mark(data.mark_colors.current, "8,5");
  const place = (m, t, anchor) => {
    const xt = x(t).toFixed(1);
    setAttrs(m.line, { x1: xt, x2: xt });
    setAttrs(m.label, { x: xt, "text-anchor": anchor === "left" ? "start" : "end" });
  };
  setText(one.label, "T = 1");
  return (t) => {
    place(one, 1, t < 1 ? "left" : "right");
    place(current, t, (t > 0.2 && t < 1) || t >= 30 ? "right" : "left");
    setText(current.label, `T = ${formatG(t)}`);
    for (const el of [current.line, current.label]) setAttrs(el, { visibility: t === 1 ? "hidden" : "visible" });
  };
}

// A log-T x axis from 0.1 to 100 with the payload's ticks; returns the scale.
function temperatureAxis(svg, box, ctx) {
  const { data, fonts } = ctx;
  const x = logScale(10 ** -1.02, 10 ** 2.02, box.left, box.right);
  xAxisLine(svg, box);
  for (const t of data.temperature_ticks) {
    svgEl(svg, "line", { x1: x(t), x2: x(t), y1: box.bottom, y2: box.bottom + 5, stroke: AXIS });
    svgEl(svg, "text", { x: x(t), y: box.bottom + fonts.tick * 1.3, "text-anchor": "middle", "font-size": fonts.tick,
                         fill: INK, class: "kdviz-tick" }, formatG(t));
  }
  return x;
}

function curvePath(points, x, y) {
  return points.map(([t, v], i) => `${i ? "L" : "M"}${x(t).toFixed(1)},${y(v).toFixed(1)}`).join("");
}

function curvesChart(ctx) {
  const { data, fonts } = ctx;
  const temps = data.curve_temperatures, classes = data.classes;
  const probs = temps.map((t) => softmax(data.teacher, t)); // (n_T, C), once: it does not depend on the slider
  const style = (c) => ({ color: data.class_colors[c % data.class_colors.length], dash: c < 10 ? "none" : "9,5",
                          width: data.line_width * (c === data.label ? 1.6 : 1) });
  const f = chartFrame(ctx, {
    panel: "curves", longest: "Teacher's softmax as T grows", legendAt: "bottom", headroom: fonts.tick * 1.6,
    legend: classes.map((name, c) => ({ name: name + (c === data.label ? " (true class)" : ""), kind: "line",
                                        ...style(c) })),
    tickWidth: textWidth("0.8", fonts.tick), xTitle: "temperature T (log scale)", yTitle: "teacher probability" });
  const { svg, box } = f;
  setText(f.title, "Teacher's softmax as T grows");
  const y = linearScale(0, 1.05, box.bottom, box.top);
  yAxis(svg, box, fonts, 6)([0, 0.2, 0.4, 0.6, 0.8, 1].map((value) => ({ value, text: formatG(value) })), y);
  const x = temperatureAxis(svg, box, ctx);
  const marks = temperatureMarks(svg, box, ctx, x);
  classes.forEach((_, c) => {
    const s = style(c);
    svgEl(svg, "path", { d: curvePath(temps.map((t, i) => [t, probs[i][c]]), x, y), fill: "none", stroke: s.color,
                         "stroke-width": s.width, "stroke-dasharray": s.dash, "stroke-linejoin": "round" });
  });
  const dots = classes.map((name, c) => svgEl(svg, "circle", { r: data.marker_radius, fill: style(c).color,
                                                               stroke: "white", "stroke-width": 2,
                                                               class: "kdviz-marker", "data-class": name }));
  return {
    svg,
    update(view) {
      marks(view.temperature);
      const xt = x(view.temperature).toFixed(1);
      dots.forEach((dot, c) => setAttrs(dot, { cx: xt, cy: y(view.teacherP[c]).toFixed(1) }));
    },
  };
}

function entropyChart(ctx) {
  const { data, fonts } = ctx;
  const temps = data.curve_temperatures, ceiling = Math.log(data.classes.length);
  const ids = data.series.filter((id) => id !== "label");
  const shown = (ids.length ? ids : ["teacher", "student"]).map((id) => ({
    id, name: data.names[id], color: seriesColor(data, id), kind: "line", width: data.line_width,
    curve: temps.map((t) => [t, entropy(data[id], t)]) }));
  const ticks = niceTicks(0, ceiling * 1.15, 5).map((value) => ({ value, text: formatG(value, 3) }));
  const f = chartFrame(ctx, {
    panel: "entropy", longest: "Entropy of the softmax as T grows", legendAt: "bottom", legend: shown,
    headroom: fonts.tick * 1.6, tickWidth: Math.max(...ticks.map((t) => textWidth(t.text, fonts.tick))),
    xTitle: "temperature T (log scale)", yTitle: "entropy (nats)" });
  const { svg, box } = f;
  setText(f.title, "Entropy of the softmax as T grows");
  const y = linearScale(0, ceiling * 1.15, box.bottom, box.top);
  yAxis(svg, box, fonts, ticks.length)(ticks, y);
  const x = temperatureAxis(svg, box, ctx);
  const marks = temperatureMarks(svg, box, ctx, x);
  const grey = data.colors.label;
  svgEl(svg, "line", { x1: box.left, x2: box.right, y1: y(ceiling), y2: y(ceiling), stroke: grey, "stroke-width": 1.5,
                       "stroke-dasharray": "6,4" });
  svgEl(svg, "text", { x: box.left + 6, y: y(ceiling) - 5, "font-size": fonts.tick, fill: grey, class: "kdviz-ceiling" },
        `ln ${data.classes.length} = ${formatFixed(ceiling, 3)}`);
  for (const s of shown) {
    svgEl(svg, "path", { d: curvePath(s.curve, x, y), fill: "none", stroke: s.color, "stroke-width": s.width,
                         "stroke-linejoin": "round" });
  }
  const dots = shown.map((s) => svgEl(svg, "circle", { r: data.marker_radius, fill: s.color, stroke: "white",
                                                      "stroke-width": 2, class: "kdviz-marker", "data-series": s.id }));
  return {
    svg,
    update(view) {
      marks(view.temperature);
      const xt = x(view.temperature).toFixed(1);
      shown.forEach((s, k) => setAttrs(dots[k], { cx: xt, cy: y(s.id === "teacher" ? view.teacherH : view.studentH) }));
    },
  };
}

function gradientChart(ctx) {
  const { data, fonts } = ctx;
  const classes = data.classes;
  const f = chartFrame(ctx, {
    panel: "gradient", longest: "Where the student is pushed", classes, headroom: fonts.label * 0.5,
    tickWidth: textWidth("-0.05", fonts.tick), xTitle: "student logit", yTitle: "−∂(T²·KL)/∂z  =  T (p − q)" });
  const { svg, box } = f;
  setText(f.title, "Where the student is pushed");
  const axis = yAxis(svg, box, fonts, 12);
  const bars = groupedBars(svg, f, classes, [{ id: "update", color: data.direction_colors.up }], fonts,
                           () => classes.length <= 8);
  const zero = svgEl(svg, "line", { x1: box.left, x2: box.right, stroke: ZERO, "stroke-width": 2 });
  const colors = { up: data.direction_colors.up, down: data.direction_colors.down, none: data.colors.label };
  return {
    svg,
    update(view) {
      const texts = view.update.map((v) => (v > 0 ? "▲ " : v < 0 ? "▼ " : "") + formatValue(v, data.formats));
      // the labels' room beyond the longest bar (turned upright on narrow bars) sets how far the axis reaches
      const longest = bars.labels[0] ? Math.max(...texts.map((text) => textWidth(text, fonts.label))) : 0;
      const need = bars.labels[0] ? (longest > bars.width + 6 ? longest : fonts.label * 1.2) + 8 : 0;
      const half = box.height / 2, stretch = need < half * 0.6 ? Math.max(1.35, half / (half - need)) : 1.35;
      const range = Math.max(...view.update.map(Math.abs), 1e-12) * stretch;
      const y = linearScale(-range, range, box.bottom, box.top), y0 = y(0);
      axis(niceTicks(-range, range, 6).map((value) => ({ value, text: formatG(value, 3) })), y);
      setAttrs(zero, { y1: y0.toFixed(2), y2: y0.toFixed(2) });
      view.update.forEach((value, c) => {
        const yv = y(value), direction = value > 0 ? "up" : value < 0 ? "down" : "none";
        setAttrs(bars.rects[0][c], { y: Math.min(yv, y0).toFixed(2), height: Math.abs(y0 - yv).toFixed(2),
                                     fill: colors[direction], "data-direction": direction });
        const label = bars.labels[0] && bars.labels[0][c];
        if (!label) return;
        placeBarLabel(label, texts[c], bars.center(0, c), yv, value >= 0,
                      bars.width, value >= 0 ? yv - box.labelTop : box.bottom - yv, fonts.label);
      });
    },
  };
}

const CHARTS = { logits: logitsChart, bars: barsChart, curves: curvesChart, entropy: entropyChart,
                 gradient: gradientChart };
