// PNG images without a PNG or zlib library: a writer (8-bit grey, RGB or RGBA) and a reader for
// non-interlaced 8-bit grey/RGB/RGBA files, enough to read back what the writer produces and what most
// tools write. Everything here is host code and depends only on the standard library.
//
// The format (W3C, "Portable Network Graphics (PNG) Specification", 2nd ed., 2003): an 8-byte
// signature, then chunks (length, type, data, CRC-32 of type and data); IHDR first, image data in IDAT
// chunks as one zlib stream (RFC 1950) of DEFLATE data (RFC 1951), IEND last. Each scanline is prefixed
// by a filter byte; the writer picks, per row, the filter (None, Sub, Up, Average, Paeth) with the least
// sum of absolute signed residuals (PNG spec., sec. 12.8, the usual heuristic).
//
// The compressor is LZ77 with hash chains (3-byte hashes, a bounded chain, one step of lazy matching)
// followed by, per block, whichever of stored / fixed Huffman / dynamic Huffman codes is smallest.
// Dynamic codes matter for plots: filtered smooth colour gradients are mostly small residuals that
// a fixed code spends 8 bits on. Files are written atomically (temporary file, then rename).
#pragma once

#include <scorekit/core/error.hpp>
#include <scorekit/core/file.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <queue>
#include <string>
#include <utility>
#include <vector>

