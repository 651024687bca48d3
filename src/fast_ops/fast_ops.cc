// CPU kernels for the ShuffleNetV1 fast convolution path, called by MindSpore as
// AOT custom ops (ops.Custom(func="lib.so:name", func_type="aot")).
//
// Why: on CPU, MindSpore 2.10 sends depthwise and dense 3x3 convolutions with few
// input channels to oneDNN's reference kernel, 20-100x slower than PyTorch.
//
// Every entry point has MindSpore's AOT signature
//   int f(int nparam, void **params, int *ndims, int64_t **shapes,
//         const char **dtypes, void *stream, void *extra)
// with the inputs first and the outputs after them, float32, NCHW, contiguous.
// All convolutions here are 3x3 with padding 1; the stride (1 or 2) is in the name.
// Output sizes follow Ho = (H - 1) / stride + 1.
//
// Built with portable flags (no -march=native): the hot loops are compiled for
// several x86-64 levels and the best one is picked at load time (target_clones).
//
// Threads: a small pool of its own, not OpenMP. MindSpore's CPU runtime keeps its
// own threads busy-waiting between kernels; an OpenMP team with spinning barriers
// next to them (2 cores, other processes) turned a 7 ms forward pass into 270 ms.
// Here the calling thread takes part in the work, work is handed out in chunks
// from an atomic counter, and idle workers sleep (after polling for a while, if
// SHUFFLENET_FAST_OPS_SPIN_US asks for it), so a late or descheduled worker never holds
// a kernel up.
#include <dlfcn.h>
#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <new>
#include <thread>
#include <type_traits>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(FAST_OPS_NO_CLONES)
#define FAST_OPS_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FAST_OPS_CLONES
#endif
#define FAST_OPS_INLINE inline __attribute__((always_inline))

namespace {

// ---------------------------------------------------------------------------
// Thread pool: parallel_for(n, fn) runs fn(0..n-1) on the caller and the workers.
// ---------------------------------------------------------------------------
struct Job {
  std::function<void(int64_t)> fn;
  int64_t total = 0;
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};
};

class Pool {
 public:
  // Never destroyed: worker threads are simply dropped at exit, and a forked child
  // (a data-loading process, say) starts over with fresh threads, never joining the
  // parent's (see after_fork_in_child).
  static Pool &instance() {
    static Pool *pool = new Pool();
    return *pool;
  }

  int threads() const { return threads_.load(); }

  void set_threads(int n) {
    std::lock_guard<std::mutex> busy(run_mutex_);
    stop_workers();
    threads_ = n < 1 ? 1 : n;
  }

  void parallel_for(int64_t total, const std::function<void(int64_t)> &fn) {
    if (total <= 0) return;
    std::unique_lock<std::mutex> busy(run_mutex_, std::try_to_lock);
    // Serial when single-threaded, tiny, or when another kernel holds the pool.
    if (!busy.owns_lock() || threads_ <= 1 || total == 1) {
      for (int64_t i = 0; i < total; ++i) fn(i);
      return;
    }
    start_workers();
    auto job = std::make_shared<Job>();
    job->fn = fn;
    job->total = total;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = job;
      ++generation_;
    }
    cv_.notify_all();
    work(*job);
    while (job->done.load(std::memory_order_acquire) < total) std::this_thread::yield();
    std::lock_guard<std::mutex> lock(mutex_);
    job_.reset();
  }

 private:
  Pool() {
    int n = 0;
    if (const char *env = std::getenv("SHUFFLENET_FAST_OPS_THREADS")) n = std::atoi(env);
    if (n <= 0) {
      cpu_set_t set;
      n = sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : 1;
    }
    threads_ = n < 1 ? 1 : n;
    if (const char *env = std::getenv("SHUFFLENET_FAST_OPS_SPIN_US")) {
      spin_us_ = std::max(0, std::min(std::atoi(env), 10000));
    }
    pthread_atfork(nullptr, nullptr, &Pool::after_fork_in_child);
  }

  // Only the forking thread lives on in the child: forget the parent's workers and
  // give the child fresh locks (one may have been held by a thread that is gone).
  static void after_fork_in_child() {
    Pool &pool = instance();
    pool.workers_ = new std::vector<std::thread>();  // the parent's thread objects are leaked on purpose
    new (&pool.run_mutex_) std::mutex();
    new (&pool.mutex_) std::mutex();
    new (&pool.cv_) std::condition_variable();
    new (&pool.job_) std::shared_ptr<Job>();
    pool.generation_ = 0;
    pool.stop_ = false;
  }

  static void work(Job &job) {
    for (;;) {
      const int64_t i = job.next.fetch_add(1, std::memory_order_relaxed);
      if (i >= job.total) return;
      job.fn(i);
      job.done.fetch_add(1, std::memory_order_release);
    }
  }

  void start_workers() {
    if (!workers_->empty()) return;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = false;
    }
    for (int t = 1; t < threads_; ++t) workers_->emplace_back([this] { worker_loop(); });
  }

  void stop_workers() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto &w : *workers_) w.join();
    workers_->clear();
  }

  void worker_loop() {
    uint64_t seen;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      seen = generation_;
    }
    for (;;) {
      if (spin_us_ > 0) {  // wait actively first (see spin_us_)
        const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(spin_us_);
        for (int i = 0; generation_.load(std::memory_order_acquire) == seen; ++i) {
#if defined(__x86_64__)
          _mm_pause();
#endif
          if ((i & 63) == 63 && std::chrono::steady_clock::now() > until) break;
        }
      }
      std::shared_ptr<Job> job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        cv_.wait(lock, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
        job = job_;
      }
      if (job) work(*job);
    }
  }

  std::atomic<int> threads_{1};
  std::mutex run_mutex_;  // one kernel at a time uses the workers
  std::mutex mutex_;      // guards job_, generation_, stop_
  std::condition_variable cv_;
  std::shared_ptr<Job> job_;
  std::atomic<uint64_t> generation_{0};
  bool stop_ = false;
  // SHUFFLENET_FAST_OPS_SPIN_US (default 0, at most 10000): how long an idle worker polls for
  // the next kernel before it sleeps. Waking a sleeping thread takes tens of microseconds
  // in a VM, a real share of a batch-1 kernel (1.0x g3: 5-7% of an inference); polling
  // costs a core's time that other processes may need, hence off unless asked for.
  int spin_us_ = 0;
  std::vector<std::thread> *workers_ = new std::vector<std::thread>();
};

void parallel_for(int64_t total, const std::function<void(int64_t)> &fn) {
  Pool::instance().parallel_for(total, fn);
}

// fn(0..planes-1), planes of plane_size elements grouped into tasks of up to about 32K
// elements: small planes (7x7, 14x14) one per task cost more in hand-out than in work.
// A tensor of 16K-64K elements (a layer at batch 1) is still cut into 4 tasks per thread
// of 4K elements or more, so that no thread sits idle; below 16K elements waking a worker
// costs more than the work, and the caller runs it alone.
template <typename Fn>
void parallel_for_planes(int64_t planes, int64_t plane_size, const Fn &fn) {
  const int64_t size = std::max<int64_t>(plane_size, 1);
  if (planes * size < (int64_t{1} << 14)) {
    for (int64_t p = 0; p < planes; ++p) fn(p);
    return;
  }
  const int64_t most = std::max<int64_t>(1, (int64_t{1} << 15) / size);
  const int64_t least = std::max<int64_t>(1, ((int64_t{1} << 12) + size - 1) / size);
  const int64_t even = (planes + 4 * Pool::instance().threads() - 1) / (4 * Pool::instance().threads());
  const int64_t per_task = std::max(std::min(even, most), std::min(least, most));
  parallel_for((planes + per_task - 1) / per_task, [&](int64_t t) {
    const int64_t end = std::min(planes, (t + 1) * per_task);
    for (int64_t p = t * per_task; p < end; ++p) fn(p);
  });
}

struct Dims {
  int64_t b, c, h, w;
};

FAST_OPS_INLINE Dims dims4(const int64_t *shape) { return {shape[0], shape[1], shape[2], shape[3]}; }

FAST_OPS_INLINE int out_size(int64_t in, int stride) { return static_cast<int>((in - 1) / stride + 1); }

bool is_f32(const char *dtype) { return std::strcmp(dtype, "float32") == 0 || std::strcmp(dtype, "float") == 0; }

bool is_i32(const char *dtype) { return std::strcmp(dtype, "int32") == 0 || std::strcmp(dtype, "int") == 0; }

// All params 4-D float32, except param `index` (if >= 0): a 1-D int32 channel permutation.
bool check(int nparam, int expected, int *ndims, const char **dtypes, int index = -1) {
  if (nparam != expected) return false;
  for (int i = 0; i < nparam; ++i) {
    if (i == index) {
      if (ndims[i] != 1 || !is_i32(dtypes[i])) return false;
    } else if (ndims[i] != 4 || !is_f32(dtypes[i])) {
      return false;
    }
  }
  return true;
}

// Whether perm (n entries) is a permutation of 0..n-1.
bool is_permutation(const int32_t *perm, int64_t n) {
  std::vector<char> seen(n, 0);
  for (int64_t i = 0; i < n; ++i) {
    if (perm[i] < 0 || perm[i] >= n || seen[perm[i]]) return false;
    seen[perm[i]] = 1;
  }
  return true;
}

// Per-thread scratch buffers (slot 0 and 1), grown on demand and kept between calls.
float *scratch(int slot, size_t n) {
  thread_local std::vector<float> bufs[2];
  std::vector<float> &buf = bufs[slot];
  if (buf.size() < n) buf.resize(n);
  return buf.data();
}

// Per-plane partial results of a pass, kept by the calling thread between calls.
double *plane_stats(size_t n) {
  thread_local std::vector<double> buf;
  if (buf.size() < n) buf.resize(n);
  return buf.data();
}

// A pass over a tensor in three steps: per-plane sums (plane(p)), their per-channel
// combination (channel(c)), then a per-plane pass that uses the combination (apply(p);
// NoApply: none), in one of two orders with the same results (batch normalisation, the
// depthwise weight gradient):
// * channel by channel (one task per channel, for large planes): a channel's planes are
//   still in the core's cache for the last step;
// * in memory order (for planes under 1024 values): a channel's planes lie C * H * W
//   apart, and going channel by channel jumped across pages at every small plane
//   (2.0x g3: BN forward and backward 1.4-1.8x as fast on 28x28, 14x14 and 7x7).
struct NoApply {
  void operator()(int64_t) const {}
};

// channel(0..C-1) after per-plane sums: in blocks of 64 channels, on the caller alone for a small tensor.
template <typename Channel>
void for_channels(const Dims &d, const Channel &channel) {
  constexpr int64_t kChannels = 64;
  if (d.b * d.c * d.h * d.w < (int64_t{1} << 14)) {
    for (int64_t c = 0; c < d.c; ++c) channel(c);
    return;
  }
  parallel_for((d.c + kChannels - 1) / kChannels, [&](int64_t t) {
    for (int64_t c = t * kChannels; c < std::min(d.c, (t + 1) * kChannels); ++c) channel(c);
  });
}

template <typename Plane, typename Channel, typename Apply>
void plane_channel_steps(const Dims &d, const Plane &plane, const Channel &channel, const Apply &apply) {
  const int64_t hw = d.h * d.w, planes = d.b * d.c;
  if (hw >= 1024) {
    parallel_for(d.c, [&](int64_t c) {
      for (int64_t b = 0; b < d.b; ++b) plane(b * d.c + c);
      channel(c);
      if constexpr (!std::is_same_v<Apply, NoApply>) {
        for (int64_t b = 0; b < d.b; ++b) apply(b * d.c + c);
      }
    });
    return;
  }
  parallel_for_planes(planes, hw, plane);
  for_channels(d, channel);
  if constexpr (!std::is_same_v<Apply, NoApply>) parallel_for_planes(planes, hw, apply);
}

// ---------------------------------------------------------------------------
// Zero-padded copies of one H x W plane.
//   stride 1: P is (H + 2) x (W + 2), P[r][q] = x[r - 1][q - 1] (0 outside).
//   stride 2: the padded columns split by parity, E[r][j] = padded[r][2j] and
//             O[r][j] = padded[r][2j + 1], each (H + 3) x (Wo + 1), so that the
//             three taps of output column j read E[j], O[j], E[j + 1].
// ---------------------------------------------------------------------------
FAST_OPS_INLINE void pad_plane_s1(const float *x, float *p, int H, int W) {
  const int pw = W + 2;
  std::memset(p, 0, sizeof(float) * pw);
  for (int r = 0; r < H; ++r) {
    float *row = p + (r + 1) * pw;
    row[0] = 0.f;
    std::memcpy(row + 1, x + static_cast<int64_t>(r) * W, sizeof(float) * W);
    row[W + 1] = 0.f;
  }
  std::memset(p + (H + 1) * pw, 0, sizeof(float) * pw);
}

