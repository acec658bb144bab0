// The node's log is the shared one (log/log.hpp): cnode::log::info(...) and friends write "cnode <level>: ..." lines.
#pragma once

#include "log/log.hpp"
