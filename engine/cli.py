"""`tandem generate`, `models`, `quantize` and `export-hf`: run the engine from the command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from engine.registry import ASSETS, DEFAULT_MODEL
from tandem.args import non_negative_float, non_negative_int, positive_int, probability


def add_model_arguments(parser: argparse.ArgumentParser, *, precision: str = "full") -> None:
    """--model/--tokenizer/--max-context/--precision/--kv-cache: shared by every command that loads a model.

    `precision` is the tier's default: "full" for the cloud and the reference CLI,
    "device" for the edge (quantized weights stay quantized, float ones get the q4 recipe).
    """
    from engine.recipes import KV_CACHES, PRECISIONS

    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"short name or path (default {DEFAULT_MODEL})")
    parser.add_argument("--tokenizer", default=None, help="tokenizer file or folder, if not beside the model")
    parser.add_argument("--max-context", type=positive_int, default=8192, help="context window to allocate (tokens)")
    parser.add_argument("--precision", default=precision, choices=PRECISIONS,
                        help=f"weights in memory (default {precision}): stored as the file holds them, full float, "
                        "device (quantized; float weights get the q4 recipe), or the int8 / q4 recipe")
    parser.add_argument("--kv-cache", default="auto", choices=KV_CACHES,
                        help="KV cache precision (default auto: int8 where the native decode step runs, i.e. the "
                        "quantized device tier, with int4 for 4-bit weights, else the model's dtype): int8 values "
                        "with an fp16 scale per head and position (a little over half fp16's bytes); int4: int8 "
                        "rows whose finished groups of 64 positions the decode step reads in 4 bits (AVX-512 VNNI "
                        "builds); fp16 or fp32 keep wider values")


def add_sampling_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-new-tokens", type=positive_int, default=256, help="at most this many tokens (>= 1)")
    parser.add_argument("--temperature", type=non_negative_float, default=0.0, help="0 = greedy (default)")
    parser.add_argument("--top-k", type=non_negative_int, default=0, help="0 = no top-k cut (default)")
    parser.add_argument("--top-p", type=probability, default=1.0, help="nucleus mass in (0, 1] (default 1)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")


def sampling_from_args(args: argparse.Namespace) -> Any:
    from engine.generate import Sampling

    return Sampling(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, seed=args.seed)


def register(subparsers: argparse._SubParsersAction) -> None:
    gen = subparsers.add_parser("generate", help="generate text with a local model")
    gen.add_argument("prompt")
    add_model_arguments(gen)
    add_sampling_arguments(gen)
    gen.add_argument("--raw", action="store_true", help="no chat template: continue the prompt text")
    gen.add_argument("--json", action="store_true", help="print one JSON line per token with its signals")
    gen.set_defaults(func=cmd_generate)

    models = subparsers.add_parser("models", help="list the models installed from packages")
    models.set_defaults(func=cmd_models)

    from engine.recipes import RECIPES

    quant = subparsers.add_parser(
        "quantize", help="write a quantized checkpoint for the device tier (loads by memory map)",
        description="Quantize an HF checkpoint folder or a GGUF file into a folder with config.json, the "
        "tokenizer and model.safetensors whose metadata names the recipe. q4: linear layers 4-bit in "
        "groups of 32 with a zero point, embeddings and output q8_0 (8-bit groups of 32); int8: everything "
        "q8_0. Blocks already in the recipe's format are kept as they are.",
    )
    quant.add_argument("src", help="short name, HF checkpoint folder or .gguf file")
    quant.add_argument("dst", help="folder to write (must not exist, or be empty, unless --force)")
    quant.add_argument("--recipe", default="q4", choices=list(RECIPES), help="quantization recipe (default q4)")
    quant.add_argument("--tokenizer", default=None, help="tokenizer file or folder, if not beside the model")
    quant.add_argument("--force", action="store_true", help="overwrite a non-empty DST")
    quant.set_defaults(func=cmd_quantize)

    export = subparsers.add_parser(
        "export-hf", help="write a model as a Hugging Face folder (for vLLM or SGLang behind serve-cloud)",
        description="Write an HF checkpoint folder or a GGUF file as config.json, tokenizer.json and "
        "model.safetensors in float32 (quantized blocks dequantized: the weights of Tandem's full-precision "
        "tier), the folder vLLM's and SGLang's servers load.",
    )
    export.add_argument("src", help="short name, HF checkpoint folder, quantized folder or .gguf file")
    export.add_argument("dst", help="folder to write (must not exist, or be empty, unless --force)")
    export.add_argument("--tokenizer", default=None, help="tokenizer file or folder, if not beside the model")
    export.add_argument("--force", action="store_true", help="overwrite a non-empty DST")
    export.set_defaults(func=cmd_export_hf)


def cmd_generate(args: argparse.Namespace) -> int:
    from engine.errors import EngineError
    from engine.runtime import LocalModel

    try:
        sampling = sampling_from_args(args)
        model = LocalModel.load(args.model, tokenizer=args.tokenizer, max_context=args.max_context,
                                precision=args.precision, kv_cache=args.kv_cache)
        ids = model.encode_prompt(args.prompt, chat=not args.raw)
        events = model.stream(
            ids, max_new_tokens=args.max_new_tokens, sampling=sampling, stop_strings=tuple(args.stop)
        )
        for event in events:
            if args.json:
                t = event.token
                print(json.dumps({
                    "id": t.id, "text": event.text, "logprob": round(t.logprob, 6),
                    "entropy": round(t.entropy, 6), "margin": round(t.margin, 6),
                    "finish_reason": event.finish_reason,
                }), flush=True)
            else:
                sys.stdout.write(event.text)
                sys.stdout.flush()
    except (EngineError, ValueError) as exc:
        print(f"tandem generate: error: {exc}", file=sys.stderr)
        return 1
    if not args.json:
        sys.stdout.write("\n")
    return 0


def cmd_quantize(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from engine.checkpoint import read_checkpoint
    from engine.errors import EngineError
    from engine.quantize import quantize_weights, save_quantized

    dst = Path(args.dst).expanduser()
    try:
        _check_destination(dst, args.force)
        ckpt = read_checkpoint(args.src, tokenizer=args.tokenizer)
        bar = lambda items: tqdm(items, desc=f"quantizing ({args.recipe})", unit="tensor", file=sys.stderr)
        quantized = quantize_weights(ckpt.weights, args.recipe, progress=bar)
        save_quantized(dst, ckpt.config, quantized, ckpt.tokenizer, args.recipe)
    except (EngineError, ValueError, OSError) as exc:
        print(f"tandem quantize: error: {exc}", file=sys.stderr)
        return 1
    size = sum(f.stat().st_size for f in dst.iterdir() if f.suffix == ".safetensors")
    print(f"wrote {dst} ({args.recipe}, {size / 2**20:.1f} MiB); load it with --model {dst}")
    return 0


def cmd_export_hf(args: argparse.Namespace) -> int:
    from engine.checkpoint import read_checkpoint
    from engine.errors import EngineError
    from engine.hf_export import save_hf_folder

    dst = Path(args.dst).expanduser()
    try:
        _check_destination(dst, args.force)
        ckpt = read_checkpoint(args.src, tokenizer=args.tokenizer)
        save_hf_folder(dst, ckpt.config, ckpt.weights, ckpt.tokenizer)
    except (EngineError, ValueError, OSError) as exc:
        print(f"tandem export-hf: error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {dst} (float32, {(dst / 'model.safetensors').stat().st_size / 2**20:.1f} MiB)")
    return 0


def _check_destination(dst: Path, force: bool) -> None:
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())) and not force:
        raise ValueError(f"{dst} exists and is not an empty folder; pass --force to overwrite it")


def cmd_models(args: argparse.Namespace) -> int:
    print(f"{'name':<20} {'package':<14} {'status':<10} path")
    for asset in ASSETS.values():
        path = asset.path()
        print(f"{asset.name:<20} {asset.distribution:<14} {'installed' if path else 'missing':<10} {path or '-'}")
        print(f"{'':<20} {asset.what}")
    print("Any other model: --model PATH (an HF checkpoint folder or a .gguf file).")
    return 0
