// Our libwebp entry point (built by build.sh into webp-scaled.wasm).
#include <stdint.h>
#include <stdlib.h>
#include "webp/decode.h"

// Decode `size` bytes of WebP at `data` straight to an out_w x out_h RGBA bitmap (libwebp's
// rescaler: area averaging when shrinking, row by row, so the full-size picture is never held
// for lossy data). `out` must hold out_w * out_h * 4 bytes. Returns libwebp's VP8StatusCode
// (0 = OK). With out_w/out_h equal to the picture's size it is a plain decode.
int decode_scaled(const uint8_t* data, size_t size, uint8_t* out, int out_w, int out_h, int scale) {
  WebPDecoderConfig config;
  if (!WebPInitDecoderConfig(&config)) return -1;
  if (scale) {
    config.options.use_scaling = 1;
    config.options.scaled_width = out_w;
    config.options.scaled_height = out_h;
  }
  config.output.colorspace = MODE_RGBA;
  config.output.is_external_memory = 1;
  config.output.u.RGBA.rgba = out;
  config.output.u.RGBA.stride = out_w * 4;
  config.output.u.RGBA.size = (size_t)out_w * out_h * 4;
  int status = WebPDecode(data, size, &config);
  WebPFreeDecBuffer(&config.output);
  return status;
}
