/*
 * orac's off-CPU probe: how long threads spend off their CPU, per process,
 * per reason (S sleeping, D uninterruptible, R preempted while runnable) and
 * per blocking stack, plus run-queue latency histograms. Aggregated in the
 * kernel; user space reads the maps once per tick, nothing is sent per event.
 *
 * Only the classic tracepoints sched:sched_switch, sched:sched_wakeup and
 * sched:sched_wakeup_new are used, and only their own fields and BPF
 * helpers, never task_struct fields (see shared/DESIGN.md). At sched_switch
 * the running task is still prev, so bpf_get_current_pid_tgid() gives
 * prev's process and bpf_get_stack() prev's stacks.
 *
 * A block's life:
 *   switch-out  the thread's slot gets the time, its process, its state class
 *               and (see "Stacks") its user and kernel stack ids. A preempted
 *               thread (R) is runnable from that moment.
 *   wakeup      the slot gets the time the thread became runnable.
 *   switch-in   off-CPU time = now - switch-out; run-queue latency = now -
 *               runnable. A block of MIN_BLOCK_NS or more is added to
 *               `blocks` under (process, state, user stack, kernel stack);
 *               shorter ones only to `short_blocks`. The run-queue latency
 *               goes into a log2 histogram for the system and one per process.
 * So a block is counted in the tick it ends in, whole, as bcc's offcputime
 * counts it, and its off-CPU time includes its wait on the run queue.
 *
 * Stacks. A stack can only be taken at switch-out (bpf_get_stack walks the
 * current task), when the block's length is not known yet, and walking a user
 * and a kernel stack is by far the dearest part of the program: about 1.3 us
 * for the pair on the development VM, against about 0.15 us for the rest of a
 * switch (measured with kernel.bpf_stats_enabled under `perf bench sched
 * pipe`, whose blocks are all far below 1 ms). Capturing on every switch-out
 * made that benchmark 2.1x slower with both tasks on one CPU. So stacks are
 * captured where a block is likely to be reported: when one of the thread's
 * last 8 blocks lasted MIN_BLOCK_NS or more, the first time the probe sees the
 * thread, and for 1 in STACK_SAMPLE_MASK + 1 of its other switch-outs (a
 * thread with a rare long wait among many short ones still gets a stack for
 * some of them). A reported block without a stack is counted under the "not
 * captured" stack, and user space shows which share of the time its stacks
 * cover. Preempted (R) blocks get no stack: the thread was not waiting for
 * anything, and where it happened to be computing is what an on-CPU profile
 * shows.
 *
 * A stack is kept in a hash map under a 63-bit hash of its frames, which is
 * its id. A BPF stack trace map is direct-mapped instead: a stack whose bucket
 * another holds is turned away (-EEXIST), and every new address space brings
 * new user stacks, so under process churn (a few hundred short-lived
 * processes a second) 8192 buckets turned away about 160 user stacks a second.
 * A hash map keeps every stack until it is full; two distinct stacks of one
 * epoch sharing a hash (about 2^-63 for a pair) would share an id.
 *
 * Stack ids outlive a tick: a thread may sleep for minutes between the
 * capture and the block's end, so user space cannot delete a tick's stacks
 * after reading them (an id deleted and taken by another stack would name the
 * wrong stack). Instead stacks go into one of two maps by *epoch*. User space
 * empties the map of the epoch before last when it starts a new epoch (every
 * tens of seconds, sooner when the map is half full: `stacks_stored` counts
 * what each map holds), after telling the programs
 * (`control`, ACCEPT_PREVIOUS) that records of that epoch no longer carry a
 * stack. A block keeps its stack if it ends within the epoch after the one it
 * began in, so any block shorter than one epoch does.
 *
 * Every aggregate key carries the generation that was current when the block
 * ended. Each tick user space moves `control[GEN]` on, waits until no program
 * can still be using the old one (an RCU grace period), then reads and deletes
 * the old generation's entries, so no update races the read and is lost.
 *
 * Python frames. For the focus process (below), where it is CPython 3.11+,
 * a switch-out that takes a stack also walks the thread's chain of
 * interpreter frames (python_frames.bpf.h) into the Python stack map of the
 * epoch, and the block key carries their hash: a Python call blocked in recv
 * names its Python callers. Those maps are emptied with the epoch's stacks.
 * Other processes pay one array lookup and a compare, only at a switch-out
 * that takes a stack. For the focus, a 22-frame Python stack added 1 to
 * 2.5 us to each switch-out that took stacks (Debian's python3.11 sleeping
 * 1 ms in a loop, kernel.bpf_stats_enabled), where its two native stacks
 * take 2.5 to 4 us: about 0.2 % of a CPU at a thousand long blocks a second.
 *
 * Per thread. The drill-down asks for the threads of one process
 * (`control[CONTROL_FOCUS]`, a tgid; 0 for none): their blocks of
 * MIN_BLOCK_NS or more also go to `thread_blocks` by (thread, state). Every
 * other block pays an inlined array lookup and a compare for it.
 *
 * Options (cflags, set by probes/offcpu.py):
 *   -DTARGETED             trace one process only: the tgid in
 *                          control[CONTROL_TARGET] (0: nobody), a map word so
 *                          that the program is compiled before a drill-down
 *                          needs it (probes/ebpf/prepared.py)
 *   -DMIN_BLOCK_NS=N       shortest block aggregated with its stack (default 1 ms)
 *   -DSLOT_BITS=N          2^N thread slots, 4-way set-associative
 *   -DBLOCK_ENTRIES=N      (process, state, stacks) entries held per tick
 *   -DRQ_ENTRIES=N         per-process run-queue histograms held per tick
 *   -DTHREAD_ENTRIES=N     (thread, state) pairs of the focus process held per tick
 *   -DSTACK_ENTRIES=N      stacks per epoch map
 *   -DSTACK_DEPTH=N        frames kept per stack
 *   -DSTACK_SAMPLE_MASK=N  2^k - 1: capture stacks on 1 in 2^k of the unlikely switch-outs
 *   -DHIST_SLOTS=N         log2 latency buckets
 *   -DPY_DEPTH=N, -DPY_STACK_ENTRIES=N, -DPY_THREADS=N  see python_frames.bpf.h
 */

