"""``sora batch`` rows and values against a local stub server: malformed or non-UTF-8 rows files name
the line, CSV cells and --set values take the types their inputs declare, JSONL values are checked
against them, links through the explicit syntax, and the --timeout option.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from batch_helpers import free_url, run, saved, stub_servers, stubs, workflow, write  # noqa: F401 (fixtures)

from comfyui_sora.headless import batch
from comfyui_sora.headless.cli import main
from comfyui_sora.headless.workflow import WorkflowError

pytestmark = pytest.mark.timeout(60)


# ======================================================================================== rows


@pytest.mark.parametrize("name, text, expected", [
    ("ragged.csv", "2.steps,1.seed\n2,1\n3\n", "ragged.csv line 3: 1 fields, the header has 2"),
    ("header.csv", "steps\n2\n", "header.csv line 1: column 'steps' must be NODE_ID.input"),
    ("empty.csv", "2.steps\n", "empty.csv: no rows below the header"),
    ("bad.jsonl", '{"2.steps": 2}\n{"2.steps": \n', "bad.jsonl line 2: not valid JSON"),
    ("list.jsonl", '\n[1, 2]\n', "list.jsonl line 2: each line must be a JSON object"),
    ("node.csv", "2.steps\n2\n\n", None),
    ("unknown-node.csv", "2.steps,9.seed\n2,1\n", "unknown-node.csv line 2 (job job001), column 9.seed: no node "
                                                  "with id or unique title '9'; node ids: 1, 2, 3"),
    ("unknown-input.jsonl", '{"2.stepz": 4}\n', "unknown-input.jsonl line 1 (job job001), column 2.stepz: node 2 "
                                                "(StubSampler) has no input 'stepz'; its inputs: latent, prompt"),
    ("dup-column.csv", "2.steps,2.steps\n2,3\n", "dup-column.csv line 1: column '2.steps' appears twice"),
    ("same-input.csv", "2.steps,2.steps@link\n2,1:0\n", "column 2.steps@link: input 'steps' of node 2 is already "
                                                       "set by column 2.steps"),
    ("deep.jsonl", "[" * 100000 + "]" * 100000 + "\n", "deep.jsonl line 1: the JSON is nested too deeply"),
    ("dup.csv", "job,2.steps\nx,1\nx,2\n", "dup.csv line 3: job name 'x' must be unique"),
    ("rows.txt", "2.steps\n2\n", "use a .csv or .jsonl file"),
])
def test_malformed_rows_name_the_line(stubs, workflow, tmp_path, name, text, expected):
    a = stubs("a")
    rows = write(tmp_path, name, text)
    if expected is None:                                      # blank lines are skipped
        assert len(batch.prepare(str(workflow), [a.url], [], str(rows))) == 1
        return
    with pytest.raises(WorkflowError) as info:
        batch.prepare(str(workflow), [a.url], [], str(rows))
    assert expected in str(info.value)
    assert a.posts == 0                                       # nothing was submitted


def test_not_utf8_rows_are_refused(stubs, workflow, tmp_path):
    a = stubs("a")
    rows = tmp_path / "latin1.csv"
    rows.write_bytes(b"2.prompt\nna\xefve\n")
    with pytest.raises(WorkflowError, match=r"latin1.csv: not UTF-8 text"):
        batch.prepare(str(workflow), [a.url], [], str(rows))


# ======================================================================================== typed values


def test_csv_cells_take_their_inputs_declared_types(stubs, workflow, tmp_path):
    """A prompt column keeps its text (it was parsed as JSON: 123 a number, true a bool, null None,
    NaN a float, ["1",0] a link); numbers, booleans and choices are converted by the input's type."""
    a = stubs("a")
    texts = ["123", "true", "null", "NaN", '["1",0]', " two  spaces ", "@link:1:0"]
    rows = write(tmp_path, "rows.csv", "2.prompt,1.seed,2.cfg,2.fail,2.sampler,2.steps\n" + "".join(
        f'"{t.replace(chr(34), 2 * chr(34))}",{i},2.5,{b},heun,+3\n' for i, (t, b) in enumerate(zip(texts, [
            "no", "FALSE", "0", "false", "No", "false", "0"]))))
    jobs, log = run([a], workflow, tmp_path, rows=rows)
    assert [j.status for j in jobs.values()] == ["ok"] * len(texts), log
    for i, job in enumerate(jobs.values()):
        got = saved(job)["inputs"]
        assert got["2.prompt"] == texts[i] and got["1.seed"] == i
        assert got["2.cfg"] == 2.5 and got["2.fail"] is False and got["2.sampler"] == "heun" and got["2.steps"] == 3
    assert all(p["2"]["inputs"]["latent"] == ["1", 0] for p in a.received)   # the workflow's link, untouched


