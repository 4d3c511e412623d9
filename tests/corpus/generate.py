"""A corpus of bad and odd inputs for ``POST /classify``, made in memory when the tests run.

``corpus()`` returns a few hundred ``Case``s, each a complete request (body,
headers, query) and what the service must do with it:

* ``REFUSE``: a 4xx ``application/problem+json`` answer;
* ``ANSWER``: a 200 whose scores and size equal those of the case's clean ``twin``
  (the same picture sent plainly), because the input is odd but valid: EXIF-rotated,
  CMYK, palette, RGBA, 16-bit or float, multi-frame, a mislabelled type...;
* ``EITHER``: one of the two (a truncated file Pillow may still read in full, when
  only trailing bytes it does not need are missing);
* ``ANY``: a 4xx problem+json, or a 200 with any well-formed answer: a JPEG whose
  compressed data was overwritten is, byte for byte, another valid picture (JPEG
  has no checksum; PNG has, and such a PNG must be refused), and libtiff reads a
  damaged deflate strip without complaint.

Nothing is stored in the repository: every file is encoded here with Pillow, or
built byte by byte where Pillow refuses to write such a thing (bombs, lies in
headers). ``LIMITS`` are the settings the cases are built against.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np
from PIL import Image, TiffImagePlugin

__all__ = ["LIMITS", "Case", "Expect", "Request", "corpus", "encode", "fingerprint", "picture"]

LIMITS = {"max_body_bytes": 1 << 20, "max_pixels": 1_000_000, "max_batch_images": 4}
PNG, JPEG, BMP, TIFF, RAW = "image/png", "image/jpeg", "image/bmp", "image/tiff", "application/octet-stream"


class Expect(Enum):
    REFUSE = "4xx problem+json"
    ANSWER = "200, the twin's answer"
    EITHER = "4xx problem+json, or 200 with the twin's answer"
    ANY = "4xx problem+json, or 200"


@dataclass(frozen=True)
class Request:
    """What ``httpx.Client.request`` is given (``files`` for multipart built by httpx)."""

    content: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, Any] | None = None
    files: Any = None
    url: str = "/classify"
    method: str = "POST"

    def kwargs(self) -> dict[str, Any]:
        out: dict[str, Any] = {"headers": self.headers, "params": self.params}
        if self.files is not None:
            out["files"] = self.files
        else:
            out["content"] = self.content
        return out


@dataclass(frozen=True)
class Case:
    name: str
    request: Request
    expect: Expect
    twin: Request | None = None  # the clean picture, for ANSWER and EITHER


def picture(height: int = 48, width: int = 80, seed: int = 0) -> np.ndarray:
    """A gray picture with structure (stripes and noise), not square."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    wave = 120 + 60 * np.sin(x / 7.0) * np.cos(y / 5.0) + rng.normal(0, 10, (height, width))
    return np.clip(wave, 0, 255).astype(np.uint8)


def encode(img: Image.Image | np.ndarray, fmt: str = "PNG", **kwargs: Any) -> bytes:
    if isinstance(img, np.ndarray):
        img = Image.fromarray(img)
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def body(data: bytes, media: str, **params: Any) -> Request:
    return Request(content=data, headers={"content-type": media}, params=params or None)


def frame(pixels: np.ndarray) -> Request:
    """The plainest form of a picture: a raw gray frame."""
    height, width = pixels.shape
    return body(pixels.tobytes(), RAW, width=width, height=height)


def corpus() -> list[Case]:
    """Every case, each name unique."""
    gray = picture()
    cases = [
        *_truncated(gray),
        *_cut_with_and_without_trailer(gray),
        *_empty_and_wrong_magic(gray),
        *_other_formats(gray),
        *_bombs(),
        *_shapes(),
        *_modes(gray),
        *_exif_rotations(gray),
        *_raw_frames(gray),
        *_oversize(gray),
        *_multipart(gray),
        *_query(gray),
        *_headers(gray),
        *_routes(gray),
    ]
    cases = list({fingerprint(c.request): c for c in reversed(cases)}.values())[::-1]  # a repeat: the first name
    names = [c.name for c in cases]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        msg = f"corpus case names must be unique: {duplicated}"
        raise ValueError(msg)
    return cases


def fingerprint(request: Request) -> str:
    return repr((request.method, request.url, request.content, request.headers, request.params, request.files))


