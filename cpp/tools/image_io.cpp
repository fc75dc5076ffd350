// Image files for the example program (image_io.hpp).
#include "image_io.hpp"

#include <png.h>
#include <zlib.h>

#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

namespace asfyolo_tools {
namespace {

constexpr int64_t kMaxPixels = int64_t(1) << 30;

// ---------------------------------------------------------------------------------------------------- TIFF
struct Tiff {
  const std::string& b;
  bool le = true;
  bool ok = true;
  uint32_t u16(size_t at) {
    if (at + 2 > b.size()) { ok = false; return 0; }
    auto p = reinterpret_cast<const uint8_t*>(b.data()) + at;
    return le ? p[0] | (p[1] << 8) : (p[0] << 8) | p[1];
  }
  uint32_t u32(size_t at) {
    if (at + 4 > b.size()) { ok = false; return 0; }
    auto p = reinterpret_cast<const uint8_t*>(b.data()) + at;
    return le ? p[0] | (p[1] << 8) | (p[2] << 16) | (uint32_t(p[3]) << 24)
              : (uint32_t(p[0]) << 24) | (p[1] << 16) | (p[2] << 8) | p[3];
  }
  // The values of an IFD entry (SHORT or LONG), at most `cap` of them.
  std::vector<uint32_t> values(size_t entry, size_t cap = 1 << 20) {
    uint32_t type = u16(entry + 2), count = u32(entry + 4);
    size_t size = type == 3 ? 2 : 4;
    if ((type != 3 && type != 4) || count > cap) { ok = false; return {}; }
    size_t at = count * size <= 4 ? entry + 8 : u32(entry + 8);
    std::vector<uint32_t> v(count);
    for (uint32_t i = 0; i < count; ++i) v[i] = type == 3 ? u16(at + 2 * i) : u32(at + 4 * i);
    return v;
  }
};

bool lzw_decode(const uint8_t* in, size_t n, std::vector<uint8_t>* out, size_t limit) {
  std::vector<std::vector<uint8_t>> table;
  auto reset = [&] {
    table.assign(258, {});
    for (int i = 0; i < 256; ++i) table[i] = {static_cast<uint8_t>(i)};
  };
  reset();
  int width = 9;
  uint64_t acc = 0;
  int bits = 0;
  size_t pos = 0;
  int prev = -1;
  while (true) {
    while (bits < width) {
      if (pos >= n) return true;
      acc = (acc << 8) | in[pos++];
      bits += 8;
    }
    int code = static_cast<int>((acc >> (bits - width)) & ((1u << width) - 1));
    bits -= width;
    if (code == 257) return true;
    if (code == 256) {
      reset();
      width = 9;
      prev = -1;
      continue;
    }
    std::vector<uint8_t> entry;
    if (code < static_cast<int>(table.size())) {
      entry = table[code];
      if (prev >= 0) {
        std::vector<uint8_t> add = table[prev];
        add.push_back(entry[0]);
        table.push_back(std::move(add));
      }
    } else if (code == static_cast<int>(table.size()) && prev >= 0) {
      entry = table[prev];
      entry.push_back(entry[0]);
      table.push_back(entry);
    } else {
      return false;
    }
    out->insert(out->end(), entry.begin(), entry.end());
    if (out->size() > limit) return false;
    prev = code;
    // TIFF's early change: the width grows one code before the table fills
    if (table.size() + 1 >= (1u << width) && width < 12) ++width;
  }
}

bool read_tiff(const std::string& path, const std::string& b, Raster* out, std::string* err) {
  Tiff t{b};
  t.le = b[0] == 'I';
  if (t.u16(2) != 42) {
    *err = path + ": not a classic TIFF (BigTIFF is not read by this example)";
    return false;
  }
  size_t ifd = t.u32(4);
  uint32_t n = t.u16(ifd);
  std::map<uint32_t, size_t> tags;
  for (uint32_t i = 0; i < n && t.ok; ++i) tags[t.u16(ifd + 2 + 12 * i)] = ifd + 2 + 12 * i;
  auto one = [&](uint32_t tag, uint32_t def) {
    if (!tags.count(tag)) return def;
    auto v = t.values(tags[tag], 16);
    return v.empty() ? def : v[0];
  };
  if (!t.ok || !tags.count(256) || !tags.count(257) || !tags.count(273)) {
    if (tags.count(322)) *err = path + ": a tiled TIFF; this example reads stripped TIFFs (save it with strips)";
    else *err = path + ": corrupt TIFF header";
    return false;
  }
  const int64_t w = one(256, 0), h = one(257, 0);
  const int spp = static_cast<int>(one(277, 1)), bits = static_cast<int>(one(258, 8));
  const uint32_t comp = one(259, 1), pred = one(317, 1), planar = one(284, 1), fmt = one(339, 1);
  const int64_t rps = std::min<int64_t>(one(278, static_cast<uint32_t>(h)), h);
  if (w < 1 || h < 1 || w * h > kMaxPixels || (bits != 8 && bits != 16) || spp < 1 || spp > 4 || fmt != 1 ||
      planar != 1 || (comp != 1 && comp != 5 && comp != 8 && comp != 32946) || rps < 1) {
    *err = path + ": unsupported TIFF (" + std::to_string(w) + "x" + std::to_string(h) + ", " + std::to_string(bits) +
           "-bit, " + std::to_string(spp) + " samples, compression " + std::to_string(comp) +
           "); expected 8/16-bit unsigned grey or RGB, uncompressed, LZW or deflate";
    return false;
  }
  auto offs = t.values(tags[273]), counts = tags.count(279) ? t.values(tags[279]) : std::vector<uint32_t>();
  const size_t row = static_cast<size_t>(w) * spp * bits / 8;
  const size_t strips = static_cast<size_t>((h + rps - 1) / rps);
  if (!t.ok || offs.size() < strips || counts.size() < strips) {
    *err = path + ": corrupt strip table";
    return false;
  }
  std::vector<uint8_t> raw;
  raw.reserve(row * h);
  for (size_t s = 0; s < strips; ++s) {
    size_t at = offs[s], len = counts[s];
    if (at > b.size() || len > b.size() - at) {
      *err = path + ": strip " + std::to_string(s) + " lies past the end of the file (truncated?)";
      return false;
    }
    const uint8_t* p = reinterpret_cast<const uint8_t*>(b.data()) + at;
    size_t want = row * static_cast<size_t>(std::min<int64_t>(rps, h - static_cast<int64_t>(s) * rps));
    std::vector<uint8_t> dec;
    if (comp == 1) {
      dec.assign(p, p + std::min(len, want));
    } else if (comp == 5) {
      if (!lzw_decode(p, len, &dec, want + 4096)) { *err = path + ": corrupt LZW strip"; return false; }
    } else {
      dec.resize(want);
      uLongf got = static_cast<uLongf>(want);
      if (uncompress(dec.data(), &got, p, static_cast<uLong>(len)) != Z_OK) { *err = path + ": corrupt deflate strip"; return false; }
      dec.resize(got);
    }
    if (dec.size() < want) { *err = path + ": strip " + std::to_string(s) + " is short"; return false; }
    raw.insert(raw.end(), dec.begin(), dec.begin() + static_cast<long>(want));
  }
  if (bits == 16 && !t.le)
    for (size_t i = 0; i + 1 < raw.size(); i += 2) std::swap(raw[i], raw[i + 1]);
  if (pred == 2) {  // horizontal differencing, per sample
    for (int64_t y = 0; y < h; ++y) {
      uint8_t* r = raw.data() + y * row;
      for (int64_t i = spp; i < w * spp; ++i) {
        if (bits == 8) {
          r[i] = static_cast<uint8_t>(r[i] + r[i - spp]);
        } else {
          uint16_t a, c;
          std::memcpy(&a, r + 2 * i, 2);
          std::memcpy(&c, r + 2 * (i - spp), 2);
          a = static_cast<uint16_t>(a + c);
          std::memcpy(r + 2 * i, &a, 2);
        }
      }
    }
  }
  out->width = static_cast<int>(w);
  out->height = static_cast<int>(h);
  out->bits = bits;
  out->channels = spp >= 3 ? 3 : 1;
  const int bpp = bits / 8;
  out->data.resize(static_cast<size_t>(w) * h * out->channels * bpp);
  for (int64_t i = 0; i < w * h; ++i)  // keep grey or RGB, drop alpha / extra samples
    std::memcpy(&out->data[i * out->channels * bpp], &raw[i * spp * bpp], static_cast<size_t>(out->channels) * bpp);
  return true;
}

// ----------------------------------------------------------------------------------------------------- PNG
struct PngRead {
  const std::string* b;
  size_t pos;
};

void png_read_cb(png_structp p, png_bytep dst, png_size_t n) {
  auto* r = static_cast<PngRead*>(png_get_io_ptr(p));
  if (r->pos + n > r->b->size()) png_error(p, "truncated file");
  std::memcpy(dst, r->b->data() + r->pos, n);
  r->pos += n;
}

void png_error_cb(png_structp p, png_const_charp msg) {
  *static_cast<std::string*>(png_get_error_ptr(p)) = msg;
  png_longjmp(p, 1);
}

void png_warning_cb(png_structp, png_const_charp) {}

bool read_png(const std::string& path, const std::string& b, Raster* out, std::string* err) {
  std::string why;
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &why, png_error_cb, png_warning_cb);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (!info) { *err = path + ": out of memory"; png_destroy_read_struct(&png, nullptr, nullptr); return false; }
  PngRead src{&b, 0};
  std::vector<png_bytep> rows;
  if (setjmp(png_jmpbuf(png))) {
    *err = path + ": corrupt or truncated PNG (" + why + ")";
    png_destroy_read_struct(&png, &info, nullptr);
    return false;
  }
  png_set_read_fn(png, &src, png_read_cb);
  png_set_user_limits(png, 1 << 16, 1 << 16);
  png_read_info(png, info);
  png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
  int depth = png_get_bit_depth(png, info), color = png_get_color_type(png, info);
  if (int64_t(w) * h > kMaxPixels) png_error(png, "too many pixels");
  if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (color & PNG_COLOR_MASK_ALPHA) png_set_strip_alpha(png);
  png_set_strip_alpha(png);
  if (depth == 16) png_set_swap(png);  // host (little-endian) order
  png_read_update_info(png, info);
  out->width = static_cast<int>(w);
  out->height = static_cast<int>(h);
  out->bits = png_get_bit_depth(png, info);
  out->channels = png_get_channels(png, info);
  size_t rowbytes = png_get_rowbytes(png, info);
  out->data.resize(rowbytes * h);
  rows.resize(h);
  for (png_uint_32 y = 0; y < h; ++y) rows[y] = out->data.data() + y * rowbytes;
  png_read_image(png, rows.data());
  png_destroy_read_struct(&png, &info, nullptr);
  return out->channels == 1 || out->channels == 3;
}

void put16(std::string* s, uint16_t v) { s->append(reinterpret_cast<const char*>(&v), 2); }
void put32(std::string* s, uint32_t v) { s->append(reinterpret_cast<const char*>(&v), 4); }

}  // namespace

