"""KV hand-off into llama-server through its slot files: an uploaded cache restored into a slot of the engine.

llama-server started with `--slot-save-path DIR` restores a slot from a
sequence state file in DIR (`POST /slots/{id}?action=restore`). When the
gateway can write DIR too (same host or a shared volume; `--engine-slot-dir`),
an UploadKV is decoded here as for the built-in engine (same checks, same
limits), and its ResumeFromKV writes the cache as a state file
(cloud.backends.llama_slot_file), restores it into a slot the gateway leased,
deletes the file, and generates on that slot with the prompt cache on: the
engine evaluates only the prompt's last token.

On start the engine is probed: one token is prefilled into a slot and saved,
and the file must appear in the gateway's DIR (the directory is shared) in the
state version and cache layout the writer knows. Otherwise the gateway refuses
to start with the reason (the operator asked for the slot hand-off).

Slots: a restore takes a slot no other restore of this gateway holds (a lease,
released when the stream ends), an idle one where /slots shows one; with every
slot leased, the request goes by token IDs. llama-server defers a restore while
the slot is busy, so it never overwrites a running request; a plain request may still land on the leased slot
between the restore and the generation, and then the engine finds the cache
holds other tokens and prefills the prompt: slower, never other tokens. Any
failure of the restore (the engine refuses the file, the prompt does not fit the
slot) logs why and generates from the token IDs the request carries anyway.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import httpx
import torch

from cloud.backends.llama_slot_file import SlotFileError, SlotFormat, decode_state, encode_state, write_atomically
from cloud.config import ServerConfig
from cloud.contract import GenerationPlan
from cloud.kv_handoff import receive_upload, take_upload
from cloud.kv_store import KVStore, StoredKV
from engine.config import ModelConfig
from engine.fingerprint import ModelFingerprint
from engine.kv import ReceivedKV
from engine.model import KVCache
from tandem_rpc.v1 import cloud_pb2

if TYPE_CHECKING:
    from cloud.backends.llama_server import LlamaServerBackend

log = logging.getLogger(__name__)

FILE_PREFIX = "tandem-kv-"
STALE_FILE_S = 600.0  # a file of ours this old is left from a gateway that died mid-restore


class SlotHandoffError(RuntimeError):
    """The slot hand-off was asked for but cannot work with this engine (the reason says why)."""


@dataclass(frozen=True)
class ServedModel:
    """What the gateway knows of the engine's model without its weights: enough to accept caches made for it."""

    config: ModelConfig
    fingerprint: ModelFingerprint
    max_context: int
    cache_dtype: torch.dtype = torch.float16  # what uploads decode into: the engine's cache holds f16 at most

    def new_cache(self, n_positions: int | None = None) -> KVCache:
        return KVCache(self.config, n_positions or self.max_context, dtype=self.cache_dtype)


@dataclass
class Seed:
    """An upload taken for one resume: the cache and how many of its positions the prompt reuses."""

    entry: StoredKV
    reused: int


class SlotLeases:
    """Which engine slots this gateway's restores hold; at most one restore per slot."""

    def __init__(self, n_slots: int) -> None:
        self._free = list(range(n_slots))
        self._lock = threading.Lock()

    def take(self, prefer: Iterable[int] = ()) -> int | None:
        """A free slot, one of `prefer` (the engine's idle slots) where it can; None when all are leased."""
        with self._lock:
            for slot in prefer:
                if slot in self._free:
                    self._free.remove(slot)
                    return slot
            return self._free.pop(0) if self._free else None

    def give(self, slot: int) -> None:
        with self._lock:
            self._free.append(slot)

    def free(self) -> list[int]:
        with self._lock:
            return sorted(self._free)


