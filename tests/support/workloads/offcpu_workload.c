/*
 * A process with a known off-CPU profile, for tests/test_offcpu_probe.py.
 *
 *   offcpu_workload sleep K MS   K sleeps of MS ms (clock_nanosleep)
 *   offcpu_workload pipe K MS    K blocking reads of a pipe that a child
 *                                writes one byte to every MS ms
 *   offcpu_workload spin S       spin on a CPU for S seconds
 *
 * Unlike syscall_workload it does not wait for a byte on stdin before it
 * starts: that wait would itself be a block in S, the state the tests
 * measure. The test starts it once the probe is attached; what it does
 * before its work (exec, the dynamic loader) blocks far less than 1 ms.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int sleep_ms(long ms)
{
    struct timespec t = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    return clock_nanosleep(CLOCK_MONOTONIC, 0, &t, NULL);
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "sleep") == 0) {
        long k = atol(argv[2]), ms = atol(argv[3]);
        for (long i = 0; i < k; i++)
            if (sleep_ms(ms) != 0)
                return 3;
        return 0;
    }
    if (argc == 4 && strcmp(argv[1], "pipe") == 0) {
        long k = atol(argv[2]), ms = atol(argv[3]);
        int fds[2];
        char c = 'x';
        if (pipe(fds) != 0)
            return 4;
        pid_t writer = fork();
        if (writer == 0) {
            for (long i = 0; i < k; i++)
                if (sleep_ms(ms) != 0 || write(fds[1], &c, 1) != 1)
                    _exit(5);
            _exit(0);
        }
        for (long i = 0; i < k; i++)
            if (read(fds[0], &c, 1) != 1)
                return 6;
        int status;
        return waitpid(writer, &status, 0) == writer && WIFEXITED(status) ? WEXITSTATUS(status) : 7;
    }
    if (argc == 3 && strcmp(argv[1], "spin") == 0) {
        double end = now_s() + atof(argv[2]);
        volatile unsigned long n = 0;
        while (now_s() < end)
            n++;
        return 0;
    }
    return 64;
}
