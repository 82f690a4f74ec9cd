// The lab's native helpers for bochscpu 0.3.1: two interposed stubs, an
// instruction counter, the watched instruction handlers and a run watchdog (below).
//
// Interposes two C-ABI stubs of bochscpu 0.3.1 whose bodies are assert(false).
// Loaded with RTLD_GLOBAL before the bochscpu extension, these definitions win
// symbol resolution over the extension's own exported copies (ELF interposition),
// so no binary is patched.
//
// - get_enable_a20(): VMXON reads the A20 gate state to mask the VMXON pointer.
//   A long-mode machine always has A20 enabled, so answer true.
// - dbg_fetch_mem(): only the Bochs debugger and the triple-fault path use it.
//   We have no debugger memory view: report "not fetched".
class bx_pc_system_c {
 public:
  bool get_enable_a20();
  void countdownEvent();
};
class BX_CPU_C;
class BX_MEM_C {
 public:
  bool dbg_fetch_mem(BX_CPU_C *cpu, unsigned long addr, unsigned int len, unsigned char *buf);
};

__attribute__((visibility("default"))) bool bx_pc_system_c::get_enable_a20() { return true; }

__attribute__((visibility("default"))) bool BX_MEM_C::dbg_fetch_mem(BX_CPU_C *, unsigned long, unsigned int,
                                                                    unsigned char *) {
  return false;
}

// Instruction counting. Bochs's CPU loop advances the system clock by the
// instructions it executed (BX_SYNC_TIME_IF_SINGLE_PROCESSOR -> tickn);
// bochscpu's stub of bx_pc_system_c::countdownEvent() re-arms the countdown
// with 1, so the loop calls it once per instruction, through the PLT. Our
// definition (interposed like the two above) counts the call and forwards it
// to bochscpu's own, whose address Python hands over (hvlab_set_countdown)
// before any instruction runs. When the watchdog is armed with an instruction
// limit, reaching it stops the run from the emulator thread itself.
namespace {
typedef void (*countdown_fn)(void *);
typedef void (*kill_fn)(unsigned);
countdown_fn original_countdown = nullptr;
unsigned long long instructions = 0;
// set by arm/disarm, read here: both run on the emulator (Python) thread
unsigned long long instruction_limit = 0;  // stop when instructions reach it (0: no limit)
bool instruction_limit_hit = false;
kill_fn limit_kill = nullptr;
unsigned limit_cpu = 0;
}  // namespace

__attribute__((visibility("default"))) void bx_pc_system_c::countdownEvent() {
  ++instructions;
  if (instruction_limit && instructions >= instruction_limit) {
    instruction_limit_hit = true;
    limit_kill(limit_cpu);  // repeated on every further instruction until the run ends
  }
  original_countdown(this);
}

extern "C" __attribute__((visibility("default"))) void hvlab_set_countdown(countdown_fn original) {
  original_countdown = original;
}

extern "C" __attribute__((visibility("default"))) unsigned long long hvlab_instructions(void) {
  return instructions;
}

// Watched instruction handlers. Bochs executes an instruction by calling its
// handler, a BX_CPU_C member, through the opcode table; bochscpu exports the
// handlers and the table refers to them through relocations against those
// symbols, so the definitions below replace them in the table (interposed like
// the stubs above). Each one asks Python first ("before": return non-zero to
// skip the instruction because the lab emulated it), calls bochscpu's own
// handler (whose address Python hands over: hvlab_set_handler), and, when that
// returns normally, tells Python again ("after"). A VM exit or a fault leaves
// the handler by longjmp: then there is no "after". Bochs has already advanced
// RIP past the instruction when its handler runs. Only these instructions reach
// Python: every other instruction runs at full speed.
// bochscpu is built with handler chaining: a handler that finds no async event
// pending calls the next instruction's handler itself, so the rest of the trace
// would run before our "after". While a callback is installed, the wrapper sets
// Bochs's own "stop the trace" bit in bx_cpu.async_event (BX_ASYNC_EVENT_STOP_TRACE,
// bit 31; the CPU loop clears it) so the handler returns right after its
// instruction. Python measures where async_event lives (hvlab_set_async_event).
// The order is the one emulated_lab/bochs_loader.py (WATCHED_HANDLERS) uses.
class bxInstruction_c;
class BX_CPU_C {
 public:
  void VMXON(bxInstruction_c *);
  void VMPTRLD(bxInstruction_c *);
  void VMCLEAR(bxInstruction_c *);
  void VMPTRST(bxInstruction_c *);
  void VMLAUNCH(bxInstruction_c *);  // VMLAUNCH and VMRESUME
  void VMXOFF(bxInstruction_c *);
  void VMCALL(bxInstruction_c *);
  void CPUID(bxInstruction_c *);
  void RDMSR(bxInstruction_c *);
  void WRMSR(bxInstruction_c *);
  void MOV_CR4Rq(bxInstruction_c *);  // MOV CR4, r64
};

