// The tour's clicker: PageDown / PageUp (what presenters' remotes send) and the arrow keys move a step, unless the
// focus is in a field or on a slider (its arrows move the slider). One document listener per page; each mount
// points it at the latest trigger.
const NEXT = new Set(["PageDown", "ArrowRight"]);
const PREVIOUS = new Set(["PageUp", "ArrowLeft"]);

function typing(target) {
  if (!target || target === document.body) return false;
  const tag = (target.tagName || "").toLowerCase();
  return tag === "input" || tag === "textarea" || tag === "select" || target.isContentEditable ||
    target.getAttribute("role") === "slider" || target.getAttribute("role") === "combobox";
}

export default function (component) {
  const { setTriggerValue, data } = component;
  window.__kdvizClicker = data && data.enabled ? setTriggerValue : null;
  if (!window.__kdvizClickerInstalled) {
    window.__kdvizClickerInstalled = true;
    document.addEventListener("keydown", (event) => {
      const trigger = window.__kdvizClicker;
      // inside a shadow root (the soft-labels widget) event.target is its host: the real target is the path's first
      const target = event.composedPath ? event.composedPath()[0] : event.target;
      if (!trigger || event.defaultPrevented || event.altKey || event.ctrlKey || event.metaKey || typing(target)) {
        return;
      }
      const move = NEXT.has(event.key) ? 1 : PREVIOUS.has(event.key) ? -1 : 0;
      if (move === 0) return;
      event.preventDefault();  // PageDown would otherwise scroll the page
      trigger("move", move);
    });
  }
  return () => { if (window.__kdvizClicker === setTriggerValue) window.__kdvizClicker = null; };
}