# ---- truncated files ----------------------------------------------------------------------------


def _truncated(gray: np.ndarray) -> list[Case]:
    """Each format cut at 32 offsets: the first bytes one by one, then spread to the last byte."""
    files = {
        "png": (encode(gray), PNG),
        "jpeg": (encode(gray, "JPEG", quality=90), JPEG),
        "bmp": (encode(gray, "BMP"), BMP),
        "tiff": (encode(gray, "TIFF"), TIFF),
        "tiff-deflate": (encode(gray, "TIFF", compression="tiff_adobe_deflate"), TIFF),
    }
    cases = []
    for name, (data, media) in files.items():
        n = len(data)
        offsets = sorted(
            {1, 2, 4, 8, 12, 16, 24, 33, 54, n - 1, n - 2, n - 4, n - 12}.union(
                int(n * f) for f in np.linspace(0.05, 0.95, 19)
            )
        )
        for cut in offsets:
            cases.append(
                Case(f"truncated {name} at {cut} of {n}", body(data[:cut], media), Expect.EITHER, body(data, media))
            )
    return cases


def _cut_with_and_without_trailer(gray: np.ndarray) -> list[Case]:
    """JPEG, PNG and TIFF cut inside their pixel data, at 12 points, bare or closed with their end marker.

    A JPEG whose scan is cut and then closed with EOI decodes without an error in Pillow (libjpeg
    fills the missing blocks and only warns); the service refuses every one of them.
    """
    big = picture(120, 160, seed=3)  # several strips and IDAT bytes to cut into
    cases = []
    jpeg = encode(big, "JPEG", quality=90)
    scan = jpeg.index(b"\xff\xda")
    scan += 2 + int.from_bytes(jpeg[scan + 2 : scan + 4], "big")
    png = encode(big)
    idat = png.index(b"IDAT") + 4
    tiff = encode(big, "TIFF")
    tiff_deflate = encode(big, "TIFF", compression="tiff_adobe_deflate")
    end_of_png = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    files = {
        "jpeg": (jpeg, scan, len(jpeg) - 2, JPEG, b"\xff\xd9"),
        "progressive jpeg": (
            progressive := encode(big, "JPEG", quality=90, progressive=True),
            progressive.index(b"\xff\xda") + 12,
            len(progressive) - 2,
            JPEG,
            b"\xff\xd9",
        ),
        "png": (png, idat, len(png) - 12, PNG, end_of_png),
        "tiff": (tiff, 8 + 4, len(tiff), TIFF, None),
        "tiff-deflate": (tiff_deflate, 8 + 4, len(tiff_deflate), TIFF, None),
    }
    for name, (data, start, end, media, trailer) in files.items():
        if name.startswith("tiff"):  # Pillow writes the IFD after the strips: cut into the strips only
            offsets = [int(v) for v in np.linspace(0.1, 0.9, 12) * _tiff_strips_end(data)]
            offsets = [o for o in offsets if o > 8]
        else:
            offsets = [int(start + f * (end - start)) for f in np.linspace(0.05, 0.95, 12)]
        for cut in offsets:
            cases.append(Case(f"{name} cut at {cut} of {len(data)}", body(data[:cut], media), Expect.REFUSE))
            if trailer is not None:
                closed = data[:cut] + trailer
                cases.append(Case(f"{name} cut at {cut} then closed", body(closed, media), Expect.REFUSE))
            else:  # the directory kept, the strips short: the file cut in its middle
                kept = _tiff_with_short_strips(data, cut)
                if kept is not None:
                    cases.append(Case(f"{name} strips cut at {cut}, directory kept", body(kept, media), Expect.REFUSE))
    return cases


def _tiff_strips_end(data: bytes) -> int:
    """Where a Pillow-written TIFF's directory starts (its strips come before it)."""
    return int.from_bytes(data[4:8], "little")


def _tiff_with_short_strips(data: bytes, cut: int) -> bytes | None:
    """The TIFF with the bytes from ``cut`` to its directory removed and the directory offset moved."""
    ifd = _tiff_strips_end(data)
    if not 8 < cut < ifd:
        return None
    head = bytearray(data[:cut])
    head[4:8] = len(head).to_bytes(4, "little")
    return bytes(head) + data[ifd:]  # offsets inside the directory still point past the end: short strips


