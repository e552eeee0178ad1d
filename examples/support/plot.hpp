// Figures for the examples (not part of the installed library: figures are not scorekit's job): a grid of
// panels with heatmaps (of a grid of values or of a function such as a density), scatter plots and lines
// (trajectories), axis frames with ticks, titles, axis labels, colour bars and legends, rendered into an
// RGB image and saved as a PNG through scorekit/io/png.hpp (libpng). Meant for looking at samples and
// densities, not for publication typesetting; the examples also write NPY files for other tools.
//
// Rendering: colours are blended in floating point on a white canvas (alpha compositing, "over"), and
// dots, lines and text are anti-aliased by pixel coverage (for dots and lines, the distance from the
// pixel centre to the shape's edge; for text, 3 x 3 supersampling). Text uses a built-in 5 x 7 bitmap
// font (printable ASCII, descenders in two extra rows), smoothed by two passes of the EPX pixel-art
// scaler (Eric Johnston, 1992) before it is sampled at the requested size, so diagonal strokes are
// not staircases.
//
// Data coordinates are doubles: x increases to the right, y upwards. A panel's data range is what
// xlim()/ylim() set, else the range of its scatter and line data plus 5 %, else [0, 1].
#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/io/png.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace scorekit_examples {

using scorekit::dimension_mismatch;
using scorekit::invalid_argument;
using scorekit::require_dimension;
using scorekit::require_positive;
using scorekit::io::Image;
using scorekit::io::write_png;

/// An 8-bit colour with opacity (a = 255 opaque, 0 invisible).
struct Rgba {
  std::uint8_t r = 0, g = 0, b = 0, a = 255;
};

/// A few colours that read well on white and on viridis.
namespace colors {
constexpr Rgba black{0, 0, 0, 255};
constexpr Rgba white{255, 255, 255, 255};
constexpr Rgba red{255, 0, 0, 255};
constexpr Rgba dark_grey{51, 51, 51, 255};
constexpr Rgba light_grey{225, 225, 225, 255};
constexpr Rgba blue{31, 100, 180, 255};
constexpr Rgba orange{245, 130, 32, 255};
constexpr Rgba green{44, 160, 64, 255};
constexpr Rgba crimson{200, 30, 60, 255};
constexpr Rgba purple{120, 70, 170, 255};
}  // namespace colors

/// The same colour with opacity `alpha` in [0, 1].
inline Rgba with_alpha(Rgba c, double alpha) {
  c.a = std::uint8_t(std::lround(255.0 * std::min(1.0, std::max(0.0, alpha))));
  return c;
}

/// Colour maps for heatmaps. viridis: perceptually uniform, dark blue to yellow (van der Walt and
/// Smith, 2015), the default for densities; diverging: blue - white - red for signed quantities
/// centred on zero (set vmin = -vmax); grey: black to white, for images.
enum class Colormap { viridis, diverging, grey };

/// How heatmap values map to colours: linearly, or by log10 (values <= 0 get the lowest colour).
enum class Scale { linear, log };

/// The colour at t in [0, 1] (clamped; NaN gives transparent).
inline Rgba colormap(Colormap map, double t) {
  if (std::isnan(t)) return Rgba{0, 0, 0, 0};
  t = std::min(1.0, std::max(0.0, t));
  // Piecewise-linear in sRGB through control colours read off the maps at equal steps of t: nine for
  // viridis (enough that the largest error is a few levels of 255), five for the diverging map.
  static constexpr std::uint8_t viridis[9][3] = {{68, 1, 84},    {71, 45, 123},  {59, 82, 139},
                                                 {44, 114, 142}, {33, 145, 140}, {39, 173, 129},
                                                 {94, 201, 98},  {170, 220, 50}, {253, 231, 37}};
  static constexpr std::uint8_t diverging[5][3] = {
      {40, 80, 160}, {135, 175, 215}, {245, 245, 245}, {230, 145, 115}, {170, 30, 45}};
  static constexpr std::uint8_t grey[2][3] = {{0, 0, 0}, {255, 255, 255}};
  const std::uint8_t(*stops)[3] = viridis;
  int n = 9;
  if (map == Colormap::diverging) {
    stops = diverging;
    n = 5;
  } else if (map == Colormap::grey) {
    stops = grey;
    n = 2;
  }
  const double s = t * (n - 1);
  const int k = std::min(n - 2, int(s));
  const double f = s - k;
  Rgba c;
  c.r = std::uint8_t(std::lround(stops[k][0] + f * (stops[k + 1][0] - stops[k][0])));
  c.g = std::uint8_t(std::lround(stops[k][1] + f * (stops[k + 1][1] - stops[k][1])));
  c.b = std::uint8_t(std::lround(stops[k][2] + f * (stops[k + 1][2] - stops[k][2])));
  return c;
}

/// How a heatmap is coloured. vmin/vmax: the values at the two ends of the colour map (NaN: the
/// smallest and largest finite value drawn; with Scale::log, the smallest positive value, but at
/// most 6 decades below the largest, so a density's far tails do not wash out its modes).
struct HeatmapStyle {
  HeatmapStyle() = default;
  explicit HeatmapStyle(Colormap map, Scale s = Scale::linear) : colormap(map), scale(s) {}

  Colormap colormap = Colormap::viridis;
  Scale scale = Scale::linear;
  double vmin = std::numeric_limits<double>::quiet_NaN();
  double vmax = std::numeric_limits<double>::quiet_NaN();
  bool colorbar = false;  ///< draw a colour bar right of the panel
  std::string label;      ///< colour bar label (drawn along the bar)
};

/// A rectangle in data coordinates.
struct Extent {
  double x0, x1, y0, y1;
};