FAST_OPS_INLINE void pad_plane_s2(const float *x, float *e, float *o, int H, int W, int Wo) {
  const int pw = Wo + 1;
  const int rows = H + 3;
  for (int r = 0; r < rows; ++r) {
    float *er = e + r * pw;
    float *orow = o + r * pw;
    const int src = r - 1;
    if (src < 0 || src >= H) {
      std::memset(er, 0, sizeof(float) * pw);
      std::memset(orow, 0, sizeof(float) * pw);
      continue;
    }
    const float *xr = x + static_cast<int64_t>(src) * W;
    // padded column q = iw + 1: even q = 2j -> iw = 2j - 1, odd q = 2j + 1 -> iw = 2j.
    er[0] = 0.f;
    for (int j = 1; j < pw; ++j) {
      const int iw = 2 * j - 1;
      er[j] = iw < W ? xr[iw] : 0.f;
    }
    for (int j = 0; j < pw; ++j) {
      const int iw = 2 * j;
      orow[j] = iw < W ? xr[iw] : 0.f;
    }
  }
}

constexpr int64_t kDotBlock = 2048;  // float partial sums over at most this many products

// ---------------------------------------------------------------------------
// Depthwise 3x3 forward on one plane. w points at 9 weights (kh * 3 + kw).
// ---------------------------------------------------------------------------
// Stride 1 works on the padded plane as one flat array (row stride W + 2): output
// q = oh * (W + 2) + ow reads pad[q + kh * (W + 2) + kw]. The two extra columns per
// row are computed and dropped, which keeps the loop long and vectorised even for
// 7x7 and 14x14 planes. pad holds (H + 2) * (W + 2) + 2 + H * (W + 2) floats.
FAST_OPS_CLONES void dw_plane_fwd_s1(const float *x, const float *w, float *y, int H, int W, float *pad,
                                     float bias = 0.f) {
  pad_plane_s1(x, pad, H, W);
  const int pw = W + 2;
  const int64_t n = static_cast<int64_t>(H) * pw;
  pad[(H + 2) * pw] = 0.f;
  pad[(H + 2) * pw + 1] = 0.f;
  float *t = pad + (H + 2) * pw + 2;
  const float w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3], w4 = w[4], w5 = w[5], w6 = w[6], w7 = w[7],
              w8 = w[8];
  const float *r0 = pad, *r1 = pad + pw, *r2 = pad + 2 * pw;
#pragma omp simd
  for (int64_t q = 0; q < n; ++q) {
    t[q] = bias + w0 * r0[q] + w1 * r0[q + 1] + w2 * r0[q + 2] + w3 * r1[q] + w4 * r1[q + 1] + w5 * r1[q + 2] +
           w6 * r2[q] + w7 * r2[q + 1] + w8 * r2[q + 2];
  }
  for (int oh = 0; oh < H; ++oh) {
    std::memcpy(y + static_cast<int64_t>(oh) * W, t + static_cast<int64_t>(oh) * pw, sizeof(float) * W);
  }
}

FAST_OPS_CLONES void dw_plane_fwd_s2(const float *x, const float *w, float *y, int H, int W, float *pad,
                                     float bias = 0.f) {
  const int Ho = out_size(H, 2), Wo = out_size(W, 2);
  const int pw = Wo + 1;
  float *e = pad;
  float *o = pad + (H + 3) * pw;
  pad_plane_s2(x, e, o, H, W, Wo);
  const float w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3], w4 = w[4], w5 = w[5], w6 = w[6], w7 = w[7],
              w8 = w[8];
  for (int oh = 0; oh < Ho; ++oh) {
    const int r = 2 * oh;  // padded row of tap kh = 0
    const float *e0 = e + r * pw, *e1 = e0 + pw, *e2 = e1 + pw;
    const float *o0 = o + r * pw, *o1 = o0 + pw, *o2 = o1 + pw;
    float *yr = y + static_cast<int64_t>(oh) * Wo;
#pragma omp simd
    for (int ow = 0; ow < Wo; ++ow) {
      yr[ow] = bias + w0 * e0[ow] + w1 * o0[ow] + w2 * e0[ow + 1] + w3 * e1[ow] + w4 * o1[ow] + w5 * e1[ow + 1] +
               w6 * e2[ow] + w7 * o2[ow] + w8 * e2[ow + 1];
    }
  }
}

// ---------------------------------------------------------------------------
// Depthwise 3x3 backward on one plane: dx (input gradient) and the 9 weight
// gradient sums added to acc.
// ---------------------------------------------------------------------------
FAST_OPS_CLONES void dw_plane_bwd_s1(const float *x, const float *dy, const float *w, float *dx, double *acc, int H,
                                     int W, float *pad, float *pad_dy) {
  // Input gradient: correlation of dy with the flipped kernel, stride 1, pad 1.
  float flipped[9];
  for (int k = 0; k < 9; ++k) flipped[k] = w[8 - k];
  dw_plane_fwd_s1(dy, flipped, dx, H, W, pad_dy);
  // Weight gradient: dw[kh][kw] = sum dy[oh][ow] * xpad[oh + kh][ow + kw], flat as in
  // the forward: dy laid out with row stride W + 2, zeros in the two extra columns.
  pad_plane_s1(x, pad, H, W);
  const int pw = W + 2;
  const int64_t n = static_cast<int64_t>(H) * pw;
  pad[(H + 2) * pw] = 0.f;
  pad[(H + 2) * pw + 1] = 0.f;
  float *g = pad_dy;
  for (int oh = 0; oh < H; ++oh) {
    float *row = g + static_cast<int64_t>(oh) * pw;
    std::memcpy(row, dy + static_cast<int64_t>(oh) * W, sizeof(float) * W);
    row[W] = 0.f;
    row[W + 1] = 0.f;
  }
  const float *r0 = pad, *r1 = pad + pw, *r2 = pad + 2 * pw;
  double sums[9] = {0, 0, 0, 0, 0, 0, 0, 0, 0};
  for (int64_t q0 = 0; q0 < n; q0 += kDotBlock) {
    const int64_t q1 = std::min(n, q0 + kDotBlock);
    float b0 = 0.f, b1 = 0.f, b2 = 0.f, b3 = 0.f, b4 = 0.f, b5 = 0.f, b6 = 0.f, b7 = 0.f, b8 = 0.f;
#pragma omp simd reduction(+ : b0, b1, b2, b3, b4, b5, b6, b7, b8)
    for (int64_t q = q0; q < q1; ++q) {
      const float gv = g[q];
      b0 += gv * r0[q];
      b1 += gv * r0[q + 1];
      b2 += gv * r0[q + 2];
      b3 += gv * r1[q];
      b4 += gv * r1[q + 1];
      b5 += gv * r1[q + 2];
      b6 += gv * r2[q];
      b7 += gv * r2[q + 1];
      b8 += gv * r2[q + 2];
    }
    sums[0] += b0; sums[1] += b1; sums[2] += b2; sums[3] += b3; sums[4] += b4;
    sums[5] += b5; sums[6] += b6; sums[7] += b7; sums[8] += b8;
  }
  for (int k = 0; k < 9; ++k) acc[k] += sums[k];
}

FAST_OPS_CLONES void dw_plane_bwd_s2(const float *x, const float *dy, const float *w, float *dx, double *acc, int H,
                                     int W, float *pad, float *pad_dy) {
  const int Ho = out_size(H, 2), Wo = out_size(W, 2);
  // dy zero-padded by one row and one column at the end: (Ho + 1) x (Wo + 1).
  const int dw_ = Wo + 1;
  for (int r = 0; r < Ho; ++r) {
    std::memcpy(pad_dy + r * dw_, dy + static_cast<int64_t>(r) * Wo, sizeof(float) * Wo);
    pad_dy[r * dw_ + Wo] = 0.f;
  }
  std::memset(pad_dy + Ho * dw_, 0, sizeof(float) * dw_);
  // Input gradient. With output row/col m, n: even input row 2m gets tap kh = 1 of
  // output row m; odd row 2m + 1 gets kh = 0 of row m + 1 and kh = 2 of row m
  // (likewise for columns). Input row ih = 2m + p, column iw = 2n + q.
  float *ev = pad_dy + (Ho + 1) * dw_;  // even-column results of one row
  float *od = ev + dw_;                 // odd-column results of one row
  const float w00 = w[0], w01 = w[1], w02 = w[2], w10 = w[3], w11 = w[4], w12 = w[5], w20 = w[6], w21 = w[7],
              w22 = w[8];
  const int We = (W + 1) / 2, Wd = W / 2;  // even / odd input columns
  for (int ih = 0; ih < H; ++ih) {
    const int m = ih / 2;
    const float *g0 = pad_dy + m * dw_;  // output row m
    const float *g1 = g0 + dw_;          // output row m + 1 (zero row past the end)
    float *dxr = dx + static_cast<int64_t>(ih) * W;
    if ((ih & 1) == 0) {
#pragma omp simd
      for (int n = 0; n < We; ++n) ev[n] = w11 * g0[n];
#pragma omp simd
      for (int n = 0; n < Wd; ++n) od[n] = w10 * g0[n + 1] + w12 * g0[n];
    } else {
#pragma omp simd
      for (int n = 0; n < We; ++n) ev[n] = w01 * g1[n] + w21 * g0[n];
#pragma omp simd
      for (int n = 0; n < Wd; ++n) od[n] = w00 * g1[n + 1] + w02 * g1[n] + w20 * g0[n + 1] + w22 * g0[n];
    }
    for (int n = 0; n < Wd; ++n) {
      dxr[2 * n] = ev[n];
      dxr[2 * n + 1] = od[n];
    }
    if (We > Wd) dxr[W - 1] = ev[We - 1];
  }
  // Weight gradient from the parity-split padded input.
  const int pw = Wo + 1;
  float *e = pad;
  float *o = pad + (H + 3) * pw;
  pad_plane_s2(x, e, o, H, W, Wo);
  float a0 = 0.f, a1 = 0.f, a2 = 0.f, a3 = 0.f, a4 = 0.f, a5 = 0.f, a6 = 0.f, a7 = 0.f, a8 = 0.f;
  for (int oh = 0; oh < Ho; ++oh) {
    const int r = 2 * oh;
    const float *e0 = e + r * pw, *e1 = e0 + pw, *e2 = e1 + pw;
    const float *o0 = o + r * pw, *o1 = o0 + pw, *o2 = o1 + pw;
    const float *g = dy + static_cast<int64_t>(oh) * Wo;
    float b0 = 0.f, b1 = 0.f, b2 = 0.f, b3 = 0.f, b4 = 0.f, b5 = 0.f, b6 = 0.f, b7 = 0.f, b8 = 0.f;
#pragma omp simd reduction(+ : b0, b1, b2, b3, b4, b5, b6, b7, b8)
    for (int ow = 0; ow < Wo; ++ow) {
      const float gv = g[ow];
      b0 += gv * e0[ow];
      b1 += gv * o0[ow];
      b2 += gv * e0[ow + 1];
      b3 += gv * e1[ow];
      b4 += gv * o1[ow];
      b5 += gv * e1[ow + 1];
      b6 += gv * e2[ow];
      b7 += gv * o2[ow];
      b8 += gv * e2[ow + 1];
    }
    a0 += b0; a1 += b1; a2 += b2; a3 += b3; a4 += b4; a5 += b5; a6 += b6; a7 += b7; a8 += b8;
  }
  acc[0] += a0; acc[1] += a1; acc[2] += a2; acc[3] += a3; acc[4] += a4;
  acc[5] += a5; acc[6] += a6; acc[7] += a7; acc[8] += a8;
}

size_t pad_floats(int H, int W, int stride) {
  if (stride == 1) return static_cast<size_t>(2 * H + 2) * (W + 2) + 2;
  const int Wo = out_size(W, 2);
  return 2 * static_cast<size_t>(H + 3) * (Wo + 1);
}

size_t pad_dy_floats(int H, int W, int stride) {
  if (stride == 1) return static_cast<size_t>(2 * H + 2) * (W + 2) + 2;
  const int Ho = out_size(H, 2), Wo = out_size(W, 2);
  return static_cast<size_t>(Ho + 3) * (Wo + 1);
}

// Depthwise forward: inputs x (B, C, H, W), w (C, 1, 3, 3), perm (C,) int32; output
// y (B, C, Ho, Wo). Output channel c reads input channel perm[c]: a channel shuffle
// fused into the convolution (identity perm: a plain depthwise convolution).
int dw_forward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, int stride) {
  if (!check(nparam, 4, ndims, dtypes, 2)) return 1;
  const Dims d = dims4(shapes[0]);
  const float *x = static_cast<const float *>(params[0]);
  const float *w = static_cast<const float *>(params[1]);
  const int32_t *perm = static_cast<const int32_t *>(params[2]);
  float *y = static_cast<float *>(params[3]);
  const int H = static_cast<int>(d.h), W = static_cast<int>(d.w);
  const int Ho = out_size(H, stride), Wo = out_size(W, stride);
  if (shapes[1][0] != d.c || shapes[2][0] != d.c || shapes[3][2] != Ho || shapes[3][3] != Wo) return 2;
  if (!is_permutation(perm, d.c)) return 3;
  const int64_t planes = d.b * d.c;
  const size_t pad_n = pad_floats(H, W, stride);
  parallel_for_planes(planes, H * W, [&](int64_t p) {
    float *pad = scratch(0, pad_n);
    const int64_t c = p % d.c;
    const float *xp = x + (p - c + perm[c]) * H * W;
    float *yp = y + p * Ho * Wo;
    if (stride == 1) {
      dw_plane_fwd_s1(xp, w + c * 9, yp, H, W, pad);
    } else {
      dw_plane_fwd_s2(xp, w + c * 9, yp, H, W, pad);
    }
  });
  return 0;
}

