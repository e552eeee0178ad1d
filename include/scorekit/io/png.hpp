// PNG images through libpng (Debian's libpng-dev): a writer of 8-bit grey, RGB and RGBA images and a
// reader that returns 8-bit grey, grey+alpha, RGB or RGBA pixels from any PNG libpng reads (palettes are
// expanded to RGB, or RGBA with transparency; 1, 2 and 4-bit grey to 8 bits; 16-bit samples are scaled
// to 8 bits with rounding; interlaced files are de-interlaced; no gamma or colour-space conversion).
// Host code only.
//
// libpng reports an error by calling an error function and then longjmp-ing back to a setjmp. Here the
// error function records the message and longjmps at once (libpng's default would print it to stderr
// first), and warnings are kept for the error message, never printed. Every libpng call runs inside
// detail::png_guarded, whose setjmp is the only landing point, and nothing between it and libpng's
// longjmp owns a C++ object with a destructor (C++ [csetjmp.syn]: a longjmp that would skip one is
// undefined): the C++ objects live in the callers, which turn a failed step into an io_error.
//
// Reading is strict: a bad CRC in any chunk (ancillary ones too), a bad zlib checksum, too much or too
// little image data, an unknown critical chunk or a truncated file is an io_error naming the file.
// Ancillary chunks other than tRNS (colour spaces, text, time stamps) are skipped unread: their
// contents never change the samples returned, and libpng's checks of them (the ICC profile's) would
// refuse files that other tools read. Before libpng allocates anything for the pixels, the size the
// header declares is checked against what the file can hold (DEFLATE expands at most 1032-fold), so a
// small file that claims a huge image is refused, not answered with std::bad_alloc.
//
// Writing is deterministic: the same pixels give the same bytes (with the same libpng and zlib),
// because every setting that shapes the output is fixed here (zlib level 9, memory level 9, a 32 KiB
// window, the filtered strategy, libpng's choice among all five filters per row by the least sum of
// absolute residuals, no time stamp or other optional chunk). Files are written atomically (temporary
// file, then rename; core/file.hpp).
// scorekit-requires: SCOREKIT_HAVE_PNG
#pragma once

#ifndef SCOREKIT_HAVE_PNG
#error \
    "scorekit/io/png.hpp needs libpng, and this build of scorekit has none: install Debian's libpng-dev (scripts/setup.sh does), reconfigure, and link scorekit::scorekit (which then defines SCOREKIT_HAVE_PNG)"
#endif

#include <scorekit/core/error.hpp>
#include <scorekit/core/file.hpp>

