// The frame-condition timeline: which latent frames the frame-condition nodes pin, with which
// condition and strength, laid out as rectangles. Pure functions: the extension reads the nodes'
// widget values and draws the rectangles.

export const CONDITION_NODES = ["SoraImageToVideo", "SoraExtendForward", "SoraExtendBackward",
  "SoraSeamlessLoop", "SoraConnectClips", "SoraClipBlend"];
export const DEFAULT_LATENT_FRAMES = 8;          // shown when the latent's length is not known

const clampInt = (v, lo, hi) => Math.max(lo, Math.min(hi, Math.round(v)));

/** Pinned spans [{start, end, strength, label}] (latent frames, end exclusive) of one condition node
 * of type ``type`` with widget values ``w``, for a latent of ``total`` frames. */
export function conditionSpans(type, w, total) {
  const s = Number(w.strength ?? 1);
  const n = clampInt(w.latent_frames ?? 1, 1, total);
  switch (type) {
    case "SoraImageToVideo":
      return w.position === "end" ? [{ start: total - 1, end: total, strength: s, label: "image (end)" }]
        : [{ start: 0, end: 1, strength: s, label: "image (start)" }];
    case "SoraExtendForward":
      return [{ start: 0, end: n, strength: s, label: "extend forward" }];
    case "SoraExtendBackward":
      return [{ start: total - n, end: total, strength: s, label: "extend backward" }];
    case "SoraSeamlessLoop":
      return [{ start: 0, end: 1, strength: s, label: "loop" }, { start: total - 1, end: total, strength: s, label: "loop" }];
    case "SoraConnectClips":
      return [{ start: 0, end: n, strength: s, label: "first clip" }, { start: total - n, end: total, strength: s, label: "second clip" }];
    case "SoraClipBlend":
      return blendSpans(w, total);
    default:
      return [];
  }
}

function blendSpans(w, total) {
  const a = clampInt(Number(w.start ?? 0.25) * total, 0, total);
  const b = clampInt(Number(w.end ?? 0.75) * total, a, total);
  const spans = [
    { start: 0, end: a, strength: Number(w.strength ?? 0.9), label: "first clip" },
    { start: a, end: b, strength: Number(w.transition_strength ?? 0.5), label: `blend (${w.curve ?? "ease_in_out"})` },
    { start: b, end: total, strength: Number(w.strength ?? 0.9), label: "second clip" },
  ];
  return spans.filter((sp) => sp.end > sp.start);
}

/** Per latent frame, the condition that pins it ({label, strength} or null): ``chain`` is
 * [{type, widgets}] from the most upstream node to the last; later ones win on shared frames. */
export function pinnedFrames(chain, total) {
  const frames = Array.from({ length: total }, () => null);
  for (const node of chain) {
    for (const sp of conditionSpans(node.type, node.widgets, total)) {
      for (let t = Math.max(0, sp.start); t < Math.min(total, sp.end); t++) {
        frames[t] = { label: sp.label, strength: sp.strength };
      }
    }
  }
  return frames;
}

/** Rectangles for a strip ``width`` px wide: one cell per latent frame
 * [{x, w, t, label, strength}] (label null = free frame), plus a legend of the labels used. */
export function layoutTimeline(chain, total, width) {
  const frames = pinnedFrames(chain, total);
  const cell = width / Math.max(1, total);
  const cells = frames.map((f, t) => ({ x: t * cell, w: cell, t, label: f ? f.label : null, strength: f ? f.strength : 0 }));
  const legend = [...new Set(frames.filter(Boolean).map((f) => f.label))];
  return { cells, legend };
}

/** A colour per label (stable by its position in the legend), alpha from the strength. */
export function cellColor(label, strength, legend) {
  if (!label) return "rgba(128,128,128,0.25)";
  const hues = [200, 30, 120, 280, 0, 60];
  const hue = hues[legend.indexOf(label) % hues.length];
  return `hsla(${hue}, 70%, 55%, ${(0.25 + 0.75 * Math.max(0, Math.min(1, strength))).toFixed(2)})`;
}
