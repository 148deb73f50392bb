#include "peerhost.h"
