"""A client for a running ComfyUI server: submit API-format prompts, follow them, fetch their outputs.

Speaks ComfyUI's HTTP API (POST /prompt, GET /object_info, /history/{id}, /view, /queue,
/interrupt) and its websocket (/ws?clientId=...). The websocket is opened before the prompt is
queued and carries, for this client only:

    status              queue size (on connect and whenever the queue changes)
    execution_start     {prompt_id}
    execution_cached    {prompt_id, nodes}           nodes whose results came from the cache
    executing           {prompt_id, node}            node None: the prompt is finished
    progress            {prompt_id, node, value, max}
    executed            {prompt_id, node, output}    the node's UI output (saved files...)
    execution_error     {prompt_id, node_id, node_type, exception_type, exception_message, ...}
    execution_interrupted, execution_success
    binary frames       latent previews: uint32 event type, then the image (see ``decode_preview``)

Errors say whether they are the server's fault (``ComfyError.retryable``): a job that failed because
its server went away or ran out of memory can run on another server, a job the server rejected or a
node that raised cannot (it would fail the same way anywhere).

Plain HTTP through ``urllib`` and the websocket through ``websocket-client``; no torch, no ComfyUI.
"""

from __future__ import annotations

import json
import os
import struct
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import websocket

from sora_core.media.files import write_bytes

# ======================================================================================== errors


class ComfyError(RuntimeError):
    """A job failed on a server. ``retryable``: another server may succeed (the server was at fault)."""

    retryable = False


class ServerUnavailable(ComfyError):
    """The server cannot be reached, answered 5xx, or dropped the websocket mid-job."""

    retryable = True


class MissingNodes(ComfyError):
    """The server lacks node types the prompt uses (the pack is not installed there)."""

    retryable = True


class ValidationFailed(ComfyError):
    """The server rejected the prompt (HTTP 400). ``lines`` name each failing node and input."""

    def __init__(self, error: dict | str, node_errors: dict):
        self.error, self.node_errors = error, node_errors or {}
        self.lines = format_validation_errors(error, self.node_errors)
        super().__init__("server rejected the prompt:\n  " + "\n  ".join(self.lines))


class ExecutionFailed(ComfyError):
    """A node raised while the prompt ran (``execution_error``) or the run was interrupted."""

    def __init__(self, data: dict, interrupted: bool = False):
        self.data, self.interrupted = data, interrupted
        node = f"node {data.get('node_id')} ({data.get('node_type')})"
        if interrupted:
            msg = f"execution interrupted on the server at {node}"
        else:
            msg = f"{node} raised {data.get('exception_type')}: {str(data.get('exception_message', '')).strip()}"
        super().__init__(msg)

    @property
    def retryable(self) -> bool:  # an interrupt or running out of memory is this server's state
        kind = f"{self.data.get('exception_type', '')} {self.data.get('exception_message', '')}".lower()
        return self.interrupted or "outofmemory" in kind or "out of memory" in kind


class JobTimeout(ComfyError):
    """The prompt did not finish within the job's time limit (it is cancelled on the server)."""


def format_validation_errors(error: dict | str, node_errors: dict) -> list[str]:
    """One line per problem: ``node 5 (SoraSampler) input 'steps': Value 0 smaller than min of 1``."""
    lines = []
    for node_id, info in sorted(node_errors.items(), key=lambda kv: str(kv[0])):
        for err in info.get("errors", []):
            name = (err.get("extra_info") or {}).get("input_name") or err.get("details") or "?"
            details = str(err.get("details") or "")
            why = f" ({details})" if details and details != name else ""       # a node's own check says why here
            lines.append(f"node {node_id} ({info.get('class_type', '?')}) input '{name}': {err.get('message', '')}{why}")
    if not lines:
        if isinstance(error, dict):
            detail = f" ({error['details']})" if error.get("details") else ""
            lines.append(f"{error.get('message', error.get('type', 'invalid prompt'))}{detail}")
        else:
            lines.append(str(error))
    return lines


# ======================================================================================== events


@dataclass(frozen=True)
class Event:
    """One websocket message about a prompt: ``kind`` is the message type, ``data`` its payload."""

    kind: str
    data: dict


@dataclass(frozen=True)
class Preview:
    """A latent preview image sent as a binary websocket frame."""

    mime: str
    image: bytes
    metadata: dict = field(default_factory=dict)


def decode_preview(frame: bytes) -> Preview | None:
    """Decode ComfyUI's binary frame: big-endian uint32 event type, then for type 1 (PREVIEW_IMAGE) a
    uint32 image type (1 JPEG, 2 PNG) and the image; for type 4 (PREVIEW_IMAGE_WITH_METADATA) a uint32
    length, that much JSON metadata, and the image. Other types give None."""
    if len(frame) < 8:
        return None
    (event,) = struct.unpack(">I", frame[:4])
    if event == 1:
        (kind,) = struct.unpack(">I", frame[4:8])
        return Preview("image/png" if kind == 2 else "image/jpeg", bytes(frame[8:]))
    if event == 4:
        (n,) = struct.unpack(">I", frame[4:8])
        meta = json.loads(bytes(frame[8:8 + n]).decode("utf-8"))
        return Preview(meta.get("image_type", "image/png"), bytes(frame[8 + n:]), meta)
    return None


