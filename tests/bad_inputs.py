"""The bad-input corpus, generated (nothing binary is committed): decompression bombs in every format
either Pillow or OpenCV reads, plus unreadable, empty, truncated, renamed and tiny files.

    python tests/bad_inputs.py DIR        # write the corpus into DIR (one file per case)

Each Case names the substring the refusal must contain through the core paths (FaceAligner.predict,
python -m core.predict: core's 100 MP limit) and through the app (/landmarks: the app's 50 MP
limit), both compared lower-case. `core=None`: the core paths accept the file (it is only over the
app's limit). Bombs declare their size in a real header and carry at most a few kB of pixel data
(the PNG one is a genuine compressed bomb), so refusing them must cost no memory."""
from __future__ import annotations

import struct
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BOMB = (12000, 12000)  # 144 MP: over core's 100 MP and the app's 50 MP
CORE_LIMIT = "the limit is 100 mp"
APP_LIMIT = "accepts up to 50 mp"
TOO_LARGE = ("too large", CORE_LIMIT)
CORRUPT, UNREADABLE = "corrupt or truncated", "not a readable image"
APP_UNREADABLE = "not an image this app can read"


@dataclass(frozen=True)
class Case:
    name: str  # file name (the extension is what a user would have)
    data: bytes
    core: tuple[str, ...] | None  # substrings of the core refusal (None: core accepts it)
    app: tuple[str, ...]  # substrings of the app's refusal


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_bomb(w: int, h: int) -> bytes:
    """A genuine bomb: 1-bit grey, every row zero, deflated (about 1 kB per 10 MP)."""
    row = b"\0" * (1 + (w + 7) // 8)
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(h)) + comp.flush()
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0))
            + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b""))


def hdr_bomb(w: int, h: int, rows: int = 4) -> bytes:
    """Radiance RGBE with new-style RLE scanlines (only the first `rows` present)."""
    line = b"\x02\x02" + struct.pack(">H", w)
    for _ in range(4):  # R, G, B, E channels: runs of 127
        line += b"".join(bytes([128 + min(127, w - i), 0x80]) for i in range(0, w, 127))
    return b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n" + f"-Y {h} +X {w}\n".encode() + line * rows


def pfm_bomb(w: int, h: int) -> bytes:
    return f"PF\n{w} {h}\n-1.0\n".encode() + np.zeros(3 * 1024, "<f4").tobytes()


def pam_bomb(w: int, h: int) -> bytes:
    return f"P7\nWIDTH {w}\nHEIGHT {h}\nDEPTH 3\nMAXVAL 255\nTUPLTYPE RGB\nENDHDR\n".encode() + b"\0" * 4096


def ppm_bomb(w: int, h: int) -> bytes:
    return f"P6\n# comment\n{w} {h}\n255\n".encode() + b"\0" * 4096


def jpeg_bomb(w: int, h: int) -> bytes:
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, h, w, 3) + b"\x01\x11\x00\x02\x11\x00\x03\x11\x00"
    return b"\xff\xd8" + b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0" + sof + b"\0" * 512


def webp_bomb(w: int, h: int) -> bytes:
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\0\0\0\0" + (w - 1).to_bytes(3, "little") + (h - 1).to_bytes(3, "little")
    body = b"WEBP" + vp8x + b"VP8L" + struct.pack("<I", 5) + b"\x2f\0\0\0\0\0"
    return b"RIFF" + struct.pack("<I", len(body)) + body


def gif_bomb() -> bytes:
    return (b"GIF89a" + struct.pack("<HHBBB", 65535, 65535, 0, 0, 0)
            + b"\x2c" + struct.pack("<HHHHB", 0, 0, 65535, 65535, 0) + b"\x02\x02\x44\x01\x00\x3b")


def bmp_bomb(w: int, h: int) -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, w, -h, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 54 + 4096, 0, 0, 54) + info + b"\0" * 4096


def tiff_bomb(w: int, h: int, big: bool = False) -> bytes:
    tags = [(256, 4, 1, w), (257, 4, 1, h), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1), (273, 4, 1, 0),
            (277, 3, 1, 1), (278, 4, 1, h), (279, 4, 1, w * h)]
    if big:
        head = b"II+\x00" + struct.pack("<HHQ", 8, 0, 16)
        ifd = struct.pack("<Q", len(tags)) + b"".join(struct.pack("<HHQQ", *t) for t in tags) + struct.pack("<Q", 0)
    else:
        head = b"II*\x00" + struct.pack("<I", 8)
        ifd = struct.pack("<H", len(tags)) + b"".join(struct.pack("<HHII", *t) for t in tags) + struct.pack("<I", 0)
    return head + ifd + b"\0" * 4096


