/*
 * orac's syscalls probe: per (process, syscall) counts, errors, total latency
 * and a log2 latency histogram, aggregated in the kernel. User space reads the
 * maps once per tick; nothing is sent per event.
 *
 * It attaches to raw_syscalls:sys_enter and sys_exit as *raw* tracepoints
 * (BPF_PROG_TYPE_RAW_TRACEPOINT): the same stable tracepoints, with arguments
 * (regs, id) and (regs, ret), but the kernel does not format a perf record for
 * every event first, which costs a classic tracepoint 25 to 30 ns more per
 * event on the development VM. sys_exit's raw arguments carry no syscall
 * number, so sys_enter stores it with the start time. Only the tracepoint's
 * arguments and BPF helpers are read, never task_struct fields (see
 * shared/DESIGN.md). A 32-bit task on a 64-bit kernel reports its own syscall
 * numbers here; user space names them with the 64-bit table.
 *
 * Every key carries the generation that was current when the event came.
 * Each tick user space moves `generation` on, waits until no program can
 * still be using the old one (an RCU grace period), then reads and deletes
 * the old generation's entries. An update can then never race with the read
 * and be lost, as it can when a live entry is deleted under a program.
 *
 * A new task's first event is a sys_exit with no sys_enter of its own: the
 * child's return from fork, vfork or clone (a new process or thread). The
 * raw tracepoint sched_process_fork, in the parent as the child is made,
 * notes the child's task pointer; a sys_exit with no start whose current task
 * was noted is that first return, counted in `new_task_returns` and not as
 * lost. The pointer is only compared with bpf_get_current_task(), never
 * dereferenced, so no task_struct field is read.
 *
 * Per thread. The drill-down asks for the threads of one process (`focus`,
 * a tgid; 0 for none): their calls, errors and latency go to `thread_stats`
 * too. Every other syscall pays one array lookup and a compare for it.
 *
 * Options (cflags, set by probes/syscalls.py):
 *   -DTARGETED             trace one process only: the tgid in `target` (0:
 *                          nobody), a map word so that the program is compiled
 *                          before a drill-down needs it (probes/ebpf/prepared.py)
 *   -DSTATS_ENTRIES=N      (process, syscall) pairs held per tick
 *   -DERRNO_ENTRIES=N      (process, syscall, errno) triples held per tick
 *   -DTHREAD_ENTRIES=N     threads of the focus process held per tick
 *   -DSTART_SLOT_BITS=N    2^N start slots for syscalls in flight
 *   -DNEW_TASK_ENTRIES=N   new tasks noted until their first return
 *   -DHIST_SLOTS=N         log2 latency buckets
 */

#ifndef STATS_ENTRIES
#define STATS_ENTRIES 8192
#endif
#ifndef ERRNO_ENTRIES
#define ERRNO_ENTRIES 4096
#endif
#ifndef THREAD_ENTRIES
#define THREAD_ENTRIES 1024
#endif
#ifndef START_SLOT_BITS
#define START_SLOT_BITS 18
#endif
#ifndef NEW_TASK_ENTRIES
#define NEW_TASK_ENTRIES 4096
#endif
#ifndef HIST_SLOTS
#define HIST_SLOTS 32
#endif

/* The kernel returns -1 to -4095 for errors; anything else is a result. */
#define MAX_ERRNO 4095
#define EEXIST 17
/* TASK_COMM_LEN, which is ABI: including linux/sched.h for it would make the
 * program depend on more of the kernel headers matching the kernel. */
#define COMM_BYTES 16

/* Index into `lost`; probes/syscalls.py names them in the same order. */
enum lost_reason {
    LOST_STATS_MAP_FULL,      /* syscall not counted: no room for its (process, syscall) */
    LOST_ERRNO_MAP_FULL,      /* error counted, its errno not recorded */
    LOST_COMM_MAP_FULL,       /* process name not recorded; user space reads /proc */
    LOST_EXIT_WITHOUT_ENTER,  /* syscall not counted: it began before tracing, or its start slot was reused
                               * (a new task's first return is not lost: see new_task_returns) */
    LOST_THREAD_MAP_FULL,     /* a focus thread's syscall counted for its process only */
    LOST_REASONS,
};