# ---- nothing, or not what it says it is ---------------------------------------------------------


def _empty_and_wrong_magic(gray: np.ndarray) -> list[Case]:
    refuse = Expect.REFUSE
    cases = [Case(f"empty body as {m}", body(b"", m), refuse) for m in (PNG, JPEG, BMP, TIFF)]
    cases += [Case(f"{n} zero bytes as {m}", body(bytes(n), m), refuse) for n in (1, 100, 10_000) for m in (PNG, TIFF)]
    cases += [Case(f"{n} 0xff bytes as jpeg", body(b"\xff" * n, JPEG), refuse) for n in (2, 3, 1000)]
    magics = {
        "png": b"\x89PNG\r\n\x1a\n",
        "jpeg": b"\xff\xd8\xff\xe0",
        "bmp": b"BM",
        "tiff-le": b"II*\x00",
        "tiff-be": b"MM\x00*",
    }
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 256, 512, dtype=np.uint8).tobytes()
    for name, magic in magics.items():
        cases.append(Case(f"{name} magic then noise", body(magic + noise, PNG), refuse))
        cases.append(Case(f"{name} magic alone", body(magic, PNG), refuse))
    for text, label in ((b"hello, this is not an image\n" * 20, "text"), (b'{"image": "strip.png"}', "json")):
        cases += [Case(f"{label} as {m}", body(text, m), refuse) for m in (PNG, JPEG, BMP, TIFF)]
    # A real picture under the wrong Content-Type: the bytes say what they are, and they are valid.
    real = {PNG: encode(gray), BMP: encode(gray, "BMP"), TIFF: encode(gray, "TIFF")}
    for true_media, data in real.items():
        for claimed in (PNG, JPEG, BMP, TIFF):
            if claimed != true_media:
                name = f"{true_media} sent as {claimed}"
                cases.append(Case(name, body(data, claimed), Expect.ANSWER, body(data, true_media)))
    # Valid header, corrupt middle: a picture with bytes flipped inside its compressed data.
    for name, data, media, expect in (
        ("png", encode(gray), PNG, Expect.REFUSE),  # its CRC catches it
        # libtiff decodes a damaged deflate strip without an error (zlib's checksum goes unread): another picture
        ("tiff-deflate", encode(gray, "TIFF", compression="tiff_adobe_deflate"), TIFF, Expect.ANY),
        ("jpeg", encode(gray, "JPEG"), JPEG, Expect.ANY),  # no checksum: another picture
    ):
        for at in (0.3, 0.6):
            broken = bytearray(data)
            i = int(len(data) * at)
            broken[i : i + 16] = bytes(16)
            cases.append(
                Case(f"{name} with zeroed bytes at {at:.0%}", body(bytes(broken), media), expect, body(data, media))
            )
    return cases


def _other_formats(gray: np.ndarray) -> list[Case]:
    """Formats Pillow could read but the API does not take, and things that are no image at all."""
    files = {
        "gif": encode(gray, "GIF"),
        "webp": encode(gray, "WEBP"),
        "ico": encode(Image.fromarray(gray).resize((32, 32)), "ICO"),
        "ppm": encode(gray, "PPM"),
        "pcx": encode(gray, "PCX"),
        "tga": encode(gray, "TGA"),
        "eps": b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 80 48\nnewpath 0 0 moveto 80 48 lineto stroke\n%%EOF\n",
        "pdf": b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n",
        "svg": b'<svg xmlns="http://www.w3.org/2000/svg" width="80" height="48"><rect width="80" height="48"/></svg>',
        "html": b"<!doctype html><html><body><img src=x onerror=alert(1)></body></html>",
        "zip": b"PK\x03\x04" + bytes(26) + b"PK\x05\x06" + bytes(18),
        "gzip": b"\x1f\x8b\x08\x00" + zlib.compress(encode(gray))[2:],
        "elf": b"\x7fELF\x02\x01\x01" + bytes(57),
        "pickle": b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x94\x8c\x06system\x94\x93\x94.",
    }
    cases = [Case(f"{name} as image/png", body(data, PNG), Expect.REFUSE) for name, data in files.items()]
    cases += [
        Case(f"{name} in multipart", Request(files={"file": (f"x.{name}", data, "image/png")}), Expect.REFUSE)
        for name, data in files.items()
    ]
    cases += [
        Case(f"Content-Type {media}", body(files["gif"], media), Expect.REFUSE)
        for media in ("image/gif", "image/webp", "image/svg+xml", "application/pdf", "text/plain")
    ]
    return cases


