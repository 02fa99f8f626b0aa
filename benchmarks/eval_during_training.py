"""What one evaluation during training costs (the ``eval:`` section), measured with the trainer's own code.

Builds the same :class:`longctx.train.evaluate.EvalSuite` the trainer builds and times
``measure`` once with batched decoding (``--batch-size``) and once one prompt at a time, on the
shipped organism by default (its window, 512, is the guard):

    python benchmarks/eval_during_training.py                                   # 512/2048/8192, 10 samples
    python benchmarks/eval_during_training.py --model runs/x --lengths 1024,4096 --samples 20 --threads 4
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="longctx/assets/organism")
    p.add_argument("--lengths", default="512,2048,8192", help="passkey and perplexity lengths (tokens)")
    p.add_argument("--samples", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--skip-unbatched", action="store_true", help="only the batched measurement")
    a = p.parse_args()

    import torch

    from eval_longbench.models import load_model
    from longctx.train.config import EvalConfig
    from longctx.train.evaluate import EvalSuite, eval_mode, original_window

    torch.set_num_threads(a.threads)
    lengths = [int(x) for x in a.lengths.split(",")]
    model, tok = load_model(a.model)
    t0 = time.perf_counter()
    suite = EvalSuite(EvalConfig(passkey_lengths=lengths, ppl_lengths=lengths, samples=a.samples,
                                 batch_size=a.batch_size), tok, original_window(a.model))
    print(f"prepare (prompts + text, once per run): {time.perf_counter() - t0:.2f} s")
    for batch in ([a.batch_size] if a.skip_unbatched else [a.batch_size, 1]):
        suite.cfg.batch_size = batch
        t0, c0 = time.perf_counter(), time.process_time()
        with eval_mode(model):
            r = suite.measure(model)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        print(f"batch_size {batch}: one evaluation {wall:.2f} s wall ({cpu:.2f} s CPU): passkey "
              f"{r['passkey_seconds']:.2f} s, ppl {r['ppl_seconds']:.2f} s; accuracy {r['passkey']}; "
              f"ppl { {k: round(v, 3) for k, v in r['ppl'].items()} }")


if __name__ == "__main__":
    main()