@dataclass
class JobResult:
    """A finished prompt: its id, the UI outputs per node (``executed`` / history) and timings."""

    prompt_id: str
    outputs: dict
    seconds: float
    cached_nodes: list = field(default_factory=list)
    previews: int = 0

    def files(self, types: tuple[str, ...] = ("output",)) -> list[dict]:
        """Every file reference ``{filename, subfolder, type}`` in the outputs, of the given types."""
        refs = []
        for node_id in sorted(self.outputs, key=str):
            for value in (self.outputs[node_id] or {}).values():
                if isinstance(value, list):
                    refs += [v for v in value
                             if isinstance(v, dict) and "filename" in v and v.get("type", "output") in types]
        return refs


# ======================================================================================== client


class ComfyClient:
    """One ComfyUI server at ``url`` (``http://host:port``). ``http_timeout``: seconds per request."""

    def __init__(self, url: str, http_timeout: float = 30.0, client_id: str | None = None):
        parsed = urllib.parse.urlparse(url if "://" in url else f"http://{url}")
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"server URL must look like http://host:port, got {url!r}")
        self.url = f"{parsed.scheme}://{parsed.netloc}{parsed.path.rstrip('/')}"
        self.ws_url = ("wss" if parsed.scheme == "https" else "ws") + self.url[len(parsed.scheme):] + "/ws"
        self.http_timeout = http_timeout
        self.client_id = client_id or uuid.uuid4().hex
        self.current: str | None = None  # the id of the prompt ``run`` is following

    def __repr__(self) -> str:
        return f"ComfyClient({self.url!r})"

    # ------------------------------------------------------------------ HTTP
    def _request(self, method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
        data = None if body is None else json.dumps(body).encode("utf-8")
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
        try:
            with urllib.request.urlopen(req, timeout=self.http_timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            if e.code >= 500:
                raise ServerUnavailable(f"{self.url}{path}: HTTP {e.code}") from e
            return e.code, e.read()
        except (urllib.error.URLError, OSError) as e:
            raise ServerUnavailable(f"{self.url}: cannot reach the server ({getattr(e, 'reason', e)})") from e

    def _json(self, method: str, path: str, body: dict | None = None) -> dict:
        status, raw = self._request(method, path, body)
        if status != 200:
            raise ComfyError(f"{self.url}{path}: HTTP {status}: {raw[:300].decode('utf-8', 'replace')}")
        try:
            return json.loads(raw)
        except json.JSONDecodeError as e:
            raise ServerUnavailable(f"{self.url}{path}: answer is not JSON ({e})") from e

    def object_info(self) -> dict:
        """GET /object_info: every node type the server knows, with its inputs and outputs."""
        return self._json("GET", "/object_info")

    def alive(self) -> bool:
        """True when the server answers GET /prompt (its queue status)."""
        try:
            self._json("GET", "/prompt")
            return True
        except ComfyError:
            return False

    def queue_prompt(self, prompt: dict, extra_data: dict | None = None) -> str:
        """POST /prompt for this client; returns the prompt id. Raises ValidationFailed on HTTP 400.
        ``extra_data``: e.g. ``{"preview_method": "auto"}`` to ask for latent previews."""
        body = {"prompt": prompt, "client_id": self.client_id}
        if extra_data:
            body["extra_data"] = dict(extra_data)
        status, raw = self._request("POST", "/prompt", body)
        try:
            answer = json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            answer = {"error": raw[:300].decode("utf-8", "replace")}
        if status == 400:
            raise ValidationFailed(answer.get("error", "invalid prompt"), answer.get("node_errors", {}))
        if status != 200 or "prompt_id" not in answer:
            raise ComfyError(f"{self.url}/prompt: HTTP {status}: {answer}")
        return str(answer["prompt_id"])

    def history(self, prompt_id: str) -> dict | None:
        """GET /history/{id}: the finished prompt's entry (outputs, status), or None while it runs."""
        return self._json("GET", f"/history/{urllib.parse.quote(prompt_id)}").get(prompt_id)

    def cancel(self, prompt_id: str) -> None:
        """Remove the prompt from the queue, or interrupt it if it is running (best effort)."""
        for path, body in (("/queue", {"delete": [prompt_id]}), ("/interrupt", {"prompt_id": prompt_id})):
            try:
                self._request("POST", path, body)
            except ComfyError:
                pass

    def download(self, ref: dict, out_dir: str | os.PathLike, prefix: str = "") -> Path:
        """GET /view for one file reference; writes ``out_dir/prefix+filename`` under a new name if
        that exists (``name_00001.ext``...), never overwriting a local file. Returns the path."""
        query = urllib.parse.urlencode({"filename": ref["filename"], "subfolder": ref.get("subfolder", ""),
                                        "type": ref.get("type", "output")})
        status, raw = self._request("GET", f"/view?{query}")
        if status != 200:
            raise ComfyError(f"{self.url}/view: HTTP {status} for {ref['filename']!r}")
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        return write_new(out_dir / (prefix + Path(ref["filename"]).name), raw)

    # ------------------------------------------------------------------ run
    def run(self, prompt: dict, on_event: Callable[[Event | Preview], None] | None = None,
            timeout: float = 3600.0, extra_data: dict | None = None) -> JobResult:
        """Queue ``prompt`` and follow it over the websocket until it finishes; returns its outputs.

        ``on_event`` receives every ``Event`` about this prompt and every ``Preview``. Raises
        ValidationFailed, ExecutionFailed, ServerUnavailable or JobTimeout (after cancelling)."""
        t0 = time.monotonic()
        ws = self._connect()
        try:
            prompt_id = self.current = self.queue_prompt(prompt, extra_data)
            run = _Follow(prompt_id, on_event)
            try:
                self._follow(ws, run, t0 + timeout)
            except JobTimeout:
                self.cancel(prompt_id)
                raise
        finally:
            self.current = None
            ws.close()
        entry = self._final_history(prompt_id)
        outputs = entry.get("outputs") or run.outputs
        return JobResult(prompt_id, outputs, time.monotonic() - t0, run.cached, run.previews)

    def _final_history(self, prompt_id: str, tries: int = 20) -> dict:
        # execution_success can arrive a moment before the history entry is written
        for _ in range(tries):
            entry = self.history(prompt_id)
            if entry:
                return entry
            time.sleep(0.1)
        return {}

    def _connect(self) -> websocket.WebSocket:
        try:
            return websocket.create_connection(f"{self.ws_url}?clientId={self.client_id}",
                                               timeout=self.http_timeout)
        except (websocket.WebSocketException, OSError) as e:
            raise ServerUnavailable(f"{self.url}: cannot open the websocket ({e})") from e

    def _follow(self, ws: websocket.WebSocket, run: "_Follow", deadline: float) -> None:
        ws.settimeout(1.0)
        last_poll = time.monotonic()
        while not run.done:
            now = time.monotonic()
            if now > deadline:
                raise JobTimeout(f"{self.url}: prompt {run.prompt_id} did not finish in time (cancelled)")
            try:
                frame = ws.recv()
            except websocket.WebSocketTimeoutException:
                if now - last_poll > 5.0:  # a missed message must not hang the job: ask the history
                    last_poll = now
                    run.from_history(self.history(run.prompt_id))
                continue
            except (websocket.WebSocketException, OSError) as e:
                raise ServerUnavailable(f"{self.url}: websocket lost during prompt {run.prompt_id} ({e})") from e
            if not frame:  # websocket-client returns an empty frame when the server closes the socket
                raise ServerUnavailable(f"{self.url}: the server closed the websocket during prompt {run.prompt_id}")
            run.feed(frame)


def write_new(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` or the first free ``stem_NNNNN.ext`` beside it, atomically, never
    overwriting an existing file (see ``files.atomic_write``)."""
    return write_bytes(path, data, overwrite=False)


class _Follow:
    """The state of one prompt as its websocket messages arrive."""

    def __init__(self, prompt_id: str, on_event):
        self.prompt_id, self.on_event = prompt_id, on_event or (lambda e: None)
        self.done, self.outputs, self.cached, self.previews = False, {}, [], 0

    def feed(self, frame: str | bytes) -> None:
        if isinstance(frame, bytes):
            preview = decode_preview(frame)
            if preview is not None:
                self.previews += 1
                self.on_event(preview)
            return
        try:
            msg = json.loads(frame)
        except json.JSONDecodeError as e:
            raise ServerUnavailable(f"the server sent a message that is not JSON: {frame[:80]!r}") from e
        kind, data = msg.get("type", ""), msg.get("data") or {}
        if data.get("prompt_id", self.prompt_id) != self.prompt_id:
            return  # another prompt of this client id, or a broadcast about one
        self.on_event(Event(kind, data))
        if kind == "executed":
            self.outputs[str(data.get("node"))] = data.get("output") or {}
        elif kind == "execution_cached":
            self.cached = list(data.get("nodes") or [])
        elif kind == "execution_error":
            raise ExecutionFailed(data)
        elif kind == "execution_interrupted":
            raise ExecutionFailed(data, interrupted=True)
        elif kind == "execution_success" or (kind == "executing" and data.get("node") is None and "prompt_id" in data):
            self.done = True

    def from_history(self, entry: dict | None) -> None:
        if not entry:
            return
        status = entry.get("status") or {}
        if status.get("status_str") == "error":
            for kind, data in status.get("messages", []):
                if kind in ("execution_error", "execution_interrupted"):
                    raise ExecutionFailed(data, interrupted=kind == "execution_interrupted")
            raise ExecutionFailed({"exception_message": "the prompt failed (see the server log)"})
        if status.get("completed", True):
            self.outputs = entry.get("outputs") or self.outputs
            self.done = True