namespace scorekit {
namespace io {

namespace detail {

// --- checksums -----------------------------------------------------------------------------------

// CRC-32, atomic files and whole-file reads live in core/file.hpp; the names are kept here too.
using scorekit::detail::AtomicFile;
using scorekit::detail::crc32;
using scorekit::detail::errno_text;
using scorekit::detail::process_id;
using scorekit::detail::read_file;

/// Adler-32 (RFC 1950, sec. 8.2); start from 1. The modulo is taken every 5552 bytes, the most that
/// cannot overflow 32 bits.
inline std::uint32_t adler32(const std::uint8_t* data, std::size_t n, std::uint32_t adler = 1) {
  constexpr std::uint32_t mod = 65521u;
  std::uint32_t a = adler & 0xFFFFu, b = adler >> 16;
  while (n > 0) {
    const std::size_t chunk = std::min<std::size_t>(n, 5552);
    for (std::size_t i = 0; i < chunk; ++i) {
      a += data[i];
      b += a;
    }
    a %= mod;
    b %= mod;
    data += chunk;
    n -= chunk;
  }
  return (b << 16) | a;
}

// --- DEFLATE tables (RFC 1951, sec. 3.2.5) ----------------------------------------------------------

constexpr std::uint16_t length_base[29] = {3,  4,  5,  6,  7,  8,  9,  10, 11,  13,  15,  17,  19,  23, 27,
                                           31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
constexpr std::uint8_t length_extra[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2,
                                           2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
constexpr std::uint16_t dist_base[30] = {1,    2,    3,    4,    5,    7,    9,    13,    17,    25,
                                         33,   49,   65,   97,   129,  193,  257,  385,   513,   769,
                                         1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577};
constexpr std::uint8_t dist_extra[30] = {0, 0, 0, 0, 1, 1, 2, 2,  3,  3,  4,  4,  5,  5,  6,
                                         6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};
/// The order in which code-length code lengths are sent (RFC 1951, sec. 3.2.7).
constexpr std::uint8_t code_length_order[19] = {16, 17, 18, 0, 8,  7, 9,  6, 10, 5,
                                                11, 4,  12, 3, 13, 2, 14, 1, 15};

inline int length_code(int length) {  // 3..258 -> index into length_base
  int c = 0;
  while (c < 28 && length_base[c + 1] <= length) ++c;
  return c;
}
inline int dist_code(int dist) {  // 1..32768 -> 0..29
  int c = 0;
  while (c < 29 && dist_base[c + 1] <= dist) ++c;
  return c;
}

/// Code lengths of the fixed Huffman code (RFC 1951, sec. 3.2.6).
inline std::vector<std::uint8_t> fixed_litlen_lengths() {
  std::vector<std::uint8_t> l(288);
  for (int i = 0; i < 288; ++i) l[i] = i < 144 ? 8 : i < 256 ? 9 : i < 280 ? 7 : 8;
  return l;
}
inline std::vector<std::uint8_t> fixed_dist_lengths() { return std::vector<std::uint8_t>(30, 5); }

/// Canonical Huffman codes from code lengths (RFC 1951, sec. 3.2.2), bit-reversed because DEFLATE sends
/// Huffman codes most significant bit first into a least-significant-bit-first stream.
inline std::vector<std::uint16_t> canonical_codes(const std::vector<std::uint8_t>& lengths) {
  int count[16] = {0};
  for (std::uint8_t l : lengths) ++count[l];
  count[0] = 0;
  int next[16] = {0};
  int code = 0;
  for (int bits = 1; bits < 16; ++bits) {
    code = (code + count[bits - 1]) << 1;
    next[bits] = code;
  }
  std::vector<std::uint16_t> codes(lengths.size(), 0);
  for (std::size_t s = 0; s < lengths.size(); ++s) {
    const int len = lengths[s];
    if (len == 0) continue;
    int c = next[len]++, r = 0;
    for (int b = 0; b < len; ++b) {
      r = (r << 1) | (c & 1);
      c >>= 1;
    }
    codes[s] = std::uint16_t(r);
  }
  return codes;
}

/// Huffman code lengths for the given symbol frequencies, none longer than max_bits. A plain Huffman
/// tree is built; while it is too deep the frequencies are halved (keeping every used symbol at least
/// 1), which flattens the tree, and it is rebuilt. This is not the optimal length-limited code
/// (package-merge would be), but the limit is rarely hit and the loss then is a fraction of a percent.
/// Symbols with zero frequency get length 0; a lone used symbol gets length 1.
inline std::vector<std::uint8_t> huffman_lengths(std::vector<std::uint32_t> freq, int max_bits) {
  const std::size_t n = freq.size();
  std::vector<std::uint8_t> lengths(n, 0);
  for (;;) {
    using Node = std::pair<std::uint64_t, int>;  // (weight, node), ties broken by node id: deterministic
    std::priority_queue<Node, std::vector<Node>, std::greater<Node>> heap;
    std::vector<int> parent;
    for (std::size_t s = 0; s < n; ++s)
      if (freq[s] > 0) {
        heap.push({freq[s], int(parent.size())});
        parent.push_back(-1);
      }
    const int leaves = int(parent.size());
    if (leaves == 0) return lengths;
    if (leaves == 1) {
      for (std::size_t s = 0; s < n; ++s)
        if (freq[s] > 0) lengths[s] = 1;
      return lengths;
    }
    while (heap.size() > 1) {
      const Node a = heap.top();
      heap.pop();
      const Node b = heap.top();
      heap.pop();
      const int id = int(parent.size());
      parent.push_back(-1);
      parent[a.second] = id;
      parent[b.second] = id;
      heap.push({a.first + b.first, id});
    }
    // Internal nodes are created after their children, so depths resolve from the root downwards.
    std::vector<int> depth(parent.size(), 0);
    for (int i = int(parent.size()) - 2; i >= 0; --i) depth[i] = depth[parent[i]] + 1;
    int deepest = 0, leaf = 0;
    for (std::size_t s = 0; s < n; ++s)
      if (freq[s] > 0) {
        lengths[s] = std::uint8_t(depth[leaf]);
        deepest = std::max(deepest, depth[leaf]);
        ++leaf;
      }
    if (deepest <= max_bits) return lengths;
    for (auto& f : freq)
      if (f > 0) f = std::max<std::uint32_t>(1, f >> 1);
  }
}

/// Bits into bytes, least significant bit first (RFC 1951, sec. 3.1.1).
class BitWriter {
 public:
  explicit BitWriter(std::vector<std::uint8_t>& out) : m_out(out) {}
  void put(std::uint32_t bits, int count) {  // count <= 24
    m_buffer |= std::uint64_t(bits) << m_count;
    m_count += count;
    while (m_count >= 8) {
      m_out.push_back(std::uint8_t(m_buffer));
      m_buffer >>= 8;
      m_count -= 8;
    }
  }
  void align() {
    if (m_count > 0) put(0, 8 - m_count);
  }

 private:
  std::vector<std::uint8_t>& m_out;
  std::uint64_t m_buffer = 0;
  int m_count = 0;
};

/// One LZ77 output: a literal byte (dist == 0, value in len) or a match of len bytes dist back.
struct Token {
  std::uint16_t len;
  std::uint16_t dist;
};

/// Greedy LZ77 with one step of lazy evaluation (as zlib does): a match is deferred by one byte when
/// the next position starts a longer one. Candidates come from chains of positions with the same hash
/// of their next 3 bytes, at most max_chain of them, inside the 32 KiB window.
inline std::vector<Token> lz77(const std::uint8_t* data, std::size_t n, int max_chain = 48) {
  constexpr int window = 32768, hash_bits = 15, min_match = 3, max_match = 258;
  constexpr int lazy_limit = 32;  // a match at least this long is taken at once
  std::vector<Token> tokens;
  tokens.reserve(n / 4 + 16);
  std::vector<std::int32_t> head(std::size_t(1) << hash_bits, -1), prev(window, -1);
  auto hash = [&](std::size_t i) {
    return ((std::uint32_t(data[i]) << 10) ^ (std::uint32_t(data[i + 1]) << 5) ^ data[i + 2]) &
           ((1u << hash_bits) - 1);
  };
  auto insert = [&](std::size_t i) {
    if (i + 2 >= n) return;
    const std::uint32_t h = hash(i);
    prev[i & (window - 1)] = head[h];
    head[h] = std::int32_t(i);
  };
  auto find = [&](std::size_t i, int& best_dist) {
    int best = 0;
    if (i + 2 >= n) return best;
    const int limit = int(std::min<std::size_t>(max_match, n - i));
    std::int32_t cand = head[hash(i)];
    for (int chain = max_chain; cand >= 0 && chain > 0; --chain) {
      const std::size_t dist = i - std::size_t(cand);
      if (dist > std::size_t(window)) break;
      if (data[cand + best] == data[i + best]) {
        int len = 0;
        while (len < limit && data[cand + len] == data[i + len]) ++len;
        if (len > best) {
          best = len;
          best_dist = int(dist);
          if (len == limit) break;
        }
      }
      const std::int32_t next = prev[std::size_t(cand) & (window - 1)];
      if (next >= cand) break;  // overwritten slot: the chain left the window
      cand = next;
    }
    return best >= min_match ? best : 0;
  };
  std::size_t i = 0;
  while (i < n) {
    int dist = 0;
    const int len = find(i, dist);
    insert(i);
    if (len > 0 && len < lazy_limit && i + 1 < n) {
      int dist_next = 0;
      if (find(i + 1, dist_next) > len) {
        tokens.push_back({data[i], 0});
        ++i;
        continue;
      }
    }
    if (len > 0) {
      tokens.push_back({std::uint16_t(len), std::uint16_t(dist)});
      for (int k = 1; k < len; ++k) insert(i + std::size_t(k));
      i += std::size_t(len);
    } else {
      tokens.push_back({data[i], 0});
      ++i;
    }
  }
  return tokens;
}

/// Symbol and extra bits of one code length in the run-length code of sec. 3.2.7 (16: repeat the
/// previous length 3-6 times, 17: 3-10 zeros, 18: 11-138 zeros).
struct CodeLengthSymbol {
  std::uint8_t symbol, extra;
};

inline std::vector<CodeLengthSymbol> run_length_code(const std::vector<std::uint8_t>& lengths) {
  std::vector<CodeLengthSymbol> out;
  std::size_t i = 0;
  while (i < lengths.size()) {
    const std::uint8_t l = lengths[i];
    std::size_t run = 1;
    while (i + run < lengths.size() && lengths[i + run] == l) ++run;
    if (l == 0 && run >= 3) {
      std::size_t left = run;
      while (left >= 11) {
        const std::size_t r = std::min<std::size_t>(left, 138);
        out.push_back({18, std::uint8_t(r - 11)});
        left -= r;
      }
      if (left >= 3) {
        out.push_back({17, std::uint8_t(left - 3)});
        left = 0;
      }
      for (; left > 0; --left) out.push_back({0, 0});
    } else if (l != 0 && run >= 4) {
      out.push_back({l, 0});
      std::size_t left = run - 1;
      while (left >= 3) {
        const std::size_t r = std::min<std::size_t>(left, 6);
        out.push_back({16, std::uint8_t(r - 3)});
        left -= r;
      }
      for (; left > 0; --left) out.push_back({l, 0});
    } else {
      for (std::size_t k = 0; k < run; ++k) out.push_back({l, 0});
    }
    i += run;
  }
  return out;
}

/// Writes tokens [begin, end) (covering input bytes [byte_begin, byte_end)) as one or more DEFLATE
/// blocks, choosing the smallest of stored, fixed and dynamic Huffman codes.
inline void deflate_block(BitWriter& bw, const std::uint8_t* data, std::size_t byte_begin,
                          std::size_t byte_end, const Token* tokens, std::size_t count, bool last) {
  std::vector<std::uint32_t> lit_freq(286, 0), dist_freq(30, 0);
  std::uint64_t extra_bits = 0;
  for (std::size_t t = 0; t < count; ++t) {
    if (tokens[t].dist == 0) {
      ++lit_freq[tokens[t].len];
    } else {
      const int lc = length_code(tokens[t].len), dc = dist_code(tokens[t].dist);
      ++lit_freq[257 + lc];
      ++dist_freq[dc];
      extra_bits += length_extra[lc] + dist_extra[dc];
    }
  }
  lit_freq[256] = 1;  // end of block
  // Two used distance codes at least: a one-code distance tree is legal but some decoders refuse an
  // incomplete code, and the cost is at most two extra bits in the header.
  int used_dist = 0;
  for (auto f : dist_freq) used_dist += f > 0;
  for (int d = 0; used_dist < 2; ++d)
    if (dist_freq[d] == 0) {
      dist_freq[d] = 1;
      ++used_dist;
    }

  // Dynamic code: lengths, their run-length code, and the code-length code.
  std::vector<std::uint8_t> lit_len = huffman_lengths(lit_freq, 15);
  std::vector<std::uint8_t> dist_len = huffman_lengths(dist_freq, 15);
  int hlit = 286, hdist = 30;
  while (hlit > 257 && lit_len[hlit - 1] == 0) --hlit;
  while (hdist > 1 && dist_len[hdist - 1] == 0) --hdist;
  std::vector<std::uint8_t> all(lit_len.begin(), lit_len.begin() + hlit);
  all.insert(all.end(), dist_len.begin(), dist_len.begin() + hdist);
  const std::vector<CodeLengthSymbol> rle = run_length_code(all);
  std::vector<std::uint32_t> cl_freq(19, 0);
  for (const auto& s : rle) ++cl_freq[s.symbol];
  const std::vector<std::uint8_t> cl_len = huffman_lengths(cl_freq, 7);
  int hclen = 19;
  while (hclen > 4 && cl_len[code_length_order[hclen - 1]] == 0) --hclen;

  std::uint64_t dynamic_bits = 14 + 3 * std::uint64_t(hclen) + extra_bits;
  for (const auto& s : rle)
    dynamic_bits += cl_len[s.symbol] + (s.symbol == 16 ? 2 : s.symbol == 17 ? 3 : s.symbol == 18 ? 7 : 0);
  const std::vector<std::uint8_t> fixed_lit = fixed_litlen_lengths();
  std::uint64_t fixed_bits = extra_bits;
  for (int s = 0; s < 286; ++s) {
    dynamic_bits += std::uint64_t(lit_freq[s]) * lit_len[s];
    fixed_bits += std::uint64_t(lit_freq[s]) * fixed_lit[s];
  }
  for (int d = 0; d < 30; ++d) {
    dynamic_bits += std::uint64_t(dist_freq[d]) * dist_len[d];
    fixed_bits += std::uint64_t(dist_freq[d]) * 5;
  }
  const std::size_t raw = byte_end - byte_begin;
  const std::uint64_t stored_bits = 8 * (std::uint64_t(raw) + 5 * (raw / 65535 + 1)) + 7;

  if (stored_bits <= fixed_bits + 3 && stored_bits <= dynamic_bits + 3) {
    std::size_t pos = byte_begin;
    do {
      const std::size_t len = std::min<std::size_t>(65535, byte_end - pos);
      const bool final_piece = pos + len == byte_end;
      bw.put((last && final_piece) ? 1 : 0, 1);
      bw.put(0, 2);
      bw.align();
      bw.put(std::uint32_t(len), 16);
      bw.put(std::uint32_t(~len & 0xFFFFu), 16);
      for (std::size_t k = 0; k < len; ++k) bw.put(data[pos + k], 8);
      pos += len;
    } while (pos < byte_end);
    return;
  }

  const bool dynamic = dynamic_bits < fixed_bits;
  std::vector<std::uint8_t> ll = dynamic ? lit_len : fixed_lit;
  std::vector<std::uint8_t> dl = dynamic ? dist_len : fixed_dist_lengths();
  bw.put(last ? 1 : 0, 1);
  bw.put(dynamic ? 2 : 1, 2);
  if (dynamic) {
    bw.put(std::uint32_t(hlit - 257), 5);
    bw.put(std::uint32_t(hdist - 1), 5);
    bw.put(std::uint32_t(hclen - 4), 4);
    for (int k = 0; k < hclen; ++k) bw.put(cl_len[code_length_order[k]], 3);
    const std::vector<std::uint16_t> cl_code = canonical_codes(cl_len);
    for (const auto& s : rle) {
      bw.put(cl_code[s.symbol], cl_len[s.symbol]);
      if (s.symbol == 16) bw.put(s.extra, 2);
      if (s.symbol == 17) bw.put(s.extra, 3);
      if (s.symbol == 18) bw.put(s.extra, 7);
    }
  }
  const std::vector<std::uint16_t> lcode = canonical_codes(ll), dcode = canonical_codes(dl);
  for (std::size_t t = 0; t < count; ++t) {
    const Token tok = tokens[t];
    if (tok.dist == 0) {
      bw.put(lcode[tok.len], ll[tok.len]);
    } else {
      const int lc = length_code(tok.len), dc = dist_code(tok.dist);
      bw.put(lcode[257 + lc], ll[257 + lc]);
      bw.put(std::uint32_t(tok.len - length_base[lc]), length_extra[lc]);
      bw.put(dcode[dc], dl[dc]);
      bw.put(std::uint32_t(tok.dist - dist_base[dc]), dist_extra[dc]);
    }
  }
  bw.put(lcode[256], ll[256]);
}

/// A zlib stream (RFC 1950): header, DEFLATE blocks of up to 32768 tokens each (small enough for the
/// Huffman codes to follow changes between parts of an image), Adler-32 of the input.
inline std::vector<std::uint8_t> zlib_compress(const std::vector<std::uint8_t>& data) {
  std::vector<std::uint8_t> out = {0x78, 0x9C};  // deflate, 32 KiB window, default level; 0x789C % 31 == 0
  {
    BitWriter bw(out);
    const std::vector<Token> tokens = lz77(data.data(), data.size());
    constexpr std::size_t block_tokens = 32768;
    std::size_t byte = 0;
    if (tokens.empty()) deflate_block(bw, data.data(), 0, 0, nullptr, 0, true);
    for (std::size_t t = 0; t < tokens.size(); t += block_tokens) {
      const std::size_t count = std::min(block_tokens, tokens.size() - t);
      std::size_t bytes = 0;
      for (std::size_t k = 0; k < count; ++k) bytes += tokens[t + k].dist == 0 ? 1 : tokens[t + k].len;
      deflate_block(bw, data.data(), byte, byte + bytes, tokens.data() + t, count,
                    t + count == tokens.size());
      byte += bytes;
    }
    bw.align();
  }
  const std::uint32_t adler = adler32(data.data(), data.size());
  for (int s = 24; s >= 0; s -= 8) out.push_back(std::uint8_t(adler >> s));
  return out;
}

// --- inflate (for the reader) ----------------------------------------------------------------------

/// A canonical Huffman decoder: counts of codes per length and the symbols in code order; decoding
/// walks one bit at a time (as in Mark Adler's reference decoder "puff", simple and exact).
struct HuffmanDecoder {
  std::uint16_t count[16] = {0};
  std::vector<std::uint16_t> symbol;
};

class Inflater {
 public:
  Inflater(const std::uint8_t* data, std::size_t n, std::string where)
      : m_data(data), m_n(n), m_where(std::move(where)) {}

  /// Decompresses a zlib stream, refusing to produce more than max_out bytes.
  std::vector<std::uint8_t> zlib(std::size_t max_out) {
    if (m_n < 6) corrupt("the zlib stream is truncated");
    const int cmf = m_data[0], flg = m_data[1];
    if ((cmf & 0x0F) != 8 || (cmf >> 4) > 7)
      corrupt("the zlib stream does not use DEFLATE with a window <= 32 KiB");
    if (((cmf << 8) | flg) % 31 != 0) corrupt("the zlib header check bits are wrong");
    if (flg & 0x20) corrupt("the zlib stream needs a preset dictionary");
    m_pos = 2;
    m_max_out = max_out;
    bool last = false;
    while (!last) {
      last = bits(1) != 0;
      const int type = int(bits(2));
      if (type == 0)
        stored();
      else if (type == 1)
        fixed();
      else if (type == 2)
        dynamic();
      else
        corrupt("a DEFLATE block has the reserved type 3");
    }
    m_bitcount = 0;  // the Adler-32 starts at the next byte boundary
    if (m_pos + 4 > m_n) corrupt("the zlib stream is truncated before its Adler-32");
    std::uint32_t expected = 0;
    for (int k = 0; k < 4; ++k) expected = (expected << 8) | m_data[m_pos++];
    if (adler32(m_out.data(), m_out.size()) != expected)
      corrupt("the Adler-32 of the image data does not match");
    return std::move(m_out);
  }

 private:
  [[noreturn]] void corrupt(const char* what) const { throw io_error(m_where + ": " + what); }

  std::uint32_t bits(int need) {
    while (m_bitcount < need) {
      if (m_pos >= m_n) corrupt("the compressed image data ends early");
      m_bitbuf |= std::uint32_t(m_data[m_pos++]) << m_bitcount;
      m_bitcount += 8;
    }
    const std::uint32_t v = m_bitbuf & ((1u << need) - 1u);
    m_bitbuf >>= need;
    m_bitcount -= need;
    return v;
  }

  void emit(std::uint8_t b) {
    if (m_out.size() >= m_max_out) corrupt("the image data decompresses to more bytes than the header says");
    m_out.push_back(b);
  }

  void stored() {
    m_bitbuf = 0;
    m_bitcount = 0;
    if (m_pos + 4 > m_n) corrupt("a stored block is truncated");
    const unsigned len = m_data[m_pos] | (unsigned(m_data[m_pos + 1]) << 8);
    const unsigned nlen = m_data[m_pos + 2] | (unsigned(m_data[m_pos + 3]) << 8);
    m_pos += 4;
    if (len != (~nlen & 0xFFFFu)) corrupt("a stored block's length check fails");
    if (m_pos + len > m_n) corrupt("a stored block is truncated");
    for (unsigned k = 0; k < len; ++k) emit(m_data[m_pos + k]);
    m_pos += len;
  }

  HuffmanDecoder build(const std::uint8_t* lengths, int n) const {
    HuffmanDecoder h;
    for (int s = 0; s < n; ++s) ++h.count[lengths[s]];
    h.count[0] = 0;
    int left = 1;
    for (int len = 1; len < 16; ++len) {
      left <<= 1;
      left -= h.count[len];
      if (left < 0) corrupt("a Huffman code is over-subscribed");
    }
    std::uint16_t offs[16] = {0};
    for (int len = 1; len < 15; ++len) offs[len + 1] = std::uint16_t(offs[len] + h.count[len]);
    h.symbol.assign(std::size_t(n), 0);
    for (int s = 0; s < n; ++s)
      if (lengths[s] != 0) h.symbol[offs[lengths[s]]++] = std::uint16_t(s);
    return h;
  }

  int decode(const HuffmanDecoder& h) {
    int code = 0, first = 0, index = 0;
    for (int len = 1; len < 16; ++len) {
      code |= int(bits(1));
      const int count = h.count[len];
      if (code - first < count) return h.symbol[std::size_t(index + code - first)];
      index += count;
      first = (first + count) << 1;
      code <<= 1;
    }
    corrupt("an invalid Huffman code in the image data");
  }

  void codes(const HuffmanDecoder& lit, const HuffmanDecoder& dist) {
    for (;;) {
      const int sym = decode(lit);
      if (sym < 256) {
        emit(std::uint8_t(sym));
      } else if (sym == 256) {
        return;
      } else {
        const int lc = sym - 257;
        if (lc >= 29) corrupt("an invalid length code in the image data");
        const int len = length_base[lc] + int(bits(length_extra[lc]));
        const int dc = decode(dist);
        if (dc >= 30) corrupt("an invalid distance code in the image data");
        const std::size_t d = dist_base[dc] + bits(dist_extra[dc]);
        if (d > m_out.size()) corrupt("a match reaches back before the start of the image data");
        for (int k = 0; k < len; ++k) emit(m_out[m_out.size() - d]);
      }
    }
  }

  void fixed() {
    const std::vector<std::uint8_t> ll = fixed_litlen_lengths(), dl = fixed_dist_lengths();
    codes(build(ll.data(), 288), build(dl.data(), 30));
  }

  void dynamic() {
    const int nlen = int(bits(5)) + 257, ndist = int(bits(5)) + 1, ncode = int(bits(4)) + 4;
    if (nlen > 286 || ndist > 30) corrupt("a dynamic block has too many length or distance codes");
    std::uint8_t lengths[320] = {0};
    for (int k = 0; k < ncode; ++k) lengths[code_length_order[k]] = std::uint8_t(bits(3));
    const HuffmanDecoder cl = build(lengths, 19);
    std::fill(std::begin(lengths), std::end(lengths), std::uint8_t(0));
    int index = 0;
    while (index < nlen + ndist) {
      const int sym = decode(cl);
      if (sym < 16) {
        lengths[index++] = std::uint8_t(sym);
        continue;
      }
      std::uint8_t value = 0;
      int repeat;
      if (sym == 16) {
        if (index == 0) corrupt("a code-length repeat has nothing to repeat");
        value = lengths[index - 1];
        repeat = 3 + int(bits(2));
      } else if (sym == 17) {
        repeat = 3 + int(bits(3));
      } else {
        repeat = 11 + int(bits(7));
      }
      if (index + repeat > nlen + ndist) corrupt("code lengths overrun the code in a dynamic block");
      while (repeat-- > 0) lengths[index++] = value;
    }
    if (lengths[256] == 0) corrupt("a dynamic block has no end-of-block code");
    codes(build(lengths, nlen), build(lengths + nlen, ndist));
  }

  const std::uint8_t* m_data;
  std::size_t m_n;
  std::string m_where;
  std::size_t m_pos = 0, m_max_out = 0;
  std::uint32_t m_bitbuf = 0;
  int m_bitcount = 0;
  std::vector<std::uint8_t> m_out;
};

inline int paeth(int a, int b, int c) {  // PNG spec., sec. 9.4
  const int p = a + b - c, pa = std::abs(p - a), pb = std::abs(p - b), pc = std::abs(p - c);
  return (pa <= pb && pa <= pc) ? a : (pb <= pc ? b : c);
}

/// The prediction of PNG filter `type` (0 none, 1 Sub, 2 Up, 3 Average, 4 Paeth; PNG spec., sec. 9.2)
/// from the left (a), upper (b) and upper-left (c) bytes: the encoder subtracts it, the decoder adds it.
inline int filter_prediction(int type, int a, int b, int c) {
  switch (type) {
    case 1:
      return a;
    case 2:
      return b;
    case 3:
      return (a + b) / 2;
    case 4:
      return paeth(a, b, c);
    default:
      return 0;
  }
}

inline void put_u32(std::vector<std::uint8_t>& out, std::uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out.push_back(std::uint8_t(v >> s));
}
inline std::uint32_t get_u32(const std::uint8_t* p) {
  return (std::uint32_t(p[0]) << 24) | (std::uint32_t(p[1]) << 16) | (std::uint32_t(p[2]) << 8) | p[3];
}

inline void put_chunk(std::vector<std::uint8_t>& out, const char type[5],
                      const std::vector<std::uint8_t>& data) {
  put_u32(out, std::uint32_t(data.size()));
  const std::size_t start = out.size();
  out.insert(out.end(), type, type + 4);
  out.insert(out.end(), data.begin(), data.end());
  put_u32(out, crc32(out.data() + start, out.size() - start));
}

constexpr std::uint8_t png_signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};

}  // namespace detail

/// An 8-bit image in memory: rows top to bottom, pixels left to right, `channels` bytes per pixel
/// (1 grey, 3 RGB, 4 RGBA).
struct Image {
  int width = 0;
  int height = 0;
  int channels = 0;
  std::vector<std::uint8_t> pixels;
};

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

