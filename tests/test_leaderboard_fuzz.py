"""Property-based fuzzing of what the leaderboard reads from a submitter: arbitrary bytes and
JSON-ish documents as a results file, npz archives with random npy headers, shapes, dtypes and
damaged bytes as predictions. Every input must end in a refusal (:class:`Rejected`) or an
acceptance, never in any other exception. Bounded: a few hundred examples, well under a minute."""
from __future__ import annotations

import copy
import io
import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from benchmarks import run as bench_run
from benchmarks.tasks import get_task
from leaderboard import pipeline
from leaderboard.board import Board
from leaderboard.errors import Rejected
from leaderboard.pipeline import Context, Options, check_results_file
from leaderboard.safeio import inspect_npz, load_members, loads_strict

SETTINGS = dict(deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])
TASK = "pointcloud-reconstruction"


@pytest.fixture(scope="module")
def honest(tmp_path_factory) -> Path:
    """A real --quick results file (seconds) with its predictions; the fuzzed copies go next to it."""
    out = tmp_path_factory.mktemp("fuzz")
    argv = ["--model", "blur", "--model-arg", "sigma=0.1", "--task", TASK, "--quick", "--out", str(out),
            "--data-root", str(out / "data"), "--no-progress"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", ["benchmarks/run.py", *argv])
        assert bench_run.main(argv) == 0
    (path,) = out.glob("*.json")
    return path


def outcome(fn):
    """'ok' or the refusal code; anything else propagates (and fails the property)."""
    try:
        fn()
        code = "ok"
    except Rejected as err:
        assert err.code and "\n" not in err.message
        code = err.code
    event(code)
    return code


json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-10 ** 20, 10 ** 20),
                      st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=30))
json_value = st.recursive(json_leaf, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                              st.dictionaries(st.text(max_size=10), inner, max_size=4)),
                          max_leaves=20)


@settings(max_examples=150, **SETTINGS)
@given(data=st.binary(max_size=400))
def test_arbitrary_bytes_as_results(data, tmp_path_factory):
    d = tmp_path_factory.mktemp("b")
    (d / "r.json").write_bytes(data)
    outcome(lambda: pipeline.submit(d / "r.json", board=Board(d / "board")))
    assert not (d / "board" / "entries").exists()


@settings(max_examples=100, **SETTINGS)
@given(value=json_value)
def test_json_values_as_results(value, tmp_path_factory):
    d = tmp_path_factory.mktemp("j")
    (d / "r.json").write_text(json.dumps(value))
    outcome(lambda: pipeline.submit(d / "r.json", board=Board(d / "board")))


def _paths(doc, prefix=()):
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield (*prefix, k)
            yield from _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield (*prefix, i)
            yield from _paths(v, (*prefix, i))


@settings(max_examples=200, **SETTINGS)
@given(data=st.data())
def test_mutated_documents(data, honest, tmp_path_factory):
    """The honest document with one field replaced by a random JSON value (or removed): every
    check before the predictions must refuse or pass it, never crash."""
    doc = json.loads(honest.read_text())
    paths = sorted(_paths(doc), key=str)
    path = data.draw(st.sampled_from(paths))
    node = doc
    for k in path[:-1]:
        node = node[k]
    if data.draw(st.booleans()) and isinstance(node, dict):
        del node[path[-1]]
    else:
        node[path[-1]] = data.draw(json_value)
    d = tmp_path_factory.mktemp("m")
    (d / honest.name).write_text(json.dumps(doc))
    options = Options(allow_quick=True)
    outcome(lambda: check_results_file(d / honest.name, board=Board(d / "board"), options=options,
                                       stop_after="same_name"))


