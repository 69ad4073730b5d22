"""The real ComfyUI frontend in headless Chromium, for the browser check (tests/test_web_browser.py) and
the scripts that measure node sizes and take screenshots (scripts/measure_node_sizes.py,
scripts/web_screenshots.py).

Chromium is Debian's ``chromium`` package (``apt-get install chromium``; ``.ci/run`` installs it), driven
by Python playwright with that executable: playwright's own browser downloads are never used.
Everything is read from the page through the frontend's ``window.app`` (graph, canvas, widgets).
"""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass, field

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--mute-audio",
                 "--autoplay-policy=no-user-gesture-required"]
VIEWPORT = {"width": 1600, "height": 1000}
APP_TIMEOUT_MS = 120_000
TITLE_HEIGHT = 30                     # LiteGraph.NODE_TITLE_HEIGHT: the title bar sits above node.pos


def chromium_path() -> str | None:
    """Debian's chromium executable, or None when it is not installed."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def playwright_available() -> bool:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False
    return True


# What the page is asked: plain functions of window.app, kept here so the test and scripts share them.
_NODES_JS = """() => window.app.graph._nodes.map((n) => ({
  id: n.id, type: n.type, title: n.title, pos: [n.pos[0], n.pos[1]], size: [n.size[0], n.size[1]],
  min: n.computeSize ? [...n.computeSize()] : null,
  registered: Boolean(window.LiteGraph.registered_node_types[n.type]),
  widgets: (n.widgets ?? []).map((w) => w.name)}))"""

_GROUPS_JS = """() => (window.app.graph._groups ?? window.app.graph.groups ?? []).map((g) => ({
  title: g.title, bounding: [...g._bounding]}))"""

_LOAD_JS = """async (wf) => {
  await window.app.loadGraphData(structuredClone(wf), true, true, null,
                                 {showMissingNodesDialog: false, showMissingModelsDialog: false});
  await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
}"""

_FIT_JS = """(margin) => {
  const c = window.app.canvas, nodes = window.app.graph._nodes;
  const groups = window.app.graph._groups ?? [];
  const boxes = nodes.map((n) => [n.pos[0], n.pos[1] - window.LiteGraph.NODE_TITLE_HEIGHT,
                                  n.size[0], n.size[1] + window.LiteGraph.NODE_TITLE_HEIGHT])
    .concat(groups.map((g) => [...g._bounding]));
  const x0 = Math.min(...boxes.map((b) => b[0])) - margin, y0 = Math.min(...boxes.map((b) => b[1])) - margin;
  const x1 = Math.max(...boxes.map((b) => b[0] + b[2])) + margin, y1 = Math.max(...boxes.map((b) => b[1] + b[3])) + margin;
  c.ds.fitToBounds([x0, y0, x1 - x0, y1 - y0], {zoom: 1});
  c.setDirty(true, true);
  return [x0, y0, x1 - x0, y1 - y0];
}"""

_SCREEN_BOX_JS = """(id) => {
  const c = window.app.canvas, n = window.app.graph.getNodeById(id);
  const r = c.canvas.getBoundingClientRect(), s = c.ds.scale, o = c.ds.offset;
  const t = window.LiteGraph.NODE_TITLE_HEIGHT;
  return [r.left + (n.pos[0] + o[0]) * s, r.top + (n.pos[1] - t + o[1]) * s, n.size[0] * s, (n.size[1] + t) * s];
}"""

# For screenshots of the canvas alone: everything but the canvas and the nodes' DOM widgets is made
# invisible (layout unchanged), with a style sheet, so no setting of the server's user is changed.
_CLEAN_CSS = """
body * { visibility: hidden !important; }
#graph-canvas, .dom-widget, .dom-widget * { visibility: visible !important; }
"""


@dataclass
class Frontend:
    """One page of the frontend, opened at ``url`` and ready (``window.app`` set up)."""
    page: object
    errors: list[str] = field(default_factory=list)

    def load(self, workflow: dict) -> list[dict]:
        """Open a UI-format workflow through app.loadGraphData; the nodes as the frontend sized them."""
        self.page.evaluate(_LOAD_JS, workflow)
        self.page.wait_for_timeout(300)                     # DOM widgets are placed on the next frames
        return self.nodes()

    def nodes(self) -> list[dict]:
        """[{id, type, title, pos, size, min, registered, widgets}] of the graph's nodes."""
        return self.page.evaluate(_NODES_JS)

    def groups(self) -> list[dict]:
        """[{title, bounding: [x, y, w, h]}] of the graph's groups."""
        return self.page.evaluate(_GROUPS_JS)

    def fit(self, margin: float = 30) -> None:
        """Zoom the canvas so every node and group is in view."""
        self.page.evaluate(_FIT_JS, margin)
        self.page.wait_for_timeout(400)

    def screen_box(self, node_id: int) -> dict:
        """The node's rectangle on the page (title bar included), for a clipped screenshot."""
        x, y, w, h = self.page.evaluate(_SCREEN_BOX_JS, node_id)
        return {"x": x, "y": y, "width": w, "height": h}

    def clean(self) -> None:
        """Hide the frontend's menus and panels for screenshots of the canvas alone."""
        self.page.add_style_tag(content=_CLEAN_CSS)
        self.page.evaluate("() => { window.app.canvas.renderInfo = () => {}; }")   # the FPS / node counts
        self.page.wait_for_timeout(200)


def _open(page, url: str) -> None:
    page.goto(url)
    page.wait_for_function("window.app && window.app.graph && window.app.canvas && window.LiteGraph "
                           "&& window.app.extensionManager", timeout=APP_TIMEOUT_MS)
    page.wait_for_function("window.app.extensions.some((e) => e.name === 'comfyui-sora.preview')",
                           timeout=APP_TIMEOUT_MS)
    page.wait_for_timeout(1000)                              # the first-run dialogs open after start-up
    page.keyboard.press("Escape")


@contextlib.contextmanager
def open_frontend(url: str, viewport: dict | None = None, scale: float = 1.0):
    """A headless Chromium page on the frontend at ``url``; page errors and console errors that come
    from this pack's files are collected in ``Frontend.errors``."""
    from playwright.sync_api import sync_playwright
    path = chromium_path()
    if path is None:
        raise RuntimeError("chromium is not installed (apt-get install chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=viewport or VIEWPORT, device_scale_factor=scale)
            front = Frontend(page)
            page.on("pageerror", lambda e: front.errors.append(f"page error: {e}"))
            page.on("console", lambda m: front.errors.append(f"console: {m.text}")
                    if m.type == "error" and "/extensions/comfyui-sora/" in (m.location or {}).get("url", "")
                    else None)
            _open(page, url)
            yield front
        finally:
            browser.close()


def boxes_overlap(a: list[float], b: list[float]) -> bool:
    """True when rectangles [x, y, w, h] share area (touching edges do not count)."""
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def node_box(node: dict) -> list[float]:
    """A node's rectangle [x, y, w, h] with its title bar."""
    return [node["pos"][0], node["pos"][1] - TITLE_HEIGHT, node["size"][0], node["size"][1] + TITLE_HEIGHT]


def overlapping(nodes: list[dict]) -> list[tuple[str, str]]:
    """Pairs of nodes ("id type") whose rectangles overlap."""
    pairs = []
    for i, a in enumerate(nodes):
        for b in nodes[i + 1:]:
            if boxes_overlap(node_box(a), node_box(b)):
                pairs.append((f"{a['id']} {a['type']}", f"{b['id']} {b['type']}"))
    return pairs
