#include "clients/cml_client.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <regex>
#include <stdexcept>

#include "cloudevents/json_parse.h"
#include "domain/lab_yaml.h"
#include "domain/time.h"
#include "transport/retry.h"

namespace ccm::clients {

using nlohmann::json;

namespace {

// A scalar's JSON value: `plain` (neither quoted nor tagged) ones are typed by YAML 1.2's core
// schema, the others stay strings.
json TypedScalar(const std::string& v, bool plain) {
  if (!plain) return v;
  static const std::regex kInt("[-+]?[0-9]+");
  static const std::regex kFloat("[-+]?(\\.[0-9]+|[0-9]+(\\.[0-9]*)?)([eE][-+]?[0-9]+)?");
  if (v.empty() || v == "~" || v == "null" || v == "Null" || v == "NULL") return nullptr;
  if (v == "true" || v == "True" || v == "TRUE") return true;
  if (v == "false" || v == "False" || v == "FALSE") return false;
  if (std::regex_match(v, kInt)) {
    try {
      return std::stoll(v);
    } catch (const std::out_of_range&) {
      return v;
    }
  }
  if (std::regex_match(v, kFloat)) return std::stod(v);
  return v;
}

// Neither quoted nor explicitly tagged.
bool IsPlain(const YAML::Node& n) { return n.Tag() == "?"; }

// What a conversion may still produce. Without aliases a topology converts to at most about
// one JSON value and one byte of text per byte of YAML; an alias copies what it names, so a
// definition with aliases to aliases (stored before ParseLab refused them) would expand
// without end. Running out is an invalid_argument error, not an exhausted process.
struct Budget {
  std::size_t values;
  std::size_t bytes;

  static Budget For(std::string_view yaml) { return {2 * yaml.size() + 1024, 2 * yaml.size() + 1024}; }
  void Spend(std::size_t scalar_bytes) {
    if (values == 0 || bytes < scalar_bytes)
      throw std::invalid_argument(
          "lab_yaml expands to more than twice its size when converted for CML (YAML aliases are not allowed)");
    --values;
    bytes -= scalar_bytes;
  }
};

json ToJson(const YAML::Node& n, Budget& budget, int depth) {
  if (depth > domain::kMaxLabYamlDepth)
    throw std::invalid_argument("lab_yaml nests deeper than " + std::to_string(domain::kMaxLabYamlDepth) + " levels");
  switch (n.Type()) {
    case YAML::NodeType::Map: {
      budget.Spend(0);
      json out = json::object();
      for (const auto& kv : n) {
        // JSON keys are strings; YAML allows any node as a key ("? [a, b]: c").
        if (!kv.first.IsScalar()) throw std::invalid_argument("lab_yaml has a mapping key that is not a scalar");
        budget.Spend(kv.first.Scalar().size());
        out[kv.first.Scalar()] = ToJson(kv.second, budget, depth + 1);
      }
      return out;
    }
    case YAML::NodeType::Sequence: {
      budget.Spend(0);
      json out = json::array();
      for (const auto& e : n) out.push_back(ToJson(e, budget, depth + 1));
      return out;
    }
    case YAML::NodeType::Scalar:
      budget.Spend(n.Scalar().size());
      return TypedScalar(n.Scalar(), IsPlain(n));
    default:
      budget.Spend(0);
      return nullptr;
  }
}

// CML's limit on a lab description (LabTopology.description, maxLength).
constexpr std::size_t kMaxDescription = 4096;

// Puts `mark` first in the description of the topology's `lab` section, the author's text (cut
// to fit, on a UTF-8 boundary) after it. A topology without a `lab` mapping is left as it is:
// CML refuses it anyway, with its own reason.
void MarkTopology(json& topology, const std::string& mark) {
  if (!topology.contains("lab") || !topology["lab"].is_object()) return;
  json& lab = topology["lab"];
  std::string description = mark;
  if (lab.contains("description") && lab["description"].is_string() && !lab["description"].empty()) {
    description += "\n" + lab["description"].get<std::string>();
    if (description.size() > kMaxDescription) {
      std::size_t n = kMaxDescription;
      while (n > mark.size() && (static_cast<unsigned char>(description[n]) & 0xC0) == 0x80) --n;
      description.resize(n);
    }
  }
  lab["description"] = description;
}

// A string member of `o`, or "".
std::string StringOf(const json& o, const char* key) {
  auto it = o.find(key);
  return it != o.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// The status and the start of the body, with the token and the password taken out.
std::string Text(const HttpAnswer& a, std::string_view token, std::string_view password) {
  if (!a.transport_error.empty()) return a.transport_error;
  std::string out = "HTTP " + std::to_string(a.status);
  if (!a.body.empty()) out.append(": ").append(Redact(a.body, {token, password}).substr(0, 200));
  return out;
}

}  // namespace

Result<json> LabYamlToTopology(std::string_view lab_yaml) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(lab_yaml));
  } catch (const YAML::Exception& e) {
    return Error::InvalidArgument(std::string("lab_yaml is not YAML: ") + e.what(), "lab_yaml");
  }
  if (!root.IsMap()) return Error::InvalidArgument("lab_yaml must be a mapping", "lab_yaml");
  try {
    Budget budget = Budget::For(lab_yaml);
    return ToJson(root, budget, 1);
  } catch (const std::exception& e) {  // found by fuzzing: a non-scalar key used to escape as a throw
    return Error::InvalidArgument(e.what(), "lab_yaml");
  }
}

