// PEM armour for DER blobs (certificates, keys), with our own small base64 so
// that decoding bounds and error messages are ours.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace meshd::identity {

// "-----BEGIN LABEL-----\n" + base64 in 64-column lines + "-----END LABEL-----\n".
std::string pem_encode(std::string_view label, std::string_view der);

// Every block with this label, in order; other labels are skipped. Fails
// (naming the label) when there is none, or when a block with this label is
// unterminated or its base64 is malformed.
Parsed<std::vector<std::string>> pem_decode_all(std::string_view text, std::string_view label);

}  // namespace meshd::identity