#include <png.h>
#include <zlib.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace scorekit {
namespace io {

/// An 8-bit image in memory: rows top to bottom, pixels left to right, `channels` bytes per pixel
/// (1 grey, 2 grey+alpha, 3 RGB, 4 RGBA).
struct Image {
  int width = 0;
  int height = 0;
  int channels = 0;
  std::vector<std::uint8_t> pixels;
};

namespace detail {

/// What libpng's callbacks share with the code here: the bytes being read, the vector being written,
/// and the message of the error that stopped libpng. Trivially destructible, like everything the
/// guarded steps touch.
struct PngContext {
  const std::uint8_t* input = nullptr;
  std::size_t input_size = 0;
  std::size_t input_pos = 0;
  std::vector<std::uint8_t>* output = nullptr;
  char message[256] = {0};
  char warning[256] = {0};  ///< the first warning (libpng explains some errors in warnings just before)
};

[[noreturn]] inline void png_on_error(png_structp png, png_const_charp message) {
  auto* context = static_cast<PngContext*>(png_get_error_ptr(png));
  std::snprintf(context->message, sizeof context->message, "%s", message ? message : "unknown error");
  png_longjmp(png, 1);
}

inline void png_on_warning(png_structp png, png_const_charp message) {
  auto* context = static_cast<PngContext*>(png_get_error_ptr(png));
  if (context->warning[0] == 0 && message)
    std::snprintf(context->warning, sizeof context->warning, "%s", message);
}

inline void png_read_bytes(png_structp png, png_bytep out, std::size_t n) {
  auto* context = static_cast<PngContext*>(png_get_io_ptr(png));
  if (n > context->input_size - context->input_pos) png_error(png, "the file ends early (it is truncated)");
  std::memcpy(out, context->input + context->input_pos, n);
  context->input_pos += n;
}

inline void png_write_bytes(png_structp png, png_bytep data, std::size_t n) {
  auto* context = static_cast<PngContext*>(png_get_io_ptr(png));
  bool failed = false;
  try {
    context->output->insert(context->output->end(), data, data + n);
  } catch (...) {
    failed = true;
  }
  // Outside the handler: a longjmp out of a catch block would leave the exception alive.
  if (failed) png_error(png, "out of memory for the encoded image");
}

inline void png_flush_nothing(png_structp) {}

/// Runs step(png, info, arg) with libpng's error return armed; false when libpng reported an error
/// (the message is in the PngContext). See the comment at the top of this file.
inline bool png_guarded(png_structp png, png_infop info, void (*step)(png_structp, png_infop, void*),
                        void* arg) {
  if (setjmp(png_jmpbuf(png))) return false;
  step(png, info, arg);
  return true;
}

/// A libpng read or write structure with its info structure, destroyed with it.
template <bool Write>
class PngHandle {
 public:
  explicit PngHandle(PngContext& context) {
    m_png = Write ? png_create_write_struct(PNG_LIBPNG_VER_STRING, &context, png_on_error, png_on_warning)
                  : png_create_read_struct(PNG_LIBPNG_VER_STRING, &context, png_on_error, png_on_warning);
    if (m_png) m_info = png_create_info_struct(m_png);
  }
  PngHandle(const PngHandle&) = delete;
  PngHandle& operator=(const PngHandle&) = delete;
  ~PngHandle() {
    if (Write)
      png_destroy_write_struct(&m_png, &m_info);
    else
      png_destroy_read_struct(&m_png, &m_info, nullptr);
  }
  bool ok() const { return m_png && m_info; }
  png_structp png() const { return m_png; }
  png_infop info() const { return m_info; }