namespace {
const int kWatched = 11;
typedef void (*handler_fn)(BX_CPU_C *, bxInstruction_c *);
typedef int (*watch_fn)(int which, int after);
handler_fn original_handler[kWatched];
watch_fn watch = nullptr;  // set for a run (emulator thread only), else null
volatile unsigned *async_event = nullptr;
BX_CPU_C *watched_cpu = nullptr;  // the CPU of the watched instruction in flight
const unsigned kStopTrace = 1u << 31;

inline void watched(int which, BX_CPU_C *cpu, bxInstruction_c *i) {
  watch_fn w = watch;
  if (!w) {
    original_handler[which](cpu, i);
    return;
  }
  watched_cpu = cpu;
  if (w(which, 0)) return;  // the lab emulated it: RIP is already past it
  *async_event |= kStopTrace;
  original_handler[which](cpu, i);
  w(which, 1);
}
}  // namespace

#define HVLAB_WATCHED(NAME, ID) \
  __attribute__((visibility("default"))) void BX_CPU_C::NAME(bxInstruction_c *i) { watched(ID, this, i); }
HVLAB_WATCHED(VMXON, 0)
HVLAB_WATCHED(VMPTRLD, 1)
HVLAB_WATCHED(VMCLEAR, 2)
HVLAB_WATCHED(VMPTRST, 3)
HVLAB_WATCHED(VMLAUNCH, 4)
HVLAB_WATCHED(VMXOFF, 5)
HVLAB_WATCHED(VMCALL, 6)
HVLAB_WATCHED(CPUID, 7)
HVLAB_WATCHED(RDMSR, 8)
HVLAB_WATCHED(WRMSR, 9)
HVLAB_WATCHED(MOV_CR4Rq, 10)
#undef HVLAB_WATCHED

// Returns 0, or -1 for an index out of range.
extern "C" __attribute__((visibility("default"))) int hvlab_set_handler(int which, handler_fn original) {
  if (which < 0 || which >= kWatched) return -1;
  original_handler[which] = original;
  return 0;
}

extern "C" __attribute__((visibility("default"))) int hvlab_watched_count(void) { return kWatched; }

// The INIT signal arrives at the CPU (an INIT IPI, SDM Vol.3 10.6.1): Bochs latches it
// unless it is masked (VMX root, SDM Vol.3 25.2) and acts on it at the next instruction
// boundary (in VMX non-root: a VM exit, reason 3). Call only from a watch callback.
// `deliver` is bochscpu's BX_CPU_C::deliver_INIT() (from Python: this library is
// loaded before bochscpu, so it cannot name bochscpu's symbols itself).
typedef void (*deliver_fn)(BX_CPU_C *);
extern "C" __attribute__((visibility("default"))) int hvlab_deliver_init(deliver_fn deliver) {
  if (!watched_cpu || !deliver) return -1;
  deliver(watched_cpu);
  return 0;
}

// Where bx_cpu.async_event is (bochscpu is built without SMP: one BX_CPU_C, bx_cpu).
extern "C" __attribute__((visibility("default"))) void hvlab_set_async_event(unsigned *where) {
  async_event = where;
}

// The callback for the next runs (null: none; the handlers then only forward).
// Returns -1 when async_event is not known yet.
extern "C" __attribute__((visibility("default"))) int hvlab_set_watch(watch_fn callback) {
  if (callback && !async_event) return -1;
  watch = callback;
  return 0;
}

// A watchdog for runs that never end (an endless loop, or a spin-wait for a
// processor the sequential model has not started). Python cannot do it: the
// emulator holds the GIL while it runs.
//
// How a run is stopped from another thread: Python passes bochscpu's exported
// cpu_set_killbit, which sets bx_pc_system.kill_bochs_request and
// bx_cpu.async_event = 1; Bochs's cpu loop returns when it sees async_event
// with the kill request set, and bochscpu's run loop ends on the kill bit.
// Two things make a single call unreliable, so this thread repeats it every
// millisecond until the run is disarmed:
// - the emulator thread does unsynchronized read-modify-writes of async_event
//   (cpu_loop's "async_event &= ~BX_ASYNC_EVENT_STOP_TRACE" after every linked
//   trace, roughly every 1000 instructions of a tight loop, and handleAsyncEvent's
//   "async_event = 0"): a write that lands between the read and the write is
//   lost, and the loop then never looks at the kill request again (a hang);
// - a run that has not reached bochscpu's run loop yet clears the kill bit
//   when it starts.
// bochscpu_cpu_stop (what Session.stop calls) is deliberately not used here: it
// also sets bochscpu's per-CPU "hook event", a non-atomic Rust Option that the
// emulator thread consumes in every instrumentation callback; set from this
// thread it races those reads, and when the run ends before any callback
// consumes it, it stays set after the run.
//
// One long-lived thread serves every run: arm/disarm only change the shared
// state under the mutex, and disarm returns only when the thread is not (and
// will not be) touching the CPU, so a stop can never reach a later run.
// A run that still has not ended `HVLAB_WATCHDOG_GRACE_MS` after the first
// stop means the emulator ignores the kill request; the process is then ended
// with a message rather than left hanging.
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>

