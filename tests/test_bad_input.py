"""The bad-input suite: what a new user (or a damaged disk) hands the five commands.

Each case: exit code 2, exactly one line on stderr that names the problem (the fragment
below), no traceback, and the output path it named does not exist afterwards."""
import json
import os
import pickle

import numpy as np
import onnx
import pytest
import torch
from conftest import run_cli_many
from helpers import random_checkpoint
from PIL import Image

from fdrl_export.export import ExportOptions, export

INFER, TRAIN, EXPORT, EVAL, BENCH = "fdrl_runtime.cli", "fdrl_train.cli", "fdrl_export.cli", "fdrl_eval.cli", "fdrl_bench.cli"


def bomb_folder(d):
    """A folder whose one PNG is 100 bytes that claim 40000 x 40000 pixels (1.6 GB decoded)."""
    import io
    import struct
    import zlib
    buf = io.BytesIO()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(buf, format="PNG")
    b = bytearray(buf.getvalue())
    b[16:24] = struct.pack(">II", 40000, 40000)  # IHDR's width and height, then its CRC
    b[29:33] = struct.pack(">I", zlib.crc32(bytes(b[12:29])) & 0xFFFFFFFF)
    (d / "bomb").mkdir()
    (d / "bomb" / "a.png").write_bytes(bytes(b))
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(d / "bomb" / "b.png")


def _set(path, value):
    def damage(ck):
        *head, last = path
        target = ck
        for k in head:
            target = target[k]
        if value is DELETE:
            del target[last]
        else:
            target[last] = value(target[last]) if callable(value) else value
    return damage


def adam_state(ck):
    """Adam's state_dict after one step on this checkpoint's model, as fdrl-train saves it."""
    from fdrl_train.models import build_model
    model = build_model(ck["config"], tuple(ck["sample_shape"]))
    model.load_state_dict(ck["model"])
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(4, *ck["sample_shape"])).sum().backward()
    opt.step()
    return opt.state_dict()


