// node --test tests/js/ : the inline preview's URLs and frame arithmetic (web/lib/preview.js).
import test from "node:test";
import assert from "node:assert/strict";
import { viewPath, inputPath, previewPlan, inputPlan, frameAt, timeOf, estimateFps, statusText } from "../../web/lib/preview.js";

test("output entries are served by /view", () => {
  assert.equal(viewPath({ filename: "video_00001_.mp4", subfolder: "sora", type: "output" }),
    "/view?filename=video_00001_.mp4&subfolder=sora&type=output");
  const plan = previewPlan({ images: [{ filename: "a.mp4", subfolder: "", type: "temp" }], animated: [true] }, 8);
  assert.deepEqual(plan, { kind: "video", paths: ["/view?filename=a.mp4&subfolder=&type=temp"], fps: 8 });
  const frames = previewPlan({ images: [{ filename: "a_1.png" }, { filename: "a_2.png" }] }, 4);
  assert.equal(frames.kind, "frames");
  assert.equal(frames.paths.length, 2);
  assert.equal(previewPlan({ images: [] }, 8), null);
});

test("Load Video's choices: input files by /view, the pack's samples by /sora/sample", () => {
  assert.equal(inputPath("clips/a b.mp4"), "/view?filename=a+b.mp4&subfolder=clips&type=input");
  assert.equal(inputPath("sora-samples/red_ball_right.mp4"), "/sora/sample?name=sora-samples%2Fred_ball_right.mp4");
  assert.equal(inputPlan("sora-samples/yellow_ball.png").kind, "frames");
  assert.equal(inputPlan("x.webm").kind, "video");
  assert.equal(inputPlan(""), null);
});

test("scrubbing maps times and frames both ways", () => {
  assert.equal(frameAt(0, 8, 17), 0);
  assert.equal(frameAt(1.0, 8, 17), 8);
  assert.equal(frameAt(99, 8, 17), 16);
  assert.equal(frameAt(1, 0, 17), 0);
  for (let i = 0; i < 17; i++) assert.equal(frameAt(timeOf(i, 8), 8, 17), i);
});

test("fps is estimated from presented frame times (median interval)", () => {
  assert.equal(estimateFps([0, 0.125, 0.25, 0.375, 0.75]), 8);
  assert.equal(estimateFps([0, 0]), null);
  assert.equal(estimateFps([]), null);
});

test("status shows the frame and the fps", () => {
  assert.equal(statusText(2, 17, 8), "frame 3 / 17 · 8 fps");
  assert.equal(statusText(0, 0, null), "frame 0 / ? · fps ?");
  assert.equal(statusText(0, 10, 23.976), "frame 1 / 10 · 23.98 fps");
});