// A lab's YAML as parsed: what a topology is built from, without its ports.
struct LabTemplates::Node {
  YAML::NodeType::value type = YAML::NodeType::Null;
  std::string text;  // a scalar's
  bool plain = false;
  std::vector<std::pair<std::string, Node>> members;  // a mapping's, in the YAML's order
  std::vector<Node> items;                            // a sequence's
};

struct LabTemplates::Template {
  Node root;
  bool same = false;  // its first lab built from the tree was the same as from the text
};

namespace {

// `text` with the lab's ports written in, as domain::RewriteLab writes them into the YAML.
Result<std::string> WithPorts(const std::string& text, const domain::PortMap& ports) {
  if (text.find("${") == std::string::npos) return text;
  return domain::RewriteLab(text, ports);
}

}  // namespace

Result<json> LabTemplates::Topology(const ports::LabToImport& lab) {
  // The tree is built from a conversion that succeeded (so without keys that are not scalars,
  // and within the conversion's bounds) and keeps its shape.
  struct Build {
    static Node From(const YAML::Node& n) {
      Node out;
      out.type = n.Type();
      if (n.IsScalar()) {
        out.text = n.Scalar();
        out.plain = IsPlain(n);
      } else if (n.IsMap()) {
        for (const auto& kv : n) out.members.emplace_back(kv.first.Scalar(), From(kv.second));
      } else if (n.IsSequence()) {
        for (const auto& e : n) out.items.push_back(From(e));
      }
      return out;
    }
    static json Json(const Node& n, const domain::PortMap& ports) {
      switch (n.type) {
        case YAML::NodeType::Map: {
          json out = json::object();
          for (const auto& [key, value] : n.members) {
            auto k = WithPorts(key, ports);
            if (!k) throw std::invalid_argument(k.error().message);
            out[*k] = Json(value, ports);
          }
          return out;
        }
        case YAML::NodeType::Sequence: {
          json out = json::array();
          for (const auto& e : n.items) out.push_back(Json(e, ports));
          return out;
        }
        case YAML::NodeType::Scalar: {
          auto v = WithPorts(n.text, ports);
          if (!v) throw std::invalid_argument(v.error().message);
          return TypedScalar(*v, n.plain);
        }
        default:
          return nullptr;
      }
    }
  };
  std::shared_ptr<const Template> kept;
  {
    std::lock_guard lock(mu_);
    if (auto it = kept_.find(lab.definition_yaml); it != kept_.end()) {
      it->second.used = ++tick_;
      kept = it->second.tree;
    }
  }
  if (!kept) {
    // The first lab of this definition: converted from its text, which is what it must be.
    auto topology = LabYamlToTopology(lab.yaml);
    if (!topology) return topology;
    auto made = std::make_shared<Template>();
    try {
      made->root = Build::From(YAML::Load(std::string(lab.definition_yaml)));
      made->same = Build::Json(made->root, lab.ports) == *topology;
    } catch (const std::exception&) {  // a placeholder where the YAML's structure is
      made->same = false;
    }
    if (!made->same) made->root = Node{};  // not kept: every lab of it goes by its text
    std::lock_guard lock(mu_);
    if (kept_.size() >= kKept)  // the one used least recently makes room
      kept_.erase(std::min_element(kept_.begin(), kept_.end(), [](const auto& a, const auto& b) {
        return a.second.used < b.second.used;
      }));
    kept_.emplace(std::string(lab.definition_yaml), Kept{std::move(made), ++tick_});
    return topology;
  }
  if (!kept->same) return LabYamlToTopology(lab.yaml);
  try {
    json topology = Build::Json(kept->root, lab.ports);
    ++from_tree_;
    return topology;
  } catch (const std::exception&) {
    return LabYamlToTopology(lab.yaml);  // its text has the error to report
  }
}