  // Filtering: per row, the filter type with the smallest sum of |residual| (residuals as signed bytes).
  const std::size_t stride = std::size_t(width) * std::size_t(channels);
  std::vector<std::uint8_t> filtered;
  filtered.reserve(std::size_t(height) * (stride + 1));
  std::vector<std::uint8_t> zero(stride, 0), candidate(stride), best(stride);
  for (int y = 0; y < height; ++y) {
    const std::uint8_t* row = pixels.data() + std::size_t(y) * stride;
    const std::uint8_t* up = y > 0 ? row - stride : zero.data();
    std::uint64_t best_cost = ~std::uint64_t(0);
    int best_type = 0;
    for (int type = 0; type < 5; ++type) {
      std::uint64_t cost = 0;
      for (std::size_t i = 0; i < stride; ++i) {
        const int a = i >= std::size_t(channels) ? row[i - std::size_t(channels)] : 0;
        const int b = up[i];
        const int c = i >= std::size_t(channels) ? up[i - std::size_t(channels)] : 0;
        const int pred = detail::filter_prediction(type, a, b, c);
        const std::uint8_t r = std::uint8_t(row[i] - pred);
        candidate[i] = r;
        cost += std::uint64_t(std::abs(int(std::int8_t(r))));
      }
      if (cost < best_cost) {
        best_cost = cost;
        best_type = type;
        best.swap(candidate);
      }
    }
    filtered.push_back(std::uint8_t(best_type));
    filtered.insert(filtered.end(), best.begin(), best.end());
  }

