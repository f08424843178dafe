// Which shared pages an echo writes its answer to (docs/PERFORMANCE.md,
// section 3). A parent and a forked child echo SIZE bytes through shared
// memory, signalling over a socketpair, with fixed private buffers:
//
//   parent: out -> request;  child: request -> buf -> res -> answer;
//   parent: answer -> in
//
// LAYOUT says where the answer goes:
//   same   over the request's pages (what procpool does up to 8 MiB)
//   two    a second shared region (procpool's layout before)
//   after  the same region, past the request
//
// Usage: shared_pages_echo LAYOUT [SIZE_BYTES]   (default 1 MiB)
// Prints the mean time per echo over about 2 GiB of echoes.
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double Now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static char* Shared(size_t bytes) {
  char* p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    perror("mmap");
    exit(1);
  }
  memset(p, 0, bytes);
  return p;
}

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s same|two|after [size_bytes]\n", argv[0]);
    return 2;
  }
  const char* layout = argv[1];
  const size_t size = argc > 2 ? (size_t)strtoull(argv[2], NULL, 10) : (size_t)1 << 20;
  const size_t page = 4096;
  char* request = Shared(2 * size + 2 * page);
  char* answer;
  if (strcmp(layout, "same") == 0) {
    answer = request;
  } else if (strcmp(layout, "two") == 0) {
    answer = Shared(size + page);
  } else if (strcmp(layout, "after") == 0) {
    answer = request + size + page;
  } else {
    fprintf(stderr, "unknown layout %s\n", layout);
    return 2;
  }
  const long echoes = (long)(((uint64_t)2 << 30) / size) + 20;
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return 1;
  pid_t pid = fork();
  if (pid == 0) {
    close(sv[0]);
    char* buf = malloc(size);
    char* res = malloc(size);
    uint64_t n;
    while (read(sv[1], &n, sizeof(n)) == (ssize_t)sizeof(n)) {
      memcpy(buf, request, size);
      memcpy(res, buf, size);
      memcpy(answer, res, size);
      if (write(sv[1], &n, sizeof(n)) != (ssize_t)sizeof(n)) break;
    }
    _exit(0);
  }
  close(sv[1]);
  char* out = malloc(size);
  char* in = malloc(size);
  memset(out, 'p', size);
  memset(in, 0, size);
  double t0 = 0;
  for (long i = 0; i < echoes; ++i) {
    if (i == 20) t0 = Now();  // after a warm-up
    uint64_t n = size;
    memcpy(request, out, size);
    if (write(sv[0], &n, sizeof(n)) != (ssize_t)sizeof(n) ||
        read(sv[0], &n, sizeof(n)) != (ssize_t)sizeof(n)) {
      fprintf(stderr, "the child is gone\n");
      return 1;
    }
    memcpy(in, answer, size);
  }
  const double per = (Now() - t0) / (double)(echoes - 20);
  close(sv[0]);
  waitpid(pid, NULL, 0);
  printf("%s, %zu bytes: %.1f us per echo\n", layout, size, per * 1e6);
  return 0;
}
