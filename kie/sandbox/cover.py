"""Cover images: a seeded gradient with soft rings, as a PNG (no imaging library).

The PNG encoder is the minimum the format needs: signature, IHDR, one zlib-compressed
IDAT of 8-bit RGB rows (filter type 0), IEND.
"""

from __future__ import annotations

import hashlib
import struct
import zlib

import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
COVER_SIZE = 256


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def encode_png(pixels: np.ndarray) -> bytes:
    """An 8-bit RGB PNG of `pixels` (height x width x 3, uint8)."""
    height, width, channels = pixels.shape
    if channels != 3:
        raise ValueError("pixels must be RGB")
    rows = np.zeros((height, width * 3 + 1), dtype=np.uint8)  # filter byte 0 per row
    rows[:, 1:] = pixels.astype(np.uint8).reshape(height, width * 3)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        PNG_SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(rows.tobytes(), 6))
        + _chunk(b"IEND", b"")
    )


def _hsv_to_rgb(hue: float, sat: float, val: float) -> np.ndarray:
    i = int(hue * 6) % 6
    f = hue * 6 - int(hue * 6)
    p, q, t = val * (1 - sat), val * (1 - f * sat), val * (1 - (1 - f) * sat)
    rgb = [(val, t, p), (q, val, p), (p, val, t), (p, q, val), (t, p, val), (val, p, q)][i]
    return np.array(rgb) * 255


def cover_png(seed_text: str, size: int = COVER_SIZE) -> bytes:
    """The cover for this seed: a diagonal two-colour gradient with concentric rings."""
    digest = hashlib.sha256(("cover:" + seed_text).encode("utf-8")).digest()
    hue = digest[0] / 255
    second = (hue + 0.15 + digest[1] / 255 * 0.5) % 1.0
    start = _hsv_to_rgb(hue, 0.55 + digest[2] / 255 * 0.35, 0.9)
    end = _hsv_to_rgb(second, 0.6, 0.35 + digest[3] / 255 * 0.3)
    cx, cy = (0.25 + digest[4] / 255 * 0.5) * size, (0.25 + digest[5] / 255 * 0.5) * size
    ring = 10 + digest[6] / 255 * 22

    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    mix = ((x + y) / (2 * (size - 1)))[..., None]
    image = start * (1 - mix) + end * mix
    radius = np.hypot(x - cx, y - cy)
    rings = 0.5 + 0.5 * np.cos(radius / ring * 2 * np.pi)
    glow = np.exp(-radius / (size * 0.6))
    image = image * (0.8 + 0.2 * rings[..., None]) + 60 * glow[..., None]
    return encode_png(np.clip(image, 0, 255).astype(np.uint8))
