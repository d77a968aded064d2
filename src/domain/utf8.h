#pragma once

#include <cstddef>
#include <string_view>

namespace ccm::domain {

// Offset of the first byte of `text` that does not start a well-formed UTF-8 sequence
// (RFC 3629, section 4), or std::string_view::npos when all of it is well-formed. Refused:
// stray continuation bytes, lead bytes C0, C1 and F5-FF, overlong forms (E0 80-9F, F0 80-8F),
// UTF-16 surrogates U+D800-U+DFFF (ED A0-BF), code points above U+10FFFF (F4 90-BF), and a
// sequence cut short by the end of `text` or by a byte that is not a continuation byte.
// Pure; thread-safe.
std::size_t FirstInvalidUtf8(std::string_view text);

// FirstInvalidUtf8(text) == npos.
inline bool IsValidUtf8(std::string_view text) { return FirstInvalidUtf8(text) == std::string_view::npos; }

// True when well-formed UTF-8 `text` holds a control character: C0 (U+0000-U+001F), DEL
// (U+007F) or C1 (U+0080-U+009F, encoded C2 80-C2 9F). Pure; thread-safe.
bool HasControlCharacter(std::string_view text);

}  // namespace ccm::domain
