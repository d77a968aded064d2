#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace ccm::cloudevents {

// Standard base64 (RFC 4648, with padding).
std::string Base64Encode(std::string_view bytes);
// nullopt for anything that is not padded standard base64.
std::optional<std::string> Base64Decode(std::string_view text);

}  // namespace ccm::cloudevents
