// A live run drawn in the browser: its progress bar and its loss and accuracy charts, polled from kdviz's own HTTP
// route (kdviz.routes → kdviz.views.run_live: one payload per version of the run's log, built once on the server for
// every viewer) and drawn with plotly.js; no Streamlit script run per redraw. When the page around the charts must
// change (the run starts, pauses, ends, moves in the queue, or is deleted) it reruns the page's fragment once
// ("changed" trigger), and the script draws that.
const instances = new WeakMap();
const ASK_AGAIN_MS = 3000;

// Inline styles (as Streamlit's st.progress and st.columns(2) look): they hold whatever CSS reaches the component.
const STYLES = {
  "kdviz-live-progress": "margin:.25rem 0 1rem;font-size:1rem;",
  "kdviz-live-progress-text": "margin-bottom:.35rem;",
  "kdviz-live-progress-track": "height:.5rem;border-radius:.25rem;background:rgba(151,166,195,.25);",
  "kdviz-live-progress-bar": "height:100%;width:0;border-radius:.25rem;background:#ff4b4b;transition:width .3s;",
  "kdviz-live-charts": "display:flex;flex-wrap:wrap;gap:1rem;",
  "kdviz-live-chart": "flex:1 1 360px;min-width:0;",
};

function element(tag, className, parent) {
  const node = document.createElement(tag);
  node.className = className;
  node.style.cssText = STYLES[className] || "";
  if (parent) parent.appendChild(node);
  return node;
}

class LiveRun {
  constructor(root) {
    this.root = root;
    root.replaceChildren();
    this.progress = element("div", "kdviz-live-progress", root);
    this.text = element("div", "kdviz-live-progress-text", this.progress);
    const track = element("div", "kdviz-live-progress-track", this.progress);
    this.bar = element("div", "kdviz-live-progress-bar", track);
    this.charts = element("div", "kdviz-live-charts", root);
    this.plots = { loss: element("div", "kdviz-live-chart", this.charts),
                   accuracy: element("div", "kdviz-live-chart", this.charts) };
    this.version = -1;
    this.busy = false;
    this.asked = 0;  // when this browser last asked the page to redraw (ms), 0: not waiting for it
    this.attempt = 0;
    this.clock = setInterval(() => this.showText(), 1000);
    this.onVisible = () => { if (!document.hidden) this.poll(); };
    document.addEventListener("visibilitychange", this.onVisible);
  }

  receive(data, setTriggerValue) {
    const fresh = !this.data || data.url !== this.data.url || data.split !== this.data.split
      || data.lecture !== this.data.lecture || data.redraw !== this.data.redraw;
    this.data = data;
    this.setTriggerValue = setTriggerValue;
    this.asked = 0;  // the page redrew: it shows what it was asked for
    this.root.dataset.parts = data.parts.join(" ");
    const payload = JSON.parse(data.payload);
    if (fresh || payload.version > this.version) this.show(payload);
    clearInterval(this.timer);
    this.timer = setInterval(() => this.poll(), data.interval_ms);
    // the run changed while the page drew around it (data.redraw is what it drew): ask for the redraw now
    if (payload.redraw !== data.redraw) setTimeout(() => this.poll(), 0);
  }

  query() {
    const { split, lecture } = this.data;
    return `since=${this.version}&split=${encodeURIComponent(split)}&lecture=${lecture ? 1 : 0}`;
  }

  async poll() {
    if (this.busy || document.hidden) return;  // a phone with its screen off costs nothing
    if (this.asked && Date.now() - this.asked < ASK_AGAIN_MS) return;  // the redraw asked for is on its way
    this.busy = true;
    try {
      const response = await fetch(`${this.data.url}?${this.query()}`, { cache: "no-store" });
      const answer = await response.json();
      if (answer.state === "unknown" || answer.redraw !== this.data.redraw) {
        // the script draws what comes next (the run's new state, its end, or its absence); a viewer waits a random
        // part of spread_ms first, so that a hall does not ask the server for it all in the same instant. A rerun
        // request can be lost (one that arrives while the page is rerunning for a button): if the page has not
        // redrawn ASK_AGAIN_MS later, the next poll asks again.
        if (answer.figures && answer.version > this.version) this.show(answer);  // the last charts at once
        const delay = Math.random() * (this.data.spread_ms || 0);
        const value = `${answer.redraw || answer.state}:${answer.version}:${++this.attempt}`;
        this.asked = Date.now() + delay;
        setTimeout(() => this.setTriggerValue("changed", value), delay);
        return;
      }
      if (answer.figures && answer.version > this.version) this.show(answer);
    } catch (error) {
      // the server restarted or the network dropped: try again at the next tick
    } finally {
      this.busy = false;
    }
  }

  async show(payload) {
    this.version = payload.version;
    this.payload = payload;
    this.received = Date.now();
    const parts = this.data.parts;
    this.progress.style.display = parts.includes("header") && payload.progress ? "" : "none";
    if (payload.progress) this.bar.style.width = `${(100 * payload.progress.fraction).toFixed(1)}%`;
    this.showText();
    const figures = parts.includes("charts") ? payload.figures || {} : {};
    const none = !Object.keys(figures).length;
    this.charts.style.display = none ? "none" : "flex";
    if (none) return;
    const Plotly = await loadPlotly(this.data.plotly_url);
    if (this.payload !== payload) return;  // a newer payload came while plotly.js loaded
    const config = { displaylogo: false, responsive: true };
    for (const [name, plot] of Object.entries(this.plots)) {
      const figure = figures[name];
      if (figure) Plotly.react(plot, figure.data, figure.layout, config);
    }
    this.root.dataset.version = String(payload.version);  // tests and the load generator read what is drawn
  }

  showText() {
    const progress = this.payload && this.payload.progress;
    if (!progress) return;
    const elapsed = this.payload.elapsed_s + (Date.now() - this.received) / 1000;
    this.text.textContent = progress.text.replace("{elapsed}", elapsed.toFixed(0));
  }

  destroy() {
    clearInterval(this.timer);
    clearInterval(this.clock);
    document.removeEventListener("visibilitychange", this.onVisible);
    for (const plot of Object.values(this.plots)) if (window.Plotly) window.Plotly.purge(plot);
  }
}

export default function (component) {
  const { data, parentElement, setTriggerValue } = component;
  let live = instances.get(parentElement);
  if (!live) {
    live = new LiveRun(parentElement);
    instances.set(parentElement, live);
  }
  live.receive(data, setTriggerValue);
  // Streamlit also runs the cleanup of an older call that newer data overtook: only a mount point that has left the
  // page ends the poll.
  return () => setTimeout(() => {
    if (!(parentElement.host || parentElement).isConnected && instances.get(parentElement) === live) {
      live.destroy();
      instances.delete(parentElement);
    }
  }, 0);
}
