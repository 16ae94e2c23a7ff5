// XLA FFI handlers for the plane-wave mode sum (paper Eq. 10), called from jaxcr.native inside
// jitted code. Positions (..., 3) in r_L; wave vectors κ = k/π (V..., N, 3) in half-turns per r_L;
// polarisations E_n (V..., N, 3) in B0; phases β/π (V..., N) in half-turns. The V axes are the
// batch axes that vmap adds (size 1 where an operand is not batched); they lead the position
// axes. The result is the turbulent field δb (..., 3) (and for the Jacobian handler ∂δb/∂r,
// (..., 3, 3)). Work is split over particles onto XLA's intra-op thread pool; the calling thread
// takes chunks too, so the handler finishes even when the pool is busy.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "plane_waves_kernels.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

#define JAXCR_DECLARE_VARIANT(name)                                                                      \
  extern "C" void jaxcr_plane_wave_field_##name(int32_t, const jaxcr::ModeTable&, const double*, double*, \
                                                 int64_t);                                               \
  extern "C" void jaxcr_plane_wave_jacobian_##name(const jaxcr::ModeTable&, const double*, double*, double*, \
                                                    int64_t);                                            \
  extern "C" void jaxcr_boris_##name(int32_t, const jaxcr::ModeTable&, const double*, const double*,          \
                                     const int64_t*, double*, double*, int64_t);

JAXCR_DECLARE_VARIANT(generic)
#if defined(__x86_64__)
JAXCR_DECLARE_VARIANT(x86_64_v3)
JAXCR_DECLARE_VARIANT(x86_64_v4)
#endif

