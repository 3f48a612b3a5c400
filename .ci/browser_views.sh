#!/usr/bin/env bash
# The HTML debug views in a real browser: headless Chromium loads the
# pages of `milieu::http::debug` (tests/debug_views.rs: a server on
# loopback with stages that did work) and of examples/orders
# (tests/orders.rs), checks the rendered DOM, and keeps screenshots under
# target/test-artefacts/. Then every screenshot is decoded (Python's
# zlib, no imaging library) and checked for drawn content: many colours,
# and on the stages page the orange of the charts' last-value markers.
#
# Installs Debian's `chromium` when missing (MILIEU_CHROMIUM=path picks
# another browser). Exits non-zero if a check fails.
# Usage: bash .ci/browser_views.sh
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
if [ -z "${MILIEU_CHROMIUM:-}" ] && ! command -v chromium >/dev/null; then
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
"${MILIEU_CHROMIUM:-chromium}" --version

artefacts=target/test-artefacts
rm -f "$artefacts"/debug-stages.png "$artefacts"/debug-context.png "$artefacts"/orders-debug-context.png

cargo test --all-features --test debug_views -- --ignored browser
cargo test --all-features --test orders -- --ignored browser

python3 - "$artefacts" <<'PY'
import struct, sys, zlib

def pixels(path):
    """The RGB(A) rows of a non-interlaced 8-bit PNG, unfiltered."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path}: not a PNG"
    at, idat = 8, b""
    while at < len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        body = data[at + 8:at + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and colour in (2, 6) and interlace == 0, f"{path}: unexpected PNG kind"
            bpp = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
        at += 12 + length
    raw, stride, rows, prev = zlib.decompress(idat), width * bpp, [], bytearray(width * bpp)
    for y in range(height):
        line = raw[y * (stride + 1):(y + 1) * (stride + 1)]
        kind, row = line[0], bytearray(line[1:])
        for i in range(stride):
            left = row[i - bpp] if i >= bpp else 0
            up, corner = prev[i], prev[i - bpp] if i >= bpp else 0
            if kind == 1: row[i] = (row[i] + left) & 255
            elif kind == 2: row[i] = (row[i] + up) & 255
            elif kind == 3: row[i] = (row[i] + (left + up) // 2) & 255
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                pred = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                row[i] = (row[i] + pred) & 255
        rows.append(bytes(row))
        prev = row
    return width, height, bpp, rows

def colours(path):
    width, height, bpp, rows = pixels(path)
    counts = {}
    for row in rows:
        for x in range(0, width * bpp, bpp):
            rgb = row[x:x + 3]
            counts[rgb] = counts.get(rgb, 0) + 1
    return width, height, counts

artefacts = sys.argv[1]
for name in ("debug-stages.png", "debug-context.png", "orders-debug-context.png"):
    path = f"{artefacts}/{name}"
    width, height, counts = colours(path)
    header = counts.get(bytes.fromhex("1d2330"), 0)
    print(f"{path}: {width}x{height}, {len(counts)} colours, {header} header pixels")
    assert len(counts) >= 32, f"{path}: only {len(counts)} colours: an empty page?"
    assert header > width * 20, f"{path}: no dark header bar"
    if name == "debug-stages.png":
        # The charts' last-value markers (#d9480f): 3.2 px circles.
        markers = counts.get(bytes.fromhex("d9480f"), 0)
        print(f"{path}: {markers} pixels of the last-value markers' orange")
        assert markers >= 20, f"{path}: no chart markers drawn"
print("screenshots checked")
PY
