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
from conftest import run_cli
from helpers import random_checkpoint
from PIL import Image

from fdrl_export.export import ExportOptions, export

INFER, TRAIN, EXPORT, EVAL, BENCH = "fdrl_runtime.cli", "fdrl_train.cli", "fdrl_export.cli", "fdrl_eval.cli", "fdrl_bench.cli"


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    torch.save(random_checkpoint("mlp", flow_steps=3, refine_steps=1), d / "toy.pt")
    export(d / "toy.pt", d / "toy.onnx", ExportOptions(check=False))
    (d / "junk.onnx").write_bytes(os.urandom(300))
    (d / "empty.onnx").write_bytes(b"")
    (d / "junk.pt").write_bytes(os.urandom(300))
    (d / "junk.pt2").write_bytes(os.urandom(300))
    (d / "junk.npz").write_bytes(os.urandom(300))
    (d / "file.txt").write_text("not a folder")
    np.save(d / "good.npy", np.zeros((10, 2), np.float32))
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
]


@pytest.fixture(scope="module")
def results(d, tmp_path_factory):
    """Every case run once, two at a time (each is a process start: mostly imports)."""
    from concurrent.futures import ThreadPoolExecutor

    def one(case):
        module, args, _ = case
        place = tmp_path_factory.mktemp("case")
        out = place / "out"
        return place, out, run_cli(module, *[a.format(d=d, o=out, n=place.name) for a in args])
    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(one, CASES))


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(CASES)), ids=[f"{m.split('.')[0]}-{i}" for i, (m, _, _) in enumerate(CASES)])
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(d, results, index):
    _, _, fragment = CASES[index]
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
