"""Token generation as plain functions: prefill, decode one token, sample, generate.

Every generated token carries the confidence signals the router watches: its
log-prob, the entropy of the next-token distribution and the top-2 margin, all
from the model's own (temperature 1) distribution, whatever the sampling.
Asked for (`hidden_tokens`), the first tokens also carry the final normed
hidden state their distribution was projected from; the first token's is the
prompt's last position, read before any decode step runs, so a judge can stop
the request right after the prefill.
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import torch

from engine import kernels
from engine.config import ModelConfig
from engine.model import KVCache, Transformer


@dataclass(frozen=True)
class Sampling:
    """temperature 0 is greedy; top_k 0 and top_p 1.0 disable those filters."""

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.temperature < 0 or self.top_k < 0 or not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"invalid sampling {self}: need temperature >= 0, top_k >= 0, 0 < top_p <= 1")


GREEDY = Sampling()


@dataclass(frozen=True)
class TokenInfo:
    """One generated token: id, log-prob (nats), entropy (nats), top-1 minus top-2 probability,
    (when asked for) the final normed hidden state [dim] that chose it, and the most likely
    tokens as (id, log-prob), most likely first: TOP_ALTERNATIVES from the built-in engine (the
    chosen one among them unless sampled), the engine's top-k from a serving engine."""

    id: int
    logprob: float
    entropy: float
    margin: float
    hidden: tuple[float, ...] | None = None
    top: tuple[tuple[int, float], ...] = ()


Turn = Callable[[], AbstractContextManager[object]]  # held around each forward: DeviceTurns.turn(caller)
TOP_ALTERNATIVES = 2  # pick() ranks the top two for the margin; those are all a token's alternatives


# fp32 activation bytes one prefill forward may hold. A forward's activations
# grow with its tokens (143 KiB a token for Llama-3.2-1B), so a long prompt runs
# in chunks; a chunk of a few hundred rows still keeps the matmuls compute-bound,
# but each chunk after the first attends through an explicit mask, so chunks
# are no smaller than this asks (SmolLM2 takes ~1,000 tokens in one forward).
PREFILL_ACTIVATION_BYTES = 32 << 20


