"""Declared image size from a file's header, read before any decoder runs (core.images' gate).

`parse_header(data)` -> Header(format, width, height) for the formats OpenCV decodes (this build:
PNG, JPEG, GIF, BMP, WebP, TIFF/BigTIFF, JPEG 2000 (JP2 and raw J2K), Sun raster, PBM/PGM/PPM, PAM,
PFM, Radiance HDR, OpenEXR) and the common ones Pillow decodes; None when the magic bytes match
none of them. A recognised magic with a header that cannot be read raises HeaderError: such a file
is refused, never handed to a decoder blindly. Only the header bytes are read (at most
HEADER_SCAN_BYTES), so a decompression bomb costs nothing to refuse."""
from __future__ import annotations

import re
import struct
from dataclasses import dataclass

HEADER_SCAN_BYTES = 1 << 16  # text headers (HDR, PNM, PAM) and marker scans stop here
# Formats the gate lets OpenCV decode when Pillow cannot identify the file.
OPENCV_FORMATS = frozenset({"HDR", "PFM", "PAM", "EXR", "PNM", "TIFF", "JPEG2000", "SUN", "BMP", "PNG", "JPEG",
                            "WEBP"})


class HeaderError(ValueError):
    """A file whose magic bytes name a format but whose header cannot be read."""


@dataclass(frozen=True)
class Header:
    format: str
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


def _unpack(fmt: str, data: bytes, off: int, what: str) -> tuple:
    try:
        return struct.unpack_from(fmt, data, off)
    except struct.error:
        raise HeaderError(f"{what} header is truncated") from None


def _png(d: bytes) -> Header:
    if d[12:16] != b"IHDR":
        raise HeaderError("PNG without an IHDR chunk first")
    w, h = _unpack(">II", d, 16, "PNG")
    return Header("PNG", w, h)


def _jpeg(d: bytes) -> Header:
    """Scan the markers up to the first SOFn (frame header: precision, height, width)."""
    i, end = 2, min(len(d), 1 << 24)
    while i + 4 <= end:
        if d[i] != 0xFF:
            raise HeaderError("JPEG marker expected")
        m = d[i + 1]
        if m == 0xFF:  # fill byte
            i += 1
            continue
        if m in (0x01, 0xD8) or 0xD0 <= m <= 0xD7:
            i += 2
            continue
        (seg,) = _unpack(">H", d, i + 2, "JPEG")
        if 0xC0 <= m <= 0xCF and m not in (0xC4, 0xC8, 0xCC):
            _, h, w = _unpack(">BHH", d, i + 4, "JPEG")
            if h == 0:
                raise HeaderError("JPEG frame without a declared height (DNL)")
            return Header("JPEG", w, h)
        i += 2 + seg
    raise HeaderError("JPEG without a frame header")


def _gif(d: bytes) -> Header:
    w, h = _unpack("<HH", d, 6, "GIF")
    return Header("GIF", w, h)


def _bmp(d: bytes) -> Header:
    (size,) = _unpack("<I", d, 14, "BMP")
    if size == 12:
        w, h = _unpack("<HH", d, 18, "BMP")
    elif size >= 40:
        w, h = _unpack("<ii", d, 18, "BMP")
    else:
        raise HeaderError(f"BMP with an unknown info header size {size}")
    return Header("BMP", abs(w), abs(h))


def _webp(d: bytes) -> Header:
    kind = d[12:16]
    if kind == b"VP8 ":
        w, h = _unpack("<HH", d, 26, "WebP")
        return Header("WEBP", w & 0x3FFF, h & 0x3FFF)
    if kind == b"VP8L":
        (b,) = _unpack("<I", d, 21, "WebP")
        return Header("WEBP", (b & 0x3FFF) + 1, ((b >> 14) & 0x3FFF) + 1)
    if kind == b"VP8X":
        w = int.from_bytes(_unpack("3s", d, 24, "WebP")[0], "little") + 1
        h = int.from_bytes(_unpack("3s", d, 27, "WebP")[0], "little") + 1
        return Header("WEBP", w, h)
    raise HeaderError(f"WebP with an unknown chunk {kind!r}")


def _tiff(d: bytes) -> Header:
    """First IFD's ImageWidth (256) and ImageLength (257), classic TIFF or BigTIFF."""
    e = "<" if d[:2] == b"II" else ">"
    (version,) = _unpack(e + "H", d, 2, "TIFF")
    big = version == 43
    if big:
        (off,) = _unpack(e + "Q", d, 8, "TIFF")
        (n,) = _unpack(e + "Q", d, off, "TIFF")
        entry, first, fmt = 20, off + 8, e + "HHQ8s"
    else:
        (off,) = _unpack(e + "I", d, 4, "TIFF")
        (n,) = _unpack(e + "H", d, off, "TIFF")
        entry, first, fmt = 12, off + 2, e + "HHI4s"
    sizes = {}
    for k in range(min(n, 4096)):
        tag, typ, _, raw = _unpack(fmt, d, first + k * entry, "TIFF")
        if tag in (256, 257):
            code = {3: "H", 4: "I", 16: "Q"}.get(typ)
            if code is None:
                raise HeaderError(f"TIFF size tag of type {typ}")
            sizes[tag] = struct.unpack_from(e + code, raw)[0]
    if len(sizes) < 2:
        raise HeaderError("TIFF without ImageWidth/ImageLength")
    return Header("TIFF", sizes[256], sizes[257])


