// node --test tests/js/ : the readout's pure formatting (web/lib/readout.js).
import test from "node:test";
import assert from "node:assert/strict";
import { formatReadout, formatSeconds, formatCount, hasWarnings, readoutQuery } from "../../web/lib/readout.js";

// A body as GET /sora/geometry returns it (tests/test_web_route.py checks the server side).
const BODY = {
  valid: { width: 104, height: 64, frames: 17 },
  notes: [{ field: "width", given: 100, valid: 104, why: "a multiple of 8" }],
  latent_shape: [1, 8, 5, 16, 26], token_grid: [5, 8, 13], tokens: 520,
  memory: { text: "103.0 MiB" }, step: { seconds: 0.2068, device: "cpu", assumed_tflops: 0.2 },
};

test("query carries the widget values and the loader's model folder", () => {
  const q = readoutQuery({ width: 100, height: 64, frames: 18, batch_size: 2 }, "none");
  assert.equal(q, "/sora/geometry?width=100&height=64&frames=18&batch=2&model=default&dtype=auto");
  assert.match(readoutQuery({ width: 8, height: 8, frames: 1 }, "my model", "float32"), /batch=1&model=my\+model&dtype=float32$/);
});

test("invalid values come first, each with its nearest valid value", () => {
  const lines = formatReadout(BODY);
  assert.equal(lines[0], "⚠ width 100 is not valid (a multiple of 8): nearest 104");
  assert.deepEqual(lines.slice(1), [
    "17 frames × 104×64 px", "latent 1×8×5×16×26 (B, C, T, H, W)", "tokens 5×8×13 = 520",
    "memory ≈ 103.0 MiB", "≈ 207 ms / step on cpu (assumed 0.2 TFLOP/s)"]);
  assert.ok(hasWarnings(BODY));
  assert.ok(!hasWarnings({ ...BODY, notes: [] }));
});

test("errors and missing bodies are shown as such", () => {
  assert.deepEqual(formatReadout({ error: "width must be an integer, got 'x'" }), ["⚠ width must be an integer, got 'x'"]);
  assert.deepEqual(formatReadout(null), ["…"]);
  assert.ok(hasWarnings({ error: "x" }));
});

test("numbers are formatted compactly", () => {
  assert.equal(formatCount(1234567), "1,234,567");
  assert.equal(formatCount(12), "12");
  assert.equal(formatSeconds(90), "1.5 min");
  assert.equal(formatSeconds(2.25), "2.3 s");
  assert.equal(formatSeconds(0.0004), "400 µs");
  assert.equal(formatSeconds(NaN), "?");
});