namespace jaxcr {
namespace {

struct Variant {
  const char* name;
  FieldFn field;
  JacobianFn jacobian;
  BorisFn boris;
  bool (*supported)();
};

bool always() { return true; }
#if defined(__x86_64__)
bool has_v3() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi2");
}
bool has_v4() {
  return has_v3() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512cd");
}
#endif

// Most capable first.
const Variant kVariants[] = {
#if defined(__x86_64__)
    {"x86-64-v4", jaxcr_plane_wave_field_x86_64_v4, jaxcr_plane_wave_jacobian_x86_64_v4, jaxcr_boris_x86_64_v4,
     has_v4},
    {"x86-64-v3", jaxcr_plane_wave_field_x86_64_v3, jaxcr_plane_wave_jacobian_x86_64_v3, jaxcr_boris_x86_64_v3,
     has_v3},
#endif
    {"generic", jaxcr_plane_wave_field_generic, jaxcr_plane_wave_jacobian_generic, jaxcr_boris_generic, always},
};

std::atomic<const Variant*> g_variant{nullptr};

const Variant* best_variant() {
  for (const Variant& v : kVariants) {
    if (v.supported()) return &v;
  }
  return &kVariants[sizeof(kVariants) / sizeof(kVariants[0]) - 1];
}

const Variant* current_variant() {
  const Variant* v = g_variant.load(std::memory_order_acquire);
  if (v == nullptr) {
    v = best_variant();
    g_variant.store(v, std::memory_order_release);
  }
  return v;
}

// Broadcast geometry of one call: V batch axes (leading), then the particle axes of the positions.
struct Geometry {
  int64_t n_modes = 0;        // N
  int64_t n_padded = 0;       // N rounded up to kModeBlock
  int64_t n_batches = 1;      // V = product of the batch axes of the result
  int64_t n_inner = 1;        // particles per batch element
  std::vector<int64_t> batch_dims;                      // result batch axes
  std::vector<int64_t> pos_stride, k_stride, e_stride, b_stride, b0_stride;  // per batch axis (0: broadcast)
};

std::vector<int64_t> batch_strides(ffi::Span<const int64_t> dims, int64_t n_batch_axes, int64_t inner) {
  std::vector<int64_t> strides(n_batch_axes, 0);
  int64_t s = inner;
  for (int64_t i = n_batch_axes - 1; i >= 0; --i) {
    strides[i] = dims[i] == 1 ? 0 : s;
    s *= dims[i];
  }
  return strides;
}

ffi::Error make_geometry(const ffi::Buffer<ffi::F64>& pos, const ffi::Buffer<ffi::F64>& k,
                         const ffi::Buffer<ffi::F64>& e, const ffi::Buffer<ffi::F64>& b, Geometry* g) {
  auto pd = pos.dimensions(), kd = k.dimensions(), ed = e.dimensions(), bd = b.dimensions();
  const int64_t rp = pd.size(), rk = kd.size();
  if (rp < 1 || pd[rp - 1] != 3) return ffi::Error::InvalidArgument("positions must have shape (..., 3)");
  if (rk < 2 || kd[rk - 1] != 3) return ffi::Error::InvalidArgument("wave vectors must have shape (..., N, 3)");
  const int64_t nv = rk - 2;
  if (static_cast<int64_t>(ed.size()) != rk || static_cast<int64_t>(bd.size()) != rk - 1 || rp - 1 < nv) {
    return ffi::Error::InvalidArgument("mode arrays and positions have inconsistent batch axes");
  }
  const int64_t n = kd[rk - 2];
  if (ed[rk - 2] != n || ed[rk - 1] != 3 || bd[rk - 2] != n) {
    return ffi::Error::InvalidArgument("wave vectors, polarisations and phases disagree on the number of modes");
  }
  g->n_modes = n;
  g->n_padded = (n + kModeBlock - 1) / kModeBlock * kModeBlock;
  g->batch_dims.assign(nv, 1);
  for (int64_t i = 0; i < nv; ++i) {
    int64_t d = 1;
    for (int64_t x : {pd[i], kd[i], ed[i], bd[i]}) {
      if (x != 1) {
        if (d != 1 && d != x) return ffi::Error::InvalidArgument("batch axes of the operands do not broadcast");
        d = x;
      }
    }
    g->batch_dims[i] = d;
    g->n_batches *= d;
  }
  for (int64_t i = nv; i < rp - 1; ++i) g->n_inner *= pd[i];
  g->pos_stride = batch_strides(pd, nv, 3 * g->n_inner);
  g->k_stride = batch_strides(kd, nv, 3 * n);
  g->e_stride = batch_strides(ed, nv, 3 * n);
  g->b_stride = batch_strides(bd, nv, n);
  return ffi::Error::Success();
}

// One mode table per distinct set of mode operands; batch element v uses table group[v].
struct Tables {
  std::vector<double> doubles;  // 7 arrays of n_padded per table
  std::vector<float> floats;    // 3 arrays of n_padded per table
  std::vector<ModeTable> tables;
  std::vector<int64_t> group;   // per batch element
  std::vector<int64_t> pos_offset;
  std::vector<int64_t> b0_offset;  // regular field of each batch element (Boris only)
};

void build_tables(const Geometry& g, const double* k, const double* e, const double* b, Tables* t) {
  const int64_t nv = g.batch_dims.size(), np = g.n_padded, n = g.n_modes;
  t->group.assign(g.n_batches, 0);
  t->pos_offset.assign(g.n_batches, 0);
  t->b0_offset.assign(g.n_batches, 0);
  std::vector<int64_t> mode_offsets;  // (k, e, b) offsets of each table
  std::vector<int64_t> idx(nv, 0);
  for (int64_t v = 0; v < g.n_batches; ++v) {
    int64_t ko = 0, eo = 0, bo = 0, po = 0, b0o = 0;
    for (int64_t i = 0; i < nv; ++i) {
      if (!g.b0_stride.empty()) b0o += idx[i] * g.b0_stride[i];
      ko += idx[i] * g.k_stride[i];
      eo += idx[i] * g.e_stride[i];
      bo += idx[i] * g.b_stride[i];
      po += idx[i] * g.pos_stride[i];
    }
    t->pos_offset[v] = po;
    t->b0_offset[v] = b0o;
    int64_t found = -1;
    for (size_t j = 0; j < mode_offsets.size() / 3; ++j) {
      if (mode_offsets[3 * j] == ko && mode_offsets[3 * j + 1] == eo && mode_offsets[3 * j + 2] == bo) {
        found = j;
        break;
      }
    }
    if (found < 0) {
      found = mode_offsets.size() / 3;
      mode_offsets.insert(mode_offsets.end(), {ko, eo, bo});
    }
    t->group[v] = found;
    for (int64_t i = nv - 1; i >= 0; --i) {  // next multi-index
      if (++idx[i] < g.batch_dims[i]) break;
      idx[i] = 0;
    }
  }
  const int64_t n_tables = mode_offsets.size() / 3;
  t->doubles.assign(7 * np * n_tables, 0.0);
  t->floats.assign(3 * np * n_tables, 0.0f);
  t->tables.resize(n_tables);
  for (int64_t j = 0; j < n_tables; ++j) {
    double* d = t->doubles.data() + 7 * np * j;
    float* f = t->floats.data() + 3 * np * j;
    const double* kj = k + mode_offsets[3 * j];
    const double* ej = e + mode_offsets[3 * j + 1];
    const double* bj = b + mode_offsets[3 * j + 2];
    for (int64_t m = 0; m < n; ++m) {
      for (int c = 0; c < 3; ++c) {
        d[c * np + m] = kj[3 * m + c];
        d[(4 + c) * np + m] = ej[3 * m + c];
        f[c * np + m] = static_cast<float>(ej[3 * m + c]);
      }
      d[3 * np + m] = bj[m];
    }
    t->tables[j] = ModeTable{np,          d,           d + np,      d + 2 * np, d + 3 * np,
                             d + 4 * np,  d + 5 * np,  d + 6 * np,  f,          f + np,
                             f + 2 * np};
  }
}

// Runs body(chunk) for chunk in [0, n_chunks) on the calling thread and n_helpers pool tasks.
template <typename Body>
void parallel_chunks(ffi::ThreadPool& pool, int64_t n_chunks, int64_t n_helpers, Body body) {
  struct Shared {
    std::atomic<int64_t> next{0};
    std::atomic<int64_t> done{0};
  };
  auto shared = std::make_shared<Shared>();
  auto work = std::make_shared<Body>(std::move(body));
  auto run = [shared, work, n_chunks]() {
    for (int64_t c; (c = shared->next.fetch_add(1)) < n_chunks;) {
      (*work)(c);
      shared->done.fetch_add(1, std::memory_order_release);
    }
  };
  const int64_t helpers = std::min<int64_t>(n_helpers, n_chunks - 1);
  for (int64_t i = 0; i < helpers; ++i) {
    auto task = run;
    pool.Schedule(std::move(task));
  }
  run();
  while (shared->done.load(std::memory_order_acquire) < n_chunks) std::this_thread::yield();
}

constexpr int64_t kMinModeEvaluationsPerChunk = 16384;

// Calls body(batch element, first particle, count) over all particles of all batch elements, in
// chunks of consecutive particles (a chunk may span several batch elements: under vmap over
// particles each batch element holds one particle), on the caller and the pool's threads.
template <typename Body>
void for_particle_chunks(ffi::ThreadPool& pool, const Geometry& g, Body body) {
  const int64_t total = g.n_batches * g.n_inner;
  if (total == 0) return;
  const int64_t workers = std::max<int64_t>(1, pool.num_threads());
  int64_t chunk = (total + 4 * workers - 1) / (4 * workers);
  chunk = std::max<int64_t>(chunk, (kMinModeEvaluationsPerChunk + g.n_padded - 1) / std::max<int64_t>(g.n_padded, 1));
  const int64_t n_chunks = (total + chunk - 1) / chunk;
  auto run = [&](int64_t c) {
    const int64_t end = std::min(total, (c + 1) * chunk);
    for (int64_t i = c * chunk; i < end;) {
      const int64_t v = i / g.n_inner, first = i % g.n_inner;
      const int64_t count = std::min(g.n_inner - first, end - i);
      body(v, first, count);
      i += count;
    }
  };
  if (n_chunks == 1 || workers == 1) {
    for (int64_t c = 0; c < n_chunks; ++c) run(c);
  } else {
    parallel_chunks(pool, n_chunks, workers - 1, run);
  }
}

ffi::Error FieldImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F64> pos, ffi::Buffer<ffi::F64> k,
                     ffi::Buffer<ffi::F64> e, ffi::Buffer<ffi::F64> b, ffi::ResultBuffer<ffi::F64> out,
                     int32_t level) {
  if (level < kFull || level > kSingle) return ffi::Error::InvalidArgument("level must be 0, 1 or 2");
  Geometry g;
  if (ffi::Error err = make_geometry(pos, k, e, b, &g); err.failure()) return err;
  if (static_cast<int64_t>(out->element_count()) != 3 * g.n_batches * g.n_inner) {
    return ffi::Error::InvalidArgument("result has the wrong size");
  }
  Tables t;
  build_tables(g, k.typed_data(), e.typed_data(), b.typed_data(), &t);
  const FieldFn field = current_variant()->field;
  const double* p = pos.typed_data();
  double* o = out->typed_data();
  for_particle_chunks(pool, g, [&](int64_t v, int64_t first, int64_t count) {
    field(level, t.tables[t.group[v]], p + t.pos_offset[v] + 3 * first, o + 3 * (v * g.n_inner + first), count);
  });
  return ffi::Error::Success();
}