def _tokens(d: bytes, start: int, count: int, what: str) -> list[int]:
    """`count` whitespace-separated integers after `start`, skipping '#' comments (PNM, PFM)."""
    text = re.sub(rb"#[^\n]*", b" ", d[start:HEADER_SCAN_BYTES])
    parts = text.split(None, count)
    try:
        return [int(p) for p in parts[:count]]
    except ValueError:
        raise HeaderError(f"{what} header has no numeric size") from None


def _pnm(d: bytes) -> Header:
    w, h = _tokens(d, 2, 2, "PNM")
    return Header("PNM", w, h)


def _pfm(d: bytes) -> Header:
    w, h = _tokens(d, 2, 2, "PFM")
    return Header("PFM", w, h)


def _pam(d: bytes) -> Header:
    head = d[:HEADER_SCAN_BYTES]
    w, h = re.search(rb"\nWIDTH\s+(\d+)", head), re.search(rb"\nHEIGHT\s+(\d+)", head)
    if not (w and h):
        raise HeaderError("PAM header without WIDTH/HEIGHT")
    return Header("PAM", int(w.group(1)), int(h.group(1)))


def _hdr(d: bytes) -> Header:
    """Radiance: text lines up to a blank line, then the resolution line, e.g. '-Y 480 +X 640'."""
    head = d[:HEADER_SCAN_BYTES]
    blank = head.find(b"\n\n")
    if blank < 0:
        raise HeaderError("Radiance HDR header without an end")
    line = head[blank + 2:].split(b"\n", 1)[0]
    m = re.fullmatch(rb"\s*([-+])([XY])\s+(\d+)\s+([-+])([XY])\s+(\d+)\s*", line)
    if not m or m.group(2) == m.group(5):
        raise HeaderError("Radiance HDR without a resolution line")
    dims = {m.group(2): int(m.group(3)), m.group(5): int(m.group(6))}
    return Header("HDR", dims[b"X"], dims[b"Y"])


def _exr(d: bytes) -> Header:
    """OpenEXR single-part: the dataWindow attribute (box2i xmin, ymin, xmax, ymax)."""
    (flags,) = _unpack("<I", d, 4, "EXR")
    if flags & 0x1000:
        raise HeaderError("multi-part OpenEXR files are not supported")
    i = 8
    while i < min(len(d), HEADER_SCAN_BYTES):
        name_end = d.find(b"\0", i)
        if name_end <= i:
            break
        type_end = d.find(b"\0", name_end + 1)
        if type_end < 0:
            break
        (size,) = _unpack("<i", d, type_end + 1, "EXR")
        if d[i:name_end] == b"dataWindow":
            x0, y0, x1, y1 = _unpack("<iiii", d, type_end + 5, "EXR")
            return Header("EXR", x1 - x0 + 1, y1 - y0 + 1)
        i = type_end + 5 + max(size, 0)
    raise HeaderError("OpenEXR header without a dataWindow")


def _jp2(d: bytes) -> Header:
    i = d.find(b"ihdr", 0, HEADER_SCAN_BYTES)
    if i < 0:
        raise HeaderError("JP2 without an image header box")
    h, w = _unpack(">II", d, i + 4, "JP2")
    return Header("JPEG2000", w, h)


def _j2k(d: bytes) -> Header:
    x, y, x0, y0 = _unpack(">IIII", d, 8, "J2K")
    return Header("JPEG2000", x - x0, y - y0)


def _sun(d: bytes) -> Header:
    w, h = _unpack(">II", d, 4, "Sun raster")
    return Header("SUN", w, h)


MAGICS = (
    (b"\x89PNG\r\n\x1a\n", _png), (b"\xff\xd8\xff", _jpeg), (b"GIF87a", _gif), (b"GIF89a", _gif),
    (b"BM", _bmp), (b"II*\x00", _tiff), (b"MM\x00*", _tiff), (b"II+\x00", _tiff), (b"MM\x00+", _tiff),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", _jp2), (b"\xff\x4f\xff\x51", _j2k), (b"\x59\xa6\x6a\x95", _sun),
    (b"PF", _pfm), (b"Pf", _pfm), (b"P7", _pam), (b"#?", _hdr), (b"\x76\x2f\x31\x01", _exr),
)
PNM_MAGIC = re.compile(rb"P[1-6]\s")


def parse_header(data: bytes) -> Header | None:
    """Declared (format, width, height) of `data`; None when no known magic matches; HeaderError
    when one matches but the header is unreadable or declares a non-positive size."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        hdr = _webp(data)
    elif PNM_MAGIC.match(data[:3]):
        hdr = _pnm(data)
    else:
        parse = next((f for magic, f in MAGICS if data.startswith(magic)), None)
        if parse is None:
            return None
        hdr = parse(data)
    if hdr.width <= 0 or hdr.height <= 0:
        raise HeaderError(f"{hdr.format} header declares {hdr.width}x{hdr.height} pixels")
    return hdr
