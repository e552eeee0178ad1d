// The examples' figures (examples/support/plot.hpp, not part of the installed library): colour maps,
// where a figure draws its data, the PNG it saves, and argument checks. Host code, run once.
// scorekit-requires: SCOREKIT_HAVE_PNG
#include <catch2/catch.hpp>

#include "support.hpp"
#include "support/plot.hpp"

#include <scorekit/io/png.hpp>

#include <array>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;
using scorekit::io::Image;
using scorekit_test::TempDir;

std::array<int, 3> pixel(const Image& img, int x, int y) {
  const std::size_t o =
      (std::size_t(y) * std::size_t(img.width) + std::size_t(x)) * std::size_t(img.channels);
  return {img.pixels[o], img.pixels[o + 1], img.pixels[o + 2]};
}
std::array<int, 3> rgb(scorekit_examples::Rgba c) { return {c.r, c.g, c.b}; }

}  // namespace

TEST_CASE("colour maps have their end points and are monotone in lightness", "[plot]") {
  using scorekit_examples::Colormap;
  using scorekit_examples::colormap;
  CHECK(rgb(colormap(Colormap::viridis, 0.0)) == std::array<int, 3>{68, 1, 84});
  CHECK(rgb(colormap(Colormap::viridis, 1.0)) == std::array<int, 3>{253, 231, 37});
  CHECK(rgb(colormap(Colormap::viridis, -3.0)) == rgb(colormap(Colormap::viridis, 0.0)));  // clamped
  CHECK(rgb(colormap(Colormap::grey, 0.0)) == std::array<int, 3>{0, 0, 0});
  CHECK(rgb(colormap(Colormap::grey, 1.0)) == std::array<int, 3>{255, 255, 255});
  CHECK(colormap(Colormap::viridis, std::nan("")).a == 0);
  // viridis is sequential: its luma (Rec. 601 weights) increases with t.
  auto luma = [](scorekit_examples::Rgba c) { return 0.299 * c.r + 0.587 * c.g + 0.114 * c.b; };
  for (int k = 0; k < 100; ++k)
    CHECK(luma(colormap(Colormap::viridis, (k + 1) / 100.0)) > luma(colormap(Colormap::viridis, k / 100.0)));
  // The diverging map is lightest in the middle.
  CHECK(luma(colormap(Colormap::diverging, 0.5)) > luma(colormap(Colormap::diverging, 0.4)));
  CHECK(luma(colormap(Colormap::diverging, 0.5)) > luma(colormap(Colormap::diverging, 0.6)));
}

TEST_CASE("a figure draws data where the axes say, and its PNG reads back exactly", "[plot]") {
  using namespace scorekit_examples;
  TempDir dir("plot");
  Figure fig(1, 2, 120);
  fig.title("annealed Langevin, mixture");
  // Panel 0: a heatmap of f = x (linear in x), a red dot at the origin, a blue line at y = 0.5.
  fig.panel(0, 0)
      .xlim(-1, 1)
      .ylim(-1, 1)
      .title("x")
      .heatmap([](double x, double) { return x; })
      .scatter({0.0}, {0.0}, colors::red, 3.0)
      .line({-1.0, 1.0}, {0.5, 0.5}, Rgba{0, 0, 255, 255}, 3.0);
  // Panel 1: a 2 x 2 grid heatmap; cell (i, j) at the i-th column from the left, j-th row from the bottom.
  fig.panel(0, 1).xlim(0, 2).ylim(0, 2).heatmap({1.0, 2.0, 3.0, 4.0}, 2, 2, HeatmapStyle(Colormap::grey));
  const Image img = fig.render();
  CHECK(img.width == fig.width());
  CHECK(img.height == fig.height());

  auto at = [&](int col, double x, double y) {
    const auto p = fig.to_pixel(0, col, x, y);
    return pixel(img, int(std::floor(p.first)), int(std::floor(p.second)));
  };
  CHECK(at(0, 0.0, 0.0) == rgb(colors::red));
  CHECK(at(0, 0.4, 0.5) == std::array<int, 3>{0, 0, 255});
  // The heatmap's colour range is the range of f over the pixel centres: the leftmost column has the
  // lowest colour, the rightmost the highest, and away from the dot and line f increases with x.
  CHECK(at(0, -0.999, -0.5) == rgb(colormap(Colormap::viridis, 0.0)));
  CHECK(at(0, 0.999, -0.5) == rgb(colormap(Colormap::viridis, 1.0)));
  CHECK(at(0, -0.5, -0.5)[1] < at(0, 0.5, -0.5)[1]);  // viridis' green channel increases
  // Grid heatmap: values 1..4 over [1, 4] on the grey map: 1 black, 4 white, 2 and 3 in between.
  CHECK(at(1, 0.5, 0.5) == std::array<int, 3>{0, 0, 0});
  CHECK(at(1, 1.5, 1.5) == std::array<int, 3>{255, 255, 255});
  CHECK(at(1, 1.5, 0.5) == rgb(colormap(Colormap::grey, 1.0 / 3.0)));
  CHECK(at(1, 0.5, 1.5) == rgb(colormap(Colormap::grey, 2.0 / 3.0)));
  // The titles put dark pixels into the band above the panels; the corners stay white.
  int dark = 0;
  for (int y = 0; y < int(fig.to_pixel(0, 0, 0, 1).second) - 2; ++y)
    for (int x = 0; x < img.width; ++x) dark += pixel(img, x, y)[0] < 100;
  CHECK(dark > 100);
  CHECK(pixel(img, 0, 0) == std::array<int, 3>{255, 255, 255});
  CHECK(pixel(img, img.width - 1, img.height - 1) == std::array<int, 3>{255, 255, 255});

  fig.save(dir.file("fig.png"));
  const Image back = scorekit::io::read_png_rgb(dir.file("fig.png"));
  CHECK(back.width == img.width);
  CHECK(back.height == img.height);
  CHECK(back.pixels == img.pixels);
}

