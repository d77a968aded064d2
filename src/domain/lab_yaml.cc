#include "domain/lab_yaml.h"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <optional>
#include <sstream>

namespace ccm::domain {

namespace {

constexpr std::string_view kOpen = "${PORT_";

struct Placeholder {
  size_t begin;        // offset of '$'
  size_t end;          // one past '}'
  std::string name;    // lower-case port name
};

// Finds the next placeholder at or after `from`. Placeholder names are upper-case letters,
// digits and underscores; anything else between `${PORT_` and `}` is an error.
Result<std::optional<Placeholder>> NextPlaceholder(std::string_view text, size_t from) {
  const size_t begin = text.find(kOpen, from);
  if (begin == std::string_view::npos) return std::optional<Placeholder>{};
  size_t pos = begin + kOpen.size();
  const size_t name_begin = pos;
  while (pos < text.size() && (std::isupper(static_cast<unsigned char>(text[pos])) ||
                               std::isdigit(static_cast<unsigned char>(text[pos])) || text[pos] == '_'))
    ++pos;
  if (pos == name_begin || pos >= text.size() || text[pos] != '}') {
    const size_t shown = std::min<size_t>(text.size() - begin, 24);
    return Error::InvalidArgument("malformed port placeholder near '" + std::string(text.substr(begin, shown)) +
                                      "': expected ${PORT_<NAME>} with NAME of A-Z, 0-9 and _",
                                  "lab_yaml");
  }
  return std::optional<Placeholder>{
      Placeholder{begin, pos + 1, PortNameFromPlaceholder(text.substr(name_begin, pos - name_begin))}};
}

// The protocol of a placeholder is the tag prefix right before it ("serial:${PORT_X}").
std::string ProtocolBefore(std::string_view text, size_t placeholder_begin) {
  if (placeholder_begin == 0 || text[placeholder_begin - 1] != ':') return "tcp";
  size_t b = placeholder_begin - 1;
  while (b > 0 && std::isalnum(static_cast<unsigned char>(text[b - 1]))) --b;
  if (b == placeholder_begin - 1) return "tcp";
  std::string proto(text.substr(b, placeholder_begin - 1 - b));
  std::transform(proto.begin(), proto.end(), proto.begin(), [](unsigned char c) { return std::tolower(c); });
  return proto;
}

void CollectPlaceholders(std::string_view text, std::vector<PortSpec>& out, Status& status) {
  size_t pos = 0;
  while (status) {
    auto next = NextPlaceholder(text, pos);
    if (!next) {
      status = next.error();
      return;
    }
    if (!next->has_value()) return;
    const Placeholder& p = **next;
    if (std::none_of(out.begin(), out.end(), [&](const PortSpec& s) { return s.name == p.name; }))
      out.push_back({p.name, ProtocolBefore(text, p.begin)});
    pos = p.end;
  }
}

// Reads a YAML document as events, building nothing, and keeps the first rule it breaks: an
// anchor or an alias (an alias is a reference; converting the lab for CML copies what it
// names, so a few hundred bytes of aliases to aliases expand to gigabytes), or nesting deeper
// than kMaxLabYamlDepth (the node graph and its conversion are built recursively).
class ShapeCheck : public YAML::EventHandler {
 public:
  const std::optional<std::string>& problem() const { return problem_; }

  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override { Anchored(mark, anchor); }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t) override {
    Fail(mark, "must not use YAML aliases (*name) or anchors (&name)");
  }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor, const std::string&) override {
    Anchored(mark, anchor);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                       YAML::EmitterStyle::value) override {
    Open(mark, anchor);
  }
  void OnSequenceEnd() override { --depth_; }
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                  YAML::EmitterStyle::value) override {
    Open(mark, anchor);
  }
  void OnMapEnd() override { --depth_; }
  void OnAnchor(const YAML::Mark& mark, const std::string&) override {
    Fail(mark, "must not use YAML aliases (*name) or anchors (&name)");
  }

 private:
  void Anchored(const YAML::Mark& mark, YAML::anchor_t anchor) {
    if (anchor != YAML::NullAnchor) Fail(mark, "must not use YAML aliases (*name) or anchors (&name)");
  }
  void Open(const YAML::Mark& mark, YAML::anchor_t anchor) {
    Anchored(mark, anchor);
    if (++depth_ > kMaxLabYamlDepth)
      Fail(mark, "must not nest deeper than " + std::to_string(kMaxLabYamlDepth) + " levels");
  }
  void Fail(const YAML::Mark& mark, const std::string& rule) {
    if (!problem_)
      problem_ = "lab_yaml " + rule + " (line " + std::to_string(mark.line + 1) + ", column " +
                 std::to_string(mark.column + 1) + ")";
  }

  int depth_ = 0;
  std::optional<std::string> problem_;
};

}  // namespace

