/*
 * ph_fuzz_driver.h — libFuzzer's entry point, with a replay fallback.
 *
 * `make fuzz` links peerhost-fuzz against libFuzzer (libclang_rt.fuzzer_no_main), whose strong
 * LLVMFuzzerRunDriver mutates inputs under coverage guidance. Every other build (make test) gets
 * the definition in ph_fuzz_driver.c instead: it runs the callback once per file named on the
 * command line (directories are walked), so the committed corpus replays as a regression test.
 */
#ifndef PH_FUZZ_DRIVER_H
#define PH_FUZZ_DRIVER_H

#include <stddef.h>
#include <stdint.h>

typedef int (*ph_fuzz_callback)(const uint8_t *data, size_t size);

int LLVMFuzzerRunDriver(int *argc, char ***argv, ph_fuzz_callback callback);

/* 1 when the real libFuzzer is linked in, 0 for the replay fallback. */
int ph_fuzz_is_libfuzzer(void);

#endif
