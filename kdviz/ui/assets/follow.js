// A follower's poll: every interval ms it asks kdviz's own HTTP route (not a Streamlit script run) whether the
// lecturer changed anything. A new T or α on a step that draws them in the browser is applied there
// ("kdviz:follow" event, no server work at all); anything else (another step, a question, the end) reruns the page.
export default function (component) {
  const { data, setTriggerValue } = component;
  const state = (window.__kdvizFollow = window.__kdvizFollow || {});
  if (state.timer) clearInterval(state.timer);
  if (state.onVisible) document.removeEventListener("visibilitychange", state.onVisible);
  if (state.room !== data.room || (state.version || 0) < data.version) {
    state.room = data.room;
    state.version = data.version;
    state.view = data.view;
  }
  let busy = false;
  const poll = async () => {
    if (busy || document.hidden) return;  // a phone with its screen off costs nothing
    busy = true;
    try {
      const response = await fetch(`${data.url}?since=${state.version}`, { cache: "no-store" });
      const answer = await response.json();
      if (answer.state !== "live") { setTriggerValue("changed", `${answer.state}:${state.version}`); return; }
      if (answer.version <= state.version) return;
      const view = answer.view, old = state.view || {};
      const onlyTemperature = data.browser_follows && ["step", "question", "revealed", "run_id"].every(
        (field) => view[field] === old[field]);
      state.version = answer.version;
      state.view = view;
      if (onlyTemperature) {
        window.dispatchEvent(new CustomEvent("kdviz:follow", {
          detail: { temperature: view.temperature, alpha: view.alpha } }));
        document.documentElement.dataset.kdvizFollowed = String(answer.version);
      } else {
        setTriggerValue("changed", String(answer.version));
      }
    } catch (error) {
      // the server restarted or the network dropped: try again at the next tick
    } finally {
      busy = false;
    }
  };
  state.timer = setInterval(poll, data.interval_ms);
  state.onVisible = () => { if (!document.hidden) poll(); };
  document.addEventListener("visibilitychange", state.onVisible);
  return () => {
    clearInterval(state.timer);
    document.removeEventListener("visibilitychange", state.onVisible);
    state.timer = null;
  };
}
