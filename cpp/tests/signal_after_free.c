/* A host that switches models, then gets Ctrl-C: two segmenters opened on one model (each compiles it for the
 * CPU at open), the first freed before the second, then a SIGINT to a handler installed with SA_ONSTACK (as
 * Python, the Go runtime and crash reporters install theirs: the kernel builds the signal frame on the thread's
 * alternate stack). The handler must run.
 *
 * Why: OpenVINO's CPU plugin installs an alternate signal stack on the thread that loads it and, when unloaded,
 * puts back the one it found, even if that one has been unmapped since. With one OpenVINO Core per segmenter,
 * freed oldest first, the thread was left with a dangling sigaltstack and the signal was a SIGSEGV with no
 * trace. Run by tests/cpp/test_signal_after_free.py: exit 0, "altstack ok" and "handler ran" on stdout. */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "asfyolo.h"

static volatile sig_atomic_t caught = 0;

static void on_sigint(int sig) {
  (void)sig;
  caught = 1;
}

static asfyolo_segmenter* open_one(const char* path) {
  asfyolo_options opt;
  asfyolo_options_init(&opt);
  opt.threads = 1;
  asfyolo_segmenter* seg = NULL;
  if (asfyolo_segmenter_open(path, &opt, &seg) != ASFYOLO_OK) {
    fprintf(stderr, "open %s: %s\n", path, asfyolo_last_error(seg));
    asfyolo_segmenter_free(seg);
    return NULL;
  }
  return seg;
}

/* "altstack none", "altstack ok" or "altstack unmapped": whether the thread's alternate signal stack is memory
 * (mincore fails with ENOMEM on a range that is not mapped). */
static const char* altstack_state(void) {
  stack_t ss;
  if (sigaltstack(NULL, &ss) != 0 || (ss.ss_flags & SS_DISABLE)) return "altstack none";
  const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
  const uintptr_t lo = (uintptr_t)ss.ss_sp & ~(page - 1);
  const uintptr_t hi = (uintptr_t)ss.ss_sp + ss.ss_size;
  unsigned char vec[1024];
  if ((hi - lo + page - 1) / page > sizeof vec) return "altstack ok";  /* too large to probe: assume mapped */
  return mincore((void*)lo, hi - lo, vec) == 0 ? "altstack ok" : "altstack unmapped";
}

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s MODEL   (a static model: it compiles at open)\n", argv[0]);
    return 2;
  }
  asfyolo_segmenter* first = open_one(argv[1]);
  asfyolo_segmenter* second = first ? open_one(argv[1]) : NULL;
  if (!second) {
    asfyolo_segmenter_free(first);
    return 2;
  }
  asfyolo_segmenter_free(first);  /* oldest first, as a host switching models does */
  asfyolo_segmenter_free(second);
  printf("segmenters freed, %s\n", altstack_state());
  fflush(stdout);

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigint;
  sa.sa_flags = SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  if (sigaction(SIGINT, &sa, NULL) != 0) {
    perror("sigaction");
    return 2;
  }
  raise(SIGINT);
  if (!caught) {
    fprintf(stderr, "SIGINT handler did not run\n");
    return 1;
  }
  printf("handler ran\n");
  return 0;
}