DELETE = object()
JUNK = np.random.default_rng(26).bytes(300)  # the same junk every run: a failure here is reproducible
DAMAGED_CHECKPOINTS = {  # name -> what is wrong in it
    "step_text": _set(["step"], "seven"),
    "step_negative": _set(["step"], -3),
    "no_model_key": _set(["config", "model"], DELETE),
    "eta_text": _set(["config", "eta"], "fast"),
    "unknown_model": _set(["config", "model"], "resnet999"),
    "config_list": _set(["config"], [1, 2]),
    "shape_text": _set(["sample_shape"], ["two"]),
    "range_reversed": _set(["value_range"], [1.0, -1.0]),
    "nan_weights": _set(["model", "mlp.0.weight"], lambda w: w * float("nan")),
    "ema_misfit": _set(["ema", "mlp.0.weight"], lambda w: w[:1]),
    "prior_nan": _set(["prior"], {"kind": "ddp", "shape": [2], "clamp": False,
                                  "mean": torch.tensor([float("nan"), 0.0]), "factor": torch.eye(2)}),
    "prior_kind": _set(["prior"], {"kind": 5, "shape": [2], "clamp": False}),
    "optim_groups": _set(["optim"], {"state": {}, "param_groups": "lr=1"}),
    "rng_floats": _set(["rng"], {"torch": torch.zeros(4)}),
}
# Damage only loading can see: moments of the wrong shape, a generator state of the wrong size.
RESUME_DAMAGE = ("adam_moments", "rng_short")


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    torch.save(random_checkpoint("mlp", flow_steps=3, refine_steps=1), d / "toy.pt")
    export(d / "toy.pt", d / "toy.onnx", ExportOptions(check=False))
    (d / "junk.onnx").write_bytes(JUNK)
    (d / "empty.onnx").write_bytes(b"")
    (d / "junk.pt").write_bytes(JUNK)
    (d / "junk.pt2").write_bytes(JUNK)
    (d / "junk.npz").write_bytes(JUNK)
    (d / "file.txt").write_text("not a folder")
    np.save(d / "good.npy", np.zeros((10, 2), np.float32))
    np.save(d / "one.npy", np.zeros((1, 2), np.float32))  # one point: MMD² is 0/0
    np.save(d / "shape.npy", np.zeros((10, 3), np.float32))
    np.save(d / "nan.npy", np.full((10, 2), np.nan, np.float32))
    np.save(d / "empty.npy", np.zeros((0, 2), np.float32))
    np.save(d / "objects.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    np.savez(d / "objects.npz", x=np.array([{"a": 1}], dtype=object))
    np.save(d / "strings.npy", np.array(["a", "b"]))
    (d / "bad.yaml").write_text("dataset: [unclosed\n")
    (d / "list.yaml").write_text("- 1\n- 2\n")
    (d / "pickled_ddp.pt").write_bytes(pickle.dumps({"a": 1}))
    (d / "nodata").mkdir()
    (d / "notimages").mkdir()
    (d / "notimages" / "a.png").write_bytes(b"not a png at all")
    (d / "mixed").mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(d / "mixed" / "a.png")
    Image.fromarray(np.zeros((6, 6), np.uint8)).save(d / "mixed" / "b.png")
    (d / "images").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(d / "images" / "a.png")
    (d / "e.plan").write_bytes(b"engine")
    (d / "cut_run" / "shards").mkdir(parents=True)  # a run folder whose shard was cut short
    np.savez(d / "cut_run" / "shards" / "00000.npz", ids=np.arange(4), x=np.zeros((4, 2), np.float32))
    whole = (d / "cut_run" / "shards" / "00000.npz").read_bytes()
    (d / "cut_run" / "shards" / "00000.npz").write_bytes(whole[: len(whole) // 2])
    broken = random_checkpoint("mlp")
    broken["model"] = {k: v[..., :1] for k, v in broken["model"].items()}  # weights of the wrong shapes
    broken["ema"] = dict(broken["model"])
    torch.save(broken, d / "unexportable.pt")
    bomb_folder(d)
    np.save(d / "complex.npy", np.ones((10, 2), np.complex64))
    np.savez(d / "stats_text.npz", mu=np.array(["a", "b"]), sigma=np.array([["a", "b"], ["c", "d"]]))
    np.savez(d / "stats_nan.npz", mu=np.array([np.nan, 0.0]), sigma=np.eye(2))
    np.savez(d / "stats_misfit.npz", mu=np.zeros(3), sigma=np.eye(4))
    (d / "dup.yaml").write_text("dataset: swissroll\nsteps: 10\nsteps: 20\n")
    # nested aliases: a 500-byte file whose value prints as gigabytes
    levels = ["a0: &a0 [" + ", ".join(["xxxxxxxxxx"] * 10) + "]"]
    levels += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 8)]
    (d / "aliases.yaml").write_text("\n".join(levels) + "\ndataset: *a7\n")
    os.mkfifo(d / "fifo.onnx")
    (d / "folder.onnx").mkdir()
    os.symlink(d / "loop_b.onnx", d / "loop_a.onnx")
    os.symlink(d / "loop_a.onnx", d / "loop_b.onnx")
    os.mkfifo(d / "fifo.pt")
    for name, damage in DAMAGED_CHECKPOINTS.items():
        ck = random_checkpoint("mlp", flow_steps=3, refine_steps=1)
        damage(ck)
        torch.save(ck, d / f"ck_{name}.pt")
    ck = random_checkpoint("mlp", flow_steps=3, refine_steps=1)
    ck["optim"] = adam_state(ck)
    ck["optim"]["state"][0]["exp_avg"] = ck["optim"]["state"][0]["exp_avg"][:1]
    torch.save(ck, d / "ck_adam_moments.pt")
    ck = random_checkpoint("mlp", flow_steps=3, refine_steps=1)
    ck["rng"] = {"torch": torch.zeros(10, dtype=torch.uint8)}
    torch.save(ck, d / "ck_rng_short.pt")
    torch.save(random_checkpoint("resnet8", flow_steps=2, refine_steps=0), d / "image.pt")
    export(d / "image.pt", d / "image.onnx", ExportOptions(check=False))
    m = onnx.load(str(d / "toy.onnx"))  # metadata that disagrees with the graph: 3-d samples
    meta = json.loads(m.metadata_props[0].value)
    meta["sample_shape"] = [3]
    del meta["payload_sha256"]
    m.metadata_props[0].value = json.dumps(meta)
    onnx.save(m, str(d / "shape_lie.onnx"))
    return d


CASES = [
    # fdrl-infer: the artifact
    (INFER, ["--engine", "{d}/missing.onnx", "--out", "{o}"], "does not exist"),
    (INFER, ["--engine", "{d}/junk.onnx", "--out", "{o}"], "not a readable ONNX"),
    (INFER, ["--engine", "{d}/empty.onnx", "--out", "{o}"], "not an fdrl artifact"),
    (INFER, ["--engine", "{d}/file.txt", "--out", "{o}"], "unknown artifact type"),
    (INFER, ["--engine", "{d}/junk.pt2", "--out", "{o}"], "not a readable .pt2"),
    (INFER, ["--engine", "{d}/e.plan", "--out", "{o}"], "metadata file"),
    (INFER, ["--engine", "{d}", "--out", "{o}"], "unknown artifact type"),
    (INFER, ["--engine", "{d}/shape_lie.onnx", "-n", "4", "--out", "{o}"], "does not take"),
    (INFER, ["--out", "{o}"], "Missing option '--engine'"),
    # fdrl-infer: numbers
    (INFER, ["--engine", "{d}/toy.onnx", "-n", "0", "--out", "{o}"], "-n 0"),
    (INFER, ["--engine", "{d}/toy.onnx", "-n", "-5", "--out", "{o}"], "-n -5"),
    (INFER, ["--engine", "{d}/toy.onnx", "-n", "abc", "--out", "{o}"], "not a valid integer"),
    (INFER, ["--engine", "{d}/toy.onnx", "-n", "1e3", "--out", "{o}"], "not a valid integer"),
    (INFER, ["--engine", "{d}/toy.onnx", "--batch", "0", "--out", "{o}"], "--batch 0"),
    (INFER, ["--engine", "{d}/toy.onnx", "--steps", "0", "--out", "{o}"], "--steps 0"),
    (INFER, ["--engine", "{d}/toy.onnx", "--steps", "-3", "--out", "{o}"], "--steps -3"),
    (INFER, ["--engine", "{d}/toy.onnx", "--shard-size", "0", "--out", "{o}"], "--shard-size 0"),
    (INFER, ["--engine", "{d}/toy.onnx", "--seed", "x", "--out", "{o}"], "--seed"),
    (INFER, ["--engine", "{d}/toy.onnx", "--shard", "2/2", "--out", "{o}"], "--shard"),
    (INFER, ["--engine", "{d}/toy.onnx", "--shard", "a/b", "--out", "{o}"], "--shard"),
    (INFER, ["--engine", "{d}/toy.onnx", "--shard", "1", "--out", "{o}"], "--shard"),
    (INFER, ["--engine", "{d}/toy.onnx", "--shard", "-1/2", "--out", "{o}"], "--shard"),
    (INFER, ["--engine", "{d}/toy.onnx", "--threads", "-1", "--out", "{o}"], "--threads"),
    (INFER, ["--engine", "{d}/toy.onnx", "--threads", "100000", "--out", "{o}"], "--threads 100000"),
    # fdrl-infer: choices and devices
    (INFER, ["--engine", "{d}/toy.onnx", "--format", "gif", "--out", "{o}"], "'gif' is not one of"),
    (INFER, ["--engine", "{d}/toy.onnx", "--format", "png", "--out", "{o}"], "points are written as npz"),
    (INFER, ["--engine", "{d}/toy.onnx", "--precision", "int8", "--out", "{o}"], "--precision"),
    (INFER, ["--engine", "{d}/toy.onnx", "--precision", "bf16", "--out", "{o}"], "bf16"),
    (INFER, ["--engine", "{d}/toy.onnx", "--backend", "tpu", "--out", "{o}"], "'tpu' is not one of"),
    (INFER, ["--engine", "{d}/toy.onnx", "--backend", "torch", "--out", "{o}"], "cannot run"),
    (INFER, ["--engine", "{d}/toy.onnx", "--backend", "tensorrt", "--out", "{o}"], "tensorrt"),
    (INFER, ["--engine", "{d}/toy.onnx", "--device", "cuda", "--out", "{o}"], "cuda"),
    (INFER, ["--engine", "{d}/toy.onnx", "--device", "tpu", "--out", "{o}"], "--device tpu"),
    (INFER, ["--engine", "{d}/toy.onnx", "--class", "3", "--out", "{o}"], "not class-conditional"),
    (INFER, ["--engine", "{d}/toy.onnx", "--classes", "0-3", "--out", "{o}"], "not class-conditional"),
    (INFER, ["--engine", "{d}/toy.onnx", "--class", "1", "--classes", "2", "--out", "{o}"], "not both"),
    (INFER, ["--engine", "{d}/toy.onnx", "--classes", "x-y", "--out", "{o}"], "--classes"),
    # fdrl-infer: --init
    (INFER, ["--engine", "{d}/toy.onnx", "--init", "{d}/missing.npz", "--out", "{o}"], "--init"),
    (INFER, ["--engine", "{d}/toy.onnx", "--init", "{d}/shape.npy", "--out", "{o}"], "shape"),
    (INFER, ["--engine", "{d}/toy.onnx", "--init", "{d}/nan.npy", "--out", "{o}"], "not finite"),
    (INFER, ["--engine", "{d}/toy.onnx", "--init", "{d}/objects.npy", "--out", "{o}"], "cannot be read"),
    (INFER, ["--engine", "{d}/toy.onnx", "--init", "{d}/objects.npz", "--out", "{o}"], "cannot be read"),
    (INFER, ["--engine", "{d}/toy.onnx", "--init", "{d}/strings.npy", "--out", "{o}"], "not samples"),
    (INFER, ["--engine", "{d}/toy.onnx", "--init", "{d}/junk.npz", "--out", "{o}"], "cannot be read"),
    (INFER, ["--engine", "{d}/toy.onnx", "--init", "{d}/empty.npy", "--out", "{o}"], "holds no samples"),
    (INFER, ["--engine", "{d}/toy.onnx", "--init", "{d}/images", "--out", "{o}"], "not images"),
    (INFER, ["--engine", "{d}/toy.onnx", "--init", "{d}/file.txt", "--out", "{o}"], "--init"),
    (INFER, ["--engine", "{d}/toy.onnx", "--init", "{d}/good.npy", "-n", "100", "--out", "{o}"], "holds 10"),
    # fdrl-infer: where it writes
    (INFER, ["--engine", "{d}/toy.onnx", "--out", "{d}/file.txt"], "not a writable folder"),
    (INFER, ["--engine", "{d}/toy.onnx", "--out", "{d}/file.txt/o"], "not a writable folder"),
    (INFER, ["--engine", "{d}/toy.onnx", "-n", "4", "--grid", "{d}/file.txt/g.png", "--out", "{o}"], "--grid"),
    (INFER, ["--engine", "{d}/toy.onnx", "-n", "4", "--grid", "{d}/g.gif", "--out", "{o}"], "--grid"),
    # fdrl-train
    (TRAIN, ["--config", "nope", "--out", "{o}"], "nope"),
    (TRAIN, ["--config", "{d}/bad.yaml", "--out", "{o}"], "not valid YAML"),
    (TRAIN, ["--config", "{d}/list.yaml", "--out", "{o}"], "mapping"),
    (TRAIN, ["--config", "{d}/file.txt", "--out", "{o}"], "mapping"),
    (TRAIN, ["--config", "swissroll", "--out", "{o}", "--set", "steps=abc"], "steps"),
    (TRAIN, ["--config", "swissroll", "--out", "{o}", "--set", "steps=-1"], "steps"),
    (TRAIN, ["--config", "swissroll", "--out", "{o}", "--set", "nokey=1"], "nokey"),
    (TRAIN, ["--config", "swissroll", "--out", "{o}", "--set", "steps"], "KEY=VALUE"),
    (TRAIN, ["--config", "swissroll", "--out", "{o}", "--set", "loss=LSIF", "divergence=KL"], "LSIF"),
    (TRAIN, ["--config", "swissroll", "--out", "{o}", "--set", "lr=nan"], "lr"),
    (TRAIN, ["--config", "swissroll", "--out", "{o}", "--set", "eta=inf"], "eta"),
    (TRAIN, ["--config", "swissroll", "--out", "{o}", "--set", "eta=0"], "eta"),
    (TRAIN, ["--config", "swissroll", "--out", "{o}", "--set", "noise=-1"], "noise"),
    (TRAIN, ["--config", "swissroll", "--out", "{o}", "--set", "model=resnet999"], "resnet999"),
    (TRAIN, ["--config", "swissroll", "--out", "{o}", "--set", "dataset=mnist9"], "mnist9"),
    (TRAIN, ["--config", "swissroll", "--out", "{o}", "--set", "dataset=cifar10"], "data_dir"),
    (TRAIN, ["--config", "swissroll", "--out", "{o}", "--set", "dataset=folder", "data_dir={d}/nodata",
             "model=resnet32"], "no images"),
    (TRAIN, ["--config", "swissroll", "--out", "{o}", "--set", "device=cuda"], "cuda"),
    (TRAIN, ["--config", "swissroll", "--out", "{o}", "--set", "amp=bf16"], "amp"),
    (TRAIN, ["--config", "swissroll"], "--out"),
    (TRAIN, ["--out", "{o}"], "--config"),
    (TRAIN, ["--config", "swissroll", "--out", "{d}/file.txt/o"], "file.txt"),
    (TRAIN, ["--resume", "{d}/missing"], "does not exist"),
    (TRAIN, ["--resume", "{d}/junk.pt"], "cannot be read"),
    (TRAIN, ["--resume", "{d}/toy.pt", "--config", "swissroll"], "not both"),
    (TRAIN, ["--resume", "{d}/toy.pt", "--set", "model=resnet8", "--out", "{o}"], "cannot change"),
    # fdrl-export
    (EXPORT, [], "usage"),
    (EXPORT, ["{d}/missing.pt", "{o}.onnx"], "does not exist"),
    (EXPORT, ["{d}/junk.pt", "{o}.onnx"], "cannot be read"),
    (EXPORT, ["{d}/toy.pt", "{o}.txt"], "unknown artifact type"),
    (EXPORT, ["{d}/toy.pt", "{d}/nodir/x/{n}.onnx"], "does not exist"),
    (EXPORT, ["{d}/toy.pt", "{o}.onnx", "--refine-steps", "-1"], "--refine-steps"),
    (EXPORT, ["{d}/toy.pt", "{o}.onnx", "--precision", "fp16"], "TensorRT"),
    (EXPORT, ["{d}/toy.pt", "{o}.onnx", "--precision", "int8"], "--precision"),
    (EXPORT, ["{d}/toy.pt", "{o}.onnx", "--weights", "best"], "--weights"),
    (EXPORT, ["{d}/toy.pt", "{o}.plan"], "TensorRT"),
    (EXPORT, ["{d}/toy.pt", "{o}.onnx", "--prior", "{d}/missing_ddp.pt"], "does not exist"),
    (EXPORT, ["{d}/toy.pt", "{o}.onnx", "--prior", "{d}/pickled_ddp.pt"], "--trust-pickle"),
    (EXPORT, ["{d}/toy.pt", "{o}.onnx", "--classifier", "{d}/missing.pt"], "does not exist"),
    (EXPORT, ["{d}/toy.pt", "{o}.onnx", "--classifier", "{d}/junk.pt"], "cannot be read"),
    (EXPORT, ["{d}/toy.pt", "{o}.onnx", "--phi", "x"], "--phi"),
    (EXPORT, ["--info", "{d}/junk.onnx"], "not a readable ONNX"),
    (EXPORT, ["--info", "{d}/missing.onnx"], "does not exist"),
    (EXPORT, ["--reseal", "{d}/toy.pt2"], "only .onnx"),
    (EXPORT, ["--reseal", "{d}/missing.onnx"], "does not exist"),
    # fdrl-eval
    (EVAL, ["{d}/missing", "--against", "swissroll"], "does not exist"),
    (EVAL, ["{d}/junk.npz", "--against", "swissroll"], "cannot be read"),
    (EVAL, ["{d}/objects.npz", "--against", "swissroll"], "cannot be read"),
    (EVAL, ["{d}/strings.npy", "--against", "swissroll"], "numbers"),
    (EVAL, ["{d}/nan.npy", "--against", "swissroll"], "not finite"),
    (EVAL, ["{d}/empty.npy", "--against", "swissroll"], "no samples"),
    (EVAL, ["{d}/good.npy", "--against", "nope"], "--against"),
    (EVAL, ["{d}/good.npy", "--against", "swissroll", "--width", "0"], "--width"),
    (EVAL, ["{d}/good.npy", "--against", "swissroll", "--json", "{d}/nodir/x/{n}.json"], "does not exist"),
    (EVAL, ["{d}/good.npy", "--against", "mnist"], "28x28"),
    (EVAL, ["{d}/good.npy", "--against", "{d}/junk.npz"], "not a statistics file"),
    (EVAL, ["{d}/good.npy", "--against", "{d}/good.npy", "--save-stats", "{o}.npz"], "--against"),
    (EVAL, ["{d}/good.npy", "--save-stats", "{o}.npz"], "points"),
    (EVAL, ["{d}/good.npy", "{d}/good.npy", "--against", "swissroll"], "not both"),
    (EVAL, ["{d}/good.npy", "{d}/nan.npy"], "not finite"),
    (EVAL, ["{d}/good.npy", "--against", "swissroll", "--device", "tpu"], "--device"),
    (EVAL, ["{d}/good.npy", "--against", "swissroll", "--batch-size", "0"], "--batch-size"),
    (EVAL, ["{d}/mixed", "--against", "mnist"], "differ in size"),
    (EVAL, ["{d}/notimages", "--against", "mnist"], "not a readable image"),
    (EVAL, ["{d}/nodata", "--against", "mnist"], "no images"),
    (EVAL, ["{d}/good.npy"], "nothing to compare with"),
    (EVAL, ["{d}/cut_run", "--against", "swissroll"], "cannot be read"),
    # fdrl-bench
    (BENCH, ["--model", "nope"], "nope"),
    (BENCH, ["{d}/missing.onnx"], "does not exist"),
    (BENCH, ["{d}/junk.onnx"], "not a readable ONNX"),
    (BENCH, ["--model", "mlp", "--backends", "nope"], "nope"),
    (BENCH, ["--model", "mlp", "--repeats", "0"], "--repeats"),
    (BENCH, ["--model", "mlp", "--steps", "0"], "--steps"),
    (BENCH, ["--model", "mlp", "--threads", "99999"], "--threads"),
    (BENCH, ["--train", "nope"], "nope"),
    (BENCH, ["{d}/unexportable.pt", "--backends", "onnxruntime"], "size mismatch"),
    (EXPORT, ["{d}/unexportable.pt", "{o}.onnx"], "do not fit model 'mlp'"),
    (BENCH, ["--train", "swissroll", "--set", "bad=1"], "bad"),
    (BENCH, ["--model", "mlp", "--json", "{d}/nodir/x/{n}.json", "--backends", "eager", "--repeats", "1",
             "--batch", "8", "--steps", "1"], "does not exist"),
    # --- issue 26's classes ---
    # files that are not what their name says
    (INFER, ["--engine", "{d}/fifo.onnx", "--out", "{o}"], "not a regular file"),
    (INFER, ["--engine", "{d}/folder.onnx", "--out", "{o}"], "is a folder"),
    (INFER, ["--engine", "{d}/loop_a.onnx", "--out", "{o}"], "symbolic links"),
    (EXPORT, ["{d}/fifo.pt", "{o}.onnx"], "not a regular file"),
    (TRAIN, ["--resume", "{d}/fifo.pt", "--out", "{o}"], "not a regular file"),
    # image files that lie about their size
    (INFER, ["--engine", "{d}/image.onnx", "--init", "{d}/bomb", "--out", "{o}"], "8192 x 8192"),
    (EVAL, ["{d}/bomb", "--against", "mnist"], "8192 x 8192"),
    (TRAIN, ["--config", "swissroll", "--out", "{o}", "--quiet", "--set", "dataset=folder", "data_dir={d}/bomb",
             "model=resnet32", "img_size=8", "eval_every=0"], "8192 x 8192"),
    # values checked where they enter
    (INFER, ["--engine", "{d}/toy.onnx", "--init", "{d}/complex.npy", "--out", "{o}"], "complex"),
    (EVAL, ["{d}/complex.npy", "--against", "swissroll"], "complex"),
    (EVAL, ["{d}/images", "{d}/stats_text.npz"], "real numbers"),
    (TRAIN, ["--config", "mnist", "--out", "{o}", "--set", "eval_against={d}/stats_text.npz"], "real numbers"),
    (TRAIN, ["--config", "swissroll", "--out", "{o}", "--set", "eval_against={d}/images"], "statistics"),
    (EVAL, ["{d}/images", "{d}/stats_nan.npz"], "NaN"),
    (EVAL, ["{d}/images", "--against", "{d}/stats_misfit.npz"], "do not fit"),
    (EVAL, ["{d}/good.npy", "--against", "swissroll", "--json", "{d}"], "is a directory"),
    (EVAL, ["{d}/one.npy", "--against", "swissroll", "--json", "{o}.json"], "came out nan"),
    (EVAL, ["{d}/good.npy", "--against", "swissroll", "--json", "{d}/file.txt/x.json"], "does not exist"),
    (BENCH, ["--model", "mlp", "--device", "tpu"], "--device tpu"),
    (BENCH, ["--model", "mlp", "--precision", "fp8", "--backends", "onnxruntime", "--batch", "8", "--steps", "1",
             "--repeats", "1"], "no row could run"),
    (BENCH, ["{d}/toy.onnx", "--backends", "tensorrt", "--batch", "8", "--steps", "1", "--repeats", "1"],
     "no row could run"),
    (BENCH, ["--model", "mlp", "--threads", "-2"], "--threads"),
    (BENCH, ["--model", "mlp", "--plot", "{d}/nodir/{n}.png"], "does not exist"),
    (TRAIN, ["--config", "swissroll", "--out", "{o}", "--set", "threads=100000"], "threads"),
    (TRAIN, ["--config", "swissroll", "--out", "{o}", "--set", "threads=-1"], "threads"),
    (TRAIN, ["--config", "{d}/dup.yaml", "--out", "{o}"], "given twice"),
    (TRAIN, ["--config", "{d}/aliases.yaml", "--out", "{o}"], "dataset"),
    (TRAIN, ["--config", "swissroll", "--out", "{o}", "--set", "dataset=" + "x" * 100000], "dataset"),
    (TRAIN, ["--config", "swissroll", "--out", "{o}", "--set", "device=tpu"], "device"),
    (TRAIN, ["--config", "swissroll", "--out", "{o}", "--set", "steps=1.5"], "steps"),
    (TRAIN, ["--config", "swissroll", "--out", "{o}", "--set", "steps=true"], "steps"),
    # checkpoints: the contract, for resume, export and bench alike
    *[(TRAIN, ["--resume", f"{{d}}/ck_{name}.pt", "--out", "{o}"], "checkpoint") for name in DAMAGED_CHECKPOINTS],
    *[(EXPORT, [f"{{d}}/ck_{name}.pt", "{o}.onnx"], "checkpoint") for name in DAMAGED_CHECKPOINTS],
    (BENCH, ["{d}/ck_step_text.pt", "--backends", "onnxruntime"], "its step"),
    (BENCH, ["{d}/ck_nan_weights.pt", "--backends", "onnxruntime"], "NaN"),
    *[(TRAIN, ["--resume", f"{{d}}/ck_{name}.pt", "--out", "{o}"], "cannot resume") for name in RESUME_DAMAGE],
    # launchers
    (TRAIN, ["--config", "swissroll", "--out", "{o}", "--set", "steps=2"], "MASTER_ADDR",
     {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}),
]


@pytest.fixture(scope="module")
def results(d, tmp_path_factory):
    """Every case run once, each in a process of its own (forked after the imports)."""
    places = [tmp_path_factory.mktemp("case") for _ in CASES]
    procs = run_cli_many([(case[0], [a.format(d=d, o=place / "out", n=place.name) for a in case[1]],
                           case[3] if len(case) > 3 else None) for case, place in zip(CASES, places)])
    return [(place, place / "out", proc) for place, proc in zip(places, procs)]


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(CASES)), ids=[f"{c[0].split('.')[0]}-{i}" for i, c in enumerate(CASES)])
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(d, results, index):
    fragment = CASES[index][2]
    place, out, proc = results[index]
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr[-2000:]
    assert fragment.lower() in lines[0].lower(), (fragment, lines[0])
    assert not out.exists() and not list(place.parent.glob(f"{place.name}/out*")) and not (d / "nodir").exists()
    assert not list(d.rglob(".*tmp-*"))


