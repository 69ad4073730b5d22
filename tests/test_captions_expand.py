"""Captions (one grammar) and prompt expansion: parsing, seeded filling, unknown words, the round trip
through the renderer and the analytic captioner, and the chat-completions expander against a stub."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from sora_core.world import vocab as V
from sora_core.world.captioner import analyze
from sora_core.world.captions import describe, long_caption, short_caption
from sora_core.prompts.expand import ChatExpander, ExpansionError, UnknownWordsError, expand_prompt, parse_prompt, prompt_to_scene
from sora_core.world.render import render
from sora_core.world.scene import sample_scene


# ---------------------------------------------------------------------------------------------
# Captions
# ---------------------------------------------------------------------------------------------

def test_long_caption_mentions_every_object_background_and_event():
    for seed in range(200):
        spec = sample_scene(seed, 64, 64, 17, 8)
        text = long_caption(spec)
        assert text == long_caption(spec)                                 # deterministic
        for o in spec.objects:
            phrase = f"a {o.size} {o.colour} {V.SHAPE_NOUN[o.shape]} {V.MOTION_PHRASE[o.motion]}"
            assert phrase in text.lower()
            assert f"{o.colour} {V.SHAPE_NOUN[o.shape]} {V.MOTION_PHRASE[o.motion]}" in short_caption(spec)
        for c in spec.background.colours:
            assert c in text
        assert ("textured ground" in text) == spec.background.ground
        assert ("behind a bar" in text) == (spec.event.kind == "occluder")
        assert ("leaves a trail" in text) == (spec.event.kind == "brush")
        assert ("camera pans" in text) == (spec.event.kind == "pan")


def test_captions_parse_back_to_the_scene():
    for seed in range(300):
        spec = sample_scene(seed, 64, 64, 17, 8)
        d = describe(spec)
        p = parse_prompt(long_caption(spec))
        assert p.unknown == []
        assert [(o.shape, o.colour, o.size, o.motion) for o in p.objects] == \
            [(o.shape, o.colour, o.size, o.motion) for o in d.objects]
        assert (p.background or "solid", tuple(p.colours), bool(p.ground)) == (d.background, d.colours, d.ground)
        assert (p.event or "none", p.pan) == (d.event, d.pan)
        if d.event in ("occluder", "brush"):
            assert p.target == d.target
        s = parse_prompt(short_caption(spec))
        assert [(o.shape, o.colour, o.motion) for o in s.objects] == [(o.shape, o.colour, o.motion) for o in d.objects]


# ---------------------------------------------------------------------------------------------
# Parsing and expansion
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("prompt,objects", [
    ("a red ball bouncing", [("circle", "red", None, "bouncing")]),
    ("A small blue box moving to the left", [("square", "blue", "small", "left")]),
    ("a bouncing big green circle and a tiny violet square going up",
     [("circle", "green", "large", "bouncing"), ("square", "purple", "small", "up")]),
    ("two balls", [("circle", None, None, None)] * 2),
    ("a yellow triangle that is standing still", [("triangle", "yellow", None, "static")]),
    ("a white disc drifting", [("circle", "white", None, "moving")]),
])
def test_parse_synonyms(prompt, objects):
    p = parse_prompt(prompt)
    assert [(o.shape, o.colour, o.size, o.motion) for o in p.objects] == objects and p.unknown == []


def test_parse_background_and_events():
    p = parse_prompt("a red ball on a gradient from navy to black above a textured ground")
    assert (p.background, p.colours, p.ground) == ("gradient", ["navy", "black"], True)
    assert parse_prompt("a box on a dark green background").colours == ["green"]
    p = parse_prompt("a cyan box and a red ball that passes behind a bar")
    assert (p.event, p.target) == ("occluder", 1)
    assert parse_prompt("a ball, the camera pans left").pan == "left"
    assert parse_prompt("an orange box leaves a trail").event == "brush"


def test_expansion_is_seeded_and_keeps_the_prompt():
    texts = {expand_prompt("a red ball bouncing", s) for s in range(12)}
    assert len(texts) > 3                                               # fills differ with the seed
    assert expand_prompt("a red ball bouncing", 5) == expand_prompt("a red ball bouncing", 5)
    for seed in range(30):
        spec = prompt_to_scene("a small red ball bouncing and a blue box", seed)
        assert len(spec.objects) == 2
        assert (spec.objects[0].colour, spec.objects[0].shape, spec.objects[0].size,
                spec.objects[0].motion) == ("red", "circle", "small", "bouncing")
        assert (spec.objects[1].colour, spec.objects[1].shape) == ("blue", "square")
        assert spec.event.kind == "none"                                # events only when asked for
        text = expand_prompt("a small red ball bouncing and a blue box", seed)
        assert text.startswith("A small red ball bouncing and a ") and "blue box" in text


def test_unknown_words_are_reported_not_dropped():
    with pytest.raises(UnknownWordsError) as e:
        expand_prompt("a red dragon flying over the moon", 0)
    assert e.value.words == ["dragon", "moon"] and "dragon" in str(e.value)
    assert parse_prompt("a red dragon").unknown == ["dragon"]
    assert isinstance(e.value, ValueError)


@pytest.mark.parametrize("prompt,word", [
    ("two red balls", "same colour and shape"), ("a ball and a box and a triangle and a ball", "1 to 3"),
    ("a ball leaves a trail, the camera pans", "two events"), ("a ball on a red background", None),
])
def test_impossible_prompts_get_clear_errors(prompt, word):
    if word is None:                                                    # a red background is dark red
        assert parse_prompt(prompt).colours == ["maroon"]
        return
    with pytest.raises(ValueError, match=word):
        prompt_to_scene(prompt, 0)


def test_events_that_cannot_happen_are_refused():
    with pytest.raises(ValueError, match="too short"):
        prompt_to_scene("a ball passes behind a bar", 0, frames=1)
    with pytest.raises(ValueError, match="needs its object to move"):
        prompt_to_scene("a red ball standing still leaves a trail", 0)


@pytest.mark.parametrize("prompt", [
    "a red ball bouncing", "a small blue box moving left", "a large yellow triangle moving up",
    "a white ball standing still and a green box moving right on a plain navy background",
    "a purple box moving down above a textured ground", "an orange ball passes behind a bar",
    "a cyan triangle moving right leaves a trail", "a red box standing still, the camera pans left",
])
def test_round_trip_prompt_scene_render_caption(prompt):
    want = parse_prompt(prompt)
    for seed in range(3):
        spec = prompt_to_scene(prompt, seed, width=96, height=64, frames=17, fps=8)
        a = analyze(render(spec), fps=8)
        seen = a.description()
        assert len(seen.objects) == len(want.objects)
        for w, o in zip(want.objects, _match(want.objects, seen.objects)):
            for attr in ("shape", "colour", "size", "motion"):
                if getattr(w, attr) is not None:
                    assert getattr(o, attr) == getattr(w, attr), (prompt, seed, attr)
        if want.event:
            assert seen.event == want.event
        if want.pan:
            assert seen.pan == want.pan
        if want.colours:
            assert seen.colours == tuple(want.colours)
        if want.ground:
            assert seen.ground


def _match(wanted, seen):
    """The seen object of each wanted one (every prompt above names colour and shape)."""
    return [next((o for o in seen if (o.colour, o.shape) == (w.colour, w.shape)), None) or seen[0]
            for w in wanted]


# ---------------------------------------------------------------------------------------------
# Chat-completions expander
# ---------------------------------------------------------------------------------------------

class _Stub(BaseHTTPRequestHandler):
    mode = "ok"
    seen: list = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Stub.seen.append((self.path, self.headers.get("Authorization"), body))
        if _Stub.mode == "slow":
            time.sleep(1.0)
        if _Stub.mode == "error":
            self.send_response(500)
            self.end_headers()
            self.wfile.write(b"model exploded")
            return
        payload = (b"not json" if _Stub.mode == "garbage" else json.dumps(
            {"choices": [{"message": {"role": "assistant",
                                      "content": " A large red ball bouncing, on a plain black background. "}}]}).encode())
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):                  # the client timed out
            pass

    def log_message(self, *args):
        pass


@pytest.fixture
def stub_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Stub.seen.clear()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_chat_expander_posts_a_chat_completion(stub_server):
    _Stub.mode = "ok"
    chat = ChatExpander(stub_server, "tiny-chat", api_key="k123", timeout=5)
    assert chat.expand("a red ball") == "A large red ball bouncing, on a plain black background."
    path, auth, body = _Stub.seen[0]
    assert path == "/v1/chat/completions" and auth == "Bearer k123"
    assert body["model"] == "tiny-chat" and body["messages"][-1] == {"role": "user", "content": "a red ball"}
    assert body["messages"][0]["role"] == "system"


@pytest.mark.parametrize("mode,match", [("error", "HTTP 500"), ("garbage", "not a chat completion"),
                                        ("slow", "did not answer within")])
def test_chat_expander_failures_are_clear(stub_server, mode, match):
    _Stub.mode = mode
    with pytest.raises(ExpansionError, match=match):
        ChatExpander(stub_server, "tiny-chat", timeout=0.3).expand("a red ball")


def test_chat_expander_checks_its_settings_and_unreachable_servers():
    with pytest.raises(ValueError, match="base_url"):
        ChatExpander("localhost:8000", "m")
    with pytest.raises(ValueError, match="model"):
        ChatExpander("http://localhost:8000/v1", " ")
    with pytest.raises(ValueError, match="timeout"):
        ChatExpander("http://localhost:8000/v1", "m", timeout=0)
    with pytest.raises(ExpansionError, match="cannot reach"):
        ChatExpander("http://127.0.0.1:9/v1", "m", timeout=2).expand("a ball")


def test_a_prompt_schedule_is_expanded_prompt_by_prompt():
    from sora_core.prompts.expand import expand_schedule
    from sora_core.prompts.schedule import ScheduleError, parse_schedule
    assert expand_schedule("a red ball bouncing", 4) == expand_prompt("a red ball bouncing", 4)
    text = expand_schedule("0:a red ball moving right | 20.5:a blue box bouncing", 4)
    cues = parse_schedule(text, 60)
    assert [c.seconds for c in cues] == [0.0, 20.5]
    assert [c.prompt for c in cues] == [expand_prompt("a red ball moving right", 4),
                                        expand_prompt("a blue box bouncing", 4)]
    with pytest.raises(UnknownWordsError, match="dragon"):
        expand_schedule("0:a red ball | 10:a dragon", 0)
    with pytest.raises(ScheduleError, match="start at 0"):
        expand_schedule("5:a red ball", 0)


def test_the_expander_node_takes_schedules_and_names_its_input():
    from comfyui_sora.headless import workflow
    node = workflow.load_pack().NODE_CLASS_MAPPINGS["SoraPromptExpand"]()
    (caption,) = node.expand("0:a red ball | 30:a green triangle moving left", 2)
    assert caption.startswith("0:A ") and " | 30:A " in caption and "green triangle moving left" in caption
    with pytest.raises(ValueError, match="Sora Prompt Expander: input 'text'.*dragon"):
        node.expand("a red dragon", 0)
    # an optional start image (IMAGE, floats in [0, 1]) gives an open size its own
    from sora_core.world.render import render
    from sora_core.world.scene import ObjectRequest, sample_scene
    small = render(sample_scene(5, 64, 64, 1, 8.0, n_objects=1, objects=[ObjectRequest("square", "red", "small")]))
    image = torch.from_numpy(small).float() / 255
    assert node.expand("a red box", 3)[0].startswith("A large red box")
    assert node.expand("a red box", 3, image=image)[0].startswith("A small red box")
    assert node.expand("0:a red box | 5:a big blue ball", 3, image=image)[0].startswith("0:A small red box")
    assert "5:A large blue ball" in node.expand("0:a red box | 5:a big blue ball", 3, image=image)[0]


def test_expansion_gives_an_open_size_the_large_objects_the_model_draws_right(monkeypatch):
    """An object whose size the prompt leaves open is large (expand.OPEN_SIZE); a size the prompt says
    is kept; open_size=None draws sizes as the world does; a scene too crowded at that size falls back
    to drawn sizes instead of failing."""
    import sora_core.world.scene as E          # where the scene is placed
    sizes = lambda text, **kw: [tuple(o.size for o in prompt_to_scene(text, s, **kw).objects) for s in range(30)]
    assert set(sizes("a red box moving left")) == {("large",)}
    assert set(sizes("a tiny red box")) == {("small",)} and set(sizes("a big red box")) == {("large",)}
    assert set(sizes("a small red ball and a blue box")) == {("small", "large")}
    assert set(sizes("a red box", open_size=None)) == {("small",), ("large",)}
    assert set(sizes("a red box", open_size="small")) == {("small",)}
    assert expand_prompt("a red box", 3).startswith("A large red box")
    with pytest.raises(ValueError, match="open_size='huge' is unknown; allowed: small, large or None"):
        prompt_to_scene("a red box", 0, open_size="huge")
    real = E.sample_scene

    asked = []

    def crowded(*a, objects=None, **k):
        asked.append([o.size for o in objects])
        if any(o.size == "large" for o in objects):
            raise ValueError("cannot place 3 objects without overlap in a 16x16 frame")
        return real(*a, objects=objects, **k)
    monkeypatch.setattr(E, "sample_scene", crowded)
    spec = prompt_to_scene("a red ball and a small blue box and a green triangle", 4, width=16, height=16, frames=5)
    assert [o.shape for o in spec.objects] == ["circle", "square", "triangle"] and spec.objects[1].size == "small"
    assert asked == [["large", "small", "large"], [None, "small", None]]
