"""Model cards of the shipped baseline weights: ``baselines/<model>/MODEL_CARD.md``.

    python -m baselines.model_card            # (re)write both cards
    python -m baselines.model_card --check    # exit 1 when a committed card is out of date

A card is generated from what the repository holds, so it never states a number the files do
not: the weights' ``config.json`` (preset, training step), the training log beside them
(``weights/training/metrics.jsonl``), the parameter count of the built model, the weights
digest the benchmark runner records (:func:`benchmarks.protocol.weights_digest`), and every
leaderboard entry made with exactly these weights (task, variant, primary metric, seeds,
hardware, date, reproduced mark). The YAML header is a Hugging Face model card
(``huggingface_hub.ModelCardData``) whose ``model-index`` holds those results.

The card sits beside the weights folder, not in it: the digest covers every file of the
folder, and the leaderboard entries name that digest.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CARD_NAME = "MODEL_CARD.md"


@dataclass(frozen=True)
class CardText:
    """The hand-written parts of one model's card (everything else is read off the files)."""

    title: str
    paper: str
    what: str
    data: str
    limits: str
    adapter: str
    tags: tuple[str, ...]
    spec: str = ""          # the weights' model (its baselines.<spec>.benchmark.SPEC); default the card's key
    weights_dir: str = ""   # repo-relative weights folder; default baselines/<key>/weights
    card_file: str = ""     # repo-relative card path; default baselines/<key>/MODEL_CARD.md


