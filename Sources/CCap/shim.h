#include <signal.h>
#include <sys/capability.h>