def test_set_values_are_typed_like_csv_cells(stubs, workflow, tmp_path):
    a = stubs("a")
    jobs, _ = run([a], workflow, tmp_path, sets=["2.prompt=42", "2.fail=no", "1.seed=7"])
    got = saved(jobs["job001"])["inputs"]
    assert got["2.prompt"] == "42" and got["2.fail"] is False and got["1.seed"] == 7


@pytest.mark.parametrize("column, cell, expected", [
    ("2.steps", "1.5", "'1.5' is not allowed; it expects an integer from 1 to 100"),
    ("2.steps", "true", "'true' is not allowed; it expects an integer from 1 to 100"),
    ("2.steps", '"[""1"",0]"', "'[\"1\",0]' is not allowed; it expects an integer from 1 to 100"),
    ("2.steps", "0", "value 0 is below the minimum 1"),
    ("1.width", "1e9", "it expects an integer from 16 to 512"),
    ("2.cfg", "NaN", "'NaN' is not allowed; it expects a finite number from 0.0 to 30.0"),
    ("2.cfg", "inf", "'inf' is not allowed; it expects a finite number"),
    ("2.cfg", "1e999", "'1e999' is not allowed; it expects a finite number"),
    ("2.cfg", "31", "value 31.0 is above the maximum 30.0"),
    ("2.fail", "maybe", "'maybe' is not allowed; it expects true or false (also yes/no, 1/0)"),
    ("2.sampler", "dpm", "value 'dpm' is not one of the allowed values: 'euler', 'heun'"),
    ("2.latent", "1:0", "the input takes a LATENT, which only a link gives: use the column 2.latent@link"),
    ("2.latent@link", "1", "'1' is not a link; write NODE_ID:SLOT"),
    ("2.latent@link", "9:0", "cannot link to node '9'; node ids: 1, 2, 3"),
    ("2.latent@link", "2:0", "cannot link to node '2'; it is the node itself"),
    ("2.latent@link", "1:1", "node 1 (StubNoise) has 1 output(s), no output 1"),
    ("2.steps@link", "1:0", "the input takes a INT but output 0 of node 1 (StubNoise) gives LATENT"),
])
def test_bad_csv_cells_name_row_job_column_and_what_is_allowed(stubs, workflow, tmp_path, column, cell, expected):
    a = stubs("a")
    rows = write(tmp_path, "rows.csv", f"job,{column}\nfine,\nodd,{cell}\n")
    with pytest.raises(WorkflowError) as info:
        batch.prepare(str(workflow), [a.url], [], str(rows))
    assert str(info.value).startswith(f"{rows} line 3 (job odd), column {column}: ")
    assert expected in str(info.value)
    assert a.posts == 0                                       # checked before anything is submitted