CmlClient::Worker& CmlClient::WorkerFor(const ports::CmlTarget& cml) {
  std::lock_guard lock(mu_);
  auto& w = workers_[cml.url + '\n' + cml.ca_pem];
  if (!w)
    w = std::make_unique<Worker>([trust = TlsTrust{options_.ca_file, cml.ca_pem}, tag = options_.tag](HttpPoster& http) {
      http.SetTrust(trust);
      http.SetTag(tag);
    });
  return *w;
}

Status CmlClient::Authenticate(const ports::CmlTarget& cml, Worker& w, HttpPoster& http) {
  const std::string call = "CML " + cml.url + " POST /api/v0/authenticate";
  const HttpAnswer a = http.Post(cml.url + "/api/v0/authenticate", {{"content-type", "application/json"}},
                                 json{{"username", options_.username}, {"password", options_.password}}.dump(),
                                 options_.connect_timeout, options_.total_timeout);
  if (!a.transport_error.empty() || a.status != 200) {
    // The body of a refusal may echo what was sent; only the status is reported.
    return Error::Unavailable(call + ": " + (a.transport_error.empty() ? "HTTP " + std::to_string(a.status) : a.transport_error));
  }
  const json token = cloudevents::ParseJsonOrDiscarded(a.body);
  if (!token.is_string() || token.get<std::string>().empty())
    return Error::Unavailable(call + ": the answer is not a token");
  w.token = token.get<std::string>();
  return {};
}

Result<std::string> CmlClient::Call(const ports::CmlTarget& cml, const std::string& method, const std::string& path,
                                    const std::string& body) {
  const std::string call = "CML " + cml.url + " " + method + " /api/v0" + path;
  Worker& w = WorkerFor(cml);
  // The worker's other calls go on meanwhile, each on its own connection.
  std::unique_ptr<HttpPoster> http = w.pool.Take();
  HttpAnswer a;
  std::string token;
  for (int attempt = 0; attempt < 2; ++attempt) {
    {
      // One sign-in per worker: the calls that find no token wait for the first one's.
      std::lock_guard lock(w.mu);
      if (w.token.empty())
        if (auto s = Authenticate(cml, w, *http); !s) {
          w.pool.Give(std::move(http));
          return s.error();
        }
      token = w.token;
    }
    std::map<std::string, std::string> headers = {{"authorization", "Bearer " + token},
                                                  {"accept", "application/json"}};
    if (!body.empty()) headers["content-type"] = "application/json";
    a = http->Send(method, cml.url + "/api/v0" + path, headers, body, options_.connect_timeout,
                   options_.total_timeout);
    if (a.transport_error.empty() && a.status == 401) {
      // Expired or revoked: authenticate again, once (unless another call has already).
      std::lock_guard lock(w.mu);
      if (w.token == token) w.token.clear();
      continue;
    }
    break;
  }
  w.pool.Give(std::move(http));
  if (a.transport_error.empty() && a.status >= 200 && a.status < 300) return a.body;
  // CML's own rule on top of the shared one: a token refused even after signing in again (above).
  if (!a.transport_error.empty() || a.status == 401 || transport::IsRetryableStatus(a.status))
    return Error::Unavailable(call + ": " + Text(a, token, options_.password));
  if (a.status == 404) return Error::NotFound(call + ": " + Text(a, token, options_.password));
  return Error::InvalidArgument(call + ": " + Text(a, token, options_.password));
}

