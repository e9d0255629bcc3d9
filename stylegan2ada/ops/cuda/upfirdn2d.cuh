// Index arithmetic of upfirdn2d (see upfirdn2d.cu for the kernels).
//
// The op is: insert (up - 1) zeros after every input pixel, pad (negative values crop),
// correlate with the filter, keep every down-th pixel. The caller passes the filter already
// flipped as needed and scaled by the gain, so the kernel computes a plain correlation
//   out[oy, ox] = sum_{i, j} xup[oy * down_y + i - pad_y0, ox * down_x + j - pad_x0] * f[i, j].
// Only the taps that land on real (not inserted) pixels are visited: for output row oy, with
// u = oy * down_y - pad_y0, tap i reads input row (u + i) / up_y when up_y divides u + i, i.e.
// the taps i0 = (-u) mod up_y, i0 + up_y, ... read consecutive input rows from (u + i0) / up_y.
#pragma once

#include "common.cuh"

namespace sg2 {

struct Upfirdn2dParams {
  int in_h, in_w;
  int out_h, out_w;
  int up_x, up_y;
  int down_x, down_y;
  int pad_x0, pad_y0;  // the trailing pads only set the output size
  int filter_h, filter_w;
  int64_t planes;  // batch * channels
  // Tiled kernel: one block computes tile_out_h x tile_out_w outputs of one plane from a
  // tile_in_h x tile_in_w block of input staged in shared memory.
  int tile_out_h, tile_out_w;
  int tile_in_h, tile_in_w;
};

// Input rows (or columns) a tile of `tile_out` outputs can read: an upper bound that holds for
// every tile position, so one shared-memory size serves all blocks.
SG2_HD int tile_input_extent(int tile_out, int down, int up, int taps) {
  return ((tile_out - 1) * down + taps - 1) / up + 2;
}

// First input row (column) read by the tile whose first output row (column) is `out0`.
SG2_HD int tile_input_origin(int out0, int down, int up, int pad0) {
  return floor_div(out0 * down - pad0, up);
}

struct TileOrigin {
  int out_y0, out_x0;  // first output of the tile
  int in_y0, in_x0;    // first input pixel staged in shared memory
};

template <int kUpX, int kUpY, int kDownX, int kDownY>
SG2_HD TileOrigin tile_origin(const Upfirdn2dParams& p, int block_x, int block_y) {
  TileOrigin o;
  o.out_y0 = block_y * p.tile_out_h;
  o.out_x0 = block_x * p.tile_out_w;
  o.in_y0 = tile_input_origin(o.out_y0, kDownY ? kDownY : p.down_y, kUpY ? kUpY : p.up_y, p.pad_y0);
  o.in_x0 = tile_input_origin(o.out_x0, kDownX ? kDownX : p.down_x, kUpX ? kUpX : p.up_x, p.pad_x0);
  return o;
}

// The first tap index and the first input row it reads, for output row (column) `out`.
struct TapStart {
  int tap;
  int input;
};

SG2_HD TapStart first_tap(int out, int down, int up, int pad0) {
  const int u = out * down - pad0;
  const int tap = pos_mod(-u, up);
  return TapStart{tap, (u + tap) / up};
}

// Stage the input tile (zeros outside the image) and the filter in shared memory. Thread
// `tid` of `nthreads` handles every nthreads-th element; all threads call it before a barrier.
template <typename scalar_t, typename acc_t>
SG2_HD void upfirdn2d_load_tile(const Upfirdn2dParams& p, int64_t plane, const TileOrigin& o,
                                const scalar_t* x, const acc_t* f, acc_t* tile, acc_t* filter,
                                int tid, int nthreads) {
  const scalar_t* image = x + plane * p.in_h * p.in_w;
  const int count = p.tile_in_h * p.tile_in_w;
  for (int k = tid; k < count; k += nthreads) {
    const int iy = o.in_y0 + k / p.tile_in_w;
    const int ix = o.in_x0 + k % p.tile_in_w;
    const bool inside = iy >= 0 && iy < p.in_h && ix >= 0 && ix < p.in_w;
    tile[k] = inside ? static_cast<acc_t>(image[static_cast<int64_t>(iy) * p.in_w + ix]) : acc_t(0);
  }
  for (int k = tid; k < p.filter_h * p.filter_w; k += nthreads) filter[k] = f[k];
}

// Compute this thread's outputs of the tile from shared memory. Template sizes of 0 mean
// "read from p"; non-zero ones let the compiler unroll the tap loops for common cases.
template <int kUpX, int kUpY, int kDownX, int kDownY, int kFilterH, int kFilterW,
          typename scalar_t, typename acc_t>
SG2_HD void upfirdn2d_compute_tile(const Upfirdn2dParams& p, int64_t plane, const TileOrigin& o,
                                   const acc_t* tile, const acc_t* filter, scalar_t* y, int tid, int nthreads) {
  const int up_x = kUpX ? kUpX : p.up_x;
  const int up_y = kUpY ? kUpY : p.up_y;
  const int down_x = kDownX ? kDownX : p.down_x;
  const int down_y = kDownY ? kDownY : p.down_y;
  const int filter_h = kFilterH ? kFilterH : p.filter_h;
  const int filter_w = kFilterW ? kFilterW : p.filter_w;
  scalar_t* out = y + plane * p.out_h * p.out_w;
  const int count = p.tile_out_h * p.tile_out_w;
  for (int k = tid; k < count; k += nthreads) {
    const int oy = o.out_y0 + k / p.tile_out_w;
    const int ox = o.out_x0 + k % p.tile_out_w;
    if (oy >= p.out_h || ox >= p.out_w) continue;
    const TapStart sy = first_tap(oy, down_y, up_y, p.pad_y0);
    const TapStart sx = first_tap(ox, down_x, up_x, p.pad_x0);
    const acc_t* row = tile + (sy.input - o.in_y0) * p.tile_in_w + (sx.input - o.in_x0);
    acc_t sum = 0;
    // At most ceil(taps / up) taps per axis land on real pixels; constant for known sizes.
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
    for (int ty = 0; ty < (filter_h + up_y - 1) / up_y; ++ty) {
      const int i = sy.tap + ty * up_y;
      if (i >= filter_h) break;
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
      for (int tx = 0; tx < (filter_w + up_x - 1) / up_x; ++tx) {
        const int j = sx.tap + tx * up_x;
        if (j >= filter_w) break;
        sum += row[ty * p.tile_in_w + tx] * filter[i * filter_w + j];
      }
    }
    out[static_cast<int64_t>(oy) * p.out_w + ox] = static_cast<scalar_t>(sum);
  }
}

// One output element straight from global memory: for filters too large for a shared tile.
template <typename scalar_t, typename acc_t>
SG2_HD void upfirdn2d_direct_element(const Upfirdn2dParams& p, int64_t index, const scalar_t* x,
                                     const acc_t* f, scalar_t* y) {
  const int ox = static_cast<int>(index % p.out_w);
  const int oy = static_cast<int>((index / p.out_w) % p.out_h);
  const int64_t plane = index / (static_cast<int64_t>(p.out_w) * p.out_h);
  const scalar_t* image = x + plane * p.in_h * p.in_w;
  const TapStart sy = first_tap(oy, p.down_y, p.up_y, p.pad_y0);
  const TapStart sx = first_tap(ox, p.down_x, p.up_x, p.pad_x0);
  acc_t sum = 0;
  for (int i = sy.tap, iy = sy.input; i < p.filter_h; i += p.up_y, ++iy) {
    if (iy < 0 || iy >= p.in_h) continue;
    for (int j = sx.tap, ix = sx.input; j < p.filter_w; j += p.up_x, ++ix) {
      if (ix < 0 || ix >= p.in_w) continue;
      sum += static_cast<acc_t>(image[static_cast<int64_t>(iy) * p.in_w + ix]) * f[i * p.filter_w + j];
    }
  }
  y[index] = static_cast<scalar_t>(sum);
}

// ---- host-side launch decisions, shared by upfirdn2d.cu and host emulation of the kernels

constexpr int kUpfirdn2dMaxThreads = 256;
constexpr int kUpfirdn2dTileOutputs = 1024;  // 4 outputs per thread at full block size
constexpr int kUpfirdn2dMaxTileWidth = 64;
constexpr int kUpfirdn2dMinTileSide = 8;
constexpr int kUpfirdn2dMaxGridY = 65535;  // CUDA's limit on gridDim.y

inline int64_t upfirdn2d_shared_bytes(const Upfirdn2dParams& p, int acc_bytes) {
  return (static_cast<int64_t>(p.tile_in_h) * p.tile_in_w + p.filter_h * p.filter_w) * acc_bytes;
}

// Pick the largest tile (up to kUpfirdn2dTileOutputs outputs, rows of up to 64) whose staged
// input and filter fit in `shared_limit` bytes; false when not even an 8x8 tile fits (or the
// image is too tall for the grid), in which case the direct kernel is used.
inline bool upfirdn2d_choose_tile(Upfirdn2dParams& p, int acc_bytes, int64_t shared_limit) {
  p.tile_out_w = p.out_w < kUpfirdn2dMaxTileWidth ? p.out_w : kUpfirdn2dMaxTileWidth;
  const int rows = kUpfirdn2dTileOutputs / p.tile_out_w;
  p.tile_out_h = p.out_h < rows ? p.out_h : rows;
  for (;;) {
    p.tile_in_h = tile_input_extent(p.tile_out_h, p.down_y, p.up_y, p.filter_h);
    p.tile_in_w = tile_input_extent(p.tile_out_w, p.down_x, p.up_x, p.filter_w);
    if (upfirdn2d_shared_bytes(p, acc_bytes) <= shared_limit) {
      return (p.out_h + p.tile_out_h - 1) / p.tile_out_h <= kUpfirdn2dMaxGridY;
    }
    if (p.tile_out_h >= p.tile_out_w && p.tile_out_h > kUpfirdn2dMinTileSide) {
      p.tile_out_h = p.tile_out_h / 2 > kUpfirdn2dMinTileSide ? p.tile_out_h / 2 : kUpfirdn2dMinTileSide;
    } else if (p.tile_out_w > kUpfirdn2dMinTileSide) {
      p.tile_out_w = p.tile_out_w / 2 > kUpfirdn2dMinTileSide ? p.tile_out_w / 2 : kUpfirdn2dMinTileSide;
    } else {
      return false;
    }
  }
}

// Threads per block for the chosen tile: whole warps, at most one per output.
inline int upfirdn2d_threads(const Upfirdn2dParams& p) {
  const int warps = (p.tile_out_h * p.tile_out_w + 31) / 32;
  return warps * 32 < kUpfirdn2dMaxThreads ? warps * 32 : kUpfirdn2dMaxThreads;
}

// Compile-time specialisations for StyleGAN2's 4x4 filter; everything else runs the generic one.
enum Upfirdn2dVariant : int { kGenericTaps = 0, kFilter4 = 1, kUp2Filter4 = 2, kDown2Filter4 = 3 };

inline Upfirdn2dVariant upfirdn2d_variant(const Upfirdn2dParams& p) {
  const bool square4 = p.filter_h == 4 && p.filter_w == 4 && p.up_x == p.up_y && p.down_x == p.down_y;
  if (square4 && p.up_x == 1 && p.down_x == 1) return kFilter4;
  if (square4 && p.up_x == 2 && p.down_x == 1) return kUp2Filter4;
  if (square4 && p.up_x == 1 && p.down_x == 2) return kDown2Filter4;
  return kGenericTaps;
}

}  // namespace sg2