#ifndef MIN_BLOCK_NS
#define MIN_BLOCK_NS 1000000
#endif
#ifndef SLOT_BITS
#define SLOT_BITS 16
#endif
#ifndef BLOCK_ENTRIES
#define BLOCK_ENTRIES 16384
#endif
#ifndef RQ_ENTRIES
#define RQ_ENTRIES 4096
#endif
#ifndef THREAD_ENTRIES
#define THREAD_ENTRIES 2048
#endif
#ifndef STACK_ENTRIES
#define STACK_ENTRIES 8192
#endif
#ifndef STACK_DEPTH
#define STACK_DEPTH 64
#endif
#ifndef STACK_SAMPLE_MASK
#define STACK_SAMPLE_MASK 63
#endif
#ifndef HIST_SLOTS
#define HIST_SLOTS 32
#endif

#if HIST_SLOTS & (HIST_SLOTS - 1)
#error "HIST_SLOTS must be a power of two"
#endif

#define SLOT_WAYS 4
#define COMM_BYTES 16
#define EEXIST 17
#define EFAULT 14
#define ENOMEM 12

/* prev_state as sched_switch reports it since Linux 4.14: one TASK_REPORT
 * bit, or 0 for running; TASK_REPORT_MAX (0x100, the "+" of the trace
 * output) marks a preemption, which leaves the task runnable. */
#define TASK_INTERRUPTIBLE 0x1
#define TASK_UNINTERRUPTIBLE 0x2
#define EXIT_DEAD 0x10
#define EXIT_ZOMBIE 0x20
#define TASK_REPORT_BITS 0xff

/* State classes; probes/offcpu.py names them in the same order. */
enum state_class {
    STATE_R,      /* preempted while runnable */
    STATE_S,      /* interruptible sleep: waiting for an event, a lock, a timer */
    STATE_D,      /* uninterruptible: usually disk or network file system I/O */
    STATE_OTHER,  /* stopped, traced, parked, idle kernel threads */
};

/* Stack ids below 0 say why a block has no stack: -errno of bpf_get_stack,
 * or one of these. */
#define STACK_NOT_CAPTURED -1000
#define STACK_EXPIRED -1001