bool read_image(const std::string& path, Raster* out, std::string* err) {
  std::ifstream f(path, std::ios::binary);
  if (!f) { *err = path + ": cannot open"; return false; }
  std::ostringstream ss;
  ss << f.rdbuf();
  std::string b = ss.str();
  if (b.size() >= 8 && std::memcmp(b.data(), "\x89PNG", 4) == 0) return read_png(path, b, out, err);
  if (b.size() >= 8 && (b.compare(0, 2, "II") == 0 || b.compare(0, 2, "MM") == 0)) return read_tiff(path, b, out, err);
  *err = path + ": not a TIFF or PNG file";
  return false;
}

bool write_label_tiff(const std::string& path, const uint32_t* labels, int width, int height, bool wide,
                      std::string* err) {
  const int bps = wide ? 32 : 16;
  const size_t bytes = static_cast<size_t>(width) * height * bps / 8;
  std::string out = "II";
  put16(&out, 42);
  put32(&out, 8);
  const uint16_t n = 10;
  put16(&out, n);
  const uint32_t data_at = 8 + 2 + 12 * n + 4;
  auto tag = [&](uint16_t t, uint16_t type, uint32_t v) {
    put16(&out, t);
    put16(&out, type);
    put32(&out, 1);
    if (type == 3) { put16(&out, static_cast<uint16_t>(v)); put16(&out, 0); } else { put32(&out, v); }
  };
  tag(256, 4, static_cast<uint32_t>(width));
  tag(257, 4, static_cast<uint32_t>(height));
  tag(258, 3, bps);
  tag(259, 3, 1);                    // no compression
  tag(262, 3, 1);                    // min-is-black
  tag(273, 4, data_at);              // one strip
  tag(277, 3, 1);
  tag(278, 4, static_cast<uint32_t>(height));
  tag(279, 4, static_cast<uint32_t>(bytes));
  tag(339, 3, 1);                    // unsigned integers
  put32(&out, 0);
  out.reserve(out.size() + bytes);
  for (size_t i = 0; i < static_cast<size_t>(width) * height; ++i) {
    if (wide) put32(&out, labels[i]); else put16(&out, static_cast<uint16_t>(labels[i]));
  }
  std::string tmp = path + ".part";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) { *err = path + ": cannot write"; return false; }
  bool ok = std::fwrite(out.data(), 1, out.size(), f) == out.size();
  ok = std::fclose(f) == 0 && ok;
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    *err = path + ": write failed (disk full?)";
    return false;
  }
  return true;
}

}  // namespace asfyolo_tools