namespace detail {

// --- the font ----------------------------------------------------------------------------------------

/// 5 x 9 glyphs for ASCII 32..126, drawn for scorekit: one byte per row, top row first, bit 4 the
/// leftmost column. Rows 0-6 hold capitals and digits, rows 2-6 the lower-case x-height, rows 7-8
/// descenders. The advance is 6 columns.
constexpr std::uint8_t font_5x9[95][9] = {
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00},  // ' '
    {0x04, 0x04, 0x04, 0x04, 0x04, 0x00, 0x04, 0x00, 0x00},  // '!'
    {0x0A, 0x0A, 0x0A, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00},  // '"'
    {0x0A, 0x0A, 0x1F, 0x0A, 0x1F, 0x0A, 0x0A, 0x00, 0x00},  // '#'
    {0x04, 0x0F, 0x14, 0x0E, 0x05, 0x1E, 0x04, 0x00, 0x00},  // '$'
    {0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03, 0x00, 0x00},  // '%'
    {0x0C, 0x12, 0x14, 0x08, 0x15, 0x12, 0x0D, 0x00, 0x00},  // '&'
    {0x04, 0x04, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00},  // "'"
    {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02, 0x00, 0x00},  // '('
    {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08, 0x00, 0x00},  // ')'
    {0x00, 0x04, 0x15, 0x0E, 0x15, 0x04, 0x00, 0x00, 0x00},  // '*'
    {0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00, 0x00, 0x00},  // '+'
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C, 0x04, 0x08},  // ','
    {0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00, 0x00, 0x00},  // '-'
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C, 0x00, 0x00},  // '.'
    {0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00, 0x00, 0x00},  // '/'
    {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E, 0x00, 0x00},  // '0'
    {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E, 0x00, 0x00},  // '1'
    {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F, 0x00, 0x00},  // '2'
    {0x0E, 0x11, 0x01, 0x06, 0x01, 0x11, 0x0E, 0x00, 0x00},  // '3'
    {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02, 0x00, 0x00},  // '4'
    {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E, 0x00, 0x00},  // '5'
    {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E, 0x00, 0x00},  // '6'
    {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08, 0x00, 0x00},  // '7'
    {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E, 0x00, 0x00},  // '8'
    {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C, 0x00, 0x00},  // '9'
    {0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00, 0x00, 0x00},  // ':'
    {0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x04, 0x08, 0x00},  // ';'
    {0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02, 0x00, 0x00},  // '<'
    {0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00, 0x00, 0x00},  // '='
    {0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08, 0x00, 0x00},  // '>'
    {0x0E, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04, 0x00, 0x00},  // '?'
    {0x0E, 0x11, 0x17, 0x15, 0x17, 0x10, 0x0E, 0x00, 0x00},  // '@'
    {0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11, 0x00, 0x00},  // 'A'
    {0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E, 0x00, 0x00},  // 'B'
    {0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E, 0x00, 0x00},  // 'C'
    {0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C, 0x00, 0x00},  // 'D'
    {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F, 0x00, 0x00},  // 'E'
    {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10, 0x00, 0x00},  // 'F'
    {0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F, 0x00, 0x00},  // 'G'
    {0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11, 0x00, 0x00},  // 'H'
    {0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E, 0x00, 0x00},  // 'I'
    {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C, 0x00, 0x00},  // 'J'
    {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11, 0x00, 0x00},  // 'K'
    {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F, 0x00, 0x00},  // 'L'
    {0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11, 0x00, 0x00},  // 'M'
    {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11, 0x00, 0x00},  // 'N'
    {0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E, 0x00, 0x00},  // 'O'
    {0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10, 0x00, 0x00},  // 'P'
    {0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D, 0x00, 0x00},  // 'Q'
    {0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11, 0x00, 0x00},  // 'R'
    {0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E, 0x00, 0x00},  // 'S'
    {0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x00, 0x00},  // 'T'
    {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E, 0x00, 0x00},  // 'U'
    {0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04, 0x00, 0x00},  // 'V'
    {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A, 0x00, 0x00},  // 'W'
    {0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11, 0x00, 0x00},  // 'X'
    {0x11, 0x11, 0x0A, 0x04, 0x04, 0x04, 0x04, 0x00, 0x00},  // 'Y'
    {0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F, 0x00, 0x00},  // 'Z'
    {0x0E, 0x08, 0x08, 0x08, 0x08, 0x08, 0x0E, 0x00, 0x00},  // '['
    {0x00, 0x10, 0x08, 0x04, 0x02, 0x01, 0x00, 0x00, 0x00},  // '\\'
    {0x0E, 0x02, 0x02, 0x02, 0x02, 0x02, 0x0E, 0x00, 0x00},  // ']'
    {0x04, 0x0A, 0x11, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00},  // '^'
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F, 0x00},  // '_'
    {0x08, 0x04, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00},  // '`'
    {0x00, 0x00, 0x0E, 0x01, 0x0F, 0x11, 0x0F, 0x00, 0x00},  // 'a'
    {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x1E, 0x00, 0x00},  // 'b'
    {0x00, 0x00, 0x0E, 0x10, 0x10, 0x11, 0x0E, 0x00, 0x00},  // 'c'
    {0x01, 0x01, 0x0D, 0x13, 0x11, 0x11, 0x0F, 0x00, 0x00},  // 'd'
    {0x00, 0x00, 0x0E, 0x11, 0x1F, 0x10, 0x0E, 0x00, 0x00},  // 'e'
    {0x06, 0x09, 0x08, 0x1C, 0x08, 0x08, 0x08, 0x00, 0x00},  // 'f'
    {0x00, 0x00, 0x0F, 0x11, 0x11, 0x11, 0x0F, 0x01, 0x0E},  // 'g'
    {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x11, 0x00, 0x00},  // 'h'
    {0x04, 0x00, 0x0C, 0x04, 0x04, 0x04, 0x0E, 0x00, 0x00},  // 'i'
    {0x02, 0x00, 0x06, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C},  // 'j'
    {0x10, 0x10, 0x12, 0x14, 0x18, 0x14, 0x12, 0x00, 0x00},  // 'k'
    {0x0C, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E, 0x00, 0x00},  // 'l'
    {0x00, 0x00, 0x1A, 0x15, 0x15, 0x15, 0x15, 0x00, 0x00},  // 'm'
    {0x00, 0x00, 0x16, 0x19, 0x11, 0x11, 0x11, 0x00, 0x00},  // 'n'
    {0x00, 0x00, 0x0E, 0x11, 0x11, 0x11, 0x0E, 0x00, 0x00},  // 'o'
    {0x00, 0x00, 0x1E, 0x11, 0x11, 0x11, 0x1E, 0x10, 0x10},  // 'p'
    {0x00, 0x00, 0x0F, 0x11, 0x11, 0x11, 0x0F, 0x01, 0x01},  // 'q'
    {0x00, 0x00, 0x16, 0x19, 0x10, 0x10, 0x10, 0x00, 0x00},  // 'r'
    {0x00, 0x00, 0x0F, 0x10, 0x0E, 0x01, 0x1E, 0x00, 0x00},  // 's'
    {0x08, 0x08, 0x1C, 0x08, 0x08, 0x09, 0x06, 0x00, 0x00},  // 't'
    {0x00, 0x00, 0x11, 0x11, 0x11, 0x13, 0x0D, 0x00, 0x00},  // 'u'
    {0x00, 0x00, 0x11, 0x11, 0x11, 0x0A, 0x04, 0x00, 0x00},  // 'v'
    {0x00, 0x00, 0x11, 0x11, 0x15, 0x15, 0x0A, 0x00, 0x00},  // 'w'
    {0x00, 0x00, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x00, 0x00},  // 'x'
    {0x00, 0x00, 0x11, 0x11, 0x11, 0x11, 0x0F, 0x01, 0x0E},  // 'y'
    {0x00, 0x00, 0x1F, 0x02, 0x04, 0x08, 0x1F, 0x00, 0x00},  // 'z'
    {0x03, 0x04, 0x04, 0x08, 0x04, 0x04, 0x03, 0x00, 0x00},  // '{'
    {0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x00, 0x00},  // '|'
    {0x18, 0x04, 0x04, 0x02, 0x04, 0x04, 0x18, 0x00, 0x00},  // '}'
    {0x00, 0x00, 0x08, 0x15, 0x02, 0x00, 0x00, 0x00, 0x00},  // '~'
};

constexpr int glyph_w = 5, glyph_h = 9, glyph_advance = 6, cap_height = 7;
constexpr int hires = 4;  // two EPX passes

