// Sora Sampler and the frame-condition nodes: a small timeline of the latent frames the conditions
// pin, by which condition and how strongly, from the nodes' widget values (web/lib/timeline.js).
import { app } from "../../scripts/app.js";
import { CONDITION_NODES, DEFAULT_LATENT_FRAMES, cellColor, layoutTimeline } from "./lib/timeline.js";
import { conditionChain, growToFit, inputNode } from "./lib/graph.js";

const SAMPLER = "SoraSampler";
const HEIGHT = 46;

/** The latent's length from the Sora Empty Latent feeding ``sampler`` (its readout), else null. */
function latentFrames(sampler) {
  const source = sampler ? inputNode(sampler, "latent") : null;
  const shape = source?.soraReadout?.latent_shape;
  return Array.isArray(shape) ? shape[2] : null;
}

/** The sampler that ``node`` feeds (following frame_conditions outputs), or null. */
function samplerOf(node, depth = 0) {
  if (!node || depth > 32) return null;
  if ((node.comfyClass ?? node.type) === SAMPLER) return node;
  for (const output of node.outputs ?? []) {
    for (const id of output.links ?? []) {
      const link = node.graph?.links?.get ? node.graph.links.get(id) : node.graph?.links?.[id];
      const next = link ? node.graph.getNodeById(link.target_id) : null;
      const found = samplerOf(next, depth + 1);
      if (found) return found;
    }
  }
  return null;
}

function chainOf(node) {
  const type = node.comfyClass ?? node.type;
  const last = type === SAMPLER ? inputNode(node, "frame_conditions") : node;
  return last ? conditionChain(last, CONDITION_NODES) : [];
}

function draw(node) {
  const canvas = node.soraTimeline;
  const chain = chainOf(node);
  const known = latentFrames(samplerOf(node));
  const total = known ?? DEFAULT_LATENT_FRAMES;
  const width = Math.max(60, Math.floor(canvas.clientWidth || (node.size?.[0] ?? 200) - 20));
  const key = JSON.stringify([chain, total, width]);
  if (key === node.soraTimelineKey) return;
  node.soraTimelineKey = key;
  canvas.width = width;
  canvas.height = HEIGHT;
  const ctx = canvas.getContext("2d");
  const { cells, legend } = layoutTimeline(chain, total, width);
  ctx.clearRect(0, 0, width, HEIGHT);
  for (const c of cells) {
    ctx.fillStyle = cellColor(c.label, c.strength, legend);
    ctx.fillRect(c.x + 0.5, 2, Math.max(1, c.w - 1), 18);
  }
  ctx.fillStyle = "#bbb";
  ctx.font = "10px sans-serif";
  const title = chain.length ? legend.join(" · ") || "no frames pinned" : "no frame conditions";
  ctx.fillText(`${title} — ${total} latent frames${known ? "" : " (assumed)"}`, 2, 34, width - 4);
}

function addTimeline(node) {
  const canvas = document.createElement("canvas");
  canvas.style.width = "100%";
  canvas.style.height = `${HEIGHT}px`;
  node.soraTimeline = canvas;
  const widget = node.addDOMWidget("sora_timeline", "sora_timeline", canvas,
                                   { serialize: false, hideOnZoom: false, getMinHeight: () => HEIGHT });
  widget.serialize = false;
  const onDrawForeground = node.onDrawForeground;
  node.onDrawForeground = function (...args) {
    const r = onDrawForeground?.apply(this, args);
    draw(this);
    return r;
  };
  growToFit(node);
}

app.registerExtension({
  name: "comfyui-sora.timeline",
  async nodeCreated(node) {
    const type = node.comfyClass ?? node.type;
    if (type === SAMPLER || CONDITION_NODES.includes(type)) addTimeline(node);
  },
});
