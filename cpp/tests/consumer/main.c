/* Links against the installed libasfyolo through plain C: prints the version and the error of a missing bundle. */
#include <stdio.h>
#include <string.h>

#include "asfyolo.h"

int main(int argc, char** argv) {
  if (asfyolo_abi_version() != ASFYOLO_ABI_VERSION) return 3;
  asfyolo_segmenter* seg = NULL;
  asfyolo_status s = asfyolo_segmenter_open(argc > 1 ? argv[1] : "/no/such/bundle", NULL, &seg);
  printf("asfyolo %s (%s): %d %s\n", asfyolo_version(), asfyolo_build_info(), (int)s, asfyolo_last_error(seg));
  asfyolo_segmenter_free(seg);
  return s == ASFYOLO_ERR_FILE ? 0 : 1;
}
