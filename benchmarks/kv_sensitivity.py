"""Which attention heads need their keys at 8 bit under the q4 KV codec: the profile
measurement behind engine/kv/profiles.py.

For each (layer, KV head), only that head's keys go through q4 (everything else
exact), and the model continues each tuning text from that cache; the mean KL
divergence of the next-token distribution from the exact cache's, over the next
256 tokens, says how much that head's 4-bit keys cost. Heads are printed most
sensitive first, with a profile line of those over --threshold. Tune texts
only (data/texts/tune): the report texts stay unseen.

    python benchmarks/kv_sensitivity.py                          # every head, 5 texts: slow
    python benchmarks/kv_sensitivity.py --texts 2 --layers 7,17,18,20
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)  # this folder would shadow the packages it measures

import torch  # noqa: E402

from engine.generate import prefill  # noqa: E402
from engine.kv import quant  # noqa: E402
from engine.runtime import LocalModel  # noqa: E402

CONTINUATION = 256


def q4_keys(k: torch.Tensor, group: int) -> torch.Tensor:
    """k [T, D] of one head through the codec's per-channel 4-bit keys (groups of `group` tokens)."""
    out = k.clone()
    full = k.shape[0] // group * group
    for start, stop in ((0, full), (full, k.shape[0])):
        if stop > start:
            x = k[start:stop].reshape(1, 1, -1, min(group, stop - start), k.shape[1])
            buf = torch.cat(quant.q4c_encode(x))
            out[start:stop] = quant.q4c_decode(quant.Reader(buf), tuple(x.shape)).reshape(stop - start, -1)
    return out


@torch.inference_mode()
def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--context", type=int, default=2048)
    p.add_argument("--texts", type=int, default=5, help="how many of data/texts/tune")
    p.add_argument("--layers", default=None, help="comma-separated layers (default: all)")
    p.add_argument("--key-group", type=int, default=32)
    p.add_argument("--sink-tokens", type=int, default=4)
    p.add_argument("--threshold", type=float, default=4e-5, help="KL above which a head goes into the profile")
    args = p.parse_args()
    model = LocalModel.load(args.model, precision="full", max_context=args.context + CONTINUATION)
    texts = []
    for path in sorted((REPO / "data" / "texts" / "tune").glob("*.txt"))[:args.texts]:
        ids = model.tokenizer.encode(path.read_text(encoding="utf-8"))
        n = min(args.context, len(ids) - CONTINUATION)
        cache = model.new_cache(n + CONTINUATION)
        prefill(model.model, cache, ids[:n])
        k, v = cache.k[:, 0, :, :n].clone(), cache.v[:, 0, :, :n].clone()
        cont = torch.tensor([ids[n:n + CONTINUATION]])
        ref = torch.log_softmax(model.model(cont, cache)[0].float(), -1)
        texts.append((path.stem, n, k, v, cont, ref))
    n_layers, _, heads, _, _ = model.new_cache(1).k.shape
    layers = [int(x) for x in args.layers.split(",")] if args.layers else range(n_layers)
    results = []
    for layer in layers:
        for head in range(heads):
            t0, kl = time.perf_counter(), 0.0
            for _, n, k, v, cont, ref in texts:
                cache = model.new_cache(n + CONTINUATION)
                cache.k[:, 0, :, :n], cache.v[:, 0, :, :n] = k, v
                s = args.sink_tokens
                cache.k[layer, 0, head, s:n] = q4_keys(k[layer, head, s:n], args.key_group)
                cache.pos = n
                logp = torch.log_softmax(model.model(cont, cache)[0].float(), -1)
                kl += float((ref.exp() * (ref - logp)).sum(-1).mean()) / len(texts)
            results.append((kl, layer, head))
            print(f"layer {layer:>3} head {head}: KL {kl:.6f}  ({time.perf_counter() - t0:.0f} s)", file=sys.stderr,
                  flush=True)
    results.sort(reverse=True)
    print(f"\n{args.model}: next-token KL with one head's keys at 4 bit, {len(texts)} tuning texts")
    for kl, layer, head in results:
        print(f"  layer {layer:>3} head {head}: {kl:.6f}")
    chosen = sorted((layer, head) for kl, layer, head in results if kl >= args.threshold)
    print(f"profile (KL >= {args.threshold:g}): frozenset({set(chosen) or '{}'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