// Depthwise backward: inputs x (B, C, H, W), w (C, 1, 3, 3), perm (C,) int32,
// dy (B, C, Ho, Wo); outputs dx (B, C, H, W) (in x's channel order), dw (C, 1, 3, 3).
// Per plane dx and 9 weight-gradient sums, then per channel the sums over the images, in
// image order (plane_channel_steps picks the order of the planes).
int dw_backward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, int stride) {
  if (!check(nparam, 6, ndims, dtypes, 2)) return 1;
  const Dims d = dims4(shapes[0]);
  const float *x = static_cast<const float *>(params[0]);
  const float *w = static_cast<const float *>(params[1]);
  const int32_t *perm = static_cast<const int32_t *>(params[2]);
  const float *dy = static_cast<const float *>(params[3]);
  float *dx = static_cast<float *>(params[4]);
  float *dw = static_cast<float *>(params[5]);
  const int H = static_cast<int>(d.h), W = static_cast<int>(d.w);
  const int Ho = out_size(H, stride), Wo = out_size(W, stride);
  if (shapes[3][2] != Ho || shapes[3][3] != Wo || shapes[1][0] != d.c || shapes[2][0] != d.c) return 2;
  if (!is_permutation(perm, d.c)) return 3;
  const size_t pad_n = pad_floats(H, W, stride), pad_dy_n = pad_dy_floats(H, W, stride);
  double *sums = plane_stats(static_cast<size_t>(9 * d.b * d.c));
  auto plane = [&](int64_t p) {
    const int64_t c = p % d.c;
    const int64_t q = p - c + perm[c];  // the input plane it reads (perm: one writer per dx plane)
    double *acc = sums + 9 * p;
    std::fill(acc, acc + 9, 0.0);
    if (stride == 1) {
      dw_plane_bwd_s1(x + q * H * W, dy + p * Ho * Wo, w + c * 9, dx + q * H * W, acc, H, W, scratch(0, pad_n),
                      scratch(1, pad_dy_n));
    } else {
      dw_plane_bwd_s2(x + q * H * W, dy + p * Ho * Wo, w + c * 9, dx + q * H * W, acc, H, W, scratch(0, pad_n),
                      scratch(1, pad_dy_n));
    }
  };
  auto channel = [&](int64_t c) {
    double acc[9] = {0, 0, 0, 0, 0, 0, 0, 0, 0};
    for (int64_t b = 0; b < d.b; ++b) {
      for (int k = 0; k < 9; ++k) acc[k] += sums[9 * (b * d.c + c) + k];
    }
    for (int k = 0; k < 9; ++k) dw[c * 9 + k] = static_cast<float>(acc[k]);
  };
  plane_channel_steps(d, plane, channel, NoApply());
  return 0;
}

// ---------------------------------------------------------------------------
// im2col / col2im for a dense 3x3 convolution (pad 1): cols (B, C * 9, Ho * Wo),
// row index c * 9 + kh * 3 + kw, the order of a (O, C, 3, 3) weight flattened.
// ---------------------------------------------------------------------------
FAST_OPS_CLONES void im2col_plane(const float *x, float *cols, int H, int W, int stride, int64_t row_stride,
                                  float *pad) {
  const int Ho = out_size(H, stride), Wo = out_size(W, stride);
  if (stride == 1) {
    pad_plane_s1(x, pad, H, W);
    const int pw = W + 2;
    for (int kh = 0; kh < 3; ++kh) {
      for (int kw = 0; kw < 3; ++kw) {
        float *dst = cols + (kh * 3 + kw) * row_stride;
        for (int oh = 0; oh < Ho; ++oh) {
          std::memcpy(dst + oh * Wo, pad + (oh + kh) * pw + kw, sizeof(float) * Wo);
        }
      }
    }
    return;
  }
  const int pw = Wo + 1;
  float *e = pad;
  float *o = pad + (H + 3) * pw;
  pad_plane_s2(x, e, o, H, W, Wo);
  for (int kh = 0; kh < 3; ++kh) {
    for (int kw = 0; kw < 3; ++kw) {
      float *dst = cols + (kh * 3 + kw) * row_stride;
      // kw = 0: E[j], kw = 1: O[j], kw = 2: E[j + 1].
      const float *src = (kw == 1 ? o : e) + (kw == 2 ? 1 : 0);
      for (int oh = 0; oh < Ho; ++oh) {
        std::memcpy(dst + oh * Wo, src + (2 * oh + kh) * pw, sizeof(float) * Wo);
      }
    }
  }
}

FAST_OPS_CLONES void col2im_plane(const float *cols, float *dx, int H, int W, int stride, int64_t row_stride,
                                  float *pad) {
  const int Ho = out_size(H, stride), Wo = out_size(W, stride);
  const int pw = W + 2;
  std::memset(pad, 0, sizeof(float) * (H + 2) * pw);
  for (int kh = 0; kh < 3; ++kh) {
    for (int kw = 0; kw < 3; ++kw) {
      const float *src = cols + (kh * 3 + kw) * row_stride;
      for (int oh = 0; oh < Ho; ++oh) {
        float *dst = pad + (oh * stride + kh) * pw + kw;
        const float *s = src + oh * Wo;
        if (stride == 1) {
#pragma omp simd
          for (int ow = 0; ow < Wo; ++ow) dst[ow] += s[ow];
        } else {
          for (int ow = 0; ow < Wo; ++ow) dst[2 * ow] += s[ow];
        }
      }
    }
  }
  for (int r = 0; r < H; ++r) {
    std::memcpy(dx + static_cast<int64_t>(r) * W, pad + (r + 1) * pw + 1, sizeof(float) * W);
  }
}

// im2col: input x (B, C, H, W); output cols (B, C * 9, Ho * Wo) given as 4-D (B, C * 9, Ho, Wo).
int im2col(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, int stride) {
  if (!check(nparam, 2, ndims, dtypes)) return 1;
  const Dims d = dims4(shapes[0]);
  const int H = static_cast<int>(d.h), W = static_cast<int>(d.w);
  const int Ho = out_size(H, stride), Wo = out_size(W, stride);
  if (shapes[1][1] != d.c * 9 || shapes[1][2] != Ho || shapes[1][3] != Wo) return 2;
  const float *x = static_cast<const float *>(params[0]);
  float *cols = static_cast<float *>(params[1]);
  const int64_t planes = d.b * d.c;
  const int64_t hw = static_cast<int64_t>(Ho) * Wo;
  const size_t pad_n = pad_floats(H, W, stride);
  parallel_for_planes(planes, H * W, [&](int64_t p) {
    im2col_plane(x + p * H * W, cols + p * 9 * hw, H, W, stride, hw, scratch(0, pad_n));
  });
  return 0;
}

// col2im: inputs cols (B, C * 9, Ho, Wo), x (B, C, H, W) (for its shape only); output dx (B, C, H, W).
int col2im(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, int stride) {
  if (!check(nparam, 3, ndims, dtypes)) return 1;
  const Dims d = dims4(shapes[1]);
  const int H = static_cast<int>(d.h), W = static_cast<int>(d.w);
  const int Ho = out_size(H, stride), Wo = out_size(W, stride);
  if (shapes[0][1] != d.c * 9 || shapes[0][2] != Ho || shapes[0][3] != Wo) return 2;
  const float *cols = static_cast<const float *>(params[0]);
  float *dx = static_cast<float *>(params[2]);
  const int64_t planes = d.b * d.c;
  const int64_t hw = static_cast<int64_t>(Ho) * Wo;
  const size_t pad_n = static_cast<size_t>(H + 2) * (W + 2);
  parallel_for_planes(planes, H * W, [&](int64_t p) {
    col2im_plane(cols + p * 9 * hw, dx + p * H * W, H, W, stride, hw, scratch(0, pad_n));
  });
  return 0;
}

// ---------------------------------------------------------------------------
// Batch normalisation per channel over (B, H, W), optionally fused with the ReLU
// that follows it. Statistics: per-plane mean and sum of squared deviations (the
// plane is in cache for the second look), planes combined exactly (Chan et al.),
// in double. Variance is the biased one (what the normalisation uses); the caller
// turns it into the unbiased one for the moving average, like MindSpore's kernel.
// ---------------------------------------------------------------------------
constexpr int kBlock = 1024;  // float partial sums over at most this many values

FAST_OPS_CLONES float block_sum(const float *x, int n) {
  float s = 0.f;
#pragma omp simd reduction(+ : s)
  for (int i = 0; i < n; ++i) s += x[i];
  return s;
}

FAST_OPS_CLONES float block_sq_dev(const float *x, int n, float mean) {
  float s = 0.f;
#pragma omp simd reduction(+ : s)
  for (int i = 0; i < n; ++i) {
    const float d = x[i] - mean;
    s += d * d;
  }
  return s;
}

// sum(g) and sum(g * (x - mean)) with g = dy masked by y > 0 when relu.
FAST_OPS_CLONES void block_grad_sums(const float *x, const float *y, const float *dy, int n, float mean, bool relu,
                                     float *sg, float *sgx) {
  float a = 0.f, b = 0.f;
  if (relu) {
#pragma omp simd reduction(+ : a, b)
    for (int i = 0; i < n; ++i) {
      const float g = y[i] > 0.f ? dy[i] : 0.f;
      a += g;
      b += g * (x[i] - mean);
    }
  } else {
#pragma omp simd reduction(+ : a, b)
    for (int i = 0; i < n; ++i) {
      a += dy[i];
      b += dy[i] * (x[i] - mean);
    }
  }
  *sg = a;
  *sgx = b;
}

FAST_OPS_CLONES void affine_plane(const float *x, float *y, int64_t n, float scale, float shift, bool relu) {
  if (relu) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
      const float v = x[i] * scale + shift;
      y[i] = v > 0.f ? v : 0.f;
    }
  } else {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) y[i] = x[i] * scale + shift;
  }
}

// y = max(x * scale + shift + r, 0): a BN output joined to a residual (ShuffleNet's stride-1 join).
FAST_OPS_CLONES void affine_add_relu_plane(const float *x, const float *r, float *y, int64_t n, float scale,
                                           float shift) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i] * scale + shift + r[i];
    y[i] = v > 0.f ? v : 0.f;
  }
}

// grad_plane with relu, also storing g (the masked dy: the join's residual gradient) in gr.
FAST_OPS_CLONES void grad_plane_store(const float *x, const float *y, const float *dy, float *dx, float *gr, int64_t n,
                                      float mean, float k, float a, float c) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const float g = y[i] > 0.f ? dy[i] : 0.f;
    gr[i] = g;
    dx[i] = k * (g - a - (x[i] - mean) * c);
  }
}

// dx = k * (g - a - (x - mean) * c), g = dy masked by y > 0 when relu.
FAST_OPS_CLONES void grad_plane(const float *x, const float *y, const float *dy, float *dx, int64_t n, float mean,
                                float k, float a, float c, bool relu) {
  if (relu) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
      const float g = y[i] > 0.f ? dy[i] : 0.f;
      dx[i] = k * (g - a - (x[i] - mean) * c);
    }
  } else {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) dx[i] = k * (dy[i] - a - (x[i] - mean) * c);
  }
}

bool check_bn(int nparam, int expected, int *ndims, const char **dtypes, int64_t **shapes, const char *layout) {
  // layout: one letter per param, 'T' = (B, C, H, W) float32, 'c' = (C,) float32,
  // 'h' = (2,) float32 hyper-parameters (eps, momentum of the batch statistic).
  if (nparam != expected || static_cast<int>(std::strlen(layout)) != nparam) return false;
  int64_t channels = -1;
  for (int i = 0; i < nparam; ++i) {
    if (!is_f32(dtypes[i])) return false;
    if (layout[i] == 'T') {
      if (ndims[i] != 4) return false;
      if (channels < 0) channels = shapes[i][1];
      if (shapes[i][1] != channels) return false;
    }
  }
  for (int i = 0; i < nparam; ++i) {
    if (layout[i] == 'c' && (ndims[i] != 1 || shapes[i][0] != channels)) return false;
    if (layout[i] == 'h' && (ndims[i] != 1 || shapes[i][0] != 2)) return false;
  }
  return true;
}

// The steps of a training BN forward (plane_channel_steps runs them): each plane's sum and
// squared deviations from its own mean (the plane is in cache for the second look), planes
// combined exactly (Chan et al.) in double, then the normalisation (mode as below). Shared
// by the BN kernel and the 1x1 convolution + BN kernel, which takes each plane's sums while
// the convolution's output is still in cache.
struct BnForward {
  Dims d;
  int64_t hw, n;
  const float *x, *gamma, *beta, *moving_mean, *moving_var, *residual;
  float eps;
  double momentum;
  bool relu;
  float *y, *mean_out, *var_out, *moving_mean_out, *moving_var_out;
  double *sums, *m2s, *means, *scale, *shift;

