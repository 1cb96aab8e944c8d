// sme2_runner: runs an ExecuTorch program for timing or tracing and reports JSON.
//
// One source for every platform: it links the executorch wheel's runtime on Linux hosts and
// aarch64 devices, or a source build of ExecuTorch for Android and macOS. Arguments:
//   --model PATH --inputs PATH --iterations N --warmup W --threads T --json PATH
//   [--etdump PATH] [--outputs PATH]
// A timing-only run passes no --etdump, because tracing costs time.
//
// executor_runner-compatible mode (chosen by --model_path), so a config written for Arm's kit can
// point its runner_path at this binary: the flags of ExecuTorch's executor_runner
//   --model_path PATH [--num_executions N] [--cpu_threads T] [--etdump_path PATH] [--json PATH]
// Inputs are generated from the method's metadata (all ones, as executor_runner does); every
// execution is timed (no separate warmup: the caller drops the first ones); it prints
// executor_runner's summary line and one line "SME2_RUNNER_JSON {...}" with the per-iteration times.
// Flags may also be written --flag=value (gflags style).

#include <executorch/devtools/etdump/etdump_flatcc.h>
#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor.h>
#include <sys/resource.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

// The wheel ships the thread pool library but not its header; these two declarations are the
// part of its API we use (symbols in libexecutorch_threadpool).
namespace executorch::extension::threadpool {
class ThreadPool {
 public:
  bool _unsafe_reset_threadpool(uint32_t new_thread_count);
  size_t get_thread_count() const;
};
ThreadPool* get_threadpool();
}  // namespace executorch::extension::threadpool

using executorch::extension::TensorPtr;
using executorch::extension::module::Module;
using executorch::runtime::EValue;
using executorch::aten::ScalarType;

namespace {

[[noreturn]] void fail(const std::string& msg, int code = 2) {
  std::fprintf(stderr, "sme2_runner: error: %s\n", msg.c_str());
  std::exit(code);
}

struct Args {
  std::string model, inputs, json, etdump, outputs;
  long iterations = 10, warmup = 2, threads = 0;
  bool compat = false;  // executor_runner-compatible flags (--model_path ...)
};

long parse_long(const std::string& k, const std::string& v) {
  char* end = nullptr;
  const long n = std::strtol(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0') fail("value of " + k + " must be an integer, not '" + v + "'");
  return n;
}

Args parse_args(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i], v;
    const auto eq = k.find('=');
    if (k.rfind("--", 0) == 0 && eq != std::string::npos) {
      v = k.substr(eq + 1);
      k = k.substr(0, eq);
    } else {
      if (i + 1 >= argc) fail("missing value for " + k);
      v = argv[++i];
    }
    if (k == "--model") a.model = v;
    else if (k == "--inputs") a.inputs = v;
    else if (k == "--json") a.json = v;
    else if (k == "--etdump") a.etdump = v;
    else if (k == "--outputs") a.outputs = v;
    else if (k == "--iterations") a.iterations = parse_long(k, v);
    else if (k == "--warmup") a.warmup = parse_long(k, v);
    else if (k == "--threads") a.threads = parse_long(k, v);
    // executor_runner's flags
    else if (k == "--model_path") {
      a.model = v;
      a.compat = true;
    } else if (k == "--num_executions") {
      a.iterations = parse_long(k, v);
      a.compat = true;
    } else if (k == "--cpu_threads") {
      const long t = parse_long(k, v);
      a.threads = t < 0 ? 0 : t;  // executor_runner's -1: leave the thread pool as it is
      a.compat = true;
    } else if (k == "--etdump_path") {
      a.etdump = v;
      a.compat = true;
    } else if (k == "--method_name") {
      if (v != "forward") fail("only --method_name forward is supported, not " + v);
    } else fail("unknown argument " + k);
  }
  if (a.compat) {
    if (a.model.empty()) fail("--model_path is required");
    a.warmup = 0;  // executor_runner times every execution; the caller drops warmups
  } else if (a.model.empty() || a.inputs.empty() || a.json.empty()) {
    fail("--model, --inputs and --json are required (or executor_runner's --model_path)");
  }
  if (a.iterations < 1 || a.warmup < 0 || a.threads < 0) fail("iterations must be >= 1, warmup and threads >= 0");
  return a;
}