  std::vector<std::uint8_t> png(detail::png_signature, detail::png_signature + 8);
  std::vector<std::uint8_t> ihdr;
  detail::put_u32(ihdr, std::uint32_t(width));
  detail::put_u32(ihdr, std::uint32_t(height));
  ihdr.push_back(8);                                                        // bit depth
  ihdr.push_back(std::uint8_t(channels == 1 ? 0 : channels == 3 ? 2 : 6));  // colour type
  ihdr.push_back(0);                                                        // compression: deflate
  ihdr.push_back(0);                                                        // filter method 0
  ihdr.push_back(0);                                                        // no interlace
  detail::put_chunk(png, "IHDR", ihdr);
  const std::vector<std::uint8_t> z = detail::zlib_compress(filtered);
  // IDAT chunks of at most 1 MiB, a size every decoder handles.
  for (std::size_t off = 0; off < z.size(); off += std::size_t(1) << 20) {
    const std::size_t len = std::min(z.size() - off, std::size_t(1) << 20);
    detail::put_chunk(
        png, "IDAT",
        std::vector<std::uint8_t>(z.begin() + std::ptrdiff_t(off), z.begin() + std::ptrdiff_t(off + len)));
  }
  detail::put_chunk(png, "IEND", {});
  return png;
}

/// Writes an 8-bit grey, RGB or RGBA image (channel count from pixels.size(), see encode_png) as a PNG
/// file, atomically: the file appears complete under `path` or not at all. Throws io_error naming the
/// path and the OS error when it cannot be written.
inline void write_png(const std::string& path, int width, int height,
                      const std::vector<std::uint8_t>& pixels) {
  const std::vector<std::uint8_t> png = encode_png(width, height, pixels);
  detail::AtomicFile file(path, "scorekit::io::write_png");
  file.write(png.data(), png.size());
  file.commit();
}

/// Writes an Image (see write_png).
inline void write_png(const std::string& path, const Image& image) {
  write_png(path, image.width, image.height, image.pixels);
}

/// Decodes a PNG held in memory: 8-bit grey, RGB, grey+alpha or RGBA, not interlaced (what write_png
/// writes, and what most tools write for such images). Chunk CRCs and the Adler-32 are checked;
/// anything else (palettes, 16-bit samples, interlacing, a damaged file) throws io_error naming `name`.
inline Image decode_png(const std::vector<std::uint8_t>& bytes, const std::string& name = "<memory>") {
  const std::string where = "scorekit::io::read_png: '" + name + "'";
  auto corrupt = [&](const std::string& what) { return io_error(where + ": " + what); };
  if (bytes.size() < 8 || !std::equal(bytes.begin(), bytes.begin() + 8, detail::png_signature))
    throw corrupt("not a PNG file (the signature is missing)");
  std::size_t pos = 8;
  Image img;
  int colour_type = -1;
  std::vector<std::uint8_t> idat;
  bool seen_end = false;
  while (!seen_end) {
    if (pos + 12 > bytes.size()) throw corrupt("the file ends before the IEND chunk");
    const std::uint32_t len = detail::get_u32(bytes.data() + pos);
    if (len > bytes.size() - pos - 12) throw corrupt("a chunk runs past the end of the file");
    const std::uint8_t* type = bytes.data() + pos + 4;
    const std::uint8_t* data = type + 4;
    const std::string t(reinterpret_cast<const char*>(type), 4);
    if (detail::crc32(type, len + 4) != detail::get_u32(data + len))
      throw corrupt("the CRC of chunk " + t + " does not match (the file is damaged)");
    if (pos == 8 && t != "IHDR") throw corrupt("the first chunk is " + t + ", not IHDR");
    if (t == "IHDR") {
      if (len != 13) throw corrupt("the IHDR chunk has the wrong length");
      img.width = int(std::min<std::uint32_t>(detail::get_u32(data), 1u << 30));
      img.height = int(std::min<std::uint32_t>(detail::get_u32(data + 4), 1u << 30));
      if (img.width <= 0 || img.height <= 0 || img.width > (1 << 24) || img.height > (1 << 24))
        throw corrupt("unsupported image size");
      if (data[8] != 8)
        throw corrupt("only 8-bit samples are supported, got bit depth " + std::to_string(data[8]));
      colour_type = data[9];
      img.channels = colour_type == 0   ? 1
                     : colour_type == 2 ? 3
                     : colour_type == 4 ? 2
                     : colour_type == 6 ? 4
                                        : 0;
      if (img.channels == 0)
        throw corrupt("colour type " + std::to_string(colour_type) +
                      " is not supported (grey, RGB, grey+alpha and RGBA are; palettes are not)");
      if (data[10] != 0 || data[11] != 0) throw corrupt("unknown compression or filter method");
      if (data[12] != 0) throw corrupt("interlaced images are not supported");
    } else if (t == "IDAT") {
      idat.insert(idat.end(), data, data + len);
    } else if (t == "IEND") {
      seen_end = true;
    } else if (!(type[0] & 0x20) && t != "PLTE") {
      throw corrupt("unknown critical chunk " + t);
    }
    pos += std::size_t(len) + 12;
  }
  if (img.channels == 0) throw corrupt("no IHDR chunk");
  const std::size_t bpp = std::size_t(img.channels);
  const std::size_t stride = std::size_t(img.width) * bpp;
  const std::size_t expected = std::size_t(img.height) * (stride + 1);
  const std::vector<std::uint8_t> raw = detail::Inflater(idat.data(), idat.size(), where).zlib(expected);
  if (raw.size() != expected) throw corrupt("the image data is shorter than the header says");

  img.pixels.assign(std::size_t(img.height) * stride, 0);
  for (int y = 0; y < img.height; ++y) {
    const std::uint8_t filter = raw[std::size_t(y) * (stride + 1)];
    const std::uint8_t* in = raw.data() + std::size_t(y) * (stride + 1) + 1;
    std::uint8_t* row = img.pixels.data() + std::size_t(y) * stride;
    const std::uint8_t* up = y > 0 ? row - stride : nullptr;
    if (filter > 4)
      throw corrupt("unknown filter type " + std::to_string(filter) + " in row " + std::to_string(y));
    for (std::size_t i = 0; i < stride; ++i) {
      const int a = i >= bpp ? row[i - bpp] : 0;
      const int b = up ? up[i] : 0;
      const int c = (up && i >= bpp) ? up[i - bpp] : 0;
      const int pred = detail::filter_prediction(filter, a, b, c);
      row[i] = std::uint8_t(in[i] + pred);
    }
  }
  return img;
}

/// Reads a PNG file (see decode_png) with the channels it stores.
inline Image read_png(const std::string& path) {
  return decode_png(detail::read_file(path, "scorekit::io::read_png"), path);
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