ffi::Error JacobianImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F64> pos, ffi::Buffer<ffi::F64> k,
                        ffi::Buffer<ffi::F64> e, ffi::Buffer<ffi::F64> b, ffi::ResultBuffer<ffi::F64> out,
                        ffi::ResultBuffer<ffi::F64> jac) {
  Geometry g;
  if (ffi::Error err = make_geometry(pos, k, e, b, &g); err.failure()) return err;
  if (static_cast<int64_t>(out->element_count()) != 3 * g.n_batches * g.n_inner ||
      static_cast<int64_t>(jac->element_count()) != 9 * g.n_batches * g.n_inner) {
    return ffi::Error::InvalidArgument("results have the wrong size");
  }
  Tables t;
  build_tables(g, k.typed_data(), e.typed_data(), b.typed_data(), &t);
  const JacobianFn jacobian = current_variant()->jacobian;
  const double* p = pos.typed_data();
  double *o = out->typed_data(), *j = jac->typed_data();
  for_particle_chunks(pool, g, [&](int64_t v, int64_t first, int64_t count) {
    const int64_t at = v * g.n_inner + first;
    jacobian(t.tables[t.group[v]], p + t.pos_offset[v] + 3 * first, o + 3 * at, j + 9 * at, count);
  });
  return ffi::Error::Success();
}