struct stats_key {
    u32 tgid;
    u32 nr;
    u32 gen;
};

/* Counts fit u64 and buckets u32 for a tick of any length a user would pick:
 * 2^32 calls of one syscall by one process on one CPU is minutes of a tight loop. */
struct stats {
    u64 calls;
    u64 errors;
    u64 total_ns;
    u32 hist[HIST_SLOTS];    /* slot i: latency in [2^i, 2^(i+1)) ns; the last one is open-ended */
};

struct errno_key {
    u32 tgid;
    u32 nr;
    u32 err;
    u32 gen;
};

struct thread_key {
    u32 tgid;
    u32 tid;
    u32 gen;
};

struct thread_stats {
    u64 calls;
    u64 errors;
    u64 total_ns;
};

struct comm_key {
    u32 tgid;
    u32 gen;
};

struct comm {
    char name[COMM_BYTES];
};

struct start {
    u32 tid;
    u32 nr;
    u64 ts_ns;               /* 0: nothing in flight */
};

/*
 * Start times live in a fixed, two-way set-associative array indexed by a hash
 * of the thread id rather than in a hash map or task storage: two inlined
 * array lookups cost next to nothing, where a hash map or task-storage lookup
 * on each of the two events added 35 to 50 ns per syscall in measurements.
 * It never needs clearing: a thread that exits inside a syscall leaves a stale
 * slot that the next thread hashing there takes over. Three threads of one set
 * in syscalls at once evict the oldest start; that syscall is then counted in
 * LOST_EXIT_WITHOUT_ENTER.
 */
BPF_ARRAY(starts, struct start, 1 << START_SLOT_BITS);
/* Per-CPU values: plain increments, no atomics and no cache line bouncing
 * between CPUs when many threads of one process make the same syscall. */
BPF_PERCPU_HASH(stats, struct stats_key, struct stats, STATS_ENTRIES);
BPF_PERCPU_HASH(errnos, struct errno_key, u64, ERRNO_ENTRIES);
BPF_HASH(comms, struct comm_key, struct comm, STATS_ENTRIES);
BPF_PERCPU_HASH(thread_stats, struct thread_key, struct thread_stats, THREAD_ENTRIES);
BPF_ARRAY(generation, u32, 1);
BPF_ARRAY(focus, u32, 1);
#ifdef TARGETED
BPF_ARRAY(target, u32, 1);
#endif
/* Tasks made since their parent's fork, until their first return: an LRU map,
 * so that kernel threads (which never return to user space) age out. One
 * evicted before its return is counted as lost, which it then is. */
BPF_TABLE("lru_hash", u64, u8, new_tasks, NEW_TASK_ENTRIES);
/* Cumulative, like `lost`: first returns of new tasks. */
BPF_PERCPU_ARRAY(new_task_returns, u64, 1);

#include "orac.bpf.h"

#ifdef TARGETED
static __always_inline int untargeted(u32 tgid)
{
    u32 zero_index = 0;
    u32 *t = target.lookup(&zero_index);
    return !t || !*t || *t != tgid;
}
#endif

/* First slot of the thread's set: Fibonacci hashing spreads the consecutive
 * ids of a thread pool, so its threads do not share a cache line. */
static __always_inline u32 set_of(u32 tid)
{
    return ((tid * 2654435761u) >> (32 - START_SLOT_BITS)) & ~1u;
}

/* (parent, child), in the parent: note the child until its first return. */
RAW_TRACEPOINT_PROBE(sched_process_fork)
{
#ifdef TARGETED
    if (untargeted(bpf_get_current_pid_tgid() >> 32))
        return 0;
#endif
    u64 child = ctx->args[1];
    u8 noted = 1;
    new_tasks.update(&child, &noted);
    return 0;
}

