// Sora Load Video / Save Video / Preview Video: an inline animated preview on the node (play / pause,
// frame scrub, fps shown) of the files ComfyUI serves at /view (the pack's samples at /sora/sample),
// and an upload button on Load Video (the file goes to the input folder through /upload/image, as
// LoadImage's does).
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { estimateFps, frameAt, inputPlan, previewPlan, statusText, timeOf } from "./lib/preview.js";
import { growToFit, widgetValues } from "./lib/graph.js";

const NODES = ["SoraLoadVideo", "SoraSaveVideo", "SoraPreviewVideo"];
const LOADER = "SoraLoadVideo";

class Player {
  /** The preview's elements and state: a <video> for video files, an <img> stepping through frames. */
  constructor() {
    this.root = document.createElement("div");
    // The frontend gives the DOM widget a fixed box (the node's free height): the media shrinks to fit
    // it (flex 1 1 0, min-height 0) and the controls keep their line, so nothing spills off the node.
    Object.assign(this.root.style, { display: "flex", flexDirection: "column", gap: "2px", width: "100%",
                                     height: "100%", overflow: "hidden", boxSizing: "border-box" });
    this.video = Object.assign(document.createElement("video"), { loop: true, muted: true, playsInline: true });
    this.image = document.createElement("img");
    for (const m of [this.video, this.image]) {
      Object.assign(m.style, { width: "100%", flex: "1 1 0", minHeight: "0", objectFit: "contain", display: "none" });
    }
    const bar = document.createElement("div");
    Object.assign(bar.style, { display: "flex", gap: "4px", alignItems: "center", font: "10px sans-serif",
                               flex: "0 0 auto", marginTop: "auto", color: "var(--descrip-text, #aaa)" });
    this.button = Object.assign(document.createElement("button"), { textContent: "▶", title: "play / pause" });
    Object.assign(this.button.style, { minWidth: "24px", padding: "0 4px", font: "10px sans-serif", cursor: "pointer" });
    this.scrub = Object.assign(document.createElement("input"), { type: "range", min: 0, max: 0, value: 0 });
    Object.assign(this.scrub.style, { flex: "1", minWidth: "0" });
    this.status = Object.assign(document.createElement("span"), { textContent: "no video yet" });
    this.status.style.whiteSpace = "nowrap";
    bar.append(this.button, this.scrub, this.status);
    this.root.append(this.video, this.image, bar);
    this.plan = null;
    this.frame = 0;
    this.times = [];
    this.button.onclick = () => (this.playing() ? this.pause() : this.play());
    this.scrub.oninput = () => this.seek(Number(this.scrub.value));
    this.video.onloadedmetadata = () => this.update();
    this.video.ontimeupdate = () => this.update();
    this.watchFrames();
  }

  fps() {
    return this.plan?.fps || estimateFps(this.times);
  }

  count() {
    if (!this.plan) return 0;
    if (this.plan.kind === "frames") return this.plan.paths.length;
    const fps = this.fps();
    return fps && Number.isFinite(this.video.duration) ? Math.max(1, Math.round(this.video.duration * fps)) : 0;
  }

  show(plan) {
    this.pause();
    this.plan = plan;
    this.times = [];
    this.frame = 0;
    this.video.style.display = plan?.kind === "video" ? "block" : "none";
    this.image.style.display = plan?.kind === "frames" ? "block" : "none";
    if (plan?.kind === "video") {
      this.video.src = api.apiURL(plan.paths[0]);
      this.play();
    } else if (plan?.kind === "frames") {
      this.image.src = api.apiURL(plan.paths[0]);
      if (plan.paths.length > 1) this.play();
    }
    this.update();
  }

  playing() {
    return this.plan?.kind === "video" ? !this.video.paused : Boolean(this.timer);
  }

  play() {
    if (this.plan?.kind === "video") this.video.play().catch(() => {});
    else if (this.plan?.kind === "frames" && !this.timer) {
      this.timer = setInterval(() => this.seek((this.frame + 1) % Math.max(1, this.count())), 1000 / (this.plan.fps || 8));
    }
    this.button.textContent = "❚❚";
  }

