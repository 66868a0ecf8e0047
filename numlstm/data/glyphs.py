"""Digit images rendered from the fonts that matplotlib ships: an MNIST stand-in
that needs no download.

Each digit is drawn from one of about twenty typefaces (DejaVu Sans, Serif and
Mono, STIX, Computer Modern; regular, bold, oblique and italic), then given a
random height, width, slant, rotation, stroke thickness, a smooth elastic
wobble and a small offset, so that the ten classes vary roughly the way
handwritten digits do. The layout copies MNIST: a white digit on black, about
20 x 20 pixels inside a 28 x 28 frame (scaled with ``size``), centred by its
centre of mass.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from scipy import ndimage

from numlstm._validation import check_dtype, check_int
from numlstm.data._common import STREAM_GLYPHS, STREAM_IMAGES, check_seed, sample_rng

__all__ = ["digit_glyphs", "digit_images"]

# Typefaces (matplotlib's mpl-data/fonts/ttf) whose digits look like digits:
# the STIX size/non-unicode fonts, cmmi10 (old-style figures), cmsy10/cmex10
# and the Display fonts have none or odd ones.
FONT_FILES = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSans-BoldOblique.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSerif-BoldItalic.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSansMono-Oblique.ttf",
    "DejaVuSansMono-BoldOblique.ttf",
    "STIXGeneral.ttf",
    "STIXGeneralBol.ttf",
    "STIXGeneralItalic.ttf",
    "STIXGeneralBolIta.ttf",
    "cmr10.ttf",
    "cmb10.ttf",
    "cmss10.ttf",
    "cmti10.ttf",
    "cmtt10.ttf",
)

RENDER_PX = 48  # em size of the base glyphs; the tallest digits come out ~35 px high
_MARGIN = 6  # zero border around each base glyph, so blurring never clips

# The rendered base glyphs, keyed by render size: {px: (glyphs, ink heights)},
# glyphs[digit][font] a float32 array in [0, 1]. Rendering takes ~50 ms once.
_BANK: dict[int, tuple[list[list[np.ndarray]], np.ndarray]] = {}
# Results of digit_glyphs, keyed by its arguments (small arrays only).
_GLYPH_CACHE: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
_GLYPH_CACHE_ENTRIES = 8
_GLYPH_CACHE_MAX_BYTES = 64 * 2**20


def _font_dir() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def _render_font(path: Path, px: int) -> list[np.ndarray] | None:
    """The ten digits of one font, each cropped to its ink and padded; None if
    the font lacks a digit."""
    from matplotlib import ft2font

    font = ft2font.FT2Font(str(path))
    if any(font.get_char_index(ord(c)) == 0 for c in "0123456789"):
        return None
    font.set_size(px, 72)  # 72 dpi: one point per pixel
    out = []
    for c in "0123456789":
        font.set_text(c, 0.0)
        font.draw_glyphs_to_bitmap(antialiased=True)
        img = np.asarray(font.get_image(), dtype=np.float32) / 255.0
        rows = np.flatnonzero(img.max(axis=1) > 0)
        cols = np.flatnonzero(img.max(axis=0) > 0)
        if rows.size == 0:
            return None
        img = img[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        out.append(np.pad(img, _MARGIN))
    return out


def glyph_bank(px: int = RENDER_PX) -> tuple[list[list[np.ndarray]], np.ndarray]:
    """The base glyphs, rendered once per process and cached.

    Returns
    -------
    glyphs : list of 10 lists (one per digit) of F float32 arrays in [0, 1],
        one per font, each cropped to its ink plus a zero margin.
    heights : (10, F) float64, the ink height of each glyph in pixels.
    """
    bank = _BANK.get(px)
    if bank is None:
        folder = _font_dir()
        fonts = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # matplotlib warns about missing glyphs
            for name in FONT_FILES:
                path = folder / name
                if path.is_file():
                    digits = _render_font(path, px)
                    if digits is not None:
                        fonts.append(digits)
        if not fonts:
            raise RuntimeError(f"no usable digit font found in {folder}: is matplotlib's mpl-data installed?")
        glyphs = [[font[d] for font in fonts] for d in range(10)]
        heights = np.array([[g.shape[0] - 2 * _MARGIN for g in row] for row in glyphs], dtype=np.float64)
        bank = (glyphs, heights)
        _BANK[px] = bank
    return bank


def draw_digit(
    rng: np.random.Generator,
    digit: int,
    size: int,
    box: float,
    shift: float = 0.5,
    scale: tuple[float, float] = (0.8, 1.0),
) -> np.ndarray:
    """One randomly styled digit, float32 (size, size) in [0, 1], max 1.

    ``box`` is the height in pixels of the tallest digits (20 in MNIST's
    28 x 28 frames); the digit's height is ``box * uniform(*scale)``; its centre
    of mass lands at the frame centre plus a normal offset of ``shift`` pixels
    (standard deviation, per axis). Private: the caller has validated.
    """
    glyphs, heights = glyph_bank()
    font = int(rng.integers(len(glyphs[digit])))
    base = glyphs[digit][font]
    ink_h = heights[digit, font]

    # stroke thickness: blur, then a soft threshold; a low threshold thickens
    k = box * rng.uniform(*scale) / ink_h  # output pixels per base pixel
    sigma = max(0.45 / k, 1.0)  # also the anti-aliasing filter for the downscale
    blurred = ndimage.gaussian_filter(base, sigma, mode="constant", truncate=3.0)
    level = rng.uniform(0.15, 0.5)
    ink = np.clip((blurred - level) * 4.0 + 0.5, 0.0, 1.0)
    total = ink.sum()
    if total <= 0:  # an extreme threshold erased a thin glyph: keep the blur
        ink = blurred
        total = ink.sum()
    rr, cc = np.indices(ink.shape)
    com = np.array([(rr * ink).sum() / total, (cc * ink).sum() / total])

    # forward map base -> output: rotation . shear . anisotropic scale
    aspect = np.exp(rng.normal(0.0, 0.12))
    shear = rng.normal(0.05, 0.18)  # > 0 leans the top to the right
    angle = rng.normal(0.0, 0.08)
    scale_m = np.diag([k, k * aspect])
    shear_m = np.array([[1.0, 0.0], [-shear, 1.0]])  # column moves left as row grows
    cos, sin = np.cos(angle), np.sin(angle)
    rot_m = np.array([[cos, -sin], [sin, cos]])
    inv = np.linalg.inv(rot_m @ shear_m @ scale_m)

    # output pixel -> base coordinate, plus a smooth random wobble (elastic)
    centre = (size - 1) / 2.0 + rng.normal(0.0, shift, 2)
    grid = np.indices((size, size), dtype=np.float64).reshape(2, -1)
    wobble = np.zeros_like(grid)
    amp = rng.uniform(0.0, 0.04) * box
    for _ in range(2):
        freq = rng.normal(0.0, 1.0, (2, 2)) * (np.pi / box)
        phase = rng.uniform(0.0, 2.0 * np.pi, 2)
        wobble += amp * np.sin(freq @ grid + phase[:, None])
    coords = inv @ (grid + wobble - centre[:, None]) + com[:, None]
    out = ndimage.map_coordinates(ink, coords, order=1, mode="constant", cval=0.0).reshape(size, size)
    peak = out.max()
    if peak > 0:
        out *= 1.0 / peak
    return out.astype(np.float32)


def digit_glyphs(n_per_class: int = 20, size: int = 28, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A balanced set of rendered digits, sorted by class: an MNIST stand-in.

    Glyph ``j`` of class ``c`` depends only on ``(seed, c, j)``, so
    ``digit_glyphs(k)`` holds the first ``k`` glyphs of every class of
    ``digit_glyphs(n)`` for ``k <= n``. Results are cached per arguments.

    Parameters
    ----------
    n_per_class : int >= 1
        Glyphs per digit class 0-9.
    size : int >= 8
        Height and width of each image; the digit fills about ``20/28`` of it.
    seed : int >= 0

    Returns
    -------
    images : (10 * n_per_class, size, size) float32 in [0, 1]
        White digit (max 1) on black (0).
    labels : (10 * n_per_class,) int64
        ``[0] * n_per_class + [1] * n_per_class + ... + [9] * n_per_class``.
    """
    n_per_class = check_int(n_per_class, "n_per_class", 1)
    size = check_int(size, "size", 8)
    seed = check_seed(seed)
    key = (n_per_class, size, seed)
    hit = _GLYPH_CACHE.get(key)
    if hit is not None:
        return hit[0].copy(), hit[1].copy()
    images = np.empty((10 * n_per_class, size, size), dtype=np.float32)
    box = size * (20.0 / 28.0)
    for c in range(10):
        for j in range(n_per_class):
            images[c * n_per_class + j] = draw_digit(sample_rng(seed, STREAM_GLYPHS, c, j), c, size, box)
    labels = np.repeat(np.arange(10, dtype=np.int64), n_per_class)
    if images.nbytes <= _GLYPH_CACHE_MAX_BYTES:
        if len(_GLYPH_CACHE) >= _GLYPH_CACHE_ENTRIES:
            _GLYPH_CACHE.pop(next(iter(_GLYPH_CACHE)))  # oldest first
        _GLYPH_CACHE[key] = (images.copy(), labels.copy())
    return images, labels


