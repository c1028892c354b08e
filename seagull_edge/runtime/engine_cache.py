"""Which TensorRT engine may be loaded here: cache keys, the ``engines.json`` manifest, the cache.

A TensorRT engine is a build for one GPU model, one TensorRT version, one precision and one
optimisation profile, from one ONNX file. Deserializing an engine built elsewhere fails at best
and misbehaves at worst, so an engine is only ever loaded when its recorded key matches this
machine and the ONNX beside it. Keys live in ``engines.json`` next to the engines (written by
``seagull-edge export trt``); engines built on a user's request for a folder that lacks them
(:func:`seagull_edge.export.trt.build_missing_engines`; the runtime itself never builds) go to a
per-user cache folder named by the key's digest.

Pure Python (no tensorrt, no CUDA): the checks are unit-tested on any machine.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from seagull_edge.errors import ModelFileError
from seagull_edge.fileio import atomic_write_bytes, atomic_write_text

MANIFEST = "engines.json"
CACHE_ENV = "SEAGULL_EDGE_ENGINE_CACHE"  # the kernel cache has its own, SEAGULL_EDGE_CACHE
KEY_VERSION = 1

# Profile: input name -> (min, opt, max) shapes; static inputs are not listed.
Profile = Mapping[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]


@dataclass(frozen=True)
class DeviceIdentity:
    """The GPU an engine runs on: its name and compute capability ("8.7" = Orin, "9.0" = H100)."""

    name: str
    compute_capability: str


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine's validity depends on."""

    onnx_sha256: str
    gpu: str
    compute_capability: str
    tensorrt: str
    precision: str  # "fp32" | "fp16" | "int8" | "strongly-typed" | "strongly-typed-fp16"
    profile: dict[str, list[list[int]]] = field(default_factory=dict)
    key_version: int = KEY_VERSION

    @classmethod
    def make(cls, onnx_sha256: str, device: DeviceIdentity, tensorrt: str, precision: str,
             profile: Profile | None = None) -> "EngineKey":
        prof = {name: [list(map(int, s)) for s in shapes] for name, shapes in sorted((profile or {}).items())}
        return cls(onnx_sha256, device.name, device.compute_capability, str(tensorrt), precision, prof)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str) -> "EngineKey":
        try:
            return cls(**{k: data[k] for k in ("onnx_sha256", "gpu", "compute_capability", "tensorrt",
                                               "precision", "profile", "key_version")})
        except (KeyError, TypeError) as exc:
            raise ModelFileError(f"{source}: engine key is incomplete ({exc})") from None

    def digest(self) -> str:
        """A short stable name for the cache (16 hex digits of the key's sha256)."""
        text = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def mismatches(self, device: DeviceIdentity, tensorrt: str, onnx_sha256: str | None) -> list[str]:
        """Why this engine may not run here; empty when it may."""
        why = []
        if self.key_version != KEY_VERSION:
            why.append(f"key format {self.key_version} (this seagull-edge writes {KEY_VERSION})")
        if onnx_sha256 is not None and self.onnx_sha256 != onnx_sha256:
            why.append("the ONNX file changed since the engine was built (stale engine)")
        if (self.gpu, self.compute_capability) != (device.name, device.compute_capability):
            why.append(f"built for {self.gpu} (sm {self.compute_capability}), this GPU is "
                       f"{device.name} (sm {device.compute_capability})")
        if self.tensorrt != tensorrt:
            why.append(f"built with TensorRT {self.tensorrt}, this is TensorRT {tensorrt}")
        return why


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(folder: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """``engines.json`` -> {role: {"file": ..., "key": {...}, ...}}; {} when there is none."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path}: not valid JSON ({exc})") from None
    engines = data.get("engines") if isinstance(data, dict) else None
    if not isinstance(engines, dict):
        raise ModelFileError(f"{path}: expected {{\"engines\": {{role: entry}}}}")
    return engines


def write_manifest(folder: str | os.PathLike, engines: Mapping[str, Mapping[str, Any]]) -> Path:
    """Merge entries into ``engines.json`` (other roles' entries are kept), atomically."""
    path = Path(folder) / MANIFEST
    merged = dict(read_manifest(folder))
    merged.update({role: dict(entry) for role, entry in engines.items()})
    atomic_write_text(path, json.dumps({"engines": merged}, indent=2, sort_keys=True) + "\n")
    return path


def cache_dir() -> Path:
    """Where engines built on request (not by ``export trt`` into a folder) live:
    $SEAGULL_EDGE_ENGINE_CACHE, else ~/.cache/seagull_edge/engines (beside the kernel cache)."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "seagull_edge" / "engines"


@dataclass
class EngineChoice:
    """The outcome of :func:`find_engine`: a path to load, or none and why."""

    path: Path | None
    key: EngineKey | None
    reasons: list[str]
    wanted_precision: str | None = None  # what the folder's manifest asked for, if it has an entry


def find_engine(folder: str | os.PathLike, role: str, onnx_path: str | os.PathLike | None,
                device: DeviceIdentity, tensorrt: str) -> EngineChoice:
    """The engine for ``role`` ("encoder", "assessor", ...) that may run on this machine.

    Looks at the folder's ``engines.json`` entry, then at the cache for a build of the same ONNX
    on this GPU and TensorRT (any precision the folder's entry asked for, else any). An engine
    file with no manifest entry is never loaded: nothing says what it was built for.
    """
    folder = Path(folder)
    onnx_sha = file_sha256(onnx_path) if onnx_path is not None and Path(onnx_path).is_file() else None
    reasons: list[str] = []
    entry = read_manifest(folder).get(role)
    wanted_precision = None
    if entry is not None:
        source = f"{folder / MANIFEST} [{role}]"
        key = EngineKey.from_dict(entry.get("key", {}), source)
        wanted_precision = key.precision
        path = folder / str(entry.get("file", ""))
        why = key.mismatches(device, tensorrt, onnx_sha)
        if not path.is_file():
            why.insert(0, f"{path.name} is missing")
        if not why:
            return EngineChoice(path, key, [])
        reasons.append(f"{path.name}: " + "; ".join(why))
    else:
        strays = sorted(p.name for p in folder.glob(f"{role}*.engine"))
        if strays:
            reasons.append(f"{', '.join(strays)} has no entry in {MANIFEST}, so what it was built for is unknown; "
                           "it is not loaded")
    if onnx_sha is not None:
        for sidecar in sorted(cache_dir().glob("*.json")):
            try:
                key = EngineKey.from_dict(json.loads(sidecar.read_text(encoding="utf-8")), str(sidecar))
            except (ModelFileError, ValueError, OSError):
                continue
            if wanted_precision is not None and key.precision != wanted_precision:
                continue
            engine = sidecar.with_suffix(".engine")
            if engine.is_file() and not key.mismatches(device, tensorrt, onnx_sha):
                return EngineChoice(engine, key, reasons, wanted_precision)
    return EngineChoice(None, None, reasons or [f"no {role} engine built for this GPU and TensorRT yet"],
                        wanted_precision)


def store_in_cache(plan: bytes, key: EngineKey) -> Path:
    """Write a built engine and its key into the cache (engine first, key last: a key file means
    its engine is complete)."""
    folder = cache_dir()
    engine = folder / f"{key.digest()}.engine"
    atomic_write_bytes(engine, plan)
    atomic_write_text(engine.with_suffix(".json"), json.dumps(asdict(key), indent=2, sort_keys=True) + "\n")
    return engine
