/*
 * python_frames.bpf.h: reading a CPython 3.11+ thread's Python frames in the
 * kernel, at the moment its native stack is taken (the profile's samples,
 * the off-CPU probe's switch-outs). build_program puts this text where a
 * program says #include "python_frames.bpf.h", after orac.bpf.h and an
 * enum lost_reason with LOST_PYTHON_READ and LOST_PYTHON_STACK_MAP_FULL.
 *
 * User space (probes/ebpf/python_frames.py) writes where the interpreter
 * keeps each thread's frames (`py_layout`, offsets of the process's
 * version, from probes/host/cpython_frames.py) and each thread's state
 * address (`py_threads`, tid -> PyThreadState*, kept up to date once a
 * tick). python_stack() then walks the thread's chain of
 * _PyInterpreterFrames in the process's memory and keeps the code object of
 * each frame (innermost first, 0 after the last; a C-stack shim frame's with
 * its low bit set, code objects being 8-aligned) in py_stacks0 or
 * py_stacks1 under an FNV-1a hash of them, which the program's own key
 * carries (0: no Python stack). User space names the code objects. No
 * thread is stopped: a frame read while the thread changes it gives a stack
 * user space may not be able to name, which it counts. Nothing runs for a
 * process that is not Python (`enabled` 0) or a thread not in py_threads.
 *
 * Options: -DPY_DEPTH=N (frames kept per stack), -DPY_STACK_ENTRIES=N
 * (stacks per map), -DPY_THREADS=N (threads whose frames are read).
 */

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

BPF_ARRAY(py_layout, struct py_layout, 1);
BPF_HASH(py_threads, u32, u64, PY_THREADS);
BPF_HASH(py_stacks0, u64, struct py_stack, PY_STACK_ENTRIES);
BPF_HASH(py_stacks1, u64, struct py_stack, PY_STACK_ENTRIES);
/* Room for one stack as it is read: too big for the BPF stack. */
BPF_PERCPU_ARRAY(py_scratch, struct py_stack, 1);

/* The current thread's (`tid`) Python frames into py_stacks<parity>; their hash, 0 if none. */
static __always_inline u64 python_stack(u32 tid, u32 parity)
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
    int err = parity ? py_stacks1.update(&hash, stack) : py_stacks0.update(&hash, stack);
    if (err) {
        count_lost(LOST_PYTHON_STACK_MAP_FULL);
        return 0;
    }
    return hash;
}