Result<std::string> CmlClient::ImportLab(const ports::CmlTarget& cml, const std::string& lab_yaml,
                                         const std::string& title) {
  auto topology = LabYamlToTopology(lab_yaml);
  if (!topology) return topology.error();
  return Import(cml, std::move(topology.value()), title);
}

Result<std::string> CmlClient::ImportLabOf(const ports::CmlTarget& cml, const ports::LabToImport& lab,
                                           const std::string& title) {
  auto topology = templates_.Topology(lab);
  if (!topology) return topology.error();
  return Import(cml, std::move(topology.value()), title);
}

Result<std::string> CmlClient::Import(const ports::CmlTarget& cml, json topology, const std::string& title) {
  MarkTopology(topology, ports::LabMark(title));
  auto body = Call(cml, "POST", "/import?title=" + UrlEscape(title), topology.dump());
  if (!body) return body.error();
  const json answer = cloudevents::ParseJsonOrDiscarded(*body);
  if (!answer.is_object() || !answer.contains("id") || !answer["id"].is_string())
    return Error::Unavailable("CML " + cml.url + " POST /api/v0/import: the answer has no lab id");
  return answer["id"].get<std::string>();
}

Result<std::vector<ports::CmlLab>> CmlClient::ListLabs(const ports::CmlTarget& cml) {
  auto body = Call(cml, "GET", "/labs?show_all=true", "");
  if (!body) return body.error();
  const json ids = json::parse(*body, nullptr, false);
  if (!ids.is_array()) return Error::Unavailable("CML " + cml.url + " GET /api/v0/labs: the answer is not a list");
  std::vector<ports::CmlLab> labs;
  labs.reserve(ids.size());
  for (const auto& id : ids) {
    if (!id.is_string()) return Error::Unavailable("CML " + cml.url + " GET /api/v0/labs: a lab id is not a string");
    auto info = Call(cml, "GET", "/labs/" + UrlEscape(id.get<std::string>()), "");
    if (!info && info.error().code == ErrorCode::kNotFound) continue;  // deleted since it was listed
    if (!info) return info.error();
    const json lab = json::parse(*info, nullptr, false);
    if (!lab.is_object())
      return Error::Unavailable("CML " + cml.url + " GET /api/v0/labs/" + id.get<std::string>() +
                                ": the answer is not a lab");
    ports::CmlLab out;
    out.id = id.get<std::string>();
    out.title = StringOf(lab, "lab_title");
    out.description = StringOf(lab, "lab_description");
    out.created = ParseRfc3339(StringOf(lab, "created"));
    labs.push_back(std::move(out));
  }
  return labs;
}

Status CmlClient::StartLab(const ports::CmlTarget& cml, const std::string& lab_id) {
  auto r = Call(cml, "PUT", "/labs/" + UrlEscape(lab_id) + "/start", "");
  if (!r) return r.error();
  return {};
}

Result<ports::CmlLabState> CmlClient::LabState(const ports::CmlTarget& cml, const std::string& lab_id) {
  auto body = Call(cml, "GET", "/labs/" + UrlEscape(lab_id) + "/state", "");
  if (!body) return body.error();
  const json state = cloudevents::ParseJsonOrDiscarded(*body);
  if (state == "STARTED") return ports::CmlLabState::kStarted;
  if (state == "STOPPED") return ports::CmlLabState::kStopped;
  if (state == "DEFINED_ON_CORE") return ports::CmlLabState::kDefinedOnCore;
  return Error::Unavailable("CML " + cml.url + " GET /api/v0/labs/" + lab_id + "/state: unknown state " +
                            body->substr(0, 40));
}

Status CmlClient::StopLab(const ports::CmlTarget& cml, const std::string& lab_id) {
  auto r = Call(cml, "PUT", "/labs/" + UrlEscape(lab_id) + "/stop", "");
  if (!r) return r.error();
  return {};
}

Status CmlClient::WipeLab(const ports::CmlTarget& cml, const std::string& lab_id) {
  auto r = Call(cml, "PUT", "/labs/" + UrlEscape(lab_id) + "/wipe", "");
  if (!r) return r.error();
  return {};
}

Status CmlClient::DeleteLab(const ports::CmlTarget& cml, const std::string& lab_id) {
  auto r = Call(cml, "DELETE", "/labs/" + UrlEscape(lab_id), "");
  if (!r) return r.error();
  return {};
}

}  // namespace ccm::clients