/* Index into `lost`; probes/offcpu.py names them in the same order. */
enum lost_reason {
    LOST_NO_SLOT,             /* block not timed: 4 threads of its slot set were off CPU */
    LOST_UNMATCHED,           /* switched in without a record: off CPU since before tracing, or its slot was taken */
    LOST_BLOCK_MAP_FULL,      /* block not aggregated: no room for its (process, state, stacks) */
    LOST_RQ_MAP_FULL,         /* run-queue latency kept system-wide only: no room for its process */
    LOST_COMM_MAP_FULL,       /* process name not recorded; user space reads /proc */
    LOST_KSTACK_EFAULT,       /* kernel stack could not be walked */
    LOST_STACK_ENOMEM,        /* stack not kept: the epoch's stack map is full */
    LOST_STACK_OTHER,         /* any other bpf_get_stack error */
    LOST_STACK_EXPIRED,       /* block outlived its stacks' epoch */
    LOST_THREAD_MAP_FULL,     /* a focus thread's block counted for its process only */
    LOST_PYTHON_STACK_MAP_FULL, /* Python frames not kept: the epoch's Python stack map is full */
    LOST_PYTHON_READ,         /* Python frames not kept: the thread's state could not be read */
    LOST_REASONS,
};

/* control's indices */
#define CONTROL_GEN 0
#define CONTROL_STACKS 1   /* epoch << 1 | ACCEPT_PREVIOUS */
#define CONTROL_FOCUS 2    /* the tgid whose threads are counted one by one; 0: none */
#define CONTROL_TARGET 3   /* with TARGETED: the one process traced; 0: none */
#define CONTROL_WORDS 4
#define ACCEPT_PREVIOUS 1

struct thread {
    u32 tid;
    u32 tgid;             /* 0: not known (a new task before its first switch-out) */
    u64 off_ns;           /* when it left its CPU; 0: on a CPU, or new */
    u64 runnable_ns;      /* when it became runnable; 0: not yet */
    s64 ustack;           /* stack ids: >= 0 a stack in stacks<epoch & 1>, < 0 why none */
    s64 kstack;
    u64 py;               /* the hash of its Python frames in py_stacks<epoch & 1>; 0: none */
    u32 epoch;            /* the epoch its stacks are in */
    u8 state;
    u8 recent_long;       /* bit i: its (i+1)th last block lasted MIN_BLOCK_NS or more */
    u16 pad;
};

struct block_key {
    s64 ustack;
    s64 kstack;
    u64 py;               /* the hash of its Python frames; 0: none */
    u32 tgid;
    u8 state;
    u8 stack_map;         /* 0: stacks0, 1: stacks1 */
    u16 pad;
    u32 pad2;             /* the generation ends the key, as user space reads it */
    u32 gen;
};

struct block_value {
    u64 total_ns;
    u64 count;
};

struct thread_key {
    u32 tgid;
    u32 tid;
    u8 state;
    u8 pad[3];
    u32 gen;
};

struct tgid_key {
    u32 tgid;
    u32 gen;
};

struct rq_hist {
    u32 slots[HIST_SLOTS];   /* slot i: latency in [2^i, 2^(i+1)) ns; the last one is open-ended */
    u64 total_ns;            /* the waits' sum: with their count, their exact mean */
};

struct comm {
    char name[COMM_BYTES];
};

struct frames {
    u64 ip[STACK_DEPTH];
};

/*
 * Per-thread records live in a fixed array indexed by a hash of the thread
 * id, 4 ways per set, rather than in a hash map: array lookups are inlined
 * and cost next to nothing, where a hash map's update and delete on every
 * context switch cost tens of ns each (the syscalls probe measured the same
 * trade). A running thread keeps its slot's tid (and the length of its last
 * block) but frees the slot for others; only threads off their CPU hold one.
 * Five threads of one set off their CPUs at once leave the fifth untimed
 * (LOST_NO_SLOT): with 10,000 sleeping threads and 2^16 slots, about one set.
 */