  // bn: gamma, beta, moving_mean, moving_var, hyper (eps, momentum) in a row; out: batch mean,
  // batch variance, new moving mean, new moving variance in a row.
  BnForward(const Dims &dims, const float *x_, void **bn, const float *residual_, bool relu_, float *y_, void **out)
      : d(dims), hw(dims.h * dims.w), n(dims.b * dims.h * dims.w), x(x_), residual(residual_), relu(relu_), y(y_) {
    gamma = static_cast<const float *>(bn[0]), beta = static_cast<const float *>(bn[1]);
    moving_mean = static_cast<const float *>(bn[2]), moving_var = static_cast<const float *>(bn[3]);
    eps = static_cast<const float *>(bn[4])[0];
    momentum = static_cast<const float *>(bn[4])[1];
    mean_out = static_cast<float *>(out[0]), var_out = static_cast<float *>(out[1]);
    moving_mean_out = static_cast<float *>(out[2]), moving_var_out = static_cast<float *>(out[3]);
    const int64_t planes = d.b * d.c;
    sums = plane_stats(static_cast<size_t>(3 * planes + 2 * d.c));
    m2s = sums + planes, means = m2s + planes, scale = means + planes, shift = scale + d.c;
  }

  void plane(int64_t p) const {
    const float *xp = x + p * hw;
    double s = 0.0;
    for (int64_t i = 0; i < hw; i += kBlock) {
      s += block_sum(xp + i, static_cast<int>(std::min<int64_t>(kBlock, hw - i)));
    }
    const double pm = s / static_cast<double>(hw);
    double m2 = 0.0;
    for (int64_t i = 0; i < hw; i += kBlock) {
      m2 += block_sq_dev(xp + i, static_cast<int>(std::min<int64_t>(kBlock, hw - i)), static_cast<float>(pm));
    }
    sums[p] = s, m2s[p] = m2, means[p] = pm;
  }

  void channel(int64_t c) const {
    double total = 0.0, m2 = 0.0;
    for (int64_t b = 0; b < d.b; ++b) total += sums[b * d.c + c], m2 += m2s[b * d.c + c];
    const double mean = total / static_cast<double>(n);
    for (int64_t b = 0; b < d.b; ++b) {
      const double dev = means[b * d.c + c] - mean;
      m2 += static_cast<double>(hw) * dev * dev;
    }
    const double var = m2 / static_cast<double>(n);
    const double invstd = 1.0 / std::sqrt(var + static_cast<double>(eps));
    scale[c] = static_cast<float>(gamma[c] * invstd);
    shift[c] = static_cast<float>(beta[c] - mean * gamma[c] * invstd);
    mean_out[c] = static_cast<float>(mean);
    var_out[c] = static_cast<float>(var);
    const double unbiased = n > 1 ? m2 / static_cast<double>(n - 1) : var;
    moving_mean_out[c] = static_cast<float>((1.0 - momentum) * moving_mean[c] + momentum * mean);
    moving_var_out[c] = static_cast<float>((1.0 - momentum) * moving_var[c] + momentum * unbiased);
  }

  void apply(int64_t p) const {
    const int64_t c = p % d.c;
    if (residual != nullptr) {
      affine_add_relu_plane(x + p * hw, residual + p * hw, y + p * hw, hw, static_cast<float>(scale[c]),
                            static_cast<float>(shift[c]));
    } else {
      affine_plane(x + p * hw, y + p * hw, hw, static_cast<float>(scale[c]), static_cast<float>(shift[c]), relu);
    }
  }

  void run() const {
    plane_channel_steps(d, [this](int64_t p) { plane(p); }, [this](int64_t c) { channel(c); },
                        [this](int64_t p) { apply(p); });
  }
};

// Training forward: inputs x, gamma, beta, moving_mean, moving_var, hyper (eps, momentum);
// outputs y, mean, var (biased: the normalisation's), and the updated moving mean and
// variance: (1 - momentum) * old + momentum * batch, with the unbiased batch variance.
// mode: 0 BN, 1 BN then ReLU, 2 the join relu(BN(x) + residual), with the residual
// (the shape of x) as a 7th input.
int bn_train_forward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, int mode) {
  const bool join = mode == 2;
  if (!check_bn(nparam, join ? 12 : 11, ndims, dtypes, shapes, join ? "TcccchTTcccc" : "TcccchTcccc")) return 1;
  if (join) {
    for (int j = 0; j < 4; ++j) {
      if (shapes[6][j] != shapes[0][j]) return 2;
    }
  }
  const int out = join ? 7 : 6;  // the first output
  BnForward(dims4(shapes[0]), static_cast<const float *>(params[0]), params + 1,
            join ? static_cast<const float *>(params[6]) : nullptr, mode != 0, static_cast<float *>(params[out]),
            params + out + 1)
      .run();
  return 0;
}

// The steps of a BN backward, training (batch statistics) or inference (fixed statistics):
// per plane sum(g) and sum(g * (x - mean)) (g: dy, masked by the ReLU when there is one),
// their per-channel combination (dgamma, dbeta and the coefficients of dx), then dx.
struct BnBackward {
  Dims d;
  int64_t hw, n;
  const float *x, *gamma, *mean_in, *var_in, *y, *dy;
  float eps;
  bool relu, training;
  float *dgamma, *dbeta;
  double *sgs, *sgxs, *ks, *as, *cs;

  // in: x, gamma, mean, var, hyper, y, dy in a row.
  BnBackward(const Dims &dims, void **in, bool relu_, bool training_, float *dgamma_, float *dbeta_)
      : d(dims), hw(dims.h * dims.w), n(dims.b * dims.h * dims.w), relu(relu_), training(training_),
        dgamma(dgamma_), dbeta(dbeta_) {
    x = static_cast<const float *>(in[0]), gamma = static_cast<const float *>(in[1]);
    mean_in = static_cast<const float *>(in[2]), var_in = static_cast<const float *>(in[3]);
    eps = static_cast<const float *>(in[4])[0];
    y = static_cast<const float *>(in[5]), dy = static_cast<const float *>(in[6]);
    const int64_t planes = d.b * d.c;
    sgs = plane_stats(static_cast<size_t>(2 * planes + 3 * d.c));
    sgxs = sgs + planes, ks = sgxs + planes, as = ks + d.c, cs = as + d.c;
  }

  void plane(int64_t p) const {
    const int64_t off = p * hw;
    const float mean = mean_in[p % d.c];
    double sg = 0.0, sgx = 0.0;
    for (int64_t i = 0; i < hw; i += kBlock) {
      float a, bb;
      block_grad_sums(x + off + i, y + off + i, dy + off + i, static_cast<int>(std::min<int64_t>(kBlock, hw - i)),
                      mean, relu, &a, &bb);
      sg += a;
      sgx += bb;
    }
    sgs[p] = sg, sgxs[p] = sgx;
  }

  void channel(int64_t c) const {
    const double invstd = 1.0 / std::sqrt(static_cast<double>(var_in[c]) + static_cast<double>(eps));
    double sg = 0.0, sgx = 0.0;
    for (int64_t b = 0; b < d.b; ++b) sg += sgs[b * d.c + c], sgx += sgxs[b * d.c + c];
    const double g_gamma = sgx * invstd;
    dbeta[c] = static_cast<float>(sg);
    dgamma[c] = static_cast<float>(g_gamma);
    ks[c] = static_cast<float>(gamma[c] * invstd);
    as[c] = training ? static_cast<float>(sg / static_cast<double>(n)) : 0.f;
    cs[c] = training ? static_cast<float>(g_gamma * invstd / static_cast<double>(n)) : 0.f;
  }

  // Plane p of dx into dxp (and, for the join, of the residual's gradient into drp).
  void apply(int64_t p, float *dxp, float *drp) const {
    const int64_t c = p % d.c, off = p * hw;
    if (drp != nullptr) {
      grad_plane_store(x + off, y + off, dy + off, dxp, drp, hw, mean_in[c], static_cast<float>(ks[c]),
                       static_cast<float>(as[c]), static_cast<float>(cs[c]));
    } else {
      grad_plane(x + off, y + off, dy + off, dxp, hw, mean_in[c], static_cast<float>(ks[c]),
                 static_cast<float>(as[c]), static_cast<float>(cs[c]), relu);
    }
  }
};

// Backward, training (batch statistics) or inference (fixed statistics):
// inputs x, gamma, mean, var, hyper, y, dy; outputs dx, dgamma, dbeta.
// mode: 0 BN, 1 BN then ReLU, 2 the join (y its output; a 4th output, the residual's
// gradient: dy where y > 0).
int bn_backward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, int mode,
                bool training) {
  const bool join = mode == 2;
  if (!check_bn(nparam, join ? 11 : 10, ndims, dtypes, shapes, join ? "TccchTTTccT" : "TccchTTTcc")) return 1;
  float *dx = static_cast<float *>(params[7]);
  float *dresidual = join ? static_cast<float *>(params[10]) : nullptr;
  const BnBackward bn(dims4(shapes[0]), params, mode != 0, training, static_cast<float *>(params[8]),
                      static_cast<float *>(params[9]));
  const int64_t hw = bn.hw;
  plane_channel_steps(
      bn.d, [&](int64_t p) { bn.plane(p); }, [&](int64_t c) { bn.channel(c); },
      [&](int64_t p) { bn.apply(p, dx + p * hw, dresidual != nullptr ? dresidual + p * hw : nullptr); });
  return 0;
}

int bn_train_backward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, int relu) {
  return bn_backward(nparam, params, ndims, shapes, dtypes, relu, true);
}

int bn_infer_backward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, int relu) {
  return bn_backward(nparam, params, ndims, shapes, dtypes, relu, false);
}

// Inference forward: inputs x, gamma, beta, moving_mean, moving_var, hyper; output y.
int bn_infer_forward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, int relu) {
  if (!check_bn(nparam, 7, ndims, dtypes, shapes, "TcccchT")) return 1;
  const Dims d = dims4(shapes[0]);
  const float *x = static_cast<const float *>(params[0]);
  const float *gamma = static_cast<const float *>(params[1]);
  const float *beta = static_cast<const float *>(params[2]);
  const float *mean = static_cast<const float *>(params[3]);
  const float *var = static_cast<const float *>(params[4]);
  const float eps = static_cast<const float *>(params[5])[0];
  float *y = static_cast<float *>(params[6]);
  const int64_t hw = d.h * d.w;
  parallel_for_planes(d.b * d.c, hw, [&](int64_t p) {
    const int64_t c = p % d.c;
    const double invstd = 1.0 / std::sqrt(static_cast<double>(var[c]) + static_cast<double>(eps));
    const float scale = static_cast<float>(gamma[c] * invstd);
    const float shift = static_cast<float>(beta[c] - mean[c] * gamma[c] * invstd);
    affine_plane(x + p * hw, y + p * hw, hw, scale, shift, relu != 0);
  });
  return 0;
}

// ---------------------------------------------------------------------------
// 1x1 convolution (any group) as one GEMM per (image, group), on oneDNN's sgemm.
//
// Why oneDNN: MindSpore already loads it (libdnnl.so.3) for its own kernels, and
// its JIT sgemm runs at 200+ GFLOP/s per core here, about 4x MindSpore's
// BatchMatMul. It is called single-threaded (no threadpool), one GEMM per task
// of our pool. Found at run time in the process; fast_ops_gemm_available() says
// whether it was, and the Python side uses BatchMatMul when it was not.
// ---------------------------------------------------------------------------
typedef int (*sgemm_fn)(char transa, char transb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                        int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc,
                        void *threadpool);

// Looked up until found (MindSpore may load oneDNN after this library).
sgemm_fn find_sgemm() {
  static std::atomic<sgemm_fn> found{nullptr};
  sgemm_fn fn = found.load();
  if (fn != nullptr) return fn;
  const char *names[] = {"libdnnl.so.3", "libdnnl.so"};
  for (const char *name : names) {
    void *handle = dlopen(name, RTLD_NOW | RTLD_NOLOAD);
    if (handle == nullptr) continue;
    if (void *sym = dlsym(handle, "dnnl_threadpool_interop_sgemm")) {
      fn = reinterpret_cast<sgemm_fn>(sym);
      found.store(fn);
      return fn;
    }
  }
  return nullptr;
}

struct PwDims {
  int64_t b, cin, cout, g, cg, og, hw;
};

// oneDNN's sgemm fills output columns in blocks of 16: a product with N = 16k + r columns
// costs what 16(k + 1) would. A 7x7 plane (stage 4 at 224 px) has 49 columns at the price
// of 64: 1.3x the time of 48 on this machine, for the 1x1 convolutions and their input
// gradients. So up to kTailCols leftover columns of such a product (beta 0) are computed
// here, in cache, and the rest by oneDNN (then 1.25-1.4x as fast at 49 columns). Not for
// small products (below kTailMinWork = M * K), where the extra pass costs more.
constexpr int64_t kTailCols = 4;
constexpr int64_t kTailMinWork = 1 << 14;

// C[m][j] = sum_k A[m][k] B[k][j] for the first `tail` (<= kTailCols) columns of B and C.
FAST_OPS_CLONES void gemm_tail_n(int64_t M, int64_t tail, int64_t K, const float *A, int64_t lda, const float *B,
                                 int64_t ldb, float *C, int64_t ldc) {
  thread_local std::vector<float> buf;
  if (buf.size() < static_cast<size_t>(kTailCols * K)) buf.resize(static_cast<size_t>(kTailCols * K));
  float *b0 = buf.data(), *b1 = b0 + K, *b2 = b1 + K, *b3 = b2 + K;  // B's columns, zeros past `tail`
  for (int64_t k = 0; k < K; ++k) {
    const float *row = B + k * ldb;
    b0[k] = row[0], b1[k] = tail > 1 ? row[1] : 0.f, b2[k] = tail > 2 ? row[2] : 0.f, b3[k] = tail > 3 ? row[3] : 0.f;
  }
  for (int64_t m = 0; m < M; ++m) {
    const float *a = A + m * lda;
    float s0 = 0.f, s1 = 0.f, s2 = 0.f, s3 = 0.f;
#pragma omp simd reduction(+ : s0, s1, s2, s3)
    for (int64_t k = 0; k < K; ++k) {
      s0 += a[k] * b0[k], s1 += a[k] * b1[k], s2 += a[k] * b2[k], s3 += a[k] * b3[k];
    }
    const float sums[4] = {s0, s1, s2, s3};
    for (int64_t j = 0; j < tail; ++j) C[m * ldc + j] = sums[j];
  }
}

