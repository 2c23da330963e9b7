/*
 * A process with a known syscall profile, for tests/test_syscalls_probe.py.
 *
 *   syscall_workload calls N M   N getppid() calls, then M close(-1) (EBADF)
 *   syscall_workload sleep K     K sleeps of 10 ms (clock_nanosleep)
 *   syscall_workload forks F     F children, one after another, that exit at once
 *
 * It first waits for one byte on stdin, so that the test can attach the probe
 * and know that every call below happens while it is attached.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    char go;
    if (read(0, &go, 1) != 1)
        return 2;
    if (argc == 4 && strcmp(argv[1], "calls") == 0) {
        long n = atol(argv[2]), m = atol(argv[3]);
        for (long i = 0; i < n; i++)
            getppid();
        for (long i = 0; i < m; i++)
            if (close(-1) != -1 || errno != EBADF)
                return 3;
        return 0;
    }
    if (argc == 3 && strcmp(argv[1], "sleep") == 0) {
        long k = atol(argv[2]);
        struct timespec ten_ms = {.tv_sec = 0, .tv_nsec = 10 * 1000 * 1000};
        for (long i = 0; i < k; i++)
            if (clock_nanosleep(CLOCK_MONOTONIC, 0, &ten_ms, NULL) != 0)
                return 4;
        return 0;
    }
    if (argc == 3 && strcmp(argv[1], "forks") == 0) {
        long f = atol(argv[2]);
        for (long i = 0; i < f; i++) {
            pid_t child = fork();
            if (child < 0)
                return 5;
            if (child == 0)
                _exit(0);
            int status;
            if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
                return 6;
        }
        return 0;
    }
    return 64;
}
