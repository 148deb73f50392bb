#include <signal.h>
#include <ffi.h>