// C[m][j] = sum_k A[k][m] B[k][j] (A transposed) for the first `tail` columns of B and C.
FAST_OPS_CLONES void gemm_tail_t(int64_t M, int64_t tail, int64_t K, const float *A, int64_t lda, const float *B,
                                 int64_t ldb, float *C, int64_t ldc) {
  thread_local std::vector<float> buf;
  if (buf.size() < static_cast<size_t>(kTailCols * M)) buf.resize(static_cast<size_t>(kTailCols * M));
  std::fill(buf.begin(), buf.begin() + tail * M, 0.f);
  for (int64_t k = 0; k < K; ++k) {
    const float *a = A + k * lda;
    for (int64_t j = 0; j < tail; ++j) {
      const float b = B[k * ldb + j];
      float *acc = buf.data() + j * M;
#pragma omp simd
      for (int64_t m = 0; m < M; ++m) acc[m] += b * a[m];
    }
  }
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t j = 0; j < tail; ++j) C[m * ldc + j] = buf[j * M + m];
  }
}

// C (M x N, row-major) = op(A) B with op(A) M x K ('N': A is M x K, 'T': A is K x M), B K x N; C overwritten.
int gemm_cols(sgemm_fn sgemm, char transa, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
              const float *B, int64_t ldb, float *C, int64_t ldc) {
  const int64_t tail = N % 16;
  if (N < 16 || tail == 0 || tail > kTailCols || M * K < kTailMinWork) {
    return sgemm(transa, 'N', M, N, K, 1.f, A, lda, B, ldb, 0.f, C, ldc, nullptr);
  }
  const int64_t n0 = N - tail;
  const int rc = sgemm(transa, 'N', M, n0, K, 1.f, A, lda, B, ldb, 0.f, C, ldc, nullptr);
  if (rc != 0) return rc;
  if (transa == 'N') {
    gemm_tail_n(M, tail, K, A, lda, B + n0, ldb, C + n0, ldc);
  } else {
    gemm_tail_t(M, tail, K, A, lda, B + n0, ldb, C + n0, ldc);
  }
  return 0;
}

bool pw_dims(int64_t *x_shape, int64_t *w_shape, PwDims *d) {
  d->b = x_shape[0];
  d->cin = x_shape[1];
  d->hw = x_shape[2] * x_shape[3];
  d->cout = w_shape[0];
  d->cg = w_shape[1];
  if (w_shape[2] != 1 || w_shape[3] != 1 || d->cg <= 0 || d->cin % d->cg != 0) return false;
  d->g = d->cin / d->cg;
  if (d->cout % d->g != 0) return false;
  d->og = d->cout / d->g;
  return true;
}

// A GEMM per (image, group) is too few tasks for the threads at batch 1 or 2 (1.0x g3 at
// batch 1: 3 tasks on 2 threads, one thread idle a third of the time). Then each GEMM
// is cut into blocks: of output columns (pixels) where the planes are large, else of
// output rows (channels). Each output element is computed as before, the same dot
// product over the same inputs in the same order.
struct PwBlocks {
  int64_t count = 1;     // blocks per (image, group) GEMM
  bool columns = false;  // blocks of columns (else rows)
};

PwBlocks pw_blocks(const PwDims &d) {
  PwBlocks blocks;
  const int64_t want = 4 * static_cast<int64_t>(Pool::instance().threads());
  const int64_t gemms = d.b * d.g;
  if (gemms >= want) return blocks;
  // (blocks of 32K multiply-adds or more: below that a worker's wake-up costs more than it saves)
  const int64_t count = std::min((want + gemms - 1) / gemms, d.og * d.cg * d.hw / (int64_t{1} << 15));
  if (count <= 1) return blocks;
  if (d.hw >= 256 * count) {
    blocks.count = count;
    blocks.columns = true;
  } else {
    blocks.count = std::max<int64_t>(1, std::min<int64_t>(count, d.og / 8));  // 8 rows or more per block
  }
  return blocks;
}

// One block of task t of pw_blocks: its image, group, and the rows [r0, r1) and
// columns [c0, c1) of that group's output plane.
struct PwTask {
  int64_t b, gi, r0, r1, c0, c1;
};

PwTask pw_task(const PwDims &d, const PwBlocks &blocks, int64_t t) {
  PwTask k;
  const int64_t blk = t % blocks.count, gemm = t / blocks.count;
  k.b = gemm / d.g;
  k.gi = gemm % d.g;
  k.r0 = 0, k.r1 = d.og, k.c0 = 0, k.c1 = d.hw;
  if (blocks.columns) {
    k.c0 = d.hw * blk / blocks.count, k.c1 = d.hw * (blk + 1) / blocks.count;
  } else {
    k.r0 = d.og * blk / blocks.count, k.r1 = d.og * (blk + 1) / blocks.count;
  }
  return k;
}

// y[rows r0..r1, columns c0..c1] of image b, group gi = w_rows x_g[:, c0..c1], where w_rows
// points at weight row gi * og + r0 (rows of cg values).
FAST_OPS_INLINE int pw_gemm(sgemm_fn sgemm, const PwDims &d, const PwTask &k, const float *w_rows, const float *x,
                            float *y) {
  return gemm_cols(sgemm, 'N', k.r1 - k.r0, k.c1 - k.c0, d.cg, w_rows, d.cg,
                   x + (k.b * d.cin + k.gi * d.cg) * d.hw + k.c0, d.hw,
                   y + (k.b * d.cout + k.gi * d.og + k.r0) * d.hw + k.c0, d.hw);
}

// Forward: inputs x (B, Cin, H, W), w (Cout, Cin / g, 1, 1); output y (B, Cout, H, W).
int pw_forward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, int) {
  if (!check(nparam, 3, ndims, dtypes)) return 1;
  const sgemm_fn sgemm = find_sgemm();
  if (sgemm == nullptr) return 4;
  PwDims d;
  if (!pw_dims(shapes[0], shapes[1], &d)) return 2;
  if (shapes[2][1] != d.cout || shapes[2][2] * shapes[2][3] != d.hw) return 2;
  const float *x = static_cast<const float *>(params[0]);
  const float *w = static_cast<const float *>(params[1]);
  float *y = static_cast<float *>(params[2]);
  const PwBlocks blocks = pw_blocks(d);
  std::atomic<int> status{0};
  parallel_for(d.b * d.g * blocks.count, [&](int64_t t) {
    const PwTask k = pw_task(d, blocks, t);
    if (pw_gemm(sgemm, d, k, w + (k.gi * d.og + k.r0) * d.cg, x, y) != 0) status = 5;
  });
  return status.load();
}

// Into how many ranges of images the 1x1 weight gradient's sum over the batch is split: about
// 2 tasks per thread over all groups.
int64_t pw_weight_grad_splits(const PwDims &d) {
  const int64_t want = 2 * static_cast<int64_t>(Pool::instance().threads());
  return std::max<int64_t>(1, std::min<int64_t>(d.b, (want + d.g - 1) / d.g));
}

// The 1x1 weight gradient's partial sums (partial[s * g + gi]: group gi over the s-th of `splits`
// ranges of images) added up in order into dw.
void add_partial_weight_grads(const PwDims &d, int64_t splits, const std::vector<float> &partial, float *dw) {
  const int64_t wsize = d.og * d.cg;
  for (int64_t gi = 0; gi < d.g; ++gi) {
    float *sum = dw + gi * wsize;
    std::memcpy(sum, partial.data() + gi * wsize, sizeof(float) * wsize);
    for (int64_t s = 1; s < splits; ++s) {
      const float *p = partial.data() + (s * d.g + gi) * wsize;
      for (int64_t i = 0; i < wsize; ++i) sum[i] += p[i];
    }
  }
}

// Backward: inputs x, w, dy (B, Cout, H, W); outputs dx (B, Cin, H, W), dw (Cout, Cin / g, 1, 1).
int pw_backward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, int) {
  if (!check(nparam, 5, ndims, dtypes)) return 1;
  const sgemm_fn sgemm = find_sgemm();
  if (sgemm == nullptr) return 4;
  PwDims d;
  if (!pw_dims(shapes[0], shapes[1], &d)) return 2;
  if (shapes[2][1] != d.cout || shapes[2][2] * shapes[2][3] != d.hw) return 2;
  const float *x = static_cast<const float *>(params[0]);
  const float *w = static_cast<const float *>(params[1]);
  const float *dy = static_cast<const float *>(params[2]);
  float *dx = static_cast<float *>(params[3]);
  float *dw = static_cast<float *>(params[4]);
  // Weight gradient: per group a sum over the batch, split into `splits` partial sums
  // so that there are enough tasks for the threads; then added up.
  const int64_t splits = pw_weight_grad_splits(d);
  const int64_t wsize = d.og * d.cg;  // one group's weight
  std::vector<float> partial(static_cast<size_t>(splits * d.g * wsize));
  const int64_t dw_tasks = splits * d.g;
  std::atomic<int> status{0};
  parallel_for(dw_tasks + d.b * d.g, [&](int64_t t) {
    int rc;
    if (t < dw_tasks) {
      const int64_t s = t / d.g, gi = t % d.g;
      const int64_t b0 = d.b * s / splits, b1 = d.b * (s + 1) / splits;
      float *out = partial.data() + t * wsize;
      for (int64_t b = b0; b < b1; ++b) {
        rc = sgemm('N', 'T', d.og, d.cg, d.hw, 1.f, dy + (b * d.cout + gi * d.og) * d.hw, d.hw,
                   x + (b * d.cin + gi * d.cg) * d.hw, d.hw, b == b0 ? 0.f : 1.f, out, d.cg, nullptr);
        if (rc != 0) status = 5;
      }
      if (b0 == b1) std::memset(out, 0, sizeof(float) * wsize);
    } else {
      const int64_t u = t - dw_tasks, b = u / d.g, gi = u % d.g;
      rc = gemm_cols(sgemm, 'T', d.cg, d.hw, d.og, w + gi * d.og * d.cg, d.cg, dy + (b * d.cout + gi * d.og) * d.hw,
                     d.hw, dx + (b * d.cin + gi * d.cg) * d.hw, d.hw);
      if (rc != 0) status = 5;
    }
  });
  add_partial_weight_grads(d, splits, partial, dw);
  return status.load();
}

// ---------------------------------------------------------------------------
// Training: a 1x1 convolution and the batch normalisation after it as one kernel each way.
// Forward: each task's GEMM output (one image and group) is still in cache when its planes'
// BN sums are taken, which saves the BN's first pass over the tensor. Backward: after the
// BN's sums, each task computes its images' dz (the BN's input gradient) into a buffer in
// cache, then the convolution's input gradient and weight gradient from it: dz never goes
// to memory. Results are those of the separate kernels, bit for bit.
// ---------------------------------------------------------------------------

// Inputs x, w, gamma, beta, moving_mean, moving_var, hyper [, residual]; outputs y, z (the
// convolution's output, for the backward), batch mean, batch variance, new moving mean and
// variance. mode as bn_train_forward: 0 BN, 1 BN then ReLU, 2 relu(BN(z) + residual).
int pw_bn_train_forward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, int mode) {
  const bool join = mode == 2;
  const int out = join ? 8 : 7;  // the first output
  if (nparam != out + 6) return 1;
  for (int i = 0; i < nparam; ++i) {
    const bool tensor = i < 2 || i == out || i == out + 1 || (join && i == 7);
    if (!is_f32(dtypes[i]) || ndims[i] != (tensor ? 4 : 1)) return 1;
  }
  const sgemm_fn sgemm = find_sgemm();
  if (sgemm == nullptr) return 4;
  PwDims d;
  if (!pw_dims(shapes[0], shapes[1], &d)) return 2;
  for (int i : {out, out + 1}) {
    if (shapes[i][0] != d.b || shapes[i][1] != d.cout || shapes[i][2] * shapes[i][3] != d.hw) return 2;
  }
  for (int i = 2; i < out + 6; ++i) {
    if (ndims[i] == 1 && shapes[i][0] != (i == 6 ? 2 : d.cout)) return 2;
  }
  if (join) {
    for (int j = 0; j < 4; ++j) {
      if (shapes[7][j] != shapes[out][j]) return 2;
    }
  }
  const float *x = static_cast<const float *>(params[0]);
  const float *w = static_cast<const float *>(params[1]);
  float *z = static_cast<float *>(params[out + 1]);
  const BnForward bn(dims4(shapes[out]), z, params + 2, join ? static_cast<const float *>(params[7]) : nullptr,
                     mode != 0, static_cast<float *>(params[out]), params + out + 2);
  const PwBlocks blocks = pw_blocks(d);
  std::atomic<int> status{0};
  parallel_for(d.b * d.g * blocks.count, [&](int64_t t) {
    const PwTask k = pw_task(d, blocks, t);
    if (pw_gemm(sgemm, d, k, w + (k.gi * d.og + k.r0) * d.cg, x, z) != 0) status = 5;
    if (blocks.count == 1) {
      for (int64_t r = 0; r < d.og; ++r) bn.plane(k.b * d.cout + k.gi * d.og + r);
    }
  });
  if (status.load() != 0) return status.load();
  // (GEMMs cut into blocks, at batch 1 or 2: the sums in a pass of their own)
  const int64_t planes = d.b * d.cout;
  if (blocks.count != 1) parallel_for_planes(planes, d.hw, [&](int64_t p) { bn.plane(p); });
  for_channels(bn.d, [&](int64_t c) { bn.channel(c); });
  parallel_for_planes(planes, d.hw, [&](int64_t p) { bn.apply(p); });
  return 0;
}