std::string PortNameFromPlaceholder(std::string_view upper_name) {
  std::string name(upper_name);
  std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
  return name;
}

Result<LabInfo> ParseLab(std::string_view yaml) {
  YAML::Node root;
  try {
    // The shape first: YAML::Load would resolve aliases and build any depth.
    std::istringstream in{std::string(yaml)};
    YAML::Parser parser(in);
    ShapeCheck shape;
    parser.HandleNextDocument(shape);
    if (shape.problem()) return Error::InvalidArgument(*shape.problem(), "lab_yaml");
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    return Error::InvalidArgument("lab_yaml is not valid YAML: " + std::string(e.what()), "lab_yaml");
  }
  if (!root.IsMap()) return Error::InvalidArgument("lab_yaml must be a CML topology: a mapping at the top", "lab_yaml");
  const YAML::Node nodes = root["nodes"];
  if (!nodes || !nodes.IsSequence() || nodes.size() == 0)
    return Error::InvalidArgument("lab_yaml must be a CML topology: `nodes` must be a non-empty sequence", "lab_yaml");

  LabInfo info;
  info.nodes.reserve(nodes.size());
  Status status;
  for (size_t i = 0; i < nodes.size(); ++i) {
    const YAML::Node n = nodes[i];
    const std::string where = "lab_yaml.nodes[" + std::to_string(i) + "]";
    if (!n.IsMap()) return Error::InvalidArgument(where + " must be a mapping", "lab_yaml");
    if (!n["id"] || !n["id"].IsScalar() || n["id"].Scalar().empty())
      return Error::InvalidArgument(where + ".id is required", "lab_yaml");
    if (!n["label"] || !n["label"].IsScalar() || n["label"].Scalar().empty())
      return Error::InvalidArgument(where + ".label is required", "lab_yaml");
    LabNode node{n["id"].Scalar(), n["label"].Scalar(), {}};
    if (const YAML::Node tags = n["tags"]; tags && !tags.IsNull()) {
      if (!tags.IsSequence()) return Error::InvalidArgument(where + ".tags must be a sequence", "lab_yaml");
      for (const auto& t : tags) {
        if (!t.IsScalar()) return Error::InvalidArgument(where + ".tags must hold strings", "lab_yaml");
        node.tags.push_back(t.Scalar());
      }
    }
    info.nodes.push_back(std::move(node));
  }
  // Placeholders are read from the whole text, so that one in a smart annotation or a node
  // configuration is allocated too; RewriteLab replaces them all.
  CollectPlaceholders(yaml, info.port_template, status);
  if (!status) return status.error();
  return info;
}

Result<std::string> RewriteLab(std::string_view yaml, const PortMap& ports) {
  std::string out;
  out.reserve(yaml.size());
  size_t pos = 0;
  for (;;) {
    auto next = NextPlaceholder(yaml, pos);
    if (!next) return next.error();
    if (!next->has_value()) break;
    const Placeholder& p = **next;
    const auto it = ports.find(p.name);
    if (it == ports.end())
      return Error::InvalidArgument("placeholder ${PORT_" + std::string(yaml.substr(p.begin + kOpen.size(),
                                                                                      p.end - 1 - p.begin - kOpen.size())) +
                                        "} has no allocated port '" + p.name + "'",
                                    "allocated_ports");
    out.append(yaml.substr(pos, p.begin - pos));
    out.append(std::to_string(it->second));
    pos = p.end;
  }
  out.append(yaml.substr(pos));
  return out;
}

}  // namespace ccm::domain
