"""Mo3ENet training-step rate on the CPU: the decoder's scatter aggregation against the dense one.

    python -m speed.mo3enet_step --release DATA/densegen/random-conformers [--preset small] [--steps 30]

For the model with hydrogens and the heavy-atom model, it times ``--steps`` training steps
(forward, loss, backward, AdamW) of each variant on the same batches, alternating them twice,
and prints molecules/s (best of the two), their ratio and the last loss of each (equal up to
float rounding: the two aggregations compute one function). One torch thread unless
``--threads``. Not a test: figures only.
"""
from __future__ import annotations

import argparse
import itertools
import time


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--release", required=True)
    ap.add_argument("--preset", default="small", choices=["small", "paper"])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    import torch

    from baselines.mo3enet.config import get_config
    from baselines.mo3enet.data import collate_point_clouds, model_inputs
    from baselines.mo3enet.model import Mo3ENet
    from baselines.mo3enet.train import compute_loss
    from builders.format.reader import iter_release

    torch.set_num_threads(args.threads)
    cfg0 = get_config(args.preset)
    bs = cfg0.train.batch_size
    samples = list(itertools.islice(iter_release(args.release, split="train"), bs * (args.steps + 3)))
    for hydrogens in (True, False):
        cfg = get_config(args.preset)
        cfg.model.hydrogens = hydrogens
        rates, last = {}, {}
        for _ in range(2):
            for mode in ("scatter", "dense"):
                torch.manual_seed(0)
                model = Mo3ENet(cfg.model)
                if mode == "scatter":
                    model.decoder.in_degree = None
                opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
                gen = torch.Generator().manual_seed(1)

                def step(i):
                    batch = collate_point_clouds(model_inputs(samples[i * bs:(i + 1) * bs], hydrogens))
                    loss, _, _ = compute_loss(model, batch, 1.0, cfg, gen)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    return loss.item()

                for i in range(3):
                    step(i)
                t = time.perf_counter()
                losses = [step(3 + i) for i in range(args.steps)]
                rate = args.steps * bs / (time.perf_counter() - t)
                rates[mode] = max(rates.get(mode, 0.0), rate)
                last[mode] = losses[-1]
        print(f"{'with H' if hydrogens else 'heavy atoms'} ({args.preset}, batch {bs}, {args.threads} thread(s)): "
              f"scatter {rates['scatter']:.1f} molecules/s, dense {rates['dense']:.1f} molecules/s, "
              f"ratio {rates['dense'] / rates['scatter']:.2f}; last loss {last['scatter']:.6f} vs {last['dense']:.6f}")


if __name__ == "__main__":
    main()
