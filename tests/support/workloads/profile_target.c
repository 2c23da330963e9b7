/*
 * A process that burns CPU in a named function, for tests/test_profile_probe.py.
 *
 *   profile_target [THREADS]
 *
 * Starts THREADS threads (default 1), named "burner-0", "burner-1"...,
 * each spinning in burn_cpu(), prints "ready" once they run, and exits when
 * its stdin closes: the test decides when it ends (and a test that dies
 * leaves no helper behind). The main thread waits in read(), off CPU.
 *
 * Build with -O0 -fno-omit-frame-pointer -g: burn_cpu keeps its own frame
 * and is not inlined, so a user stack taken anywhere in it unwinds by frame
 * pointers through burner().
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define MAX_THREADS 64

volatile long sink;

__attribute__((noinline)) long burn_cpu(long n)
{
    long x = 0;
    for (long i = 0; i < n; i++)
        x += i * i ^ (x >> 3);
    sink = x;
    return x;
}

__attribute__((noinline)) static void *burner(void *arg)
{
    (void)arg;
    for (;;)
        burn_cpu(1L << 20);
    return NULL;
}

int main(int argc, char **argv)
{
    int threads = argc == 2 ? atoi(argv[1]) : 1;
    if (argc > 2 || threads < 1 || threads > MAX_THREADS)
        return 64;
    for (int i = 0; i < threads; i++) {
        pthread_t id;
        if (pthread_create(&id, NULL, burner, NULL) != 0)
            return 2;
        char name[16];
        snprintf(name, sizeof name, "burner-%d", i);
        pthread_setname_np(id, name);
    }
    printf("ready\n");
    fflush(stdout);
    char buf[64];
    while (read(0, buf, sizeof buf) > 0)
        ;
    return 0;
}
