"""The repository carries the shipped weights and no training checkpoint: an intermediate checkpoint
(``checkpoints/vae_default``, 38 MB cloned by every install) is replaced by the recipe in
docs/training.md that reproduces it from scratch. The recipe's commands are checked here against the
real ``sora`` parser, presets and option checks, so the documentation cannot drift from the CLI."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

from sora_core.cli import build_parser
from sora_core.cli.train import _check
from sora_core.train.presets import train_preset

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = {f"sora_core/default_model/{n}.safetensors" for n in ("dit", "vae", "text_encoder")}
SECTION = "### Reproducing the shipped VAE from scratch"


def repository_files() -> list[str]:
    """Paths (relative, '/'-separated) of the files git tracks; the source tree's files when this is
    not a git checkout (an unpacked release), leaving out build products and local runs."""
    try:
        out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
        if out.strip():
            return out.splitlines()
    except (OSError, subprocess.CalledProcessError):
        pass
    skip = {".git", "build", "runs", "outputs", "__pycache__", ".pytest_cache", ".hypothesis"}
    return [p.relative_to(ROOT).as_posix() for p in ROOT.rglob("*")
            if p.is_file() and not skip & set(p.relative_to(ROOT).parts)]


def test_the_repository_holds_the_shipped_weights_and_no_checkpoint():
    files = repository_files()
    weights = {f for f in files if f.endswith((".safetensors", ".pt", ".pth", ".ckpt", ".bin"))}
    assert weights == SHIPPED
    assert not [f for f in files if f.split("/")[0] == "checkpoints" or f.endswith("checkpoint.safetensors")]


def documented_commands() -> list[list[str]]:
    """The ``sora train`` commands of the reproduce section of docs/training.md, continuations joined."""
    text = (ROOT / "docs" / "training.md").read_text()
    assert SECTION in text, f"docs/training.md lost its section {SECTION!r}"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    return [shlex.split(ln)[1:] for ln in lines if ln.startswith("sora train")]


def test_the_reproduce_recipe_parses_and_chains_its_stages():
    commands = documented_commands()
    parser = build_parser()
    parsed = [parser.parse_args(argv) for argv in commands]
    for args in parsed:
        _check(args)                                            # the numbers are in range
        assert args.stage == "vae" and train_preset("vae", args.preset).name == args.preset
    first, second = parsed[0], parsed[1]
    # stage 1: the first 2,100 steps of the 4,000-step default schedule, exported there
    assert (first.preset, first.steps, first.until, first.resume) == ("default", 4000, 2100, False)
    assert first.steps == train_preset("vae", "default").loop.steps
    # stage 2 starts from stage 1's export
    assert second.preset == "default-mse" and second.vae == str(Path(first.export) / "vae.safetensors")
    resumed = [a for a in parsed if a.resume]
    assert resumed and all(any(b.out == a.out and not b.resume for b in parsed) for a in resumed)
