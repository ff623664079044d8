// Our libjpeg-turbo entry point (built by build.sh into jpeg-scaled.wasm): decode a
// JPEG with libjpeg-turbo's DCT-domain scaling (N/8) to the smallest size at least as large as
// asked, so a large JPEG is never decoded at full size.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include "jpeglib.h"

typedef struct { int width, height, components, colorspace, warnings; uint8_t* pixels; } result_t;
static result_t result;

// libjpeg's default error_exit calls exit(); without setjmp in this target, a fatal error traps:
// the caller sees a WebAssembly.RuntimeError and drops the instance.
static void error_exit(j_common_ptr cinfo) { (void)cinfo; __builtin_trap(); }
static void emit_message(j_common_ptr cinfo, int level) { if (level < 0) cinfo->err->num_warnings++; }
static void output_message(j_common_ptr cinfo) { (void)cinfo; }

result_t* decode(const uint8_t* data, size_t size, int want_w, int want_h) {
  struct jpeg_decompress_struct cinfo;
  struct jpeg_error_mgr jerr;
  cinfo.err = jpeg_std_error(&jerr);
  jerr.error_exit = error_exit;
  jerr.emit_message = emit_message;
  jerr.output_message = output_message;
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, data, (unsigned long)size);
  jpeg_read_header(&cinfo, TRUE);
  if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) cinfo.out_color_space = JCS_CMYK;
  else if (cinfo.num_components == 1) cinfo.out_color_space = JCS_GRAYSCALE;
  else cinfo.out_color_space = JCS_RGB;
  cinfo.scale_num = 8;
  cinfo.scale_denom = 8;
  for (int n = 1; n <= 8; n++) {
    // ceil(size * n / 8): the size libjpeg-turbo produces at scale n/8
    if (want_w > 0 && want_h > 0 && (cinfo.image_width * n + 7) / 8 >= (unsigned)want_w &&
        (cinfo.image_height * n + 7) / 8 >= (unsigned)want_h) {
      cinfo.scale_num = n;
      break;
    }
  }
  cinfo.dct_method = JDCT_ISLOW;
  jpeg_start_decompress(&cinfo);
  size_t stride = (size_t)cinfo.output_width * cinfo.output_components;
  uint8_t* pixels = malloc(stride * cinfo.output_height);
  if (!pixels) __builtin_trap();
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = pixels + stride * cinfo.output_scanline;
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_decompress(&cinfo);
  result.width = cinfo.output_width;
  result.height = cinfo.output_height;
  result.components = cinfo.output_components;
  result.colorspace = cinfo.out_color_space == JCS_CMYK ? 2 : cinfo.output_components == 1 ? 0 : 1;
  result.warnings = (int)jerr.num_warnings;
  result.pixels = pixels;
  jpeg_destroy_decompress(&cinfo);
  return &result;
}
