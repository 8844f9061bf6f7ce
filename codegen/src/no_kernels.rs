//! A [`KernelSet`](kiln_runtime::kernels::KernelSet) whose kernels do
//! nothing, so the runtime's model constructor can run at compile time to
//! check a file. Its functions are never called: the macro opens the model
//! and drops it. The stub itself is generated with the runtime's kernel
//! interface (`kiln_runtime::kernels::NoKernels`), so a new kernel family
//! needs nothing here.

use kiln_runtime::kernels::NoKernels;

/// The one instance (models take `&'static dyn KernelSet`).
pub(crate) static NO_KERNELS: NoKernels = NoKernels;