@settings(max_examples=100, **SETTINGS)
@given(data=st.data())
def test_mutated_stored_entries(data, honest, tmp_path_factory):
    """A stored entry (predictions next to it) with one field replaced or removed: validate
    refuses or passes it, never crashes."""
    import shutil

    from leaderboard.board import PREDICTIONS_SUFFIX, entry_stem, make_entry

    doc = json.loads(honest.read_text())
    predictions = honest.parent / doc["predictions"]["file"]
    entry = make_entry(doc, doc["predictions"]["sha256"], doc["predictions"]["bytes"], None)
    path = data.draw(st.sampled_from(sorted(_paths(entry), key=str)))
    node = entry
    for k in path[:-1]:
        node = node[k]
    if data.draw(st.booleans()) and isinstance(node, dict):
        del node[path[-1]]
    else:
        node[path[-1]] = data.draw(json_value)
    if data.draw(st.booleans()):  # a forger rehashes what was edited
        from leaderboard.board import content_hash
        from leaderboard.safeio import canonical_json, sha256_hex

        try:
            entry["results_sha256"] = sha256_hex(canonical_json(entry["results"]))
        except (KeyError, TypeError):
            pass
        if isinstance(entry, dict):
            entry["content_sha256"] = content_hash(entry)
    folder = tmp_path_factory.mktemp("e") / "entries" / TASK
    folder.mkdir(parents=True)
    try:
        stem = entry_stem(entry)
    except (KeyError, TypeError, AttributeError):
        stem = "x-000000000000"
    stem = stem if "/" not in stem else "x-000000000000"
    (folder / f"{stem}.json").write_text(json.dumps(entry))
    shutil.copy(predictions, folder / f"{stem}{PREDICTIONS_SUFFIX}")
    outcome(lambda: pipeline.validate_entry(folder / f"{stem}.json", Board(folder.parent.parent), [],
                                            Options(allow_quick=True)))


# ------------------------------------------------------------------------------------ npz

DESCRS = ["<f8", "<f4", "<f2", ">f8", "<i8", "<u1", "|b1", "<c16", "<U5", "|S3", "|O", "<V8", "", "<f0", "<U0",
          "[('a', '<f8')]", "1", "<M8[s]", "<m8", "zz"]


VALID = ["<f8", "<f4", "<f2", ">f8", "<i8", "<u1", "|b1", "<c16", "<U5", "|S3"]


@st.composite
def npy_member(draw):
    """An .npy member: half the time a consistent header and data of a random dtype and small
    shape, else a random (often lying) header with random data."""
    if draw(st.booleans()):
        descr = draw(st.sampled_from(VALID))
        shape = tuple(draw(st.lists(st.integers(0, 5), max_size=3)))
        itemsize = np.dtype(descr).itemsize
        data = draw(st.binary(min_size=int(np.prod(shape)) * itemsize, max_size=int(np.prod(shape)) * itemsize))
        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": draw(st.booleans()),
                                                   "shape": shape})
        return buf.getvalue() + data
    descr = draw(st.sampled_from(DESCRS))
    shape = tuple(draw(st.lists(st.one_of(st.integers(0, 6), st.integers(0, 10 ** 13), st.integers(-3, -1)),
                                max_size=3)))
    fortran = draw(st.booleans())
    if descr.startswith("["):
        header = "{'descr': %s, 'fortran_order': %s, 'shape': %r, }" % (descr, fortran, shape)
    else:
        header = "{'descr': %r, 'fortran_order': %s, 'shape': %r, }" % (descr, fortran, shape)
    if draw(st.integers(0, 4)) == 0:
        header = draw(st.text(max_size=60))
    raw = header.encode("latin1", "replace")
    version = draw(st.sampled_from([(1, 0), (2, 0), (3, 0), (9, 9)]))
    body = raw + b" " * ((-len(raw) - 11) % 64) + b"\n"
    lenfield = len(body).to_bytes(2 if version[0] == 1 else 4, "little")
    prefix = b"\x93NUMPY" + bytes(version) + lenfield if draw(st.integers(0, 9)) else draw(st.binary(max_size=12))
    data = draw(st.binary(max_size=200))
    return prefix + body + data


GOOD_NAMES = ["gdb_index", "y_pred", "targets", "positions", "weights", "x"]


