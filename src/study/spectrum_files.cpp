// Writer and reader of RUN/spectra/NAME/ (see spectrum_files.h).
#include "src/study/spectrum_files.h"

#include <ATen/ATen.h>
#include <ATen/core/Dict.h>
#include <ATen/core/List.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <sstream>
#include <stdexcept>

#include "src/core/dtypes.h"
#include "src/core/error.h"
#include "src/io/files.h"
#include "src/io/rundir.h"

namespace fs = std::filesystem;

namespace ng {
namespace {

std::string eigenvalues_csv(const SpectrumResult& r) {
  const auto& asked = r.options.matrices;
  std::string out = "matrix,index,eigenvalue,residual\n";
  // G first, then the requested matrices in the order asked for; G only when requested.
  for (const auto& s : r.spectra) {
    if (s.matrix == MatrixKind::G && std::find(asked.begin(), asked.end(), s.matrix) == asked.end())
      continue;
    for (size_t j = 0; j < s.pairs.values.size(); ++j)
      out += fmt::format("{},{},{},{}\n", matrix_names().name(s.matrix), j + 1,
                         g17(s.pairs.values[j]), g17(s.pairs.residuals[j]));
  }
  return out;
}

std::string alignment_csv(const Alignment& a) {
  std::string out = "k,lambda,alpha,g\n";
  for (size_t j = 0; j < a.lambda.size(); ++j)
    out += fmt::format("{},{},{},{}\n", j + 1, g17(a.lambda[j]), g17(a.alpha[j]), g17(a.g[j]));
  return out;
}

json solver_counters(const SpectrumResult& r) {
  json out = json::object();
  for (const auto& s : r.spectra) {
    const Eigenpairs& e = s.pairs;
    json j = {{"solver", e.solver}, {"residuals", e.residual_method}, {"storage", s.storage}};
    if (!s.rows_method.empty()) j["rows_method"] = s.rows_method;
    if (std::isfinite(e.explicit_check)) j["explicit_residual_check"] = e.explicit_check;
    j["matvecs"] = e.matvecs;
    j["iterations"] = e.iterations;
    j["seconds"] = e.seconds;
    j["max_residual"] = e.max_residual();
    j["lambda_1"] = e.values.front();
    out[matrix_names().name(s.matrix)] = j;
  }
  return out;
}

json summary_json(const SpectrumResult& r, const json& request, const std::string& theta_sha) {
  const SpectrumOptions& o = r.options;
  const Alignment& a = r.alignment;
  std::vector<std::string> matrices;
  for (MatrixKind m : o.matrices) matrices.push_back(matrix_names().name(m));
  const bool hutchinson = a.method == "hutchinson";
  return json{{"tool", "noisegeom"},
              {"version", version()},
              {"run_dir", r.run_dir},
              {"theta", o.theta},
              {"theta_sha256", theta_sha},
              {"request", request},
              {"loss", a.loss},
              {"mu", a.mu.value},
              {"mu_se", a.mu.se},
              {"srk_G", a.srk_g.value},
              {"srk_G_se", a.srk_g.se},
              {"srk_G2", a.srk_g2.value},
              {"srk_G2_se", a.srk_g2.se},
              {"frobenius_G", a.frob_g.value},
              {"frobenius_G_se", a.frob_g.se},
              {"trace_G", a.trace_g.value},
              {"lambda_1", a.lambda.front()},
              {"metrics_method", a.method},
              {"hutchinson_probes", hutchinson ? o.probes : 0},
              {"estimator", estimator_names().name(o.estimator)},
              {"samples", o.samples},
              {"n_train", r.n_train},
              {"outputs", r.outputs},
              {"p", r.p},
              {"k", o.k},
              {"matrices", fmt::format("{}", fmt::join(matrices, ","))},
              {"solver", r.g().solver},
              {"storage", r.spectra.front().storage},
              {"row_budget", r.row_budget},
              {"dtype", dtype_names().name(o.dtype)},
              {"device", r.device},
              {"world_size", r.world_size},
              {"sharded", r.sharded},
              {"seed", o.seed},
              {"matvecs", r.matvecs},
              {"seconds", r.seconds},
              {"converged", true},
              {"max_residual", r.max_residual},
              {"residual_limit", residual_limit(o.dtype)},
              {"spectra", solver_counters(r)},
              {"parameter_order", "named_parameters() order, each tensor flattened row-major"},
              {"created", iso_time_now()}};
}

c10::IValue eigenvectors_dict(const SpectrumResult& r) {
  c10::impl::GenericDict d(c10::StringType::get(), c10::AnyType::get());
  d.insert("U", r.g().vectors.t().contiguous().cpu());
  d.insert("eigenvalues",
           at::tensor(r.alignment.lambda, at::TensorOptions().dtype(at::kDouble)).contiguous());
  c10::List<std::string> names;
  for (const auto& s : r.parameter_names) names.push_back(s);
  c10::List<int64_t> numels;
  for (int64_t v : r.parameter_numels) numels.push_back(v);
  d.insert("parameter_names", c10::IValue(names));
  d.insert("parameter_numels", c10::IValue(numels));
  return c10::IValue(d);
}

}  // namespace

double StoredSpectrum::lambda(int64_t i) const {
  return i >= 1 && i <= eigenvalues.numel() ? eigenvalues[i - 1].item<double>() : std::nan("");
}

double StoredSpectrum::number(const char* key) const {
  return json_number_or_nan(summary, key);
}

bool spectrum_complete(const std::string& dir) {
  using namespace spectrum_files;
  for (const char* f : {kSummary, kEigenvalues, kAlignment, kEigenvectors, kSamples})
    if (!fs::exists(fs::path(dir) / f)) return false;
  return true;
}

json write_spectrum(const std::string& dir, const SpectrumResult& r, const json& request,
                    const std::string& theta_sha256) {
  using namespace spectrum_files;
  const json summary = summary_json(r, request, theta_sha256);
  const fs::path target(dir);
  const std::string pid = std::to_string(::getpid());
  const fs::path tmp = target.string() + ".tmp." + pid;
  const fs::path old = target.string() + ".old." + pid;
  remove_tree(tmp.string());
  try {
    fs::create_directories(tmp);
    write_file_atomic((tmp / kEigenvalues).string(), eigenvalues_csv(r));
    write_file_atomic((tmp / kAlignment).string(), alignment_csv(r.alignment));
    save_ivalue((tmp / kEigenvectors).string(), eigenvectors_dict(r));
    write_file_atomic((tmp / kSamples).string(), r.samples_csv);
    write_json((tmp / kSummary).string(), summary);
    if (fs::exists(target)) fs::rename(target, old);
    fs::rename(tmp, target);
  } catch (const fs::filesystem_error& e) {
    remove_tree(tmp.string());
    fail("{}: cannot write the spectrum ({})", dir, e.code().message());
  } catch (...) {
    remove_tree(tmp.string());
    throw;
  }
  remove_tree(old.string());
  return summary;
}

AlignmentTable load_alignment(const std::string& dir) {
  const std::string file = (fs::path(dir) / spectrum_files::kAlignment).string();
  std::istringstream in(read_file(file));
  std::string line;
  if (!std::getline(in, line) || line != "k,lambda,alpha,g")
    fail("{}: expected the header k,lambda,alpha,g", file);
  AlignmentTable t;
  for (int64_t k = 1; std::getline(in, line); ++k) {
    std::istringstream row(line);
    std::string cell[4];
    for (auto& c : cell) std::getline(row, c, ',');
    try {
      if (std::stoll(cell[0]) != k) fail("{}: row {} has k = {}", file, k, cell[0]);
      t.lambda.push_back(std::stod(cell[1]));
      t.alpha.push_back(std::stod(cell[2]));
      t.g.push_back(std::stod(cell[3]));
    } catch (const std::logic_error&) {
      fail("{}: row {} is not k,lambda,alpha,g numbers: '{}'", file, k, line);
    }
  }
  if (t.lambda.empty()) fail("{}: no rows", file);
  return t;
}

StoredSpectrum stored_spectrum(const std::string& dir, const SpectrumResult& r,
                               const json& summary) {
  return {dir, summary, r.g().vectors.t().contiguous().cpu(),
          at::tensor(r.alignment.lambda, at::TensorOptions().dtype(at::kDouble))};
}

StoredSpectrum load_spectrum(const std::string& dir, int64_t p) {
  using namespace spectrum_files;
  if (!spectrum_complete(dir))
    fail("{}: not a finished spectrum (expected {}, {}, {}, {}, {})", dir, kEigenvalues, kAlignment,
         kEigenvectors, kSummary, kSamples);
  const std::string file = (fs::path(dir) / kEigenvectors).string();
  StoredSpectrum s;
  s.dir = dir;
  s.summary = read_json((fs::path(dir) / kSummary).string());
  const c10::IValue saved = load_ivalue(file);
  if (!saved.isGenericDict()) fail("{}: expected a dict with 'U' and 'eigenvalues'", file);
  const auto d = saved.toGenericDict();
  if (!d.contains("U") || !d.contains("eigenvalues") || !d.at("U").isTensor() ||
      !d.at("eigenvalues").isTensor())
    fail("{}: expected a dict with 'U' and 'eigenvalues'", file);
  s.U = d.at("U").toTensor().to(at::kDouble).contiguous();
  s.eigenvalues = d.at("eigenvalues").toTensor().to(at::kDouble).contiguous();
  if (s.U.dim() != 2 || s.U.size(1) < 1 || s.eigenvalues.numel() != s.U.size(1))
    fail("{}: U must be p x K with K eigenvalues", file);
  if (p > 0 && s.U.size(0) != p)
    fail("{}: U is not p x K with p = {} (a spectrum of another model?)", file, p);
  return s;
}

}  // namespace ng