def digit_images(n: int, size: int = 28, seed: int = 0, dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    """Single digit images with random classes, for image classification (e.g.
    row by row: each of the ``size`` rows is one time step of an LSTM).

    Like :func:`digit_glyphs`, with a wider spread of sizes and a shift of
    about 1.5 pixels (scaled with ``size``) on top of the style variation.
    Sample ``i`` depends only on ``(seed, i)``: ``digit_images(n)[0][:k]`` equals
    ``digit_images(k)[0]``.

    Parameters
    ----------
    n : int >= 1
        Number of images.
    size : int >= 8
        Height and width.
    seed : int >= 0
    dtype : np.float32 or np.float64

    Returns
    -------
    x : (n, size, size) ``dtype`` in [0, 1]
    y : (n,) int64 in 0..9, drawn uniformly.
    """
    n = check_int(n, "n", 1)
    size = check_int(size, "size", 8)
    seed = check_seed(seed)
    dtype = check_dtype(dtype)
    x = np.empty((n, size, size), dtype=dtype)
    y = np.empty(n, dtype=np.int64)
    box = size * (20.0 / 28.0)
    shift = 1.5 * size / 28.0
    for i in range(n):
        rng = sample_rng(seed, STREAM_IMAGES, i)
        y[i] = rng.integers(10)
        x[i] = draw_digit(rng, int(y[i]), size, box, shift=shift, scale=(0.7, 1.05))
    return x, y