  pause() {
    this.video.pause();
    clearInterval(this.timer);
    this.timer = null;
    this.button.textContent = "▶";
  }

  seek(index) {
    this.frame = index;
    if (this.plan?.kind === "video") this.video.currentTime = timeOf(index, this.fps() || 8);
    else if (this.plan?.kind === "frames") this.image.src = api.apiURL(this.plan.paths[index] ?? this.plan.paths[0]);
    this.update();
  }

  update() {
    const count = this.count();
    if (this.plan?.kind === "video") this.frame = frameAt(this.video.currentTime, this.fps() || 0, count);
    this.scrub.max = String(Math.max(0, count - 1));
    this.scrub.value = String(this.frame);
    this.status.textContent = statusText(this.frame, count, this.fps());
  }

  watchFrames() {
    if (!this.video.requestVideoFrameCallback) return;
    const tick = (_now, meta) => {
      this.times.push(meta.mediaTime);
      if (this.times.length > 40) this.times.shift();
      this.update();
      this.video.requestVideoFrameCallback(tick);
    };
    this.video.requestVideoFrameCallback(tick);
  }
}

function fpsOf(node) {
  const fps = Number(widgetValues(node).fps);
  return fps > 0 ? fps : null;
}

async function upload(node, widget, file) {
  const body = new FormData();
  body.append("image", file);
  body.append("type", "input");
  const response = await api.fetchApi("/upload/image", { method: "POST", body });
  if (response.status !== 200) throw new Error(`upload failed: ${response.status} ${response.statusText}`);
  const data = await response.json();
  const name = data.subfolder ? `${data.subfolder}/${data.name}` : data.name;
  if (!widget.options.values.includes(name)) widget.options.values.push(name);
  widget.value = name;
  widget.callback?.(name);
}

function addUpload(node, player) {
  const widget = node.widgets.find((w) => w.name === "video");
  const chooser = Object.assign(document.createElement("input"), { type: "file", accept: "video/*,image/*" });
  chooser.style.display = "none";
  document.body.append(chooser);
  chooser.onchange = () => chooser.files.length && upload(node, widget, chooser.files[0]).catch((e) => alert(e.message));
  const button = node.addWidget("button", "choose video to upload", null, () => chooser.click());
  button.serialize = false;
  const callback = widget.callback;
  widget.callback = function (...args) {
    const r = callback?.apply(this, args);
    player.show(inputPlan(widget.value, null));
    return r;
  };
  const onRemoved = node.onRemoved;
  node.onRemoved = function (...args) {
    chooser.remove();
    return onRemoved?.apply(this, args);
  };
  return widget;
}

function addPreview(node) {
  const player = new Player();
  node.soraPlayer = player;
  const loader = (node.comfyClass ?? node.type) === LOADER;
  const choice = loader ? addUpload(node, player) : null;        // the button under the choice, as LoadImage's
  const widget = node.addDOMWidget("sora_preview", "sora_preview", player.root,
                                   { serialize: false, hideOnZoom: false, getMinHeight: () => 200 });
  widget.serialize = false;
  if (loader) {
    node.soraShowInput = () => player.show(inputPlan(choice.value, null));
    node.soraShowInput();
  }
  // The frontend's prototype onDrawBackground shows a node's output images itself (a second <video>
  // widget under the node for video files, the pngs drawn on the canvas); the player replaces it.
  node.onDrawBackground = function () {};
  growToFit(node);
  const onExecuted = node.onExecuted;
  node.onExecuted = function (message) {
    onExecuted?.apply(this, arguments);
    const plan = previewPlan(message, fpsOf(this));
    if (plan) player.show(plan);
  };
}

app.registerExtension({
  name: "comfyui-sora.preview",
  async nodeCreated(node) {
    if (NODES.includes(node.comfyClass ?? node.type)) addPreview(node);
  },
  async loadedGraphNode(node) {
    node.soraShowInput?.();
  },
});
