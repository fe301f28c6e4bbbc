"""Crystal pictures (builders.crystals.preview) from a tiny p1-crystals release."""

import numpy as np
import pytest

from builders.format.build import build_release
from builders.format.manifest import release_dir
from builders.crystals.preview import draw_crystal, plot_distributions, posed_molecules
from builders.format.reader import iter_release
from builders.format.registry import get_release
from builders.format.splits import SPLITS
from tests.conftest import build_small


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    root = tmp_path_factory.mktemp("prev")
    smi = root / "m.smi"
    smi.write_text("CC(=O)O\nc1ccncc1\n")
    _, conf = build_small(root, smi)
    spec = get_release("p1-crystals")
    build_release(spec, root, {"conformers": str(conf), "n_starts": 2, "n_noisy": 5, "max_steps": 250},
                  seed=0, progress=False)
    out = release_dir(root, spec.name)
    return out, [s for split in SPLITS for s in iter_release(out, split)]


def _image(path):
    import matplotlib.image as mpimg

    return mpimg.imread(path)


def test_draw_crystal_writes_a_real_picture(release, tmp_path):
    _, samples = release
    acid = [s for s in samples if s["meta"]["smiles"] == "CC(=O)O"]
    opt = next(s for s in acid if s["meta"]["is_optimum"])
    copy = next(s for s in acid if not s["meta"]["is_optimum"])
    a = draw_crystal(opt, tmp_path / "a.png")
    b = draw_crystal(copy, tmp_path / "sub" / "b.png")
    for path in (a, b):
        assert path.is_file() and path.stat().st_size > 20_000
        img = _image(path)
        assert img.shape[:2] == (768, 768)  # 6.4 in x 120 dpi
        assert img[..., :3].std() > 0.05  # not a blank canvas
        blue = (img[..., 2] > 0.6) & (img[..., 0] < 0.3)  # cell edges (#1f77b4)
        red = (img[..., 0] > 0.8) & (img[..., 1] < 0.25) & (img[..., 2] < 0.25)  # oxygen atoms (#ff0d0d)
        assert blue.sum() > 200 and red.sum() > 30
    assert not np.array_equal(_image(a), _image(b))


def test_posed_molecules_put_the_central_centroid_in_the_cell(release):
    _, samples = release
    for s in samples[:5]:
        shifts, mols = posed_molecules(s)
        assert not shifts[0].any() and len(mols) == len(shifts) >= 1
        frac = mols[0].mean(0) @ np.linalg.inv(s["cell"])
        np.testing.assert_allclose(frac, s["params"][6:9], atol=1e-9)
        for n, x in zip(shifts, mols):  # each drawn neighbour is a lattice translate
            np.testing.assert_allclose(x - mols[0], np.broadcast_to(n @ s["cell"], x.shape), atol=1e-9)
            assert (np.abs(x.mean(0) @ np.linalg.inv(s["cell"]) - 0.5) <= 0.75 + 1e-9).all()


def test_plot_distributions(release, tmp_path):
    out, _ = release
    path = plot_distributions(out, tmp_path / "dist.png")
    assert path.stat().st_size > 20_000
    img = _image(path)
    assert img.shape[1] > 2.5 * img.shape[0]  # three panels side by side
    assert img[..., :3].std() > 0.05
    empty = tmp_path / "empty" / "densegen" / "p1-crystals"
    empty.mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no manifest.json"):
        plot_distributions(empty, tmp_path / "x.png")