def test_the_suite_is_large():
    assert len(CASES) >= 100


# --- the Python API: the same rules, as exceptions (FdrlError, one line) -----------------------

API_CASES = [  # (what sample/iter_batches/load get, the fragment of the message)
    (lambda s: s.sample(-1), "n -1"),
    (lambda s: s.sample(2.5), "n 2.5"),
    (lambda s: s.sample("x"), "n 'x'"),
    (lambda s: s.sample(True), "n True"),
    (lambda s: s.sample(4, seed="x"), "seed 'x'"),
    (lambda s: s.sample(4, seed=1.5), "seed 1.5"),
    (lambda s: s.sample(4, batch=0), "batch 0"),
    (lambda s: s.sample(4, steps=-2), "steps -2"),
    (lambda s: s.sample(ids=[0.5, 1.5]), "integers"),
    (lambda s: s.sample(ids=[-1, 2]), "integers >= 0"),
    (lambda s: s.sample(ids=[["a"]]), "integers"),
    (lambda s: s.sample(4, ids=[1]), "one of the two"),
    (lambda s: s.sample(4, init=np.ones((4, 2), np.complex64)), "complex"),
    (lambda s: s.sample(4, init=np.full((4, 2), np.inf, np.float32)), "not finite"),
    (lambda s: s.sample(4, classes=3), "not class-conditional"),
    (lambda s: next(s.iter_batches(-5)), "n -5"),
]


