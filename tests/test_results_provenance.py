"""What a results file records about what produced it: constructor arguments, the weights'
digest, and the commit of the code that ran (``+dirty`` if the checkout changed mid-run)."""
from __future__ import annotations

import hashlib

from benchmarks import results
from benchmarks.protocol import weights_digest


def test_commit_that_ran(monkeypatch):
    a, b = "a" * 40, "b" * 40
    monkeypatch.setattr(results, "git_commit", lambda: a)
    assert results.commit_that_ran(a) == a
    monkeypatch.setattr(results, "git_commit", lambda: b)  # committed while running
    assert results.commit_that_ran(a) == a + "+dirty"
    monkeypatch.setattr(results, "git_commit", lambda: a + "+dirty")  # edited while running
    assert results.commit_that_ran(a) == a + "+dirty"
    assert results.commit_that_ran(None) is None  # not a git checkout


def test_weights_digest_names_the_files_and_their_bytes(tmp_path):
    class Model:
        weights = str(tmp_path / "w")

    (tmp_path / "w" / "sub").mkdir(parents=True)
    (tmp_path / "w" / "model-00001.safetensors").write_bytes(b"abc")
    (tmp_path / "w" / "sub" / "manifest.json").write_bytes(b"{}")
    (tmp_path / "w" / ".hidden").write_bytes(b"ignored")
    listing = (f"model-00001.safetensors\0{hashlib.sha256(b'abc').hexdigest()}\n"
               f"sub/manifest.json\0{hashlib.sha256(b'{}').hexdigest()}\n")
    assert weights_digest(Model()) == hashlib.sha256(listing.encode()).hexdigest()
    (tmp_path / "w" / "model-00001.safetensors").write_bytes(b"abd")
    assert weights_digest(Model()) != hashlib.sha256(listing.encode()).hexdigest()
    Model.weights = str(tmp_path / "w" / "model-00001.safetensors")  # a single file: its sha256
    assert weights_digest(Model()) == hashlib.sha256(b"abd").hexdigest()

    class NoWeights:
        weights = None

    class TensorWeights:  # an attribute named weights that is not a path is not a weights file
        weights = [1.0, 2.0]

    assert weights_digest(NoWeights()) is None and weights_digest(TensorWeights()) is None
