/* CPeerhostABI exposes protocols/abi/peerhost.h (the plugin ABI) to Swift targets. Nothing to
 * compile: SwiftPM needs one source file for a C target. */
#include "peerhost.h"