/// One EPX 2x pass on a binary mask (w x h, row-major): each pixel becomes 2 x 2, and a corner takes
/// the colour of the two neighbours it touches when they agree and the other two do not, which
/// rounds off staircases.
inline std::vector<std::uint8_t> epx(const std::vector<std::uint8_t>& m, int w, int h) {
  std::vector<std::uint8_t> out(std::size_t(4 * w * h), 0);
  auto at = [&](int x, int y) -> std::uint8_t {
    return (x < 0 || y < 0 || x >= w || y >= h) ? 0 : m[std::size_t(y * w + x)];
  };
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      const std::uint8_t p = at(x, y), a = at(x, y - 1), b = at(x + 1, y), c = at(x - 1, y), d = at(x, y + 1);
      std::uint8_t q1 = p, q2 = p, q3 = p, q4 = p;
      if (c == a && c != d && a != b) q1 = a;
      if (a == b && a != c && b != d) q2 = b;
      if (d == c && d != b && c != a) q3 = c;
      if (b == d && b != a && d != c) q4 = d;
      const std::size_t o = std::size_t(2 * y) * std::size_t(2 * w) + std::size_t(2 * x);
      out[o] = q1;
      out[o + 1] = q2;
      out[o + std::size_t(2 * w)] = q3;
      out[o + std::size_t(2 * w) + 1] = q4;
    }
  return out;
}

/// The smoothed glyph masks, (glyph_w * 4) x (glyph_h * 4) each, built once.
inline const std::vector<std::vector<std::uint8_t>>& glyph_masks() {
  static const std::vector<std::vector<std::uint8_t>> masks = [] {
    std::vector<std::vector<std::uint8_t>> all(95);
    for (int g = 0; g < 95; ++g) {
      std::vector<std::uint8_t> m(glyph_w * glyph_h);
      for (int y = 0; y < glyph_h; ++y)
        for (int x = 0; x < glyph_w; ++x) m[std::size_t(y * glyph_w + x)] = (font_5x9[g][y] >> (4 - x)) & 1;
      all[std::size_t(g)] = epx(epx(m, glyph_w, glyph_h), 2 * glyph_w, 2 * glyph_h);
    }
    return all;
  }();
  return masks;
}

/// Coverage in [0, 1] of a line of text whose capitals are `size` pixels tall; w x h pixels.
struct TextMask {
  int w = 0, h = 0;
  std::vector<float> a;
};

inline double text_width(const std::string& s, double size) {
  return s.empty() ? 0.0 : (double(s.size()) * glyph_advance - 1) * size / cap_height;
}
inline double text_height(double size) { return glyph_h * size / cap_height; }

inline TextMask render_text(const std::string& s, double size) {
  TextMask t;
  const double scale = size / cap_height;  // output pixels per font pixel
  t.w = std::max(1, int(std::ceil(text_width(s, size))));
  t.h = std::max(1, int(std::ceil(text_height(size))));
  t.a.assign(std::size_t(t.w) * std::size_t(t.h), 0.0f);
  const auto& masks = glyph_masks();
  constexpr int ss = 3;  // 3 x 3 samples per output pixel
  const int mw = glyph_w * hires, mh = glyph_h * hires, adv = glyph_advance * hires;
  for (int oy = 0; oy < t.h; ++oy)
    for (int ox = 0; ox < t.w; ++ox) {
      int hits = 0;
      for (int sy = 0; sy < ss; ++sy)
        for (int sx = 0; sx < ss; ++sx) {
          const int u = int(std::floor((ox + (sx + 0.5) / ss) / scale * hires));
          const int v = int(std::floor((oy + (sy + 0.5) / ss) / scale * hires));
          if (u < 0 || v < 0 || v >= mh) continue;
          const std::size_t k = std::size_t(u / adv);
          const int col = u % adv;
          if (k >= s.size() || col >= mw) continue;
          int ch = static_cast<unsigned char>(s[k]);
          if (ch < 32 || ch > 126) ch = '?';
          hits += masks[std::size_t(ch - 32)][std::size_t(v * mw + col)];
        }
      t.a[std::size_t(oy * t.w + ox)] = float(hits) / (ss * ss);
    }
  return t;
}

// --- the canvas --------------------------------------------------------------------------------------

struct Rect {
  int x0, y0, x1, y1;  // half-open: [x0, x1) x [y0, y1)
};

class Canvas {
 public:
  Canvas(int w, int h) : m_w(w), m_h(h), m_rgb(std::size_t(w) * std::size_t(h) * 3, 255.0f) {}
  int width() const { return m_w; }
  int height() const { return m_h; }
  Rect bounds() const { return {0, 0, m_w, m_h}; }

  /// Composites colour c with coverage `cov` in [0, 1] over pixel (x, y), if it lies inside `clip`.
  void blend(int x, int y, Rgba c, double cov, const Rect& clip) {
    if (x < clip.x0 || y < clip.y0 || x >= clip.x1 || y >= clip.y1 || x < 0 || y < 0 || x >= m_w || y >= m_h)
      return;
    const float a = float(std::min(1.0, std::max(0.0, cov)) * c.a / 255.0);
    if (a <= 0.0f) return;
    float* p = &m_rgb[(std::size_t(y) * std::size_t(m_w) + std::size_t(x)) * 3];
    p[0] += a * (c.r - p[0]);
    p[1] += a * (c.g - p[1]);
    p[2] += a * (c.b - p[2]);
  }
  void fill(const Rect& r, Rgba c) {
    for (int y = std::max(0, r.y0); y < std::min(m_h, r.y1); ++y)
      for (int x = std::max(0, r.x0); x < std::min(m_w, r.x1); ++x) blend(x, y, c, 1.0, r);
  }

  /// Draws text with its anchor at (x, y): halign -1/0/+1 = the anchor is the left end / centre /
  /// right end, valign -1/0/+1 = the top / middle of the capitals / bottom of the box. Vertical
  /// text reads bottom to top (rotated 90 degrees counter-clockwise) and aligns the same way in its
  /// own frame.
  void text(const std::string& s, double x, double y, double size, Rgba c, int halign, int valign,
            bool vertical = false) {
    if (s.empty()) return;
    const TextMask t = render_text(s, size);
    const double cap = size;  // capitals occupy the top `size` pixels of the box
    const double along = halign < 0 ? 0.0 : halign == 0 ? -0.5 * t.w : -double(t.w);
    const double across = valign < 0 ? 0.0 : valign == 0 ? -0.5 * cap : -double(t.h);
    if (!vertical) {
      const int x0 = int(std::lround(x + along)), y0 = int(std::lround(y + across));
      for (int ty = 0; ty < t.h; ++ty)
        for (int tx = 0; tx < t.w; ++tx)
          blend(x0 + tx, y0 + ty, c, t.a[std::size_t(ty * t.w + tx)], bounds());
    } else {
      // Rotated: text x runs up the screen, text y runs right.
      const int left = int(std::lround(x + across)), bottom = int(std::lround(y - along));
      for (int ty = 0; ty < t.h; ++ty)
        for (int tx = 0; tx < t.w; ++tx)
          blend(left + ty, bottom - 1 - tx, c, t.a[std::size_t(ty * t.w + tx)], bounds());
    }
  }

