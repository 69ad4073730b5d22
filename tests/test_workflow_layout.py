"""The layout of workflows/*.json (scripts/workflow_layout.py, used by scripts/make_workflows.py): nodes at
least as large as the frontend makes each type (scripts/node_sizes.json, measured in the real frontend
by scripts/measure_node_sizes.py), none overlapping, each inside its stage's group and no other, one note
saying what the workflow does; the files are what make_workflows.py writes now. The same checks in the
real frontend: tests/test_web_browser.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from frontend import boxes_overlap, node_box, overlapping

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import make_workflows  # noqa: E402
import workflow_layout  # noqa: E402

WORKFLOWS = sorted((ROOT / "workflows").glob("*.json"))
SIZES = workflow_layout.measured_sizes()


@pytest.fixture(scope="module")
def info():
    from comfyui_sora.headless import workflow
    pack = workflow.load_pack(ROOT)
    return {**make_workflows.CORE,
            **workflow.object_info_from_classes(pack.NODE_CLASS_MAPPINGS, pack.NODE_DISPLAY_NAME_MAPPINGS)}


def inside(outer, inner) -> bool:
    return (outer[0] <= inner[0] and outer[1] <= inner[1] and inner[0] + inner[2] <= outer[0] + outer[2]
            and inner[1] + inner[3] <= outer[1] + outer[3])


def check_layout(ui: dict, info: dict) -> None:
    nodes = ui["nodes"]
    assert overlapping(nodes) == []
    groups = ui["groups"]
    titles = {key: title for key, title, _ in workflow_layout.STAGES}
    for node in nodes:
        box = node_box(node)
        holding = [g["title"] for g in groups if inside(g["bounding"], box)]
        touching = [g["title"] for g in groups if boxes_overlap(g["bounding"], box)]
        if node["type"] == "Note":
            assert holding == touching == [], node["id"]
        else:
            stage = titles[workflow_layout.stage_of(node["type"], info)]
            assert holding == touching == [stage], (node["id"], node["type"], holding, touching)
    for a in groups:
        assert not any(boxes_overlap(a["bounding"], b["bounding"]) for b in groups if b is not a), a["title"]


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_workflow_is_laid_out_at_the_frontend_sizes_in_stage_groups(path, info):
    ui = json.loads(path.read_text())
    for node in ui["nodes"]:
        assert node["type"] in SIZES, (f"{node['type']} was not measured in the frontend: run "
                                       f"scripts/measure_node_sizes.py, then scripts/make_workflows.py")
        assert node["size"][0] >= SIZES[node["type"]][0] and node["size"][1] >= SIZES[node["type"]][1], node["id"]
    check_layout(ui, info)
    notes = [n for n in ui["nodes"] if n["type"] == "Note"]
    assert len(notes) == 1 and len(notes[0]["widgets_values"][0]) > 40, "one note saying what it does"


@pytest.mark.parametrize("name", sorted(make_workflows.GRAPHS))
def test_workflow_files_are_what_make_workflows_writes(name, info):
    path = ROOT / "workflows" / f"{name}.json"
    assert path.is_file(), f"run python scripts/make_workflows.py {name}"
    assert json.loads(path.read_text()) == make_workflows.build(make_workflows.GRAPHS[name], info), (
        f"{path.name} is out of date: run python scripts/make_workflows.py {name}")


def test_layout_is_generic_for_new_and_unmeasured_node_types(info, capsys):
    """A graph with a type the table does not know and the sizes file has not measured: its size is
    estimated (and reported), its category picks the stage, nothing overlaps."""
    fake = {**info, "SoraSomethingNew": {**info["SoraSampler"], "category": "Sora/clips", "output_node": False}}
    graph = {1: make_workflows.loader(), 2: make_workflows.encode("a red ball"),
             3: make_workflows.latent(), 4: make_workflows.sampler(2, (3, "latent")),
             5: ("SoraSomethingNew", (3, 0), {}, {"model": (1, "model"), "conditioning": (2, "conditioning"),
                                                  "latent": (4, "latent")}),
             6: make_workflows.note("A graph made up for the test of the layout, with a new node type.")}
    ui = make_workflows.build(graph, fake)
    assert "SoraSomethingNew" in capsys.readouterr().err
    check_layout(ui, fake)
    assert [g["title"] for g in ui["groups"]] == ["Model", "Prompt", "Latent and frame conditions", "Sampling",
                                                 "Decode and save"]
