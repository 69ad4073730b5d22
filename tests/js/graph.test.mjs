// node --test tests/js/ : reading widget values and the frame-condition chain (web/lib/graph.js),
// on plain stand-ins for the frontend's nodes.
import test from "node:test";
import assert from "node:assert/strict";
import { conditionChain, growToFit, inputNode, widgetValues } from "../../web/lib/graph.js";
import { CONDITION_NODES } from "../../web/lib/timeline.js";

function node(type, widgets, inputs = {}) {
  const names = Object.keys(inputs);
  return {
    comfyClass: type,
    widgets: Object.entries(widgets).map(([name, value]) => ({ name, value })),
    inputs: names.map((name) => ({ name, link: inputs[name] ? 1 : null })),
    getInputNode(slot) { return inputs[names[slot]]; },
  };
}

test("widget values by name; unconnected inputs give null", () => {
  const n = node("SoraEmptyLatent", { width: 64, frames: 17 }, { model: null });
  assert.deepEqual(widgetValues(n), { width: 64, frames: 17 });
  assert.equal(inputNode(n, "model"), null);
  assert.equal(inputNode(n, "missing"), null);
});

test("the chain follows 'previous' from the most upstream condition to the sampler's input", () => {
  const loop = node("SoraSeamlessLoop", { strength: 1 });
  const image = node("SoraImageToVideo", { position: "end", strength: 0.5 }, { previous: loop });
  const sampler = node("SoraSampler", { steps: 4 }, { frame_conditions: image });
  assert.deepEqual(conditionChain(inputNode(sampler, "frame_conditions"), CONDITION_NODES).map((c) => c.type),
    ["SoraSeamlessLoop", "SoraImageToVideo"]);
  assert.deepEqual(conditionChain(sampler, CONDITION_NODES), []);
});

test("a cycle in a malformed graph does not loop forever", () => {
  const a = node("SoraExtendForward", { latent_frames: 2, strength: 1 }, { previous: null });
  a.inputs[0].link = 1;
  a.getInputNode = () => a;
  assert.equal(conditionChain(a, CONDITION_NODES).length, 1);
});

test("growToFit grows a node to what its widgets need and never shrinks it", () => {
  const sized = (size, need) => ({ size: [...size], computeSize: () => [...need],
                                    setSize(s) { this.size = [...s]; } });
  const short = sized([270, 386], [210, 398]);                  // a new node, before its DOM widget counted
  assert.equal(growToFit(short), true);
  assert.deepEqual(short.size, [270, 398]);
  const large = sized([340, 500], [210, 398]);                  // a user's larger size stays
  assert.equal(growToFit(large), false);
  assert.deepEqual(large.size, [340, 500]);
  assert.equal(growToFit({ size: [1, 1] }), false);             // no computeSize: left alone
});
