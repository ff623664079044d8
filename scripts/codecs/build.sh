#!/usr/bin/env bash
# Builds our two decoder codecs to wasm32 (no imports but four never-called WASI stubs):
#   webp-scaled.wasm  libwebp 1.2.4 (Debian bookworm's, CVE-2023-4863 fix included) + webp-scaled.c
#   jpeg-scaled.wasm  libjpeg-turbo 2.1.5 (Debian bookworm's, no SIMD) + jpeg-scaled.c
# Why our own builds: the npm builds export only a full-size decode (a 4096² WebP measured
# 344 MB), and imagescript's JPEG decoder was 3× slower than libjpeg-turbo; both libraries can
# decode straight to (about) the preview size, as sharp does with them natively.
# The .wasm files are committed (CI needs no C toolchain); run this only to rebuild them.
# Needs apt: clang lld wasi-libc cmake, and a deb-src line for bookworm (for `apt-get source`).
#   scripts/codecs/build.sh [webp] [jpeg]      (both by default)
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
targets=("${@:-webp jpeg}")
# shellcheck disable=SC2206
targets=(${targets[*]})

wasm_cc() { # out.wasm export... -- sources and flags
  local out=$1; shift
  local exports=()
  while [ "$1" != "--" ]; do exports+=("-Wl,--export=$1"); shift; done
  shift
  if ! clang --target=wasm32-wasi -isystem /usr/include/wasm32-wasi -L/usr/lib/wasm32-wasi -O3 -msimd128 -DNDEBUG \
    -nostartfiles -Wl,--no-entry -Wl,--gc-sections -Wl,--strip-all "${exports[@]}" -Wl,--export=malloc -Wl,--export=free \
    -o "$WORK/$out" "$@" -w 2>"$WORK/$out.log"; then
    cat "$WORK/$out.log" >&2
    echo "build.sh: $out failed" >&2
    exit 1
  fi
  mv "$WORK/$out" "$HERE/$out"
  ls -l "$HERE/$out"
}

for t in "${targets[@]}"; do
  case "$t" in
    webp)
      apt-get source -qq libwebp=1.2.4-0.2+deb12u1 >/dev/null 2>&1
      S="$WORK/libwebp-1.2.4/src"
      files=("$S"/dec/*.c)
      for f in dsp/alpha_processing dsp/cpu dsp/dec dsp/dec_clip_tables dsp/filters dsp/lossless dsp/rescaler \
        dsp/upsampling dsp/yuv utils/bit_reader_utils utils/color_cache_utils utils/filters_utils utils/huffman_utils \
        utils/quant_levels_dec_utils utils/random_utils utils/rescaler_utils utils/thread_utils utils/utils; do
        files+=("$S/$f.c")
      done
      wasm_cc webp-scaled.wasm decode_scaled -- -I"$S/.." -I"$S" "$HERE/webp-scaled.c" "${files[@]}"
      ;;
    jpeg)
      apt-get source -qq libjpeg-turbo=1:2.1.5-2 >/dev/null 2>&1
      S="$WORK/libjpeg-turbo-2.1.5"
      # jconfig.h, jconfigint.h, jversion.h for wasm32 (sizes from the target, no SIMD)
      mkdir -p "$WORK/jcfg" && (cd "$WORK/jcfg" && cmake "$S" -DCMAKE_SYSTEM_NAME=Generic -DCMAKE_SYSTEM_PROCESSOR=wasm32 \
        -DCMAKE_C_COMPILER=clang -DCMAKE_C_COMPILER_TARGET=wasm32-wasi "-DCMAKE_C_FLAGS=-isystem /usr/include/wasm32-wasi" \
        -DCMAKE_TRY_COMPILE_TARGET_TYPE=STATIC_LIBRARY -DWITH_SIMD=0 -DENABLE_SHARED=0 -DWITH_TURBOJPEG=0 -DWITH_JAVA=0 >/dev/null)
      files=()
      for f in jcomapi jdapimin jdapistd jdatasrc jdcoefct jdcolor jddctmgr jdhuff jdphuff jdinput jdmainct jdmarker \
        jdmaster jdmerge jdpostct jdsample jerror jidctflt jidctfst jidctint jidctred jmemmgr jmemnobs jquant1 jquant2 \
        jutils jdarith jaricom jsimd_none; do
        files+=("$S/$f.c")
      done
      wasm_cc jpeg-scaled.wasm decode -- -DNO_GETENV -include errno.h -I"$WORK/jcfg" -I"$S" "$HERE/jpeg-scaled.c" "${files[@]}"
      ;;
    *) echo "build.sh: unknown codec $t (webp, jpeg)" >&2; exit 2 ;;
  esac
done