 private:
  png_structp m_png = nullptr;
  png_infop m_info = nullptr;
};

/// The image header, as the read steps report it.
struct PngHeader {
  png_uint_32 width = 0, height = 0;
  int bit_depth = 0, colour_type = 0, channels = 0;
  std::size_t row_bytes = 0;
};

/// What one write needs: the header fields and one pointer per row.
struct PngEncodeJob {
  png_uint_32 width = 0, height = 0;
  int colour_type = 0;
  png_bytepp rows = nullptr;
};

inline void png_step_read_header(png_structp png, png_infop info, void* arg) {
  png_set_read_fn(png, png_get_error_ptr(png), png_read_bytes);
  png_set_user_limits(png, 1u << 24, 1u << 24);
  png_set_crc_action(png, PNG_CRC_ERROR_QUIT, PNG_CRC_ERROR_QUIT);
  png_set_benign_errors(png, 0);
  png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, nullptr, -1);
  png_read_info(png, info);
  auto* header = static_cast<PngHeader*>(arg);
  header->width = png_get_image_width(png, info);
  header->height = png_get_image_height(png, info);
  header->bit_depth = png_get_bit_depth(png, info);
  header->colour_type = png_get_color_type(png, info);
  header->channels = png_get_channels(png, info);
}

inline void png_step_set_transforms(png_structp png, png_infop info, void* arg) {
  const int colour_type = png_get_color_type(png, info), bit_depth = png_get_bit_depth(png, info);
  if (colour_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (colour_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
  if (bit_depth == 16) png_set_scale_16(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  auto* header = static_cast<PngHeader*>(arg);
  header->bit_depth = png_get_bit_depth(png, info);
  header->channels = png_get_channels(png, info);
  header->row_bytes = png_get_rowbytes(png, info);
}

inline void png_step_read_pixels(png_structp png, png_infop, void* rows) {
  png_read_image(png, static_cast<png_bytepp>(rows));
  png_read_end(png, nullptr);
}

inline void png_step_write(png_structp png, png_infop info, void* arg) {
  const auto* job = static_cast<const PngEncodeJob*>(arg);
  png_set_write_fn(png, png_get_error_ptr(png), png_write_bytes, png_flush_nothing);
  png_set_IHDR(png, info, job->width, job->height, 8, job->colour_type, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_set_filter(png, PNG_FILTER_TYPE_BASE, PNG_ALL_FILTERS);
  png_set_compression_level(png, Z_BEST_COMPRESSION);
  png_set_compression_mem_level(png, 9);
  png_set_compression_window_bits(png, 15);
  png_set_compression_strategy(png, Z_FILTERED);
  png_write_info(png, info);
  png_write_image(png, job->rows);
  png_write_end(png, info);
}

}  // namespace detail

/// The bytes of a PNG file for an 8-bit image; the channel count (1 grey, 3 RGB, 4 RGBA) follows from
/// pixels.size() == width * height * channels.
inline std::vector<std::uint8_t> encode_png(int width, int height, const std::vector<std::uint8_t>& pixels) {
  const char* where = "scorekit::io::encode_png";
  if (width <= 0 || height <= 0 || width > (1 << 24) || height > (1 << 24))
    throw invalid_argument(
        scorekit::detail::concat(where, ": width and height must be in 1..2^24, got ", width, " x ", height));
  const std::size_t npix = std::size_t(width) * std::size_t(height);
  int channels = 0;
  for (int c : {1, 3, 4})
    if (pixels.size() == npix * std::size_t(c)) channels = c;
  if (channels == 0)
    throw dimension_mismatch(scorekit::detail::concat(
        where, ": ", pixels.size(), " bytes do not make a ", width, " x ", height, " image (expected ", npix,
        " for grey, ", 3 * npix, " for RGB or ", 4 * npix, " for RGBA)"));

  // libpng takes row pointers to non-const bytes; it copies each row before filtering and never
  // writes through them.
  const std::size_t stride = std::size_t(width) * std::size_t(channels);
  std::vector<png_bytep> rows(static_cast<std::size_t>(height));
  for (std::size_t y = 0; y < rows.size(); ++y) rows[y] = const_cast<png_bytep>(pixels.data() + y * stride);
  detail::PngEncodeJob job;
  job.width = png_uint_32(width);
  job.height = png_uint_32(height);
  job.colour_type = channels == 1   ? PNG_COLOR_TYPE_GRAY
                    : channels == 3 ? PNG_COLOR_TYPE_RGB
                                    : PNG_COLOR_TYPE_RGBA;
  job.rows = rows.data();

  std::vector<std::uint8_t> out;
  out.reserve(npix * std::size_t(channels) / 4 + 1024);
  detail::PngContext context;
  context.output = &out;
  detail::PngHandle<true> handle(context);
  if (!handle.ok()) throw io_error(std::string(where) + ": libpng could not start (out of memory?)");
  if (!detail::png_guarded(handle.png(), handle.info(), detail::png_step_write, &job))
    throw io_error(scorekit::detail::concat(where, ": libpng: ", context.message));
  return out;
}

/// Writes an 8-bit grey, RGB or RGBA image (channel count from pixels.size(), see encode_png) as a PNG
/// file, atomically: the file appears complete under `path` or not at all. Throws io_error naming the
/// path and the OS error when it cannot be written.
inline void write_png(const std::string& path, int width, int height,
                      const std::vector<std::uint8_t>& pixels) {
  const std::vector<std::uint8_t> png = encode_png(width, height, pixels);
  scorekit::detail::AtomicFile file(path, "scorekit::io::write_png");
  file.write(png.data(), png.size());
  file.commit();
}

/// Writes an Image (see write_png).
inline void write_png(const std::string& path, const Image& image) {
  write_png(path, image.width, image.height, image.pixels);
}

/// Decodes a PNG held in memory into 8-bit samples with the channels the file stores (1 grey, 2
/// grey+alpha, 3 RGB, 4 RGBA; a palette gives 3, or 4 with transparency). A damaged or truncated file,
/// or one that is not a PNG, throws io_error naming `name`.
inline Image decode_png(const std::vector<std::uint8_t>& bytes, const std::string& name = "<memory>") {
  const std::string where = "scorekit::io::read_png: '" + scorekit::detail::printable(name) + "'";
  auto corrupt = [&](const std::string& what) { return io_error(where + ": " + what); };
  if (bytes.size() < 8 || png_sig_cmp(bytes.data(), 0, 8) != 0)
    throw corrupt("not a PNG file (the signature is missing)");

  detail::PngContext context;
  context.input = bytes.data();
  context.input_size = bytes.size();
  detail::PngHandle<false> handle(context);
  if (!handle.ok()) throw corrupt("libpng could not start (out of memory?)");
  auto failed = [&] {
    std::string what = context.message;
    if (context.warning[0] != 0) what += std::string("; ") + context.warning;
    return corrupt("the file is damaged or not a PNG that libpng reads (libpng: " +
                   scorekit::detail::printable(what) + ")");
  };

  detail::PngHeader header;
  if (!detail::png_guarded(handle.png(), handle.info(), detail::png_step_read_header, &header))
    throw failed();
  // A DEFLATE match of 258 bytes, the longest, costs at least 2 bits (a length and a distance code of
  // 1 bit each), so the image data, filter bytes aside, cannot exceed 1032 bytes per byte of the file.
  const std::uint64_t bits_per_row =
      std::uint64_t(header.width) * std::uint64_t(header.channels) * std::uint64_t(header.bit_depth);
  const std::uint64_t data_bytes = std::uint64_t(header.height) * ((bits_per_row + 7) / 8);
  if (data_bytes / 1032 > bytes.size())
    throw corrupt(scorekit::detail::concat("the header declares a ", header.width, " x ", header.height,
                                           " image, more data than a file of ", bytes.size(),
                                           " bytes can hold"));
  if (!detail::png_guarded(handle.png(), handle.info(), detail::png_step_set_transforms, &header))
    throw failed();
  if (header.bit_depth != 8 || header.channels < 1 || header.channels > 4 ||
      header.row_bytes != std::size_t(header.width) * std::size_t(header.channels))
    throw corrupt(scorekit::detail::concat("libpng gave ", header.channels, " channels of ", header.bit_depth,
                                           " bits, not 8-bit grey, grey+alpha, RGB or RGBA"));

  Image img;
  img.width = int(header.width);
  img.height = int(header.height);
  img.channels = header.channels;
  img.pixels.resize(std::size_t(header.height) * header.row_bytes);
  std::vector<png_bytep> rows(static_cast<std::size_t>(header.height));
  for (std::size_t y = 0; y < rows.size(); ++y) rows[y] = img.pixels.data() + y * header.row_bytes;
  if (!detail::png_guarded(handle.png(), handle.info(), detail::png_step_read_pixels, rows.data()))
    throw failed();
  return img;
}

/// Reads a PNG file (see decode_png) with the channels it stores.
inline Image read_png(const std::string& path) {
  return decode_png(scorekit::detail::read_file(path, "scorekit::io::read_png"), path);
}

/// Reads a PNG file as 8-bit RGB: grey is replicated into the three channels, alpha is dropped.
inline Image read_png_rgb(const std::string& path) {
  Image img = read_png(path);
  if (img.channels == 3) return img;
  Image rgb;
  rgb.width = img.width;
  rgb.height = img.height;
  rgb.channels = 3;
  const std::size_t npix = std::size_t(img.width) * std::size_t(img.height);
  rgb.pixels.resize(3 * npix);
  for (std::size_t p = 0; p < npix; ++p)
    for (int c = 0; c < 3; ++c)
      rgb.pixels[3 * p + std::size_t(c)] =
          img.pixels[p * std::size_t(img.channels) + (img.channels <= 2 ? 0 : std::size_t(c))];
  return rgb;
}

}  // namespace io
}  // namespace scorekit