// A tensor read from the SME2TNS1 file: its bytes live in 8-byte aligned storage.
struct InputTensor {
  std::vector<uint64_t> storage;
  TensorPtr tensor;
};

std::vector<InputTensor> read_inputs(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail("cannot open inputs file " + path);
  std::string buf((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  size_t pos = 0;
  auto take = [&](void* dst, size_t n) {
    if (pos + n > buf.size()) fail("inputs file " + path + " is truncated");
    std::memcpy(dst, buf.data() + pos, n);
    pos += n;
  };
  char magic[8];
  take(magic, 8);
  if (std::memcmp(magic, "SME2TNS1", 8) != 0) fail("inputs file " + path + " has a bad magic");
  uint32_t count;
  take(&count, 4);
  std::vector<InputTensor> out(count);
  for (uint32_t t = 0; t < count; ++t) {
    uint32_t code, ndim;
    take(&code, 4);
    take(&ndim, 4);
    std::vector<executorch::aten::SizesType> sizes(ndim);
    for (uint32_t d = 0; d < ndim; ++d) {
      int64_t dim;
      take(&dim, 8);
      sizes[d] = static_cast<executorch::aten::SizesType>(dim);
    }
    uint64_t nbytes;
    take(&nbytes, 8);
    out[t].storage.resize((nbytes + 7) / 8 + 1);
    take(out[t].storage.data(), nbytes);
    out[t].tensor = executorch::extension::make_tensor_ptr(
        sizes, out[t].storage.data(), static_cast<ScalarType>(code));
  }
  return out;
}

// executor_runner's inputs: every input tensor of the method, filled with ones.
std::vector<InputTensor> ones_inputs(Module& module, const std::string& model) {
  auto meta = module.method_meta("forward");
  if (!meta.ok()) fail("cannot read the metadata of method forward of " + model);
  std::vector<InputTensor> out;
  for (size_t i = 0; i < meta->num_inputs(); ++i) {
    auto tag = meta->input_tag(i);
    if (!tag.ok() || *tag != executorch::runtime::Tag::Tensor)
      fail("input " + std::to_string(i) + " of " + model + " is not a tensor: pass inputs with --inputs (native mode)");
    auto info = meta->input_tensor_meta(i);
    if (!info.ok()) fail("cannot read input " + std::to_string(i) + " of " + model);
    InputTensor t;
    const size_t nbytes = info->nbytes();
    t.storage.assign((nbytes + 7) / 8 + 1, 0);
    size_t numel = 1;
    std::vector<executorch::aten::SizesType> sizes;
    for (auto d : info->sizes()) {
      sizes.push_back(d);
      numel *= static_cast<size_t>(d);
    }
    void* data = t.storage.data();
    for (size_t e = 0; e < numel; ++e) {
      switch (info->scalar_type()) {
        case ScalarType::Float: static_cast<float*>(data)[e] = 1.0f; break;
        case ScalarType::Double: static_cast<double*>(data)[e] = 1.0; break;
        case ScalarType::Half: static_cast<executorch::aten::Half*>(data)[e] = executorch::aten::Half(1.0f); break;
        case ScalarType::Char: static_cast<int8_t*>(data)[e] = 1; break;
        case ScalarType::Byte: static_cast<uint8_t*>(data)[e] = 1; break;
        case ScalarType::Short: static_cast<int16_t*>(data)[e] = 1; break;
        case ScalarType::Int: static_cast<int32_t*>(data)[e] = 1; break;
        case ScalarType::Long: static_cast<int64_t*>(data)[e] = 1; break;
        case ScalarType::Bool: static_cast<bool*>(data)[e] = true; break;
        default: fail("input " + std::to_string(i) + " of " + model + " has a dtype this runner cannot fill");
      }
    }
    t.tensor = executorch::extension::make_tensor_ptr(sizes, data, info->scalar_type());
    out.push_back(std::move(t));
  }
  return out;
}

void write_outputs(const std::string& path, const std::vector<EValue>& outs) {
  std::ofstream f(path, std::ios::binary);
  if (!f) fail("cannot write outputs file " + path);
  uint32_t count = 0;
  for (auto& v : outs) count += v.isTensor();
  f.write("SME2TNS1", 8);
  f.write(reinterpret_cast<const char*>(&count), 4);
  for (auto& v : outs) {
    if (!v.isTensor()) continue;
    const auto& t = v.toTensor();
    uint32_t code = static_cast<uint32_t>(t.scalar_type()), ndim = t.dim();
    f.write(reinterpret_cast<const char*>(&code), 4);
    f.write(reinterpret_cast<const char*>(&ndim), 4);
    for (auto s : t.sizes()) {
      int64_t d = s;
      f.write(reinterpret_cast<const char*>(&d), 8);
    }
    uint64_t nbytes = t.nbytes();
    f.write(reinterpret_cast<const char*>(&nbytes), 8);
    f.write(static_cast<const char*>(t.const_data_ptr()), nbytes);
  }
}

// Output checksum, the same definition as kit.tensorfile.checksum: float64 sum and abs sum.
void checksum(const std::vector<EValue>& outs, double& sum, double& abs_sum, long& count) {
  sum = abs_sum = 0;
  count = 0;
  for (auto& v : outs) {
    if (!v.isTensor()) continue;
    const auto& t = v.toTensor();
    const size_t n = t.numel();
    count += n;
    for (size_t i = 0; i < n; ++i) {
      double x;
      switch (t.scalar_type()) {
        case ScalarType::Float: x = t.const_data_ptr<float>()[i]; break;
        case ScalarType::Double: x = t.const_data_ptr<double>()[i]; break;
        case ScalarType::Half: x = static_cast<float>(t.const_data_ptr<executorch::aten::Half>()[i]); break;
        case ScalarType::Char: x = t.const_data_ptr<int8_t>()[i]; break;
        case ScalarType::Byte: x = t.const_data_ptr<uint8_t>()[i]; break;
        case ScalarType::Int: x = t.const_data_ptr<int32_t>()[i]; break;
        case ScalarType::Long: x = static_cast<double>(t.const_data_ptr<int64_t>()[i]); break;
        case ScalarType::Bool: x = t.const_data_ptr<bool>()[i]; break;
        default: x = 0;
      }
      sum += x;
      abs_sum += x < 0 ? -x : x;
    }
  }
}

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

long peak_rss_kb() {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
#ifdef __APPLE__
  return ru.ru_maxrss / 1024;  // bytes on macOS
#else
  return ru.ru_maxrss;  // kilobytes on Linux
#endif
}

std::string json_string(const std::string& v) {
  std::ostringstream s;
  s << '"';
  for (unsigned char c : v) {
    if (c == '"' || c == '\\') s << '\\' << c;
    else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      s << buf;
    } else s << c;
  }
  s << '"';
  return s.str();
}

std::string json_list(const std::vector<double>& v) {
  std::ostringstream s;
  s.precision(6);
  s << std::fixed << "[";
  for (size_t i = 0; i < v.size(); ++i) s << (i ? ", " : "") << v[i];
  s << "]";
  return s.str();
}

}  // namespace

