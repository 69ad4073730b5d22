// The inline video preview: URLs of the files ComfyUI serves, and the frame arithmetic of the
// scrubber. Pure functions (no DOM, no ComfyUI).

export const VIDEO_EXTS = [".mp4", ".webm", ".mov", ".mkv", ".gif"];
export const SAMPLES_PREFIX = "sora-samples/";

const isVideo = (name) => VIDEO_EXTS.some((e) => name.toLowerCase().endsWith(e));

/** "/view?..." for an output entry {filename, subfolder, type} of a node's ui dict. */
export function viewPath(entry) {
  const q = new URLSearchParams({ filename: entry.filename, subfolder: entry.subfolder ?? "", type: entry.type ?? "output" });
  return `/view?${q.toString()}`;
}

/** The path serving Sora Load Video's choice ``name``: the pack's samples from /sora/sample, the
 * input folder's files from /view. */
export function inputPath(name) {
  if (name.startsWith(SAMPLES_PREFIX)) return `/sora/sample?${new URLSearchParams({ name }).toString()}`;
  const cut = name.lastIndexOf("/");
  return viewPath({ filename: name.slice(cut + 1), subfolder: cut >= 0 ? name.slice(0, cut) : "", type: "input" });
}

/** What to show for a node's executed output ({images: [...], animated: [...]}): a video file, or a
 * sequence of frames (png output) played at ``fps``. */
export function previewPlan(output, fps) {
  const entries = output?.images ?? [];
  if (!entries.length) return null;
  if (entries.length === 1 && isVideo(entries[0].filename)) return { kind: "video", paths: [viewPath(entries[0])], fps };
  return { kind: "frames", paths: entries.map(viewPath), fps };
}

/** Plan for a Load Video choice (a video or a still image). */
export function inputPlan(name, fps) {
  if (!name) return null;
  return { kind: isVideo(name) ? "video" : "frames", paths: [inputPath(name)], fps };
}

/** The frame shown at ``seconds`` of a clip at ``fps`` with ``count`` frames (clamped). */
export function frameAt(seconds, fps, count) {
  if (!(fps > 0) || !(count > 0)) return 0;
  return Math.max(0, Math.min(count - 1, Math.floor(seconds * fps + 1e-6)));
}

/** The time (s) of frame ``index`` (the middle of the frame, so seeking lands on it). */
export function timeOf(index, fps) {
  return fps > 0 ? (index + 0.5) / fps : 0;
}

/** Frames per second from successive presented media times (requestVideoFrameCallback), the median
 * interval; null with fewer than two distinct times. */
export function estimateFps(mediaTimes) {
  const steps = [];
  for (let i = 1; i < mediaTimes.length; i++) {
    const d = mediaTimes[i] - mediaTimes[i - 1];
    if (d > 1e-4) steps.push(d);
  }
  if (!steps.length) return null;
  steps.sort((a, b) => a - b);
  return Math.round((1 / steps[Math.floor(steps.length / 2)]) * 100) / 100;
}

/** "frame 3 / 17 · 8 fps". */
export function statusText(index, count, fps) {
  const f = fps ? `${Number(fps).toFixed(fps % 1 ? 2 : 0)} fps` : "fps ?";
  return `frame ${count ? index + 1 : 0} / ${count || "?"} · ${f}`;
}
