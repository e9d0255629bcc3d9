// upfirdn2d: zero-insertion upsampling, padding, FIR filtering and decimation in one pass.
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>

#include "ops.h"
#include "upfirdn2d.cuh"

namespace sg2 {
namespace {

constexpr int64_t kSharedBytes = 48 * 1024;  // usable without opting in on every GPU
constexpr int64_t kMaxGridZ = 65535;
constexpr int kDirectThreads = 256;

// One block: one output tile of one plane at a time (striding over planes by gridDim.z).
template <int kUpX, int kUpY, int kDownX, int kDownY, int kFilterH, int kFilterW, typename scalar_t>
__global__ void upfirdn2d_tiled_kernel(Upfirdn2dParams p, const scalar_t* __restrict__ x,
                                       const typename AccType<scalar_t>::type* __restrict__ f,
                                       scalar_t* __restrict__ y) {
  using acc_t = typename AccType<scalar_t>::type;
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  acc_t* tile = reinterpret_cast<acc_t*>(shared_bytes);
  acc_t* filter = tile + p.tile_in_h * p.tile_in_w;
  const TileOrigin origin = tile_origin<kUpX, kUpY, kDownX, kDownY>(p, blockIdx.x, blockIdx.y);
  const int tid = static_cast<int>(threadIdx.x);
  const int nthreads = static_cast<int>(blockDim.x);
  for (int64_t plane = blockIdx.z; plane < p.planes; plane += gridDim.z) {
    upfirdn2d_load_tile(p, plane, origin, x, f, tile, filter, tid, nthreads);
    __syncthreads();
    upfirdn2d_compute_tile<kUpX, kUpY, kDownX, kDownY, kFilterH, kFilterW>(p, plane, origin, tile, filter, y, tid,
                                                                           nthreads);
    __syncthreads();
  }
}

template <typename scalar_t>
__global__ void upfirdn2d_direct_kernel(Upfirdn2dParams p, int64_t total, const scalar_t* __restrict__ x,
                                        const typename AccType<scalar_t>::type* __restrict__ f,
                                        scalar_t* __restrict__ y) {
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    upfirdn2d_direct_element(p, i, x, f, y);
  }
}

template <int kUpX, int kUpY, int kDownX, int kDownY, int kFilterH, int kFilterW, typename scalar_t>
void launch_tiled(const Upfirdn2dParams& p, const torch::Tensor& x, const torch::Tensor& f, torch::Tensor& y) {
  using acc_t = typename AccType<scalar_t>::type;
  const dim3 grid((p.out_w + p.tile_out_w - 1) / p.tile_out_w, (p.out_h + p.tile_out_h - 1) / p.tile_out_h,
                  static_cast<unsigned>(std::min(p.planes, kMaxGridZ)));
  upfirdn2d_tiled_kernel<kUpX, kUpY, kDownX, kDownY, kFilterH, kFilterW, scalar_t>
      <<<grid, upfirdn2d_threads(p), upfirdn2d_shared_bytes(p, sizeof(acc_t)), c10::cuda::getCurrentCUDAStream()>>>(
          p, x.const_data_ptr<scalar_t>(), f.const_data_ptr<acc_t>(), y.mutable_data_ptr<scalar_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename scalar_t>
void launch(Upfirdn2dParams& p, const torch::Tensor& x, const torch::Tensor& f, torch::Tensor& y) {
  using acc_t = typename AccType<scalar_t>::type;
  if (!upfirdn2d_choose_tile(p, sizeof(acc_t), kSharedBytes)) {
    const int64_t total = y.numel();
    const int64_t blocks = std::min<int64_t>((total + kDirectThreads - 1) / kDirectThreads, int64_t(1) << 16);
    upfirdn2d_direct_kernel<scalar_t><<<static_cast<unsigned>(blocks), kDirectThreads, 0,
                                        c10::cuda::getCurrentCUDAStream()>>>(
        p, total, x.const_data_ptr<scalar_t>(), f.const_data_ptr<acc_t>(), y.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return;
  }
  switch (upfirdn2d_variant(p)) {
    case kFilter4: return launch_tiled<1, 1, 1, 1, 4, 4, scalar_t>(p, x, f, y);
    case kUp2Filter4: return launch_tiled<2, 2, 1, 1, 4, 4, scalar_t>(p, x, f, y);
    case kDown2Filter4: return launch_tiled<1, 1, 2, 2, 4, 4, scalar_t>(p, x, f, y);
    default: return launch_tiled<0, 0, 0, 0, 0, 0, scalar_t>(p, x, f, y);
  }
}

}  // namespace

torch::Tensor upfirdn2d_cuda(const torch::Tensor& x, const torch::Tensor& f, int64_t up_x, int64_t up_y,
                             int64_t down_x, int64_t down_y, int64_t pad_x0, int64_t pad_x1, int64_t pad_y0,
                             int64_t pad_y1) {
  const c10::cuda::OptionalCUDAGuard device_guard(x.device());
  Upfirdn2dParams p{};
  p.in_h = static_cast<int>(x.size(2));
  p.in_w = static_cast<int>(x.size(3));
  p.up_x = static_cast<int>(up_x);
  p.up_y = static_cast<int>(up_y);
  p.down_x = static_cast<int>(down_x);
  p.down_y = static_cast<int>(down_y);
  p.pad_x0 = static_cast<int>(pad_x0);
  p.pad_y0 = static_cast<int>(pad_y0);
  p.filter_h = static_cast<int>(f.size(0));
  p.filter_w = static_cast<int>(f.size(1));
  p.out_h = static_cast<int>((x.size(2) * up_y + pad_y0 + pad_y1 - f.size(0)) / down_y + 1);
  p.out_w = static_cast<int>((x.size(3) * up_x + pad_x0 + pad_x1 - f.size(1)) / down_x + 1);
  p.planes = x.size(0) * x.size(1);
  torch::Tensor y = torch::empty({x.size(0), x.size(1), p.out_h, p.out_w}, x.options());
  if (y.numel() == 0) return y;
  AT_DISPATCH_FLOATING_TYPES_AND_HALF(x.scalar_type(), "upfirdn2d_cuda", [&] { launch<scalar_t>(p, x, f, y); });
  return y;
}

}  // namespace sg2
