#pragma once

#include <string>
#include <string_view>

#include "domain/instance.h"
#include "domain/result.h"

// What an idempotent create keeps under its key: a canonical text of the request (hashed into
// a digest that tells a retry from another request) and the first answer, given again to a
// retry.
namespace ccm::wire {

// Everything `draft` asks for, as one canonical JSON text: equal drafts give equal texts.
std::string CanonicalDraft(const domain::InstanceDraft& draft);

// The first answer to an idempotent create and the digest of the request that got it.
struct KeptAnswer {
  std::string digest;
  domain::LabletInstance instance;
};
// {"digest", "instance"}, the instance in its stored shape (aggregates.h).
std::string EncodeKeptAnswer(const KeptAnswer& answer);
// Reads back what EncodeKeptAnswer wrote. Errors: internal (a kept answer that does not read
// back is a bug or corruption).
Result<KeptAnswer> DecodeKeptAnswer(std::string_view text);

}  // namespace ccm::wire