  /// Quantises to 8-bit RGB.
  Image image() const {
    Image img;
    img.width = m_w;
    img.height = m_h;
    img.channels = 3;
    img.pixels.resize(m_rgb.size());
    for (std::size_t i = 0; i < m_rgb.size(); ++i)
      img.pixels[i] = std::uint8_t(std::lround(std::min(255.0f, std::max(0.0f, m_rgb[i]))));
    return img;
  }

 private:
  int m_w, m_h;
  std::vector<float> m_rgb;
};

// --- ticks -------------------------------------------------------------------------------------------

/// "Nice" tick positions in [lo, hi]: multiples of 1, 2 or 5 times a power of ten (Heckbert, "Nice
/// numbers for graph labels", Graphics Gems, 1990). Of the candidate steps near range / target, the one
/// whose tick count is closest to `target` wins, with at least 3 ticks when any step gives that (a
/// fixed rounding rule can leave a short axis with a single tick); ties go to the larger step.
inline std::vector<double> nice_ticks(double lo, double hi, int target, double* step_out = nullptr) {
  std::vector<double> best;
  const double range = hi - lo;
  if (!(range > 0) || !std::isfinite(range)) return best;
  target = std::max(2, target);
  const double eps = 1e-9 * range;
  auto ticks_for = [&](double step) {
    std::vector<double> t;
    for (double k = std::ceil((lo - eps) / step); k * step <= hi + eps; k += 1.0) {
      double v = k * step;
      if (std::fabs(v) < 1e-12 * step) v = 0.0;
      t.push_back(v);
    }
    return t;
  };
  const double mag = std::pow(10.0, std::floor(std::log10(range / target)));
  double best_step = 0, best_score = std::numeric_limits<double>::infinity();
  for (double m : {mag / 10, mag, mag * 10})
    for (double f : {1.0, 2.0, 5.0}) {
      const double step = f * m;
      const std::vector<double> t = ticks_for(step);
      const double score = std::fabs(double(t.size()) - target) + (t.size() < 3 ? 100.0 : 0.0);
      if (score < best_score || (score == best_score && step > best_step)) {
        best_score = score;
        best_step = step;
        best = t;
      }
    }
  if (step_out) *step_out = best_step;
  return best;
}

/// A tick label with as many decimals as the step needs; scientific notation for very large or very
/// small numbers.
inline std::string tick_label(double v, double step) {
  char buf[64];
  const double big = std::max(std::fabs(v), step);
  if (big >= 1e5 || step < 1e-4) {
    std::snprintf(buf, sizeof(buf), "%.3g", v);
  } else {
    const int decimals = std::max(0, int(-std::floor(std::log10(step) + 1e-9)));
    std::snprintf(buf, sizeof(buf), "%.*f", decimals, v);
  }
  std::string s = buf;
  if (s.find_first_not_of("-0.") == std::string::npos && s[0] == '-') s.erase(0, 1);  // no "-0"
  return s;
}

/// Ticks for a log10 colour scale over [lo, hi] (exponents): the integer exponents, thinned to at
/// most `target`, labelled 1e<k>.
inline std::vector<std::pair<double, std::string>> log_ticks(double lo, double hi, int target) {
  std::vector<std::pair<double, std::string>> out;
  const double klo = std::ceil(lo - 1e-9), khi = std::floor(hi + 1e-9);
  const int every = std::max(1, int(std::ceil((khi - klo + 1) / std::max(1, target))));
  for (double k = klo; k <= khi; k += every) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "1e%d", int(k));
    out.emplace_back(k, buf);
  }
  return out;
}

}  // namespace detail

class Figure;

/// One subplot. Obtained from Figure::panel(row, col); every setter returns the panel, so calls chain.
/// Layers are drawn in the order they are added (heatmaps first, as a rule).
class Panel {
 public:
  /// The data range along x (lo < hi, finite).
  Panel& xlim(double lo, double hi) {
    check_range(lo, hi, "xlim");
    m_xlim = {lo, hi};
    m_has_xlim = true;
    return *this;
  }
  /// The data range along y (lo < hi, finite).
  Panel& ylim(double lo, double hi) {
    check_range(lo, hi, "ylim");
    m_ylim = {lo, hi};
    m_has_ylim = true;
    return *this;
  }
  Panel& title(std::string t) {
    m_title = std::move(t);
    return *this;
  }
  Panel& xlabel(std::string t) {
    m_xlabel = std::move(t);
    return *this;
  }
  Panel& ylabel(std::string t) {
    m_ylabel = std::move(t);
    return *this;
  }
  /// Light grid lines at the ticks (on by default).
  Panel& grid(bool on) {
    m_grid = on;
    return *this;
  }
  /// The frame, ticks and tick labels (on by default; off for image grids).
  Panel& axes(bool on) {
    m_axes = on;
    return *this;
  }
  /// A legend of the labelled scatter and line layers, in the upper right corner (on by default; it
  /// only appears when some layer has a label).
  Panel& legend(bool on) {
    m_legend = on;
    return *this;
  }

  /// A heatmap of nx x ny cells covering the panel's data range: values[j * nx + i] colours the cell
  /// i-th from the left and j-th from the bottom (NaN cells stay transparent).
  Panel& heatmap(std::vector<double> values, int nx, int ny, const HeatmapStyle& style = {}) {
    const char* where = "scorekit_examples::Panel::heatmap";
    if (nx <= 0 || ny <= 0)
      throw invalid_argument(
          scorekit::detail::concat(where, ": nx and ny must be positive, got ", nx, " x ", ny));
    require_dimension(std::int64_t(values.size()), std::int64_t(nx) * ny, "values (nx * ny)", where);
    check_style(style, where);
    Layer l;
    l.kind = Layer::grid_values;
    l.x = std::move(values);
    l.nx = nx;
    l.ny = ny;
    l.style = style;
    m_layers.push_back(std::move(l));
    return *this;
  }

  /// A heatmap of f(x, y) evaluated at the centre of every pixel of the panel (for a density, a log-
  /// density, or anything smooth): the panel's data range must be set (xlim and ylim), or come from
  /// other layers.
  Panel& heatmap(std::function<double(double, double)> f, const HeatmapStyle& style = {}) {
    const char* where = "scorekit_examples::Panel::heatmap";
    if (!f) throw invalid_argument(std::string(where) + ": the function is empty");
    check_style(style, where);
    Layer l;
    l.kind = Layer::function;
    l.f = std::move(f);
    l.style = style;
    m_layers.push_back(std::move(l));
    return *this;
  }

  /// Dots of `radius` pixels at (xs[i], ys[i]); non-finite points are skipped. Use an alpha below
  /// 255 for thousands of overlapping points. `label` names them in the legend.
  Panel& scatter(std::vector<double> xs, std::vector<double> ys, Rgba color = colors::crimson,
                 double radius = 2.0, std::string label = "") {
    const char* where = "scorekit_examples::Panel::scatter";
    require_dimension(std::int64_t(ys.size()), std::int64_t(xs.size()), "ys (one per x)", where);
    require_positive(radius, "radius", where);
    Layer l;
    l.kind = Layer::scatter;
    l.x = std::move(xs);
    l.y = std::move(ys);
    l.color = color;
    l.size = radius;
    l.label = std::move(label);
    m_layers.push_back(std::move(l));
    return *this;
  }

