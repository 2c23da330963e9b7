/*
 * Forks at a known rate, for tests/test_forks.py.
 *
 *   fork_loop N RATE    N children at RATE per second, each exiting at once
 *
 * It first waits for one byte on stdin, so the test can read the fork
 * counter just before the first fork. Each fork waits for its deadline
 * (start + i / RATE, so a late wake-up is caught up, not carried over);
 * vfork keeps a fork cheap enough to hold the rate on a busy box. At the
 * end it prints the nanoseconds from the first fork to the last child's
 * exit, so the test knows the rate it really kept.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
    char go;
    if (argc != 3 || read(0, &go, 1) != 1)
        return 2;
    long n = atol(argv[1]);
    double rate = atof(argv[2]);
    long long start = now_ns();
    for (long i = 0; i < n; i++) {
        long long deadline = start + (long long)(i * 1e9 / rate);
        struct timespec ts = {deadline / 1000000000LL, deadline % 1000000000LL};
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
        pid_t pid = vfork();
        if (pid == 0)
            _exit(0);
        if (pid < 0 || waitpid(pid, NULL, 0) != pid)
            return 3;
    }
    printf("%lld\n", now_ns() - start);
    return 0;
}