TEXT = {
    "mo3enet": CardText(
        title="Mo3ENet (densegen baseline, small preset)",
        paper="Mo3ENet, paper 002 in `../shared/papers/` (an O(3)-equivariant point-cloud autoencoder)",
        what=("An equivariant graph autoencoder: the encoder embeds a molecule's atoms (types, positions) into "
              "a rotation-equivariant vector embedding; the decoder emits a swarm of weighted Gaussian points "
              "with type probabilities that must reproduce the input point cloud. The benchmark adapter "
              "(`baselines.mo3enet.benchmark:Mo3ENetBenchmarkModel`) gives the invariant embedding to the QM9 "
              "and crystal tasks and the decoded swarm to point-cloud reconstruction."),
        data=("Trained on the `random-conformers` release (RDKit conformers of QM9 and ZINC molecules, "
              "hydrogens included); QM9 valid/test molecules never reach its train split."),
        limits=("These weights are a CPU demonstration: the run stopped long before the Gaussian width "
                "reached what atom-level reconstruction needs, so few atoms and no molecules are matched "
                "on the QM9 hold-out, and the frozen embedding predicts QM9 properties worse than the "
                "Coulomb matrix does. Use them to check that a pipeline runs, not to compare against."),
        adapter="baselines.mo3enet.benchmark:Mo3ENetBenchmarkModel",
        tags=("chemistry", "molecules", "point-cloud", "equivariant", "autoencoder")),
    "mo3enet-heavy": CardText(
        title="Mo3ENet without hydrogens (densegen baseline, small preset, heavy atoms only)",
        paper="Mo3ENet, paper 002 in `../shared/papers/` (which trains one model with hydrogens and one without)",
        what=("The Mo3ENet autoencoder trained on heavy atoms only: it reads every molecule without its "
              "hydrogens and decodes a swarm whose weights sum to the heavy-atom count. The benchmark adapter "
              "(`baselines.mo3enet.benchmark:Mo3ENetHeavyAtomsBenchmarkModel`, registered as `mo3enet-heavy`) "
              "gives the invariant embedding to the QM9 and crystal tasks and the decoded swarm to point-cloud "
              "reconstruction of heavy atoms."),
        data=("Trained on the `random-conformers` release (RDKit conformers of QM9 and ZINC molecules) with the "
              "hydrogens dropped from every sample (`--heavy-atoms`); QM9 valid/test molecules never reach its "
              "train split. Exported from the newest checkpoint of "
              "`baselines/mo3enet/training-runs/heavy-atoms-small` (its README gives the build and resume "
              "commands)."),
        limits=("Trained on one CPU core: the Gaussian width stopped at the input self-overlap floor "
                "(about 0.40 Å), so the reconstruction is matched atom by atom for most but not all QM9 hold-out "
                "molecules. It knows nothing of hydrogens: the with-hydrogen point-cloud task refuses its "
                "reconstructions. The frozen embedding is not a property predictor by itself; the QM9 figures "
                "come from heads trained on it."),
        adapter="baselines.mo3enet.benchmark:Mo3ENetHeavyAtomsBenchmarkModel",
        tags=("chemistry", "molecules", "point-cloud", "equivariant", "autoencoder"),
        spec="mo3enet", weights_dir="baselines/mo3enet/weights-heavy",
        card_file="baselines/mo3enet/MODEL_CARD-heavy.md"),
    "vqgan3d": CardText(
        title="3DGrid-VQGAN (densegen baseline, small preset)",
        paper="3DGrid-VQGAN, paper 000 in `../shared/papers/` (a 3D VQGAN of electron-density grids)",
        what=("A 3D convolutional VQGAN: the encoder compresses a log(rho+1) electron-density grid to a grid "
              "of codebook indices, the decoder reconstructs the density. The benchmark adapter "
              "(`baselines.vqgan3d.benchmark:VQGAN3DBenchmarkModel`) reconstructs the density tasks' grids and "
              "gives pooled latents as an embedding."),
        data=("First 300 steps on densities rendered from the `pubchem-hf-density` release (RHF/STO-3G; the "
              "earlier demonstration weights), then continued (`--init-weights shipped`) on the 1,500 first "
              "`qm9-small` train molecules of `qm9-hf-density` (RHF/STO-3G on their QM9 geometries; no "
              "qm9-small valid or test molecule, so none of the density task's qm9 variant); exported from "
              "step 2,000 of `baselines/vqgan3d/training-runs/qm9-small-32` (its README gives the build and "
              "resume commands), the last step before the run's GAN terms start: its later steps reconstruct "
              "worse (NMAE 60-66 % instead of 41 % on the first 200 qm9 test molecules, "
              "`python -m baselines.vqgan3d.holdout`). The step count and log below are the continued run's."),
        limits=("Trained on one CPU core at 32^3 with a small codebook: the 128^3 task grids are resampled to "
                "32^3 and back, which alone costs about a quarter of the density in NMAE "
                "(`python -m baselines.vqgan3d.holdout --weights resize:32`), and the network adds more: "
                "reconstructions are blurred and lose the nuclear cusps. Not comparable with the paper's "
                "GPU-trained 128^3 model."),
        adapter="baselines.vqgan3d.benchmark:VQGAN3DBenchmarkModel",
        tags=("chemistry", "electron-density", "3d", "vqgan", "autoencoder")),
}


def _spec(model: str):
    if model not in TEXT:
        raise ValueError(f"no model card for {model!r}; known: {sorted(TEXT)}")
    model = TEXT[model].spec or model
    if model == "mo3enet":
        from baselines.mo3enet.benchmark import SPEC
    elif model == "vqgan3d":
        from baselines.vqgan3d.benchmark import SPEC
    else:
        raise ValueError(f"no model card for {model!r}; known: {sorted(TEXT)}")
    return SPEC


def card_path(model: str) -> Path:
    """Where the card of ``model``'s shipped weights lives (beside the weights folder)."""
    text = TEXT[model]
    return REPO / text.card_file if text.card_file else _spec(model).shipped.parent / CARD_NAME


def weights_folder(model: str) -> Path:
    """The folder of the weight set the card ``model`` describes."""
    text = TEXT[model]
    return REPO / text.weights_dir if text.weights_dir else _spec(model).shipped


def _training_log(folder: Path) -> tuple[list[dict], str]:
    """The training records beside the weights (``training/metrics.jsonl`` or its ``.gz``) and
    the log's name relative to the weights folder; ([], "") when there is none."""
    import gzip

    for name in ("training/metrics.jsonl", "training/metrics.jsonl.gz"):
        path = folder / name
        if path.is_file():
            raw = gzip.decompress(path.read_bytes()) if name.endswith(".gz") else path.read_bytes()
            return [json.loads(line) for line in raw.decode().splitlines() if line.strip()], name
    return [], ""


