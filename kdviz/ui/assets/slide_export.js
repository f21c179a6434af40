// Slide-ready charts: every Plotly chart on the page gets "PNG" and "SVG" buttons that download it as a 16:9
// 1920×1080 image with a caption (the step, its parameters and its link), drawn by plotly.js's own image export in
// the browser. plotly.js comes from kdviz's route (the installed plotly package's file, offline; loadPlotly in
// plotly_loader.js) and is fetched only when someone first exports.
const WIDTH = 1920, HEIGHT = 1080;

function slug(text) {
  return String(text || "chart").toLowerCase().replace(/<[^>]*>/g, "").replace(/[^a-z0-9]+/g, "-")
    .replace(/^-|-$/g, "").slice(0, 48) || "chart";
}

async function exportChart(chart, format, options) {
  const graph = chart.querySelector(".js-plotly-plot");
  if (!graph || !graph.data) return;
  const Plotly = await loadPlotly(options.plotly_url);
  const layout = JSON.parse(JSON.stringify(graph.layout || {}));
  const margin = layout.margin || {};
  layout.width = WIDTH;
  layout.height = HEIGHT;
  layout.autosize = false;
  layout.margin = { ...margin, b: (margin.b || 10) + 70 };
  layout.annotations = [...(layout.annotations || []), {
    text: options.caption, xref: "paper", yref: "paper", x: 0, y: 0, xanchor: "left", yanchor: "top",
    yshift: -((margin.b || 10) + 20), showarrow: false, align: "left",
    font: { size: 18, color: "#4B5563" },
  }];
  const title = (layout.title && layout.title.text) || "chart";
  await Plotly.downloadImage({ data: graph.data, layout }, {
    format, width: WIDTH, height: HEIGHT, filename: `${options.prefix}-${slug(title)}`,
  });
}

function decorate(root, options) {
  root.querySelectorAll(".stPlotlyChart").forEach((chart) => {
    const holder = chart.parentElement;
    if (!holder || holder.querySelector(":scope > .kdviz-export")) return;
    const bar = document.createElement("div");
    bar.className = "kdviz-export";
    // inside the chart's frame (Streamlit gives it a fixed height), in its bottom-right corner
    bar.style.cssText = "position:absolute;right:2px;bottom:2px;z-index:3;display:flex;gap:.3rem;opacity:.9;";
    if (getComputedStyle(holder).position === "static") holder.style.position = "relative";
    for (const format of ["png", "svg"]) {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = `⤓ ${format.toUpperCase()}`;
      button.title = `Download this chart as a 16:9 ${format.toUpperCase()} slide (1920×1080) with its caption`;
      button.dataset.format = format;
      button.style.cssText = "font:inherit;font-size:.75rem;line-height:1.2;padding:.1rem .45rem;border:1px solid #D1D5DB;" +
        "border-radius:.4rem;background:rgba(255,255,255,.92);color:#374151;cursor:pointer;";
      button.addEventListener("click", () => exportChart(chart, format, window.__kdvizExport || options)
        .catch((error) => { button.textContent = "export failed"; console.error(error); }));
      bar.appendChild(button);
    }
    holder.appendChild(bar);
  });
}

function addStyle() {  // slides are made on a lecturer's screen: a phone keeps its charts uncluttered
  if (document.getElementById("kdviz-export-style")) return;
  const style = document.createElement("style");
  style.id = "kdviz-export-style";
  style.textContent = "@media (max-width: 640px) { .kdviz-export { display: none !important; } }";
  document.head.appendChild(style);
}

export default function (component) {
  const { data } = component;
  addStyle();
  window.__kdvizExport = data;  // the latest caption: the buttons read it when clicked
  const root = document.querySelector(".stMain") || document.body;
  decorate(root, data);
  if (window.__kdvizExportObserver) window.__kdvizExportObserver.disconnect();
  let queued = false;  // many mutations (a chart redrawing) → one scan per frame
  const observer = new MutationObserver(() => {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => { queued = false; decorate(root, window.__kdvizExport || data); });
  });
  observer.observe(root, { childList: true, subtree: true });
  window.__kdvizExportObserver = observer;
  return () => { observer.disconnect(); if (window.__kdvizExportObserver === observer) window.__kdvizExportObserver = null; };
}