  /// A polyline through (xs[i], ys[i]), `width` pixels wide; a non-finite point breaks it. Where the
  /// line crosses itself the colour is applied once, so a translucent trajectory stays even.
  Panel& line(std::vector<double> xs, std::vector<double> ys, Rgba color = colors::orange, double width = 1.5,
              std::string label = "") {
    const char* where = "scorekit_examples::Panel::line";
    require_dimension(std::int64_t(ys.size()), std::int64_t(xs.size()), "ys (one per x)", where);
    require_positive(width, "width", where);
    Layer l;
    l.kind = Layer::line;
    l.x = std::move(xs);
    l.y = std::move(ys);
    l.color = color;
    l.size = width;
    l.label = std::move(label);
    m_layers.push_back(std::move(l));
    return *this;
  }

 private:
  friend class Figure;

  struct Layer {
    enum Kind { grid_values, function, scatter, line } kind = scatter;
    std::vector<double> x, y;  // grid_values: the values in x
    int nx = 0, ny = 0;
    std::function<double(double, double)> f;
    HeatmapStyle style;
    Rgba color;
    double size = 1.0;
    std::string label;

    /// A heatmap's values on the pixels of the plot area (colour-scale units: log10 for a log scale)
    /// and its colour range, kept for the range and size they were computed for, so that a function is
    /// evaluated once however often the figure is measured or rendered.
    struct Evaluated {
      std::vector<double> v;
      double lo = 0, hi = 1;
      std::pair<double, double> xr, yr;
      int pw = 0, ph = 0;
    };
    mutable std::shared_ptr<const Evaluated> evaluated;
  };

  static void check_range(double lo, double hi, const char* what) {
    if (!(lo < hi) || !std::isfinite(lo) || !std::isfinite(hi))
      throw invalid_argument(scorekit::detail::concat("scorekit_examples::Panel::", what,
                                                      ": need finite lo < hi, got [", lo, ", ", hi, "]"));
  }
  static void check_style(const HeatmapStyle& s, const char* where) {
    if (!std::isnan(s.vmin) && !std::isnan(s.vmax) && !(s.vmin < s.vmax))
      throw invalid_argument(
          scorekit::detail::concat(where, ": vmin must be below vmax, got ", s.vmin, " and ", s.vmax));
    if (s.scale == Scale::log &&
        ((!std::isnan(s.vmin) && !(s.vmin > 0)) || (!std::isnan(s.vmax) && !(s.vmax > 0))))
      throw invalid_argument(std::string(where) + ": a log colour scale needs vmin and vmax > 0");
  }

  /// The data range: explicit, else from the scatter and line data (plus 5 %), else [0, 1].
  std::pair<double, double> range(bool along_x) const {
    if (along_x && m_has_xlim) return m_xlim;
    if (!along_x && m_has_ylim) return m_ylim;
    double lo = std::numeric_limits<double>::infinity(), hi = -lo;
    for (const Layer& l : m_layers) {
      if (l.kind != Layer::scatter && l.kind != Layer::line) continue;
      for (std::size_t i = 0; i < l.x.size(); ++i) {
        const double v = along_x ? l.x[i] : l.y[i];
        if (!std::isfinite(l.x[i]) || !std::isfinite(l.y[i])) continue;
        lo = std::min(lo, v);
        hi = std::max(hi, v);
      }
    }
    if (!(lo <= hi)) return {0.0, 1.0};
    if (hi - lo < 1e-12 * std::max(1.0, std::fabs(lo))) {
      const double pad = std::max(0.5, 0.1 * std::fabs(lo));
      return {lo - pad, hi + pad};
    }
    const double pad = 0.05 * (hi - lo);
    return {lo - pad, hi + pad};
  }

  /// The first heatmap with a colour bar, if any.
  const Layer* colorbar_layer() const {
    for (const Layer& l : m_layers)
      if ((l.kind == Layer::grid_values || l.kind == Layer::function) && l.style.colorbar) return &l;
    return nullptr;
  }
  bool has_legend() const {
    if (!m_legend) return false;
    for (const Layer& l : m_layers)
      if (!l.label.empty()) return true;
    return false;
  }

  std::pair<double, double> m_xlim{0.0, 1.0}, m_ylim{0.0, 1.0};
  bool m_has_xlim = false, m_has_ylim = false;
  bool m_grid = true, m_axes = true, m_legend = true;
  std::string m_title, m_xlabel, m_ylabel;
  std::vector<Layer> m_layers;
};

/// A figure: a grid of rows x cols panels of equal size, with an optional title on top. The image size
/// follows from the panel size plus the room that titles, labels, ticks and colour bars need. Heatmap
/// values are cached between calls, so a Figure (even through const members) must not be used from
/// two threads at once.
///
///   scorekit_examples::Figure fig(1, 2, 400);
///   fig.title("annealed Langevin, two-mode mixture");
///   fig.panel(0, 0).xlim(-4, 4).ylim(-4, 4).heatmap(density).scatter(xs, ys, with_alpha(colors::white,
///   0.5)); fig.save("samples.png");
class Figure {
 public:
  /// Square panels of panel_px pixels.
  Figure(int rows, int cols, int panel_px = 300) : Figure(rows, cols, panel_px, panel_px) {}
  Figure(int rows, int cols, int panel_width, int panel_height)
      : m_rows(rows), m_cols(cols), m_pw(panel_width), m_ph(panel_height) {
    const char* where = "scorekit_examples::Figure";
    if (rows <= 0 || cols <= 0 || rows > 64 || cols > 64)
      throw invalid_argument(
          scorekit::detail::concat(where, ": rows and cols must be in 1..64, got ", rows, " x ", cols));
    if (panel_width < 32 || panel_height < 32 || panel_width > 8192 || panel_height > 8192)
      throw invalid_argument(scorekit::detail::concat(where, ": panels must be 32..8192 pixels, got ",
                                                      panel_width, " x ", panel_height));
    m_panels.resize(std::size_t(rows * cols));
  }

  Panel& panel(int row, int col) {
    check_panel(row, col);
    return m_panels[std::size_t(row * m_cols + col)];
  }
  const Panel& panel(int row, int col) const {
    check_panel(row, col);
    return m_panels[std::size_t(row * m_cols + col)];
  }
  Figure& title(std::string t) {
    m_title = std::move(t);
    return *this;
  }

  int rows() const { return m_rows; }
  int cols() const { return m_cols; }
  int width() const { return layout().width; }
  int height() const { return layout().height; }

  /// Where data point (x, y) of a panel falls in the image, in pixels (x to the right, y down; pixel
  /// (i, j) covers [i, i + 1) x [j, j + 1)).
  std::pair<double, double> to_pixel(int row, int col, double x, double y) const {
    check_panel(row, col);
    const Layout lay = layout();
    const Box& b = lay.boxes[std::size_t(row * m_cols + col)];
    return {b.x0 + (x - b.xr.first) / (b.xr.second - b.xr.first) * m_pw,
            b.y0 + (b.yr.second - y) / (b.yr.second - b.yr.first) * m_ph};
  }

