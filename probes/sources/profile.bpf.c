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
 * Python frames. For a CPython 3.11+ target, user space writes where the
 * interpreter keeps each thread's frames (`py_layout`, offsets of the
 * target's version, from probes/host/cpython_frames.py) and each thread's
 * state address (`py_threads`, tid -> PyThreadState*, kept up to date once
 * a tick). A sample of such a thread then also walks its chain of
 * _PyInterpreterFrames in the process's memory, at the same moment as its
 * native stack, and keeps the code object of each frame (innermost first,
 * 0 after the last; a C-stack shim frame's with its low bit set, code
 * objects being 8-aligned), in `py_stacks` of its parity under a hash of
 * them, which the count key carries (0: no Python stack). User space names
 * the code objects and puts the Python frames where the interpreter's own
 * frames are in the native stack. No thread is stopped: a frame read while
 * the thread changes it gives a stack user space may not be able to name,
 * which it counts. Nothing of this runs for a target that is not Python
 * (`enabled` 0).
 *
 * Options (cflags, set by probes/profile.py):
 *   -DCOUNT_ENTRIES=N    (thread, user stack, kernel stack) keys held per tick
 *   -DSTACK_ENTRIES=N    stacks per parity map (a power of two: the kernel
 *                        rounds its buckets up to one anyway)
 *   -DSTACK_DEPTH=N      frames kept per stack, leaf first
 *   -DPY_DEPTH=N         Python frames kept per stack, innermost first
 *   -DPY_STACK_ENTRIES=N Python stacks per parity map
 *   -DPY_THREADS=N       threads whose Python frames are read
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
#ifndef PY_DEPTH
#define PY_DEPTH 62
#endif
#ifndef PY_STACK_ENTRIES
#define PY_STACK_ENTRIES 2048
#endif
#ifndef PY_THREADS
#define PY_THREADS 4096
#endif
/* _PyInterpreterFrame.owner of the interpreter's entry shim (3.12+: FRAME_OWNED_BY_CSTACK) */
#define PY_OWNED_BY_CSTACK 3

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
    LOST_PYTHON_STACK_MAP_FULL,        /* Python frames not kept: their map is out of entries */
    LOST_PYTHON_READ,                  /* Python frames not kept: the thread's state could not be read */
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

/* Offsets into the target's interpreter structures (bytes); enabled 0: not Python. */
struct py_layout {
    u32 enabled;
    u32 use_cframe;      /* 3.11/3.12: tstate->cframe->current_frame; 3.13: tstate->current_frame */
    u32 tstate_cframe;
    u32 current_frame;
    u32 frame_previous;
    u32 frame_code;
    u32 frame_owner;
    u32 pad;
};

struct py_stack {
    u64 code[PY_DEPTH];
};

BPF_HASH(counts, struct count_key, struct count, COUNT_ENTRIES);
BPF_ARRAY(py_layout, struct py_layout, 1);
BPF_HASH(py_threads, u32, u64, PY_THREADS);
BPF_HASH(py_stacks0, u64, struct py_stack, PY_STACK_ENTRIES);
BPF_HASH(py_stacks1, u64, struct py_stack, PY_STACK_ENTRIES);
/* Room for one stack as it is read: too big for the BPF stack. */
BPF_PERCPU_ARRAY(py_scratch, struct py_stack, 1);
BPF_TABLE("stacktrace", int, struct frames, stacks0, STACK_ENTRIES);
BPF_TABLE("stacktrace", int, struct frames, stacks1, STACK_ENTRIES);
BPF_ARRAY(generation, u32, 1);
/* The process to profile (its tgid); 0: none. */
BPF_ARRAY(target, u32, 1);

#include "orac.bpf.h"

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

/* The sampled thread's Python frames into py_stacks of the parity of `gen`; their hash, 0 if none. */
static __always_inline u64 python_stack(u32 tid, u32 gen)
{
    u32 zero_index = 0;
    struct py_layout *layout = py_layout.lookup(&zero_index);
    if (!layout || !layout->enabled)
        return 0;
    u64 *tstate = py_threads.lookup(&tid);
    if (!tstate)
        return 0;
    u64 frame = 0;
    if (layout->use_cframe) {
        u64 cframe = 0;
        if (bpf_probe_read_user(&cframe, sizeof(cframe), (void *)(*tstate + layout->tstate_cframe)) || !cframe ||
            bpf_probe_read_user(&frame, sizeof(frame), (void *)(cframe + layout->current_frame))) {
            count_lost(LOST_PYTHON_READ);
            return 0;
        }
    } else if (bpf_probe_read_user(&frame, sizeof(frame), (void *)(*tstate + layout->current_frame))) {
        count_lost(LOST_PYTHON_READ);
        return 0;
    }
    if (!frame)
        return 0;  /* not running Python code now (starting, finishing, a C thread) */
    struct py_stack *stack = py_scratch.lookup(&zero_index);
    if (!stack)
        return 0;
    /* FNV-1a over the code pointers: the key of this stack among the tick's */
    u64 hash = 14695981039346656037ULL;
    for (int i = 0; i < PY_DEPTH; i++) {
        u64 code = 0;
        if (frame) {
            u8 owner = 0;
            u64 previous = 0;
            if (bpf_probe_read_user(&code, sizeof(code), (void *)(frame + layout->frame_code)) ||
                bpf_probe_read_user(&owner, sizeof(owner), (void *)(frame + layout->frame_owner)) ||
                bpf_probe_read_user(&previous, sizeof(previous), (void *)(frame + layout->frame_previous))) {
                code = 0;
                previous = 0;
            }
            if (owner == PY_OWNED_BY_CSTACK)
                code |= 1;
            frame = previous;
        }
        stack->code[i] = code;
        hash = (hash ^ code) * 1099511628211ULL;
    }
    if (!stack->code[0])
        return 0;
    if (!hash)
        hash = 1;
    int err = (gen & 1) ? py_stacks1.update(&hash, stack) : py_stacks0.update(&hash, stack);
    if (err) {
        count_lost(LOST_PYTHON_STACK_MAP_FULL);
        return 0;
    }
    return hash;
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
    key.py = python_stack(key.tid, key.gen);

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
