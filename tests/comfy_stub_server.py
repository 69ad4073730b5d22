"""A small stand-in for a ComfyUI server, for testing the batch client without ComfyUI.

It speaks the same HTTP and websocket messages as ComfyUI 0.8 (see headless/comfy_client.py) over
aiohttp, runs on 127.0.0.1 on a free port in a background thread, and "executes" prompts by walking
their nodes: progress and a binary preview for nodes with a ``steps`` input, an ``execution_error``
for a node whose ``fail`` input is true, and a file in its output folder for each output node (the
file holds the prompt's inputs as JSON, so a test can tell which job wrote it). Validation follows
ComfyUI's: unknown node types, missing required inputs, numbers out of range and values not in a
list give HTTP 400 with ``node_errors``; so does a StubSampler prompt containing "forbidden", as a node's
own ``VALIDATE_INPUTS`` would reject a value /object_info allows.

``fail`` makes the server misbehave: "http500" answers 500 to every POST /prompt; "drop" accepts
prompts, then closes the websocket mid-run and answers 500 from then on (a crashing server).
"""

from __future__ import annotations

import asyncio
import json
import struct
import threading
import uuid
from pathlib import Path

from aiohttp import web

PREVIEW = b"\x89PNG stub preview "  # + the step number: the bytes of a "latent preview" (asked for with
                                    # extra_data {"preview_method": ...}, as ComfyUI does)

# ======================================================================================== node types


def stub_object_info() -> dict:
    """Three node types in GET /object_info format: noise -> sampler -> save (an output node)."""
    def node(name, required, output, output_node=False):
        return {"input": {"required": required}, "input_order": {"required": list(required)},
                "output": output, "output_is_list": [False] * len(output), "output_name": output,
                "name": name, "display_name": name, "description": f"stub {name}", "python_module": "stub",
                "category": "stub", "output_node": output_node}
    return {
        "StubNoise": node("StubNoise", {
            "width": ["INT", {"default": 64, "min": 16, "max": 512}],
            "frames": ["INT", {"default": 9, "min": 1, "max": 65}],
            "seed": ["INT", {"default": 0, "min": 0, "max": 2 ** 64 - 1, "control_after_generate": True}],
        }, ["LATENT"]),
        "StubSampler": node("StubSampler", {
            "latent": ["LATENT", {}],
            "prompt": ["STRING", {"default": "", "multiline": True}],
            "steps": ["INT", {"default": 4, "min": 1, "max": 100}],
            "cfg": ["FLOAT", {"default": 5.0, "min": 0.0, "max": 30.0, "step": 0.1}],
            "sampler": [["euler", "heun"], {"default": "euler"}],
            "fail": ["BOOLEAN", {"default": False}],
        }, ["LATENT"]),
        "StubSave": node("StubSave", {
            "latent": ["LATENT", {}],
            "filename_prefix": ["STRING", {"default": "sora"}],
        }, [], output_node=True),
    }


def _error(kind: str, message: str, name: str, value=None) -> dict:
    return {"type": kind, "message": message, "details": name,
            "extra_info": {"input_name": name, "received_value": value}}


def validate(prompt: dict, info: dict) -> tuple[dict | None, dict]:
    """ComfyUI-style validation: (error or None, node_errors)."""
    for node_id, node in prompt.items():
        if node.get("class_type") not in info:
            return ({"type": "invalid_prompt", "message": f"Cannot execute because node {node.get('class_type')} "
                     "does not exist.", "details": f"Node ID '#{node_id}'", "extra_info": {}}, {})
    if not any(info[n["class_type"]]["output_node"] for n in prompt.values()):
        return {"type": "prompt_no_outputs", "message": "Prompt has no outputs", "details": "", "extra_info": {}}, {}
    node_errors = {}
    for node_id, node in prompt.items():
        errors = [e for name, spec in info[node["class_type"]]["input"]["required"].items()
                  if (e := _check_input(name, spec, node.get("inputs", {}), prompt)) is not None]
        if errors:
            node_errors[node_id] = {"errors": errors, "dependent_outputs": [], "class_type": node["class_type"]}
    if node_errors:
        return ({"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation",
                 "details": "", "extra_info": {}}, node_errors)
    return None, {}