// Inputs x, w, z, gamma, mean, var, hyper, y, dy (z, mean, var, y as the forward gave them);
// outputs dx, dw, dgamma, dbeta [, the residual's gradient (mode 2)].
int pw_bn_train_backward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, int mode) {
  const bool join = mode == 2;
  if (nparam != (join ? 14 : 13)) return 1;
  for (int i = 0; i < nparam; ++i) {
    const bool tensor = i < 3 || i == 7 || i == 8 || i == 9 || i == 10 || i == 13;
    if (!is_f32(dtypes[i]) || ndims[i] != (tensor ? 4 : 1)) return 1;
  }
  const sgemm_fn sgemm = find_sgemm();
  if (sgemm == nullptr) return 4;
  PwDims d;
  if (!pw_dims(shapes[0], shapes[1], &d)) return 2;
  for (int i : {2, 7, 8}) {
    if (shapes[i][0] != d.b || shapes[i][1] != d.cout || shapes[i][2] * shapes[i][3] != d.hw) return 2;
  }
  for (int j = 0; j < 4; ++j) {
    if (shapes[9][j] != shapes[0][j] || shapes[10][j] != shapes[1][j] || (join && shapes[13][j] != shapes[2][j])) {
      return 2;
    }
  }
  for (int i : {3, 4, 5, 6, 11, 12}) {
    if (shapes[i][0] != (i == 6 ? 2 : d.cout)) return 2;
  }
  const float *x = static_cast<const float *>(params[0]);
  const float *w = static_cast<const float *>(params[1]);
  float *dx = static_cast<float *>(params[9]);
  float *dw = static_cast<float *>(params[10]);
  float *dresidual = join ? static_cast<float *>(params[13]) : nullptr;
  const BnBackward bn(dims4(shapes[2]), params + 2, mode != 0, true, static_cast<float *>(params[11]),
                      static_cast<float *>(params[12]));
  plane_channel_steps(
      bn.d, [&](int64_t p) { bn.plane(p); }, [&](int64_t c) { bn.channel(c); }, NoApply());
  // As pw_backward: per group, the weight gradient summed over `splits` ranges of images,
  // then the ranges added up; a task is one range of one group.
  const int64_t splits = pw_weight_grad_splits(d);
  const int64_t wsize = d.og * d.cg;
  std::vector<float> partial(static_cast<size_t>(splits * d.g * wsize));
  std::atomic<int> status{0};
  parallel_for(splits * d.g, [&](int64_t t) {
    const int64_t s = t / d.g, gi = t % d.g;
    const int64_t b0 = d.b * s / splits, b1 = d.b * (s + 1) / splits;
    float *part = partial.data() + t * wsize;
    float *dz = scratch(0, static_cast<size_t>(d.og * d.hw));
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t p0 = b * d.cout + gi * d.og;
      for (int64_t r = 0; r < d.og; ++r) {
        bn.apply(p0 + r, dz + r * d.hw, dresidual != nullptr ? dresidual + (p0 + r) * d.hw : nullptr);
      }
      if (gemm_cols(sgemm, 'T', d.cg, d.hw, d.og, w + gi * d.og * d.cg, d.cg, dz, d.hw,
                    dx + (b * d.cin + gi * d.cg) * d.hw, d.hw) != 0 ||
          sgemm('N', 'T', d.og, d.cg, d.hw, 1.f, dz, d.hw, x + (b * d.cin + gi * d.cg) * d.hw, d.hw,
                b == b0 ? 0.f : 1.f, part, d.cg, nullptr) != 0) {
        status = 5;
      }
    }
    if (b0 == b1) std::memset(part, 0, sizeof(float) * wsize);
  });
  add_partial_weight_grads(d, splits, partial, dw);
  return status.load();
}

// ---------------------------------------------------------------------------
// Inference: a convolution followed by batch normalisation on moving statistics
// (and ReLU) as one kernel. The BN scale goes into the weights, its shift into the
// output, which is still in cache.
// ---------------------------------------------------------------------------

// scale = gamma / sqrt(var + eps), shift = beta - mean * scale, as bn_infer_forward has them.
void bn_fold(const float *gamma, const float *beta, const float *mean, const float *var, float eps, int64_t c,
             float *scale, float *shift) {
  for (int64_t i = 0; i < c; ++i) {
    const double invstd = 1.0 / std::sqrt(static_cast<double>(var[i]) + static_cast<double>(eps));
    scale[i] = static_cast<float>(gamma[i] * invstd);
    shift[i] = static_cast<float>(beta[i] - mean[i] * gamma[i] * invstd);
  }
}

// y = y + bias[row] (+ residual) (then ReLU), rows of n values ld apart (residual alike).
FAST_OPS_CLONES void add_bias_rows(float *y, int64_t rows, int64_t n, int64_t ld, const float *bias,
                                   const float *residual, bool relu) {
  for (int64_t r = 0; r < rows; ++r) {
    float *row = y + r * ld;
    const float b = bias[r];
    if (residual != nullptr) {
      const float *res = residual + r * ld;
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) {
        const float v = row[i] + b + res[i];
        row[i] = v > 0.f ? v : 0.f;
      }
    } else if (relu) {
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) {
        const float v = row[i] + b;
        row[i] = v > 0.f ? v : 0.f;
      }
    } else {
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) row[i] += b;
    }
  }
}

// 1x1 conv + BN, then by mode: 0 nothing, 1 ReLU, 2 + residual then ReLU (ShuffleNet's join).
// Inputs x, w, gamma, beta, moving_mean, moving_var, hyper [, residual (B, Cout, H, W)]; output y.
int pw_bn_forward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, int mode) {
  const int out = mode == 2 ? 8 : 7;
  if (nparam != out + 1 || ndims[0] != 4 || ndims[1] != 4 || ndims[out] != 4) return 1;
  for (int i = 0; i < nparam; ++i) {
    if (!is_f32(dtypes[i])) return 1;
  }
  for (int i = 2; i < 6; ++i) {
    if (ndims[i] != 1 || shapes[i][0] != shapes[1][0]) return 1;
  }
  if (ndims[6] != 1 || shapes[6][0] != 2) return 1;
  const sgemm_fn sgemm = find_sgemm();
  if (sgemm == nullptr) return 4;
  PwDims d;
  if (!pw_dims(shapes[0], shapes[1], &d)) return 2;
  if (shapes[out][1] != d.cout || shapes[out][2] * shapes[out][3] != d.hw) return 2;
  const float *residual = nullptr;
  if (mode == 2) {
    if (ndims[7] != 4) return 1;
    for (int j = 0; j < 4; ++j) {
      if (shapes[7][j] != shapes[out][j]) return 2;
    }
    residual = static_cast<const float *>(params[7]);
  }
  const float *x = static_cast<const float *>(params[0]);
  const float *w = static_cast<const float *>(params[1]);
  float *y = static_cast<float *>(params[out]);
  const float *gamma = static_cast<const float *>(params[2]), *beta = static_cast<const float *>(params[3]);
  const float *mean = static_cast<const float *>(params[4]), *var = static_cast<const float *>(params[5]);
  const float eps = static_cast<const float *>(params[6])[0];
  // The BN scale folded into rows [o0, o1) of the weights (into ws) and its shift (into shift).
  auto fold = [&](int64_t o0, int64_t o1, float *ws, float *scale, float *shift) {
    bn_fold(gamma + o0, beta + o0, mean + o0, var + o0, eps, o1 - o0, scale, shift);
    for (int64_t o = o0; o < o1; ++o) {
      for (int64_t k = 0; k < d.cg; ++k) ws[(o - o0) * d.cg + k] = w[o * d.cg + k] * scale[o - o0];
    }
  };
  const PwBlocks blocks = pw_blocks(d);
  // At batch 1 in row blocks each weight row serves one task: each task folds its own rows
  // (in parallel, on no shared buffer); else the whole weight once, up front.
  const bool fold_per_task = d.b == 1 && !blocks.columns;
  std::unique_ptr<float[]> folded;
  if (!fold_per_task) {
    folded.reset(new float[static_cast<size_t>(d.cout * (d.cg + 2))]);
    fold(0, d.cout, folded.get(), folded.get() + d.cout * d.cg, folded.get() + d.cout * (d.cg + 1));
  }
  std::atomic<int> status{0};
  parallel_for(d.b * d.g * blocks.count, [&](int64_t t) {
    const PwTask k = pw_task(d, blocks, t);
    const int64_t row0 = k.gi * d.og + k.r0, rows = k.r1 - k.r0;
    const float *ws, *shift;
    if (fold_per_task) {
      float *buf = scratch(0, static_cast<size_t>(rows * (d.cg + 2)));
      fold(row0, row0 + rows, buf, buf + rows * d.cg, buf + rows * (d.cg + 1));
      ws = buf, shift = buf + rows * (d.cg + 1);
    } else {
      ws = folded.get() + row0 * d.cg, shift = folded.get() + d.cout * (d.cg + 1) + row0;
    }
    if (pw_gemm(sgemm, d, k, ws, x, y) != 0) status = 5;
    const int64_t off = (k.b * d.cout + row0) * d.hw + k.c0;
    add_bias_rows(y + off, rows, k.c1 - k.c0, d.hw, shift, residual != nullptr ? residual + off : nullptr,
                  mode == 1);
  });
  return status.load();
}

// Depthwise 3x3 + BN (+ ReLU): inputs x, w, perm, gamma, beta, moving_mean, moving_var, hyper; output y.
int dw_bn_forward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, int stride) {
  if (nparam != 9 || ndims[0] != 4 || ndims[1] != 4 || ndims[8] != 4 || ndims[2] != 1 || !is_i32(dtypes[2])) return 1;
  const Dims d = dims4(shapes[0]);
  for (int i = 3; i < 7; ++i) {
    if (ndims[i] != 1 || shapes[i][0] != d.c || !is_f32(dtypes[i])) return 1;
  }
  if (ndims[7] != 1 || shapes[7][0] != 2 || !is_f32(dtypes[0]) || !is_f32(dtypes[1]) || !is_f32(dtypes[8])) return 1;
  const float *x = static_cast<const float *>(params[0]);
  const float *w = static_cast<const float *>(params[1]);
  const int32_t *perm = static_cast<const int32_t *>(params[2]);
  float *y = static_cast<float *>(params[8]);
  const int H = static_cast<int>(d.h), W = static_cast<int>(d.w);
  const int Ho = out_size(H, stride), Wo = out_size(W, stride);
  if (shapes[1][0] != d.c || shapes[2][0] != d.c || shapes[8][2] != Ho || shapes[8][3] != Wo) return 2;
  if (!is_permutation(perm, d.c)) return 3;
  std::vector<float> scale(d.c), shift(d.c), ws(static_cast<size_t>(d.c * 9));
  bn_fold(static_cast<const float *>(params[3]), static_cast<const float *>(params[4]),
          static_cast<const float *>(params[5]), static_cast<const float *>(params[6]),
          static_cast<const float *>(params[7])[0], d.c, scale.data(), shift.data());
  for (int64_t c = 0; c < d.c; ++c) {
    for (int k = 0; k < 9; ++k) ws[c * 9 + k] = w[c * 9 + k] * scale[c];
  }
  const size_t pad_n = pad_floats(H, W, stride);
  parallel_for_planes(d.b * d.c, H * W, [&](int64_t p) {
    float *pad = scratch(0, pad_n);
    const int64_t c = p % d.c;
    const float *xp = x + (p - c + perm[c]) * H * W;
    float *yp = y + p * Ho * Wo;
    if (stride == 1) {
      dw_plane_fwd_s1(xp, ws.data() + c * 9, yp, H, W, pad, shift[c]);
    } else {
      dw_plane_fwd_s2(xp, ws.data() + c * 9, yp, H, W, pad, shift[c]);
    }
  });
  return 0;
}

// ---------------------------------------------------------------------------
// Residual add + ReLU, and its gradient (the same for both inputs).
// ---------------------------------------------------------------------------
constexpr int64_t kChunk = 1 << 15;  // elements per task

FAST_OPS_CLONES void add_relu_chunk(const float *a, const float *b, float *y, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const float v = a[i] + b[i];
    y[i] = v > 0.f ? v : 0.f;
  }
}

FAST_OPS_CLONES void relu_grad_chunk(const float *y, const float *dy, float *g, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) g[i] = y[i] > 0.f ? dy[i] : 0.f;
}