RAW_TRACEPOINT_PROBE(sys_enter)
{
    u64 pid_tgid = bpf_get_current_pid_tgid();
#ifdef TARGETED
    if (untargeted(pid_tgid >> 32))
        return 0;
#endif
    u32 tid = pid_tgid;
    u32 i0 = set_of(tid), i1 = i0 + 1;
    struct start *a = starts.lookup(&i0);
    struct start *b = starts.lookup(&i1);
    if (!a || !b)
        return 0;
    struct start *s;
    if (a->tid == tid)
        s = a;
    else if (b->tid == tid)
        s = b;
    else if (!a->ts_ns)
        s = a;
    else if (!b->ts_ns)
        s = b;
    else
        s = a->ts_ns < b->ts_ns ? a : b;
    s->tid = tid;
    s->nr = ctx->args[1];
    s->ts_ns = bpf_ktime_get_ns();
    return 0;
}

RAW_TRACEPOINT_PROBE(sys_exit)
{
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u32 tgid = pid_tgid >> 32;
#ifdef TARGETED
    if (untargeted(tgid))
        return 0;
#endif
    u32 tid = pid_tgid;
    u32 i0 = set_of(tid), i1 = i0 + 1;
    struct start *s = starts.lookup(&i0);
    if (s && s->tid != tid)
        s = starts.lookup(&i1);
    if (!s || s->tid != tid || !s->ts_ns) {
        u64 task = bpf_get_current_task();
        if (new_tasks.lookup(&task)) {
            new_tasks.delete(&task);
            u32 zero_index = 0;
            u64 *n = new_task_returns.lookup(&zero_index);
            if (n)
                (*n)++;
        } else {
            count_lost(LOST_EXIT_WITHOUT_ENTER);
        }
        return 0;
    }
    u64 latency_ns = bpf_ktime_get_ns() - s->ts_ns;
    s->ts_ns = 0;

    u32 zero_index = 0;
    u32 *gen = generation.lookup(&zero_index);
    if (!gen)
        return 0;
    struct stats_key key = {.tgid = tgid, .nr = s->nr, .gen = *gen};
    struct stats *st = stats.lookup(&key);
    if (!st) {
        /* First call of this (process, syscall) in this generation. */
        struct stats zero = {};
        stats.insert(&key, &zero);
        st = stats.lookup(&key);
        if (!st) {
            count_lost(LOST_STATS_MAP_FULL);
            return 0;
        }
        /* The main thread's name names the process; another thread's only
         * until the main thread makes a syscall. */
        struct comm_key ck = {.tgid = tgid, .gen = key.gen};
        struct comm c;
        bpf_get_current_comm(&c.name, sizeof(c.name));
        int err = tid == tgid ? comms.update(&ck, &c) : comms.insert(&ck, &c);
        if (err && err != -EEXIST)
            count_lost(LOST_COMM_MAP_FULL);
    }
    st->calls++;
    st->total_ns += latency_ns;
    st->hist[log2_slot(latency_ns)]++;

    long ret = ctx->args[1];
    int failed = ret < 0 && ret >= -MAX_ERRNO;
    u32 *focus_tgid = focus.lookup(&zero_index);
    if (focus_tgid && *focus_tgid == tgid) {
        struct thread_key tk = {.tgid = tgid, .tid = tid, .gen = key.gen};
        struct thread_stats zero = {};
        struct thread_stats *ts = thread_stats.lookup_or_try_init(&tk, &zero);
        if (ts) {
            ts->calls++;
            ts->errors += failed;
            ts->total_ns += latency_ns;
        } else {
            count_lost(LOST_THREAD_MAP_FULL);
        }
    }
    if (failed) {
        st->errors++;
        struct errno_key ek = {.tgid = tgid, .nr = key.nr, .err = -ret, .gen = key.gen};
        u64 zero = 0;
        u64 *n = errnos.lookup_or_try_init(&ek, &zero);
        if (n)
            (*n)++;
        else
            count_lost(LOST_ERRNO_MAP_FULL);
    }
    return 0;
}