TEST_CASE("a full-size figure with a density, 2000 dots and a line compresses to a few hundred KB",
          "[plot]") {
  using namespace scorekit_examples;
  TempDir dir("size");
  std::mt19937 gen(11);
  std::normal_distribution<double> normal;
  std::vector<double> xs, ys;
  for (int i = 0; i < 2000; ++i) {
    xs.push_back((i % 2 ? 1.5 : -1.5) + 0.6 * normal(gen));
    ys.push_back((i % 2 ? 1.0 : -1.0) + 0.6 * normal(gen));
  }
  auto density = [](double x, double y) {
    return std::exp(-((x - 1.5) * (x - 1.5) + (y - 1) * (y - 1)) / 0.72) +
           std::exp(-((x + 1.5) * (x + 1.5) + (y + 1) * (y + 1)) / 0.72);
  };
  HeatmapStyle style;
  style.colorbar = true;
  Figure fig(1, 1, 780, 620);
  fig.title("two-mode mixture");
  fig.panel(0, 0)
      .xlim(-4, 4)
      .ylim(-4, 4)
      .heatmap(density, style)
      .scatter(xs, ys, with_alpha(colors::white, 0.5), 1.6);
  fig.panel(0, 0).line({-3, -1, 0, 2}, {3, 1, 2, -1}, colors::orange, 2.0);
  fig.save(dir.file("big.png"));
  const auto size = fs::file_size(dir.file("big.png"));
  INFO("figure " << fig.width() << " x " << fig.height() << ", " << size << " bytes");
  CHECK(fig.width() >= 900);
  CHECK(fig.height() >= 700);
  CHECK(size < 400u * 1024u);
  CHECK(scorekit::io::read_png_rgb(dir.file("big.png")).pixels == fig.render().pixels);
}

TEST_CASE("a function heatmap is evaluated once per pixel however often the figure is used", "[plot]") {
  using namespace scorekit_examples;
  long calls = 0;
  HeatmapStyle style;
  style.colorbar = true;  // the colour bar's ticks need the values already for the layout
  Figure fig(1, 1, 50, 40);
  fig.panel(0, 0).xlim(0, 1).ylim(0, 1).heatmap(
      [&calls](double x, double y) {
        ++calls;
        return x + y;
      },
      style);
  (void)fig.width();
  (void)fig.to_pixel(0, 0, 0.5, 0.5);
  const Image first = fig.render();
  fig.save(TempDir("cache").file("f.png"));
  CHECK(calls == 50 * 40);
  // A new data range invalidates the cached values.
  fig.panel(0, 0).xlim(0, 2);
  const Image second = fig.render();
  CHECK(calls == 2 * 50 * 40);
  CHECK(first.pixels != second.pixels);
}

TEST_CASE("plot arguments are checked", "[plot]") {
  using namespace scorekit_examples;
  Figure fig(2, 2, 64);
  CHECK_THROWS_AS(fig.panel(2, 0), scorekit::invalid_argument);
  CHECK_THROWS_AS(fig.panel(0, 0).xlim(1, 0), scorekit::invalid_argument);
  CHECK_THROWS_AS(fig.panel(0, 0).ylim(0, std::nan("")), scorekit::invalid_argument);
  CHECK_THROWS_AS(fig.panel(0, 0).scatter({1, 2}, {1}), scorekit::dimension_mismatch);
  CHECK_THROWS_AS(fig.panel(0, 0).line({1, 2}, {1, 2}, colors::red, 0.0), scorekit::invalid_argument);
  CHECK_THROWS_AS(fig.panel(0, 0).heatmap(std::vector<double>(5), 2, 3), scorekit::dimension_mismatch);
  HeatmapStyle log_style;
  log_style.scale = Scale::log;
  log_style.vmin = -1;
  CHECK_THROWS_AS(fig.panel(0, 0).heatmap([](double, double) { return 1.0; }, log_style),
                  scorekit::invalid_argument);
  CHECK_THROWS_AS(Figure(0, 1), scorekit::invalid_argument);
  // Empty panels and an all-NaN heatmap still render.
  fig.panel(1, 1).heatmap([](double, double) { return std::nan(""); });
  CHECK(fig.render().pixels.size() == std::size_t(fig.width()) * std::size_t(fig.height()) * 3);
}