@pytest.fixture(scope="module")
def toy_sampler(d):
    import fdrl_runtime
    with fdrl_runtime.load(d / "toy.onnx", threads=1) as s:
        yield s


@pytest.mark.parametrize("index", range(len(API_CASES)))
def test_api_refuses_bad_arguments_in_one_line(toy_sampler, index):
    from fdrl_core.errors import FdrlError
    call, fragment = API_CASES[index]
    with pytest.raises(FdrlError) as info:
        call(toy_sampler)
    message = str(info.value)
    assert "\n" not in message and len(message) < 400
    assert fragment.lower() in message.lower(), message


@pytest.mark.parametrize("kwargs, fragment", [({"threads": -1}, "threads -1"), ({"threads": 10**5}, "threads 100000"),
                                              ({"device": "tpu"}, "--device tpu"), ({"threads": 1.5}, "threads 1.5")])
def test_api_load_refuses_bad_arguments(d, kwargs, fragment):
    import fdrl_runtime
    from fdrl_core.errors import FdrlError
    with pytest.raises(FdrlError, match=fragment.replace(".", r"\.")):
        fdrl_runtime.load(d / "toy.onnx", **kwargs)


def test_iter_batches_is_lazy_in_ids(toy_sampler):
    """10**12 samples stream one batch at a time: the first batch comes at once (before,
    every id was allocated first: 8 TB) and equals the same ids asked for directly."""
    ids, x = next(toy_sampler.iter_batches(10**12, seed=3, batch=4, steps=2))
    assert ids.tolist() == [0, 1, 2, 3]
    np.testing.assert_array_equal(x, toy_sampler.sample(ids=[0, 1, 2, 3], seed=3, steps=2))