BPF_ARRAY(threads, struct thread, 1 << SLOT_BITS);
/* Per-CPU values: plain increments, no atomics, no cache lines bouncing. */
BPF_PERCPU_HASH(blocks, struct block_key, struct block_value, BLOCK_ENTRIES);
BPF_PERCPU_HASH(rq_hists, struct tgid_key, struct rq_hist, RQ_ENTRIES);
BPF_HASH(comms, struct tgid_key, struct comm, RQ_ENTRIES);
BPF_HASH(stacks0, s64, struct frames, STACK_ENTRIES);
BPF_HASH(stacks1, s64, struct frames, STACK_ENTRIES);
/* Where a stack is walked before it is kept: too big for the BPF stack. */
BPF_PERCPU_ARRAY(stack_scratch, struct frames, 1);
/* Cumulative: stacks put in stacks0 and stacks1 since load. */
BPF_PERCPU_ARRAY(stacks_stored, u64, 2);
BPF_PERCPU_HASH(thread_blocks, struct thread_key, struct block_value, THREAD_ENTRIES);
BPF_ARRAY(control, u64, CONTROL_WORDS);
/* Cumulative since load: user space takes differences, so nothing races a reset. */
BPF_PERCPU_ARRAY(rq_hist, u64, HIST_SLOTS);
BPF_PERCPU_ARRAY(rq_wait_ns, u64, 1);     /* the sum of the waits rq_hist counts */
BPF_PERCPU_ARRAY(short_blocks, u64, 2);   /* [0] count, [1] ns, of blocks under MIN_BLOCK_NS */

#include "orac.bpf.h"
#include "python_frames.bpf.h"

static __always_inline void add_percpu(void *table_lookup_result, u64 v)
{
    u64 *n = table_lookup_result;
    if (n)
        *n += v;
}

static __always_inline u32 state_class(long prev_state)
{
    if (prev_state & TASK_INTERRUPTIBLE)
        return STATE_S;
    if (prev_state & TASK_UNINTERRUPTIBLE)
        return STATE_D;
    if (!(prev_state & TASK_REPORT_BITS))
        return STATE_R;
    return STATE_OTHER;
}

/* First slot of the thread's set: Fibonacci hashing spreads the consecutive
 * ids of a thread pool over different sets. */
static __always_inline u32 set_of(u32 tid)
{
    return ((tid * 2654435761u) >> (32 - SLOT_BITS)) & ~(u32)(SLOT_WAYS - 1);
}

static __always_inline int in_use(struct thread *t)
{
    return t->off_ns || t->runnable_ns;
}

/* The thread's record while it is off its CPU, or 0. */
static __always_inline struct thread *record_of(u32 tid)
{
    u32 base = set_of(tid);
#pragma unroll
    for (u32 i = 0; i < SLOT_WAYS; i++) {
        u32 index = base + i;
        struct thread *t = threads.lookup(&index);
        if (t && t->tid == tid && in_use(t))
            return t;
    }
    return 0;
}

/* The slot the thread keeps its record in: its own if it still has it, else a
 * free one; 0 where four other threads hold the set. */
static __always_inline struct thread *slot_for(u32 tid)
{
    u32 base = set_of(tid);
    struct thread *free = 0;
#pragma unroll
    for (u32 i = 0; i < SLOT_WAYS; i++) {
        u32 index = base + i;
        struct thread *t = threads.lookup(&index);
        if (!t)
            continue;
        if (t->tid == tid)
            return t;
        if (!free && !in_use(t))
            free = t;
    }
    return free;
}

static __always_inline u64 control_word(u32 index)
{
    u64 *value = control.lookup(&index);
    return value ? *value : 0;
}

/* The current task's user (BPF_F_USER_STACK) or kernel stack, kept in
 * stacks<map> under a hash of its frames: that id (>= 0), or -errno. */
static __always_inline s64 capture_stack(void *ctx, u64 flags, u32 map)
{
    u32 zero = 0;
    struct frames *f = stack_scratch.lookup(&zero);
    if (!f)
        return -ENOMEM;
    long bytes = bpf_get_stack(ctx, f->ip, sizeof(f->ip), flags);
    if (bytes < 0)
        return bytes;
    /* No frames: a kernel thread's user stack. */
    if (bytes == 0)
        return -EFAULT;
    /* bpf_get_stack zeroes the frames past the stack's end, so the whole
     * array is the key's content; the flags keep a user and a kernel stack
     * of the same addresses apart. */
    u64 h = flags + 1;
#pragma unroll
    for (u32 i = 0; i < STACK_DEPTH; i++) {
        if (i * sizeof(u64) >= bytes)
            break;
        h = (h ^ f->ip[i]) * 0x9E3779B97F4A7C15ULL;
        h ^= h >> 29;
    }
    s64 id = h >> 1;
    struct frames *kept = map ? stacks1.lookup(&id) : stacks0.lookup(&id);
    if (!kept) {
        int err = map ? stacks1.insert(&id, f) : stacks0.insert(&id, f);
        if (!err)
            add_percpu(stacks_stored.lookup(&map), 1);
        else if (err != -EEXIST)
            /* -E2BIG: the map is full. (EEXIST: another CPU kept it first.) */
            return -ENOMEM;
    }
    return id;
}

