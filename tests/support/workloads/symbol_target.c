/*
 * A process with known function addresses, for tests/test_symbolize.py.
 *
 * Prints, one per line, "name 0xADDRESS" for:
 *   burn_cpu, sleep_here   two functions of this executable
 *   getppid                libc's getppid (looked up in libc itself, not
 *                          the executable's PLT stub that &getppid can be
 *                          in a non-PIE build)
 *   anon                   a page of anonymous executable memory, as JITs
 *                          have (named in a perf map by the test)
 * then "ready", and waits until stdin closes; a line "exec PATH" on stdin
 * makes it exec PATH (same pid, another program).
 *
 * Built with -DSWAP_ORDER, sleep_here comes first in the text, so that two
 * non-PIE builds give one address to two different functions.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

volatile long sink;

#ifndef SWAP_ORDER
__attribute__((noinline)) long burn_cpu(long n)
{
    long x = 0;
    for (long i = 0; i < n; i++)
        x += i * i ^ (x >> 3);
    sink = x;
    return x;
}
#endif

__attribute__((noinline)) void sleep_here(long ms)
{
    struct timespec t = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    sink += ms;
    nanosleep(&t, NULL);
    sink -= ms;
}

#ifdef SWAP_ORDER
__attribute__((noinline)) long burn_cpu(long n)
{
    long x = 0;
    for (long i = 0; i < n; i++)
        x += i * i ^ (x >> 3);
    sink = x;
    return x;
}
#endif

int main(void)
{
    void *libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
    void *getppid_in_libc = libc ? dlsym(libc, "getppid") : NULL;
    void *anon = mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (getppid_in_libc == NULL || anon == MAP_FAILED)
        return 1;
    printf("burn_cpu %p\n", (void *)burn_cpu);
    printf("sleep_here %p\n", (void *)sleep_here);
    printf("getppid %p\n", getppid_in_libc);
    printf("anon %p\n", anon);
    printf("ready\n");
    fflush(stdout);
    char line[4096];
    while (fgets(line, sizeof line, stdin) != NULL) {
        if (strncmp(line, "exec ", 5) == 0) {
            line[strcspn(line, "\n")] = '\0';
            execl(line + 5, line + 5, (char *)NULL);
            return 3;
        }
    }
    return 0;
}
