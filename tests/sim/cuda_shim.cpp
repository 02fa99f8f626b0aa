// A CPU-only torch build that believes it has one CUDA device, for FakeTensorMode tests.
//
// Loaded with LD_PRELOAD (or ctypes, RTLD_GLOBAL, before anything asks torch about CUDA) into a
// process that runs fake `cuda` tensors only. It registers (1) a no-op CUDA device guard, so the
// autograd engine can ask for a CUDA stream without aborting, and (2) CUDA hooks that report one
// built, available device with the CPU allocator as the "pinned" allocator. No kernel ever runs on
// this "device": FakeTensorMode dispatches every op to its meta function. NEVER load it into a
// process with a real GPU.
#include <ATen/detail/CUDAHooksInterface.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <c10/core/impl/FakeGuardImpl.h>

namespace {

struct SimCUDAHooks final : at::CUDAHooksInterface {
  explicit SimCUDAHooks(at::CUDAHooksArgs) {}
  void init() const override {}
  bool hasPrimaryContext(c10::DeviceIndex) const override { return true; }
  bool isBuilt() const override { return true; }
  bool isAvailable() const override { return true; }
  bool hasCUDA() const override { return true; }
  bool hasCUDART() const override { return true; }
  c10::DeviceIndex deviceCount() const override { return 1; }
  int getNumGPUs() const override { return 1; }
  c10::DeviceIndex current_device() const override { return 0; }
  c10::DeviceIndex getCurrentDevice() const override { return 0; }
  void setCurrentDevice(c10::DeviceIndex) const override {}
  c10::DeviceIndex exchangeDevice(c10::DeviceIndex) const override { return 0; }
  c10::DeviceIndex maybeExchangeDevice(c10::DeviceIndex) const override { return 0; }
  bool isPinnedPtr(const void*) const override { return false; }
  c10::Allocator* getPinnedMemoryAllocator() const override { return c10::GetCPUAllocator(); }
  void deviceSynchronize(c10::DeviceIndex) const override {}
};

struct Register {
  Register() {
    // Only where no real CUDA guard exists (a CPU wheel): never shadow a real one.
    if (!c10::impl::hasDeviceGuardImpl(c10::DeviceType::CUDA)) {
      static c10::impl::DeviceGuardImplRegistrar guard(
          c10::DeviceType::CUDA, new c10::impl::FakeGuardImpl<c10::DeviceType::CUDA>());
    }
  }
} register_guard;

}  // namespace

namespace at {
C10_REGISTER_CLASS(CUDAHooksRegistry, CUDAHooks, SimCUDAHooks)
}  // namespace at