def _resumed_wall_seconds(records: list[dict]) -> float:
    """Total training wall time of a log whose ``wall_s`` restarts from 0 at each resume: the sum of
    each segment's last value (seconds)."""
    total, last = 0.0, 0.0
    for r in records:
        wall = float(r["wall_s"])
        if wall < last:
            total += last
        last = wall
    return total + last


def weights_facts(model: str) -> dict:
    """What the shipped weights' files say: preset, step, digest, parameters, the last
    training record, and its sigma (Mo3ENet)."""
    from baselines.weights import build_from_weights
    from benchmarks.protocol import weights_digest

    spec, folder = _spec(model), weights_folder(model)
    module, info = build_from_weights(spec, None if folder == spec.shipped else folder, "cpu")

    class _Weights:
        weights = str(folder)

    records, log_name = _training_log(folder)
    cfg = info.get("config") or {}
    batch = (cfg.get("train") or {}).get("batch_size", cfg.get("batch_size"))
    if records and "wall_s" in records[-1]:  # VQGAN: wall seconds since the run (or its resume) started
        wall = _resumed_wall_seconds(records)
    elif records and "molecules_per_s" in records[0] and batch:   # Mo3ENet: one record per step
        wall = sum(batch / r["molecules_per_s"] for r in records)
    else:
        wall = None
    return {"preset": info["preset"], "step": info.get("source", {}).get("step"), "batch_size": batch,
            "wall_s": wall,
            "sigma": info.get("source", {}).get("sigma"), "digest": weights_digest(_Weights()),
            "parameters": sum(p.numel() for p in module.parameters()),
            "hydrogens": getattr(getattr(module, "cfg", None), "hydrogens", None),
            "last": records[-1] if records else None, "logged_steps": len(records), "log": log_name,
            "folder": Path(os.path.relpath(folder, REPO)).as_posix(),
            "files": sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())}


def leaderboard_results(model: str, digest: str, board_root: Path | None = None) -> list[dict]:
    """Every leaderboard entry of ``model`` made with the weights of ``digest``: task, variant,
    primary metric (name, unit, mean, std, direction), seeds, hardware, date, reproduced mark."""
    from leaderboard.board import Board, mark_path

    board = Board(board_root) if board_root is not None else Board()
    rows = []
    for path in board.entry_files():
        entry = json.loads(path.read_text())
        res = entry["results"]
        if res["model"]["name"] != model or res["model"].get("weights_sha256") != digest:
            continue
        task = res["task"]
        metric = task["primary_metric"]
        agg = res["metrics"]["aggregate"][metric]
        hw = res["environment"]["hardware"]
        mark = mark_path(path)
        reproduced = json.loads(mark.read_text()) if mark.is_file() else None
        rows.append({"task": task["name"], "variant": task.get("variant"), "metric": metric,
                     "unit": task["units"].get(metric, ""), "mean": agg["mean"], "std": agg["std"],
                     "lower_is_better": task["lower_is_better"], "seeds": len(res["metrics"]["per_seed"]),
                     "hardware": f"{hw['cpus']} x {hw['cpu']}" + (f", {hw['gpu']}" if hw.get("gpu") else ""),
                     "date": res["created"][:10], "command": _portable_command(res.get("command", "")),
                     "reproduced": str(reproduced.get("date", ""))[:10] if reproduced else ""})
    return sorted(rows, key=lambda r: (r["task"], r["variant"] or ""))


def _portable_command(command: str) -> str:
    """A recorded benchmark command with the machine's folders replaced by DATA and OUT."""
    words, out = command.split(), []
    for i, w in enumerate(words):
        prev = words[i - 1] if i else ""
        out.append("DATA" if prev == "--data-root" else "OUT" if prev == "--out" else w)
    return " ".join(out)


