#!/usr/bin/env bash
# Builds scripts/codecs/webp-scaled.wasm: libwebp's decoder (Debian bookworm's 1.2.4 with its
# security patches, CVE-2023-4863 included) and webp-scaled.c, for wasm32 with no imports.
# Why our own build: the npm libwebp builds (@jsquash/webp, @cwasm/webp, wasm-webp) export
# only a full-size decode, and a full-size bitmap of a 50 MP WebP does not fit an edge isolate;
# libwebp's own rescaler decodes lossy WebP row by row straight to the preview size.
# The .wasm is committed (CI does not need a C toolchain); run this only to rebuild it.
# Needs apt: clang lld wasi-libc, and a deb-src line for bookworm (for `apt-get source`).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
apt-get source -qq libwebp=1.2.4-0.2+deb12u1 >/dev/null
S="$(ls -d libwebp-1.2.4)/src"
FILES=("$S"/dec/*.c)
for f in dsp/alpha_processing dsp/cpu dsp/dec dsp/dec_clip_tables dsp/filters dsp/lossless dsp/rescaler \
  dsp/upsampling dsp/yuv utils/bit_reader_utils utils/color_cache_utils utils/filters_utils utils/huffman_utils \
  utils/quant_levels_dec_utils utils/random_utils utils/rescaler_utils utils/thread_utils utils/utils; do
  FILES+=("$S/$f.c")
done
clang --target=wasm32-wasi --sysroot=/usr -isystem /usr/include/wasm32-wasi -L/usr/lib/wasm32-wasi \
  -O3 -msimd128 -DNDEBUG -I"$S/.." -I"$S" -nostartfiles \
  -Wl,--no-entry -Wl,--gc-sections -Wl,--strip-all \
  -Wl,--export=decode_scaled -Wl,--export=malloc -Wl,--export=free \
  -o "$HERE/webp-scaled.wasm" "$HERE/webp-scaled.c" "${FILES[@]}" 2>&1 | grep -v -e warning -e '^ ' -e '\^' || true
ls -l "$HERE/webp-scaled.wasm"