@pytest.mark.parametrize("line, expected", [
    ('{"2.prompt": 123}', "column 2.prompt: 123 is not allowed; it expects text"),
    ('{"2.prompt": null}', "column 2.prompt: None is not allowed; it expects text"),
    ('{"2.steps": "4"}', "column 2.steps: '4' is not allowed; it expects an integer from 1 to 100"),
    ('{"2.steps": 4.5}', "column 2.steps: 4.5 is not allowed"),
    ('{"2.steps": true}', "column 2.steps: True is not allowed"),
    ('{"2.fail": "true"}', "column 2.fail: 'true' is not allowed; it expects true or false"),
    ('{"2.cfg": NaN}', "line 1: NaN is not allowed (numbers must be finite)"),
    ('{"2.cfg": -Infinity}', "line 1: -Infinity is not allowed (numbers must be finite)"),
    ('{"2.cfg": 1e999}', "column 2.cfg: inf is not allowed; it expects a finite number"),
    ('{"2.latent": ["1", 0]}', "column 2.latent: the input takes a LATENT, which only a link gives: use the column "
                               "2.latent@link with NODE_ID:SLOT"),
    ('{"2.prompt": ["1", 0]}', "column 2.prompt: a JSON list is not a value, it expects text (to link the input, "
                               "use the key 2.prompt@link with \"NODE_ID:SLOT\")"),
    ('{"2.latent@link": ["1", 0]}', "column 2.latent@link: ['1', 0] is not a link; write NODE_ID:SLOT"),
])
def test_jsonl_values_are_checked_against_declared_types(stubs, workflow, tmp_path, line, expected):
    a = stubs("a")
    rows = write(tmp_path, "rows.jsonl", line + "\n")
    with pytest.raises(WorkflowError) as info:
        batch.prepare(str(workflow), [a.url], [], str(rows))
    assert str(info.value).startswith(f"{rows} line 1") and expected in str(info.value)
    assert a.posts == 0


def test_links_through_the_explicit_syntax(stubs, workflow, tmp_path):
    """--set / column / JSONL key NODE.input@link = NODE_ID:SLOT rewires an input; JSONL typed values pass."""
    a = stubs("a")
    api = {"1": {"class_type": "StubNoise", "inputs": {"width": 64, "frames": 9, "seed": 1}},
           "4": {"class_type": "StubNoise", "inputs": {"width": 32, "frames": 5, "seed": 2}},
           "2": {"class_type": "StubSampler", "inputs": {"latent": ["1", 0], "prompt": "x", "steps": 1, "cfg": 1.0,
                                                         "sampler": "euler", "fail": False}},
           "3": {"class_type": "StubSave", "inputs": {"latent": ["2", 0], "filename_prefix": "s"}}}
    api_path = write(tmp_path, "api.json", json.dumps(api))
    rows = write(tmp_path, "rows.jsonl", '{"job": "csvlike", "2.cfg": 3, "2.fail": true}\n'
                                         '{"job": "back", "2.latent@link": "1:0", "2.steps": 2.0}\n')
    jobs = {j.name: j for j in batch.prepare(str(api_path), [a.url], ["2.latent@link=4:0"], str(rows))}
    assert jobs["csvlike"].prompt["2"]["inputs"]["latent"] == ["4", 0]               # from --set
    assert jobs["csvlike"].prompt["2"]["inputs"]["cfg"] == 3.0 and jobs["csvlike"].prompt["2"]["inputs"]["fail"] is True
    assert jobs["back"].prompt["2"]["inputs"]["latent"] == ["1", 0]                  # the row overrides --set
    assert jobs["back"].prompt["2"]["inputs"]["steps"] == 2
    with pytest.raises(WorkflowError, match=r"^--set 2.latent@link=4:1 \(node 2 \(StubSampler\) input .latent.\): node 4 \(StubNoise\) has 1 output"):
        batch.prepare(str(api_path), [a.url], ["2.latent@link=4:1"], None)
    with pytest.raises(WorkflowError, match=r"^--set '2.steps' must look like NODE_ID.input=value"):
        batch.prepare(str(api_path), [a.url], ["2.steps"], None)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0", "-1"])
def test_timeout_must_be_finite_and_positive(workflow, capsys, value):
    code = main(["batch", "--server", free_url(), str(workflow), f"--timeout={value}"])
    err = capsys.readouterr().err
    assert code == 2 and "--timeout must be a finite number of seconds > 0" in err and "no server" not in err
