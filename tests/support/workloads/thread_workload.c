/*
 * A process whose threads each do one known thing, for the per-thread
 * breakdown tests (tests/test_threads.py).
 *
 *   thread_workload CALLS SLEEPS SLEEP_MS SPIN_MS
 *
 * Starts three threads, named by what they do, and prints each one's name
 * and thread id on a line. On a line on stdin they start together:
 *   caller   makes CALLS getppid syscalls
 *   sleeper  sleeps SLEEPS times SLEEP_MS ms (clock_nanosleep)
 *   spinner  spins on a CPU for SPIN_MS ms, making no syscall
 * It prints "done" once all three are done, and exits when stdin closes.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static long calls, sleeps, sleep_ms, spin_ms;
static pthread_barrier_t ready, start;
static pid_t tids[3];

/* Say who this thread is, then wait for the go. */
static void line_up(int i)
{
    tids[i] = gettid();
    pthread_barrier_wait(&ready);
    pthread_barrier_wait(&start);
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static void *caller(void *arg)
{
    (void)arg;
    line_up(0);
    for (long i = 0; i < calls; i++)
        syscall(SYS_getppid);
    return NULL;
}

static void *sleeper(void *arg)
{
    (void)arg;
    line_up(1);
    struct timespec t = {.tv_sec = sleep_ms / 1000, .tv_nsec = (sleep_ms % 1000) * 1000000L};
    for (long i = 0; i < sleeps; i++)
        clock_nanosleep(CLOCK_MONOTONIC, 0, &t, NULL);
    return NULL;
}

static void *spinner(void *arg)
{
    (void)arg;
    line_up(2);
    /* clock_gettime is served by the vDSO: no syscall. */
    double end = now_s() + spin_ms / 1000.0;
    volatile long x = 0;
    while (now_s() < end)
        x++;
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 5)
        return 64;
    calls = atol(argv[1]);
    sleeps = atol(argv[2]);
    sleep_ms = atol(argv[3]);
    spin_ms = atol(argv[4]);
    static void *(*const bodies[])(void *) = {caller, sleeper, spinner};
    static const char *const names[] = {"caller", "sleeper", "spinner"};
    pthread_t ids[3];
    pthread_barrier_init(&ready, NULL, 4);
    pthread_barrier_init(&start, NULL, 4);
    for (int i = 0; i < 3; i++) {
        if (pthread_create(&ids[i], NULL, bodies[i], NULL) != 0)
            return 2;
        pthread_setname_np(ids[i], names[i]);
    }
    pthread_barrier_wait(&ready);
    for (int i = 0; i < 3; i++)
        printf("%s %d\n", names[i], (int)tids[i]);
    fflush(stdout);
    char buf[64];
    if (!fgets(buf, sizeof buf, stdin))
        return 3;
    pthread_barrier_wait(&start);
    for (int i = 0; i < 3; i++)
        pthread_join(ids[i], NULL);
    printf("done\n");
    fflush(stdout);
    while (fgets(buf, sizeof buf, stdin))
        ;
    return 0;
}