// Boris steps for every particle in b = b0 + δb (charge sign folded in by the caller): r, u (V..., P..., 3), h and steps (V..., P...), the modes and the
// regular field b0 (V..., 3) with size-1 batch axes broadcast. Results: r and u after the steps.
ffi::Error BorisImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F64> r, ffi::Buffer<ffi::F64> u,
                     ffi::Buffer<ffi::F64> h, ffi::Buffer<ffi::S64> steps, ffi::Buffer<ffi::F64> k,
                     ffi::Buffer<ffi::F64> e, ffi::Buffer<ffi::F64> b, ffi::Buffer<ffi::F64> b0,
                     ffi::ResultBuffer<ffi::F64> r_out, ffi::ResultBuffer<ffi::F64> u_out, int32_t level) {
  if (level < kFull || level > kSingle) return ffi::Error::InvalidArgument("level must be 0, 1 or 2");
  Geometry g;
  if (ffi::Error err = make_geometry(r, k, e, b, &g); err.failure()) return err;
  const int64_t n_particles = g.n_batches * g.n_inner;
  if (static_cast<int64_t>(r.element_count()) != 3 * n_particles ||
      static_cast<int64_t>(u.element_count()) != 3 * n_particles ||
      static_cast<int64_t>(h.element_count()) != n_particles ||
      static_cast<int64_t>(steps.element_count()) != n_particles) {
    return ffi::Error::InvalidArgument("positions, momenta, steps and step counts must have one entry per particle");
  }
  auto b0d = b0.dimensions();
  const int64_t nv = g.batch_dims.size();
  if (static_cast<int64_t>(b0d.size()) != nv + 1 || b0d[nv] != 3) {
    return ffi::Error::InvalidArgument("the regular field must have shape (V..., 3)");
  }
  for (int64_t i = 0; i < nv; ++i) {
    if (b0d[i] != 1 && b0d[i] != g.batch_dims[i]) return ffi::Error::InvalidArgument("b0 batch axes do not broadcast");
  }
  g.b0_stride = batch_strides(b0d, nv, 3);
  Tables t;
  build_tables(g, k.typed_data(), e.typed_data(), b.typed_data(), &t);
  std::memcpy(r_out->typed_data(), r.typed_data(), sizeof(double) * 3 * n_particles);
  std::memcpy(u_out->typed_data(), u.typed_data(), sizeof(double) * 3 * n_particles);
  const BorisFn boris = current_variant()->boris;
  double *ro = r_out->typed_data(), *uo = u_out->typed_data();
  const double* hp = h.typed_data();
  const int64_t* sp = steps.typed_data();
  const double* b0p = b0.typed_data();
  for_particle_chunks(pool, g, [&](int64_t v, int64_t first, int64_t count) {
    const int64_t at = v * g.n_inner + first;
    boris(level, t.tables[t.group[v]], b0p + t.b0_offset[v], hp + at, sp + at, ro + 3 * at, uo + 3 * at, count);
  });
  return ffi::Error::Success();
}

}  // namespace
}  // namespace jaxcr

