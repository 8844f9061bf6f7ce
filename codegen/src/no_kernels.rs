//! A [`KernelSet`] whose kernels do nothing, so the runtime's model
//! constructor can run at compile time to check a file. Its functions are
//! never called: the macro opens the model and drops it.

use std::ops::Range;

use kiln_runtime::kernels::{
    AttendCacheFn, AttentionFn, AttnShape, CacheAttn, GatherQ8_0Fn, GegluQ8_0Fn, Isa, KernelSet,
    L2NormalizeFn, LayerNormFn, MatMut, MatmulF32Fn, MatmulQ4KFn, MatmulQ4Kx8Fn, MatmulQ5_0Fn,
    MatmulQ6KFn, MatmulQ6Kx8Fn, MatmulQ8_0Fn, MatmulQ8_0x8Fn, MeanPoolFn, QuantizeQ8_0Fn,
    QuantizeQ8KFn, RmsNormFn, RmsNormQ8_0Fn, RopeFn, UnaryFn,
};
use kiln_runtime::quant::{
    BlockQ4K, BlockQ4Kx8, BlockQ5_0, BlockQ6K, BlockQ6Kx8, BlockQ8_0, BlockQ8_0x8, BlockQ8K,
};

/// The do-nothing kernel set.
pub(crate) struct NoKernels;

/// The one instance (models take `&'static dyn KernelSet`).
pub(crate) static NO_KERNELS: NoKernels = NoKernels;

fn quantize(_: &[f32], _: &mut [BlockQ8_0]) {}
fn matmul_q8(_: &[BlockQ8_0], _: &[BlockQ8_0], _: Option<&[f32]>, _: MatMut<'_>, _: bool) {}
fn matmul_q8x8(_: &[BlockQ8_0x8], _: &[BlockQ8_0], _: Option<&[f32]>, _: MatMut<'_>, _: bool) {}
fn quantize_k(_: &[f32], _: &mut [BlockQ8K]) {}
fn matmul_q4k(_: &[BlockQ4K], _: &[BlockQ8K], _: Option<&[f32]>, _: MatMut<'_>, _: bool) {}
fn matmul_q6k(_: &[BlockQ6K], _: &[BlockQ8K], _: Option<&[f32]>, _: MatMut<'_>, _: bool) {}
fn matmul_q4kx8(_: &[BlockQ4Kx8], _: &[BlockQ8K], _: Option<&[f32]>, _: MatMut<'_>, _: bool) {}
fn matmul_q6kx8(_: &[BlockQ6Kx8], _: &[BlockQ8K], _: Option<&[f32]>, _: MatMut<'_>, _: bool) {}
fn matmul_q5(_: &[BlockQ5_0], _: &[BlockQ8_0], _: Option<&[f32]>, _: MatMut<'_>, _: bool) {}
fn matmul_f32(_: &[f32], _: &[f32], _: Option<&[f32]>, _: MatMut<'_>, _: bool) {}
fn rms_norm(_: &[f32], _: &[f32], _: f32, _: &mut [f32]) {}
fn rms_norm_q8(_: &[f32], _: &[f32], _: f32, _: &mut [BlockQ8_0]) {}
fn layer_norm(_: &[f32], _: &[f32], _: &[f32], _: f32, _: &mut [f32]) {}
fn rope(_: &mut [f32], _: usize, _: usize, _: usize, _: &[f32], _: &[f32], _: bool) {}
fn attention(
    _: &[f32],
    _: &[f32],
    _: &[f32],
    _: &AttnShape,
    _: Range<usize>,
    _: &mut [f32],
    _: &mut [f32],
) {
}
fn attend_cache(_: &[f32], _: &[f32], _: &[f32], _: &CacheAttn<'_>, _: &mut [f32], _: &mut [f32]) {}
fn unary(_: &mut [f32]) {}
fn geglu(_: &[f32], _: &[f32], _: &mut [BlockQ8_0]) {}
fn gather(_: &[BlockQ8_0], _: usize, _: &[u32], _: f32, _: &mut [f32]) {}
fn mean_pool(_: &[f32], _: &mut [f32]) {}

impl KernelSet for NoKernels {
    fn isa(&self) -> Isa {
        Isa::Scalar
    }
    fn quantize_q8_0(&self, _: usize) -> QuantizeQ8_0Fn {
        quantize
    }
    fn matmul_q8_0(&self, _: usize, _: usize) -> MatmulQ8_0Fn {
        matmul_q8
    }
    fn matmul_q8_0x8(&self, _: usize, _: usize) -> MatmulQ8_0x8Fn {
        matmul_q8x8
    }
    fn quantize_q8_k(&self, _: usize) -> QuantizeQ8KFn {
        quantize_k
    }
    fn matmul_q4_k(&self, _: usize, _: usize) -> MatmulQ4KFn {
        matmul_q4k
    }
    fn matmul_q6_k(&self, _: usize, _: usize) -> MatmulQ6KFn {
        matmul_q6k
    }
    fn matmul_q4_kx8(&self, _: usize, _: usize) -> MatmulQ4Kx8Fn {
        matmul_q4kx8
    }
    fn matmul_q6_kx8(&self, _: usize, _: usize) -> MatmulQ6Kx8Fn {
        matmul_q6kx8
    }
    fn matmul_q5_0(&self, _: usize, _: usize) -> MatmulQ5_0Fn {
        matmul_q5
    }
    fn matmul_f32(&self, _: usize, _: usize) -> MatmulF32Fn {
        matmul_f32
    }
    fn rms_norm(&self, _: usize) -> RmsNormFn {
        rms_norm
    }
    fn rms_norm_q8_0(&self, _: usize) -> RmsNormQ8_0Fn {
        rms_norm_q8
    }
    fn layer_norm(&self, _: usize) -> LayerNormFn {
        layer_norm
    }
    fn rope(&self, _: usize) -> RopeFn {
        rope
    }
    fn attention(&self, _: usize) -> AttentionFn {
        attention
    }
    fn attend_cache(&self, _: usize) -> AttendCacheFn {
        attend_cache
    }
    fn gelu_tanh(&self) -> UnaryFn {
        unary
    }
    fn gelu_erf(&self) -> UnaryFn {
        unary
    }
    fn geglu_q8_0(&self, _: usize) -> GegluQ8_0Fn {
        geglu
    }
    fn gather_q8_0(&self, _: usize) -> GatherQ8_0Fn {
        gather
    }
    fn mean_pool(&self, _: usize) -> MeanPoolFn {
        mean_pool
    }
    fn l2_normalize(&self) -> L2NormalizeFn {
        unary
    }
}
