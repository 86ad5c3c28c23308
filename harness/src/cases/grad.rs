//! Grad mode: a case's backward kernels against the gradients of its forward, computed twice on the CPU without
//! our kernels: central finite differences of the f64 candle reference, and candle-core's autograd of the same
//! reference. The upstream gradient `dy` is seeded from the case name like every input, and the scalar whose
//! gradients are taken is `L = Σ dy ⊙ f(inputs)`.

use super::{CaseResult, Record, cpu};
use candle_core::{DType, Tensor, Var};
use ferrogem::gpu::GpuBuffer;
use std::rc::Rc;

/// Finite differences cost two forwards per input element: grad cases stay at or under this many elements.
pub const GRAD_MAX_ELEMS: u64 = 4096;

/// A case's backward with its GPU buffers uploaded and its CPU gradients computed.
pub struct BuiltGrad {
    /// Records the backward kernels into a batch.
    pub record: Record,
    pub grads: Vec<GradOutput>,
}

/// One input's gradient: the guarded GPU output and the two CPU answers.
pub struct GradOutput {
    /// The forward input the gradient is of, as the case names it (`x`, `gate`, …).
    pub input: &'static str,
    pub output: Rc<GpuBuffer>,
    pub finite_diff: Vec<f32>,
    pub autograd: Vec<f32>,
}

/// The forward as both CPU methods see it: tensors in f64, one per input, to the op's output.
pub type Forward<'a> = &'a dyn Fn(&[Tensor]) -> candle_core::Result<Tensor>;

/// Gradients of `Σ dy ⊙ forward(inputs)` with respect to each input named in `wrt` (indices into `inputs`), by
/// finite differences and by autograd, both in f64. Each input is `(values, shape)`.
pub fn cpu_gradients(
    inputs: &[(Vec<f32>, Vec<usize>)],
    dy: &[f32],
    wrt: &[usize],
    forward: Forward,
) -> CaseResult<Vec<(Vec<f32>, Vec<f32>)>> {
    let tensors: Vec<Tensor> = inputs
        .iter()
        .map(|(v, shape)| Tensor::from_vec(v.clone(), shape.as_slice(), &cpu())?.to_dtype(DType::F64))
        .collect::<candle_core::Result<_>>()?;
    let out_shape = forward(&tensors)?.dims().to_vec();
    let dy = Tensor::from_vec(dy.to_vec(), out_shape.as_slice(), &cpu())?.to_dtype(DType::F64)?;
    let loss = |ts: &[Tensor]| -> candle_core::Result<Tensor> { (forward(ts)? * &dy)?.sum_all() };

    let vars: Vec<Var> = tensors.iter().map(Var::from_tensor).collect::<candle_core::Result<_>>()?;
    let var_tensors: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let grads = loss(&var_tensors)?.backward()?;

    let mut out = Vec::new();
    for &k in wrt {
        let autograd = grads
            .get(var_tensors[k].as_ref())
            .ok_or_else(|| format!("autograd gave no gradient for input {k}"))?
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let base: Vec<f64> = tensors[k].flatten_all()?.to_vec1::<f64>()?;
        let shape = tensors[k].dims().to_vec();
        let mut finite_diff = Vec::with_capacity(base.len());
        let mut probe = tensors.clone();
        for i in 0..base.len() {
            // Central differences: truncation error ~h², rounding ~ε/h; h ≈ ε^(1/3) relative balances the two.
            let h = 6e-6 * base[i].abs().max(1.0);
            let mut at = |delta: f64| -> candle_core::Result<f64> {
                let mut moved = base.clone();
                moved[i] += delta;
                probe[k] = Tensor::from_vec(moved, shape.as_slice(), &cpu())?;
                loss(&probe)?.to_scalar::<f64>()
            };
            let (plus, minus) = (at(h)?, at(-h)?);
            finite_diff.push(((plus - minus) / (2.0 * h)) as f32);
        }
        out.push((finite_diff, autograd));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::cpu_gradients;

    #[test]
    fn both_cpu_gradients_of_a_product_of_cubes_are_its_derivative() {
        // L = Σ dy ⊙ a³ ⊙ b: dL/da = 3a²·b·dy, dL/db = a³·dy.
        let (a, b, dy) = (vec![0.5f32, -1.25, 2.0], vec![3.0f32, 0.25, -1.5], vec![1.0f32, -2.0, 0.5]);
        let forward = |t: &[candle_core::Tensor]| t[0].powf(3.0)? * &t[1];
        let grads = cpu_gradients(&[(a.clone(), vec![3]), (b.clone(), vec![3])], &dy, &[0, 1], &forward).unwrap();
        let want_a: Vec<f32> = (0..3).map(|i| 3.0 * a[i] * a[i] * b[i] * dy[i]).collect();
        let want_b: Vec<f32> = (0..3).map(|i| a[i].powi(3) * dy[i]).collect();
        for ((fd, auto), want) in grads.iter().zip([want_a, want_b]) {
            for i in 0..3 {
                assert!((fd[i] - want[i]).abs() < 1e-5 && (auto[i] - want[i]).abs() < 1e-6, "{fd:?} {auto:?} {want:?}");
            }
        }
    }
}