XLA_FFI_DEFINE_HANDLER_SYMBOL(jaxcr_plane_wave_field, jaxcr::FieldImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F64>>()
                                  .Arg<ffi::Buffer<ffi::F64>>()
                                  .Arg<ffi::Buffer<ffi::F64>>()
                                  .Arg<ffi::Buffer<ffi::F64>>()
                                  .Ret<ffi::Buffer<ffi::F64>>()
                                  .Attr<int32_t>("level"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(jaxcr_plane_wave_jacobian, jaxcr::JacobianImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F64>>()
                                  .Arg<ffi::Buffer<ffi::F64>>()
                                  .Arg<ffi::Buffer<ffi::F64>>()
                                  .Arg<ffi::Buffer<ffi::F64>>()
                                  .Ret<ffi::Buffer<ffi::F64>>()
                                  .Ret<ffi::Buffer<ffi::F64>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(jaxcr_boris, jaxcr::BorisImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F64>>()
                                  .Arg<ffi::Buffer<ffi::F64>>()
                                  .Arg<ffi::Buffer<ffi::F64>>()
                                  .Arg<ffi::Buffer<ffi::S64>>()
                                  .Arg<ffi::Buffer<ffi::F64>>()
                                  .Arg<ffi::Buffer<ffi::F64>>()
                                  .Arg<ffi::Buffer<ffi::F64>>()
                                  .Arg<ffi::Buffer<ffi::F64>>()
                                  .Ret<ffi::Buffer<ffi::F64>>()
                                  .Ret<ffi::Buffer<ffi::F64>>()
                                  .Attr<int32_t>("level"));

// The instruction-set variant in use ("x86-64-v4", "x86-64-v3" or "generic").
extern "C" const char* jaxcr_native_variant() { return jaxcr::current_variant()->name; }

// Use the named variant (for tests and benchmarks); 0 on success, 1 if unknown or unsupported here.
extern "C" int jaxcr_native_set_variant(const char* name) {
  for (const jaxcr::Variant& v : jaxcr::kVariants) {
    if (std::strcmp(v.name, name) == 0 && v.supported()) {
      jaxcr::g_variant.store(&v, std::memory_order_release);
      return 0;
    }
  }
  return 1;
}
