"""The VQGAN hold-out check scores the density task's first qm9 molecules with the task's metrics."""
import json

import pytest

from baselines.vqgan3d import holdout


def test_holdout_rows_identity_resize_and_shipped(tmp_path, capsys):
    out = tmp_path / "rows.json"
    rc = holdout.main(["--weights", "resize:128", "resize:32", "shipped", "--n", "2",
                       "--data-root", str(tmp_path), "--out", str(out)])
    assert rc == 0
    rows = {r["weights"]: r for r in json.loads(out.read_text())}
    # resizing a 128^3 grid to 128^3 is the identity: the float16 reference comes back exactly
    assert rows["resize:128"]["nmae_percent"] == 0.0
    assert rows["resize:128"]["electron_count_error"] == 0.0
    assert all(r["molecules"] == 2 for r in rows.values())
    # point-sampling to 32^3 and back loses the nuclear cusps but keeps most electrons
    assert 5.0 < rows["resize:32"]["nmae_percent"] < 60.0
    assert rows["resize:32"]["electron_count_error"] < 3.0
    # the shipped weights lose more than their own resampling bound
    assert rows["shipped"]["nmae_percent"] > rows["resize:32"]["nmae_percent"]
    assert "NMAE %" in capsys.readouterr().out


def test_holdout_refuses_a_count_outside_the_variant(capsys):
    assert holdout.main(["--weights", "shipped", "--n", "0"]) == 2
    assert "--n: 0 is outside 1..1000" in capsys.readouterr().err