def test_a_full_disk_while_saving_a_checkpoint_is_one_error_and_keeps_the_old_file(tmp_path, monkeypatch):
    """torch.save reports a full disk as RuntimeError('[enforce fail ...] file write failed'):
    it becomes a CheckpointError, the previous last.pt stays whole and no temporary is left."""
    from fdrl_train import checkpoint as cp
    ck = random_checkpoint("mlp")
    cp.save_checkpoint(ck, tmp_path / "last.pt")
    before = (tmp_path / "last.pt").read_bytes()

    def full(obj, f, *a, **k):
        with open(f, "wb") as fh:
            fh.write(b"PK\x03\x04half")
        raise RuntimeError("[enforce fail at inline_container.cc:626] . PytorchStreamWriter failed writing file "
                           "data/0: file write failed")
    monkeypatch.setattr(cp.torch, "save", full)
    with pytest.raises(cp.CheckpointError, match="disk full"):
        cp.save_checkpoint({**ck, "step": 8}, tmp_path / "last.pt")
    assert (tmp_path / "last.pt").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_checkpoint_contract_resolves_an_older_config_and_keeps_the_weights(d):
    """A checkpoint written before a config key existed loads with that key's default;
    one that lacks a key saying what the run is does not (the CLI cases above)."""
    from fdrl_train.checkpoint import load_checkpoint
    ck = random_checkpoint("mlp", flow_steps=3, refine_steps=1)
    del ck["config"]["amp"], ck["config"]["flow_workers"]
    torch.save(ck, d / "older.pt")
    got = load_checkpoint(d / "older.pt")
    assert got["config"]["amp"] == "none" and got["config"]["flow_workers"] == 0
    assert all(torch.equal(got["model"][k], ck["model"][k]) for k in ck["model"])
