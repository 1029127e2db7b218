"""benchmarks/carry64.py: the copy a lent GPU trains on must read back as the very pixels and
masks ReconScope reads from the originals (EXIF turned, resized once), or its numbers are not
the CPU's."""

import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from core.data.images import read_image, read_mask

ROOT = Path(__file__).resolve().parents[2]


def test_the_copy_reads_back_as_the_same_pixels_and_masks(tmp_path):
    src = tmp_path / "src" / "widget"
    (src / "test" / "crack").mkdir(parents=True)
    (src / "ground_truth" / "crack").mkdir(parents=True)
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 255, (60, 100, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: viewers show it 60 wide, 100 high
    photo.save(src / "test" / "crack" / "000.jpg", exif=exif)
    mask = np.zeros((100, 60), np.uint8)
    mask[40:43, 10:50] = 255
    Image.fromarray(mask).save(src / "ground_truth" / "crack" / "000_mask.png")
    Image.fromarray(rng.integers(0, 65535, (50, 50), dtype=np.uint16)).save(src / "test" / "crack" / "001.png")

    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "carry64.py"), str(tmp_path / "src"),
                           str(tmp_path / "copy"), "--size", "32"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    copy = tmp_path / "copy" / "widget"
    for name in ("000", "001"):
        original = next((src / "test" / "crack").glob(f"{name}.*"))
        assert np.array_equal(read_image(copy / "test" / "crack" / f"{name}.png", 32), read_image(original, 32))
    mask_path = src / "ground_truth" / "crack" / "000_mask.png"
    copied = read_mask(copy / "ground_truth" / "crack" / "000_mask.png", (32, 32), 32)
    assert copied.any() and np.array_equal(copied, read_mask(mask_path, (100, 60), 32))