def _check_input(name: str, spec: list, inputs: dict, prompt: dict) -> dict | None:
    if name not in inputs:
        return _error("required_input_missing", "Required input is missing", name)
    value, kind, opts = inputs[name], spec[0], spec[1] if len(spec) > 1 else {}
    if isinstance(value, list):  # a link [node_id, output_index]
        return None if str(value[0]) in prompt else _error("bad_linked_input", "Bad linked input", name, value)
    if name == "prompt" and "forbidden" in str(value):
        return _error("custom_validation_failed", f"Invalid prompt: {value!r} has a forbidden word", name, value)
    if isinstance(kind, list):
        return None if value in kind else _error("value_not_in_list", f"Value not in list: {name}: '{value}' "
                                                 f"not in {kind}", name, value)
    if kind in ("INT", "FLOAT"):
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return _error("invalid_input_type", f"Failed to convert an input value to a {kind} value", name, value)
        if value < opts.get("min", value):
            return _error("value_smaller_than_min", f"Value {value} smaller than min of {opts['min']}", name, value)
        if value > opts.get("max", value):
            return _error("value_bigger_than_max", f"Value {value} bigger than max of {opts['max']}", name, value)
    return None


# ======================================================================================== server


class StubComfy:
    """One stub server. ``start()`` returns its URL; ``received`` lists the prompts it accepted."""

    def __init__(self, out_dir: str | Path, fail: str | None = None, step_delay: float = 0.005):
        if fail not in (None, "http500", "drop"):
            raise ValueError(f"fail must be None, 'http500' or 'drop', got {fail!r}")
        self.out_dir, self.fail, self.step_delay = Path(out_dir), fail, step_delay
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.info = stub_object_info()
        self.received: list[dict] = []
        self.accepted_ids: list[str] = []  # prompt ids, in the order accepted
        self.interrupted: list[str] = []   # prompt ids of POST /interrupt
        self.posts = 0
        self.history: dict = {}
        self.sockets: dict = {}
        self.broken = False
        self.url = ""
        self._counter = 0

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> str:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("stub server did not start")
        return self.url

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._thread.join(10)

    def _serve(self, ready: threading.Event) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.add_routes([web.get("/ws", self._ws), web.post("/prompt", self._post_prompt),
                        web.get("/prompt", self._get_prompt), web.get("/object_info", self._object_info),
                        web.get("/history/{prompt_id}", self._history), web.get("/view", self._view),
                        web.post("/queue", self._ok), web.post("/interrupt", self._interrupt),
                        web.get("/system_stats", self._get_prompt)])
        self._runner = web.AppRunner(app)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        port = site._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self._queue: asyncio.Queue = asyncio.Queue()
        self._worker = self._loop.create_task(self._execute_loop())
        ready.set()
        self._loop.run_forever()

    async def _shutdown(self) -> None:
        self._worker.cancel()
        for ws in list(self.sockets.values()):
            await ws.close()
        await self._runner.cleanup()
        self._loop.call_soon(self._loop.stop)

    # ------------------------------------------------------------------ HTTP
    async def _ok(self, request):
        return web.Response(status=200)

    async def _interrupt(self, request):
        body = await request.json()
        self.interrupted.append(body.get("prompt_id"))
        return web.Response(status=200)

    async def _get_prompt(self, request):
        if self.broken:
            return web.Response(status=500)
        return web.json_response({"exec_info": {"queue_remaining": self._queue.qsize()}})

    async def _object_info(self, request):
        return web.json_response(self.info)

    async def _history(self, request):
        pid = request.match_info["prompt_id"]
        return web.json_response({pid: self.history[pid]} if pid in self.history else {})

    async def _view(self, request):
        q = request.rel_url.query
        name = q.get("filename", "")
        if not name or name.startswith("/") or ".." in name or q.get("type", "output") != "output":
            return web.Response(status=400)
        path = self.out_dir / q.get("subfolder", "") / name
        return web.FileResponse(path) if path.is_file() else web.Response(status=404)

    async def _post_prompt(self, request):
        self.posts += 1
        if self.fail == "http500" or self.broken:
            return web.Response(status=500, text="stub server failure")
        body = await request.json()
        prompt = body.get("prompt")
        if not isinstance(prompt, dict):
            return web.json_response({"error": {"type": "no_prompt", "message": "No prompt provided"},
                                      "node_errors": {}}, status=400)
        error, node_errors = validate(prompt, self.info)
        if error is not None:
            return web.json_response({"error": error, "node_errors": node_errors}, status=400)
        prompt_id = str(uuid.uuid4())
        self.received.append(prompt)
        self.accepted_ids.append(prompt_id)
        previews = (body.get("extra_data") or {}).get("preview_method", "none") not in ("none", "default")
        await self._queue.put((prompt_id, prompt, body.get("client_id"), previews))
        return web.json_response({"prompt_id": prompt_id, "number": len(self.received), "node_errors": {}})

    async def _ws(self, request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sid = request.rel_url.query.get("clientId") or uuid.uuid4().hex
        self.sockets[sid] = ws
        await ws.send_json({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": sid}})
        try:
            async for _ in ws:
                pass
        finally:
            self.sockets.pop(sid, None)
        return ws

    # ------------------------------------------------------------------ execution
    async def _send(self, sid, kind: str, data: dict) -> None:
        ws = self.sockets.get(sid)
        if ws is not None and not ws.closed:
            await ws.send_json({"type": kind, "data": data})

    async def _execute_loop(self) -> None:
        while True:
            prompt_id, prompt, sid, previews = await self._queue.get()
            if self.fail == "drop":  # crash mid-run: the socket goes, and the server answers 500 from now on
                self.broken = True
                for ws in list(self.sockets.values()):
                    await ws.close()
                continue
            await self._execute(prompt_id, prompt, sid, previews)

    async def _execute(self, prompt_id: str, prompt: dict, sid, previews: bool) -> None:
        await self._send(sid, "execution_start", {"prompt_id": prompt_id})
        await self._send(sid, "execution_cached", {"prompt_id": prompt_id, "nodes": []})
        outputs = {}
        for node_id in sorted(prompt, key=lambda k: int(k) if str(k).isdigit() else 0):
            node = prompt[node_id]
            inputs = node.get("inputs", {})
            await self._send(sid, "executing", {"node": node_id, "display_node": node_id, "prompt_id": prompt_id})
            if inputs.get("fail") is True:
                data = {"prompt_id": prompt_id, "node_id": node_id, "node_type": node["class_type"],
                        "executed": [], "exception_message": "stub node asked to fail",
                        "exception_type": "RuntimeError", "traceback": [], "current_inputs": {},
                        "current_outputs": []}
                await self._send(sid, "execution_error", data)
                self.history[prompt_id] = {"prompt": [0, prompt_id, prompt], "outputs": {},
                                           "status": {"status_str": "error", "completed": False,
                                                      "messages": [["execution_error", data]]}}
                await self._send(sid, "executing", {"node": None, "prompt_id": prompt_id})
                return
            for step in range(1, int(inputs.get("steps", 0)) + 1):
                await asyncio.sleep(self.step_delay)
                await self._send(sid, "progress", {"value": step, "max": inputs["steps"], "prompt_id": prompt_id,
                                                   "node": node_id})
                if previews and sid in self.sockets:  # PREVIEW_IMAGE frame: event 1, image type 2 (PNG), image bytes
                    await self.sockets[sid].send_bytes(struct.pack(">II", 1, 2) + PREVIEW + bytes([step]))
            if self.info[node["class_type"]]["output_node"]:
                outputs[node_id] = self._save(inputs.get("filename_prefix", "stub"), prompt)
                await self._send(sid, "executed", {"node": node_id, "display_node": node_id,
                                                   "output": outputs[node_id], "prompt_id": prompt_id})
        self.history[prompt_id] = {"prompt": [0, prompt_id, prompt], "outputs": outputs,
                                   "status": {"status_str": "success", "completed": True, "messages": []}}
        await self._send(sid, "execution_success", {"prompt_id": prompt_id})
        await self._send(sid, "executing", {"node": None, "prompt_id": prompt_id})

    def _save(self, prefix: str, prompt: dict) -> dict:
        self._counter += 1
        name = f"{prefix}_{self._counter:05d}_.mp4"
        values = {f"{nid}.{k}": v for nid, n in prompt.items() for k, v in n.get("inputs", {}).items()
                  if not isinstance(v, list)}
        (self.out_dir / name).write_text(json.dumps({"server": self.url, "inputs": values}, sort_keys=True))
        return {"images": [{"filename": name, "subfolder": "", "type": "output"}], "animated": [True]}


if __name__ == "__main__":  # run one by hand: python tests/comfy_stub_server.py
    import tempfile
    import time
    stub = StubComfy(tempfile.mkdtemp(prefix="comfy-stub-"))
    print(stub.start(), flush=True)
    while True:
        time.sleep(3600)