# ---- decompression bombs and header lies --------------------------------------------------------


def _png_claiming(width: int, height: int, bit_depth: int = 8, color: int = 0) -> bytes:
    """A small PNG whose IHDR declares ``width`` x ``height``."""
    data = encode(np.zeros((4, 4), np.uint8))
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return data[:8] + chunk + data[8 + len(chunk) :]


def _bmp_claiming(width: int, height: int) -> bytes:
    data = bytearray(encode(np.zeros((4, 4), np.uint8), "BMP"))
    data[18:26] = struct.pack("<ii", width, height)
    return bytes(data)


def _jpeg_claiming(width: int, height: int) -> bytes:
    data = bytearray(encode(np.zeros((8, 8), np.uint8), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _tiff_claiming(width: int, height: int) -> bytes:
    img = Image.fromarray(np.zeros((4, 4), np.uint8))
    info = TiffImagePlugin.ImageFileDirectory_v2()
    data = bytearray(encode(img, "TIFF", tiffinfo=info))
    # Patch ImageWidth (256) and ImageLength (257), both written as LONG or SHORT entries.
    count = struct.unpack_from("<H", data, struct.unpack_from("<I", data, 4)[0])[0]
    start = struct.unpack_from("<I", data, 4)[0] + 2
    for i in range(count):
        (tag,) = struct.unpack_from("<H", data, start + 12 * i)
        if tag in (256, 257):
            struct.pack_into("<HHII", data, start + 12 * i, tag, 4, 1, width if tag == 256 else height)
    return bytes(data)


def _bombs() -> list[Case]:
    refuse = Expect.REFUSE
    sizes = [(1001, 1000), (100_000, 100_000), (2**31 - 1, 1), (1, 2**31 - 1), (65_535, 65_535)]
    cases = [Case(f"png claiming {w}x{h}", body(_png_claiming(w, h), PNG), refuse) for w, h in sizes]
    cases += [Case("png 16-bit rgba claiming 30000x30000", body(_png_claiming(30_000, 30_000, 16, 6), PNG), refuse)]
    cases += [Case(f"bmp claiming {w}x{h}", body(_bmp_claiming(w, h), BMP), refuse) for w, h in sizes[:3]]
    cases += [Case("bmp with negative width", body(_bmp_claiming(-50, 50), BMP), refuse)]
    cases += [
        Case(f"jpeg claiming {w}x{h}", body(_jpeg_claiming(w, h), JPEG), refuse)
        for w, h in ((65_535, 65_535), (2000, 1000), (0, 0))
    ]
    cases += [
        Case(f"tiff claiming {w}x{h}", body(_tiff_claiming(w, h), TIFF), refuse)
        for w, h in ((100_000, 100_000), (2000, 1000))
    ]
    # Real bombs: honest headers, every pixel encoded, the file tiny because the pixels are all zero.
    zeros = np.zeros((1200, 1200), np.uint8)
    cases += [
        Case("png bomb 1200x1200 zeros", body(encode(zeros, compress_level=9), PNG), refuse),
        Case("tiff bomb 1200x1200 zeros", body(encode(zeros, "TIFF", compression="tiff_adobe_deflate"), TIFF), refuse),
        Case("jpeg bomb 1200x1200 zeros", body(encode(zeros, "JPEG", quality=10), JPEG), refuse),
    ]
    return cases


# ---- odd but valid pictures ---------------------------------------------------------------------


def _shapes() -> list[Case]:
    """Sides from one pixel to the limits: too small or too thin to show a defect is refused (422)."""
    answer = Expect.ANSWER
    cases = []
    for height, width in ((1, 1), (1, 2), (2, 1), (1, 100_000), (100_000, 1), (3, 7), (31, 200), (32, 513)):
        pixels = picture(height, width, seed=height + width) if height * width > 1 else np.full((1, 1), 77, np.uint8)
        cases.append(Case(f"png {width}x{height}", body(encode(pixels), PNG), Expect.REFUSE))
        cases.append(Case(f"bmp {width}x{height}", body(encode(pixels, "BMP"), BMP), Expect.REFUSE))
        if max(height, width) <= 65_536:  # a raw frame's sides stop at 65536 (the query's limit)
            cases.append(Case(f"raw frame {width}x{height}", frame(pixels), Expect.REFUSE))
    for height, width in ((32, 32), (32, 512), (512, 32), (1000, 1000)):
        pixels = picture(height, width, seed=height + width)
        twin = frame(pixels)
        cases.append(Case(f"png {width}x{height}", body(encode(pixels), PNG), answer, twin))
        cases.append(Case(f"bmp {width}x{height}", body(encode(pixels, "BMP"), BMP), answer, twin))
    for value in (0, 255):
        flat = np.full((48, 80), value, np.uint8)
        cases.append(Case(f"flat {value} png", body(encode(flat), PNG), answer, frame(flat)))
    return cases


def _modes(gray: np.ndarray) -> list[Case]:
    """The same picture stored in every mode the decoders produce; each answers as the plain frame."""
    answer = Expect.ANSWER
    twin = frame(gray)
    rgb = np.dstack([gray] * 3)
    palette = Image.frombytes("P", (gray.shape[1], gray.shape[0]), gray.tobytes())
    palette.putpalette([v for i in range(256) for v in (i, i, i)])
    cmyk = Image.merge("CMYK", [Image.fromarray(np.zeros_like(gray))] * 3 + [Image.fromarray(255 - gray)])
    wide = gray.astype(np.uint16) * 257
    unit = gray.astype(np.float32) / 255.0
    frames = [Image.fromarray(gray), Image.fromarray(255 - gray), Image.fromarray(gray // 2)]
    tiff_pages = io.BytesIO()
    frames[0].save(tiff_pages, format="TIFF", save_all=True, append_images=frames[1:])
    forms = {
        "png rgb": (encode(rgb), PNG),
        "png rgba": (encode(Image.fromarray(np.dstack([gray] * 3 + [np.full_like(gray, 9)]), "RGBA")), PNG),
        "png gray+alpha": (encode(Image.fromarray(gray).convert("LA")), PNG),
        "png palette": (encode(palette), PNG),
        "png palette with transparency": (encode(palette, transparency=0), PNG),
        "png 16-bit gray": (encode(Image.fromarray(wide)), PNG),
        "png interlaced": (encode(gray, interlace=1) if _can_interlace() else encode(gray), PNG),
        "tiff rgb": (encode(rgb, "TIFF"), TIFF),
        "tiff cmyk": (encode(cmyk, "TIFF"), TIFF),
        "tiff 16-bit gray": (encode(Image.fromarray(wide), "TIFF"), TIFF),
        "tiff float in [0, 1]": (encode(Image.fromarray(unit, "F"), "TIFF"), TIFF),
        "tiff float in [0, 255]": (encode(Image.fromarray(gray.astype(np.float32), "F"), "TIFF"), TIFF),
        "tiff lzw": (encode(gray, "TIFF", compression="tiff_lzw"), TIFF),
        "tiff packbits": (encode(gray, "TIFF", compression="packbits"), TIFF),
        "tiff three pages": (tiff_pages.getvalue(), TIFF),
        "bmp rgb": (encode(rgb, "BMP"), BMP),
        "bmp palette": (encode(palette, "BMP"), BMP),
    }
    cases = [Case(name, body(data, media), answer, twin) for name, (data, media) in forms.items()]
    # 1-bit: the twin is the thresholded picture.
    binary = (gray > 127).astype(np.uint8) * 255
    cases.append(Case("png 1-bit", body(encode(Image.fromarray(binary).convert("1")), PNG), answer, frame(binary)))
    # Lossy forms: the twin is the same JPEG's pixels, decoded by Pillow without any conversion.
    for name, img in (("jpeg cmyk", cmyk), ("jpeg rgb", Image.fromarray(rgb)), ("jpeg progressive", None)):
        data = encode(img if img is not None else gray, "JPEG", quality=95, progressive=img is None)
        cases.append(Case(name, body(data, JPEG), answer, frame(_jpeg_gray(data))))
    # Floats that are no picture: NaN and infinity.
    for label, value in (("nan", np.nan), ("inf", np.inf)):
        bad = unit.copy()
        bad[5, 5] = value
        cases.append(
            Case(f"tiff float with {label}", body(encode(Image.fromarray(bad, "F"), "TIFF"), TIFF), Expect.REFUSE)
        )
    return cases


def _can_interlace() -> bool:
    try:
        encode(np.zeros((2, 2), np.uint8), interlace=1)
    except (TypeError, ValueError, OSError):
        return False
    return True


def _jpeg_gray(data: bytes) -> np.ndarray:
    """A JPEG's gray pixels, computed here: CMYK by its (Adobe-inverted) ink, RGB by ITU-R 601-2 luma."""
    with Image.open(io.BytesIO(data)) as img:
        arr = np.asarray(img, dtype=np.float64)
        if img.mode == "CMYK":
            rgb = (255 - arr[..., :3]) * (255 - arr[..., 3:]) / 255  # Pillow's CMYK -> RGB
        elif img.mode == "RGB":
            rgb = arr
        else:
            return np.asarray(img, dtype=np.uint8).copy()
    luma = rgb[..., 0] * 299 / 1000 + rgb[..., 1] * 587 / 1000 + rgb[..., 2] * 114 / 1000
    return np.clip(np.floor(luma + 0.5), 0, 255).astype(np.uint8)


def _exif_rotations(gray: np.ndarray) -> list[Case]:
    """A JPEG stored sideways with EXIF orientation 2..8; the twin is the upright picture, turned here in numpy."""
    upright_of = {  # how to turn the stored pixels upright, per EXIF orientation
        2: np.fliplr,
        3: lambda a: np.rot90(a, 2),
        4: np.flipud,
        5: lambda a: np.rot90(np.fliplr(a), 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: np.rot90(np.fliplr(a), -1),
        8: lambda a: np.rot90(a, 1),
    }
    cases = []
    for orientation, upright in upright_of.items():
        exif = Image.Exif()
        exif[0x0112] = orientation
        data = encode(gray, "JPEG", quality=95, exif=exif.tobytes())
        stored = _jpeg_gray(data)
        twin = frame(np.ascontiguousarray(upright(stored)))
        cases.append(Case(f"jpeg exif orientation {orientation}", body(data, JPEG), Expect.ANSWER, twin))
    exif = Image.Exif()
    exif[0x0112] = 6
    png = encode(gray, exif=exif.tobytes())
    cases.append(Case("png exif orientation 6", body(png, PNG), Expect.ANSWER, frame(np.rot90(gray, -1).copy())))
    broken = encode(gray, "JPEG", quality=95, exif=b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff")
    cases.append(Case("jpeg with a broken exif block", body(broken, JPEG), Expect.EITHER, frame(_jpeg_gray(broken))))
    return cases


# ---- raw frames -----------------------------------------------------------------------------------


def _raw_frames(gray: np.ndarray) -> list[Case]:
    refuse = Expect.REFUSE
    h, w = gray.shape
    n = h * w
    data = gray.tobytes()
    cases = [
        Case(f"raw frame of {len(b)} bytes for {w}x{h}", body(b, RAW, width=w, height=h), refuse)
        for b in (data[:-1], data + b"\x00", b"", data[: n // 2], data * 2, data[:1])
    ]
    bad_params = {
        "no width or height": {},
        "width only": {"width": w},
        "height only": {"height": h},
        "zero width": {"width": 0, "height": h},
        "negative height": {"width": w, "height": -h},
        "width not a number": {"width": "eighty", "height": h},
        "width a float": {"width": "80.5", "height": h},
        "width 1e3": {"width": "1e3", "height": h},
        "width over 65536": {"width": 70_000, "height": 1},
        "width 2**64": {"width": 2**64, "height": 1},
        "width empty": {"width": "", "height": h},
    }
    cases += [Case(f"raw frame, {name}", body(data, RAW, **params), refuse) for name, params in bad_params.items()]
    cases.append(Case("raw frame 65536x65536 (over max pixels)", body(data, RAW, width=65_536, height=65_536), refuse))
    cases.append(Case("raw frame 1001x1000 (over max pixels)", body(data, RAW, width=1001, height=1000), refuse))
    return cases


# ---- bodies, multipart, query, headers, routes ----------------------------------------------------


def _oversize(gray: np.ndarray) -> list[Case]:
    limit = LIMITS["max_body_bytes"]
    big = bytes(limit + 1)
    return [
        Case("body one byte over the limit", body(big, PNG), Expect.REFUSE),
        Case("raw frame over the body limit", body(big, RAW, width=limit + 1, height=1), Expect.REFUSE),
        Case("multipart over the body limit", Request(files={"file": ("big.png", big, PNG)}), Expect.REFUSE),
        Case(
            "batch of five, over the image count",
            Request(files=[("files", (f"{i}.png", encode(gray), PNG)) for i in range(5)], url="/classify/batch"),
            Expect.REFUSE,
        ),
    ]


def _multipart_body(parts: list[bytes], boundary: str = "xYzZy", closing: bool = True) -> bytes:
    out = b"".join(b"--" + boundary.encode() + b"\r\n" + p + b"\r\n" for p in parts)
    return out + (b"--" + boundary.encode() + b"--\r\n" if closing else b"")


def _part(name: str | None, data: bytes, filename: str | None = "a.png", media: str | None = PNG) -> bytes:
    disposition = "form-data" + (f'; name="{name}"' if name is not None else "")
    disposition += f'; filename="{filename}"' if filename is not None else ""
    head = f"Content-Disposition: {disposition}\r\n" + (f"Content-Type: {media}\r\n" if media else "")
    return head.encode() + b"\r\n" + data


def _multipart(gray: np.ndarray) -> list[Case]:
    png = encode(gray)
    twin = body(png, PNG)
    mp = "multipart/form-data; boundary=xYzZy"
    raw = {
        "no boundary parameter": (_multipart_body([_part("file", png)]), "multipart/form-data"),
        "boundary that is not in the body": (_multipart_body([_part("file", png)]), "multipart/form-data; boundary=zz"),
        "no closing boundary": (_multipart_body([_part("file", png)], closing=False), mp),
        "no parts": (b"--xYzZy--\r\n", mp),
        "empty body": (b"", mp),
        "garbage": (b"\x00\x01garbage" * 50, mp),
        "part without headers": (b"--xYzZy\r\n\r\n" + png + b"\r\n--xYzZy--\r\n", mp),
        "part without a name": (_multipart_body([_part(None, png)]), mp),
        "file field as text, no filename": (_multipart_body([_part("file", b"strip.png", None, None)]), mp),
        "field named image": (_multipart_body([_part("image", png)]), mp),
        "two file fields": (_multipart_body([_part("file", png), _part("file", png)]), mp),
        "empty file": (_multipart_body([_part("file", b"")]), mp),
        "truncated file": (_multipart_body([_part("file", png[:100])]), mp),
        "part headers 20 KB": (_multipart_body([b"X-Junk: " + b"a" * 20_000 + b"\r\n" + _part("file", png)]), mp),
        "200 text fields then no file": (_multipart_body([_part(f"f{i}", b"x", None, None) for i in range(200)]), mp),
        "lf instead of crlf": (_multipart_body([_part("file", png)]).replace(b"\r\n", b"\n"), mp),
    }
    cases = [
        Case(f"multipart {name}", Request(content=data, headers={"content-type": media}), Expect.REFUSE)
        for name, (data, media) in raw.items()
    ]
    cases += [
        Case(
            f"batch multipart {name}",
            Request(content=data, headers={"content-type": media}, url="/classify/batch"),
            Expect.REFUSE,
        )
        for name, (data, media) in raw.items()
        if name not in ("two file fields", "empty file", "truncated file", "part headers 20 KB", "field named image")
    ]
    valid = {
        "file part without its own content type": _multipart_body([_part("file", png, "a.png", None)]),
        "file part with a wrong content type": _multipart_body([_part("file", png, "a.txt", "text/plain")]),
        "a text field beside the file": _multipart_body([_part("note", b"line 3", None, None), _part("file", png)]),
        "quoted boundary": _multipart_body([_part("file", png)]),
        "file name with unicode and quotes": _multipart_body([_part("file", png, 'Stra\u00dfe \\"1\\".png')]),
        "boundary of 200 characters (RFC 2046 says 70; accepted)": _multipart_body([_part("file", png)], "b" * 200),
    }
    for name, data in valid.items():
        media = {"quoted boundary": 'multipart/form-data; boundary="xYzZy"'}.get(name, mp)
        if name.startswith("boundary of 200"):
            media = "multipart/form-data; boundary=" + "b" * 200
        cases.append(
            Case(f"multipart {name}", Request(content=data, headers={"content-type": media}), Expect.ANSWER, twin)
        )
    return cases


def _query(gray: np.ndarray) -> list[Case]:
    png = encode(gray)
    twin = body(png, PNG)
    refuse = {
        "heatmap rainbow": {"heatmap": "rainbow"},
        "heatmap empty": {"heatmap": ""},
        "heatmap upper case": {"heatmap": "GRAY"},
        "heatmap 8 KB": {"heatmap": "g" * 8192},
    }
    cases = [Case(f"query {name}", body(png, PNG, **params), Expect.REFUSE) for name, params in refuse.items()]
    answer = {
        "unknown parameter": {"colour": "jet"},
        "unknown parameter 8 KB": {"x": "y" * 8192},
        "width and height on a png": {"width": 3, "height": 3},
        "heatmap none": {"heatmap": "none"},
        "heatmap overlay": {"heatmap": "overlay"},
        "heatmap twice": [("heatmap", "gray"), ("heatmap", "none")],
        "100 unknown parameters": {f"p{i}": i for i in range(100)},
    }
    for name, params in answer.items():
        request = Request(content=png, headers={"content-type": PNG}, params=params)  # type: ignore[arg-type]
        cases.append(Case(f"query {name}", request, Expect.ANSWER, twin))
    return cases


def _headers(gray: np.ndarray) -> list[Case]:
    png = encode(gray)
    twin = body(png, PNG)
    answer = {
        "x-request-id 10 KB": {"x-request-id": "r" * 10_000},
        "x-request-id with spaces and quotes": {"x-request-id": 'a b "c" <d>'},
        "100 extra headers": {f"x-extra-{i}": "v" * 50 for i in range(100)},
        "content-type upper case": {"content-type": "IMAGE/PNG"},
        "content-type with parameters": {"content-type": "image/png; charset=utf-8; q=0.5"},
        "accept text/html": {"accept": "text/html"},
        "authorization garbage (keys off)": {"authorization": "Negotiate " + "Z" * 2000},
        "content-encoding identity": {"content-encoding": "identity"},
    }
    cases = []
    for name, headers in answer.items():
        merged = {"content-type": PNG, **headers}
        cases.append(Case(f"header {name}", Request(content=png, headers=merged), Expect.ANSWER, twin))
    refuse = {
        "content-type missing": {},
        "content-type empty": {"content-type": ""},
        "content-type image/": {"content-type": "image/"},
        "content-type 8 KB": {"content-type": "image/" + "p" * 8192},
        "content-type two types": {"content-type": "image/png, image/jpeg"},
        "content-type image/x-png": {"content-type": "image/x-png"},
        "content-encoding gzip on a plain body": {"content-type": PNG, "content-encoding": "gzip"},
    }
    cases += [Case(f"header {name}", Request(content=png, headers=h), Expect.REFUSE) for name, h in refuse.items()]
    gz = zlib.compressobj(wbits=31)
    gzipped = gz.compress(png) + gz.flush()
    cases.append(
        Case(
            "header content-encoding gzip on a gzipped body",
            Request(content=gzipped, headers={"content-type": PNG, "content-encoding": "gzip"}),
            Expect.REFUSE,
        )
    )
    return cases


def _routes(gray: np.ndarray) -> list[Case]:
    png = encode(gray)
    refuse = Expect.REFUSE
    return [
        Case("GET /classify", Request(method="GET"), refuse),
        Case("PUT /classify", Request(content=png, headers={"content-type": PNG}, method="PUT"), refuse),
        Case("DELETE /classify", Request(method="DELETE"), refuse),
        Case(
            "POST /classify/batch with a png body",
            Request(content=png, headers={"content-type": PNG}, url="/classify/batch"),
            refuse,
        ),
        Case(
            "POST /classify/batch without files", Request(files={"note": (None, "hi")}, url="/classify/batch"), refuse
        ),
        Case("POST /classifyy", Request(content=png, headers={"content-type": PNG}, url="/classifyy"), refuse),
        Case(
            "POST /classify/../model",
            Request(content=png, headers={"content-type": PNG}, url="/classify/%2e%2e/model"),
            refuse,
        ),
        Case("POST /metrics", Request(content=png, headers={"content-type": PNG}, url="/metrics"), refuse),
    ]