class LlamaSlotKV:
    """The KV import of the llama-server backend (no export: PrefillKV stays UNIMPLEMENTED)."""

    def __init__(self, backend: "LlamaServerBackend", served: ServedModel, config: ServerConfig, slot_dir: Path,
                 fmt: SlotFormat) -> None:
        self.backend, self.served, self.config, self.dir, self.format = backend, served, config, slot_dir, fmt
        self.store = KVStore(config.kv_store_bytes, config.kv_ttl_s)
        self.leases = SlotLeases(backend.slots)

    def receive(self, chunks: Iterable[cloud_pb2.KVChunk], principal: str) -> tuple[str, ReceivedKV]:
        """Verify, decode and keep an upload, exactly as the built-in engine does; returns its handle."""
        tokens, received = receive_upload(self.served, self.config, chunks)
        return self.store.put(tokens, received.cache, principal), received

    def take(self, handle: str, plan: GenerationPlan, principal: str) -> Seed:
        entry, reused = take_upload(self.store, handle, plan.token_ids, principal)
        return Seed(entry, reused)

    def restore(self, seed: Seed, plan: GenerationPlan) -> int | None:
        """Put the seed's cache into a leased slot; the slot (give it back with `release`), or None after logging
        why the request goes by token IDs instead."""
        if seed.reused == 0:
            return None
        if len(plan.token_ids) + plan.max_new_tokens > self.backend.facts.max_context:
            log.warning("KV restore skipped: %d prompt + %d new tokens do not fit a slot of %d positions; "
                        "prefilling from token IDs", len(plan.token_ids), plan.max_new_tokens,
                        self.backend.facts.max_context)
            return None
        slot = self.leases.take(prefer=self._idle_slots())
        if slot is None:
            log.info("KV restore skipped: every engine slot holds a restore; prefilling from token IDs")
            return None
        name = f"{FILE_PREFIX}{secrets.token_hex(8)}.bin"
        try:
            cache, n = seed.entry.cache, seed.reused
            data = encode_state(self.format, slot, seed.entry.tokens[:n], cache.k[:, 0, :, :n], cache.v[:, 0, :, :n])
            write_atomically(self.dir, name, data)
            reply = self.backend.client.post(f"/slots/{slot}?action=restore", json={"filename": name})
            if reply.status_code != 200:
                raise SlotFileError(f"HTTP {reply.status_code}: {reply.text[:300]}")
            restored = int(reply.json().get("n_restored", n))
            if restored != n:
                raise SlotFileError(f"the engine restored {restored} tokens of {n}")
            return slot
        except (SlotFileError, ValueError, OSError, httpx.HTTPError) as exc:
            self.leases.give(slot)
            log.warning("KV restore into llama-server slot %d failed (%s); prefilling from token IDs", slot, exc)
            return None
        finally:
            (self.dir / name).unlink(missing_ok=True)

    def release(self, slot: int) -> None:
        self.leases.give(slot)

    def _idle_slots(self) -> list[int]:
        """The engine's slots not processing a request now (a restore on a busy slot waits for it to end)."""
        try:
            reply = self.backend.client.get("/slots")
            return [int(s["id"]) for s in reply.json() if not s.get("is_processing")] if reply.is_success else []
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return []


def probe_format(backend: "LlamaServerBackend", slot_dir: Path, served: ServedModel, token: int) -> SlotFormat:
    """The engine's state-file format, read from a slot it saves into `slot_dir` after prefilling one token;
    SlotHandoffError when the directory is not the engine's, or the format is one the gateway cannot write."""
    if not slot_dir.is_dir():
        raise SlotHandoffError(f"--engine-slot-dir {slot_dir} is not a directory")
    _remove_stale(slot_dir)
    name = f"{FILE_PREFIX}probe-{secrets.token_hex(8)}.bin"
    path = slot_dir / name
    try:
        body = {"prompt": [token], "n_predict": 1, "cache_prompt": True, "id_slot": 0, "temperature": 0.0}
        backend.client.post("/completion", json=body).raise_for_status()
        reply = backend.client.post("/slots/0?action=save", json={"filename": name})
        if reply.status_code != 200:
            raise SlotHandoffError(f"llama-server cannot save slots (HTTP {reply.status_code}: {reply.text[:200]}); "
                                   "start it with --slot-save-path pointing at the gateway's --engine-slot-dir")
        if not path.is_file():
            raise SlotHandoffError(f"llama-server saved its slot, but not into {slot_dir}: its --slot-save-path must "
                                   "be the same directory as the gateway's --engine-slot-dir (a shared volume)")
        fmt = decode_state(path.read_bytes(), served.config.head_dim).format
        c = served.config
        fmt.check(c.n_layers, c.n_kv_heads, c.head_dim)
        return fmt
    except SlotFileError as exc:
        raise SlotHandoffError(f"the engine's slot files cannot take the gateway's caches: {exc}") from None
    finally:
        path.unlink(missing_ok=True)
        try:
            backend.client.post("/slots/0?action=erase")
        except httpx.HTTPError:
            pass


def _remove_stale(slot_dir: Path) -> None:
    """Delete files of ours that a gateway left behind when it died between writing and restoring them."""
    now = time.time()
    for path in slot_dir.glob(f"{FILE_PREFIX}*"):
        try:
            if now - path.stat().st_mtime > STALE_FILE_S:
                path.unlink()
        except OSError:
            pass
