/* flood-b: the flood test plugin (../flood/flood.c) under a second plugin name, so one host can run
 * two aggressive plugins side by side (the shaper's fair-share test). */
#define FLOOD_NAME "flood-b"
#include "../flood/flood.c"