bool same_shapes(int nparam, int *ndims, int64_t **shapes, const char **dtypes, int64_t *count) {
  int64_t n = 1;
  for (int j = 0; j < ndims[0]; ++j) n *= shapes[0][j];
  for (int i = 0; i < nparam; ++i) {
    if (!is_f32(dtypes[i]) || ndims[i] != ndims[0]) return false;
    for (int j = 0; j < ndims[0]; ++j) {
      if (shapes[i][j] != shapes[0][j]) return false;
    }
  }
  *count = n;
  return true;
}

// inputs a, b; output y = max(a + b, 0).
int add_relu(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, int) {
  int64_t n;
  if (nparam != 3 || !same_shapes(nparam, ndims, shapes, dtypes, &n)) return 1;
  const float *a = static_cast<const float *>(params[0]);
  const float *b = static_cast<const float *>(params[1]);
  float *y = static_cast<float *>(params[2]);
  parallel_for((n + kChunk - 1) / kChunk, [&](int64_t t) {
    const int64_t i = t * kChunk;
    add_relu_chunk(a + i, b + i, y + i, std::min(kChunk, n - i));
  });
  return 0;
}

// inputs y (the ReLU's output), dy; output g = dy where y > 0, else 0.
int relu_grad(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, int) {
  int64_t n;
  if (nparam != 3 || !same_shapes(nparam, ndims, shapes, dtypes, &n)) return 1;
  const float *y = static_cast<const float *>(params[0]);
  const float *dy = static_cast<const float *>(params[1]);
  float *g = static_cast<float *>(params[2]);
  parallel_for((n + kChunk - 1) / kChunk, [&](int64_t t) {
    const int64_t i = t * kChunk;
    relu_grad_chunk(y + i, dy + i, g + i, std::min(kChunk, n - i));
  });
  return 0;
}

// ---------------------------------------------------------------------------
// 3x3, stride 2 pooling. Padding: "same" (MindSpore pad_mode="same": the total
// padding (Ho - 1) * 2 + 3 - H, its smaller half on top/left; averages over the
// real pixels only) or "sym" (1 on every side, averages divide by 9 like
// count_include_pad). Max pooling ignores padding; its gradient goes to the first
// maximum of the window in row-major order, as MindSpore's does.
// ---------------------------------------------------------------------------
struct PoolGeom {
  int H, W, Ho, Wo, pt, pl;
  bool same;
};

bool pool_geom(const int64_t *in, const int64_t *out, bool same, PoolGeom *g) {
  g->H = static_cast<int>(in[2]);
  g->W = static_cast<int>(in[3]);
  g->same = same;
  if (same) {
    g->Ho = (g->H + 1) / 2;
    g->Wo = (g->W + 1) / 2;
    g->pt = std::max((g->Ho - 1) * 2 + 3 - g->H, 0) / 2;
    g->pl = std::max((g->Wo - 1) * 2 + 3 - g->W, 0) / 2;
  } else {
    g->Ho = (g->H - 1) / 2 + 1;
    g->Wo = (g->W - 1) / 2 + 1;
    g->pt = 1;
    g->pl = 1;
  }
  return out[0] == in[0] && out[1] == in[1] && out[2] == g->Ho && out[3] == g->Wo;
}

// The valid input range [lo, hi) of window `o` along one axis.
FAST_OPS_INLINE void window(int o, int pad, int size, int *lo, int *hi) {
  const int start = o * 2 - pad;
  *lo = std::max(start, 0);
  *hi = std::min(start + 3, size);
}

// `planes` consecutive planes (a task's worth: small planes one at a time cost more in
// set-up than in work).
FAST_OPS_CLONES void pool_planes_fwd(const float *x, float *y, int64_t planes, const PoolGeom &g, bool is_max,
                                     float *buf) {
  // 1. Each input row copied into a padded row (pl pad values in front, the pad value
  //    never wins / adds 0), then the horizontal 3-tap reduction
  //    h[r][ow] = op(row[2ow], row[2ow + 1], row[2ow + 2]).
  // 2. Vertical 3-tap reduction over the valid rows of each window; averages scaled
  //    by 1 / count.
  const float pad_value = is_max ? -std::numeric_limits<float>::infinity() : 0.f;
  const int n = 2 * g.Wo + 2;  // padded row length (covers the last window)
  float *rp = buf, *h = buf + n, *inv_cols = h + static_cast<int64_t>(g.H) * g.Wo;
  for (int j = 0; j < n; ++j) rp[j] = pad_value;
  for (int ow = 0; ow < g.Wo; ++ow) {
    int c0, c1;
    window(ow, g.pl, g.W, &c0, &c1);
    inv_cols[ow] = g.same ? 1.f / static_cast<float>(c1 - c0) : 1.f / 3.f;
  }
  const int64_t in_plane = static_cast<int64_t>(g.H) * g.W, out_plane = static_cast<int64_t>(g.Ho) * g.Wo;
  for (int64_t p = 0; p < planes; ++p) {
    const float *xp = x + p * in_plane;
    float *yp = y + p * out_plane;
    for (int r = 0; r < g.H; ++r) {
      std::memcpy(rp + g.pl, xp + static_cast<int64_t>(r) * g.W, sizeof(float) * g.W);
      float *hr = h + static_cast<int64_t>(r) * g.Wo;
      if (is_max) {
#pragma omp simd
        for (int j = 0; j < g.Wo; ++j) hr[j] = std::max(std::max(rp[2 * j], rp[2 * j + 1]), rp[2 * j + 2]);
      } else {
#pragma omp simd
        for (int j = 0; j < g.Wo; ++j) hr[j] = rp[2 * j] + rp[2 * j + 1] + rp[2 * j + 2];
      }
    }
    for (int oh = 0; oh < g.Ho; ++oh) {
      int r0, r1;
      window(oh, g.pt, g.H, &r0, &r1);
      float *yr = yp + static_cast<int64_t>(oh) * g.Wo;
      const float *a = h + static_cast<int64_t>(r0) * g.Wo;
      const int rows = r1 - r0;
      if (is_max) {
        if (rows == 3) {
#pragma omp simd
          for (int j = 0; j < g.Wo; ++j) yr[j] = std::max(std::max(a[j], a[j + g.Wo]), a[j + 2 * g.Wo]);
        } else if (rows == 2) {
#pragma omp simd
          for (int j = 0; j < g.Wo; ++j) yr[j] = std::max(a[j], a[j + g.Wo]);
        } else {
          std::memcpy(yr, a, sizeof(float) * g.Wo);
        }
      } else {
        const float inv_rows = g.same ? 1.f / static_cast<float>(rows) : 1.f / 3.f;
        if (rows == 3) {
#pragma omp simd
          for (int j = 0; j < g.Wo; ++j) yr[j] = (a[j] + a[j + g.Wo] + a[j + 2 * g.Wo]) * (inv_rows * inv_cols[j]);
        } else if (rows == 2) {
#pragma omp simd
          for (int j = 0; j < g.Wo; ++j) yr[j] = (a[j] + a[j + g.Wo]) * (inv_rows * inv_cols[j]);
        } else {
#pragma omp simd
          for (int j = 0; j < g.Wo; ++j) yr[j] = a[j] * (inv_rows * inv_cols[j]);
        }
      }
    }
  }
}

// Average pooling backward, separably: per output row the horizontal spread of
// t = dy / count over the padded columns, s[2j] = t[j] + t[j - 1], s[2j + 1] = t[j];
// then input row r (padded row R = r + pt) sums the s rows of the windows holding it:
// R = 2m: s[m] + s[m - 1], R = 2m + 1: s[m]. buf: Ho * (2 Wo + 2) floats.
FAST_OPS_CLONES void avgpool_plane_bwd(const float *dy, float *dx, const PoolGeom &g, float *buf) {
  const int n = 2 * g.Wo + 2;
  float *spread = buf;
  for (int oh = 0; oh < g.Ho; ++oh) {
    int r0, r1;
    window(oh, g.pt, g.H, &r0, &r1);
    const float inv_rows = g.same ? 1.f / static_cast<float>(r1 - r0) : 1.f / 3.f;
    const float *d = dy + static_cast<int64_t>(oh) * g.Wo;
    float *sr = spread + static_cast<int64_t>(oh) * n;
    float prev = 0.f;
    for (int j = 0; j < g.Wo; ++j) {
      int c0, c1;
      window(j, g.pl, g.W, &c0, &c1);
      const float t = d[j] * inv_rows * (g.same ? 1.f / static_cast<float>(c1 - c0) : 1.f / 3.f);
      sr[2 * j] = t + prev;
      sr[2 * j + 1] = t;
      prev = t;
    }
    sr[2 * g.Wo] = prev;
    sr[2 * g.Wo + 1] = 0.f;
  }
  for (int r = 0; r < g.H; ++r) {
    const int R = r + g.pt, m = R / 2;
    float *out = dx + static_cast<int64_t>(r) * g.W;
    const float *a = m < g.Ho ? spread + static_cast<int64_t>(m) * n + g.pl : nullptr;
    const float *b = (R % 2 == 0 && m >= 1) ? spread + static_cast<int64_t>(m - 1) * n + g.pl : nullptr;
    if (a != nullptr && b != nullptr) {
#pragma omp simd
      for (int c = 0; c < g.W; ++c) out[c] = a[c] + b[c];
    } else if (a != nullptr || b != nullptr) {
      std::memcpy(out, a != nullptr ? a : b, sizeof(float) * g.W);
    } else {
      std::memset(out, 0, sizeof(float) * g.W);
    }
  }
}

// Max pooling backward: per output row, the first maximum of each window in row-major
// order (rows, then columns; strict > keeps the first), found for all windows of the
// row at once on padded rows; then dy added at those places. buf: 2 Wo + 2 floats
// (padded row), Wo floats (best values), Wo ints (their indices).
FAST_OPS_CLONES void maxpool_plane_bwd(const float *x, const float *dy, float *dx, const PoolGeom &g, float *buf) {
  const int n = 2 * g.Wo + 2;
  float *rp = buf, *best = buf + n;
  int32_t *where = reinterpret_cast<int32_t *>(best + g.Wo);
  const float pad_value = -std::numeric_limits<float>::infinity();
  for (int j = 0; j < n; ++j) rp[j] = pad_value;
  std::memset(dx, 0, sizeof(float) * g.H * g.W);
  for (int oh = 0; oh < g.Ho; ++oh) {
    int r0, r1;
    window(oh, g.pt, g.H, &r0, &r1);
    // Start from the window's first real pixel (it stays the answer for an all -inf or
    // NaN window), so that every index is inside the plane.
    for (int j = 0; j < g.Wo; ++j) {
      best[j] = pad_value;
      where[j] = r0 * g.W + std::max(2 * j - g.pl, 0);
    }
    for (int r = r0; r < r1; ++r) {
      std::memcpy(rp + g.pl, x + static_cast<int64_t>(r) * g.W, sizeof(float) * g.W);
      for (int k = 0; k < 3; ++k) {
        // Padded column 2j + k is input column 2j + k - pl.
        const int32_t base = r * g.W + k - g.pl;
#pragma omp simd
        for (int j = 0; j < g.Wo; ++j) {
          const float v = rp[2 * j + k];
          const bool better = v > best[j];
          best[j] = better ? v : best[j];
          where[j] = better ? base + 2 * j : where[j];
        }
      }
    }
    const float *d = dy + static_cast<int64_t>(oh) * g.Wo;
    for (int j = 0; j < g.Wo; ++j) dx[where[j]] += d[j];
  }
}

// mode: bit 0 = max (else average), bit 1 = "same" padding (else symmetric).
// Forward: input x; output y.
int pool_forward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, int mode) {
  if (!check(nparam, 2, ndims, dtypes)) return 1;
  PoolGeom g;
  if (!pool_geom(shapes[0], shapes[1], (mode & 2) != 0, &g)) return 2;
  const float *x = static_cast<const float *>(params[0]);
  float *y = static_cast<float *>(params[1]);
  const int64_t in_plane = static_cast<int64_t>(g.H) * g.W, out_plane = static_cast<int64_t>(g.Ho) * g.Wo;
  const int64_t planes = shapes[0][0] * shapes[0][1];
  const int64_t per_task = std::max<int64_t>(1, kChunk / std::max<int64_t>(in_plane, 1));
  const size_t buf_n = 2 * static_cast<size_t>(g.Wo + 1) + static_cast<size_t>(g.H) * g.Wo + g.Wo;  // rp, h, inv
  parallel_for((planes + per_task - 1) / per_task, [&](int64_t t) {
    const int64_t p0 = t * per_task, count = std::min(per_task, planes - p0);
    pool_planes_fwd(x + p0 * in_plane, y + p0 * out_plane, count, g, (mode & 1) != 0, scratch(0, buf_n));
  });
  return 0;
}

