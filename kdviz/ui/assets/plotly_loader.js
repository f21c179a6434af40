// plotly.js for kdviz's own browser-side charts (the live run, slide export): one <script> from kdviz's route
// (kdviz.routes: the installed plotly package's file, offline), loaded once per page and shared.
function loadPlotly(url) {
  if (window.Plotly) return Promise.resolve(window.Plotly);
  if (!window.__kdvizPlotly) {
    window.__kdvizPlotly = new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = url;
      script.onload = () => resolve(window.Plotly);
      script.onerror = () => { window.__kdvizPlotly = null; reject(new Error("plotly.js did not load")); };
      document.head.appendChild(script);
    });
  }
  return window.__kdvizPlotly;
}