@st.composite
def npz_archive(draw):
    names = draw(st.lists(st.sampled_from(GOOD_NAMES * 8 + ["../up", "a/b", "", "y_pred.npy"]), min_size=0,
                          max_size=4, unique=draw(st.integers(0, 9)) > 0))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))) as zf:
        for n in names:
            zf.writestr(n + (".npy" if draw(st.integers(0, 30)) else ".txt"), draw(npy_member()))
    raw = buf.getvalue()
    if raw and draw(st.integers(0, 5)) == 0:  # flip a byte somewhere
        i = draw(st.integers(0, len(raw) - 1))
        raw = raw[:i] + bytes([raw[i] ^ draw(st.integers(1, 255))]) + raw[i + 1:]
    return raw


def _qm9_context(raw: bytes) -> Context:
    from benchmarks.qm9 import TARGETS

    task = get_task("qm9-small")
    doc = {"task": task.record(None), "protocol": {"quick": False},
           "metrics": {"per_seed": [{"seed": 0, "avg_mae": 1.0}], "aggregate": {"avg_mae": {"mean": 1.0, "std": 0.0}}}}
    ctx = Context("submit", Board(Path("/nonexistent-board")), doc=doc)
    ctx.task, ctx.pred_source = task, raw
    assert TARGETS
    return ctx


CHECKS_ON_ARRAYS = ("npz_members", "prediction_dtypes", "load_predictions", "identical_seeds", "rescore_metrics")


@pytest.mark.filterwarnings("ignore:Duplicate name")
@settings(max_examples=250, **SETTINGS)
@given(raw=npz_archive())
def test_npz_with_random_headers(raw):
    """inspect_npz + load_members, and the pipeline's array checks and rescoring of qm9-small,
    on random archives: a refusal or arrays, nothing else (no allocation from a lying header)."""
    code = outcome(lambda: load_members(raw, inspect_npz(raw)))
    ctx = _qm9_context(raw)
    code2 = outcome(lambda: pipeline.run_checks(ctx, CHECKS_ON_ARRAYS))
    assert code != "ok" or code2 != "too-large"


@settings(max_examples=60, **SETTINGS)
@given(data=st.data())
def test_well_formed_arrays_of_random_shapes_are_scored_or_refused(data):
    """Plausible qm9-small predictions of random shapes and kinds through the scorer."""
    from benchmarks.qm9 import TARGETS

    n = data.draw(st.sampled_from([0, 1, 999, 1000, 1001]))
    seeds = data.draw(st.integers(0, 3))
    arrays = {"gdb_index": np.arange(n, dtype=data.draw(st.sampled_from([np.int64, np.uint8, np.float64]))),
              "y_pred": np.zeros((seeds, n, data.draw(st.sampled_from([11, 12]))), data.draw(st.sampled_from(
                  [np.float64, np.float16, np.int32, np.complex64]))),
              "targets": np.array(TARGETS if data.draw(st.booleans()) else ["x"])}
    if data.draw(st.booleans()):
        arrays["y_pred"] = arrays["y_pred"][..., 0]
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    outcome(lambda: pipeline.run_checks(_qm9_context(buf.getvalue()), CHECKS_ON_ARRAYS))


TOKENS = ["--model", "blur", "identity", "--task", "qm9", "pointcloud-reconstruction", "--quick", "--seeds", "3", "-1",
          "--model-arg", "sigma=0.1", "sigma", "=", "--variant", "pubchem", "'", '"', "--help", "--out", "x", "--he",
          "--qu", "\\", "\x00", "--data-root", "--head", "paper000"]


@settings(max_examples=100, **SETTINGS)
@given(text=st.one_of(st.text(max_size=100), st.lists(st.sampled_from(TOKENS), max_size=10).map(" ".join)))
def test_recorded_command_never_crashes(text, honest):
    doc = json.loads(honest.read_text())
    doc["command"] = "python -m benchmarks.run " + text
    ctx = Context("submit", Board(), doc=copy.deepcopy(doc))
    outcome(lambda: pipeline.run_checks(ctx, ("task_table", "recorded_command")))


def test_parser_limits():
    with pytest.raises(Rejected) as err:
        loads_strict(b"[" * 33 + b"]" * 33, "x")
    assert err.value.code == "too-deep"
    assert loads_strict(b"[" * 32 + b"]" * 32, "x") is not None
    with pytest.raises(Rejected) as err:
        loads_strict(b"1" * 400, "x")
    assert err.value.code == "non-finite"
