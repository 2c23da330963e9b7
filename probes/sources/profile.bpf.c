/*
 * orac's on-CPU profile of one process: which code its threads run, by
 * sampling their user and kernel stacks, counted in the kernel per
 * (thread, user stack, kernel stack). User space reads the counts and the
 * stacks once per tick; nothing is sent per sample.
 *
 * profile_sample() runs on a software CPU clock perf event that the loader
 * opens on every online CPU (PERF_TYPE_SOFTWARE, PERF_COUNT_SW_CPU_CLOCK, at
 * the profile's frequency, as bcc's profile tool does). Each CPU's timer
 * fires whatever runs there, so the program first keeps only the target
 * process (`target`, all its threads): a sample of anything else costs
 * one helper call, an array lookup and a compare. The target is a map word,
 * not a compile-time option, so the program is compiled once when orac
 * starts and a drill-down only attaches it (probes/ebpf/prepared.py);
 * 0 targets nobody (the idle task's tgid is 0 too). The ctx is the interrupted registers, so
 * the kernel stack starts where the thread was (empty when it was in user
 * space: bpf_get_stackid says -EFAULT, which is no loss).
 *
 * Generations and stack maps. Every count key carries the generation that
 * was current at the sample, and a sample's stacks go to the stack map of
 * its generation's parity. Each tick user space moves `generation` on,
 * waits until no program can still be using the old one (an RCU grace
 * period; perf event programs run under rcu_read_lock), then reads and
 * deletes the old generation's counts, reads the stacks they name from the
 * old parity's map and empties that map. Nothing writes to it then, and the
 * next generation of that parity finds it empty: a stack id is never
 * deleted while a count of the running generation may still name it, and
 * stacks of past ticks do not fill the map. (The off-CPU probe needs
 * epochs instead because it takes a stack at one event and counts it at a
 * later one; here both happen in the same program run.)
 *
 * Only helpers are used (bpf_get_current_pid_tgid, bpf_get_current_comm,
 * bpf_get_stackid, bpf_probe_read_user), never task_struct fields (see
 * shared/DESIGN.md).
 *
 * Python frames. For a CPython 3.11+ target a sample of one of its threads
 * also walks the thread's chain of interpreter frames, at the same moment as
 * its native stack (python_frames.bpf.h), into the Python stack map of its
 * generation's parity; the count key carries their hash.
 *
 * Options (cflags, set by probes/profile.py):
 *   -DCOUNT_ENTRIES=N    (thread, user stack, kernel stack) keys held per tick
 *   -DSTACK_ENTRIES=N    stacks per parity map (a power of two: the kernel
 *                        rounds its buckets up to one anyway)
 *   -DSTACK_DEPTH=N      frames kept per stack, leaf first
 *   -DPY_DEPTH=N, -DPY_STACK_ENTRIES=N, -DPY_THREADS=N  see python_frames.bpf.h
 */

#include <uapi/linux/bpf_perf_event.h>

#ifndef COUNT_ENTRIES
#define COUNT_ENTRIES 16384
#endif
#ifndef STACK_ENTRIES
#define STACK_ENTRIES 8192
#endif
#ifndef STACK_DEPTH
#define STACK_DEPTH 127
#endif

#define EFAULT 14
#define EEXIST 17
#define ENOMEM 12
/* TASK_COMM_LEN, which is ABI (see syscalls.bpf.c). */
#define COMM_BYTES 16

/* Index into `lost`; probes/profile.py names them in the same order. */
enum lost_reason {
    LOST_COUNT_MAP_FULL,           /* sample not counted: no room for its key */
    LOST_USER_STACK_COLLISION,     /* user stack not kept: another stack holds its bucket */
    LOST_KERNEL_STACK_COLLISION,   /* kernel stack not kept, the same way */
    LOST_STACK_MAP_FULL,           /* a stack not kept: its map is out of entries */
    LOST_STACK_OTHER,              /* any other bpf_get_stackid error */
    LOST_PYTHON_STACK_MAP_FULL,    /* Python frames not kept: their map is out of entries */
    LOST_PYTHON_READ,              /* Python frames not kept: the thread's state could not be read */
    LOST_REASONS,
};

/* A stack id below 0 is bpf_get_stackid's -errno: why that stack is missing. */
struct count_key {
    u64 py;  /* the hash of its Python frames in py_stacks; 0: none */
    u32 tid;
    s32 ustack;
    s32 kstack;
    u32 gen;
};

struct count {
    u64 samples;
    /* The thread's name at its first sample of the key: a thread that exits
     * before the tick is still named, and user space reads no /proc file per
     * thread. */
    char comm[COMM_BYTES];
};

struct frames {
    u64 ip[STACK_DEPTH];
};

BPF_HASH(counts, struct count_key, struct count, COUNT_ENTRIES);
BPF_TABLE("stacktrace", int, struct frames, stacks0, STACK_ENTRIES);
BPF_TABLE("stacktrace", int, struct frames, stacks1, STACK_ENTRIES);
BPF_ARRAY(generation, u32, 1);
/* The process to profile (its tgid); 0: none. */
BPF_ARRAY(target, u32, 1);

#include "orac.bpf.h"
#include "python_frames.bpf.h"

static __always_inline s32 checked_stack(s32 id, u32 collision_reason)
{
    /* -EFAULT: nothing to walk (a kernel thread's user stack, the kernel
     * stack of a sample in user space). */
    if (id >= 0 || id == -EFAULT)
        return id;
    if (id == -EEXIST)
        count_lost(collision_reason);
    else if (id == -ENOMEM)
        count_lost(LOST_STACK_MAP_FULL);
    else
        count_lost(LOST_STACK_OTHER);
    return id;
}

int profile_sample(struct bpf_perf_event_data *ctx)
{
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u32 zero_index = 0;
    u32 *tgid = target.lookup(&zero_index);
    if (!tgid || !*tgid || (pid_tgid >> 32) != *tgid)
        return 0;

    u32 *gen = generation.lookup(&zero_index);
    if (!gen)
        return 0;
    struct count_key key = {.tid = (u32)pid_tgid, .gen = *gen};
    s32 ustack, kstack;
    if (key.gen & 1) {
        ustack = stacks1.get_stackid(ctx, BPF_F_USER_STACK);
        kstack = stacks1.get_stackid(ctx, 0);
    } else {
        ustack = stacks0.get_stackid(ctx, BPF_F_USER_STACK);
        kstack = stacks0.get_stackid(ctx, 0);
    }
    key.ustack = checked_stack(ustack, LOST_USER_STACK_COLLISION);
    key.kstack = checked_stack(kstack, LOST_KERNEL_STACK_COLLISION);
    key.py = python_stack(key.tid, key.gen & 1);

    struct count *c = counts.lookup(&key);
    if (!c) {
        struct count init = {};
        bpf_get_current_comm(&init.comm, sizeof(init.comm));
        counts.insert(&key, &init);
        c = counts.lookup(&key);
        if (!c) {
            count_lost(LOST_COUNT_MAP_FULL);
            return 0;
        }
    }
    /* No atomic needed: the key names one thread, and a thread is sampled
     * on the CPU it runs on, one sample at a time. */
    c->samples++;
    return 0;
}