#include <pthread.h>

namespace {
const unsigned kGraceMs = 20000;

// Never destroyed: the watchdog thread may still wait on them while the
// process exits, and destroying a condition variable with a waiter blocks
// (glibc) or is undefined.
// A forked child has no watchdog thread (and maybe a mutex locked by it): it
// gets fresh ones (see wd_atfork_child).
std::mutex *wd_mutex_p = new std::mutex;
std::condition_variable *wd_cv_p = new std::condition_variable;
#define wd_mutex (*wd_mutex_p)
#define wd_cv (*wd_cv_p)
bool wd_thread_started = false;
bool wd_armed = false;
bool wd_fired = false;
unsigned long wd_generation = 0;  // changes on every arm
std::chrono::steady_clock::time_point wd_deadline;
kill_fn wd_kill = nullptr;
unsigned wd_cpu = 0;

void wd_atfork_child() {
  wd_mutex_p = new std::mutex;
  wd_cv_p = new std::condition_variable;
  wd_thread_started = false;
  wd_armed = false;
  wd_fired = false;
}

struct WdAtfork {
  WdAtfork() { pthread_atfork(nullptr, nullptr, wd_atfork_child); }
} wd_atfork;

void watchdog_main() {
  std::unique_lock<std::mutex> g(wd_mutex);
  for (;;) {
    wd_cv.wait(g, [] { return wd_armed; });
    unsigned long mine = wd_generation;
    if (wd_cv.wait_until(g, wd_deadline, [mine] { return !wd_armed || wd_generation != mine; }))
      continue;  // disarmed (or re-armed) in time
    // time is up: stop the run, and keep stopping it until it is disarmed
    wd_fired = true;
    auto first = std::chrono::steady_clock::now();
    while (wd_armed && wd_generation == mine) {
      wd_kill(wd_cpu);  // under the lock: disarm cannot return while this runs
      if (std::chrono::steady_clock::now() - first > std::chrono::milliseconds(kGraceMs)) {
        std::fprintf(stderr, "hvlab watchdog: the emulator did not stop %u ms after its run timed out; "
                     "aborting the process instead of hanging\n", kGraceMs);
        std::fflush(stderr);
        std::abort();
      }
      wd_cv.wait_for(g, std::chrono::milliseconds(1));
    }
  }
}
}  // namespace

// Arms the watchdog for one run: stop it after `ms` milliseconds, or when the
// instruction counter reaches `until_instruction` (0: no instruction limit).
// Returns 0, or -1 when the watchdog thread cannot be started.
extern "C" __attribute__((visibility("default"))) int hvlab_watchdog_arm(kill_fn kill, unsigned cpu, unsigned ms,
                                                                        unsigned long long until_instruction) {
  instruction_limit = until_instruction;
  instruction_limit_hit = false;
  limit_kill = kill;
  limit_cpu = cpu;
  std::lock_guard<std::mutex> g(wd_mutex);
  if (!wd_thread_started) {
    try {
      std::thread(watchdog_main).detach();
    } catch (...) {
      return -1;
    }
    wd_thread_started = true;
  }
  ++wd_generation;
  wd_kill = kill;
  wd_cpu = cpu;
  wd_fired = false;
  wd_armed = true;
  wd_deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  wd_cv.notify_all();
  return 0;
}

// Ends the current arm; returns 1 when its time ran out, 2 when the instruction
// limit was reached (the run was stopped), 0 otherwise. After it returns the
// watchdog does not touch the CPU until the next arm.
extern "C" __attribute__((visibility("default"))) int hvlab_watchdog_disarm(void) {
  int by_count = instruction_limit_hit ? 2 : 0;
  instruction_limit = 0;
  instruction_limit_hit = false;
  std::lock_guard<std::mutex> g(wd_mutex);
  int fired = wd_fired ? 1 : by_count;
  wd_armed = false;
  wd_fired = false;
  wd_cv.notify_all();
  return fired;
}