  /// Renders the figure into an 8-bit RGB image.
  Image render() const {
    const Layout lay = layout();
    detail::Canvas canvas(lay.width, lay.height);
    if (!m_title.empty()) canvas.text(m_title, lay.width / 2.0, pad, figure_title_size, text_colour, 0, -1);
    for (std::size_t p = 0; p < m_panels.size(); ++p) draw_panel(canvas, m_panels[p], lay.boxes[p]);
    return canvas.image();
  }

  /// Renders and writes the figure as a PNG, atomically (see write_png).
  void save(const std::string& path) const { write_png(path, render()); }

 private:
  // Sizes in pixels: text sizes are heights of capitals.
  static constexpr double tick_size = 10.0, label_size = 11.0, title_size = 12.0, figure_title_size = 15.0;
  static constexpr int pad = 12, tick_len = 5, tick_gap = 4, colorbar_gap = 12, colorbar_w = 14;
  static constexpr Rgba text_colour{34, 34, 34, 255}, frame_colour{60, 60, 60, 255},
      grid_colour{228, 228, 228, 255};

  struct Ticks {
    std::vector<double> at;
    std::vector<std::string> text;
  };
  struct Box {
    int x0 = 0, y0 = 0;  // top-left pixel of the plot area
    std::pair<double, double> xr, yr;
    Ticks xt, yt, ct;           // x, y and colour-bar ticks (colour-bar ticks in colour-scale units)
    double cmin = 0, cmax = 1;  // colour-bar range (log10 units for a log scale)
  };
  struct Layout {
    int width = 0, height = 0;
    std::vector<Box> boxes;
  };

  void check_panel(int row, int col) const {
    if (row < 0 || col < 0 || row >= m_rows || col >= m_cols)
      throw invalid_argument(scorekit::detail::concat("scorekit_examples::Figure::panel: (", row, ", ", col,
                                                      ") is outside the ", m_rows, " x ", m_cols, " grid"));
  }

  static Ticks make_ticks(std::pair<double, double> r, int pixels) {
    Ticks t;
    double step = 1.0;
    t.at = detail::nice_ticks(r.first, r.second, std::max(3, std::min(9, pixels / 75)), &step);
    for (double v : t.at) t.text.push_back(detail::tick_label(v, step));
    return t;
  }

  using Resolved = Panel::Layer::Evaluated;

  /// A heatmap layer's values on the panel's pixels and its colour range (cached in the layer).
  const Resolved& resolve(const Panel::Layer& l, const Box& b) const {
    if (l.evaluated && l.evaluated->xr == b.xr && l.evaluated->yr == b.yr && l.evaluated->pw == m_pw &&
        l.evaluated->ph == m_ph)
      return *l.evaluated;
    auto cache = std::make_shared<Resolved>();
    Resolved& r = *cache;
    r.xr = b.xr;
    r.yr = b.yr;
    r.pw = m_pw;
    r.ph = m_ph;
    r.v.assign(std::size_t(m_pw) * std::size_t(m_ph), std::numeric_limits<double>::quiet_NaN());
    const double dx = (b.xr.second - b.xr.first) / m_pw, dy = (b.yr.second - b.yr.first) / m_ph;
    for (int j = 0; j < m_ph; ++j)
      for (int i = 0; i < m_pw; ++i) {
        const double x = b.xr.first + (i + 0.5) * dx, y = b.yr.second - (j + 0.5) * dy;
        double v;
        if (l.kind == Panel::Layer::function) {
          v = l.f(x, y);
        } else {
          const int ci = std::min(l.nx - 1, int((i + 0.5) / m_pw * l.nx));
          const int cj = std::min(l.ny - 1, int((m_ph - j - 0.5) / m_ph * l.ny));
          v = l.x[std::size_t(cj) * std::size_t(l.nx) + std::size_t(ci)];
        }
        if (l.style.scale == Scale::log)
          v = std::isnan(v) ? v : v > 0 ? std::log10(v) : -std::numeric_limits<double>::infinity();
        r.v[std::size_t(j) * std::size_t(m_pw) + std::size_t(i)] = v;
      }
    double lo = std::numeric_limits<double>::infinity(), hi = -lo;
    for (double v : r.v)
      if (std::isfinite(v)) {
        lo = std::min(lo, v);
        hi = std::max(hi, v);
      }
    const bool log = l.style.scale == Scale::log;
    if (log && hi > -std::numeric_limits<double>::infinity()) lo = std::max(lo, hi - 6.0);
    if (!std::isnan(l.style.vmin)) lo = log ? std::log10(l.style.vmin) : l.style.vmin;
    if (!std::isnan(l.style.vmax)) hi = log ? std::log10(l.style.vmax) : l.style.vmax;
    if (!(lo <= hi)) lo = 0, hi = 1;     // nothing finite drawn
    if (lo == hi) lo -= 0.5, hi += 0.5;  // a constant field: the middle colour
    r.lo = lo;
    r.hi = hi;
    l.evaluated = std::move(cache);
    return *l.evaluated;
  }

  Layout layout() const {
    Layout lay;
    lay.boxes.resize(m_panels.size());
    std::vector<int> left(std::size_t(m_cols), 0), right(std::size_t(m_cols), 0);
    std::vector<int> top(std::size_t(m_rows), 0), bottom(std::size_t(m_rows), 0);
    const int tick_text_h = int(std::ceil(detail::text_height(tick_size)));
    for (int r = 0; r < m_rows; ++r)
      for (int c = 0; c < m_cols; ++c) {
        const Panel& p = m_panels[std::size_t(r * m_cols + c)];
        Box& b = lay.boxes[std::size_t(r * m_cols + c)];
        b.xr = p.range(true);
        b.yr = p.range(false);
        b.xt = make_ticks(b.xr, m_pw);
        b.yt = make_ticks(b.yr, m_ph);
        int l = 4, rt = 16, t = 6, bt = 6;
        if (p.m_axes) {
          double yw = 0, last_x = 0;
          for (const auto& s : b.yt.text) yw = std::max(yw, detail::text_width(s, tick_size));
          if (!b.xt.text.empty()) last_x = detail::text_width(b.xt.text.back(), tick_size) / 2;
          l = tick_len + tick_gap + int(std::ceil(yw)) + 4;
          rt = std::max(rt, int(std::ceil(last_x)) + 4);
          bt = tick_len + tick_gap + tick_text_h + 12;
        }
        if (!p.m_ylabel.empty()) l += int(std::ceil(detail::text_height(label_size))) + 8;
        if (!p.m_xlabel.empty()) bt += int(std::ceil(detail::text_height(label_size))) + 6;
        if (!p.m_title.empty()) t += int(std::ceil(detail::text_height(title_size))) + 6;
        if (const Panel::Layer* cl = p.colorbar_layer()) {
          const Resolved& res = resolve(*cl, b);
          b.cmin = res.lo;
          b.cmax = res.hi;
          if (cl->style.scale == Scale::log) {
            for (const auto& kt : detail::log_ticks(res.lo, res.hi, std::max(2, m_ph / 60))) {
              b.ct.at.push_back(kt.first);
              b.ct.text.push_back(kt.second);
            }
          } else {
            b.ct = make_ticks({res.lo, res.hi}, m_ph);
          }
          double cw = 0;
          for (const auto& s : b.ct.text) cw = std::max(cw, detail::text_width(s, tick_size));
          rt = colorbar_gap + colorbar_w + tick_len + tick_gap + int(std::ceil(cw)) + 8;
          if (!cl->style.label.empty()) rt += int(std::ceil(detail::text_height(label_size))) + 6;
        }
        left[std::size_t(c)] = std::max(left[std::size_t(c)], l);
        right[std::size_t(c)] = std::max(right[std::size_t(c)], rt);
        top[std::size_t(r)] = std::max(top[std::size_t(r)], t);
        bottom[std::size_t(r)] = std::max(bottom[std::size_t(r)], bt);
      }
    int y = pad;
    if (!m_title.empty()) y += int(std::ceil(detail::text_height(figure_title_size))) + 14;
    for (int r = 0; r < m_rows; ++r) {
      y += top[std::size_t(r)];
      int x = pad;
      for (int c = 0; c < m_cols; ++c) {
        x += left[std::size_t(c)];
        lay.boxes[std::size_t(r * m_cols + c)].x0 = x;
        lay.boxes[std::size_t(r * m_cols + c)].y0 = y;
        x += m_pw + right[std::size_t(c)];
      }
      lay.width = x + pad;
      y += m_ph + bottom[std::size_t(r)];
    }
    lay.height = y + pad - 6;
    return lay;
  }

