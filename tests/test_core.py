"""fdrl_core: the torch-free pieces every package shares, against direct statements of them."""
import subprocess
import sys

import numpy as np
from PIL import Image

from conftest import ROOT
from fdrl_core.pictures import image_grid, picture_of, save_png, scatter_plot


def _painted(img: Image.Image) -> np.ndarray:
    """Pixels of the plotting area that are not white (the frame and labels excluded)."""
    a = np.asarray(img.convert("RGB")).astype(int)
    inner = a[37:-37, 37:-37]
    return (inner.sum(2) < 3 * 250)


def test_scatter_draws_every_point_where_it_belongs():
    rng = np.random.default_rng(0)
    few, many = rng.uniform(-1, 1, (64, 2)), rng.uniform(-1, 1, (5000, 2))
    assert _painted(scatter_plot(many, lim=1.0)).sum() > 20 * _painted(scatter_plot(few, lim=1.0)).sum()
    # One point at (0.5, -0.5) with lim 1: three quarters across, three quarters down the plot.
    img = np.asarray(scatter_plot(np.array([[0.5, -0.5]]), lim=1.0, alpha=1.0))
    plot = 512 - 2 * 36
    row, col = 36 + int(0.75 * plot), 36 + int(0.75 * plot)
    assert tuple(img[row, col]) == (30, 80, 200)
    # Density: a pixel hit 10 times is darker than one hit once; NaN points are left out.
    pts = np.array([[0.0, 0.0]] * 10 + [[0.5, 0.5], [np.nan, 0.0]])
    a = np.asarray(scatter_plot(pts, lim=1.0)).astype(int)
    c0, c1 = 36 + int(0.5 * plot), 36 + int(0.75 * plot)
    assert a[c0, c0].sum() < a[36 + int(0.25 * plot), c1].sum() < 3 * 255


def test_picture_of_images_is_a_grid_in_the_value_range(tmp_path):
    x = np.full((5, 1, 4, 4), 0.5, np.float32)  # values in [0, 1]: mid-grey is 0.5
    img = picture_of(x, value_range=(0.0, 1.0))
    a = np.asarray(img)
    assert a.shape == (14 * 64, 20 * 64)  # 5 tiles of 4 x 4 in 2 rows of 3, 2-pixel gaps, scaled 64x
    assert abs(int(np.median(a[a < 255])) - 128) <= 1
    np.testing.assert_array_equal(np.asarray(image_grid(x * 2 - 1)), a)
    save_png(img, tmp_path / "new" / "folder" / "g.png")  # the folder is made, the write atomic
    assert Image.open(tmp_path / "new" / "folder" / "g.png").size == img.size
    assert not list((tmp_path / "new" / "folder").glob(".*tmp*"))


def test_the_core_imports_nothing_of_torch_or_the_other_packages():
    code = ("import sys; import fdrl_core.images, fdrl_core.pictures; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'fdrl_train', 'fdrl_export', 'fdrl_runtime', 'fdrl_eval')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(ROOT))
    assert p.returncode == 0, p.stdout + p.stderr