static __always_inline s64 checked_stack(s64 id, int user)
{
    if (id >= 0)
        return id;
    if (id == -ENOMEM)
        count_lost(LOST_STACK_ENOMEM);
    else if (id == -EFAULT) {
        /* A user stack fails so only for a kernel thread, which has none:
         * not a loss. A kernel stack should always walk. */
        if (!user)
            count_lost(LOST_KSTACK_EFAULT);
    } else
        count_lost(LOST_STACK_OTHER);
    return id;
}

static __always_inline void record_comm(u32 tgid, u32 gen, u32 tid, char *name)
{
    struct tgid_key ck = {.tgid = tgid, .gen = gen};
    struct comm c = {};
    bpf_probe_read_kernel(&c.name, sizeof(c.name), name);
    /* The main thread's name names the process; another thread's only until
     * the main thread is seen. */
    int err = tid == tgid ? comms.update(&ck, &c) : comms.insert(&ck, &c);
    if (err && err != -EEXIST)
        count_lost(LOST_COMM_MAP_FULL);
}

TRACEPOINT_PROBE(sched, sched_switch)
{
    u64 now = bpf_ktime_get_ns();
    u32 prev = args->prev_pid;
    u32 next = args->next_pid;

    /* ---- prev leaves its CPU (pid 0 is the idle task: never timed) ---- */
    if (prev) {
        long prev_state = args->prev_state;
        u64 pid_tgid = bpf_get_current_pid_tgid();
        u32 tgid = pid_tgid >> 32;
#ifdef TARGETED
        u64 target = control_word(CONTROL_TARGET);
        if (!target || tgid != target)
            goto switch_in;
#endif
        struct thread *t = slot_for(prev);
        if (prev_state & (EXIT_DEAD | EXIT_ZOMBIE)) {
            /* Its last switch: it never comes back, so it holds no slot. */
            if (t && t->tid == prev) {
                t->off_ns = 0;
                t->runnable_ns = 0;
            }
            goto switch_in;
        }
        if (!t) {
            count_lost(LOST_NO_SLOT);
            goto switch_in;
        }
        u32 state = state_class(prev_state);
        u64 stacks = control_word(CONTROL_STACKS);
        u32 epoch = stacks >> 1;
        s64 ustack = STACK_NOT_CAPTURED, kstack = STACK_NOT_CAPTURED;
        u64 py = 0;
        /* The clock's low bits stand in for a random number: they change
         * between any two switches, and bpf_get_prandom_u32 costs a quarter
         * of what the rest of a switch-out does. */
        if (state != STATE_R &&
            (t->tid != prev || t->recent_long || !((now >> 4) & STACK_SAMPLE_MASK))) {
            ustack = checked_stack(capture_stack(args, BPF_F_USER_STACK, epoch & 1), 1);
            kstack = checked_stack(capture_stack(args, 0, epoch & 1), 0);
            if (tgid == control_word(CONTROL_FOCUS))
                py = python_stack(prev, epoch & 1);
        }
        if (t->tid != prev) {
            t->tid = prev;
            t->recent_long = 0;
        }
        t->tgid = tgid;
        t->state = state;
        t->ustack = ustack;
        t->kstack = kstack;
        t->py = py;
        t->epoch = epoch;
        t->runnable_ns = state == STATE_R ? now : 0;
        t->off_ns = now;
    }

switch_in:
    /* ---- next gets a CPU ---- */
    if (!next)
        return 0;
    struct thread *t = record_of(next);
    if (!t) {
#ifndef TARGETED
        /* With a target, every other process's thread comes here. */
        count_lost(LOST_UNMATCHED);
#endif
        return 0;
    }
    u32 tgid = t->tgid;
#ifdef TARGETED
    /* A record left by the process an earlier drill-down traced (the program
     * is kept for the next one): not this target's. */
    if (tgid != control_word(CONTROL_TARGET)) {
        t->off_ns = 0;
        t->runnable_ns = 0;
        return 0;
    }
#endif
    u32 gen = control_word(CONTROL_GEN);
    int new_process = 0;
    if (t->runnable_ns) {
        u64 wait_ns = now - t->runnable_ns;
        u32 slot = log2_slot(wait_ns);
        u32 zero_index = 0;
        add_percpu(rq_hist.lookup(&slot), 1);
        add_percpu(rq_wait_ns.lookup(&zero_index), wait_ns);
        if (tgid) {
            struct tgid_key key = {.tgid = tgid, .gen = gen};
            struct rq_hist *h = rq_hists.lookup(&key);
            if (!h) {
                struct rq_hist zero = {};
                rq_hists.insert(&key, &zero);
                h = rq_hists.lookup(&key);
                new_process = 1;
            }
            /* The mask is a no-op (log2_slot caps the slot) that the verifier
             * needs: the slot was spilled to the stack, losing its bounds. */
            if (h) {
                h->slots[slot & (HIST_SLOTS - 1)]++;
                h->total_ns += wait_ns;
            } else
                count_lost(LOST_RQ_MAP_FULL);
        }
    }
    if (t->off_ns) {
        u64 off_ns = now - t->off_ns;
        t->recent_long = t->recent_long << 1 | (off_ns >= MIN_BLOCK_NS);
        if (off_ns < MIN_BLOCK_NS) {
            u32 count_index = 0, ns_index = 1;
            add_percpu(short_blocks.lookup(&count_index), 1);
            add_percpu(short_blocks.lookup(&ns_index), off_ns);
        } else {
            struct block_key key = {
                .tgid = tgid, .ustack = t->ustack, .kstack = t->kstack, .py = t->py, .state = t->state,
                .stack_map = t->epoch & 1, .gen = gen,
            };
            if (key.ustack >= 0 || key.kstack >= 0) {
                u64 stacks = control_word(CONTROL_STACKS);
                u32 epoch = stacks >> 1;
                if (t->epoch != epoch && !((stacks & ACCEPT_PREVIOUS) && t->epoch + 1 == epoch)) {
                    /* Its stack map may have been emptied and refilled since. */
                    key.ustack = STACK_EXPIRED;
                    key.kstack = STACK_EXPIRED;
                    key.py = 0;
                    count_lost(LOST_STACK_EXPIRED);
                }
            }
            struct block_value *v = blocks.lookup(&key);
            if (!v) {
                struct block_value zero = {};
                blocks.insert(&key, &zero);
                v = blocks.lookup(&key);
                new_process = 1;
            }
            if (v) {
                v->total_ns += off_ns;
                v->count++;
            } else {
                count_lost(LOST_BLOCK_MAP_FULL);
            }
            if (tgid && tgid == control_word(CONTROL_FOCUS)) {
                struct thread_key tk = {.tgid = tgid, .tid = next, .state = t->state, .gen = gen};
                struct block_value zero = {};
                struct block_value *tv = thread_blocks.lookup_or_try_init(&tk, &zero);
                if (tv) {
                    tv->total_ns += off_ns;
                    tv->count++;
                } else {
                    count_lost(LOST_THREAD_MAP_FULL);
                }
            }
        }
    }
    if (new_process)
        record_comm(tgid, gen, next, args->next_comm);
    t->off_ns = 0;
    t->runnable_ns = 0;
    return 0;
}

/* A sleeping thread becomes runnable: its run-queue wait starts. */
TRACEPOINT_PROBE(sched, sched_wakeup)
{
    struct thread *t = record_of(args->pid);
    if (t && t->off_ns && !t->runnable_ns)
        t->runnable_ns = bpf_ktime_get_ns();
    return 0;
}

/* A new task's first wait for a CPU. Its process is not known here (the
 * parent runs fork, and a thread and a process look alike in these fields):
 * its latency counts system-wide only. */
TRACEPOINT_PROBE(sched, sched_wakeup_new)
{
#ifndef TARGETED
    u32 tid = args->pid;
    struct thread *t = slot_for(tid);
    if (!t)
        return 0;
    t->tid = tid;
    t->tgid = 0;
    t->recent_long = 0;
    t->off_ns = 0;
    t->runnable_ns = bpf_ktime_get_ns();
#endif
    return 0;
}