  void draw_panel(detail::Canvas& cv, const Panel& p, const Box& b) const {
    const detail::Rect area{b.x0, b.y0, b.x0 + m_pw, b.y0 + m_ph};
    auto px = [&](double x) { return b.x0 + (x - b.xr.first) / (b.xr.second - b.xr.first) * m_pw; };
    auto py = [&](double y) { return b.y0 + (b.yr.second - y) / (b.yr.second - b.yr.first) * m_ph; };

    if (p.m_grid && p.m_axes) {
      for (double v : b.xt.at) {
        const int x = std::min(area.x1 - 1, int(std::floor(px(v))));
        for (int y = area.y0; y < area.y1; ++y) cv.blend(x, y, grid_colour, 1.0, area);
      }
      for (double v : b.yt.at) {
        const int y = std::min(area.y1 - 1, int(std::floor(py(v))));
        for (int x = area.x0; x < area.x1; ++x) cv.blend(x, y, grid_colour, 1.0, area);
      }
    }

    for (const Panel::Layer& l : p.m_layers) {
      if (l.kind == Panel::Layer::grid_values || l.kind == Panel::Layer::function) {
        const Resolved& r = resolve(l, b);
        for (int j = 0; j < m_ph; ++j)
          for (int i = 0; i < m_pw; ++i) {
            const double v = r.v[std::size_t(j) * std::size_t(m_pw) + std::size_t(i)];
            if (std::isnan(v)) continue;
            cv.blend(area.x0 + i, area.y0 + j, colormap(l.style.colormap, (v - r.lo) / (r.hi - r.lo)), 1.0,
                     area);
          }
      } else if (l.kind == Panel::Layer::scatter) {
        for (std::size_t k = 0; k < l.x.size(); ++k) {
          if (!std::isfinite(l.x[k]) || !std::isfinite(l.y[k])) continue;
          draw_dot(cv, px(l.x[k]), py(l.y[k]), l.size, l.color, area);
        }
      } else {
        std::vector<float> cover(std::size_t(m_pw) * std::size_t(m_ph), 0.0f);
        for (std::size_t k = 0; k + 1 < l.x.size(); ++k) {
          if (!std::isfinite(l.x[k]) || !std::isfinite(l.y[k]) || !std::isfinite(l.x[k + 1]) ||
              !std::isfinite(l.y[k + 1]))
            continue;
          segment_cover(cover, px(l.x[k]) - b.x0, py(l.y[k]) - b.y0, px(l.x[k + 1]) - b.x0,
                        py(l.y[k + 1]) - b.y0, l.size);
        }
        if (l.x.size() == 1 && std::isfinite(l.x[0]) && std::isfinite(l.y[0]))
          segment_cover(cover, px(l.x[0]) - b.x0, py(l.y[0]) - b.y0, px(l.x[0]) - b.x0, py(l.y[0]) - b.y0,
                        l.size);
        for (int j = 0; j < m_ph; ++j)
          for (int i = 0; i < m_pw; ++i) {
            const float c = cover[std::size_t(j) * std::size_t(m_pw) + std::size_t(i)];
            if (c > 0) cv.blend(area.x0 + i, area.y0 + j, l.color, c, area);
          }
      }
    }

    if (p.has_legend()) draw_legend(cv, p, area);

    const detail::Rect all = cv.bounds();
    if (p.m_axes) {
      // The frame lies just outside the plot area, so data pixels are never covered.
      for (int x = area.x0 - 1; x <= area.x1; ++x) {
        cv.blend(x, area.y0 - 1, frame_colour, 1.0, all);
        cv.blend(x, area.y1, frame_colour, 1.0, all);
      }
      for (int y = area.y0 - 1; y <= area.y1; ++y) {
        cv.blend(area.x0 - 1, y, frame_colour, 1.0, all);
        cv.blend(area.x1, y, frame_colour, 1.0, all);
      }
      for (std::size_t k = 0; k < b.xt.at.size(); ++k) {
        const int x = std::min(area.x1 - 1, int(std::floor(px(b.xt.at[k]))));
        for (int t = 1; t <= tick_len; ++t) cv.blend(x, area.y1 + t, frame_colour, 1.0, all);
        cv.text(b.xt.text[k], x + 0.5, area.y1 + tick_len + tick_gap, tick_size, text_colour, 0, -1);
      }
      for (std::size_t k = 0; k < b.yt.at.size(); ++k) {
        const int y = std::min(area.y1 - 1, int(std::floor(py(b.yt.at[k]))));
        for (int t = 1; t <= tick_len; ++t) cv.blend(area.x0 - 1 - t, y, frame_colour, 1.0, all);
        cv.text(b.yt.text[k], area.x0 - 1 - tick_len - tick_gap, y + 0.5, tick_size, text_colour, 1, 0);
      }
    }
    const int tick_text_h = int(std::ceil(detail::text_height(tick_size)));
    if (!p.m_title.empty())
      cv.text(p.m_title, (area.x0 + area.x1) / 2.0, area.y0 - 8, title_size, text_colour, 0, 1);
    if (!p.m_xlabel.empty()) {
      const double y = area.y1 + (p.m_axes ? tick_len + tick_gap + tick_text_h + 4 : 6);
      cv.text(p.m_xlabel, (area.x0 + area.x1) / 2.0, y, label_size, text_colour, 0, -1);
    }
    if (!p.m_ylabel.empty()) {
      double yw = 0;
      if (p.m_axes)
        for (const auto& s : b.yt.text) yw = std::max(yw, detail::text_width(s, tick_size));
      const double x = area.x0 - (p.m_axes ? tick_len + tick_gap + yw + 8 : 6);
      cv.text(p.m_ylabel, x, (area.y0 + area.y1) / 2.0, label_size, text_colour, 0, 1, true);
    }
    if (const Panel::Layer* cl = p.colorbar_layer()) draw_colorbar(cv, *cl, b, area);
  }

