// Reading a LiteGraph node's widget values and what is connected to its inputs, for the extensions.
// Works on the frontend's node objects through a few documented members (widgets, inputs,
// getInputNode) and on plain stand-ins in tests; no DOM, no ComfyUI imports.

/** {name: value} of a node's widgets. */
export function widgetValues(node) {
  const out = {};
  for (const w of node?.widgets ?? []) out[w.name] = w.value;
  return out;
}

/** The node connected to input ``name`` of ``node`` (null when unconnected). */
export function inputNode(node, name) {
  const slot = (node?.inputs ?? []).findIndex((i) => i.name === name);
  if (slot < 0 || node.inputs[slot].link == null || typeof node.getInputNode !== "function") return null;
  return node.getInputNode(slot) ?? null;
}

/** The frame-condition chain ending at ``node`` ([{type, widgets}] from the most upstream to
 * ``node``), following each condition node's "previous" input; ``types`` are the condition nodes. */
export function conditionChain(node, types, limit = 32) {
  const chain = [];
  const seen = new Set();
  for (let n = node; n && types.includes(n.comfyClass ?? n.type) && !seen.has(n) && chain.length < limit;
       n = inputNode(n, "previous")) {
    seen.add(n);
    chain.unshift({ type: n.comfyClass ?? n.type, widgets: widgetValues(n) });
  }
  return chain;
}

/** Grow ``node`` to at least the size its widgets need (``node.computeSize()``), never shrinking it:
 * the frontend sizes a new node before the extensions add their DOM widgets, and a readout that gains
 * lines needs more height. True when the node grew. */
export function growToFit(node) {
  if (typeof node?.computeSize !== "function" || !node.size) return false;
  const [needW, needH] = node.computeSize();
  const [w, h] = node.size;
  if (needW <= w && needH <= h) return false;
  const size = [Math.max(w, needW), Math.max(h, needH)];
  if (typeof node.setSize === "function") node.setSize(size);
  else node.size = size;
  return true;
}
