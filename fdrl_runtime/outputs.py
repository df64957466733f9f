"""What fdrl-infer writes, shard by shard, so no work is lost.

A run folder holds `shards/NNNNN.npz` (uint8 HWC images, or float32 points for toy data,
with their global sample ids), `png/NNNNNN.png` (one file per image, numbered by global
id: a folder FID tools read), an optional grid and `summary*.json`. A shard counts as
done once its marker exists (its .npz, or `shards/NNNNN.done` when no .npz is asked
for), and every file is written under a temporary name and renamed, so an interrupted
run leaves only whole shards and the same command completes it.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from fdrl_core.atomic import atomic_write_bytes, remove_stale_temps, temporary_name
from fdrl_core.errors import FdrlError
from fdrl_core.samples import to_uint8_hwc

FORMATS = ("png", "npz", "both")
MANIFEST = "run.json"


class RunFolderError(FdrlError, ValueError):
    """--out holds another run's samples; the message says how to go on."""


class RunFolder:
    def __init__(self, root: str | os.PathLike, fmt: str, is_image: bool):
        self.root, self.fmt, self.is_image = Path(root), fmt, is_image
        self.shards, self.png = self.root / "shards", self.root / "png"

    def prepare(self, overwrite: bool) -> None:
        if overwrite:
            for d in (self.shards, self.png):
                if d.exists():
                    shutil.rmtree(d)
            if (self.root / MANIFEST).exists():
                (self.root / MANIFEST).unlink()
        self.shards.mkdir(parents=True, exist_ok=True)
        if self.is_image and self.fmt in ("png", "both"):
            self.png.mkdir(parents=True, exist_ok=True)
        for d in (self.root, self.shards, self.png):  # what a killed earlier run could not clean up
            remove_stale_temps(d)

    def claim(self, manifest: dict, n: int, shard_size: int) -> None:
        """Record what this folder's samples are (`run.json`: artifact, seed, steps, ...).

        A rerun with the same settings completes the run, and a larger n extends it (a
        last shard cut short by the old n is made again); anything else would mix two runs'
        samples under one summary, so it is refused. Call after prepare()."""
        path = self.root / MANIFEST
        manifest = {**manifest, "shard_size": shard_size}
        old_n = 0
        if path.exists() and not self._any_done():
            path.unlink()  # a first run that failed before its first shard: it claimed nothing
        if path.exists():
            try:
                old = json.loads(path.read_text())
                old_n = int(old.pop("n"))
            except (ValueError, KeyError, TypeError):
                raise RunFolderError(f"--out {self.root}: {MANIFEST} is damaged; use another --out, or --overwrite "
                                     "to replace what is there") from None
            changed = [k for k in sorted(set(old) | set(manifest)) if old.get(k) != manifest.get(k)]
            if changed:
                k = changed[0]
                raise RunFolderError(f"--out {self.root} holds samples of another run ({k}: {old.get(k)!r} there, "
                                     f"{manifest.get(k)!r} now); use another --out, or --overwrite to replace them")
            if n > old_n and old_n % shard_size:  # the old last shard stopped at old_n
                last = old_n // shard_size
                if self.is_done(last):
                    self._marker(last).unlink()
        elif any(self.shards.glob("*.npz")) or any(self.shards.glob("*.done")):
            raise RunFolderError(f"--out {self.root} holds samples without a {MANIFEST} (from an older fdrl-infer "
                                 "or another tool): use another --out, or --overwrite to replace them")
        atomic_write_bytes(path, (json.dumps({**manifest, "n": max(n, old_n)}, indent=2, sort_keys=True) + "\n").encode())

    def _any_done(self) -> bool:
        return any(self.shards.glob("*.npz")) or any(self.shards.glob("*.done"))

    def damage(self, shard: int, ids: np.ndarray) -> str | None:
        """Why a finished shard cannot be kept (unreadable, other ids, missing PNGs), or None."""
        marker = self._marker(shard)
        if marker.suffix == ".npz":
            try:
                with np.load(marker, allow_pickle=False) as z:
                    got_ids, n = z["ids"], len(z["x"])
            except Exception as e:  # a cut or foreign file fails in many ways
                return f"{marker.name} is not readable ({type(e).__name__})"
            if got_ids.shape != ids.shape or not np.array_equal(got_ids, ids) or n != len(ids):
                return f"{marker.name} holds other samples than shard {shard}'s"
        if self.is_image and self.fmt in ("png", "both"):
            missing = [int(i) for i in ids if not (self.png / f"{int(i):06d}.png").is_file()]
            if missing:
                return f"png/{missing[0]:06d}.png is missing"
        return None

    def _marker(self, shard: int) -> Path:
        return self.shards / (f"{shard:05d}.npz" if self.fmt in ("npz", "both") else f"{shard:05d}.done")

    def is_done(self, shard: int) -> bool:
        return self._marker(shard).exists()

    def write_shard(self, shard: int, ids: np.ndarray, x: np.ndarray, value_range) -> None:
        """PNGs first (temporary names, then renamed), the shard's marker last."""
        if self.is_image and self.fmt in ("png", "both"):
            from PIL import Image
            u8 = to_uint8_hwc(x, value_range)
            tmps = []
            try:  # a full disk or a kill between save and rename leaves no temporary behind
                for i, img in zip(ids, u8):
                    final = self.png / f"{int(i):06d}.png"
                    tmps.append((temporary_name(final), final))  # unique per process: runs never share one
                    Image.fromarray(img[..., 0] if img.shape[2] == 1 else img).save(tmps[-1][0], format="PNG")
                for tmp, final in tmps:
                    os.replace(tmp, final)
            finally:
                for tmp, _ in tmps:
                    tmp.unlink(missing_ok=True)
        marker = self._marker(shard)
        if marker.suffix == ".npz":
            import io
            buf = io.BytesIO()
            data = to_uint8_hwc(x, value_range) if self.is_image else x.astype(np.float32)
            np.savez(buf, ids=ids.astype(np.int64), x=data)
            atomic_write_bytes(marker, buf.getvalue())
        else:
            atomic_write_bytes(marker, b"")

    def write_summary(self, name: str, summary: dict) -> None:
        atomic_write_bytes(self.root / name, (json.dumps(summary, indent=2, sort_keys=True) + "\n").encode())