  static void draw_dot(detail::Canvas& cv, double cx, double cy, double r, Rgba c, const detail::Rect& clip) {
    const int x0 = int(std::floor(cx - r - 1)), x1 = int(std::ceil(cx + r + 1));
    const int y0 = int(std::floor(cy - r - 1)), y1 = int(std::ceil(cy + r + 1));
    for (int y = y0; y <= y1; ++y)
      for (int x = x0; x <= x1; ++x) {
        const double d = std::hypot(x + 0.5 - cx, y + 0.5 - cy);
        const double cov = r + 0.5 - d;  // the fraction of the pixel inside the disc, to first order
        if (cov > 0) cv.blend(x, y, c, std::min(1.0, cov), clip);
      }
  }

  /// Max-accumulates the coverage of a round-capped segment of the given width (plot-area pixels).
  void segment_cover(std::vector<float>& cover, double ax, double ay, double bx, double by,
                     double width) const {
    const double h = 0.5 * width;
    const int x0 = std::max(0, int(std::floor(std::min(ax, bx) - h - 1)));
    const int x1 = std::min(m_pw - 1, int(std::ceil(std::max(ax, bx) + h + 1)));
    const int y0 = std::max(0, int(std::floor(std::min(ay, by) - h - 1)));
    const int y1 = std::min(m_ph - 1, int(std::ceil(std::max(ay, by) + h + 1)));
    const double dx = bx - ax, dy = by - ay, len2 = dx * dx + dy * dy;
    for (int y = y0; y <= y1; ++y)
      for (int x = x0; x <= x1; ++x) {
        const double qx = x + 0.5 - ax, qy = y + 0.5 - ay;
        const double t = len2 > 0 ? std::min(1.0, std::max(0.0, (qx * dx + qy * dy) / len2)) : 0.0;
        const double d = std::hypot(qx - t * dx, qy - t * dy);
        const double c = std::min(1.0, h + 0.5 - d);
        float& slot = cover[std::size_t(y) * std::size_t(m_pw) + std::size_t(x)];
        if (c > slot) slot = float(c);
      }
  }

  void draw_legend(detail::Canvas& cv, const Panel& p, const detail::Rect& area) const {
    std::vector<const Panel::Layer*> items;
    double tw = 0;
    for (const Panel::Layer& l : p.m_layers)
      if (!l.label.empty()) {
        items.push_back(&l);
        tw = std::max(tw, detail::text_width(l.label, tick_size));
      }
    const int row_h = int(std::ceil(detail::text_height(tick_size))) + 4, key_w = 18;
    const int w = int(std::ceil(tw)) + key_w + 20, h = int(items.size()) * row_h + 10;
    const detail::Rect box{area.x1 - 8 - w, area.y0 + 8, area.x1 - 8, area.y0 + 8 + h};
    for (int y = box.y0; y < box.y1; ++y)
      for (int x = box.x0; x < box.x1; ++x) cv.blend(x, y, colors::white, 0.85, area);
    for (int x = box.x0; x < box.x1; ++x) {
      cv.blend(x, box.y0, Rgba{190, 190, 190, 255}, 1.0, area);
      cv.blend(x, box.y1 - 1, Rgba{190, 190, 190, 255}, 1.0, area);
    }
    for (int y = box.y0; y < box.y1; ++y) {
      cv.blend(box.x0, y, Rgba{190, 190, 190, 255}, 1.0, area);
      cv.blend(box.x1 - 1, y, Rgba{190, 190, 190, 255}, 1.0, area);
    }
    for (std::size_t k = 0; k < items.size(); ++k) {
      const double cy = box.y0 + 5 + (k + 0.5) * row_h;
      const double kx = box.x0 + 8;
      Rgba key = items[k]->color;
      key.a = 255;  // a faint, translucent scatter colour still reads in the key
      if (items[k]->kind == Panel::Layer::scatter) {
        // A grey rim keeps a light key (white dots, say) visible on the light legend box.
        const double r = std::max(2.5, items[k]->size);
        draw_dot(cv, kx + key_w / 2.0, cy, r + 1.0, Rgba{110, 110, 110, 255}, area);
        draw_dot(cv, kx + key_w / 2.0, cy, r, key, area);
      } else {
        const double hw = 0.5 * std::max(1.5, items[k]->size);
        for (int y = int(std::floor(cy - hw - 1)); y <= int(std::ceil(cy + hw + 1)); ++y)
          for (int x = int(kx); x < int(kx) + key_w; ++x)
            cv.blend(x, y, key, std::min(1.0, hw + 0.5 - std::fabs(y + 0.5 - cy)), area);
      }
      cv.text(items[k]->label, kx + key_w + 6, cy, tick_size, text_colour, -1, 0);
    }
  }

  void draw_colorbar(detail::Canvas& cv, const Panel::Layer& l, const Box& b,
                     const detail::Rect& area) const {
    const detail::Rect all = cv.bounds();
    const int x0 = area.x1 + colorbar_gap, x1 = x0 + colorbar_w;
    for (int y = area.y0; y < area.y1; ++y) {
      const double t = (area.y1 - 0.5 - y) / m_ph;
      const Rgba c = colormap(l.style.colormap, t);
      for (int x = x0; x < x1; ++x) cv.blend(x, y, c, 1.0, all);
    }
    for (int x = x0 - 1; x <= x1; ++x) {
      cv.blend(x, area.y0 - 1, frame_colour, 1.0, all);
      cv.blend(x, area.y1, frame_colour, 1.0, all);
    }
    for (int y = area.y0 - 1; y <= area.y1; ++y) {
      cv.blend(x0 - 1, y, frame_colour, 1.0, all);
      cv.blend(x1, y, frame_colour, 1.0, all);
    }
    double tw = 0;
    for (std::size_t k = 0; k < b.ct.at.size(); ++k) {
      const double t = (b.ct.at[k] - b.cmin) / (b.cmax - b.cmin);
      if (t < -1e-9 || t > 1 + 1e-9) continue;
      const int y = std::min(area.y1 - 1, int(std::floor(area.y1 - t * m_ph)));
      for (int d = 1; d <= tick_len; ++d) cv.blend(x1 + d, y, frame_colour, 1.0, all);
      cv.text(b.ct.text[k], x1 + tick_len + tick_gap + 1, y + 0.5, tick_size, text_colour, -1, 0);
      tw = std::max(tw, detail::text_width(b.ct.text[k], tick_size));
    }
    if (!l.style.label.empty())
      cv.text(l.style.label, x1 + tick_len + tick_gap + tw + 8, (area.y0 + area.y1) / 2.0, label_size,
              text_colour, 0, -1, true);
  }

  int m_rows, m_cols, m_pw, m_ph;
  std::vector<Panel> m_panels;
  std::string m_title;
};

}  // namespace scorekit_examples