def render_card(model: str, board_root: Path | None = None) -> str:
    """The full MODEL_CARD.md text of ``model``'s shipped weights."""
    from huggingface_hub import EvalResult, ModelCardData

    text, facts = TEXT[model], weights_facts(model)
    results = leaderboard_results(model, facts["digest"], board_root)
    data = ModelCardData(
        license="mit", library_name="pytorch", tags=list(text.tags), model_name=f"densegen/{model}",
        eval_results=[EvalResult(task_type=r["task"], dataset_type=f"densegen/{r['task']}",
                                 dataset_name=f"{r['task']}" + (f" ({r['variant']})" if r["variant"] else ""),
                                 metric_type=r["metric"], metric_value=round(r["mean"], 6),
                                 dataset_config=r["variant"]) for r in results] or None)
    rows = "\n".join(
        f"| {r['task']} | {r['variant'] or '—'} | {r['metric']} ({r['unit']}, "
        f"{'lower' if r['lower_is_better'] else 'higher'} is better) | {r['mean']:.4g} ± {r['std']:.2g} | "
        f"{r['seeds']} | {r['hardware']} | {r['date']} | {r['reproduced'] or 'not yet'} |" for r in results) \
        or "| (no leaderboard entry with these weights) | | | | | | | |"
    last = facts["last"] or {}
    training = [f"- Preset `{facts['preset']}`; {facts['parameters']:,} parameters"]
    if facts["step"] is not None:
        seen = f" of batch {facts['batch_size']} ({facts['step'] * facts['batch_size']:,} samples seen)" \
            if facts["batch_size"] else ""
        training.append(f"- {facts['step']:,} optimizer steps{seen}")
    if facts["wall_s"] is not None:
        training.append(f"- {facts['wall_s'] / 60:,.0f} minutes of training steps on CPU (from the training log); "
                        "the training data's release hash and the machine were not recorded with these weights")
    if facts["sigma"] is not None:
        training.append(f"- Gaussian width sigma at the last step: {facts['sigma']:.3f} Å "
                        f"(the loss compares Gaussian overlaps at this width)")
    if facts["hydrogens"] is not None:
        training.append(f"- Hydrogens {'included' if facts['hydrogens'] else 'dropped (heavy-atom model)'}")
    if last:
        keys = [k for k in ("loss", "reconstruction", "l1", "commitment", "perplexity") if k in last]
        training.append("- Last logged training record: " + ", ".join(f"{k} {last[k]:.4g}" for k in keys)
                        + f" (`{facts['folder']}/{facts['log']}`, {facts['logged_steps']:,} records)")
    files = ", ".join(f"`{f}`" for f in facts["files"])
    commands = "\n".join(dict.fromkeys(r["command"] for r in results if r["command"])) or "# (none)"
    return f"""---
{data.to_yaml()}
---

# {text.title}

{text.what}

Paper: {text.paper}.

## Weights

- Folder: `{facts['folder']}/` ({files})
- Digest the benchmark runner and the leaderboard record: `{facts['digest']}`
- Load: `{text.adapter}()` (these weights), or pass `weights=FOLDER` for a training run
  or checkpoint of `python -m baselines.{text.spec or model}.train`.

## Training

{text.data}

{chr(10).join(training)}

## Results (leaderboard entries made with these weights)

| task | variant | primary metric | mean ± std | seeds | hardware | run | reproduced |
|---|---|---|---|---|---|---|---|
{rows}

Each figure comes from (DATA: the folder holding `densegen/`; OUT: any folder):

```bash
{commands}
```

## Limitations

{text.limits}

This card is generated by `python -m baselines.model_card` from the files named above; a test
checks that it matches them.
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m baselines.model_card", description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 when a committed card is out of date")
    ap.add_argument("models", nargs="*", default=sorted(TEXT))
    args = ap.parse_args(argv)
    stale = []
    for model in args.models:
        if model not in TEXT:
            print(f"error: no model card for {model!r}; known: {', '.join(sorted(TEXT))}", file=sys.stderr)
            return 2
        path, text = card_path(model), render_card(model)
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(path)
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(REPO)}")
    for path in stale:
        print(f"{path.relative_to(REPO)} is out of date: run python -m baselines.model_card", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
