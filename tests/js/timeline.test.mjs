// node --test tests/js/ : the frame-condition timeline's layout (web/lib/timeline.js).
import test from "node:test";
import assert from "node:assert/strict";
import { conditionSpans, pinnedFrames, layoutTimeline, cellColor, CONDITION_NODES } from "../../web/lib/timeline.js";

const labels = (frames) => frames.map((f) => (f ? f.label : null));

test("each condition node pins the frames it documents", () => {
  assert.deepEqual(conditionSpans("SoraImageToVideo", { position: "start", strength: 1 }, 5),
    [{ start: 0, end: 1, strength: 1, label: "image (start)" }]);
  assert.deepEqual(conditionSpans("SoraImageToVideo", { position: "end", strength: 0.5 }, 5)[0].start, 4);
  assert.deepEqual(conditionSpans("SoraExtendForward", { latent_frames: 2, strength: 1 }, 5)[0], { start: 0, end: 2, strength: 1, label: "extend forward" });
  assert.deepEqual(conditionSpans("SoraExtendBackward", { latent_frames: 2, strength: 1 }, 5)[0].start, 3);
  assert.deepEqual(conditionSpans("SoraSeamlessLoop", { strength: 1 }, 5).map((s) => [s.start, s.end]), [[0, 1], [4, 5]]);
  assert.deepEqual(conditionSpans("SoraConnectClips", { latent_frames: 1, strength: 1 }, 5).map((s) => s.label), ["first clip", "second clip"]);
  assert.deepEqual(conditionSpans("SoraUnknown", {}, 5), []);
  assert.equal(CONDITION_NODES.length, 6);
});

test("latent_frames is clamped to the latent's length", () => {
  assert.deepEqual(conditionSpans("SoraExtendForward", { latent_frames: 64, strength: 1 }, 3)[0], { start: 0, end: 3, strength: 1, label: "extend forward" });
});

test("clip blend holds every frame: clips at strength, the blend at transition_strength", () => {
  const spans = conditionSpans("SoraClipBlend", { start: 0.25, end: 0.75, strength: 0.9, transition_strength: 0.5, curve: "linear" }, 8);
  assert.deepEqual(spans.map((s) => [s.start, s.end, s.strength]), [[0, 2, 0.9], [2, 6, 0.5], [6, 8, 0.9]]);
  assert.equal(spans[1].label, "blend (linear)");
});

test("later conditions in the chain win on shared frames; free frames stay null", () => {
  const chain = [{ type: "SoraSeamlessLoop", widgets: { strength: 1 } },
                 { type: "SoraImageToVideo", widgets: { position: "end", strength: 0.5 } }];
  const frames = pinnedFrames(chain, 4);
  assert.deepEqual(labels(frames), ["loop", null, null, "image (end)"]);
  assert.equal(frames[3].strength, 0.5);
});

test("layout gives one cell per latent frame across the width and a legend", () => {
  const { cells, legend } = layoutTimeline([{ type: "SoraExtendForward", widgets: { latent_frames: 2, strength: 1 } }], 4, 200);
  assert.deepEqual(cells.map((c) => [c.x, c.w, c.label]), [[0, 50, "extend forward"], [50, 50, "extend forward"], [100, 50, null], [150, 50, null]]);
  assert.deepEqual(legend, ["extend forward"]);
  assert.match(cellColor("extend forward", 1, legend), /^hsla\(200, 70%, 55%, 1.00\)$/);
  assert.match(cellColor(null, 0, legend), /rgba/);
});
