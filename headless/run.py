"""``sora run`` and ``sora export-api``: workflows (UI or API format) headless with the pack's nodes.

    sora run workflows/text_to_video.json --set 5.steps=8 --set "Sora Sampler.seed=3" --out outputs
    sora export-api workflows/text_to_video.json -o text_to_video.api.json

The pack is loaded the way ComfyUI loads it (its folder imported as a package), the workflow is
converted to the API format from the nodes' own input order, ``--set`` overrides inputs by node id
or title, and the graph runs with a progress bar. Files go to ``--out`` (ComfyUI's output folder
in the graph's eyes); load nodes read from ``--input`` (default: the workflow's own folder).
"""

from __future__ import annotations

import json
from pathlib import Path

from sora_core.cli import CLIError, check_writable_folder


def register(subparsers) -> None:
    run = subparsers.add_parser(
        "run", help="run a ComfyUI workflow (UI or API format) headless with the pack's nodes",
        description="Run a workflow JSON file headless: UI format (as ComfyUI saves it) or API format.")
    run.add_argument("workflow", type=Path, help="workflow JSON file")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="NODE.INPUT=VALUE",
                     help="override an input, by node id or title (repeatable), e.g. --set 5.steps=8")
    run.add_argument("--out", type=Path, default=Path("outputs"), help="output folder (default: ./outputs)")
    run.add_argument("--input", type=Path, default=None,
                     help="input folder for load nodes (default: the workflow file's folder)")
    run.add_argument("--models", type=Path, default=Path("models"),
                     help="model folder with diffusion_models/, vae/, text_encoders/ (default: ./models)")
    run.add_argument("--model", type=Path, default=None, metavar="DIR",
                     help="run every Sora Model Loader on this model folder (vae / text_encoder / dit "
                          ".safetensors, e.g. from sora train)")
    run.add_argument("--api-out", type=Path, default=None, help="also write the API prompt that ran here")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.set_defaults(func=cmd_run)

    export = subparsers.add_parser(
        "export-api", help="convert a UI-format workflow to the API format of POST /prompt",
        description="Write the API format of a workflow (what ComfyUI's 'Export (API)' saves).")
    export.add_argument("workflow", type=Path, help="workflow JSON file (UI or API format)")
    export.add_argument("-o", "--output", type=Path, default=None,
                        help="file to write (default: stdout); an existing file is never replaced")
    export.add_argument("--set", dest="overrides", action="append", default=[], metavar="NODE.INPUT=VALUE",
                        help="override an input before writing (repeatable)")
    export.set_defaults(func=cmd_export)


def _prepare(args) -> tuple[object, dict, dict]:
    """(pack module, UI-or-API workflow, API prompt with overrides applied)."""
    from . import workflow
    pack = workflow.load_pack()
    data = workflow.read_workflow(args.workflow)
    info = workflow.object_info_from_classes(pack.NODE_CLASS_MAPPINGS, pack.NODE_DISPLAY_NAME_MAPPINGS)
    api = workflow.to_api(data, info)
    model = getattr(args, "model", None)
    if model is not None:
        if not model.is_dir():
            what = "is a file" if model.is_file() else "does not exist"
            raise CLIError(f"--model {model} {what}; --model takes a model folder (vae / text_encoder / dit "
                           f".safetensors)")
        loaders = [k for k, v in api.items() if v["class_type"] == "SoraModelLoader"]
        api = apply_sets(api, [f"{k}.model_dir={model.resolve()}" for k in loaders], info)
    api = apply_sets(api, args.overrides, info)
    return pack, data, api


def apply_sets(api: dict, sets: list[str], info: dict) -> dict:
    """``--set NODE_ID.input=value`` (or ``TITLE.input``) options, converted by the inputs' declared
    types exactly as ``sora batch`` converts them (``overrides``): a prompt ``123`` stays text, a
    number must be finite and in range, links only through ``NODE_ID.input@link=NODE_ID:SLOT``."""
    from .overrides import apply_row, set_row
    apply_row(api, set_row(sets), info)
    return api


def _write_new(path: Path, text: str) -> Path:
    from sora_core.media.files import write_text
    return write_text(path, text, overwrite=False)


def cmd_export(args) -> int:
    _, _, api = _prepare(args)
    text = json.dumps(api, indent=2) + "\n"
    if args.output is None:
        print(text, end="")
    else:
        written = _write_new(args.output, text)
        print(f"wrote {written}")
    return 0


def _report(results: dict, api: dict, folders: dict) -> list[Path]:
    """Print and return the files every output node wrote."""
    files = []
    for node_id, ui in results.items():
        entries = [e for key in ("images", "gifs", "videos") for e in (ui or {}).get(key, [])]
        label = f"node {node_id} ({api[node_id]['class_type']})"
        if not entries:
            print(f"{label}: no files")
        for e in entries:
            root = folders.get(e.get("type", "output"), folders["output"])
            path = root / e.get("subfolder", "") / e["filename"]
            files.append(path)
            print(f"{label}: {path}")
    return files


def cmd_run(args) -> int:
    from . import executor
    check_writable_folder(args.out, "out")   # a missing / folder workflow: read_workflow names it
    pack, data, api = _prepare(args)
    host = pack.nodes.host
    folders = {"output": args.out.resolve(), "input": (args.input or args.workflow.parent).resolve(),
               "models": args.models.resolve()}
    host.configure(**folders, progress=not args.quiet)
    folders["temp"] = host.temp_dir()
    if args.api_out is not None:
        print(f"wrote {_write_new(args.api_out, json.dumps(api, indent=2) + chr(10))}")
    extra = {"workflow": data} if "nodes" in data else None
    results = executor.execute(api, pack.NODE_CLASS_MAPPINGS, extra_pnginfo=extra, progress=not args.quiet)
    _report(results, api, folders)
    return 0
