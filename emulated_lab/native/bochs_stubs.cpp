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