def exr_bomb(w: int, h: int) -> bytes:
    def attr(name: str, kind: str, value: bytes) -> bytes:
        return name.encode() + b"\0" + kind.encode() + b"\0" + struct.pack("<i", len(value)) + value

    box = struct.pack("<iiii", 0, 0, w - 1, h - 1)
    chans = b"".join(c + b"\0" + struct.pack("<iBBBBii", 1, 0, 0, 0, 0, 1, 1) for c in (b"B", b"G", b"R")) + b"\0"
    header = (attr("channels", "chlist", chans) + attr("compression", "compression", b"\x00")
              + attr("dataWindow", "box2i", box) + attr("displayWindow", "box2i", box)
              + attr("lineOrder", "lineOrder", b"\x00") + attr("pixelAspectRatio", "float", struct.pack("<f", 1))
              + attr("screenWindowCenter", "v2f", struct.pack("<ff", 0, 0))
              + attr("screenWindowWidth", "float", struct.pack("<f", 1)) + b"\0")
    return b"\x76\x2f\x31\x01" + struct.pack("<I", 2) + header + b"\0" * 1024


def j2k_bomb(w: int, h: int) -> bytes:
    siz = struct.pack(">HHIIIIIIIIH", 47, 0, w, h, 0, 0, w, h, 0, 0, 3) + b"\x07\x01\x01" * 3
    return b"\xff\x4f\xff\x51" + siz + b"\0" * 512


def sun_bomb(w: int, h: int) -> bytes:
    return struct.pack(">IIIIIIII", 0x59A66A95, w, h, 24, w * h * 3, 1, 0, 0) + b"\0" * 4096


def tga_bomb() -> bytes:
    """Truevision TGA (Pillow only, no magic): 65535 x 65535 declared."""
    return struct.pack("<BBBHHBHHHHBB", 0, 0, 2, 0, 0, 0, 0, 0, 65535, 65535, 24, 0x20) + b"\0" * 4096


def encoded(ext: str, w: int = 64, h: int = 64) -> bytes:
    import cv2

    ok, buf = cv2.imencode(ext, np.full((h, w, 3), 127, np.uint8))
    assert ok
    return buf.tobytes()


def corpus() -> list[Case]:
    w, h = BOMB
    bombs = [
        ("hdr_bomb.hdr", hdr_bomb(w, h)), ("pfm_bomb.pfm", pfm_bomb(w, h)), ("pam_bomb.pam", pam_bomb(w, h)),
        ("ppm_bomb.ppm", ppm_bomb(w, h)), ("png_bomb.png", png_bomb(w, h)), ("jpeg_bomb.jpg", jpeg_bomb(w, h)),
        ("webp_bomb.webp", webp_bomb(w, h)), ("gif_bomb.gif", gif_bomb()), ("bmp_bomb.bmp", bmp_bomb(w, h)),
        ("tiff_bomb.tif", tiff_bomb(w, h)), ("bigtiff_bomb.tiff", tiff_bomb(w, h, big=True)),
        ("exr_bomb.exr", exr_bomb(w, h)), ("j2k_bomb.j2k", j2k_bomb(w, h)), ("sun_bomb.ras", sun_bomb(w, h)),
        ("tga_bomb.tga", tga_bomb()),
    ]
    cases = [Case(n, d, TOO_LARGE, ("megapixels", APP_LIMIT)) for n, d in bombs]
    text = b"this is a text file, not a photo\n" * 20
    png = encoded(".png")
    cases += [
        # over the app's limit only: core (100 MP) would decode it reduced
        Case("app_limit.png", png_bomb(8000, 7000), None, ("8000x7000", APP_LIMIT)),
        # a format OpenCV cannot decode reduced: capped at 24 MP whatever the caller's limit
        Case("hdr_30mp.hdr", hdr_bomb(6000, 5000), ("too large", "the limit is 24 mp"),
             ("6000x5000", "accepts up to 24 mp for this format")),
        Case("random.jpg", bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)), (UNREADABLE,),
             (APP_UNREADABLE,)),
        Case("text.png", text, (UNREADABLE,), (APP_UNREADABLE,)),
        Case("eps_renamed.png", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 20000 20000\nshowpage\n", (UNREADABLE,),
             (APP_UNREADABLE,)),
        Case("empty.png", b"", ("empty",), ("empty",)),
        Case("truncated.png", png[: len(png) // 2], (CORRUPT,), (CORRUPT,)),
        Case("header_only.hdr", b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n", (CORRUPT,), (CORRUPT,)),
        Case("zero_size.png", png[:16] + struct.pack(">II", 0, 0) + png[24:], (CORRUPT,), (CORRUPT,)),
        Case("jpeg_no_height.jpg", jpeg_bomb(640, 0), (CORRUPT,), (CORRUPT,)),
        Case("tiny.png", encoded(".png", 8, 8), ("too small",), ("too small",)),
        Case("tiny.hdr", hdr_bomb(8, 8, rows=8), ("too small",), ("too small",)),
    ]
    return cases


def write_corpus(folder: Path, cases: list[Case] | None = None) -> list[Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for c in cases or corpus():
        (folder / c.name).write_bytes(c.data)
        paths.append(folder / c.name)
    return paths


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/bad_inputs.py DIR")
    for p in write_corpus(Path(sys.argv[1])):
        print(f"{p}  {p.stat().st_size} bytes")