def prefill_chunk(config: ModelConfig) -> int:
    """Prompt tokens per forward: the SwiGLU and QKV activations and the residual stream within the budget."""
    per_token = 4 * (3 * config.ffn_dim + (config.n_heads + 2 * config.n_kv_heads) * config.head_dim + 4 * config.dim)
    return max(64, PREFILL_ACTIVATION_BYTES // per_token)


def prefill(
    model: Transformer, cache: KVCache, ids: list[int], *, chunk: int | None = None, with_hidden: bool = False,
    turn: Turn = nullcontext,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Run the prompt through the model, `chunk` tokens at a time, each chunk a `turn` on the device;
    returns the next-token logits [V] (and, `with_hidden`, the last position's normed hidden state [dim])."""
    if not ids:
        raise ValueError("prefill needs at least one token")
    chunk = chunk or prefill_chunk(model.config)
    for start in range(0, len(ids), chunk):
        tokens = torch.tensor([ids[start:start + chunk]], dtype=torch.long, device=cache.k.device)
        with turn():
            out = model(tokens, cache, last_only=True, with_hidden=with_hidden)
    return (out[0][0, -1], out[1][0, -1]) if with_hidden else out[0, -1]


def decode_one_token(
    model: Transformer, cache: KVCache, token_id: int, *, with_hidden: bool = False
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Feed one token; the next-token logits [V] (and, `with_hidden`, the normed hidden state [dim])."""
    tokens = torch.tensor([[token_id]], dtype=torch.long, device=cache.k.device)
    out = model(tokens, cache, with_hidden=with_hidden)
    return (out[0][0, -1], out[1][0, -1]) if with_hidden else out[0, -1]


def pick(
    logits: torch.Tensor, sampling: Sampling, generator: torch.Generator | None, hidden: torch.Tensor | None = None
) -> TokenInfo:
    """Choose the next token from logits [V] and describe the model's confidence in it."""
    logits = logits.float().contiguous()
    stats = native_signals(logits)
    if stats is None:
        return pick_reference(logits, sampling, generator, hidden)
    top1, top2, lse, entropy = stats
    if sampling.temperature == 0.0:
        token = top1[0]
    else:
        token = int(_sample(logits / sampling.temperature, sampling, generator))
    logprob = top1[1] if token == top1[0] else float(logits[token]) - lse
    return TokenInfo(
        id=token,
        logprob=logprob,
        entropy=entropy,
        margin=math.exp(top1[1]) - math.exp(top2[1]),
        hidden=None if hidden is None else tuple(hidden.tolist()),
        top=(top1, top2),
    )


def native_signals(logits: torch.Tensor) -> tuple[tuple[int, float], tuple[int, float], float, float] | None:
    """(top-1 (id, log-prob), top-2 (id, log-prob), log-sum-exp, entropy) of logits [V] fp32 in one
    native call (two passes over the logits); None without the native kernels or for degenerate
    logits (NaN, +inf, fewer than two finite), which the torch reference describes."""
    if not (logits.device.type == "cpu" and kernels.available()):
        return None
    i1, i2, v1, v2, lse, entropy = torch.ops.tandem.token_signals(logits).tolist()
    if not (math.isfinite(lse) and math.isfinite(entropy) and math.isfinite(v2)):
        return None
    return (int(i1), v1 - lse), (int(i2), v2 - lse), lse, entropy


def pick_reference(
    logits: torch.Tensor, sampling: Sampling, generator: torch.Generator | None, hidden: torch.Tensor | None = None
) -> TokenInfo:
    """`pick` in torch ops: the definition the native signals are held to, and their fallback."""
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    top2 = torch.topk(logprobs, TOP_ALTERNATIVES)
    if sampling.temperature == 0.0:
        token = int(top2.indices[0])
    else:
        token = int(_sample(logits.float() / sampling.temperature, sampling, generator))
    probs = logprobs.exp()
    return TokenInfo(
        id=token,
        logprob=float(logprobs[token]),
        entropy=float(-(probs * logprobs).nan_to_num().sum()),
        margin=float(top2.values[0].exp() - top2.values[1].exp()),
        hidden=None if hidden is None else tuple(hidden.tolist()),
        top=tuple(zip(top2.indices.tolist(), top2.values.tolist())),
    )


def _sample(logits: torch.Tensor, sampling: Sampling, generator: torch.Generator | None) -> torch.Tensor:
    if sampling.top_k:
        kth = torch.topk(logits, min(sampling.top_k, logits.numel())).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if sampling.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(-1)
        # Drop tokens once the mass *before* them reaches top_p; the first always stays.
        drop = (cumulative - torch.softmax(sorted_logits, dim=-1)) >= sampling.top_p
        logits = logits.scatter(0, order[drop], float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator)[0]


def make_generator(sampling: Sampling) -> torch.Generator | None:
    if sampling.temperature == 0.0:
        return None
    generator = torch.Generator()
    if sampling.seed is not None:
        generator.manual_seed(sampling.seed)
    else:
        generator.seed()
    return generator


@torch.inference_mode()
def generate_tokens(
    model: Transformer,
    cache: KVCache,
    prompt_ids: list[int],
    *,
    max_new_tokens: int,
    sampling: Sampling = GREEDY,
    stop_ids: Iterable[int] = (),
    hidden_tokens: int = 0,
    turn: Turn = nullcontext,
) -> Iterator[TokenInfo]:
    """Prefill `prompt_ids` after whatever `cache` holds, then decode.

    Yields each token as soon as it is chosen; a stop token is yielded last.
    The cache ends holding every token fed to the model (the last yielded token
    is not fed, so a continuation starts by feeding it). The first token is
    yielded before any decode step, so a caller that stops there decoded nothing.
    The first `hidden_tokens` tokens carry their hidden state (a judge reads no more).
    Every forward (a prefill chunk, a decode step) runs inside `turn()`, the device's fair share.
    """
    stops = set(stop_ids)
    generator = make_generator(sampling)
    out = prefill(model, cache, prompt_ids, with_hidden=hidden_tokens > 0, turn=turn)
    for i in range(max_new_tokens):
        logits, hidden = out if i < hidden_tokens else (out, None)
        token = pick(logits, sampling, generator, hidden)
        yield token
        if token.id in stops or i == max_new_tokens - 1:
            return
        with turn():
            out = decode_one_token(model, cache, token.id, with_hidden=i + 1 < hidden_tokens)
