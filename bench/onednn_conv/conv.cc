// 3x3 'same' convolutions of NHWC float32 images with (3, 3, in, out) kernels through oneDNN,
// as XLA FFI handlers: the forward product, the input gradient and the kernel gradient of
// digitnet's `patch_product`. Built and loaded only by bench/onednn_conv.py. The attribute
// bf16 != 0 lets oneDNN compute in bfloat16 (its fpmath mode; AMX kernels where the CPU
// has them). Primitives are made once per shape and kept.
#include <map>
#include <memory>
#include <mutex>
#include <tuple>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using dnnl::memory;
using tag = memory::format_tag;
using dt = memory::data_type;

enum Kind { kForward, kInputGradient, kKernelGradient };

static dnnl::engine &engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

// XLA may run two custom calls at once, so each of its threads has its own stream.
static dnnl::stream &stream() {
  thread_local dnnl::stream s(engine());
  return s;
}

struct Shapes {
  memory::dims src, weights, dst, strides{1, 1}, padding{1, 1};
  Shapes(int64_t n, int64_t h, int64_t w, int64_t in, int64_t out)
      : src{n, in, h, w}, weights{out, in, 3, 3}, dst{n, out, h, w} {}
  memory::desc image(bool input) const { return {input ? src : dst, dt::f32, tag::nhwc}; }
  memory::desc kernel() const { return {weights, dt::f32, tag::hwio}; }
  memory::desc any_kernel() const { return {weights, dt::f32, tag::any}; }
};

struct Plan {
  dnnl::primitive primitive;
  memory::desc kernel;  // the (diff_)weights layout the primitive chose
};

static dnnl::primitive_attr attributes(int64_t bf16) {
  dnnl::primitive_attr a;
  if (bf16) a.set_fpmath_mode(dnnl::fpmath_mode::bf16);
  return a;
}

static Plan make_plan(Kind kind, const Shapes &s, int64_t bf16) {
  auto attr = attributes(bf16);
  dnnl::convolution_forward::primitive_desc forward(
      engine(), dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct,
      s.image(true), s.any_kernel(), s.image(false), s.strides, s.padding, s.padding, attr);
  if (kind == kForward) return {dnnl::convolution_forward(forward), forward.weights_desc()};
  if (kind == kInputGradient) {
    dnnl::convolution_backward_data::primitive_desc pd(
        engine(), dnnl::algorithm::convolution_direct, s.image(true), s.any_kernel(),
        s.image(false), s.strides, s.padding, s.padding, forward, attr);
    return {dnnl::convolution_backward_data(pd), pd.weights_desc()};
  }
  dnnl::convolution_backward_weights::primitive_desc pd(
      engine(), dnnl::algorithm::convolution_direct, s.image(true), s.any_kernel(),
      s.image(false), s.strides, s.padding, s.padding, forward, attr);
  return {dnnl::convolution_backward_weights(pd), pd.diff_weights_desc()};
}

static const Plan &plan(Kind kind, const Shapes &s, int64_t bf16) {
  static std::mutex mu;
  static std::map<std::tuple<int, memory::dims, memory::dims, int64_t>, Plan> plans;
  std::lock_guard<std::mutex> lock(mu);
  auto key = std::make_tuple(int(kind), s.src, s.weights, bf16);
  auto it = plans.find(key);
  if (it == plans.end()) it = plans.emplace(key, make_plan(kind, s, bf16)).first;
  return it->second;
}

// The kernel as the primitive reads it: the caller's buffer, or a reordered copy.
static memory kernel_memory(const Plan &p, const Shapes &s, void *data) {
  memory given(s.kernel(), engine(), data);
  if (p.kernel == s.kernel()) return given;
  memory chosen(p.kernel, engine());
  dnnl::reorder(given, chosen).execute(stream(), given, chosen);
  return chosen;
}

// The forward product (x -> y) or the input gradient (g -> dx): one image and the kernel
// in, the other image out.
static ffi::Error ImageToImage(Kind kind, const Shapes &s, int64_t bf16, void *image,
                               void *kernel, void *result) {
  bool forward = kind == kForward;
  const Plan &p = plan(kind, s, bf16);
  memory in(s.image(forward), engine(), image), out(s.image(!forward), engine(), result);
  p.primitive.execute(stream(), {{forward ? DNNL_ARG_SRC : DNNL_ARG_DIFF_DST, in},
                                 {DNNL_ARG_WEIGHTS, kernel_memory(p, s, kernel)},
                                 {forward ? DNNL_ARG_DST : DNNL_ARG_DIFF_SRC, out}});
  stream().wait();
  return ffi::Error::Success();
}

// x (N, H, W, in), k (3, 3, in, out) -> y (N, H, W, out)
static ffi::Error Forward(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> k,
                          ffi::ResultBuffer<ffi::F32> y, int64_t bf16) {
  auto d = x.dimensions();
  Shapes s(d[0], d[1], d[2], d[3], k.dimensions()[3]);
  return ImageToImage(kForward, s, bf16, x.typed_data(), k.typed_data(), y->typed_data());
}

// g (N, H, W, out), k (3, 3, in, out) -> dx (N, H, W, in)
static ffi::Error InputGradient(ffi::Buffer<ffi::F32> g, ffi::Buffer<ffi::F32> k,
                                ffi::ResultBuffer<ffi::F32> dx, int64_t bf16) {
  auto d = g.dimensions();
  Shapes s(d[0], d[1], d[2], k.dimensions()[2], d[3]);
  return ImageToImage(kInputGradient, s, bf16, g.typed_data(), k.typed_data(),
                      dx->typed_data());
}

// x (N, H, W, in), g (N, H, W, out) -> dk (3, 3, in, out)
static ffi::Error KernelGradient(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> g,
                                 ffi::ResultBuffer<ffi::F32> dk, int64_t bf16) {
  auto d = x.dimensions();
  Shapes s(d[0], d[1], d[2], d[3], g.dimensions()[3]);
  const Plan &p = plan(kKernelGradient, s, bf16);
  memory src(s.image(true), engine(), x.typed_data());
  memory diff_dst(s.image(false), engine(), g.typed_data());
  memory given(s.kernel(), engine(), dk->typed_data());
  bool reordered = p.kernel != s.kernel();  // then computed in oneDNN's layout, copied back
  memory diff_kernel = reordered ? memory(p.kernel, engine()) : given;
  p.primitive.execute(stream(), {{DNNL_ARG_SRC, src}, {DNNL_ARG_DIFF_DST, diff_dst},
                                 {DNNL_ARG_DIFF_WEIGHTS, diff_kernel}});
  if (reordered) dnnl::reorder(diff_kernel, given).execute(stream(), diff_kernel, given);
  stream().wait();
  return ffi::Error::Success();
}

#define DIGITNET_CONV_HANDLER(name, impl)                                    \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(name, impl,                                  \
                                ffi::Ffi::Bind()                             \
                                    .Arg<ffi::Buffer<ffi::F32>>()            \
                                    .Arg<ffi::Buffer<ffi::F32>>()            \
                                    .Ret<ffi::Buffer<ffi::F32>>()            \
                                    .Attr<int64_t>("bf16"));

DIGITNET_CONV_HANDLER(ConvForward, Forward)
DIGITNET_CONV_HANDLER(ConvInputGradient, InputGradient)
DIGITNET_CONV_HANDLER(ConvKernelGradient, KernelGradient)
