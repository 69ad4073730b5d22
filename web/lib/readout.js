// Sora Empty Latent's readout: the query for GET /sora/geometry and the text drawn on the node.
// Pure functions (no DOM, no ComfyUI): every number comes from the server route, which calls
// sora_core.geometry and sora_core.budget; nothing here re-derives the geometry.

export const ROUTE = "/sora/geometry";
export const WATCHED = ["width", "height", "frames", "batch_size"];

/** The route's query for the node's widget values ({width, height, frames, batch_size}) and the
 * model folder of the connected loader ("default" when none is chosen). */
export function readoutQuery(values, model = "default", dtype = "auto") {
  const q = new URLSearchParams();
  q.set("width", String(values.width));
  q.set("height", String(values.height));
  q.set("frames", String(values.frames));
  q.set("batch", String(values.batch_size ?? 1));
  q.set("model", model && model !== "none" ? model : "default");
  if (dtype) q.set("dtype", dtype);
  return `${ROUTE}?${q.toString()}`;
}

/** "1.2 s", "230 ms" or "4 µs" for a duration in seconds. */
export function formatSeconds(s) {
  if (!Number.isFinite(s) || s < 0) return "?";
  if (s >= 60) return `${(s / 60).toFixed(1)} min`;
  if (s >= 1) return `${s.toFixed(1)} s`;
  if (s >= 1e-3) return `${Math.round(s * 1e3)} ms`;
  return `${Math.max(1, Math.round(s * 1e6))} µs`;
}

/** 12,345 with thousands separators (locale-independent). */
export function formatCount(n) {
  return String(Math.round(n)).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

/** The readout's lines for the route's JSON body: invalid values first, each with its nearest valid
 * value, then the latent shape, token grid, memory and time per step. */
export function formatReadout(body) {
  if (!body) return ["…"];
  if (body.error) return [`⚠ ${body.error}`];
  const lines = [];
  for (const n of body.notes ?? []) {
    lines.push(`⚠ ${n.field} ${n.given} is not valid (${n.why}): nearest ${n.valid}`);
  }
  const v = body.valid;
  lines.push(`${v.frames} frames × ${v.width}×${v.height} px`);
  lines.push(`latent ${body.latent_shape.join("×")} (B, C, T, H, W)`);
  lines.push(`tokens ${body.token_grid.join("×")} = ${formatCount(body.tokens)}`);
  lines.push(`memory ≈ ${body.memory.text}`);
  const step = body.step;
  lines.push(`≈ ${formatSeconds(step.seconds)} / step on ${step.device} (assumed ${step.assumed_tflops} TFLOP/s)`);
  return lines;
}

/** True when the readout has invalid values (the node is drawn with a warning colour). */
export function hasWarnings(body) {
  return Boolean(body && (body.error || (body.notes ?? []).length));
}