// Backward: inputs x, dy; output dx.
int pool_backward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, int mode) {
  if (!check(nparam, 3, ndims, dtypes)) return 1;
  PoolGeom g;
  if (!pool_geom(shapes[0], shapes[1], (mode & 2) != 0, &g)) return 2;
  const float *x = static_cast<const float *>(params[0]);
  const float *dy = static_cast<const float *>(params[1]);
  float *dx = static_cast<float *>(params[2]);
  const int64_t in_plane = static_cast<int64_t>(g.H) * g.W, out_plane = static_cast<int64_t>(g.Ho) * g.Wo;
  const bool is_max = (mode & 1) != 0;
  const size_t buf_n = is_max ? static_cast<size_t>(2 * g.Wo + 2) + 2 * static_cast<size_t>(g.Wo)
                              : static_cast<size_t>(g.Ho) * (2 * g.Wo + 2);
  parallel_for_planes(shapes[0][0] * shapes[0][1], in_plane, [&](int64_t p) {
    if (is_max) {
      maxpool_plane_bwd(x + p * in_plane, dy + p * out_plane, dx + p * in_plane, g, scratch(1, buf_n));
    } else {
      avgpool_plane_bwd(dy + p * out_plane, dx + p * in_plane, g, scratch(1, buf_n));
    }
  });
  return 0;
}

// ---------------------------------------------------------------------------
// Global average pooling: x (B, C, H, W) -> y (B, C); gradient dy / (H * W) everywhere.
// ---------------------------------------------------------------------------
int gap_forward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, int) {
  if (nparam != 2 || ndims[0] != 4 || ndims[1] != 2 || !is_f32(dtypes[0]) || !is_f32(dtypes[1])) return 1;
  if (shapes[1][0] != shapes[0][0] || shapes[1][1] != shapes[0][1]) return 2;
  const float *x = static_cast<const float *>(params[0]);
  float *y = static_cast<float *>(params[1]);
  const int64_t hw = shapes[0][2] * shapes[0][3], planes = shapes[0][0] * shapes[0][1];
  const int64_t per_task = std::max<int64_t>(1, kChunk / std::max<int64_t>(hw, 1));
  parallel_for((planes + per_task - 1) / per_task, [&](int64_t t) {
    for (int64_t p = t * per_task; p < std::min(planes, (t + 1) * per_task); ++p) {
      double s = 0.0;
      for (int64_t i = 0; i < hw; i += kBlock) {
        s += block_sum(x + p * hw + i, static_cast<int>(std::min<int64_t>(kBlock, hw - i)));
      }
      y[p] = static_cast<float>(s / static_cast<double>(hw));
    }
  });
  return 0;
}

// inputs x (for its shape), dy (B, C); output dx (B, C, H, W).
int gap_backward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, int) {
  if (nparam != 3 || ndims[0] != 4 || ndims[1] != 2 || ndims[2] != 4) return 1;
  for (int i = 0; i < 3; ++i) {
    if (!is_f32(dtypes[i])) return 1;
  }
  const float *dy = static_cast<const float *>(params[1]);
  float *dx = static_cast<float *>(params[2]);
  const int64_t hw = shapes[0][2] * shapes[0][3], planes = shapes[0][0] * shapes[0][1];
  const int64_t per_task = std::max<int64_t>(1, kChunk / std::max<int64_t>(hw, 1));
  const float inv = 1.f / static_cast<float>(hw);
  parallel_for((planes + per_task - 1) / per_task, [&](int64_t t) {
    for (int64_t p = t * per_task; p < std::min(planes, (t + 1) * per_task); ++p) {
      const float v = dy[p] * inv;
      std::fill(dx + p * hw, dx + (p + 1) * hw, v);
    }
  });
  return 0;
}

}  // namespace

#define FAST_OPS_ENTRY(name, impl, stride)                                                                 \
  extern "C" int name(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *, \
                      void *) {                                                                            \
    return impl(nparam, params, ndims, shapes, dtypes, stride);                                            \
  }

FAST_OPS_ENTRY(fast_dw3x3_fwd_s1, dw_forward, 1)
FAST_OPS_ENTRY(fast_dw3x3_fwd_s2, dw_forward, 2)
FAST_OPS_ENTRY(fast_dw3x3_bwd_s1, dw_backward, 1)
FAST_OPS_ENTRY(fast_dw3x3_bwd_s2, dw_backward, 2)
FAST_OPS_ENTRY(fast_im2col3x3_s1, im2col, 1)
FAST_OPS_ENTRY(fast_im2col3x3_s2, im2col, 2)
FAST_OPS_ENTRY(fast_col2im3x3_s1, col2im, 1)
FAST_OPS_ENTRY(fast_col2im3x3_s2, col2im, 2)
FAST_OPS_ENTRY(fast_pw_fwd, pw_forward, 0)
FAST_OPS_ENTRY(fast_pw_bwd, pw_backward, 0)
// The same kernels under other names for the stem (DenseConv3x3), so that MindSpore,
// which shares one backward graph among ops of one kernel name, profiles them apart.
FAST_OPS_ENTRY(fast_pw_fwd_dense, pw_forward, 0)
FAST_OPS_ENTRY(fast_pw_bwd_dense, pw_backward, 0)
FAST_OPS_ENTRY(fast_pw_bn_train_fwd_dense, pw_bn_train_forward, 0)
FAST_OPS_ENTRY(fast_pw_bn_train_fwd_relu_dense, pw_bn_train_forward, 1)
FAST_OPS_ENTRY(fast_pw_bn_train_bwd_dense, pw_bn_train_backward, 0)
FAST_OPS_ENTRY(fast_pw_bn_train_bwd_relu_dense, pw_bn_train_backward, 1)
FAST_OPS_ENTRY(fast_pw_bn_train_fwd, pw_bn_train_forward, 0)
FAST_OPS_ENTRY(fast_pw_bn_train_fwd_relu, pw_bn_train_forward, 1)
FAST_OPS_ENTRY(fast_pw_bn_train_fwd_add_relu, pw_bn_train_forward, 2)
FAST_OPS_ENTRY(fast_pw_bn_train_bwd, pw_bn_train_backward, 0)
FAST_OPS_ENTRY(fast_pw_bn_train_bwd_relu, pw_bn_train_backward, 1)
FAST_OPS_ENTRY(fast_pw_bn_train_bwd_add_relu, pw_bn_train_backward, 2)
FAST_OPS_ENTRY(fast_pw_bn_fwd, pw_bn_forward, 0)
FAST_OPS_ENTRY(fast_pw_bn_fwd_relu, pw_bn_forward, 1)
FAST_OPS_ENTRY(fast_pw_bn_add_relu_fwd, pw_bn_forward, 2)
FAST_OPS_ENTRY(fast_dw3x3_bn_fwd_s1, dw_bn_forward, 1)
FAST_OPS_ENTRY(fast_dw3x3_bn_fwd_s2, dw_bn_forward, 2)
FAST_OPS_ENTRY(fast_avgpool3x3s2_sym_fwd, pool_forward, 0)
FAST_OPS_ENTRY(fast_maxpool3x3s2_sym_fwd, pool_forward, 1)
FAST_OPS_ENTRY(fast_avgpool3x3s2_same_fwd, pool_forward, 2)
FAST_OPS_ENTRY(fast_maxpool3x3s2_same_fwd, pool_forward, 3)
FAST_OPS_ENTRY(fast_avgpool3x3s2_sym_bwd, pool_backward, 0)
FAST_OPS_ENTRY(fast_maxpool3x3s2_sym_bwd, pool_backward, 1)
FAST_OPS_ENTRY(fast_avgpool3x3s2_same_bwd, pool_backward, 2)
FAST_OPS_ENTRY(fast_maxpool3x3s2_same_bwd, pool_backward, 3)
FAST_OPS_ENTRY(fast_gap_fwd, gap_forward, 0)
FAST_OPS_ENTRY(fast_gap_bwd, gap_backward, 0)
FAST_OPS_ENTRY(fast_add_relu, add_relu, 0)
FAST_OPS_ENTRY(fast_relu_grad, relu_grad, 0)
FAST_OPS_ENTRY(fast_bn_train_fwd, bn_train_forward, 0)
FAST_OPS_ENTRY(fast_bn_train_fwd_relu, bn_train_forward, 1)
FAST_OPS_ENTRY(fast_bn_train_bwd, bn_train_backward, 0)
FAST_OPS_ENTRY(fast_bn_train_bwd_relu, bn_train_backward, 1)
FAST_OPS_ENTRY(fast_bn_train_fwd_add_relu, bn_train_forward, 2)
FAST_OPS_ENTRY(fast_bn_train_bwd_add_relu, bn_train_backward, 2)
FAST_OPS_ENTRY(fast_bn_infer_fwd, bn_infer_forward, 0)
FAST_OPS_ENTRY(fast_bn_infer_fwd_relu, bn_infer_forward, 1)
FAST_OPS_ENTRY(fast_bn_infer_bwd, bn_infer_backward, 0)
FAST_OPS_ENTRY(fast_bn_infer_bwd_relu, bn_infer_backward, 1)

// Lets the loader check that the library it found is one of ours and of this version.
extern "C" int fast_ops_abi_version() { return 12; }

// Whether the 1x1 convolution kernels found oneDNN's sgemm in this process (1) or not (0).
extern "C" int fast_ops_gemm_available() { return find_sgemm() != nullptr ? 1 : 0; }

// Threads the kernels use (the caller plus the pool's workers).
extern "C" int fast_ops_num_threads() { return Pool::instance().threads(); }

// Sets the number of threads (at least 1); takes effect at the next kernel.
extern "C" void fast_ops_set_num_threads(int n) { Pool::instance().set_threads(n); }

// ---------------------------------------------------------------------------
// The machine's float32 arithmetic peak, measured: independent chains of 8-wide fused
// multiply-adds (AVX2 + FMA where the CPU has them; else 4-wide SSE multiply and add),
// on every thread of the pool at once. benchmark.py --limit reports what fraction of it
// a training step uses.
// ---------------------------------------------------------------------------
namespace {
#if defined(__x86_64__) && defined(__GNUC__)
constexpr bool kX86 = true;

__attribute__((target("avx2,fma"))) double fma_loop_avx2(int64_t iters) {
  __m256 acc[12];
  for (auto &a : acc) a = _mm256_set1_ps(0.f);
  __m256 a = _mm256_set1_ps(1.0001f), b = _mm256_set1_ps(0.9999f);
  for (int64_t i = 0; i < iters; ++i) {
    for (auto &c : acc) c = _mm256_fmadd_ps(a, b, c);
    asm volatile("" : "+x"(a), "+x"(b));
  }
  float sum = 0.f, out[8];
  for (auto &c : acc) {
    _mm256_storeu_ps(out, c);
    sum += out[0];
  }
  return sum;  // (keeps the loop)
}

double fma_loop_sse(int64_t iters) {
  __m128 acc[12];
  for (auto &a : acc) a = _mm_set1_ps(0.f);
  __m128 a = _mm_set1_ps(1.0001f), b = _mm_set1_ps(0.9999f);
  for (int64_t i = 0; i < iters; ++i) {
    for (auto &c : acc) c = _mm_add_ps(_mm_mul_ps(a, b), c);
    asm volatile("" : "+x"(a), "+x"(b));
  }
  float sum = 0.f, out[4];
  for (auto &c : acc) {
    _mm_storeu_ps(out, c);
    sum += out[0];
  }
  return sum;
}
#else
constexpr bool kX86 = false;
double fma_loop_avx2(int64_t) { return 0.0; }
double fma_loop_sse(int64_t) { return 0.0; }
#endif

// Other CPUs: 48 independent multiply-adds per iteration, vectorised by the compiler as it can.
double fma_loop_generic(int64_t iters) {
  float acc[48] = {0.f};
  volatile float va = 1.0001f, vb = 0.9999f;
  for (int64_t i = 0; i < iters; ++i) {
    const float a = va, b = vb;  // (read each time: the loop cannot be folded)
    for (auto &c : acc) c = a * b + c;
  }
  float sum = 0.f;
  for (float c : acc) sum += c;
  return sum;
}
}  // namespace

// GFLOP/s of the loops above on all threads of the pool, about `seconds` long.
extern "C" double fast_ops_peak_gflops(double seconds) {
#if defined(__x86_64__) && defined(__GNUC__)
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  const bool avx2 = false;
#endif
  const double flops_per_iter = avx2 ? 12 * 8 * 2 : kX86 ? 12 * 4 * 2 : 48 * 2;
  auto run = [&](int64_t iters) {
    return avx2 ? fma_loop_avx2(iters) : kX86 ? fma_loop_sse(iters) : fma_loop_generic(iters);
  };
  // iterations per thread for about `seconds`, from a short single-thread trial
  auto t0 = std::chrono::steady_clock::now();
  double check = run(1000000);
  const double trial = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const int64_t iters = std::max<int64_t>(1000000, static_cast<int64_t>(1000000 * seconds / std::max(trial, 1e-9)));
  const int threads = Pool::instance().threads();
  const int64_t tasks = 16 * static_cast<int64_t>(threads);  // small tasks: a late worker still gets its share
  const int64_t per_task = std::max<int64_t>(1, iters / 16);
  std::vector<double> results(static_cast<size_t>(tasks), 0.0);  // (one slot per task: no shared write)
  parallel_for(tasks, [&](int64_t t) { results[t] = run(1000); });  // starts the workers
  t0 = std::chrono::steady_clock::now();
  parallel_for(tasks, [&](int64_t t) { results[t] += run(per_task); });
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (double r : results) check += r;
  if (!(check == check)) return 0.0;  // (uses the results, so that the loops are kept)
  return flops_per_iter * static_cast<double>(per_task) * tasks / elapsed / 1e9;
}
