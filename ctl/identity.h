// meshd-ctl identity: the mesh CA's files (init) and a look inside
// certificate files (inspect).
#pragma once

#include <span>
#include <string_view>

#include "ctl/command.h"

namespace meshd::ctl {

int run_identity(std::span<const std::string_view> args, const Io& io);
// identity token (identity_token.cc): mints a join token with the token key.
int run_identity_token(std::span<const std::string_view> args, const Io& io);
// identity revoke (identity_token.cc): revokes one on the controllers.
int run_identity_revoke(std::span<const std::string_view> args, const Io& io);

}  // namespace meshd::ctl
