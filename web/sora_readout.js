// Sora Empty Latent: a live readout of the request's latent shape, token grid, token count, memory and
// time per step, from GET /sora/geometry (sora_core.geometry / budget on the server). Invalid widths,
// heights and frame counts are shown with the nearest valid values before the graph is queued.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { WATCHED, formatReadout, hasWarnings, readoutQuery } from "./lib/readout.js";
import { growToFit, inputNode, widgetValues } from "./lib/graph.js";

const NODE = "SoraEmptyLatent";
const DEBOUNCE_MS = 250;
const LINE_PX = 14;                                              // 10px monospace, line-height 1.35


/** The model folder of the Sora Model Loader feeding ``node`` ("default" otherwise). */
function modelOf(node) {
  const loader = inputNode(node, "model");
  const values = loader ? widgetValues(loader) : {};
  return { model: values.model_dir && values.model_dir !== "none" ? values.model_dir : "default",
           dtype: values.dtype ?? "auto" };
}

async function refresh(node) {
  const { model, dtype } = modelOf(node);
  const query = readoutQuery(widgetValues(node), model, dtype);
  if (query === node.soraReadoutQuery) return;
  node.soraReadoutQuery = query;
  let body;
  try {
    const response = await api.fetchApi(query);
    body = await response.json();
  } catch (e) {
    body = { error: `readout unavailable: ${e}` };
  }
  if (query !== node.soraReadoutQuery) return;                   // a newer request is on its way
  node.soraReadout = body;
  show(node, body);
}

function show(node, body) {
  const el = node.soraReadoutElement;
  const lines = formatReadout(body);
  el.textContent = lines.join("\n");
  node.soraReadoutLines = lines.length;
  el.style.color = hasWarnings(body) ? "#f0b040" : "var(--descrip-text, #aaa)";
  growToFit(node);                                                // warnings add lines: keep them all visible
  node.setDirtyCanvas?.(true, true);
}

function schedule(node) {
  clearTimeout(node.soraReadoutTimer);
  node.soraReadoutTimer = setTimeout(() => refresh(node), DEBOUNCE_MS);
}

function addReadout(node) {
  const el = document.createElement("div");
  el.className = "sora-readout";
  Object.assign(el.style, { whiteSpace: "pre-wrap", font: "10px monospace", padding: "4px",
                            lineHeight: "1.35", overflow: "hidden", boxSizing: "border-box" });
  el.textContent = "…";
  node.soraReadoutElement = el;
  node.soraReadoutLines = 5;
  // Room for every line (a wrapped line takes two: the estimate keeps one spare line).
  const minHeight = () => (node.soraReadoutLines + 1) * LINE_PX + 8;
  const widget = node.addDOMWidget("sora_readout", "sora_readout", el,
                                   { serialize: false, hideOnZoom: false, getMinHeight: minHeight });
  widget.serialize = false;                                       // not one of the node's inputs
  for (const w of node.widgets ?? []) {
    if (!WATCHED.includes(w.name)) continue;
    const callback = w.callback;
    w.callback = function (...args) {
      const r = callback?.apply(this, args);
      schedule(node);
      return r;
    };
  }
  const onConnectionsChange = node.onConnectionsChange;
  node.onConnectionsChange = function (...args) {
    const r = onConnectionsChange?.apply(this, args);
    schedule(node);
    return r;
  };
  growToFit(node);
  schedule(node);
}

app.registerExtension({
  name: "comfyui-sora.readout",
  async nodeCreated(node) {
    if ((node.comfyClass ?? node.type) === NODE) addReadout(node);
  },
  async loadedGraphNode(node) {
    if ((node.comfyClass ?? node.type) === NODE && node.soraReadoutElement) {
      node.soraReadoutQuery = null;
      schedule(node);                                              // widget values restored from the file
    }
  },
});
