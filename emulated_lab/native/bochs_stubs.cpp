// The lab's native helpers for bochscpu 0.3.1: two interposed stubs, and a run
// watchdog (below).
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

// A watchdog for runs that never end (an endless loop, or a spin-wait for a
// processor the sequential model has not started). Python cannot do it: the
// emulator holds the GIL while it runs. Python passes bochscpu's own
// bochscpu_cpu_stop and a cpu handle; after `ms` milliseconds without a
// disarm, this thread calls stop(cpu), which ends the current run.
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace {
std::mutex watchdog_mutex;
std::condition_variable watchdog_cv;
unsigned long watchdog_generation = 0;  // changes on every arm and disarm
bool watchdog_fired = false;
}  // namespace

extern "C" __attribute__((visibility("default"))) void hvlab_watchdog_arm(void (*stop)(void *), void *cpu,
                                                                          unsigned ms) {
  unsigned long mine;
  {
    std::lock_guard<std::mutex> g(watchdog_mutex);
    mine = ++watchdog_generation;
    watchdog_fired = false;
  }
  std::thread([stop, cpu, ms, mine]() {
    std::unique_lock<std::mutex> g(watchdog_mutex);
    // stop() is called with the lock held, so disarm (which takes it) cannot
    // return while a stop is in flight: the caller may then free `cpu`.
    if (!watchdog_cv.wait_for(g, std::chrono::milliseconds(ms), [mine] { return watchdog_generation != mine; })) {
      watchdog_fired = true;
      stop(cpu);
    }
  }).detach();
}

extern "C" __attribute__((visibility("default"))) int hvlab_watchdog_disarm(void) {
  int fired;
  {
    std::lock_guard<std::mutex> g(watchdog_mutex);
    ++watchdog_generation;
    fired = watchdog_fired ? 1 : 0;
  }
  watchdog_cv.notify_all();
  return fired;
}
