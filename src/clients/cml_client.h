#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "clients/http_post.h"
#include "ports/cml.h"
#include "ports/observers.h"

namespace ccm::clients {

// A CML lab in YAML as CML's JSON topology (the body of POST /import). Plain scalars become
// integers, floats, booleans or null as YAML 1.2's core schema reads them; quoted scalars
// stay strings. The conversion is bounded: at most about one value and one byte of text per
// byte of YAML, and domain::kMaxLabYamlDepth levels. Errors: invalid_argument (field
// "lab_yaml") when the YAML does not parse, is not a mapping, has a key that is not a scalar,
// or expands past those bounds through aliases (which definitions stored before ParseLab
// refused them may hold).
Result<nlohmann::json> LabYamlToTopology(std::string_view lab_yaml);

// The topologies of many labs written from one definition's lab (ports::LabToImport), each
// the same as LabYamlToTopology of its text, without parsing each lab's YAML: the definition's
// lab is parsed once into a tree, and each lab's topology is built from that tree, the ports
// written into each scalar and key as domain::RewriteLab writes them into the text. The first
// lab of each definition is also converted from its text and the two compared: a definition
// whose placeholders change the YAML's structure (one in a flow collection, or behind an escape)
// has every lab converted from its text. Keeps the trees of the kKept definitions used last.
// Thread-safe.
class LabTemplates {
 public:
  static constexpr std::size_t kKept = 64;
  Result<nlohmann::json> Topology(const ports::LabToImport& lab);
  // How many topologies were built from a tree, not from the lab's text (for tests).
  std::size_t FromTree() const { return from_tree_.load(); }

 private:
  struct Node;
  struct Template;
  struct Kept {
    std::shared_ptr<const Template> tree;
    std::uint64_t used;  // the tick of its last use
  };
  std::mutex mu_;
  std::map<std::string, Kept, std::less<>> kept_;
  std::uint64_t tick_ = 0;
  std::atomic<std::size_t> from_tree_{0};
};

struct CmlOptions {
  std::string username;
  std::string password;
  // A PEM bundle that verifies every worker's CML over https (CML_CA_FILE); empty: the
  // system's CA store. A worker's own cml_ca_pem replaces it for that worker.
  std::string ca_file{};
  std::chrono::milliseconds connect_timeout{2000};
  std::chrono::milliseconds total_timeout{30000};
  // Who counts each call to every worker, under the remote's metric name ("cml").
  ports::RemoteTag tag = {};
};

// The CML workers over HTTP(S). Over https the worker's certificate is verified with its
// cml_ca_pem, else CmlOptions::ca_file, else the system's CA store; never skipped. Each worker
// gets its own keep-alive connections (one per call in flight to it, kept for the next calls)
// and its own token (POST /api/v0/authenticate), fetched on first use and shared by its calls;
// a 401 fetches a new one and retries once. One attempt per call otherwise: the reconcilers retry with backoff. Errors
// name the worker, the call and the status, never the password or the token. Thread-safe.
class CmlClient final : public ports::CmlWorkers {
 public:
  explicit CmlClient(CmlOptions options) : options_(std::move(options)) {}

  Result<std::string> ImportLab(const ports::CmlTarget& cml, const std::string& lab_yaml,
                                const std::string& title) override;
  // ImportLab, the topology built by LabTemplates.
  Result<std::string> ImportLabOf(const ports::CmlTarget& cml, const ports::LabToImport& lab,
                                  const std::string& title) override;
  Result<std::vector<ports::CmlLab>> ListLabs(const ports::CmlTarget& cml) override;
  Status StartLab(const ports::CmlTarget& cml, const std::string& lab_id) override;
  Result<ports::CmlLabState> LabState(const ports::CmlTarget& cml, const std::string& lab_id) override;
  Status StopLab(const ports::CmlTarget& cml, const std::string& lab_id) override;
  Status WipeLab(const ports::CmlTarget& cml, const std::string& lab_id) override;
  Status DeleteLab(const ports::CmlTarget& cml, const std::string& lab_id) override;

 private:
  struct Worker {
    explicit Worker(std::function<void(HttpPoster&)> setup) : pool(std::move(setup)) {}
    HttpPosterPool pool;  // its connections, one per call in flight
    std::mutex mu;        // guards token; never held across a call, but for authenticate
    std::string token;
  };
  // The connections and token for `cml`: one set per URL and trust, so that a worker whose CA
  // changes gets new connections.
  Worker& WorkerFor(const ports::CmlTarget& cml);
  // One call with the worker's token; the 2xx answer's body.
  Result<std::string> Call(const ports::CmlTarget& cml, const std::string& method, const std::string& path,
                           const std::string& body);
  // POST /authenticate over `http`. Called with the worker's lock held.
  Status Authenticate(const ports::CmlTarget& cml, Worker& w, HttpPoster& http);
  // POST /import of `topology`, marked with `title`; the new lab's id.
  Result<std::string> Import(const ports::CmlTarget& cml, nlohmann::json topology, const std::string& title);

  CmlOptions options_;
  LabTemplates templates_;
  std::mutex mu_;
  std::map<std::string, std::unique_ptr<Worker>> workers_;
};

}  // namespace ccm::clients