int main(int argc, char** argv) {
  Args args = parse_args(argc, argv);
  std::vector<InputTensor> inputs;
  if (!args.inputs.empty()) inputs = read_inputs(args.inputs);

  std::unique_ptr<executorch::etdump::ETDumpGen> tracer_owner;
  executorch::etdump::ETDumpGen* tracer = nullptr;
  if (!args.etdump.empty()) {
    tracer_owner = std::make_unique<executorch::etdump::ETDumpGen>();
    tracer = tracer_owner.get();
  }
  if (args.threads > 0) {
    auto* pool = executorch::extension::threadpool::get_threadpool();
    if (pool == nullptr || !pool->_unsafe_reset_threadpool(static_cast<uint32_t>(args.threads)))
      fail("cannot set the thread pool to " + std::to_string(args.threads) + " threads");
  }

  auto t_load = std::chrono::steady_clock::now();
  Module module(args.model, Module::LoadMode::File, std::move(tracer_owner));
  auto err = module.load_forward();
  if (err != executorch::runtime::Error::Ok)
    fail("cannot load method forward of " + args.model + " (error " + std::to_string(static_cast<int>(err)) + ")");
  const double load_ms = ms_since(t_load);
  if (args.inputs.empty()) inputs = ones_inputs(module, args.model);

  std::vector<EValue> evalues;
  for (auto& in : inputs) evalues.emplace_back(*in.tensor);

  std::vector<double> warmup_ms, latencies_ms;
  std::vector<EValue> last;
  const long total = args.warmup + args.iterations;
  for (long i = 0; i < total; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    auto result = module.forward(evalues);
    const double ms = ms_since(t0);
    if (!result.ok())
      fail("forward failed at iteration " + std::to_string(i) + " (error " +
           std::to_string(static_cast<int>(result.error())) + ")");
    (i < args.warmup ? warmup_ms : latencies_ms).push_back(ms);
    if (i == total - 1) last = result.get();
  }

  double sum, abs_sum;
  long count;
  checksum(last, sum, abs_sum, count);
  if (!args.outputs.empty()) write_outputs(args.outputs, last);

  if (tracer) {
    auto dump = tracer->get_etdump_data();
    if (dump.buf == nullptr || dump.size == 0) fail("the ETDump is empty: was the runtime built with the event tracer?");
    std::ofstream f(args.etdump, std::ios::binary);
    f.write(static_cast<const char*>(dump.buf), dump.size);
    free(dump.buf);
    if (!f) fail("cannot write ETDump " + args.etdump);
  }

  const double first_ms = args.warmup > 0 ? warmup_ms.front() : latencies_ms.front();
  double total_ms = 0;
  for (double ms : latencies_ms) total_ms += ms;
  auto* pool = executorch::extension::threadpool::get_threadpool();
  // One line of JSON (", " and ": " separators: the reader maps nan/inf after them).
  std::ostringstream j;
  j.precision(6);
  j << std::fixed << "{"
    << "\"runner\": \"native\", "
    << "\"mode\": \"" << (args.compat ? "executor_runner" : "native") << "\", "
    << "\"load_ms\": " << load_ms << ", "
    << "\"first_inference_ms\": " << first_ms << ", "
    << "\"warmup_ms\": " << json_list(warmup_ms) << ", "
    << "\"latencies_ms\": " << json_list(latencies_ms) << ", "
    << "\"peak_rss_kb\": " << peak_rss_kb() << ", "
    << "\"threads\": " << (pool ? static_cast<long>(pool->get_thread_count()) : 0) << ", "
    << "\"checksum\": {\"sum\": " << sum << ", \"abs_sum\": " << abs_sum << ", \"count\": " << count << "}, "
    << "\"etdump\": " << (args.etdump.empty() ? "null" : json_string(args.etdump)) << "}";
  if (!args.json.empty()) {
    std::ofstream f(args.json);
    f << j.str() << "\n";
    if (!f) fail("cannot write JSON " + args.json);
  }
  if (args.compat) {
    // executor_runner's summary line (Arm's perf_runner parses it), then the per-iteration times.
    std::printf("Model executed successfully %ld time(s) in %f ms.\n", args.iterations, total_ms);
    std::printf("SME2_RUNNER_JSON %s\n", j.str().c_str());
    std::fflush(stdout);
  }
  return 0;
}
