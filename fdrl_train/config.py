"""One resolved, validated training configuration.

A config is a flat mapping of plain values (YAML-friendly, and stored as-is in every
checkpoint). `load_config` reads a YAML file, applies `key=value` overrides, fills in
defaults and validates; every problem is a `ConfigError` naming the key.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from fdrl_core.errors import FdrlError, short

CONFIG_DIR = Path(__file__).parent / "configs"

DATASETS = (
    "chasm", "8gaussians", "25gaussians", "swissroll", "digits", "mnist",
    "cifar10", "celeba", "lsun_church", "cat2dog", "folder", "mnist_thick",
)
# Source domains for unpaired translation (prior: domain): each pairs with targets above;
# "folder" is any folder of images (source_dir), e.g. another generator's samples to refine.
SOURCES = ("mnist", "cat2dog_a", "folder")
MODELS = ("mlp", "resnet8", "resnet28", "resnet32", "resnet64", "resnet64_shallow", "resnet128")
LOSSES = ("LSIF", "LR", "KL")
DIVERGENCES = ("Pearson", "KL", "JS", "logD")
PRIORS = ("ddp", "up", "normal", "domain")
# The paper's pairings: LSIF estimates r, so only Pearson's f'(r) = 2r applies to it;
# LR and KL estimate log r, which KL, JS and logD flows take.
VALID_PAIRINGS = {"LSIF": ("Pearson",), "LR": ("KL", "JS", "logD"), "KL": ("KL", "JS", "logD")}


class ConfigError(FdrlError, ValueError):
    """A config key with a bad value; the message names the key and what is allowed."""


@dataclass(frozen=True)
class Key:
    default: Any
    kind: type | tuple
    check: Callable[[Any], bool] | None = None
    allowed: str = ""


def _positive(v): return v > 0
def _non_negative(v): return v >= 0
def _unit(v): return 0 <= v < 1


SCHEMA: dict[str, Key] = {
    "dataset": Key("swissroll", str, lambda v: v in DATASETS, "one of " + ", ".join(DATASETS)),
    "data_dir": Key(None, (str, type(None)), None, "a folder path"),
    "img_size": Key(64, int, _positive, "a positive integer (dataset 'folder' only)"),
    "model": Key("mlp", str, lambda v: v in MODELS, "one of " + ", ".join(MODELS)),
    "hidden_dim": Key(64, int, _positive, "a positive integer"),
    "n_hidden_layers": Key(3, int, _non_negative, "an integer >= 0"),
    "spectral_norm": Key(False, bool),
    "self_attn": Key(False, bool),
    "loss": Key("LSIF", str, lambda v: v in LOSSES, "one of " + ", ".join(LOSSES)),
    "divergence": Key("Pearson", str, lambda v: v in DIVERGENCES, "one of " + ", ".join(DIVERGENCES)),
    "prior": Key("normal", str, lambda v: v in PRIORS, "one of " + ", ".join(PRIORS)),
    "prior_std": Key(1.0, float, _positive, "a positive number"),
    "source": Key(None, (str, type(None)), lambda v: v is None or v in SOURCES,
                  "a source domain for prior: domain (" + ", ".join(SOURCES) + ")"),
    "source_dir": Key(None, (str, type(None)), None, "a folder of images (source: folder)"),
    "prior_rank": Key(-1, int, lambda v: v >= -1, "-1 (full covariance up to 64x64x3, rank 256 above), "
                      "0 (full) or a rank k > 0 (low rank plus diagonal)"),
    "steps": Key(1000, int, _positive, "a positive integer"),
    "batch_size": Key(256, int, _positive, "a positive integer"),
    "lr": Key(1e-4, float, _positive, "a positive number"),
    "beta1": Key(0.9, float, _unit, "a number in [0, 1)"),
    "beta2": Key(0.999, float, _unit, "a number in [0, 1)"),
    "lr_milestones": Key([], list, lambda v: all(isinstance(i, int) and i > 0 for i in v),
                         "a list of positive step numbers"),
    "lr_gamma": Key(0.1, float, _positive, "a positive number"),
    "flow_steps": Key(100, int, _non_negative, "an integer >= 0 (K; 0 trains a stale estimator on raw prior draws)"),
    "refine_steps": Key(0, int, _non_negative, "an integer >= 0 (kappa)"),
    "eta": Key(1.0, float, _positive, "a positive number"),
    "noise": Key(0.01, float, _non_negative, "a number >= 0 (nu)"),
    "ema_rate": Key(0.998, float, _unit, "a number in [0, 1); 0 turns EMA off"),
    "dequant": Key(0.03, float, _non_negative, "a number >= 0"),
    "hflip": Key(False, bool),
    "test_fraction": Key(0.1, float, lambda v: 0 < v < 1, "a number in (0, 1)"),
    "seed": Key(0, int, _non_negative, "an integer >= 0"),
    "ckpt_every": Key(1000, int, _positive, "a positive integer"),
    "keep_numbered": Key(False, bool),
    "sample_every": Key(1000, int, _non_negative, "an integer >= 0; 0 turns grids off"),
    "log_every": Key(10, int, _positive, "a positive integer"),
    "grid_size": Key(64, int, _positive, "a positive integer"),
    "eval_every": Key(0, int, _non_negative, "an integer >= 0; 0 turns the quality watch off"),
    "eval_samples": Key(2000, int, lambda v: v >= 2, "an integer >= 2"),
    "eval_against": Key(None, (str, type(None)), None,
                        "null (the dataset's own measure) or a statistics .npz (mu, sigma) from fdrl-eval --save-stats: FID"),
    "eval_features": Key("inception", str, lambda v: v in ("inception", "digits"),
                         "inception or digits: the features of the FID against eval_against"),
    "compile_flow": Key(False, bool),
    "flow_workers": Key(0, int, _non_negative, "an integer >= 0; 0 = one per core for image models, 1 for points"),
    "threads": Key(0, int, _non_negative, "an integer >= 0; 0 keeps torch's default"),
    "device": Key("cpu", str, lambda v: v in ("auto", "cpu", "cuda") or v.startswith("cuda:"),
                  "auto, cpu, cuda or cuda:N (under torchrun each rank takes cuda:LOCAL_RANK)"),
    "amp": Key("none", str, lambda v: v in ("none", "bf16"), "none or bf16 (autocast; GPU only)"),
}


def _coerce(key: str, value: Any) -> Any:
    spec = SCHEMA[key]
    kinds = spec.kind if isinstance(spec.kind, tuple) else (spec.kind,)
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    # bool is an int to Python, never to a config.
    ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
    if not ok:
        names = "/".join("null" if k is type(None) else k.__name__ for k in kinds)
        raise ConfigError(f"config key '{key}': expected {names}, got {short(value)}"
                          + (f" ({spec.allowed})" if spec.allowed else ""))
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"config key '{key}': {value!r} is not a finite number")
    if spec.check is not None and value is not None and not spec.check(value):
        raise ConfigError(f"config key '{key}': {short(value)} is not allowed; use {spec.allowed}")
    return value


def validate(raw: dict) -> dict:
    """Fill defaults, check every key, check the pairing; return a new dict."""
    unknown = sorted(set(raw) - set(SCHEMA))
    if unknown:
        raise ConfigError(f"unknown config key '{unknown[0]}'; known keys: {', '.join(sorted(SCHEMA))}")
    cfg = {k: copy.deepcopy(spec.default) for k, spec in SCHEMA.items()}
    for k, v in raw.items():
        cfg[k] = _coerce(k, v)
    if (cfg["prior"] == "domain") != (cfg["source"] is not None):
        raise ConfigError("config keys 'prior'/'source': translation needs both prior: domain and a source "
                          f"({', '.join(SOURCES)}); other priors take no source")
    if (cfg["source"] == "folder") != (cfg["source_dir"] is not None):
        raise ConfigError("config keys 'source'/'source_dir': source: folder reads its images from source_dir "
                          "(--set source_dir=PATH); other sources take no source_dir")
    if cfg["divergence"] not in VALID_PAIRINGS[cfg["loss"]]:
        pairs = "; ".join(f"{l} with {'/'.join(d)}" for l, d in VALID_PAIRINGS.items())
        raise ConfigError(f"config keys 'loss'/'divergence': {cfg['loss']} with {cfg['divergence']} "
                          f"is not a valid pairing; valid: {pairs}")
    return cfg


def parse_override(item: str) -> tuple[str, Any]:
    """'key=value' with the value read as YAML (so 3, 1e-4, true, [1, 2] work)."""
    if "=" not in item:
        raise ConfigError(f"override {short(item)} is not of the form key=value")
    key, text = item.split("=", 1)
    key = key.strip()
    import yaml
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    if isinstance(value, str) and key in SCHEMA and SCHEMA[key].kind is float:
        try:  # YAML 1.1 reads '1e-4' (no dot) as a string.
            value = float(value)
        except ValueError:
            pass
    return key, value


def resolve_config_path(name_or_path: str) -> Path:
    """A path to a YAML file, or the name of a bundled config (e.g. 'swissroll')."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    bundled = CONFIG_DIR / f"{name_or_path}.yaml"
    if bundled.is_file():
        return bundled
    names = ", ".join(sorted(f.stem for f in CONFIG_DIR.glob("*.yaml")))
    raise ConfigError(f"config '{name_or_path}' not found: give a YAML file or one of {names}")


def _unique_key_loader():
    """yaml's SafeLoader refusing a mapping that names a key twice (plain YAML keeps the last,
    silently: a user who set lr twice trains with whichever came second)."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                line = key_node.start_mark.line + 1
                try:
                    if key in seen:
                        raise ConfigError(f"key {short(key)} is given twice (lines {seen[key]} and {line}): keep one")
                    seen[key] = line
                except TypeError:  # an unhashable key: the base class says so
                    break
            return super().construct_mapping(node, deep=deep)
    return UniqueKeyLoader


def load_config(name_or_path: str, overrides: list[str] | tuple = ()) -> dict:
    import yaml
    path = resolve_config_path(name_or_path)
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_unique_key_loader()) or {}
    except ConfigError as e:
        raise ConfigError(f"config file {path}: {e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text: save it as UTF-8") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a mapping of key: value")
    for item in overrides:
        k, v = parse_override(item)
        raw[k] = v
    return validate(raw)


def dump_config(cfg: dict) -> str:
    import yaml
    return yaml.safe_dump(cfg, sort_keys=True)
